//! A stateful fake GitHub (bors-style): a wiremock server whose one handler routes
//! requests over shared in-memory state — comments, statuses, files at commits, the
//! PR's file list, collaborators, teams, reactions, reviews, check runs, issues — so tests
//! assert on what GitHub would hold, not on which mock was hit. Failures are injected
//! per route. Response bodies come from the real fixtures in `tests/fixtures/rest/`
//! where one exists.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use base64::Engine;
use promptgate::forge::{ForgeRetryPolicy, GitHubAuth, GitHubForge, RepoId};
use serde_json::{json, Value};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

pub const REPO: &str = "octo-org/prompts";
pub const TOKEN: &str = "ghp_SECRET123";
pub const BOT: &str = "promptgate-bot";
pub const MARKER: &str = "<!-- promptgate:sticky -->";
pub const BASE_SHA: &str = "1111111111111111111111111111111111111111";
pub const HEAD_SHA: &str = "2222222222222222222222222222222222222222";
pub const PR: u64 = 7;

pub fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/rest/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub fn fixture_json(name: &str) -> Value {
    serde_json::from_str(&fixture(name)).unwrap()
}

/// The recorded 422 `Validation Failed` body (octokit/fixtures, first interaction).
pub fn validation_failed_body() -> String {
    fixture_json("rest.error-422-validation.octokit-fixtures.nock.json")[0]["response"].to_string()
}

// ---- the fake's state ------------------------------------------------------------

#[derive(Clone, Debug)]
pub struct Comment {
    pub id: u64,
    pub issue: u64,
    pub login: String,
    pub body: String,
}

/// An issue. Issues and pull requests share one number space, as on GitHub; its
/// comments are the [`Comment`]s whose `issue` is its number.
#[derive(Clone, Debug)]
pub struct IssueRec {
    pub number: u64,
    pub title: String,
    pub body: String,
    pub labels: Vec<String>,
    /// Who opened it.
    pub login: String,
    /// `open` or `closed`.
    pub state: String,
}

#[derive(Clone, Debug)]
pub struct StatusRec {
    pub sha: String,
    pub state: String,
    pub context: String,
    pub description: String,
    pub target_url: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Logged {
    pub method: String,
    pub path: String,
    pub query: String,
    pub auth: Option<String>,
}

pub struct Failure {
    pub method: &'static str,
    pub path_prefix: String,
    pub times: u32,
    pub status: u16,
    pub body: String,
    pub headers: Vec<(&'static str, String)>,
    /// Put the request's Authorization header into the error message (a careless
    /// proxy), to prove the client scrubs it.
    pub echo_auth: bool,
}

pub struct PrFile {
    pub status: &'static str,
    pub filename: String,
    pub previous: Option<String>,
}

#[derive(Default)]
pub struct State {
    /// The one repository the fake serves (`owner/name`).
    pub repo: String,
    pub bot_login: String,
    pub comments: Vec<Comment>,
    pub next_comment_id: u64,
    pub statuses: Vec<StatusRec>,
    /// (commit, path) → bytes.
    pub files: BTreeMap<(String, String), Vec<u8>>,
    /// Paths the contents API does not inline (over 1 MB): served by the blob API.
    pub large: HashSet<String>,
    pub pr_files: Vec<PrFile>,
    pub pr_files_page_size: usize,
    pub pulls: Vec<Value>,
    /// Issues, oldest first.
    pub issues: Vec<IssueRec>,
    pub failures: Vec<Failure>,
    pub requests: Vec<Logged>,
    /// GitHub App: installation tokens minted.
    pub tokens_minted: u32,
    /// Accounts by login: numeric id.
    pub users: BTreeMap<String, u64>,
    /// Collaborator role (`admin`, `maintain`, `write`, `triage`, `read`) by login.
    pub roles: BTreeMap<String, String>,
    /// `org/team-slug` → member logins.
    pub teams: BTreeMap<String, Vec<String>>,
    /// (comment id, reaction content).
    pub reactions: Vec<(u64, String)>,
    /// Pull request reviews as posted (`number` added).
    pub reviews: Vec<Value>,
    /// Check runs as they stand (`id` added).
    pub check_runs: Vec<Value>,
    /// (base, head) → their merge base, for the compare API; unlisted pairs branched
    /// from `base` itself (the PR is only ahead).
    pub merge_bases: BTreeMap<(String, String), String>,
}

impl State {
    pub fn count(&self, method: &str, path: &str) -> usize {
        self.requests
            .iter()
            .filter(|r| r.method == method && r.path == path)
            .count()
    }

    pub fn issue(&self, number: u64) -> Option<&IssueRec> {
        self.issues.iter().find(|i| i.number == number)
    }

    /// The comments on issue `number`, oldest first.
    pub fn issue_comments(&self, number: u64) -> Vec<&Comment> {
        self.comments.iter().filter(|c| c.issue == number).collect()
    }

    /// The next free number: issues and pull requests share them.
    pub fn next_issue_number(&self) -> u64 {
        let pulls = self.pulls.iter().filter_map(|p| p["number"].as_u64());
        let issues = self.issues.iter().map(|i| i.number);
        pulls.chain(issues).max().unwrap_or(0) + 1
    }

    /// Adds an issue opened by `login`; returns its number.
    pub fn add_issue(&mut self, login: &str, title: &str, body: &str, labels: &[&str]) -> u64 {
        let number = self.next_issue_number();
        self.issues.push(IssueRec {
            number,
            title: title.to_string(),
            body: body.to_string(),
            labels: labels.iter().map(|l| l.to_string()).collect(),
            login: login.to_string(),
            state: "open".into(),
        });
        number
    }

    /// Closes issue `number` (as someone on the web would); false when there is none.
    pub fn close_issue(&mut self, number: u64) -> bool {
        match self.issues.iter_mut().find(|i| i.number == number) {
            Some(issue) => {
                issue.state = "closed".into();
                true
            }
            None => false,
        }
    }

    pub fn ours(&self) -> Vec<&Comment> {
        self.comments
            .iter()
            .filter(|c| c.login == self.bot_login && c.body.contains(MARKER))
            .collect()
    }
}

#[derive(Clone)]
pub struct FakeGitHub {
    pub state: Arc<Mutex<State>>,
    /// `/api/v3` for GitHub Enterprise.
    pub prefix: String,
    pub comment_template: Value,
    pub file_template: Value,
    pub status_body: String,
}

pub fn json_response(status: u16, body: &Value) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_raw(body.to_string(), "application/json; charset=utf-8")
}

pub fn not_found() -> ResponseTemplate {
    json_response(
        404,
        &json!({"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}),
    )
}

pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
            if let Ok(b) = u8::from_str_radix(hex, 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

/// GitHub's base64: 60 characters a line.
pub fn github_base64(bytes: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut out = String::new();
    for chunk in b64.as_bytes().chunks(60) {
        out.push_str(std::str::from_utf8(chunk).unwrap());
        out.push('\n');
    }
    out
}

pub fn blob_sha(sha: &str, path: &str) -> String {
    format!("blob-{}-{}", &sha[..7], path.replace('/', "_"))
}

impl FakeGitHub {
    pub fn comment_json(&self, c: &Comment) -> Value {
        let mut v = self.comment_template.clone();
        v["id"] = json!(c.id);
        v["body"] = json!(c.body);
        v["user"]["login"] = json!(c.login);
        v["url"] = json!(format!(
            "https://api.github.com/repos/{REPO}/issues/comments/{}",
            c.id
        ));
        v["html_url"] = json!(format!(
            "https://github.com/{REPO}/pull/{}#issuecomment-{}",
            c.issue, c.id
        ));
        v
    }

    /// A comment as the fake answers it: its `html_url` under `/issues/` when it is on
    /// an issue, under `/pull/` otherwise (as before issues existed).
    pub fn comment_out(&self, st: &State, c: &Comment) -> Value {
        let mut v = self.comment_json(c);
        if st.issue(c.issue).is_some() {
            v["html_url"] = json!(format!(
                "https://github.com/{REPO}/issues/{}#issuecomment-{}",
                c.issue, c.id
            ));
        }
        v
    }

    /// An issue in the REST API's shape.
    pub fn issue_json(&self, st: &State, i: &IssueRec) -> Value {
        let labels: Vec<Value> = i
            .labels
            .iter()
            .enumerate()
            .map(|(n, name)| {
                json!({
                    "id": 208_045_946 + n as u64,
                    "node_id": "MDU6TGFiZWwyMDgwNDU5NDY=",
                    "url": format!("https://api.github.com/repos/{REPO}/labels/{name}"),
                    "name": name,
                    "description": null,
                    "color": "f29513",
                    "default": false,
                })
            })
            .collect();
        let user_id = if i.login == st.bot_login {
            4242
        } else {
            583_231
        };
        json!({
            "id": 1_000_000 + i.number,
            "node_id": "MDU6SXNzdWUx",
            "url": format!("https://api.github.com/repos/{REPO}/issues/{}", i.number),
            "repository_url": format!("https://api.github.com/repos/{REPO}"),
            "comments_url": format!("https://api.github.com/repos/{REPO}/issues/{}/comments", i.number),
            "html_url": format!("https://github.com/{REPO}/issues/{}", i.number),
            "number": i.number,
            "state": i.state,
            "state_reason": if i.state == "closed" { json!("completed") } else { Value::Null },
            "title": i.title,
            "body": i.body,
            "user": { "login": i.login, "id": user_id, "type": "User" },
            "labels": labels,
            "assignee": null,
            "assignees": [],
            "milestone": null,
            "locked": false,
            "comments": st.issue_comments(i.number).len(),
            "closed_at": if i.state == "closed" { json!("2026-01-20T10:00:00Z") } else { Value::Null },
            "created_at": "2026-01-19T09:05:50Z",
            "updated_at": "2026-01-19T09:05:50Z",
            "author_association": "NONE",
        })
    }

    /// A pull request as the issues API lists it: an issue with a `pull_request` key.
    pub fn pull_as_issue_json(&self, p: &Value) -> Value {
        let n = p["number"].as_u64().unwrap_or(0);
        json!({
            "id": 2_000_000 + n,
            "url": format!("https://api.github.com/repos/{REPO}/issues/{n}"),
            "html_url": format!("https://github.com/{REPO}/pull/{n}"),
            "number": n,
            "state": p["state"].as_str().unwrap_or("open"),
            "title": p["title"].as_str().unwrap_or("a pull request"),
            "body": p["body"].clone(),
            "user": if p["user"].is_object() { p["user"].clone() } else { json!({"login": "octocat", "id": 583_231}) },
            "labels": p["labels"].as_array().cloned().unwrap_or_default(),
            "locked": false,
            "comments": 0,
            "pull_request": {
                "url": format!("https://api.github.com/repos/{REPO}/pulls/{n}"),
                "html_url": format!("https://github.com/{REPO}/pull/{n}"),
                "diff_url": format!("https://github.com/{REPO}/pull/{n}.diff"),
                "patch_url": format!("https://github.com/{REPO}/pull/{n}.patch"),
                "merged_at": null,
            },
        })
    }

    pub fn paged(
        &self,
        items: Vec<Value>,
        per_page: usize,
        page: usize,
        path: &str,
    ) -> ResponseTemplate {
        let pages = items.len().div_ceil(per_page).max(1);
        let chunk: Vec<Value> = items
            .into_iter()
            .skip((page - 1) * per_page)
            .take(per_page)
            .collect();
        let mut response = json_response(200, &Value::Array(chunk));
        if pages > 1 {
            let link = |p: usize, rel: &str| {
                format!(
                    "<https://api.github.com{path}?per_page={per_page}&page={p}>; rel=\"{rel}\""
                )
            };
            let mut links = Vec::new();
            if page < pages {
                links.push(link(page + 1, "next"));
                links.push(link(pages, "last"));
            }
            if page > 1 {
                links.push(link(1, "first"));
                links.push(link(page - 1, "prev"));
            }
            response = response.insert_header("link", links.join(", "));
        }
        response
    }

    pub fn route(
        &self,
        st: &mut State,
        method: &str,
        path: &str,
        req: &Request,
    ) -> ResponseTemplate {
        let query = |name: &str| {
            req.url
                .query_pairs()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        };
        let page: usize = query("page").and_then(|p| p.parse().ok()).unwrap_or(1);
        let per_page: usize = query("per_page").and_then(|p| p.parse().ok()).unwrap_or(30);
        let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();

        match (method, segs.as_slice()) {
            ("GET", ["user"]) => json_response(
                200,
                &json!({"login": st.bot_login, "id": 4242, "type": "User"}),
            ),
            ("GET", ["app"]) => json_response(
                200,
                &json!({"id": 99, "slug": "promptgate", "name": "promptgate"}),
            ),
            ("GET", ["repos", o, r, "installation"]) if format!("{o}/{r}") == st.repo => {
                json_response(200, &json!({"id": 555, "app_id": 99}))
            }
            ("POST", ["app", "installations", "555", "access_tokens"]) => {
                st.tokens_minted += 1;
                json_response(
                    201,
                    &json!({"token": format!("ghs_INSTALL{}", st.tokens_minted), "expires_at": "2099-01-01T00:00:00Z", "permissions": {}}),
                )
            }
            (_, ["repos", o, r, ..]) if format!("{o}/{r}") != st.repo => not_found(),

            ("GET", ["repos", _, _, "issues", n, "comments"]) => {
                let n: u64 = n.parse().unwrap();
                let items = st
                    .comments
                    .iter()
                    .filter(|c| c.issue == n)
                    .map(|c| self.comment_out(st, c))
                    .collect();
                self.paged(items, per_page.min(100), page, path)
            }
            ("POST", ["repos", _, _, "issues", n, "comments"]) => {
                let body: Value = req.body_json().unwrap();
                st.next_comment_id += 1;
                let c = Comment {
                    id: 1000 + st.next_comment_id,
                    issue: n.parse().unwrap(),
                    login: st.bot_login.clone(),
                    body: body["body"].as_str().unwrap().to_string(),
                };
                st.comments.push(c.clone());
                json_response(201, &self.comment_out(st, &c))
            }
            ("GET", ["repos", _, _, "issues"]) => {
                // GitHub's defaults: open ones, newest first.
                let state = query("state").unwrap_or_else(|| "open".into());
                let wanted: Vec<String> = query("labels")
                    .map(|l| l.split(',').map(|s| s.trim().to_string()).collect())
                    .unwrap_or_default();
                let mut items: Vec<(u64, Value)> = st
                    .issues
                    .iter()
                    .map(|i| (i.number, self.issue_json(st, i)))
                    .chain(st.pulls.iter().map(|p| {
                        (
                            p["number"].as_u64().unwrap_or(0),
                            self.pull_as_issue_json(p),
                        )
                    }))
                    .filter(|(_, v)| state == "all" || v["state"] == json!(state))
                    .filter(|(_, v)| {
                        wanted.iter().all(|w| {
                            v["labels"]
                                .as_array()
                                .is_some_and(|ls| ls.iter().any(|l| l["name"] == json!(w)))
                        })
                    })
                    .collect();
                items.sort_by_key(|(n, _)| std::cmp::Reverse(*n));
                if query("direction").as_deref() == Some("asc") {
                    items.reverse();
                }
                let items = items.into_iter().map(|(_, v)| v).collect();
                self.paged(items, per_page.min(100), page, path)
            }
            ("POST", ["repos", _, _, "issues"]) => {
                let body: Value = req.body_json().unwrap_or(Value::Null);
                let Some(title) = body["title"].as_str().filter(|t| !t.is_empty()) else {
                    return json_response(
                        422,
                        &json!({"message": "Validation Failed", "errors": [{"resource": "Issue", "code": "missing_field", "field": "title"}]}),
                    );
                };
                let labels: Vec<String> = body["labels"]
                    .as_array()
                    .map(|ls| {
                        ls.iter()
                            .filter_map(|l| l.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default();
                let issue = IssueRec {
                    number: st.next_issue_number(),
                    title: title.to_string(),
                    body: body["body"].as_str().unwrap_or("").to_string(),
                    labels,
                    login: st.bot_login.clone(),
                    state: "open".into(),
                };
                st.issues.push(issue.clone());
                json_response(201, &self.issue_json(st, &issue))
            }
            ("GET", ["repos", _, _, "issues", n]) => {
                let Ok(n) = n.parse::<u64>() else {
                    return not_found();
                };
                if let Some(issue) = st.issue(n) {
                    return json_response(200, &self.issue_json(st, issue));
                }
                match st.pulls.iter().find(|p| p["number"] == json!(n)) {
                    Some(p) => json_response(200, &self.pull_as_issue_json(p)),
                    None => not_found(),
                }
            }
            ("PATCH", ["repos", _, _, "issues", "comments", id]) => {
                let id: u64 = id.parse().unwrap();
                let body: Value = req.body_json().unwrap();
                let login = st.bot_login.clone();
                let Some(c) = st.comments.iter_mut().find(|c| c.id == id) else {
                    return not_found();
                };
                if c.login != login {
                    return json_response(
                        403,
                        &json!({"message": "Must have admin rights to Repository."}),
                    );
                }
                c.body = body["body"].as_str().unwrap().to_string();
                let c = c.clone();
                json_response(200, &self.comment_out(st, &c))
            }
            ("POST", ["repos", _, _, "statuses", sha]) => {
                let body: Value = req.body_json().unwrap();
                st.statuses.push(StatusRec {
                    sha: sha.to_string(),
                    state: body["state"].as_str().unwrap().to_string(),
                    context: body["context"].as_str().unwrap_or("default").to_string(),
                    description: body["description"].as_str().unwrap_or("").to_string(),
                    target_url: body["target_url"].as_str().map(String::from),
                });
                ResponseTemplate::new(201)
                    .set_body_raw(self.status_body.clone(), "application/json; charset=utf-8")
            }
            ("GET", ["repos", _, _, "contents", rest @ ..]) => {
                let file = percent_decode(&rest.join("/"));
                let Some(sha) = query("ref") else {
                    return not_found();
                };
                let Some(bytes) = st.files.get(&(sha.clone(), file.clone())) else {
                    return not_found();
                };
                let name = file.rsplit('/').next().unwrap_or(&file).to_string();
                let (content, encoding) = if st.large.contains(&file) {
                    (String::new(), "none")
                } else {
                    (github_base64(bytes), "base64")
                };
                json_response(
                    200,
                    &json!({
                        "type": "file", "encoding": encoding, "size": bytes.len(), "name": name,
                        "path": file, "content": content, "sha": blob_sha(&sha, &file),
                        "url": format!("https://api.github.com/repos/{REPO}/contents/{file}?ref={sha}"),
                    }),
                )
            }
            ("GET", ["repos", _, _, "git", "blobs", blob]) => {
                let found = st
                    .files
                    .iter()
                    .find(|((sha, p), _)| blob_sha(sha, p) == *blob);
                match found {
                    Some((_, bytes)) => json_response(
                        200,
                        &json!({"sha": blob, "size": bytes.len(), "encoding": "base64", "content": github_base64(bytes)}),
                    ),
                    None => not_found(),
                }
            }
            ("GET", ["repos", _, _, "git", "trees", sha]) => {
                let mut entries = Vec::new();
                let mut dirs = BTreeMap::new();
                for (s, p) in st.files.keys() {
                    if s != sha {
                        continue;
                    }
                    let parts: Vec<&str> = p.split('/').collect();
                    for i in 1..parts.len() {
                        dirs.insert(parts[..i].join("/"), ());
                    }
                    entries.push(json!({"path": p, "mode": "100644", "type": "blob", "sha": blob_sha(s, p), "size": 1}));
                }
                if entries.is_empty() {
                    return not_found();
                }
                for d in dirs.keys() {
                    entries.push(json!({"path": d, "mode": "040000", "type": "tree", "sha": format!("tree-{d}")}));
                }
                entries.push(json!({"path": "vendor/lib", "mode": "160000", "type": "commit", "sha": "3333333333333333333333333333333333333333"}));
                json_response(
                    200,
                    &json!({"sha": sha, "tree": entries, "truncated": false}),
                )
            }
            ("GET", ["repos", _, _, "pulls", n, "files"]) => {
                let _n: u64 = n.parse().unwrap();
                let items = st
                    .pr_files
                    .iter()
                    .map(|f| {
                        let mut v = self.file_template.clone();
                        v["filename"] = json!(f.filename);
                        v["status"] = json!(f.status);
                        if let Some(prev) = &f.previous {
                            v["previous_filename"] = json!(prev);
                        }
                        v
                    })
                    .collect();
                // The fake's pages are small so that pagination shows.
                self.paged(items, st.pr_files_page_size, page, path)
            }
            ("GET", ["repos", _, _, "compare", basehead]) => {
                let Some((base, head)) = basehead.split_once("...") else {
                    return not_found();
                };
                let merge_base = st
                    .merge_bases
                    .get(&(base.to_string(), head.to_string()))
                    .cloned()
                    .unwrap_or_else(|| base.to_string());
                let status = if merge_base == base {
                    "ahead"
                } else {
                    "diverged"
                };
                json_response(
                    200,
                    &json!({
                        "status": status,
                        "base_commit": {"sha": base},
                        "merge_base_commit": {"sha": merge_base},
                        "commits": [],
                        "files": []
                    }),
                )
            }
            ("GET", ["repos", _, _, "pulls", n]) => {
                let n: u64 = n.parse().unwrap();
                match st.pulls.iter().find(|p| p["number"] == json!(n)) {
                    Some(p) => json_response(200, p),
                    None => not_found(),
                }
            }
            ("GET", ["repos", _, _, "commits", sha, "pulls"]) => {
                let hits: Vec<Value> = st
                    .pulls
                    .iter()
                    .filter(|p| {
                        p["head"]["sha"] == json!(sha) || p["merge_commit_sha"] == json!(sha)
                    })
                    .cloned()
                    .collect();
                json_response(200, &Value::Array(hits))
            }
            ("GET", ["users", login]) => match st.users.get(*login) {
                Some(id) => json_response(200, &json!({"login": login, "id": id, "type": "User"})),
                None => not_found(),
            },
            ("GET", ["repos", _, _, "collaborators", login, "permission"]) => {
                let Some(id) = st.users.get(*login) else {
                    return not_found();
                };
                let role = st
                    .roles
                    .get(*login)
                    .cloned()
                    .unwrap_or_else(|| "none".into());
                // `permission` folds maintain into write and triage into read.
                let permission = match role.as_str() {
                    "maintain" => "write",
                    "triage" => "read",
                    other => other,
                };
                json_response(
                    200,
                    &json!({"permission": permission, "role_name": role, "user": {"login": login, "id": id}}),
                )
            }
            ("GET", ["orgs", org, "teams", team, "memberships", login]) => {
                let members = st.teams.get(&format!("{org}/{team}"));
                if members.is_some_and(|m| m.iter().any(|l| l == login)) {
                    json_response(200, &json!({"state": "active", "role": "member"}))
                } else {
                    not_found()
                }
            }
            ("POST", ["repos", _, _, "issues", "comments", id, "reactions"]) => {
                let id: u64 = id.parse().unwrap();
                if !st.comments.iter().any(|c| c.id == id) {
                    return not_found();
                }
                let body: Value = req.body_json().unwrap();
                let content = body["content"].as_str().unwrap().to_string();
                st.reactions.push((id, content.clone()));
                json_response(201, &json!({"id": st.reactions.len(), "content": content}))
            }
            ("POST", ["repos", _, _, "pulls", n, "reviews"]) => {
                let mut body: Value = req.body_json().unwrap();
                body["number"] = json!(n.parse::<u64>().unwrap());
                st.reviews.push(body.clone());
                json_response(200, &body)
            }
            // Newest first, in the shape of the create response (its docs example),
            // as `GET /repos/{o}/{r}/commits/{ref}/statuses` lists them.
            ("GET", ["repos", _, _, "commits", sha, "statuses"]) => {
                let template: Value =
                    serde_json::from_str(&self.status_body).unwrap_or(Value::Null);
                let list: Vec<Value> = st
                    .statuses
                    .iter()
                    .rev()
                    .filter(|s| s.sha == *sha)
                    .map(|s| {
                        let mut v = template.clone();
                        v["state"] = json!(s.state);
                        v["context"] = json!(s.context);
                        v["description"] = json!(s.description);
                        v["target_url"] = json!(s.target_url);
                        v
                    })
                    .collect();
                json_response(200, &Value::Array(list))
            }
            ("GET", ["repos", _, _, "commits", sha, "check-runs"]) => {
                let name = query("check_name");
                let runs: Vec<Value> = st
                    .check_runs
                    .iter()
                    .filter(|c| c["head_sha"] == json!(sha))
                    .filter(|c| name.as_ref().is_none_or(|n| c["name"] == json!(n)))
                    .cloned()
                    .collect();
                json_response(200, &json!({"total_count": runs.len(), "check_runs": runs}))
            }
            ("POST", ["repos", _, _, "check-runs"]) => {
                let mut body: Value = req.body_json().unwrap();
                body["id"] = json!(9000 + st.check_runs.len() as u64);
                st.check_runs.push(body.clone());
                json_response(201, &body)
            }
            ("PATCH", ["repos", _, _, "check-runs", id]) => {
                let id: u64 = id.parse().unwrap();
                let body: Value = req.body_json().unwrap();
                let Some(run) = st.check_runs.iter_mut().find(|c| c["id"] == json!(id)) else {
                    return not_found();
                };
                if let (Some(run), Some(update)) = (run.as_object_mut(), body.as_object()) {
                    for (k, v) in update {
                        run.insert(k.clone(), v.clone());
                    }
                }
                let run = run.clone();
                json_response(200, &run)
            }
            _ => not_found(),
        }
    }
}

impl Respond for FakeGitHub {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let mut st = self.state.lock().unwrap();
        let method = req.method.to_string();
        let Some(path) = req.url.path().strip_prefix(self.prefix.as_str()) else {
            return not_found();
        };
        let path = path.to_string();
        let auth = req
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        st.requests.push(Logged {
            method: method.clone(),
            path: path.clone(),
            query: req.url.query().unwrap_or("").to_string(),
            auth: auth.clone(),
        });
        if let Some(f) = st
            .failures
            .iter_mut()
            .find(|f| f.times > 0 && f.method == method && path.starts_with(&f.path_prefix))
        {
            f.times -= 1;
            let body = if f.echo_auth {
                json!({"message": format!("Bad credentials: got {}", auth.unwrap_or_default())})
                    .to_string()
            } else {
                f.body.clone()
            };
            let mut response = ResponseTemplate::new(f.status)
                .set_body_raw(body, "application/json; charset=utf-8");
            for (k, v) in &f.headers {
                response = response.insert_header(*k, v.as_str());
            }
            return response;
        }
        self.route(&mut st, &method, &path, req)
    }
}

// ---- harness ---------------------------------------------------------------------

pub struct Harness {
    pub server: MockServer,
    pub state: Arc<Mutex<State>>,
    pub prefix: String,
}

impl Harness {
    pub async fn start() -> Self {
        Self::start_with_prefix("").await
    }

    pub async fn start_with_prefix(prefix: &str) -> Self {
        let server = MockServer::start().await;
        let state = Arc::new(Mutex::new(State {
            repo: REPO.to_string(),
            bot_login: BOT.to_string(),
            pr_files_page_size: 2,
            ..State::default()
        }));
        let fake = FakeGitHub {
            state: Arc::clone(&state),
            prefix: prefix.to_string(),
            comment_template: fixture_json("rest.issue-comment.create.docs-example.json"),
            file_template: fixture_json("rest.pulls.list-files.docs-example.json")[0].clone(),
            status_body: fixture("rest.statuses.create.docs-example.json"),
        };
        Mock::given(any()).respond_with(fake).mount(&server).await;
        Harness {
            server,
            state,
            prefix: prefix.to_string(),
        }
    }

    pub fn api_url(&self) -> String {
        format!("{}{}", self.server.uri(), self.prefix)
    }

    pub fn forge(&self) -> GitHubForge {
        GitHubForge::new(&self.api_url(), GitHubAuth::Token(TOKEN.to_string()))
            .unwrap()
            .with_retry_policy(ForgeRetryPolicy::fast())
    }

    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    pub fn fail(
        &self,
        method: &'static str,
        path_prefix: &str,
        times: u32,
        status: u16,
        body: &str,
    ) {
        self.fail_with(method, path_prefix, times, status, body, vec![]);
    }

    pub fn fail_with(
        &self,
        method: &'static str,
        path_prefix: &str,
        times: u32,
        status: u16,
        body: &str,
        headers: Vec<(&'static str, String)>,
    ) {
        self.state().failures.push(Failure {
            method,
            path_prefix: path_prefix.to_string(),
            times,
            status,
            body: body.to_string(),
            headers,
            echo_auth: false,
        });
    }

    /// A comment by someone else than the bot; returns its id.
    pub fn user_comment(&self, issue: u64, login: &str, body: &str) -> u64 {
        let mut st = self.state();
        st.next_comment_id += 1;
        let id = 1000 + st.next_comment_id;
        st.comments.push(Comment {
            id,
            issue,
            login: login.to_string(),
            body: body.to_string(),
        });
        id
    }

    /// An account `login` with numeric `id` and collaborator `role` (`none` for none).
    pub fn user(&self, login: &str, id: u64, role: &str) {
        let mut st = self.state();
        st.users.insert(login.to_string(), id);
        st.roles.insert(login.to_string(), role.to_string());
    }

    /// Adds an issue opened by `login` (e.g. one quoting a marker); returns its number.
    pub fn add_issue(&self, login: &str, title: &str, body: &str, labels: &[&str]) -> u64 {
        self.state().add_issue(login, title, body, labels)
    }

    /// Closes issue `number`; panics when there is none.
    pub fn close_issue(&self, number: u64) {
        assert!(self.state().close_issue(number), "no issue #{number}");
    }

    /// Every issue, oldest first.
    pub fn issues(&self) -> Vec<IssueRec> {
        self.state().issues.clone()
    }

    /// The comments on issue `number`, oldest first.
    pub fn issue_comments(&self, number: u64) -> Vec<Comment> {
        self.state()
            .issue_comments(number)
            .into_iter()
            .cloned()
            .collect()
    }

    pub fn put_file(&self, sha: &str, path: &str, bytes: &[u8]) {
        self.state()
            .files
            .insert((sha.to_string(), path.to_string()), bytes.to_vec());
    }

    /// The one-suite `billing` repository the bot tests use, at `sha`: the config, an
    /// OpenAI-compatible model at `model_url`, two cases asserting the word "invoice",
    /// and `prompt` as the user prompt.
    pub fn put_billing(&self, sha: &str, model_url: &str, prompt: &str) {
        self.put_file(
            sha,
            ".promptgate.yml",
            b"version: 1\nsuites:\n  billing:\n    prompts: { user: prompts/user.j2 }\n    model: models/m.yaml\n    dataset: evals/b.jsonl\n    metrics:\n      assertions: { min: 1.0 }\n",
        );
        self.put_file(
            sha,
            "models/m.yaml",
            format!("provider: openai\nmodel: chat\nbase_url: {model_url}\n").as_bytes(),
        );
        self.put_file(
            sha,
            "evals/b.jsonl",
            b"{\"id\": \"a\", \"vars\": {\"n\": 1}, \"assert\": [{\"type\": \"icontains\", \"value\": \"invoice\"}]}\n{\"id\": \"b\", \"vars\": {\"n\": 2}, \"assert\": [{\"type\": \"icontains\", \"value\": \"invoice\"}]}\n",
        );
        self.put_file(sha, "prompts/user.j2", prompt.as_bytes());
    }
}

pub fn repo() -> RepoId {
    RepoId::new(REPO)
}

pub fn comments_path() -> String {
    format!("/repos/{REPO}/issues/{PR}/comments")
}

/// The GitHub App tests' RSA key (PEM, PKCS#1), made once for these tests and embedded
/// (as bors embeds its test App key), so no test depends on an `openssl` binary.
pub fn rsa_key_pem() -> String {
    include_str!("../fixtures/github-app-test-key.pem").to_string()
}
