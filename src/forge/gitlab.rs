//! GitLab (gitlab.com or a self-managed instance) through the `gitlab` crate. The crate
//! supplies the HTTP client, the `PRIVATE-TOKEN` header and typed endpoints; requests
//! are sent with its `AsyncClient::rest_async` rather than `AsyncQuery`, so that this
//! module sees every status and header: it classifies errors (5xx, 429 with its
//! `Retry-After`, and connection errors are retryable), follows `X-Next-Page`, and runs
//! every call through [`with_retries`]. Endpoints the crate lacks, or shapes in a way a
//! proxy may not pass on (a `GET` with a form body), are small [`Endpoint`] impls here.
//!
//! The crate checks the token with `GET /user` when a client is built, so the client is
//! built on first use, and a failed build is tried again on the next call: the service
//! starts while GitLab is briefly down.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use gitlab::api::common::{self, NameOrId, SortOrder};
use gitlab::api::projects::issues::notes::CreateIssueNote;
use gitlab::api::projects::issues::{CreateIssue, Issue};
use gitlab::api::projects::members::AllProjectMember;
use gitlab::api::projects::merge_requests::notes::awards::CreateMergeRequestNoteAward;
use gitlab::api::projects::merge_requests::notes::{
    CreateMergeRequestNote, EditMergeRequestNote, MergeRequestNotes, NoteOrderBy,
};
use gitlab::api::projects::merge_requests::{ApproveMergeRequest, MergeRequest, MergeRequestDiffs};
use gitlab::api::projects::repository::branches::Branch;
use gitlab::api::projects::repository::commits::{
    CommitStatusState, CreateCommitStatus, MergeRequests as CommitMergeRequests,
};
use gitlab::api::projects::repository::files::FileRaw;
use gitlab::api::projects::Project;
use gitlab::api::users::{CurrentUser, Users};
use gitlab::api::{ApiError, AsyncClient, Endpoint, QueryParams};
use gitlab::{AsyncGitlab, GitlabBuilder, GitlabError, RestError};
use http::{HeaderMap, Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::OnceCell;

use super::retry::{with_retries, ForgeRetryPolicy};
use super::{
    truncate_chars, CommentRef, Forge, ForgeError, IssueRef, Permission, PullRequestInfo, RepoId,
    StatusState, ISSUE_TITLE_LIMIT, OPEN_RETRY_SCAN_LIMIT, STATUS_DESCRIPTION_LIMIT,
};
use crate::event::{ForgeKind, UserRef};

/// gitlab.com.
pub const DEFAULT_URL: &str = "https://gitlab.com";

/// Items per page of a list call (GitLab's maximum).
const PER_PAGE: usize = 100;

/// A list longer than this many pages is refused rather than read forever.
const MAX_PAGES: usize = 100;

/// The longest note GitLab accepts, in characters.
const NOTE_BODY_LIMIT: usize = 1_000_000;

/// GitLab refuses a commit status whose description or target URL is longer than this
/// many bytes.
const STATUS_FIELD_BYTES: usize = 255;

/// The award emoji that acknowledges a command.
const ACK_EMOJI: &str = "eyes";

pub struct GitLabForge {
    /// `https://gitlab.example.com[/prefix]`, for links and messages.
    base_url: String,
    /// What the crate's builder wants: `host[:port][/prefix]`, no scheme.
    host: String,
    /// `http://` rather than `https://` (a test server, or a TLS-terminating sidecar).
    insecure: bool,
    token: String,
    /// Built on first use; a failed build leaves it empty for the next call to retry.
    client: OnceCell<AsyncGitlab>,
    policy: ForgeRetryPolicy,
    /// The account the token belongs to: how our own notes are recognised.
    bot: OnceCell<UserWire>,
}

impl std::fmt::Debug for GitLabForge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitLabForge")
            .field("base_url", &self.base_url)
            .field("token", &"[REDACTED]")
            .field("policy", &self.policy)
            .finish()
    }
}

/// One answered request.
struct Reply {
    headers: HeaderMap,
    body: Vec<u8>,
}

impl GitLabForge {
    /// A client of the GitLab instance at `url` (`https://gitlab.com`, or a self-managed
    /// `https://gitlab.example.com`, optionally under a path prefix). Nothing is sent
    /// until the first call.
    pub fn new(url: &str, token: &str) -> Result<Self, ForgeError> {
        let (base_url, host, insecure) = parse_instance_url(url)?;
        let token = token.trim();
        if token.is_empty() {
            return Err(ForgeError::permanent(None, "the GitLab token is empty"));
        }
        // Checked now so that a pasted newline fails at start-up, not on first use.
        if http::HeaderValue::from_str(token).is_err() {
            return Err(ForgeError::permanent(
                None,
                "the GitLab token contains characters not allowed in an HTTP header",
            ));
        }
        Ok(Self {
            base_url,
            host,
            insecure,
            token: token.to_string(),
            client: OnceCell::new(),
            policy: ForgeRetryPolicy::default(),
            bot: OnceCell::new(),
        })
    }

    /// Replaces the retry policy (tests use [`ForgeRetryPolicy::fast`]).
    pub fn with_retry_policy(mut self, policy: ForgeRetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The instance's base URL, e.g. `https://gitlab.com`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    fn scrub(&self, error: ForgeError) -> ForgeError {
        error.scrubbed(&[self.token.as_str()])
    }

    // ---- transport -------------------------------------------------------------

    /// The crate's client, built (and the token checked) on first use.
    async fn client(&self) -> Result<&AsyncGitlab, ForgeError> {
        self.client
            .get_or_try_init(|| async {
                let mut builder = GitlabBuilder::new(self.host.as_str(), self.token.as_str());
                if self.insecure {
                    builder.insecure();
                }
                builder.user_agent(concat!("promptgate/", env!("CARGO_PKG_VERSION")));
                builder.build_async().await.map_err(|e| self.build_error(e))
            })
            .await
    }

    /// One request, no retry; `page` adds `per_page`/`page`. Non-2xx answers become
    /// classified, scrubbed errors.
    async fn send<E: Endpoint + Sync>(
        &self,
        endpoint: &E,
        page: Option<usize>,
    ) -> Result<Reply, ForgeError> {
        let what = what(endpoint);
        self.send_unscrubbed(endpoint, page, &what)
            .await
            .map_err(|e| self.scrub(e))
    }

    async fn send_unscrubbed<E: Endpoint + Sync>(
        &self,
        endpoint: &E,
        page: Option<usize>,
        what: &str,
    ) -> Result<Reply, ForgeError> {
        let client = self.client().await?;
        let mut url = endpoint
            .url_base()
            .endpoint_for(client, &endpoint.endpoint())
            .map_err(|e| self.api_error(what, e))?;
        endpoint.parameters().add_to_url(&mut url);
        if let Some(page) = page {
            url.query_pairs_mut()
                .append_pair("per_page", &PER_PAGE.to_string())
                .append_pair("page", &page.to_string());
        }
        let uri: http::Uri = url
            .as_str()
            .parse()
            .map_err(|_| ForgeError::permanent(None, format!("{what}: not a valid URL")))?;
        let mut request = http::Request::builder().method(endpoint.method()).uri(uri);
        let body = match endpoint.body() {
            Ok(Some((mime, data))) => {
                request = request.header(http::header::CONTENT_TYPE, mime);
                data
            }
            Ok(None) => Vec::new(),
            Err(e) => {
                return Err(ForgeError::permanent(
                    None,
                    format!("{what}: could not encode the request: {e}"),
                ))
            }
        };
        let response = client
            .rest_async(request, body)
            .await
            .map_err(|e| self.api_error(what, e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().to_vec();
        if status.is_success() {
            Ok(Reply { headers, body })
        } else {
            let message = error_message(&body);
            Err(self.classify(what, status, &headers, &message))
        }
    }

    /// One request, retried by the policy.
    async fn call<E: Endpoint + Sync>(&self, endpoint: &E) -> Result<Reply, ForgeError> {
        with_retries(&self.policy, &what(endpoint), || self.send(endpoint, None)).await
    }

    /// `call`, decoded.
    async fn get<T: DeserializeOwned, E: Endpoint + Sync>(
        &self,
        endpoint: &E,
    ) -> Result<T, ForgeError> {
        let reply = self.call(endpoint).await?;
        decode(&reply, &what(endpoint))
    }

    /// Every item of a paginated list: `per_page=100&page=N` until `X-Next-Page` is
    /// empty (or, without that header, until a short page). Each page is retried by the
    /// policy when `retry` is set.
    async fn get_all<T: DeserializeOwned, E: Endpoint + Sync>(
        &self,
        endpoint: &E,
        retry: bool,
    ) -> Result<Vec<T>, ForgeError> {
        let what = what(endpoint);
        let mut items = Vec::new();
        for page in 1..=MAX_PAGES {
            let reply = if retry {
                with_retries(&self.policy, &what, || self.send(endpoint, Some(page))).await?
            } else {
                self.send(endpoint, Some(page)).await?
            };
            let batch: Vec<T> = decode(&reply, &what)?;
            let count = batch.len();
            items.extend(batch);
            let more = match header_str(&reply.headers, "x-next-page") {
                Some(next) => !next.is_empty(),
                None => count >= PER_PAGE,
            };
            if !more || count == 0 {
                return Ok(items);
            }
        }
        Err(ForgeError::permanent(
            None,
            format!("{what}: more than {MAX_PAGES} pages"),
        ))
    }

    // ---- errors ----------------------------------------------------------------

    /// Retryable: 5xx, 408 and 429 (waiting as long as `Retry-After` or
    /// `RateLimit-Reset` asks). The rest is permanent.
    fn classify(
        &self,
        what: &str,
        status: StatusCode,
        headers: &HeaderMap,
        message: &str,
    ) -> ForgeError {
        let code = status.as_u16();
        let text = format!("{what}: {}", describe(status, message));
        let retry_after = header_u64(headers, "retry-after").map(Duration::from_secs);
        let reset_wait = header_u64(headers, "ratelimit-reset").map(|reset| {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            Duration::from_secs(reset.saturating_sub(now).saturating_add(1))
        });
        match code {
            429 => ForgeError::retryable(
                Some(code),
                text,
                Some(
                    retry_after
                        .or(reset_wait)
                        .unwrap_or(self.policy.rate_limit_wait),
                ),
            ),
            408 | 500..=599 => ForgeError::retryable(Some(code), text, retry_after),
            _ => ForgeError::permanent(Some(code), text),
        }
    }

    fn api_error(&self, what: &str, error: ApiError<RestError>) -> ForgeError {
        let no_headers = HeaderMap::new();
        let error = match error {
            ApiError::Client { source } => match source {
                RestError::Communication { source } => ForgeError::retryable(
                    None,
                    format!("{what}: connection error: {}", error_chain(&source)),
                    None,
                ),
                other => ForgeError::permanent(None, format!("{what}: {}", error_chain(&other))),
            },
            ApiError::GitlabWithStatus { status, msg } => {
                self.classify(what, status, &no_headers, &msg)
            }
            ApiError::GitlabService { status, data } => {
                self.classify(what, status, &no_headers, &error_message(&data))
            }
            ApiError::GitlabObjectWithStatus { status, obj }
            | ApiError::GitlabUnrecognizedWithStatus { status, obj } => {
                let message = error_message(obj.to_string().as_bytes());
                self.classify(what, status, &no_headers, &message)
            }
            ApiError::GitlabRateLimited { retry_after, .. } => {
                let wait = if retry_after.is_zero() {
                    self.policy.rate_limit_wait
                } else {
                    retry_after
                };
                ForgeError::retryable(Some(429), format!("{what}: 429 rate limited"), Some(wait))
            }
            other => ForgeError::permanent(None, format!("{what}: {other}")),
        };
        self.scrub(error)
    }

    /// An error of the client's build, which checks the token with `GET /user`.
    fn build_error(&self, error: GitlabError) -> ForgeError {
        let what = "GitLab GET /user (checking the token)";
        let error = match error {
            GitlabError::Api { source } => self.api_error(what, source),
            GitlabError::Communication { source } => ForgeError::retryable(
                None,
                format!("{what}: connection error: {}", error_chain(&source)),
                None,
            ),
            GitlabError::Http { status } => self.classify(what, status, &HeaderMap::new(), ""),
            GitlabError::UrlParse { .. } => ForgeError::permanent(
                None,
                format!("the GitLab URL {:?} is not a valid URL", self.base_url),
            ),
            other => ForgeError::permanent(None, format!("{what}: {other}")),
        };
        self.scrub(error)
    }

    // ---- identity --------------------------------------------------------------

    /// The account the token belongs to (`GET /user`, once).
    async fn bot_user(&self) -> Result<&UserWire, ForgeError> {
        self.bot
            .get_or_try_init(|| async {
                self.get::<UserWire, _>(&built(CurrentUser::builder().build())?)
                    .await
            })
            .await
    }

    /// The web address of note `note_id` on merge request `number`.
    fn note_url(&self, repo: &RepoId, number: u64, note_id: u64) -> Option<String> {
        let path = repo.full_name.trim_matches('/');
        (!path.is_empty()).then(|| {
            format!(
                "{}/{path}/-/merge_requests/{number}#note_{note_id}",
                self.base_url
            )
        })
    }

    /// One try at the sticky comment: list the notes, then edit ours or create it. No
    /// retries inside, so that a retry after a failed write looks for the note again
    /// and never creates a second one.
    async fn upsert_once(
        &self,
        repo: &RepoId,
        number: u64,
        marker: &str,
        body: &str,
        bot_id: u64,
    ) -> Result<CommentRef, ForgeError> {
        let project = project(repo)?;
        let list = built(
            MergeRequestNotes::builder()
                .project(project.clone())
                .merge_request(number)
                .order_by(NoteOrderBy::CreatedAt)
                .sort(SortOrder::Ascending)
                .build(),
        )?;
        let notes: Vec<NoteWire> = self.get_all(&list, false).await?;
        let ours = notes.iter().find(|n| {
            !n.system
                && n.body.contains(marker)
                && n.author.as_ref().is_some_and(|a| a.id == bot_id)
        });
        let note = match ours {
            Some(existing) if existing.body == body => existing.id,
            Some(existing) => {
                let edit = built(
                    EditMergeRequestNote::builder()
                        .project(project)
                        .merge_request(number)
                        .note(existing.id)
                        .body(body)
                        .build(),
                )?;
                let reply = self.send(&edit, None).await?;
                decode::<NoteWire>(&reply, &what(&edit))?.id
            }
            None => {
                let create = built(
                    CreateMergeRequestNote::builder()
                        .project(project)
                        .merge_request(number)
                        .body(body)
                        .build(),
                )?;
                let reply = self.send(&create, None).await?;
                decode::<NoteWire>(&reply, &what(&create))?.id
            }
        };
        Ok(CommentRef {
            id: note.to_string(),
            url: self.note_url(repo, number, note),
        })
    }

    /// Looks through the project's newest issues that `bot_id` opened (`state=all`,
    /// newest first) for one whose description contains `marker`; stops at the first
    /// hit or after `limit` listed issues. A scan, not GitLab's `search`: that is a
    /// fuzzy or full-text match whose handling of the marker's punctuation differs
    /// between versions and setups, and a miss would open a duplicate. Each page is
    /// retried by the policy when `retry` is set.
    async fn scan_issues(
        &self,
        repo: &RepoId,
        marker: &str,
        labels: &[String],
        limit: usize,
        bot_id: u64,
        retry: bool,
    ) -> Result<Option<IssueRef>, ForgeError> {
        if limit == 0 {
            return Ok(None);
        }
        let per_page = limit.min(PER_PAGE);
        let path = format!("projects/{}/issues", project(repo)?);
        let labels = super::label_list(labels);
        let mut read = 0;
        for page in 1..=MAX_PAGES {
            let mut endpoint = Custom::get(path.clone());
            endpoint.query = vec![
                ("state", "all".into()),
                ("order_by", "created_at".into()),
                ("sort", "desc".into()),
                ("author_id", bot_id.to_string()),
                ("per_page", per_page.to_string()),
                ("page", page.to_string()),
            ];
            if !labels.is_empty() {
                endpoint.query.push(("labels", labels.join(",")));
            }
            let reply = if retry {
                self.call(&endpoint).await?
            } else {
                self.send(&endpoint, None).await?
            };
            let batch: Vec<IssueWire> = decode(&reply, &what(&endpoint))?;
            let count = batch.len();
            let hit = batch
                .iter()
                .take(limit - read)
                .find(|issue| issue.is_ours(marker, bot_id));
            if let Some(issue) = hit {
                return Ok(Some(issue.to_ref()));
            }
            read += count;
            let more = match header_str(&reply.headers, "x-next-page") {
                Some(next) => !next.is_empty(),
                None => count >= per_page,
            };
            if !more || count == 0 || read >= limit {
                break;
            }
        }
        Ok(None)
    }

    /// The path of a fork's project; empty when it is gone or hidden from us.
    async fn source_project_path(&self, project_id: u64) -> Result<String, ForgeError> {
        #[derive(Deserialize)]
        struct ProjectWire {
            path_with_namespace: String,
        }
        let endpoint = built(Project::builder().project(project_id).build())?;
        match self.get::<ProjectWire, _>(&endpoint).await {
            Ok(p) => Ok(p.path_with_namespace),
            Err(e) if matches!(e.status(), Some(403 | 404)) => Ok(String::new()),
            Err(e) => Err(e),
        }
    }

    /// Whether the bot is among the approvers of the merge request.
    async fn approved_by_bot(&self, repo: &RepoId, number: u64) -> Result<bool, ForgeError> {
        #[derive(Deserialize)]
        struct Approver {
            user: UserWire,
        }
        #[derive(Deserialize)]
        struct Approvals {
            #[serde(default)]
            approved_by: Vec<Approver>,
        }
        let bot = self.bot_user().await?.id;
        let endpoint = Custom::get(format!(
            "projects/{}/merge_requests/{number}/approvals",
            project(repo)?
        ));
        let approvals: Approvals = self.get(&endpoint).await?;
        Ok(approvals.approved_by.iter().any(|a| a.user.id == bot))
    }
}

#[async_trait]
impl Forge for GitLabForge {
    fn kind(&self) -> ForgeKind {
        ForgeKind::Gitlab
    }

    async fn pull_request(
        &self,
        repo: &RepoId,
        number: u64,
    ) -> Result<PullRequestInfo, ForgeError> {
        let project = project(repo)?;
        let endpoint = built(
            MergeRequest::builder()
                .project(project.clone())
                .merge_request(number)
                .build(),
        )?;
        let mr: MergeRequestWire = self.get(&endpoint).await?;
        let refs = mr.diff_refs.unwrap_or_default();
        let target_tip = refs.start_sha.clone().filter(|s| !s.is_empty());
        let head_sha = match mr.sha.or(refs.head_sha) {
            Some(sha) if !sha.is_empty() => sha,
            _ => {
                return Err(ForgeError::permanent(
                    None,
                    format!(
                        "{}: merge request !{number} has no head commit",
                        what(&endpoint)
                    ),
                ))
            }
        };
        let base_sha = match refs.base_sha.filter(|s| !s.is_empty()) {
            Some(sha) => sha,
            None => {
                // Right after creation GitLab has not computed `diff_refs` yet: the
                // target branch's head is the base the change is compared against.
                #[derive(Deserialize)]
                struct Commit {
                    id: String,
                }
                #[derive(Deserialize)]
                struct BranchWire {
                    commit: Commit,
                }
                let branch = built(
                    Branch::builder()
                        .project(project)
                        .branch(mr.target_branch.as_str())
                        .build(),
                )?;
                self.get::<BranchWire, _>(&branch).await?.commit.id
            }
        };
        // A deleted source project counts as a fork, as a deleted head repository does
        // on GitHub.
        let is_fork = match (mr.source_project_id, mr.target_project_id) {
            (Some(source), Some(target)) => source != target,
            (Some(source), None) => repo.project_id != Some(source),
            (None, _) => true,
        };
        let head_repo = match mr.source_project_id {
            Some(_) if !is_fork => repo.full_name.clone(),
            Some(source) => self.source_project_path(source).await?,
            None => String::new(),
        };
        Ok(PullRequestInfo {
            number: mr.iid,
            base_ref: mr.target_branch,
            // Policy at the target's tip (as on GitHub), the diff from the merge base.
            base_sha: target_tip.unwrap_or_else(|| base_sha.clone()),
            merge_base_sha: base_sha,
            head_sha,
            head_repo,
            is_fork,
            draft: mr.draft.or(mr.work_in_progress).unwrap_or(false),
        })
    }

    async fn pull_requests_for_sha(
        &self,
        repo: &RepoId,
        sha: &str,
    ) -> Result<Vec<u64>, ForgeError> {
        let endpoint = built(
            CommitMergeRequests::builder()
                .project(project(repo)?)
                .sha(sha)
                .build(),
        )?;
        let mrs: Vec<MergeRequestWire> = self.get_all(&endpoint, true).await?;
        let mut numbers: Vec<u64> = mrs
            .into_iter()
            .filter(|mr| mr.state == "opened")
            .filter(|mr| mr.sha.as_deref() == Some(sha))
            .filter(|mr| match (repo.project_id, mr.target_project_id) {
                (Some(ours), Some(target)) => ours == target,
                _ => true,
            })
            .map(|mr| mr.iid)
            .collect();
        numbers.sort_unstable();
        numbers.dedup();
        Ok(numbers)
    }

    async fn changed_files(&self, repo: &RepoId, number: u64) -> Result<Vec<String>, ForgeError> {
        #[derive(Deserialize)]
        struct DiffWire {
            old_path: String,
            new_path: String,
        }
        let endpoint = built(
            MergeRequestDiffs::builder()
                .project(project(repo)?)
                .merge_request(number)
                .build(),
        )?;
        let diffs: Vec<DiffWire> = self.get_all(&endpoint, true).await?;
        let mut seen = HashSet::new();
        let mut paths = Vec::new();
        for diff in diffs {
            for path in [diff.new_path, diff.old_path] {
                if !path.is_empty() && seen.insert(path.clone()) {
                    paths.push(path);
                }
            }
        }
        Ok(paths)
    }

    async fn read_file(
        &self,
        repo: &RepoId,
        sha: &str,
        path: &str,
    ) -> Result<Option<Vec<u8>>, ForgeError> {
        let Some(file) = super::repo_file_path(path)? else {
            return Ok(None);
        };
        let endpoint = built(
            FileRaw::builder()
                .project(project(repo)?)
                .file_path(file)
                .ref_(sha)
                .build(),
        )?;
        match self.call(&endpoint).await {
            Ok(reply) => Ok(Some(reply.body)),
            // GitLab answers 404 for a missing project or commit too: only a missing
            // file is "no file here"; the others would hide a misconfiguration.
            Err(e) if e.is_not_found() && !names_missing_project_or_commit(e.message()) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn list_files(&self, repo: &RepoId, sha: &str) -> Result<Vec<String>, ForgeError> {
        #[derive(Deserialize)]
        struct TreeEntryWire {
            path: String,
            #[serde(rename = "type")]
            kind: String,
        }
        // The crate's `Tree` sends `ref` and `recursive` in the body of a GET, which
        // proxies may drop: ask in the query instead.
        let mut endpoint = Custom::get(format!("projects/{}/repository/tree", project(repo)?));
        endpoint.query = vec![("ref", sha.to_string()), ("recursive", "true".into())];
        let entries: Vec<TreeEntryWire> = self.get_all(&endpoint, true).await?;
        let mut files: Vec<String> = entries
            .into_iter()
            .filter(|e| e.kind == "blob")
            .map(|e| e.path)
            .collect();
        files.sort();
        files.dedup();
        Ok(files)
    }

    async fn set_status(
        &self,
        repo: &RepoId,
        sha: &str,
        context: &str,
        state: StatusState,
        description: &str,
        target_url: Option<&str>,
    ) -> Result<(), ForgeError> {
        let gitlab_state = match state {
            StatusState::Pending => CommitStatusState::Pending,
            StatusState::Success => CommitStatusState::Success,
            StatusState::Failure | StatusState::Error => CommitStatusState::Failed,
        };
        let description = truncate_bytes(
            &truncate_chars(description, STATUS_DESCRIPTION_LIMIT),
            STATUS_FIELD_BYTES,
        );
        let mut builder = CreateCommitStatus::builder();
        builder
            .project(project(repo)?)
            .commit(sha)
            .state(gitlab_state)
            .name(context)
            .description(description);
        match target_url {
            Some(url) if url.len() <= STATUS_FIELD_BYTES => {
                builder.target_url(url);
            }
            Some(_) => tracing::warn!(
                "the status link is longer than GitLab's {STATUS_FIELD_BYTES} bytes; \
                 setting the status without it"
            ),
            None => {}
        }
        let endpoint = built(builder.build())?;
        match self.call(&endpoint).await {
            Ok(_) => Ok(()),
            // Posting `pending` over a `pending` status of the same name: GitLab refuses
            // the transition, and the commit already shows what we asked for.
            Err(e)
                if e.status() == Some(400) && e.message().contains("Cannot transition status") =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    async fn upsert_comment(
        &self,
        repo: &RepoId,
        number: u64,
        marker: &str,
        body: &str,
    ) -> Result<CommentRef, ForgeError> {
        if marker.trim().is_empty() {
            return Err(ForgeError::permanent(
                None,
                "the sticky comment's marker is empty",
            ));
        }
        let body = sticky_body(marker, body);
        let bot = self.bot_user().await?.id;
        let what = format!("GitLab sticky note on {}!{number}", repo.full_name);
        with_retries(&self.policy, &what, || {
            self.upsert_once(repo, number, marker, &body, bot)
        })
        .await
    }

    async fn post_comment(
        &self,
        repo: &RepoId,
        number: u64,
        body: &str,
    ) -> Result<CommentRef, ForgeError> {
        let endpoint = built(
            CreateMergeRequestNote::builder()
                .project(project(repo)?)
                .merge_request(number)
                .body(limit_body(body, NOTE_BODY_LIMIT))
                .build(),
        )?;
        let note: NoteWire = self.get(&endpoint).await?;
        Ok(CommentRef {
            id: note.id.to_string(),
            url: self.note_url(repo, number, note.id),
        })
    }

    async fn permission(&self, repo: &RepoId, user: &UserRef) -> Result<Permission, ForgeError> {
        if user.id == 0 {
            return Ok(Permission::None);
        }
        // By numeric id, inherited memberships included: a renamed login cannot
        // borrow someone else's access.
        let endpoint = built(
            AllProjectMember::builder()
                .project(project(repo)?)
                .user(user.id)
                .build(),
        )?;
        let member: MemberWire = match self.get(&endpoint).await {
            Ok(member) => member,
            Err(e) if e.is_not_found() => return Ok(Permission::None),
            Err(e) => return Err(e),
        };
        if member.id != user.id || !member.is_active() {
            return Ok(Permission::None);
        }
        Ok(Permission::from_gitlab_access_level(member.access_level))
    }

    async fn is_group_member(
        &self,
        _repo: &RepoId,
        group: &str,
        user: &UserRef,
    ) -> Result<bool, ForgeError> {
        let group = group.trim().trim_start_matches('@').trim_matches('/');
        if group.is_empty() {
            return Err(ForgeError::permanent(
                None,
                "the GitLab group path is empty",
            ));
        }
        if user.id == 0 {
            return Ok(false);
        }
        // The crate has no endpoint for one member of a group, inherited included.
        let endpoint = Custom::get(format!(
            "groups/{}/members/all/{}",
            common::path_escaped(group),
            user.id
        ));
        match self.get::<MemberWire, _>(&endpoint).await {
            Ok(member) => Ok(member.id == user.id && member.is_active()),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn user_id(&self, _repo: &RepoId, login: &str) -> Result<Option<u64>, ForgeError> {
        let login = login.trim().trim_start_matches('@');
        if login.is_empty() {
            return Ok(None);
        }
        let endpoint = built(Users::builder().username(login).build())?;
        let reply = with_retries(&self.policy, &what(&endpoint), || {
            self.send(&endpoint, Some(1))
        })
        .await?;
        let users: Vec<UserWire> = decode(&reply, &what(&endpoint))?;
        // GitLab usernames are unique regardless of case.
        Ok(users
            .into_iter()
            .find(|u| u.username.eq_ignore_ascii_case(login))
            .map(|u| u.id))
    }

    async fn find_issue(
        &self,
        repo: &RepoId,
        marker: &str,
        labels: &[String],
        limit: usize,
    ) -> Result<Option<IssueRef>, ForgeError> {
        super::check_marker(marker)?;
        let bot = self.bot_user().await?.id;
        self.scan_issues(repo, marker, labels, limit, bot, true)
            .await
    }

    async fn issue(&self, repo: &RepoId, number: u64) -> Result<Option<IssueRef>, ForgeError> {
        let endpoint = built(
            Issue::builder()
                .project(project(repo)?)
                .issue(number)
                .build(),
        )?;
        match self.get::<IssueWire, _>(&endpoint).await {
            Ok(issue) => Ok(Some(issue.to_ref())),
            // A missing project is a misconfiguration, not a missing issue.
            Err(e) if e.is_not_found() && !names_missing_project_or_commit(e.message()) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn open_issue(
        &self,
        repo: &RepoId,
        title: &str,
        body: &str,
        labels: &[String],
        marker: &str,
    ) -> Result<IssueRef, ForgeError> {
        super::check_marker(marker)?;
        let title = truncate_chars(title.trim(), ISSUE_TITLE_LIMIT);
        if title.is_empty() {
            return Err(ForgeError::permanent(None, "the issue's title is empty"));
        }
        let description = issue_body(marker, body);
        let labels = super::label_list(labels);
        let mut builder = CreateIssue::builder();
        builder
            .project(project(repo)?)
            .title(title.as_str())
            .description(description.as_str());
        if !labels.is_empty() {
            builder.labels(labels.iter().copied());
        }
        let endpoint = built(builder.build())?;
        let bot = self.bot_user().await?.id;
        let attempts = AtomicU32::new(0);
        let what_open = format!("GitLab open issue on {}", repo.full_name);
        with_retries(&self.policy, &what_open, || async {
            if attempts.fetch_add(1, Ordering::SeqCst) > 0 {
                // The failed attempt may have created it (a 502 after the write): look
                // before writing again. Unlabelled, in case labels were dropped.
                let found = self
                    .scan_issues(repo, marker, &[], OPEN_RETRY_SCAN_LIMIT, bot, false)
                    .await?;
                if let Some(found) = found {
                    return Ok(found);
                }
            }
            let reply = self.send(&endpoint, None).await?;
            decode::<IssueWire>(&reply, &what(&endpoint)).map(|issue| issue.to_ref())
        })
        .await
    }

    async fn comment_on_issue(
        &self,
        repo: &RepoId,
        number: u64,
        body: &str,
    ) -> Result<(), ForgeError> {
        let endpoint = built(
            CreateIssueNote::builder()
                .project(project(repo)?)
                .issue(number)
                .body(limit_body(body, NOTE_BODY_LIMIT))
                .build(),
        )?;
        self.call(&endpoint).await.map(|_| ())
    }

    async fn acknowledge(
        &self,
        repo: &RepoId,
        number: u64,
        comment_id: u64,
    ) -> Result<(), ForgeError> {
        let endpoint = built(
            CreateMergeRequestNoteAward::builder()
                .project(project(repo)?)
                .merge_request(number)
                .note(comment_id)
                .name(ACK_EMOJI)
                .build(),
        )?;
        match self.call(&endpoint).await {
            Ok(_) => Ok(()),
            // GitLab refuses a second identical award, some versions with a 404 whose
            // message says "has already been taken".
            Err(e)
                if e.status() == Some(409)
                    || (matches!(e.status(), Some(400 | 404 | 422))
                        && e.message().to_ascii_lowercase().contains("already")) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    async fn approve(
        &self,
        repo: &RepoId,
        number: u64,
        sha: &str,
        body: &str,
    ) -> Result<(), ForgeError> {
        let endpoint = built(
            ApproveMergeRequest::builder()
                .project(project(repo)?)
                .merge_request(number)
                .sha(sha)
                .build(),
        )?;
        match self.call(&endpoint).await {
            Ok(_) => {}
            Err(e) if e.status() == Some(409) => {
                return Err(ForgeError::permanent(
                    Some(409),
                    format!(
                        "{}: the head of !{number} moved away from {sha}; not approving \
                         a commit that was not evaluated ({})",
                        what(&endpoint),
                        e.message()
                    ),
                ))
            }
            // GitLab answers 401 to an approval the user already gave.
            Err(e) if e.status() == Some(401) => {
                if !self.approved_by_bot(repo, number).await.unwrap_or(false) {
                    return Err(e);
                }
            }
            Err(e) => return Err(e),
        }
        // A GitLab approval carries no message: the body goes in a note, as a GitHub
        // review's body shows in the conversation.
        if !body.trim().is_empty() {
            self.post_comment(repo, number, body).await?;
        }
        Ok(())
    }
}

// ---- endpoints the crate lacks ---------------------------------------------------

/// A request by path and query parameters.
struct Custom {
    method: Method,
    path: String,
    query: Vec<(&'static str, String)>,
}

impl Custom {
    fn get(path: String) -> Self {
        Self {
            method: Method::GET,
            path,
            query: Vec::new(),
        }
    }
}

impl Endpoint for Custom {
    fn method(&self) -> Method {
        self.method.clone()
    }

    fn endpoint(&self) -> Cow<'static, str> {
        Cow::Owned(self.path.clone())
    }

    fn parameters(&self) -> QueryParams<'_> {
        let mut params = QueryParams::default();
        for (key, value) in &self.query {
            params.push(*key, value.as_str());
        }
        params
    }
}

// ---- wire types ------------------------------------------------------------------

#[derive(Deserialize)]
struct UserWire {
    id: u64,
    #[serde(default)]
    username: String,
}

#[derive(Deserialize)]
struct NoteWire {
    id: u64,
    #[serde(default)]
    body: String,
    author: Option<UserWire>,
    #[serde(default)]
    system: bool,
}

#[derive(Deserialize)]
struct IssueWire {
    iid: u64,
    #[serde(default)]
    web_url: String,
    /// `opened` or `closed`.
    #[serde(default)]
    state: String,
    description: Option<String>,
    author: Option<UserWire>,
}

impl IssueWire {
    /// Opened by `bot_id`, with `marker` in the description.
    fn is_ours(&self, marker: &str, bot_id: u64) -> bool {
        self.description
            .as_deref()
            .is_some_and(|d| d.contains(marker))
            && self.author.as_ref().is_some_and(|a| a.id == bot_id)
    }

    fn to_ref(&self) -> IssueRef {
        IssueRef {
            number: self.iid,
            url: self.web_url.clone(),
            open: self.state == "opened",
        }
    }
}

#[derive(Default, Deserialize)]
struct DiffRefsWire {
    /// The merge base of source and target.
    base_sha: Option<String>,
    head_sha: Option<String>,
    /// The target branch's tip when the diff was computed.
    #[serde(default)]
    start_sha: Option<String>,
}

#[derive(Deserialize)]
struct MergeRequestWire {
    iid: u64,
    #[serde(default)]
    state: String,
    #[serde(default)]
    target_branch: String,
    sha: Option<String>,
    source_project_id: Option<u64>,
    target_project_id: Option<u64>,
    draft: Option<bool>,
    work_in_progress: Option<bool>,
    diff_refs: Option<DiffRefsWire>,
}

#[derive(Deserialize)]
struct MemberWire {
    id: u64,
    access_level: u64,
    /// The account's state: `active`, `blocked`, `deactivated`, …
    state: Option<String>,
    /// The membership's: `active`, or `awaiting` a seat.
    membership_state: Option<String>,
}

impl MemberWire {
    /// Deny by default: an account or membership that does not say `active` is not.
    fn is_active(&self) -> bool {
        self.state.as_deref() == Some("active")
            && self
                .membership_state
                .as_deref()
                .is_none_or(|s| s == "active")
    }
}

// ---- helpers ---------------------------------------------------------------------

/// The project segment: the numeric id when known, else the full path (escaped by the
/// crate when formatted).
fn project(repo: &RepoId) -> Result<NameOrId<'_>, ForgeError> {
    match repo.project_id {
        Some(id) => Ok(NameOrId::Id(id)),
        None => {
            let path = repo.full_name.trim_matches('/');
            if path.is_empty() {
                Err(ForgeError::permanent(
                    None,
                    "the GitLab project has neither an id nor a path",
                ))
            } else {
                Ok(NameOrId::Name(Cow::Borrowed(path)))
            }
        }
    }
}

/// An endpoint from its builder; a builder error is a bug of ours, not GitLab's.
fn built<T, E: std::fmt::Display>(result: Result<T, E>) -> Result<T, ForgeError> {
    result.map_err(|e| ForgeError::permanent(None, format!("GitLab request not built: {e}")))
}

/// `GitLab GET /projects/1/merge_requests/7` (the query left out).
fn what<E: Endpoint>(endpoint: &E) -> String {
    let path = endpoint.endpoint();
    let path = path.split('?').next().unwrap_or_default();
    format!("GitLab {} /{path}", endpoint.method())
}

fn decode<T: DeserializeOwned>(reply: &Reply, what: &str) -> Result<T, ForgeError> {
    serde_json::from_slice(&reply.body)
        .map_err(|e| ForgeError::permanent(None, format!("{what}: unexpected response: {e}")))
}

/// `(base_url, builder host, insecure)` of an instance URL. A pasted API URL
/// (`…/api/v4`) is accepted; credentials in the URL are not.
fn parse_instance_url(url: &str) -> Result<(String, String, bool), ForgeError> {
    let trimmed = url.trim().trim_end_matches('/');
    let bad = || {
        ForgeError::permanent(
            None,
            format!(
                "the GitLab URL {trimmed:?} must be an http(s) URL with a host, \
                 like https://gitlab.example.com"
            ),
        )
    };
    let uri: http::Uri = trimmed.parse().map_err(|_| bad())?;
    let (scheme, insecure) = match uri.scheme_str() {
        Some("https") => ("https", false),
        Some("http") => ("http", true),
        _ => return Err(bad()),
    };
    let Some(authority) = uri.authority() else {
        return Err(bad());
    };
    if authority.as_str().contains('@') {
        return Err(ForgeError::permanent(
            None,
            "the GitLab URL must not contain credentials: set the token on its own",
        ));
    }
    if authority.host().is_empty() || uri.query().is_some() {
        return Err(bad());
    }
    let path = uri.path().trim_end_matches('/');
    let path = path.strip_suffix("/api/v4").unwrap_or(path);
    let host = format!("{}{path}", authority.as_str());
    Ok((format!("{scheme}://{host}"), host, insecure))
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name)?.to_str().ok().map(str::trim)
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    header_str(headers, name)?.parse().ok()
}

/// `404 Project Not Found`, `404 Commit Not Found`: the 404s that are not about a file.
fn names_missing_project_or_commit(message: &str) -> bool {
    message.contains("Project Not Found") || message.contains("Commit Not Found")
}

/// GitLab's messages mostly start with the status (`403 Forbidden`); others get it in
/// front.
fn describe(status: StatusCode, message: &str) -> String {
    let code = status.as_str();
    let message = message.trim();
    if message.is_empty() {
        format!("{code} {}", status.canonical_reason().unwrap_or("error"))
    } else if message.starts_with(code) {
        message.to_string()
    } else {
        format!("{code} {message}")
    }
}

/// The message of a GitLab error body: `{"message": "…"}`, `{"message": {"field":
/// ["…"]}}`, `{"error": "…"}`; or the start of a body that is not JSON (empty for a
/// proxy's HTML page).
fn error_message(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let trimmed = text.trim();
    let message = match serde_json::from_str::<Value>(trimmed) {
        Ok(Value::Object(map)) => {
            let main = map.get("message").or_else(|| map.get("error"));
            let mut message = main.map(flatten).unwrap_or_default();
            if let Some(detail) = map.get("error_description").and_then(Value::as_str) {
                message = format!("{message}: {detail}");
            }
            message
        }
        Ok(other) => flatten(&other),
        Err(_) if trimmed.starts_with('<') => String::new(),
        Err(_) => trimmed.to_string(),
    };
    truncate_chars(&message, 500)
}

/// A JSON error value as one line: `base: is invalid; name: has already been taken`.
fn flatten(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(flatten).collect::<Vec<_>>().join(", "),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| format!("{k} {}", flatten(v)))
            .collect::<Vec<_>>()
            .join("; "),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![error.to_string()];
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = cause.source();
    }
    parts.join(": ")
}

/// `text` cut to at most `limit` bytes on a character boundary, ending in `…` when cut.
fn truncate_bytes(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_string();
    }
    let room = limit.saturating_sub('…'.len_utf8());
    let mut end = room.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// The note a cut comment ends with.
const TRUNCATION_NOTE: &str = "\n\n_(truncated: longer than GitLab allows in a note)_";

fn limit_body(body: &str, limit: usize) -> String {
    super::limit_body(body, limit, TRUNCATION_NOTE)
}

fn sticky_body(marker: &str, body: &str) -> String {
    super::sticky_body(marker, body, NOTE_BODY_LIMIT, TRUNCATION_NOTE)
}

/// The longest issue description GitLab accepts, in characters.
const ISSUE_BODY_LIMIT: usize = 1_048_576;

/// An issue's description: contains `marker`, fits GitLab's limit.
fn issue_body(marker: &str, body: &str) -> String {
    super::sticky_body(marker, body, ISSUE_BODY_LIMIT, TRUNCATION_NOTE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_urls() {
        let ok = |u: &str| parse_instance_url(u).map_err(|e| e.to_string());
        assert_eq!(
            ok("https://gitlab.com/"),
            Ok(("https://gitlab.com".into(), "gitlab.com".into(), false))
        );
        assert_eq!(
            ok("http://127.0.0.1:8929"),
            Ok((
                "http://127.0.0.1:8929".into(),
                "127.0.0.1:8929".into(),
                true
            ))
        );
        assert_eq!(
            ok("https://example.com/gitlab/api/v4/"),
            Ok((
                "https://example.com/gitlab".into(),
                "example.com/gitlab".into(),
                false
            ))
        );
        assert!(ok("gitlab.com").is_err());
        assert!(ok("ftp://gitlab.com").is_err());
        assert!(ok("https://gitlab.com?x=1").is_err());
        let e = ok("https://root:hunter22@gitlab.com").unwrap_err();
        assert!(!e.contains("hunter22"), "{e}");
    }

    #[test]
    fn constructor_checks_token_but_sends_nothing() {
        assert!(GitLabForge::new("https://gitlab.com", "  ").is_err());
        assert!(GitLabForge::new("https://gitlab.com", "glpat-a\nb").is_err());
        let forge = GitLabForge::new("https://gitlab.com", "glpat-SECRET").unwrap();
        assert!(forge.client.get().is_none());
        assert!(!format!("{forge:?}").contains("SECRET"));
    }

    #[test]
    fn error_messages() {
        let status = StatusCode::FORBIDDEN;
        let m = error_message(br#"{"message":"403 Forbidden"}"#);
        assert_eq!(describe(status, &m), "403 Forbidden");
        let status = StatusCode::BAD_REQUEST;
        let m = error_message(br#"{"message":{"name":["has already been taken"]}}"#);
        assert_eq!(describe(status, &m), "400 name has already been taken");
        let m = error_message(br#"{"error":"invalid_token","error_description":"expired"}"#);
        assert_eq!(m, "invalid_token: expired");
        let status = StatusCode::BAD_GATEWAY;
        let m = error_message(b"<html>bad gateway</html>");
        assert_eq!(describe(status, &m), "502 Bad Gateway");
    }

    #[test]
    fn byte_truncation_keeps_characters_whole() {
        assert_eq!(truncate_bytes("abc", 3), "abc");
        let long = "é".repeat(200);
        let cut = truncate_bytes(&long, STATUS_FIELD_BYTES);
        assert!(cut.len() <= STATUS_FIELD_BYTES);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn sticky_body_keeps_marker() {
        let marker = "<!-- promptgate -->";
        assert_eq!(sticky_body(marker, "hi"), format!("{marker}\nhi"));
        let long = format!("{}{marker}", "a".repeat(NOTE_BODY_LIMIT + 10));
        let out = sticky_body(marker, &long);
        assert!(out.contains(marker));
        assert!(out.chars().count() <= NOTE_BODY_LIMIT);
    }

    #[test]
    fn members_must_be_active() {
        let m = |state: Option<&str>, ms: Option<&str>| MemberWire {
            id: 1,
            access_level: 30,
            state: state.map(str::to_string),
            membership_state: ms.map(str::to_string),
        };
        assert!(m(Some("active"), None).is_active());
        assert!(m(Some("active"), Some("active")).is_active());
        assert!(!m(Some("active"), Some("awaiting")).is_active());
        assert!(!m(Some("blocked"), None).is_active());
        assert!(!m(None, None).is_active());
    }
}
