//! GitHub (and GitHub Enterprise) through octocrab's transport. octocrab supplies the
//! HTTP client, the base URL and authentication — a token, or a GitHub App whose JWT is
//! exchanged for an installation token per repository and cached by octocrab until
//! shortly before it expires. Requests are made with octocrab's raw `_get`/`_post`/
//! `_patch` so that this module sees every status and header: it classifies errors
//! (5xx, 429 and secondary rate limits are retryable), follows pagination, and runs
//! every call through [`with_retries`]. octocrab's own retry layer is switched off so
//! retries happen in one place.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use base64::Engine;
use http::{HeaderMap, Method, StatusCode};
use octocrab::models::{AppId, InstallationId};
use octocrab::service::middleware::retry::RetryConfig;
use octocrab::Octocrab;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use super::retry::{with_retries, ForgeRetryPolicy};
use super::{
    truncate_chars, CheckRun, CommentRef, Forge, ForgeError, IssueRef, Permission, PullRequestInfo,
    RepoId, StatusState, COMMENT_BODY_LIMIT, ISSUE_TITLE_LIMIT, OPEN_RETRY_SCAN_LIMIT,
    STATUS_DESCRIPTION_LIMIT,
};
use crate::event::{ForgeKind, UserRef};

/// The public GitHub API.
pub const DEFAULT_API_URL: &str = "https://api.github.com";

/// Items per page of a list call (GitHub's maximum).
const PER_PAGE: usize = 100;

/// A list longer than this many pages is refused rather than read forever.
const MAX_PAGES: usize = 100;

/// GitHub lists at most this many files of a pull request.
const PR_FILES_LIMIT: usize = 3000;

/// How the bot authenticates to GitHub.
#[derive(Clone)]
pub enum GitHubAuth {
    /// A personal access token or an installation token.
    Token(String),
    /// A GitHub App: a JWT signed with the App's private key is exchanged for an
    /// installation token for each repository.
    App {
        app_id: u64,
        private_key_pem: String,
    },
}

impl std::fmt::Debug for GitHubAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GitHubAuth::Token(_) => f.write_str("GitHubAuth::Token([REDACTED])"),
            GitHubAuth::App { app_id, .. } => f
                .debug_struct("GitHubAuth::App")
                .field("app_id", app_id)
                .field("private_key_pem", &"[REDACTED]")
                .finish(),
        }
    }
}

/// Clients are shared through `Arc`, never cloned: a cloned `Octocrab` gets its own
/// copy of the cached installation token, so a clone per call would mint a token per
/// call.
enum Clients {
    Token(Arc<Octocrab>),
    App {
        /// Authenticates with the App's JWT: finds installations.
        app: Arc<Octocrab>,
        /// Installation clients by repository (`owner/name`, lower case).
        by_repo: Mutex<HashMap<String, Arc<Octocrab>>>,
        /// Installation clients by installation id, shared by repositories.
        by_installation: Mutex<HashMap<u64, Arc<Octocrab>>>,
    },
}

pub struct GitHubForge {
    api_url: String,
    clients: Clients,
    /// Credentials to scrub from every error message.
    secrets: Vec<String>,
    policy: ForgeRetryPolicy,
    /// The login the bot comments as, once known.
    bot_login: Mutex<Option<String>>,
    /// The App we authenticate as (`None` with a token).
    app_id: Option<u64>,
}

impl std::fmt::Debug for GitHubForge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let auth = match self.clients {
            Clients::Token(_) => "token",
            Clients::App { .. } => "app",
        };
        f.debug_struct("GitHubForge")
            .field("api_url", &self.api_url)
            .field("auth", &auth)
            .field("policy", &self.policy)
            .finish()
    }
}

/// One answered request.
struct Reply {
    headers: HeaderMap,
    body: String,
}

impl GitHubForge {
    /// A client of the GitHub API at `api_url` (`https://api.github.com`, or
    /// `https://HOST/api/v3` for GitHub Enterprise Server).
    pub fn new(api_url: &str, auth: GitHubAuth) -> Result<Self, ForgeError> {
        let api_url = api_url.trim().trim_end_matches('/').to_string();
        let uri: http::Uri = api_url.parse().map_err(|_| {
            ForgeError::permanent(
                None,
                format!("the GitHub API URL {api_url:?} is not a valid URL"),
            )
        })?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(ForgeError::permanent(
                None,
                format!("the GitHub API URL {api_url:?} must be an http(s) URL with a host"),
            ));
        }
        let builder = Octocrab::builder()
            .base_uri(uri)
            .map_err(|_| {
                ForgeError::permanent(
                    None,
                    format!("the GitHub API URL {api_url:?} is not a valid URL"),
                )
            })?
            .add_retry_config(RetryConfig::None)
            .set_connect_timeout(Some(Duration::from_secs(10)))
            .set_read_timeout(Some(Duration::from_secs(60)));
        let build_error =
            |_: octocrab::Error| ForgeError::permanent(None, "could not build the GitHub client");
        let app_id = match &auth {
            GitHubAuth::App { app_id, .. } => Some(*app_id),
            GitHubAuth::Token(_) => None,
        };
        let (clients, secrets) = match auth {
            GitHubAuth::Token(token) => {
                if token.trim().is_empty() {
                    return Err(ForgeError::permanent(None, "the GitHub token is empty"));
                }
                let client = builder
                    .personal_token(token.clone())
                    .build()
                    .map_err(build_error)?;
                (Clients::Token(Arc::new(client)), vec![token])
            }
            GitHubAuth::App {
                app_id,
                private_key_pem,
            } => {
                let key = octocrab::EncodingKey::from_rsa_pem(private_key_pem.as_bytes()).map_err(
                    |_| {
                        ForgeError::permanent(
                            None,
                            "the GitHub App private key is not an RSA private key in PEM format",
                        )
                    },
                )?;
                let app = builder
                    .app(AppId(app_id), key)
                    .build()
                    .map_err(build_error)?;
                (
                    Clients::App {
                        app: Arc::new(app),
                        by_repo: Mutex::new(HashMap::new()),
                        by_installation: Mutex::new(HashMap::new()),
                    },
                    Vec::new(),
                )
            }
        };
        Ok(Self {
            api_url,
            clients,
            secrets,
            policy: ForgeRetryPolicy::default(),
            bot_login: Mutex::new(None),
            app_id,
        })
    }

    /// Replaces the retry policy (tests use [`ForgeRetryPolicy::fast`]).
    pub fn with_retry_policy(mut self, policy: ForgeRetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    pub fn api_url(&self) -> &str {
        &self.api_url
    }

    fn scrub(&self, error: ForgeError) -> ForgeError {
        let secrets: Vec<&str> = self.secrets.iter().map(String::as_str).collect();
        error.scrubbed(&secrets)
    }

    // ---- transport -------------------------------------------------------------

    /// The client that acts on `repo`: the token client, or the App's installation
    /// client for the repository's owner.
    async fn client_for(&self, repo: &RepoId) -> Result<Arc<Octocrab>, ForgeError> {
        let (app, by_repo, by_installation) = match &self.clients {
            Clients::Token(client) => return Ok(Arc::clone(client)),
            Clients::App {
                app,
                by_repo,
                by_installation,
            } => (app, by_repo, by_installation),
        };
        let key = repo.full_name.to_ascii_lowercase();
        if let Some(client) = lock(by_repo).get(&key) {
            return Ok(Arc::clone(client));
        }
        #[derive(Deserialize)]
        struct Installation {
            id: u64,
        }
        let path = format!("{}/installation", repo_path(repo)?);
        let installation: Installation = match self.call(app, Method::GET, &path, None).await {
            Ok(reply) => decode(&reply, &what(&Method::GET, &path))?,
            Err(e) if e.is_not_found() => {
                return Err(ForgeError::permanent(
                    Some(404),
                    format!("the GitHub App is not installed on {}", repo.full_name),
                ))
            }
            Err(e) => return Err(e),
        };
        let client = {
            let mut installations = lock(by_installation);
            match installations.get(&installation.id) {
                Some(client) => Arc::clone(client),
                None => {
                    let client = Arc::new(
                        app.installation(InstallationId(installation.id))
                            .map_err(|e| self.octocrab_error("GitHub App installation", e))?,
                    );
                    installations.insert(installation.id, Arc::clone(&client));
                    client
                }
            }
        };
        lock(by_repo).insert(key, Arc::clone(&client));
        Ok(client)
    }

    /// Forgets the installation client of `repo` (after a 401: the App may have been
    /// reinstalled under another installation id).
    fn forget_installation(&self, repo: &RepoId) {
        if let Clients::App { by_repo, .. } = &self.clients {
            lock(by_repo).remove(&repo.full_name.to_ascii_lowercase());
        }
    }

    /// One request, no retry. Non-2xx answers become classified errors.
    async fn send(
        &self,
        client: &Octocrab,
        method: &Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Reply, ForgeError> {
        let what = what(method, path);
        let response = if *method == Method::GET {
            client._get(path).await
        } else if *method == Method::POST {
            client._post(path, body).await
        } else if *method == Method::PATCH {
            client._patch(path, body).await
        } else {
            return Err(ForgeError::permanent(
                None,
                format!("{what}: method not supported"),
            ));
        }
        .map_err(|e| self.octocrab_error(&what, e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = client
            .body_to_string(response)
            .await
            .map_err(|e| self.octocrab_error(&what, e))?;
        if status.is_success() {
            Ok(Reply { headers, body })
        } else {
            let message = error_message(status, &body);
            Err(self.scrub(self.classify(&what, status, &headers, &message)))
        }
    }

    /// One request, retried by the policy.
    async fn call(
        &self,
        client: &Octocrab,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Reply, ForgeError> {
        let what = what(&method, path);
        with_retries(&self.policy, &what, || {
            self.send(client, &method, path, body)
        })
        .await
    }

    /// `call` (or `send` when `retry` is false) for the repository's client, forgetting
    /// a stale App installation on 401.
    /// `pull_request.base.sha` is the target's tip when the PR was last updated, not
    /// where the PR branched; the compare API names the merge base. (`per_page=1`: only
    /// the merge base is needed, not the commit list.)
    async fn merge_base(
        &self,
        repo: &RepoId,
        base: &str,
        head: &str,
    ) -> Result<String, ForgeError> {
        #[derive(Deserialize)]
        struct Sha {
            sha: String,
        }
        #[derive(Deserialize)]
        struct CompareWire {
            merge_base_commit: Sha,
        }
        let path = format!(
            "{}/compare/{}...{}?per_page=1",
            repo_path(repo)?,
            encode_segment(base),
            encode_segment(head)
        );
        let reply = self.repo_call(repo, Method::GET, &path, None).await?;
        let compare: CompareWire = decode(&reply, &what(&Method::GET, &path))?;
        Ok(compare.merge_base_commit.sha)
    }

    async fn repo_call(
        &self,
        repo: &RepoId,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Reply, ForgeError> {
        let client = self.client_for(repo).await?;
        let result = self.call(&client, method, path, body).await;
        if matches!(&result, Err(e) if e.status() == Some(401)) {
            self.forget_installation(repo);
        }
        result
    }

    /// Every item of a paginated list: `per_page=100&page=N` until the `Link` header
    /// has no `rel="next"` (or, without a `Link` header, until a short page). Each page
    /// is retried by the policy when `retry` is set.
    async fn get_all<T: DeserializeOwned>(
        &self,
        client: &Octocrab,
        path: &str,
        retry: bool,
    ) -> Result<Vec<T>, ForgeError> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut items = Vec::new();
        for page in 1..=MAX_PAGES {
            let page_path = format!("{path}{sep}per_page={PER_PAGE}&page={page}");
            let reply = if retry {
                self.call(client, Method::GET, &page_path, None).await?
            } else {
                self.send(client, &Method::GET, &page_path, None).await?
            };
            let batch: Vec<T> = decode(&reply, &what(&Method::GET, &page_path))?;
            let count = batch.len();
            items.extend(batch);
            let more = match link_has_next(&reply.headers) {
                Some(next) => next,
                None => count >= PER_PAGE,
            };
            if !more || count == 0 {
                return Ok(items);
            }
        }
        Err(ForgeError::permanent(
            None,
            format!("{}: more than {MAX_PAGES} pages", what(&Method::GET, path)),
        ))
    }

    // ---- errors ----------------------------------------------------------------

    /// Retryable: 5xx, 408, 429, and a 403 that is a rate limit (a `Retry-After`
    /// header, `x-ratelimit-remaining: 0`, or a message saying so). The rest is
    /// permanent.
    fn classify(
        &self,
        what: &str,
        status: StatusCode,
        headers: &HeaderMap,
        message: &str,
    ) -> ForgeError {
        let code = status.as_u16();
        let text = format!("{what}: HTTP {code}: {message}");
        let retry_after = header_u64(headers, "retry-after").map(Duration::from_secs);
        let remaining = header_u64(headers, "x-ratelimit-remaining");
        let reset_wait = header_u64(headers, "x-ratelimit-reset").map(|reset| {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            Duration::from_secs(reset.saturating_sub(now).saturating_add(1))
        });
        let says_rate_limit = {
            let lower = message.to_ascii_lowercase();
            lower.contains("rate limit") || lower.contains("abuse")
        };
        let rate_limit_wait = self.policy.rate_limit_wait;
        match code {
            429 => ForgeError::retryable(
                Some(code),
                text,
                Some(retry_after.or(reset_wait).unwrap_or(rate_limit_wait)),
            ),
            403 if retry_after.is_some() => ForgeError::retryable(Some(code), text, retry_after),
            403 if remaining == Some(0) => ForgeError::retryable(
                Some(code),
                text,
                Some(reset_wait.unwrap_or(rate_limit_wait)),
            ),
            403 if says_rate_limit => {
                ForgeError::retryable(Some(code), text, Some(rate_limit_wait))
            }
            408 | 500..=599 => ForgeError::retryable(Some(code), text, retry_after),
            _ => ForgeError::permanent(Some(code), text),
        }
    }

    fn octocrab_error(&self, what: &str, error: octocrab::Error) -> ForgeError {
        let error = match error {
            octocrab::Error::GitHub { source, .. } => {
                let headers = source.headers.clone().unwrap_or_default();
                let mut message = source.message.clone();
                if let Some(detail) = source.errors.as_deref().and_then(summarise_errors) {
                    message = format!("{message} ({detail})");
                }
                self.classify(what, source.status_code, &headers, &message)
            }
            octocrab::Error::Hyper { source, .. } => ForgeError::retryable(
                None,
                format!("{what}: connection error: {}", error_chain(&source)),
                None,
            ),
            octocrab::Error::Service { source, .. } => ForgeError::retryable(
                None,
                format!("{what}: connection error: {}", error_chain(source.as_ref())),
                None,
            ),
            octocrab::Error::JWT { .. } => ForgeError::permanent(
                None,
                format!("{what}: could not sign the GitHub App token (JWT)"),
            ),
            octocrab::Error::InvalidUtf8 { .. } => {
                ForgeError::permanent(None, format!("{what}: the response is not UTF-8"))
            }
            other => {
                // Some octocrab errors append a backtrace to their message: keep the
                // first line only.
                let text = other.to_string();
                let first = text.lines().next().unwrap_or("").trim().to_string();
                ForgeError::permanent(None, format!("{what}: {first}"))
            }
        };
        self.scrub(error)
    }

    // ---- identity --------------------------------------------------------------

    /// The login the bot comments as: `GET /user` with a token, `{slug}[bot]` from
    /// `GET /app` as an App. `None` when it cannot be found out (an installation token
    /// cannot call `GET /user`); then it is learnt from the first comment created.
    async fn bot_login(&self) -> Option<String> {
        if let Some(login) = lock(&self.bot_login).clone() {
            return Some(login);
        }
        let found = match &self.clients {
            Clients::Token(client) => {
                #[derive(Deserialize)]
                struct User {
                    login: String,
                }
                self.call(client, Method::GET, "/user", None)
                    .await
                    .and_then(|reply| decode::<User>(&reply, "GitHub GET /user"))
                    .map(|user| user.login)
            }
            Clients::App { app, .. } => {
                #[derive(Deserialize)]
                struct App {
                    slug: String,
                }
                self.call(app, Method::GET, "/app", None)
                    .await
                    .and_then(|reply| decode::<App>(&reply, "GitHub GET /app"))
                    .map(|app| format!("{}[bot]", app.slug))
            }
        };
        match found {
            Ok(login) => {
                *lock(&self.bot_login) = Some(login.clone());
                Some(login)
            }
            Err(e) => {
                tracing::warn!("could not find out the bot's GitHub login: {e}");
                None
            }
        }
    }

    fn learn_login(&self, user: Option<&UserWire>) {
        if let Some(user) = user {
            let mut known = lock(&self.bot_login);
            if known.is_none() {
                *known = Some(user.login.clone());
            }
        }
    }

    /// One try at the sticky comment: list, then edit ours or create it. No retries
    /// inside, so that a retry after a failed write looks for the comment again and
    /// never creates a second one.
    async fn upsert_once(
        &self,
        client: &Octocrab,
        repo_path: &str,
        number: u64,
        marker: &str,
        body: &str,
        login: Option<&str>,
    ) -> Result<CommentRef, ForgeError> {
        let list_path = format!("{repo_path}/issues/{number}/comments");
        let comments: Vec<CommentWire> = self.get_all(client, &list_path, false).await?;
        let ours = comments.iter().find(|c| {
            c.body.as_deref().is_some_and(|b| b.contains(marker))
                && match login {
                    Some(login) => c
                        .user
                        .as_ref()
                        .is_some_and(|u| u.login.eq_ignore_ascii_case(login)),
                    None => true,
                }
        });
        let payload = json!({ "body": body });
        match ours {
            Some(existing) if existing.body.as_deref() == Some(body) => Ok(existing.to_ref()),
            Some(existing) => {
                let path = format!("{repo_path}/issues/comments/{}", existing.id);
                let reply = self
                    .send(client, &Method::PATCH, &path, Some(&payload))
                    .await?;
                let edited: CommentWire = decode(&reply, &what(&Method::PATCH, &path))?;
                Ok(edited.to_ref())
            }
            None => {
                let reply = self
                    .send(client, &Method::POST, &list_path, Some(&payload))
                    .await?;
                let created: CommentWire = decode(&reply, &what(&Method::POST, &list_path))?;
                self.learn_login(created.user.as_ref());
                Ok(created.to_ref())
            }
        }
    }

    /// Looks through the newest issues (`state=all`, newest first, PRs skipped) for one
    /// whose body contains `marker` and, when `login` is known, that `login` opened;
    /// stops at the first hit or after `limit` listed items. Each page is retried by the
    /// policy when `retry` is set.
    #[allow(clippy::too_many_arguments)]
    async fn scan_issues(
        &self,
        client: &Octocrab,
        repo_path: &str,
        marker: &str,
        labels: &[String],
        limit: usize,
        login: Option<&str>,
        retry: bool,
    ) -> Result<Option<IssueRef>, ForgeError> {
        if limit == 0 {
            return Ok(None);
        }
        let per_page = limit.min(PER_PAGE);
        let labels = super::label_list(labels);
        let label_filter = if labels.is_empty() {
            String::new()
        } else {
            format!("&labels={}", encode_segment(&labels.join(",")))
        };
        let mut read = 0;
        for page in 1..=MAX_PAGES {
            let page_path = format!(
                "{repo_path}/issues?state=all&sort=created&direction=desc{label_filter}\
                 &per_page={per_page}&page={page}"
            );
            let reply = if retry {
                self.call(client, Method::GET, &page_path, None).await?
            } else {
                self.send(client, &Method::GET, &page_path, None).await?
            };
            let batch: Vec<IssueWire> = decode(&reply, &what(&Method::GET, &page_path))?;
            let count = batch.len();
            let hit = batch
                .iter()
                .take(limit - read)
                .find(|issue| issue.is_ours(marker, login));
            if let Some(issue) = hit {
                return Ok(Some(issue.to_ref()));
            }
            read += count;
            let more = match link_has_next(&reply.headers) {
                Some(next) => next,
                None => count >= per_page,
            };
            if !more || count == 0 || read >= limit {
                break;
            }
        }
        Ok(None)
    }

    /// The files of the tree at `sha`, walking it one level at a time (for trees too
    /// large for one recursive listing).
    async fn walk_tree(
        &self,
        client: &Octocrab,
        repo_path: &str,
        sha: &str,
    ) -> Result<Vec<String>, ForgeError> {
        let mut files = Vec::new();
        let mut pending = vec![(String::new(), sha.to_string())];
        while let Some((prefix, tree_sha)) = pending.pop() {
            let path = format!("{repo_path}/git/trees/{}", encode_segment(&tree_sha));
            let reply = self.call(client, Method::GET, &path, None).await?;
            let tree: TreeWire = decode(&reply, &what(&Method::GET, &path))?;
            if tree.truncated {
                return Err(ForgeError::permanent(
                    None,
                    format!(
                        "{}: the tree {prefix:?} is too large to list",
                        what(&Method::GET, &path)
                    ),
                ));
            }
            for entry in tree.tree {
                let full = format!("{prefix}{}", entry.path);
                match entry.kind.as_str() {
                    "blob" => files.push(full),
                    "tree" => pending.push((format!("{full}/"), entry.sha)),
                    _ => {}
                }
            }
        }
        files.sort();
        Ok(files)
    }

    async fn read_blob(
        &self,
        repo: &RepoId,
        repo_path: &str,
        blob_sha: &str,
    ) -> Result<Vec<u8>, ForgeError> {
        #[derive(Deserialize)]
        struct Blob {
            content: String,
            encoding: String,
        }
        let path = format!("{repo_path}/git/blobs/{}", encode_segment(blob_sha));
        let reply = self.repo_call(repo, Method::GET, &path, None).await?;
        let what = what(&Method::GET, &path);
        let blob: Blob = decode(&reply, &what)?;
        match blob.encoding.as_str() {
            "base64" => decode_base64(&blob.content, &what),
            "utf-8" | "utf8" => Ok(blob.content.into_bytes()),
            other => Err(ForgeError::permanent(
                None,
                format!("{what}: unexpected blob encoding {other:?}"),
            )),
        }
    }
}

#[async_trait]
impl Forge for GitHubForge {
    fn kind(&self) -> ForgeKind {
        ForgeKind::Github
    }

    async fn pull_request(
        &self,
        repo: &RepoId,
        number: u64,
    ) -> Result<PullRequestInfo, ForgeError> {
        let path = format!("{}/pulls/{number}", repo_path(repo)?);
        let reply = self.repo_call(repo, Method::GET, &path, None).await?;
        let pull: PullWire = decode(&reply, &what(&Method::GET, &path))?;
        let mut info = pull.into_info(repo);
        info.merge_base_sha = self
            .merge_base(repo, &info.base_sha, &info.head_sha)
            .await?;
        Ok(info)
    }

    async fn pull_requests_for_sha(
        &self,
        repo: &RepoId,
        sha: &str,
    ) -> Result<Vec<u64>, ForgeError> {
        let path = format!("{}/commits/{}/pulls", repo_path(repo)?, encode_segment(sha));
        let client = self.client_for(repo).await?;
        let pulls: Vec<PullWire> = self.get_all(&client, &path, true).await?;
        let mut numbers: Vec<u64> = pulls
            .into_iter()
            .filter(|p| p.state.as_deref().is_none_or(|s| s == "open"))
            .filter(|p| p.head.sha == sha)
            .filter(|p| {
                p.base
                    .repo
                    .as_ref()
                    .is_none_or(|r| r.full_name.eq_ignore_ascii_case(&repo.full_name))
            })
            .map(|p| p.number)
            .collect();
        numbers.sort_unstable();
        numbers.dedup();
        Ok(numbers)
    }

    async fn changed_files(&self, repo: &RepoId, number: u64) -> Result<Vec<String>, ForgeError> {
        #[derive(Deserialize)]
        struct FileWire {
            filename: String,
            previous_filename: Option<String>,
        }
        let path = format!("{}/pulls/{number}/files", repo_path(repo)?);
        let client = self.client_for(repo).await?;
        let files: Vec<FileWire> = self.get_all(&client, &path, true).await?;
        if files.len() >= PR_FILES_LIMIT {
            // GitHub stops listing at 3000 files: an evaluation scoped to a partial list
            // could pass what it never saw.
            return Err(ForgeError::permanent(
                None,
                format!(
                    "pull request #{number} of {} changes {PR_FILES_LIMIT} files or more, \
                     more than GitHub lists; split it to evaluate it",
                    repo.full_name
                ),
            ));
        }
        let mut seen = HashSet::new();
        let mut paths = Vec::new();
        for file in files {
            for path in std::iter::once(file.filename).chain(file.previous_filename) {
                if seen.insert(path.clone()) {
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
        let repo_path = repo_path(repo)?;
        let url = format!(
            "{repo_path}/contents/{}?ref={}",
            encode_path(file),
            encode_segment(sha)
        );
        let what = what(&Method::GET, &url);
        let reply = match self.repo_call(repo, Method::GET, &url, None).await {
            Ok(reply) => reply,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e),
        };
        let value: Value = decode(&reply, &what)?;
        if value.is_array() {
            // A directory.
            return Ok(None);
        }
        let item: ContentWire = serde_json::from_value(value).map_err(|e| {
            ForgeError::permanent(None, format!("{what}: unexpected response: {e}"))
        })?;
        match item.kind.as_str() {
            "file" => {
                let content = item.content.unwrap_or_default();
                let inline = item.encoding.as_deref() == Some("base64")
                    && (!content.is_empty() || item.size == 0);
                if inline {
                    decode_base64(&content, &what).map(Some)
                } else {
                    // Over 1 MB the contents API leaves `content` empty
                    // (`encoding: none`); the blob API serves up to 100 MB.
                    self.read_blob(repo, &repo_path, &item.sha).await.map(Some)
                }
            }
            // A symlink pointing outside the repository: its blob is the target path.
            "symlink" => Ok(item.target.map(String::into_bytes)),
            _ => Ok(None),
        }
    }

    async fn list_files(&self, repo: &RepoId, sha: &str) -> Result<Vec<String>, ForgeError> {
        let repo_path = repo_path(repo)?;
        let path = format!("{repo_path}/git/trees/{}?recursive=1", encode_segment(sha));
        let client = self.client_for(repo).await?;
        let reply = self.call(&client, Method::GET, &path, None).await?;
        let tree: TreeWire = decode(&reply, &what(&Method::GET, &path))?;
        if tree.truncated {
            tracing::info!(
                "the tree of {} at {sha} is too large for one listing; walking it",
                repo.full_name
            );
            return self.walk_tree(&client, &repo_path, sha).await;
        }
        let mut files: Vec<String> = tree
            .tree
            .into_iter()
            .filter(|e| e.kind == "blob")
            .map(|e| e.path)
            .collect();
        files.sort();
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
        let path = format!("{}/statuses/{}", repo_path(repo)?, encode_segment(sha));
        let mut payload = json!({
            "state": state.as_str(),
            "context": context,
            "description": truncate_chars(description, STATUS_DESCRIPTION_LIMIT),
        });
        if let (Some(url), Some(map)) = (target_url, payload.as_object_mut()) {
            map.insert("target_url".into(), Value::String(url.to_string()));
        }
        self.repo_call(repo, Method::POST, &path, Some(&payload))
            .await
            .map(|_| ())
    }

    async fn latest_status(
        &self,
        repo: &RepoId,
        sha: &str,
        context: &str,
    ) -> Result<Option<(StatusState, String)>, ForgeError> {
        // Newest first; a context's latest is its first entry. One page of 100 holds
        // it unless the commit has had 100 newer statuses of other contexts.
        let path = format!(
            "{}/commits/{}/statuses?per_page=100",
            repo_path(repo)?,
            encode_segment(sha)
        );
        let reply = self.repo_call(repo, Method::GET, &path, None).await?;
        let statuses: Vec<StatusWire> = decode(&reply, &what(&Method::GET, &path))?;
        Ok(statuses
            .into_iter()
            .find(|s| s.context == context)
            .and_then(|s| {
                StatusState::from_github(&s.state).map(|st| (st, s.description.unwrap_or_default()))
            }))
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
        let repo_path = repo_path(repo)?;
        let body = sticky_body(marker, body);
        let client = self.client_for(repo).await?;
        let login = self.bot_login().await;
        let what = format!("GitHub sticky comment on {}#{number}", repo.full_name);
        let result = with_retries(&self.policy, &what, || {
            self.upsert_once(&client, &repo_path, number, marker, &body, login.as_deref())
        })
        .await;
        if matches!(&result, Err(e) if e.status() == Some(401)) {
            self.forget_installation(repo);
        }
        result
    }

    async fn post_comment(
        &self,
        repo: &RepoId,
        number: u64,
        body: &str,
    ) -> Result<CommentRef, ForgeError> {
        let path = format!("{}/issues/{number}/comments", repo_path(repo)?);
        let payload = json!({ "body": limit_body(body, COMMENT_BODY_LIMIT) });
        let reply = self
            .repo_call(repo, Method::POST, &path, Some(&payload))
            .await?;
        let created: CommentWire = decode(&reply, &what(&Method::POST, &path))?;
        Ok(created.to_ref())
    }

    async fn permission(&self, repo: &RepoId, user: &UserRef) -> Result<Permission, ForgeError> {
        if user.login.is_empty() {
            return Ok(Permission::None);
        }
        #[derive(Deserialize)]
        struct Wire {
            permission: String,
            role_name: Option<String>,
            user: Option<IdWire>,
        }
        let path = format!(
            "{}/collaborators/{}/permission",
            repo_path(repo)?,
            encode_segment(&user.login)
        );
        let wire: Wire = match self.repo_call(repo, Method::GET, &path, None).await {
            Ok(reply) => decode(&reply, &what(&Method::GET, &path))?,
            Err(e) if e.is_not_found() => return Ok(Permission::None),
            Err(e) => return Err(e),
        };
        // The login may have been renamed and re-registered since the event: the
        // permission belongs to whoever holds the login now.
        if wire.user.as_ref().map(|u| u.id) != Some(user.id) {
            return Ok(Permission::None);
        }
        // `role_name` distinguishes maintain and triage, which `permission` folds into
        // write and read.
        let role = Permission::from_github(wire.role_name.as_deref().unwrap_or(""));
        Ok(role.max(Permission::from_github(&wire.permission)))
    }

    async fn is_group_member(
        &self,
        repo: &RepoId,
        group: &str,
        user: &UserRef,
    ) -> Result<bool, ForgeError> {
        let Some((org, team)) = group.split_once('/') else {
            return Err(ForgeError::permanent(
                None,
                format!("{group:?} is not a GitHub team: write it as @org/team-slug"),
            ));
        };
        if user.login.is_empty() {
            return Ok(false);
        }
        #[derive(Deserialize)]
        struct Wire {
            state: String,
        }
        let path = format!(
            "/orgs/{}/teams/{}/memberships/{}",
            encode_segment(org),
            encode_segment(team),
            encode_segment(&user.login)
        );
        let wire: Wire = match self.repo_call(repo, Method::GET, &path, None).await {
            Ok(reply) => decode(&reply, &what(&Method::GET, &path))?,
            Err(e) if e.is_not_found() => return Ok(false),
            Err(e) => return Err(e),
        };
        if wire.state != "active" {
            return Ok(false);
        }
        // The membership API is by login: make sure the login is still this account.
        Ok(self.user_id(repo, &user.login).await? == Some(user.id))
    }

    async fn user_id(&self, repo: &RepoId, login: &str) -> Result<Option<u64>, ForgeError> {
        let path = format!("/users/{}", encode_segment(login));
        match self.repo_call(repo, Method::GET, &path, None).await {
            Ok(reply) => Ok(Some(
                decode::<IdWire>(&reply, &what(&Method::GET, &path))?.id,
            )),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn acknowledge(
        &self,
        repo: &RepoId,
        _number: u64,
        comment_id: u64,
    ) -> Result<(), ForgeError> {
        let path = format!(
            "{}/issues/comments/{comment_id}/reactions",
            repo_path(repo)?
        );
        let payload = json!({ "content": "eyes" });
        self.repo_call(repo, Method::POST, &path, Some(&payload))
            .await
            .map(|_| ())
    }

    async fn approve(
        &self,
        repo: &RepoId,
        number: u64,
        sha: &str,
        body: &str,
    ) -> Result<(), ForgeError> {
        let path = format!("{}/pulls/{number}/reviews", repo_path(repo)?);
        let payload = json!({
            "commit_id": sha,
            "event": "APPROVE",
            "body": limit_body(body, COMMENT_BODY_LIMIT),
        });
        self.repo_call(repo, Method::POST, &path, Some(&payload))
            .await
            .map(|_| ())
    }

    async fn find_issue(
        &self,
        repo: &RepoId,
        marker: &str,
        labels: &[String],
        limit: usize,
    ) -> Result<Option<IssueRef>, ForgeError> {
        super::check_marker(marker)?;
        let repo_path = repo_path(repo)?;
        let client = self.client_for(repo).await?;
        let login = self.bot_login().await;
        let result = self
            .scan_issues(
                &client,
                &repo_path,
                marker,
                labels,
                limit,
                login.as_deref(),
                true,
            )
            .await;
        if matches!(&result, Err(e) if e.status() == Some(401)) {
            self.forget_installation(repo);
        }
        result
    }

    async fn issue(&self, repo: &RepoId, number: u64) -> Result<Option<IssueRef>, ForgeError> {
        let path = format!("{}/issues/{number}", repo_path(repo)?);
        let reply = match self.repo_call(repo, Method::GET, &path, None).await {
            Ok(reply) => reply,
            // 410: the issue was deleted (or issues were switched off).
            Err(e) if matches!(e.status(), Some(404 | 410)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let issue: IssueWire = decode(&reply, &what(&Method::GET, &path))?;
        // A pull request shares the number space; it is not an issue of ours.
        Ok((issue.pull_request.is_none()).then(|| issue.to_ref()))
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
        let repo_path = repo_path(repo)?;
        let path = format!("{repo_path}/issues");
        let mut payload = json!({ "title": title, "body": sticky_body(marker, body) });
        let labels = super::label_list(labels);
        if let (false, Some(map)) = (labels.is_empty(), payload.as_object_mut()) {
            map.insert("labels".into(), json!(labels));
        }
        let client = self.client_for(repo).await?;
        let login = self.bot_login().await;
        let attempts = AtomicU32::new(0);
        let what_open = format!("GitHub open issue on {}", repo.full_name);
        let result = with_retries(&self.policy, &what_open, || async {
            if attempts.fetch_add(1, Ordering::SeqCst) > 0 {
                // The failed attempt may have created it (a 502 after the write): look
                // before writing again. Unlabelled, in case labels were dropped.
                let found = self
                    .scan_issues(
                        &client,
                        &repo_path,
                        marker,
                        &[],
                        OPEN_RETRY_SCAN_LIMIT,
                        login.as_deref(),
                        false,
                    )
                    .await?;
                if let Some(found) = found {
                    return Ok(found);
                }
            }
            let reply = self
                .send(&client, &Method::POST, &path, Some(&payload))
                .await?;
            let created: IssueWire = decode(&reply, &what(&Method::POST, &path))?;
            self.learn_login(created.user.as_ref());
            Ok(created.to_ref())
        })
        .await;
        if matches!(&result, Err(e) if e.status() == Some(401)) {
            self.forget_installation(repo);
        }
        result
    }

    async fn comment_on_issue(
        &self,
        repo: &RepoId,
        number: u64,
        body: &str,
    ) -> Result<(), ForgeError> {
        // Issues and pull requests share the comments endpoint.
        self.post_comment(repo, number, body).await.map(|_| ())
    }

    async fn post_check_run(&self, repo: &RepoId, check: &CheckRun) -> Result<(), ForgeError> {
        if self.app_id.is_none() {
            // Only a GitHub App may write check runs; the commit status says it all.
            return Ok(());
        }
        let repo_path = repo_path(repo)?;
        let mut payload = json!({
            "name": check.name,
            "head_sha": check.head_sha,
            "output": {
                "title": truncate_chars(&check.title, 255),
                "summary": truncate_chars(&check.summary, CHECK_SUMMARY_LIMIT),
            },
        });
        if let Some(map) = payload.as_object_mut() {
            let (status, conclusion) = match check.state {
                StatusState::Pending => ("in_progress", None),
                StatusState::Success => ("completed", Some("success")),
                StatusState::Failure | StatusState::Error => ("completed", Some("failure")),
            };
            map.insert("status".into(), json!(status));
            if let Some(conclusion) = conclusion {
                map.insert("conclusion".into(), json!(conclusion));
            }
            if let Some(url) = &check.details_url {
                map.insert("details_url".into(), json!(url));
            }
        }
        // Update our check run of that name on the commit when there is one, so a
        // commit shows one run per name.
        #[derive(Deserialize)]
        struct Runs {
            check_runs: Vec<IdWire>,
        }
        let list = format!(
            "{repo_path}/commits/{}/check-runs?check_name={}&app_id={}",
            encode_segment(&check.head_sha),
            encode_segment(&check.name),
            self.app_id.unwrap_or_default()
        );
        let existing: Runs = decode(
            &self.repo_call(repo, Method::GET, &list, None).await?,
            &what(&Method::GET, &list),
        )?;
        match existing.check_runs.first() {
            Some(run) => {
                let path = format!("{repo_path}/check-runs/{}", run.id);
                self.repo_call(repo, Method::PATCH, &path, Some(&payload))
                    .await
                    .map(|_| ())
            }
            None => {
                let path = format!("{repo_path}/check-runs");
                self.repo_call(repo, Method::POST, &path, Some(&payload))
                    .await
                    .map(|_| ())
            }
        }
    }

    fn app_id(&self) -> Option<u64> {
        self.app_id
    }
}

/// The longest check-run summary GitHub accepts, in characters.
const CHECK_SUMMARY_LIMIT: usize = 65_535;

// ---- wire types ------------------------------------------------------------------

#[derive(Deserialize)]
struct IdWire {
    id: u64,
}

#[derive(Deserialize)]
struct UserWire {
    login: String,
}

#[derive(Deserialize)]
struct CommentWire {
    id: u64,
    body: Option<String>,
    html_url: Option<String>,
    user: Option<UserWire>,
}

impl CommentWire {
    fn to_ref(&self) -> CommentRef {
        CommentRef {
            id: self.id.to_string(),
            url: self.html_url.clone(),
        }
    }
}

/// An item of the issues API: an issue, or a pull request (`pull_request` present).
#[derive(Deserialize)]
struct IssueWire {
    number: u64,
    #[serde(default)]
    html_url: String,
    #[serde(default)]
    state: String,
    body: Option<String>,
    user: Option<UserWire>,
    pull_request: Option<Value>,
}

impl IssueWire {
    /// An issue (not a PR) whose body has `marker`, opened by `login` when known.
    fn is_ours(&self, marker: &str, login: Option<&str>) -> bool {
        self.pull_request.is_none()
            && self.body.as_deref().is_some_and(|b| b.contains(marker))
            && login.is_none_or(|login| {
                self.user
                    .as_ref()
                    .is_some_and(|u| u.login.eq_ignore_ascii_case(login))
            })
    }

    fn to_ref(&self) -> IssueRef {
        IssueRef {
            number: self.number,
            url: self.html_url.clone(),
            open: self.state == "open",
        }
    }
}

#[derive(Deserialize)]
struct RepoWire {
    full_name: String,
}

#[derive(Deserialize)]
struct RefWire {
    #[serde(rename = "ref")]
    name: String,
    sha: String,
    repo: Option<RepoWire>,
}

#[derive(Deserialize)]
struct PullWire {
    number: u64,
    state: Option<String>,
    draft: Option<bool>,
    base: RefWire,
    head: RefWire,
}

impl PullWire {
    fn into_info(self, repo: &RepoId) -> PullRequestInfo {
        let base_repo = self
            .base
            .repo
            .map_or_else(|| repo.full_name.clone(), |r| r.full_name);
        let head_repo = self.head.repo.map(|r| r.full_name).unwrap_or_default();
        // A deleted head repository (empty name) counts as a fork.
        let is_fork = !head_repo.eq_ignore_ascii_case(&base_repo);
        PullRequestInfo {
            number: self.number,
            base_ref: self.base.name,
            merge_base_sha: self.base.sha.clone(),
            base_sha: self.base.sha,
            head_sha: self.head.sha,
            head_repo,
            is_fork,
            draft: self.draft.unwrap_or(false),
        }
    }
}

#[derive(Deserialize)]
struct ContentWire {
    #[serde(rename = "type")]
    kind: String,
    encoding: Option<String>,
    content: Option<String>,
    #[serde(default)]
    sha: String,
    #[serde(default)]
    size: u64,
    target: Option<String>,
}

#[derive(Deserialize)]
struct TreeEntryWire {
    path: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    sha: String,
}

#[derive(Deserialize)]
struct TreeWire {
    tree: Vec<TreeEntryWire>,
    #[serde(default)]
    truncated: bool,
}

// ---- helpers ---------------------------------------------------------------------

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `GitHub GET /repos/o/r/contents/x` (the query left out).
fn what(method: &Method, path: &str) -> String {
    let path = path.split('?').next().unwrap_or(path);
    format!("GitHub {method} {path}")
}

/// One entry of `GET /repos/{o}/{r}/commits/{ref}/statuses`.
#[derive(Deserialize)]
struct StatusWire {
    state: String,
    #[serde(default)]
    context: String,
    description: Option<String>,
}

fn decode<T: DeserializeOwned>(reply: &Reply, what: &str) -> Result<T, ForgeError> {
    serde_json::from_str(&reply.body)
        .map_err(|e| ForgeError::permanent(None, format!("{what}: unexpected response: {e}")))
}

fn decode_base64(content: &str, what: &str) -> Result<Vec<u8>, ForgeError> {
    let compact: String = content.split_ascii_whitespace().collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(|e| ForgeError::permanent(None, format!("{what}: bad base64 content: {e}")))
}

/// `/repos/{owner}/{name}`, each part percent-encoded.
fn repo_path(repo: &RepoId) -> Result<String, ForgeError> {
    match repo.full_name.split_once('/') {
        Some((owner, name)) if !owner.is_empty() && !name.is_empty() && !name.contains('/') => Ok(
            format!("/repos/{}/{}", encode_segment(owner), encode_segment(name)),
        ),
        _ => Err(ForgeError::permanent(
            None,
            format!(
                "{:?} is not a GitHub repository name (owner/name)",
                repo.full_name
            ),
        )),
    }
}

fn encode(text: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        let keep = byte.is_ascii_alphanumeric()
            || matches!(byte, b'-' | b'.' | b'_' | b'~')
            || (keep_slash && byte == b'/');
        if keep {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Percent-encodes one URL path segment (or query value).
fn encode_segment(text: &str) -> String {
    encode(text, false)
}

/// Percent-encodes a `/`-separated path, keeping the slashes.
fn encode_path(text: &str) -> String {
    encode(text, true)
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// `Some(true)` when a `Link` header has `rel="next"`, `Some(false)` when there are
/// `Link` headers without it, `None` when there is none.
fn link_has_next(headers: &HeaderMap) -> Option<bool> {
    let mut any = false;
    for value in headers.get_all(http::header::LINK) {
        any = true;
        let Ok(value) = value.to_str() else { continue };
        let next = value.split(',').any(|link| {
            link.split(';')
                .skip(1)
                .any(|param| matches!(param.trim(), "rel=\"next\"" | "rel=next"))
        });
        if next {
            return Some(true);
        }
    }
    any.then_some(false)
}

/// The message of a GitHub error body (`{message, errors}`), or the start of a body
/// that is not one (a proxy's HTML page), or the status's reason.
fn error_message(status: StatusCode, body: &str) -> String {
    #[derive(Deserialize)]
    struct ErrorBody {
        message: Option<String>,
        errors: Option<Vec<Value>>,
    }
    let reason = status.canonical_reason().unwrap_or("error").to_string();
    match serde_json::from_str::<ErrorBody>(body) {
        Ok(parsed) => {
            let mut message = parsed.message.unwrap_or(reason);
            if let Some(detail) = parsed.errors.as_deref().and_then(summarise_errors) {
                message = format!("{message} ({detail})");
            }
            truncate_chars(&message, 500)
        }
        Err(_) => {
            let trimmed = body.trim();
            if trimmed.is_empty() || trimmed.starts_with('<') {
                reason
            } else {
                truncate_chars(trimmed, 200)
            }
        }
    }
}

/// `Label.color: invalid; …` from a 422's `errors` array.
fn summarise_errors(errors: &[Value]) -> Option<String> {
    let parts: Vec<String> = errors
        .iter()
        .take(5)
        .filter_map(|e| match e {
            Value::String(s) => Some(s.clone()),
            Value::Object(map) => {
                if let Some(Value::String(m)) = map.get("message") {
                    return Some(m.clone());
                }
                let field = |k: &str| map.get(k).and_then(Value::as_str).unwrap_or("");
                let subject = match (field("resource"), field("field")) {
                    ("", "") => String::new(),
                    (r, "") => r.to_string(),
                    ("", f) => f.to_string(),
                    (r, f) => format!("{r}.{f}"),
                };
                match (subject.as_str(), field("code")) {
                    ("", "") => None,
                    ("", code) => Some(code.to_string()),
                    (subject, "") => Some(subject.to_string()),
                    (subject, code) => Some(format!("{subject}: {code}")),
                }
            }
            _ => None,
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join("; "))
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

/// The note a cut comment ends with.
const TRUNCATION_NOTE: &str = "\n\n_(truncated: longer than GitHub allows in a comment)_";

fn limit_body(body: &str, limit: usize) -> String {
    super::limit_body(body, limit, TRUNCATION_NOTE)
}

fn sticky_body(marker: &str, body: &str) -> String {
    super::sticky_body(marker, body, COMMENT_BODY_LIMIT, TRUNCATION_NOTE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_encoded() {
        assert_eq!(encode_path("prompts/a b#c?.md"), "prompts/a%20b%23c%3F.md");
        assert_eq!(encode_segment("feature/x"), "feature%2Fx");
        assert_eq!(encode_path("été.txt"), "%C3%A9t%C3%A9.txt");
        let repo = RepoId::new("octo-org/hello.world");
        assert_eq!(
            repo_path(&repo).ok().as_deref(),
            Some("/repos/octo-org/hello.world")
        );
        assert!(repo_path(&RepoId::new("no-slash")).is_err());
        assert!(repo_path(&RepoId::new("a/b/c")).is_err());
    }

    #[test]
    fn link_header_next() {
        let mut h = HeaderMap::new();
        assert_eq!(link_has_next(&h), None);
        h.insert(
            http::header::LINK,
            http::HeaderValue::from_static(
                "<https://api.github.com/x?page=2>; rel=\"next\", <https://api.github.com/x?page=5>; rel=\"last\"",
            ),
        );
        assert_eq!(link_has_next(&h), Some(true));
        h.insert(
            http::header::LINK,
            http::HeaderValue::from_static("<https://api.github.com/x?page=1>; rel=\"prev\""),
        );
        assert_eq!(link_has_next(&h), Some(false));
    }

    #[test]
    fn error_messages() {
        let body = r#"{"message":"Validation Failed","errors":[{"resource":"Label","code":"invalid","field":"color"}]}"#;
        assert_eq!(
            error_message(StatusCode::UNPROCESSABLE_ENTITY, body),
            "Validation Failed (Label.color: invalid)"
        );
        assert_eq!(
            error_message(StatusCode::BAD_GATEWAY, "<html>bad gateway</html>"),
            "Bad Gateway"
        );
        assert_eq!(error_message(StatusCode::BAD_GATEWAY, ""), "Bad Gateway");
    }

    #[test]
    fn sticky_body_keeps_marker_and_limit() {
        let marker = "<!-- promptgate -->";
        assert_eq!(sticky_body(marker, "hi"), format!("{marker}\nhi"));
        assert_eq!(
            sticky_body(marker, &format!("x {marker}")),
            format!("x {marker}")
        );
        let long = format!("{}{marker}", "a".repeat(70_000));
        let out = sticky_body(marker, &long);
        assert!(out.contains(marker));
        assert!(out.chars().count() <= COMMENT_BODY_LIMIT);
    }

    #[test]
    fn auth_debug_hides_secrets() {
        let t = format!("{:?}", GitHubAuth::Token("ghp_SECRET123".into()));
        assert!(!t.contains("SECRET"));
        let a = format!(
            "{:?}",
            GitHubAuth::App {
                app_id: 1,
                private_key_pem: "-----BEGIN KEY-----SECRET".into()
            }
        );
        assert!(!a.contains("SECRET"));
    }
}
