//! A fake GitLab (REST v4) for tests: an axum server on 127.0.0.1 whose one handler
//! routes requests over shared in-memory state — projects, merge requests with their
//! diff refs, files and trees per commit, notes with their authors, commit statuses,
//! award emojis, members, groups, users, approvals, and issues with their notes — so
//! tests assert on what GitLab
//! would hold. It checks the token (`PRIVATE-TOKEN` or `Authorization: Bearer`),
//! paginates with `X-Next-Page`, and answers the way GitLab does where GitLab is odd (a
//! repeated `pending` status is a 400, a repeated award a 404, an approval of a moved
//! head a 409, a repeated approval a 401). Failures are injected per route. JSON shapes
//! follow the recorded GitLab responses in the shared fixtures (merge request: atlantis;
//! note, status, member: the GitLab docs examples).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};

pub const TOKEN: &str = "glpat-FAKEtoken0123456789";

#[derive(Clone, Debug)]
pub struct User {
    pub id: u64,
    pub username: String,
    /// `active`, `blocked`, `deactivated`.
    pub state: String,
}

#[derive(Clone, Debug)]
pub struct Project {
    pub id: u64,
    pub path: String,
    pub default_branch: String,
}

#[derive(Clone, Debug)]
pub struct MergeRequest {
    pub project_id: u64,
    pub iid: u64,
    pub source_project_id: Option<u64>,
    pub source_branch: String,
    pub target_branch: String,
    pub sha: String,
    /// The merge base (`diff_refs.base_sha`).
    pub base_sha: String,
    /// The target's tip (`diff_refs.start_sha`); `None`: the merge base (not moved on).
    pub start_sha: Option<String>,
    /// `false` right after creation: GitLab answers `diff_refs: null`.
    pub diff_refs_ready: bool,
    /// `opened`, `closed`, `merged`.
    pub state: String,
    pub draft: bool,
    /// (old_path, new_path).
    pub diffs: Vec<(String, String)>,
    /// Earlier heads: the commit's merge requests list this MR for them too.
    pub previous_shas: Vec<String>,
}

impl MergeRequest {
    pub fn new(project_id: u64, iid: u64, base_sha: &str, sha: &str) -> Self {
        Self {
            project_id,
            iid,
            source_project_id: Some(project_id),
            source_branch: format!("feature-{iid}"),
            target_branch: "main".into(),
            sha: sha.into(),
            base_sha: base_sha.into(),
            start_sha: None,
            diff_refs_ready: true,
            state: "opened".into(),
            draft: false,
            diffs: Vec::new(),
            previous_shas: Vec::new(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Note {
    pub id: u64,
    pub project_id: u64,
    pub mr_iid: u64,
    pub author_id: u64,
    pub body: String,
    pub system: bool,
    /// How many times it was edited through the API.
    pub edits: u32,
}

/// A project issue.
#[derive(Clone, Debug)]
pub struct Issue {
    pub id: u64,
    pub project_id: u64,
    /// Per project, as GitLab numbers them.
    pub iid: u64,
    pub title: String,
    pub description: String,
    pub labels: Vec<String>,
    pub author_id: u64,
    /// `opened` or `closed`.
    pub state: String,
}

/// A note on an issue (merge request notes are [`Note`]s).
#[derive(Clone, Debug)]
pub struct IssueNote {
    pub id: u64,
    pub project_id: u64,
    pub issue_iid: u64,
    pub author_id: u64,
    pub body: String,
}

#[derive(Clone, Debug)]
pub struct CommitStatus {
    pub id: u64,
    pub project_id: u64,
    pub sha: String,
    pub name: String,
    pub state: String,
    pub description: Option<String>,
    pub target_url: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Award {
    pub note_id: u64,
    pub user_id: u64,
    pub name: String,
}

#[derive(Clone, Debug)]
pub struct Approval {
    pub project_id: u64,
    pub iid: u64,
    pub user_id: u64,
    pub sha: String,
}

#[derive(Clone, Debug)]
pub struct Member {
    pub user_id: u64,
    pub access_level: u64,
    /// `active`, or `awaiting` a seat.
    pub membership_state: String,
}

#[derive(Clone, Debug)]
pub struct Logged {
    pub method: String,
    /// The path after `/api/v4`, still percent-encoded.
    pub path: String,
    pub query: String,
    pub body: String,
}

/// The next `times` requests whose path (after `/api/v4`) starts with `path_prefix`
/// answer `status` with `body`.
pub struct Failure {
    pub method: String,
    pub path_prefix: String,
    pub times: u32,
    pub status: u16,
    pub body: String,
    pub headers: Vec<(String, String)>,
    /// Put the request's token into the error message (a careless proxy), to prove the
    /// client scrubs it.
    pub echo_token: bool,
}

#[derive(Default)]
pub struct State {
    pub token: String,
    /// The account the token belongs to.
    pub bot_id: u64,
    pub users: Vec<User>,
    pub projects: Vec<Project>,
    pub mrs: Vec<MergeRequest>,
    /// (project, branch) → head sha.
    pub branches: BTreeMap<(u64, String), String>,
    /// (project, sha, path) → bytes.
    pub files: BTreeMap<(u64, String, String), Vec<u8>>,
    pub notes: Vec<Note>,
    /// Issues, oldest first.
    pub issues: Vec<Issue>,
    pub issue_notes: Vec<IssueNote>,
    pub statuses: Vec<CommitStatus>,
    pub awards: Vec<Award>,
    pub approvals: Vec<Approval>,
    /// Project members, inherited ones included: (project, member).
    pub members: Vec<(u64, Member)>,
    /// Group full path → members, inherited ones included.
    pub groups: BTreeMap<String, Vec<Member>>,
    pub failures: Vec<Failure>,
    pub requests: Vec<Logged>,
    /// Serve at most this many items per page whatever `per_page` asks.
    pub max_per_page: Option<usize>,
    next_id: u64,
}

impl State {
    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        1000 + self.next_id
    }

    fn user(&self, id: u64) -> Option<&User> {
        self.users.iter().find(|u| u.id == id)
    }

    fn project_by_segment(&self, segment: &str) -> Option<Project> {
        let decoded = percent_decode(segment, false);
        match decoded.parse::<u64>() {
            Ok(id) => self.projects.iter().find(|p| p.id == id).cloned(),
            Err(_) => self
                .projects
                .iter()
                .find(|p| p.path.eq_ignore_ascii_case(&decoded))
                .cloned(),
        }
    }

    /// The next free issue iid of `project`.
    fn next_iid(&self, project: u64) -> u64 {
        self.issues
            .iter()
            .filter(|i| i.project_id == project)
            .map(|i| i.iid)
            .max()
            .unwrap_or(0)
            + 1
    }

    fn add_issue(
        &mut self,
        project: u64,
        author_id: u64,
        title: &str,
        description: &str,
        labels: Vec<String>,
    ) -> Issue {
        let issue = Issue {
            id: self.next_id(),
            project_id: project,
            iid: self.next_iid(project),
            title: title.into(),
            description: description.into(),
            labels,
            author_id,
            state: "opened".into(),
        };
        self.issues.push(issue.clone());
        issue
    }

    /// Commits the fake knows in `project`.
    fn knows_commit(&self, project: u64, sha: &str) -> bool {
        self.files.keys().any(|(p, s, _)| *p == project && s == sha)
            || self
                .branches
                .iter()
                .any(|((p, _), s)| *p == project && s == sha)
            || self
                .mrs
                .iter()
                .any(|m| m.project_id == project && (m.sha == sha || m.base_sha == sha))
    }
}

/// A running fake GitLab; the server stops when this is dropped.
pub struct FakeGitLab {
    /// `http://127.0.0.1:PORT`: what `PROMPTGATE_GITLAB_URL` would be.
    pub url: String,
    pub state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeGitLab {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeGitLab {
    /// A fake whose token is [`TOKEN`] and whose token belongs to `promptgate-bot`
    /// (id 99).
    pub async fn start() -> Self {
        let state = State {
            token: TOKEN.to_string(),
            bot_id: 99,
            users: vec![User {
                id: 99,
                username: "promptgate-bot".into(),
                state: "active".into(),
            }],
            ..State::default()
        };
        let state = Arc::new(Mutex::new(state));
        let shared = Arc::clone(&state);
        let app = Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let shared = Arc::clone(&shared);
                async move { handle(&shared, &method, &uri, &headers, &body) }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake GitLab");
        let addr = listener.local_addr().expect("local addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            url: format!("http://{addr}"),
            state,
            task,
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn bot_id(&self) -> u64 {
        self.lock().bot_id
    }

    pub fn add_user(&self, id: u64, username: &str) {
        self.lock().users.push(User {
            id,
            username: username.into(),
            state: "active".into(),
        });
    }

    pub fn add_project(&self, id: u64, path: &str) {
        self.lock().projects.push(Project {
            id,
            path: path.into(),
            default_branch: "main".into(),
        });
    }

    pub fn add_mr(&self, mr: MergeRequest) {
        self.lock().mrs.push(mr);
    }

    /// Edits merge request `iid` in place (every project).
    pub fn mr_mut(&self, iid: u64, edit: impl FnOnce(&mut MergeRequest)) {
        if let Some(m) = self.lock().mrs.iter_mut().find(|m| m.iid == iid) {
            edit(m);
        }
    }

    pub fn set_branch(&self, project: u64, branch: &str, sha: &str) {
        self.lock()
            .branches
            .insert((project, branch.into()), sha.into());
    }

    /// The one-suite `billing` repository the bot tests use, at `base` and `head`: the
    /// config, an OpenAI-compatible model at `model_url`, two cases asserting the word
    /// "invoice", and the prompt (which keeps the word at `base`).
    pub fn seed_billing(
        &self,
        project: u64,
        base: &str,
        head: &str,
        model_url: &str,
        head_prompt: &str,
    ) {
        for sha in [base, head] {
            self.add_file(
                project,
                sha,
                ".promptgate.yml",
                b"version: 1\nsuites:\n  billing:\n    prompts: { user: prompts/user.j2 }\n    model: models/m.yaml\n    dataset: evals/b.jsonl\n    metrics:\n      assertions: { min: 1.0 }\n",
            );
            self.add_file(
                project,
                sha,
                "models/m.yaml",
                format!("provider: openai\nmodel: chat\nbase_url: {model_url}\n").as_bytes(),
            );
            self.add_file(
                project,
                sha,
                "evals/b.jsonl",
                b"{\"id\": \"a\", \"vars\": {\"n\": 1}, \"assert\": [{\"type\": \"icontains\", \"value\": \"invoice\"}]}\n",
            );
        }
        self.add_file(
            project,
            base,
            "prompts/user.j2",
            b"Explain invoice {{ n }}.",
        );
        self.add_file(project, head, "prompts/user.j2", head_prompt.as_bytes());
    }

    pub fn add_file(&self, project: u64, sha: &str, path: &str, content: &[u8]) {
        self.lock()
            .files
            .insert((project, sha.into(), path.into()), content.to_vec());
    }

    /// A note written by someone (not necessarily the bot).
    pub fn add_note(&self, project: u64, iid: u64, author_id: u64, body: &str) -> u64 {
        let mut s = self.lock();
        let id = s.next_id();
        s.notes.push(Note {
            id,
            project_id: project,
            mr_iid: iid,
            author_id,
            body: body.into(),
            system: false,
            edits: 0,
        });
        id
    }

    /// An issue opened by `author_id` (e.g. one quoting a marker); returns its iid.
    pub fn add_issue(
        &self,
        project: u64,
        author_id: u64,
        title: &str,
        description: &str,
        labels: &[&str],
    ) -> u64 {
        let labels = labels.iter().map(|l| l.to_string()).collect();
        self.lock()
            .add_issue(project, author_id, title, description, labels)
            .iid
    }

    /// Closes issue `iid` of `project`; panics when there is none.
    pub fn close_issue(&self, project: u64, iid: u64) {
        let mut s = self.lock();
        let issue = s
            .issues
            .iter_mut()
            .find(|i| i.project_id == project && i.iid == iid);
        match issue {
            Some(issue) => issue.state = "closed".into(),
            None => panic!("no issue #{iid} in project {project}"),
        }
    }

    /// The issues of `project`, oldest first.
    pub fn issues(&self, project: u64) -> Vec<Issue> {
        self.lock()
            .issues
            .iter()
            .filter(|i| i.project_id == project)
            .cloned()
            .collect()
    }

    /// The notes on issue `iid` of `project`, oldest first.
    pub fn issue_notes(&self, project: u64, iid: u64) -> Vec<IssueNote> {
        self.lock()
            .issue_notes
            .iter()
            .filter(|n| n.project_id == project && n.issue_iid == iid)
            .cloned()
            .collect()
    }

    pub fn set_member(&self, project: u64, user_id: u64, access_level: u64) {
        let mut s = self.lock();
        s.members
            .retain(|(p, m)| !(*p == project && m.user_id == user_id));
        s.members.push((
            project,
            Member {
                user_id,
                access_level,
                membership_state: "active".into(),
            },
        ));
    }

    pub fn add_group_member(&self, group: &str, user_id: u64, access_level: u64) {
        self.lock()
            .groups
            .entry(group.into())
            .or_default()
            .push(Member {
                user_id,
                access_level,
                membership_state: "active".into(),
            });
    }

    pub fn set_user_state(&self, user_id: u64, state: &str) {
        if let Some(u) = self.lock().users.iter_mut().find(|u| u.id == user_id) {
            u.state = state.into();
        }
    }

    /// The next `times` `method` requests under `path_prefix` answer `status`.
    pub fn fail_next(&self, method: &str, path_prefix: &str, times: u32, status: u16) {
        self.fail_next_with(Failure {
            method: method.into(),
            path_prefix: path_prefix.into(),
            times,
            status,
            body: json!({ "message": format!("{status} fake failure") }).to_string(),
            headers: Vec::new(),
            echo_token: false,
        });
    }

    pub fn fail_next_with(&self, failure: Failure) {
        self.lock().failures.push(failure);
    }

    pub fn statuses(&self) -> Vec<CommitStatus> {
        self.lock().statuses.clone()
    }

    pub fn notes(&self, project: u64, iid: u64) -> Vec<Note> {
        self.lock()
            .notes
            .iter()
            .filter(|n| n.project_id == project && n.mr_iid == iid)
            .cloned()
            .collect()
    }

    pub fn awards(&self) -> Vec<Award> {
        self.lock().awards.clone()
    }

    pub fn approvals(&self) -> Vec<Approval> {
        self.lock().approvals.clone()
    }

    pub fn requests(&self) -> Vec<Logged> {
        self.lock().requests.clone()
    }

    /// Requests of `method` whose path starts with `prefix`.
    pub fn count(&self, method: &str, prefix: &str) -> usize {
        self.lock()
            .requests
            .iter()
            .filter(|r| r.method == method && r.path.starts_with(prefix))
            .count()
    }
}

// ---- the handler -----------------------------------------------------------------

fn reply(status: u16, body: Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn message(status: u16, text: &str) -> Response {
    reply(status, json!({ "message": text }))
}

fn not_found(what: &str) -> Response {
    message(404, &format!("404 {what} Not Found"))
}

/// Percent-decodes; `+` is a space in form and query values, not in paths.
pub fn percent_decode(text: &str, plus_is_space: bool) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn form(text: &str) -> HashMap<String, String> {
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k, true), percent_decode(v, true))
        })
        .collect()
}

/// Query parameters and body parameters (form or JSON), as GitLab merges them.
fn params(uri: &Uri, headers: &HeaderMap, body: &[u8]) -> HashMap<String, String> {
    let mut out = form(uri.query().unwrap_or(""));
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let text = String::from_utf8_lossy(body);
    if content_type.starts_with("application/json") {
        if let Ok(Value::Object(map)) = serde_json::from_str::<Value>(&text) {
            for (k, v) in map {
                let v = match v {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                out.insert(k, v);
            }
        }
    } else if content_type.starts_with("application/x-www-form-urlencoded") {
        out.extend(form(&text));
    }
    out
}

fn presented_token(headers: &HeaderMap) -> Option<String> {
    if let Some(v) = headers.get("private-token").and_then(|v| v.to_str().ok()) {
        return Some(v.to_string());
    }
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string)
}

fn handle(
    shared: &Mutex<State>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let mut s = shared.lock().unwrap_or_else(|e| e.into_inner());
    let raw_path = uri.path().to_string();
    let Some(path) = raw_path.strip_prefix("/api/v4") else {
        return not_found("");
    };
    s.requests.push(Logged {
        method: method.to_string(),
        path: path.to_string(),
        query: uri.query().unwrap_or("").to_string(),
        body: String::from_utf8_lossy(body).into_owned(),
    });
    let token = presented_token(headers);
    if let Some(i) = s
        .failures
        .iter()
        .position(|f| f.method == method.as_str() && path.starts_with(&f.path_prefix))
    {
        let f = &mut s.failures[i];
        f.times -= 1;
        let mut text = f.body.clone();
        if f.echo_token {
            text = text.replace("{token}", token.as_deref().unwrap_or(""));
        }
        let status = StatusCode::from_u16(f.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, text).into_response();
        for (k, v) in &f.headers {
            if let (Ok(name), Ok(value)) = (
                axum::http::HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(v),
            ) {
                response.headers_mut().insert(name, value);
            }
        }
        if f.times == 0 {
            s.failures.remove(i);
        }
        return response;
    }
    if token.as_deref() != Some(s.token.as_str()) {
        return message(401, "401 Unauthorized");
    }
    let params = params(uri, headers, body);
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    route(&mut s, method, &segments, &params)
}

fn route(
    s: &mut State,
    method: &Method,
    segments: &[&str],
    params: &HashMap<String, String>,
) -> Response {
    let get = *method == Method::GET;
    let post = *method == Method::POST;
    let put = *method == Method::PUT;
    match segments {
        ["user"] if get => {
            let bot = s.bot_id;
            match s.user(bot) {
                Some(u) => reply(200, user_json(u)),
                None => message(401, "401 Unauthorized"),
            }
        }
        ["users"] if get => {
            let wanted = params.get("username").cloned().unwrap_or_default();
            let found: Vec<Value> = s
                .users
                .iter()
                .filter(|u| wanted.is_empty() || u.username.eq_ignore_ascii_case(&wanted))
                .map(user_json)
                .collect();
            reply(200, Value::Array(found))
        }
        ["groups", group, "members", "all", user] if get => {
            let group = percent_decode(group, false);
            let Some(members) = s.groups.get(&group) else {
                return not_found("Group");
            };
            let member = user
                .parse::<u64>()
                .ok()
                .and_then(|id| members.iter().find(|m| m.user_id == id));
            match member {
                Some(m) => reply(200, member_json(s, m)),
                None => not_found(""),
            }
        }
        ["projects", project, rest @ ..] => {
            let Some(project) = s.project_by_segment(project) else {
                return not_found("Project");
            };
            project_route(s, method, &project, rest, params, get, post, put)
        }
        _ => not_found(""),
    }
}

#[allow(clippy::too_many_arguments)]
fn project_route(
    s: &mut State,
    method: &Method,
    project: &Project,
    rest: &[&str],
    params: &HashMap<String, String>,
    get: bool,
    post: bool,
    put: bool,
) -> Response {
    let pid = project.id;
    match rest {
        [] if get => reply(
            200,
            json!({
                "id": pid,
                "path_with_namespace": project.path,
                "name": project.path.rsplit('/').next().unwrap_or(""),
                "default_branch": project.default_branch,
                "web_url": format!("https://gitlab.example.com/{}", project.path),
            }),
        ),
        ["merge_requests", iid, rest @ ..] => {
            let Some(iid) = iid.parse::<u64>().ok() else {
                return not_found("");
            };
            let Some(mr) = s
                .mrs
                .iter()
                .find(|m| m.project_id == pid && m.iid == iid)
                .cloned()
            else {
                return not_found("");
            };
            mr_route(s, method, project, &mr, rest, params, get, post, put)
        }
        ["issues"] if get => {
            // GitLab's defaults: every state, newest first.
            let state = params.get("state").map(String::as_str).unwrap_or("all");
            let labels: Vec<&str> = params
                .get("labels")
                .map(|l| {
                    l.split(',')
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                        .collect()
                })
                .unwrap_or_default();
            let author = params.get("author_id").and_then(|a| a.parse::<u64>().ok());
            let mut issues: Vec<&Issue> = s
                .issues
                .iter()
                .filter(|i| i.project_id == pid)
                .filter(|i| state == "all" || i.state == state)
                .filter(|i| labels.iter().all(|l| i.labels.iter().any(|have| have == l)))
                .filter(|i| author.is_none_or(|a| i.author_id == a))
                .collect();
            if params.get("sort").map(String::as_str) != Some("asc") {
                issues.reverse();
            }
            let items: Vec<Value> = issues
                .into_iter()
                .map(|i| issue_json(s, project, i))
                .collect();
            paginate(s, params, items)
        }
        ["issues"] if post => {
            let Some(title) = params.get("title").filter(|t| !t.is_empty()).cloned() else {
                return reply(400, json!({ "error": "title is missing" }));
            };
            let description = params.get("description").cloned().unwrap_or_default();
            let labels = params
                .get("labels")
                .map(|l| {
                    l.split(',')
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default();
            let bot = s.bot_id;
            let issue = s.add_issue(pid, bot, &title, &description, labels);
            reply(201, issue_json(s, project, &issue))
        }
        ["issues", iid, rest @ ..] => {
            let found = iid.parse::<u64>().ok().and_then(|iid| {
                s.issues
                    .iter()
                    .find(|i| i.project_id == pid && i.iid == iid)
                    .cloned()
            });
            let Some(issue) = found else {
                return message(404, "404 Not found");
            };
            match rest {
                [] if get => reply(200, issue_json(s, project, &issue)),
                ["notes"] if get => {
                    let mut notes: Vec<&IssueNote> = s
                        .issue_notes
                        .iter()
                        .filter(|n| n.project_id == pid && n.issue_iid == issue.iid)
                        .collect();
                    if params.get("sort").map(String::as_str) != Some("asc") {
                        notes.reverse();
                    }
                    let items: Vec<Value> =
                        notes.into_iter().map(|n| issue_note_json(s, n)).collect();
                    paginate(s, params, items)
                }
                ["notes"] if post => {
                    let Some(body) = params.get("body").filter(|b| !b.is_empty()).cloned() else {
                        return reply(400, json!({ "error": "body is missing" }));
                    };
                    let note = IssueNote {
                        id: s.next_id(),
                        project_id: pid,
                        issue_iid: issue.iid,
                        author_id: s.bot_id,
                        body,
                    };
                    let out = issue_note_json(s, &note);
                    s.issue_notes.push(note);
                    reply(201, out)
                }
                _ => not_found(""),
            }
        }
        ["repository", "commits", sha, "merge_requests"] if get => {
            let sha = percent_decode(sha, false);
            if !s.knows_commit(pid, &sha) {
                return not_found("Commit");
            }
            let items: Vec<Value> = s
                .mrs
                .iter()
                .filter(|m| m.project_id == pid && (m.sha == sha || m.previous_shas.contains(&sha)))
                .map(|m| mr_json(s, project, m))
                .collect();
            paginate(s, params, items)
        }
        ["repository", "files", file, "raw"] if get => {
            let file = percent_decode(file, false);
            let reference = params.get("ref").cloned().unwrap_or_default();
            let sha = s
                .branches
                .get(&(pid, reference.clone()))
                .cloned()
                .unwrap_or(reference);
            if !s.knows_commit(pid, &sha) {
                return not_found("Commit");
            }
            match s.files.get(&(pid, sha, file)) {
                Some(bytes) => (
                    StatusCode::OK,
                    [("content-type", "text/plain; charset=utf-8")],
                    bytes.clone(),
                )
                    .into_response(),
                None => not_found("File"),
            }
        }
        ["repository", "tree"] if get => {
            let reference = params.get("ref").cloned().unwrap_or_default();
            let recursive = params.get("recursive").map(String::as_str) == Some("true");
            if !s.knows_commit(pid, &reference) {
                return not_found("Tree");
            }
            let paths: Vec<String> = s
                .files
                .keys()
                .filter(|(p, sha, _)| *p == pid && *sha == reference)
                .map(|(_, _, path)| path.clone())
                .collect();
            let mut entries: BTreeMap<String, &str> = BTreeMap::new();
            for path in &paths {
                let parts: Vec<&str> = path.split('/').collect();
                for depth in 1..parts.len() {
                    entries.insert(parts[..depth].join("/"), "tree");
                }
                entries.insert(path.clone(), "blob");
            }
            let items: Vec<Value> = entries
                .into_iter()
                .filter(|(path, _)| recursive || !path.contains('/'))
                .map(|(path, kind)| {
                    json!({
                        "id": format!("{:040x}", path.len()),
                        "name": path.rsplit('/').next().unwrap_or(""),
                        "type": kind,
                        "path": path,
                        "mode": if kind == "tree" { "040000" } else { "100644" },
                    })
                })
                .collect();
            paginate(s, params, items)
        }
        ["repository", "branches", branch] if get => {
            let branch = percent_decode(branch, false);
            match s.branches.get(&(pid, branch.clone())) {
                Some(sha) => reply(
                    200,
                    json!({
                        "name": branch,
                        "merged": false,
                        "protected": branch == project.default_branch,
                        "default": branch == project.default_branch,
                        "commit": { "id": sha, "short_id": &sha[..8.min(sha.len())] },
                    }),
                ),
                None => not_found("Branch"),
            }
        }
        ["statuses", sha] if post => {
            let sha = percent_decode(sha, false);
            let state = params.get("state").cloned().unwrap_or_default();
            if ![
                "pending", "running", "success", "failed", "canceled", "skipped",
            ]
            .contains(&state.as_str())
            {
                return reply(400, json!({ "error": "state does not have a valid value" }));
            }
            for field in ["description", "target_url"] {
                if params.get(field).is_some_and(|v| v.len() > 255) {
                    return message(400, &format!("400 Bad request - {field} is too long"));
                }
            }
            if !s.knows_commit(pid, &sha) {
                return not_found("Commit");
            }
            let name = params
                .get("name")
                .cloned()
                .unwrap_or_else(|| "default".into());
            let latest = s
                .statuses
                .iter()
                .rev()
                .find(|st| st.project_id == pid && st.sha == sha && st.name == name);
            if let Some(latest) = latest {
                if latest.state == state && matches!(state.as_str(), "pending" | "running") {
                    let event = if state == "pending" { "enqueue" } else { "run" };
                    return message(
                        400,
                        &format!(
                            "Cannot transition status via :{event} from :{state} \
                             (Reasons(s): Status cannot transition via \"{event}\")"
                        ),
                    );
                }
            }
            let id = s.next_id();
            let status = CommitStatus {
                id,
                project_id: pid,
                sha: sha.clone(),
                name,
                state,
                description: params.get("description").cloned(),
                target_url: params.get("target_url").cloned(),
            };
            let bot = s.bot_id;
            let author = s.user(bot).map(user_json).unwrap_or(Value::Null);
            let body = json!({
                "author": author,
                "name": status.name,
                "sha": status.sha,
                "status": status.state,
                "coverage": null,
                "description": status.description,
                "id": id,
                "target_url": status.target_url,
                "ref": null,
                "started_at": null,
                "created_at": "2026-01-19T09:05:50.355Z",
                "allow_failure": false,
                "finished_at": null,
            });
            s.statuses.push(status);
            reply(201, body)
        }
        ["members", "all", user] if get => {
            let member = user.parse::<u64>().ok().and_then(|id| {
                s.members
                    .iter()
                    .find(|(p, m)| *p == pid && m.user_id == id)
                    .map(|(_, m)| m.clone())
            });
            match member {
                Some(m) => reply(200, member_json(s, &m)),
                None => not_found(""),
            }
        }
        _ => not_found(""),
    }
}

#[allow(clippy::too_many_arguments)]
fn mr_route(
    s: &mut State,
    _method: &Method,
    project: &Project,
    mr: &MergeRequest,
    rest: &[&str],
    params: &HashMap<String, String>,
    get: bool,
    post: bool,
    put: bool,
) -> Response {
    let pid = project.id;
    let bot = s.bot_id;
    match rest {
        [] if get => reply(200, mr_json(s, project, mr)),
        ["diffs"] if get => {
            let items: Vec<Value> = mr
                .diffs
                .iter()
                .map(|(old, new)| {
                    json!({
                        "old_path": old,
                        "new_path": new,
                        "a_mode": "100644",
                        "b_mode": "100644",
                        "diff": "@@ -1 +1 @@\n-a\n+b\n",
                        "new_file": false,
                        "renamed_file": old != new,
                        "deleted_file": false,
                        "generated_file": false,
                    })
                })
                .collect();
            paginate(s, params, items)
        }
        ["notes"] if get => {
            let mut notes: Vec<&Note> = s
                .notes
                .iter()
                .filter(|n| n.project_id == pid && n.mr_iid == mr.iid)
                .collect();
            // GitLab's default order is newest first.
            if params.get("sort").map(String::as_str) != Some("asc") {
                notes.reverse();
            }
            let items: Vec<Value> = notes.into_iter().map(|n| note_json(s, n)).collect();
            paginate(s, params, items)
        }
        ["notes"] if post => {
            let Some(body) = params.get("body").filter(|b| !b.is_empty()).cloned() else {
                return reply(400, json!({ "error": "body is missing" }));
            };
            let id = s.next_id();
            let note = Note {
                id,
                project_id: pid,
                mr_iid: mr.iid,
                author_id: bot,
                body,
                system: false,
                edits: 0,
            };
            let out = note_json(s, &note);
            s.notes.push(note);
            reply(201, out)
        }
        ["notes", note_id] if put => {
            let Some(id) = note_id.parse::<u64>().ok() else {
                return not_found("Note");
            };
            let Some(body) = params.get("body").cloned() else {
                return reply(400, json!({ "error": "body is missing" }));
            };
            let Some(i) = s
                .notes
                .iter()
                .position(|n| n.id == id && n.project_id == pid && n.mr_iid == mr.iid)
            else {
                return not_found("Note");
            };
            if s.notes[i].author_id != bot {
                return message(403, "403 Forbidden");
            }
            s.notes[i].body = body;
            s.notes[i].edits += 1;
            let note = s.notes[i].clone();
            reply(200, note_json(s, &note))
        }
        ["notes", note_id, "award_emoji"] if post => {
            let Some(id) = note_id.parse::<u64>().ok() else {
                return not_found("Note");
            };
            if !s
                .notes
                .iter()
                .any(|n| n.id == id && n.project_id == pid && n.mr_iid == mr.iid)
            {
                return not_found("Note");
            }
            let name = params.get("name").cloned().unwrap_or_default();
            if s.awards
                .iter()
                .any(|a| a.note_id == id && a.user_id == bot && a.name == name)
            {
                // What GitLab really answers to a repeated award.
                return message(404, "404 Award Emoji Name has already been taken Not Found");
            }
            s.awards.push(Award {
                note_id: id,
                user_id: bot,
                name: name.clone(),
            });
            let user = s.user(bot).map(user_json).unwrap_or(Value::Null);
            reply(
                201,
                json!({
                    "id": s.awards.len(),
                    "name": name,
                    "user": user,
                    "awardable_id": id,
                    "awardable_type": "Note",
                }),
            )
        }
        ["approve"] if post => {
            if let Some(sha) = params.get("sha") {
                if *sha != mr.sha {
                    return message(409, "SHA does not match HEAD of source branch");
                }
            }
            if s.approvals
                .iter()
                .any(|a| a.project_id == pid && a.iid == mr.iid && a.user_id == bot)
            {
                return message(401, "401 Unauthorized");
            }
            s.approvals.push(Approval {
                project_id: pid,
                iid: mr.iid,
                user_id: bot,
                sha: mr.sha.clone(),
            });
            reply(201, approvals_json(s, pid, mr.iid))
        }
        ["approvals"] if get => reply(200, approvals_json(s, pid, mr.iid)),
        _ => not_found(""),
    }
}

/// Pages `items` by `page`/`per_page` (default 20, at most 100), with GitLab's headers.
fn paginate(s: &State, params: &HashMap<String, String>, items: Vec<Value>) -> Response {
    let mut per_page = params
        .get("per_page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(20)
        .clamp(1, 100);
    if let Some(cap) = s.max_per_page {
        per_page = per_page.min(cap);
    }
    let page = params
        .get("page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let total = items.len();
    let pages = total.div_ceil(per_page).max(1);
    let chunk: Vec<Value> = items
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .collect();
    let next = if page < pages {
        (page + 1).to_string()
    } else {
        String::new()
    };
    let mut response = reply(200, Value::Array(chunk));
    let h = response.headers_mut();
    for (k, v) in [
        ("x-page", page.to_string()),
        ("x-per-page", per_page.to_string()),
        ("x-next-page", next),
        ("x-total", total.to_string()),
        ("x-total-pages", pages.to_string()),
    ] {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    }
    response
}

fn user_json(u: &User) -> Value {
    json!({
        "id": u.id,
        "username": u.username,
        "name": u.username,
        "state": u.state,
        "locked": false,
        "avatar_url": format!("https://gitlab.example.com/uploads/user/avatar/{}/a.png", u.id),
        "web_url": format!("https://gitlab.example.com/{}", u.username),
    })
}

fn member_json(s: &State, m: &Member) -> Value {
    let (username, state) = s
        .user(m.user_id)
        .map(|u| (u.username.clone(), u.state.clone()))
        .unwrap_or_else(|| (format!("user{}", m.user_id), "active".into()));
    json!({
        "id": m.user_id,
        "username": username,
        "name": username,
        "state": state,
        "avatar_url": null,
        "web_url": format!("https://gitlab.example.com/{username}"),
        "access_level": m.access_level,
        "created_at": "2012-10-22T14:13:35Z",
        "expires_at": null,
        "group_saml_identity": null,
        "membership_state": m.membership_state,
    })
}

fn note_json(s: &State, n: &Note) -> Value {
    let author = s.user(n.author_id).map(user_json).unwrap_or(Value::Null);
    json!({
        "id": n.id,
        "body": n.body,
        "attachment": null,
        "author": author,
        "created_at": "2013-10-02T08:57:14Z",
        "updated_at": "2013-10-02T08:57:14Z",
        "system": n.system,
        "noteable_id": n.mr_iid + 500,
        "noteable_type": "MergeRequest",
        "noteable_iid": n.mr_iid,
    })
}

fn issue_json(s: &State, project: &Project, i: &Issue) -> Value {
    let author = s.user(i.author_id).map(user_json).unwrap_or(Value::Null);
    let closed = i.state == "closed";
    json!({
        "id": i.id,
        "iid": i.iid,
        "project_id": i.project_id,
        "title": i.title,
        "description": i.description,
        "state": i.state,
        "created_at": "2026-01-19T09:05:50.355Z",
        "updated_at": "2026-01-19T09:05:50.355Z",
        "closed_at": if closed { json!("2026-01-20T10:00:00.000Z") } else { Value::Null },
        "closed_by": null,
        "labels": i.labels,
        "milestone": null,
        "assignees": [],
        "author": author,
        "type": "ISSUE",
        "issue_type": "issue",
        "assignee": null,
        "user_notes_count": s.issue_notes.iter().filter(|n| n.project_id == i.project_id && n.issue_iid == i.iid).count(),
        "upvotes": 0,
        "downvotes": 0,
        "due_date": null,
        "confidential": false,
        "discussion_locked": null,
        "web_url": format!("https://gitlab.example.com/{}/-/issues/{}", project.path, i.iid),
        "references": {
            "short": format!("#{}", i.iid),
            "relative": format!("#{}", i.iid),
            "full": format!("{}#{}", project.path, i.iid),
        },
    })
}

fn issue_note_json(s: &State, n: &IssueNote) -> Value {
    let author = s.user(n.author_id).map(user_json).unwrap_or(Value::Null);
    json!({
        "id": n.id,
        "body": n.body,
        "attachment": null,
        "author": author,
        "created_at": "2013-10-02T08:57:14Z",
        "updated_at": "2013-10-02T08:57:14Z",
        "system": false,
        "noteable_id": n.issue_iid + 9000,
        "noteable_type": "Issue",
        "noteable_iid": n.issue_iid,
    })
}

fn mr_json(s: &State, project: &Project, m: &MergeRequest) -> Value {
    let author = s.user(s.bot_id).map(user_json).unwrap_or(Value::Null);
    let diff_refs = if m.diff_refs_ready {
        json!({ "base_sha": m.base_sha, "head_sha": m.sha, "start_sha": m.start_sha.as_ref().unwrap_or(&m.base_sha) })
    } else {
        Value::Null
    };
    json!({
        "id": 421_000_000 + m.iid,
        "iid": m.iid,
        "project_id": m.project_id,
        "title": format!("Change {}", m.iid),
        "description": "",
        "state": m.state,
        "created_at": "2025-10-08T01:10:00.622Z",
        "updated_at": "2025-10-08T02:56:38.499Z",
        "target_branch": m.target_branch,
        "source_branch": m.source_branch,
        "author": author,
        "source_project_id": m.source_project_id,
        "target_project_id": m.project_id,
        "labels": [],
        "draft": m.draft,
        "work_in_progress": m.draft,
        "merge_status": "can_be_merged",
        "detailed_merge_status": "mergeable",
        "sha": m.sha,
        "merge_commit_sha": null,
        "squash_commit_sha": null,
        "reference": format!("!{}", m.iid),
        "references": {
            "short": format!("!{}", m.iid),
            "relative": format!("!{}", m.iid),
            "full": format!("{}!{}", project.path, m.iid),
        },
        "web_url": format!("https://gitlab.example.com/{}/-/merge_requests/{}", project.path, m.iid),
        "squash": false,
        "has_conflicts": false,
        "head_pipeline": null,
        "diff_refs": diff_refs,
        "user": { "can_merge": true },
    })
}

fn approvals_json(s: &State, project: u64, iid: u64) -> Value {
    let approved_by: Vec<Value> = s
        .approvals
        .iter()
        .filter(|a| a.project_id == project && a.iid == iid)
        .filter_map(|a| s.user(a.user_id))
        .map(|u| json!({ "user": user_json(u) }))
        .collect();
    json!({
        "iid": iid,
        "project_id": project,
        "approved": !approved_by.is_empty(),
        "approved_by": approved_by,
    })
}
