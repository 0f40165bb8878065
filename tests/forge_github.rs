//! The GitHub forge client against a fake GitHub (bors-style): a wiremock server whose
//! one handler routes requests over shared in-memory state — comments, statuses, files
//! at commits, the PR's file list — so the tests assert on what GitHub would hold, not
//! on which mock was hit. Failures are injected per route. Response bodies come from
//! the real fixtures in `tests/fixtures/rest/` where one exists.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::Engine;
use promptgate::forge::{
    Forge, ForgeError, ForgeRetryPolicy, ForgeSource, GitHubAuth, GitHubForge, RepoId, StatusState,
};
use promptgate::source::{Rev, Source};
use serde_json::{json, Value};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const REPO: &str = "octo-org/prompts";
const TOKEN: &str = "ghp_SECRET123";
const BOT: &str = "promptgate-bot";
const MARKER: &str = "<!-- promptgate:sticky -->";
const BASE_SHA: &str = "1111111111111111111111111111111111111111";
const HEAD_SHA: &str = "2222222222222222222222222222222222222222";
const PR: u64 = 7;

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/rest/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn fixture_json(name: &str) -> Value {
    serde_json::from_str(&fixture(name)).unwrap()
}

/// The recorded 422 `Validation Failed` body (octokit/fixtures, first interaction).
fn validation_failed_body() -> String {
    fixture_json("rest.error-422-validation.octokit-fixtures.nock.json")[0]["response"].to_string()
}

// ---- the fake's state ------------------------------------------------------------

#[derive(Clone, Debug)]
struct Comment {
    id: u64,
    issue: u64,
    login: String,
    body: String,
}

#[derive(Clone, Debug)]
struct StatusRec {
    sha: String,
    state: String,
    context: String,
    description: String,
    target_url: Option<String>,
}

#[derive(Clone, Debug)]
struct Logged {
    method: String,
    path: String,
    query: String,
    auth: Option<String>,
}

struct Failure {
    method: &'static str,
    path_prefix: String,
    times: u32,
    status: u16,
    body: String,
    headers: Vec<(&'static str, String)>,
    /// Put the request's Authorization header into the error message (a careless
    /// proxy), to prove the client scrubs it.
    echo_auth: bool,
}

struct PrFile {
    status: &'static str,
    filename: String,
    previous: Option<String>,
}

#[derive(Default)]
struct State {
    bot_login: String,
    comments: Vec<Comment>,
    next_comment_id: u64,
    statuses: Vec<StatusRec>,
    /// (commit, path) → bytes.
    files: BTreeMap<(String, String), Vec<u8>>,
    /// Paths the contents API does not inline (over 1 MB): served by the blob API.
    large: HashSet<String>,
    pr_files: Vec<PrFile>,
    pr_files_page_size: usize,
    pulls: Vec<Value>,
    failures: Vec<Failure>,
    requests: Vec<Logged>,
    /// GitHub App: installation tokens minted.
    tokens_minted: u32,
}

impl State {
    fn count(&self, method: &str, path: &str) -> usize {
        self.requests
            .iter()
            .filter(|r| r.method == method && r.path == path)
            .count()
    }

    fn ours(&self) -> Vec<&Comment> {
        self.comments
            .iter()
            .filter(|c| c.login == self.bot_login && c.body.contains(MARKER))
            .collect()
    }
}

#[derive(Clone)]
struct FakeGitHub {
    state: Arc<Mutex<State>>,
    /// `/api/v3` for GitHub Enterprise.
    prefix: String,
    comment_template: Value,
    file_template: Value,
    status_body: String,
}

fn json_response(status: u16, body: &Value) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_raw(body.to_string(), "application/json; charset=utf-8")
}

fn not_found() -> ResponseTemplate {
    json_response(
        404,
        &json!({"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}),
    )
}

fn percent_decode(text: &str) -> String {
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
fn github_base64(bytes: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut out = String::new();
    for chunk in b64.as_bytes().chunks(60) {
        out.push_str(std::str::from_utf8(chunk).unwrap());
        out.push('\n');
    }
    out
}

fn blob_sha(sha: &str, path: &str) -> String {
    format!("blob-{}-{}", &sha[..7], path.replace('/', "_"))
}

impl FakeGitHub {
    fn comment_json(&self, c: &Comment) -> Value {
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

    fn paged(
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

    fn route(&self, st: &mut State, method: &str, path: &str, req: &Request) -> ResponseTemplate {
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
            ("GET", ["repos", o, r, "installation"]) if format!("{o}/{r}") == REPO => {
                json_response(200, &json!({"id": 555, "app_id": 99}))
            }
            ("POST", ["app", "installations", "555", "access_tokens"]) => {
                st.tokens_minted += 1;
                json_response(
                    201,
                    &json!({"token": format!("ghs_INSTALL{}", st.tokens_minted), "expires_at": "2099-01-01T00:00:00Z", "permissions": {}}),
                )
            }
            (_, ["repos", o, r, ..]) if format!("{o}/{r}") != REPO => not_found(),

            ("GET", ["repos", _, _, "issues", n, "comments"]) => {
                let n: u64 = n.parse().unwrap();
                let items = st
                    .comments
                    .iter()
                    .filter(|c| c.issue == n)
                    .map(|c| self.comment_json(c))
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
                json_response(201, &self.comment_json(&c))
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
                json_response(200, &self.comment_json(&c))
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

struct Harness {
    server: MockServer,
    state: Arc<Mutex<State>>,
    prefix: String,
}

impl Harness {
    async fn start() -> Self {
        Self::start_with_prefix("").await
    }

    async fn start_with_prefix(prefix: &str) -> Self {
        let server = MockServer::start().await;
        let state = Arc::new(Mutex::new(State {
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

    fn api_url(&self) -> String {
        format!("{}{}", self.server.uri(), self.prefix)
    }

    fn forge(&self) -> GitHubForge {
        GitHubForge::new(&self.api_url(), GitHubAuth::Token(TOKEN.to_string()))
            .unwrap()
            .with_retry_policy(ForgeRetryPolicy::fast())
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    fn fail(&self, method: &'static str, path_prefix: &str, times: u32, status: u16, body: &str) {
        self.fail_with(method, path_prefix, times, status, body, vec![]);
    }

    fn fail_with(
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

    fn put_file(&self, sha: &str, path: &str, bytes: &[u8]) {
        self.state()
            .files
            .insert((sha.to_string(), path.to_string()), bytes.to_vec());
    }
}

fn repo() -> RepoId {
    RepoId::new(REPO)
}

fn comments_path() -> String {
    format!("/repos/{REPO}/issues/{PR}/comments")
}

// ---- sticky comment --------------------------------------------------------------

#[tokio::test]
async fn upsert_creates_once_then_edits_in_place() {
    let h = Harness::start().await;
    {
        let mut st = h.state();
        // 120 comments by people (ours will land on page 2), one of which quotes the
        // marker: it must never be taken for ours.
        for i in 0..120u64 {
            let body = if i == 3 {
                format!("quoting the bot: {MARKER} looks wrong")
            } else {
                format!("comment {i}")
            };
            st.next_comment_id += 1;
            let id = 1000 + st.next_comment_id;
            st.comments.push(Comment {
                id,
                issue: PR,
                login: "octocat".into(),
                body,
            });
        }
    }
    let forge = h.forge();

    let first = forge
        .upsert_comment(
            &repo(),
            PR,
            MARKER,
            &format!("{MARKER}\n**promptgate**: running"),
        )
        .await
        .unwrap();
    let second = forge
        .upsert_comment(&repo(), PR, MARKER, "**promptgate**: pass") // marker added by the client
        .await
        .unwrap();

    assert_eq!(first.id, second.id, "edited in place");
    assert_eq!(
        second.url.as_deref(),
        Some(
            format!(
                "https://github.com/{REPO}/pull/{PR}#issuecomment-{}",
                second.id
            )
            .as_str()
        )
    );
    let st = h.state();
    let ours = st.ours();
    assert_eq!(ours.len(), 1, "exactly one sticky comment");
    assert_eq!(ours[0].id.to_string(), first.id);
    assert_eq!(ours[0].body, format!("{MARKER}\n**promptgate**: pass"));
    assert_eq!(st.comments.len(), 121);
    assert!(st
        .comments
        .iter()
        .any(|c| c.login == "octocat" && c.body.contains(MARKER)));
    assert_eq!(st.count("POST", &comments_path()), 1);
    assert_eq!(
        st.count(
            "PATCH",
            &format!("/repos/{REPO}/issues/comments/{}", first.id)
        ),
        1
    );
    // Both pages were read each time.
    assert!(st
        .requests
        .iter()
        .any(|r| r.path == comments_path() && r.query == "per_page=100&page=2"));
    // The token is sent as a bearer token.
    assert!(st
        .requests
        .iter()
        .all(|r| r.auth.as_deref() == Some(&*format!("Bearer {TOKEN}"))));
}

#[tokio::test]
async fn an_unchanged_body_is_not_rewritten() {
    let h = Harness::start().await;
    let forge = h.forge();
    let body = format!("{MARKER}\nsame");
    forge
        .upsert_comment(&repo(), PR, MARKER, &body)
        .await
        .unwrap();
    forge
        .upsert_comment(&repo(), PR, MARKER, &body)
        .await
        .unwrap();
    let st = h.state();
    assert_eq!(st.ours().len(), 1);
    assert!(st.requests.iter().all(|r| r.method != "PATCH"));
}

#[tokio::test]
async fn a_502_on_the_comment_write_is_retried() {
    let h = Harness::start().await;
    let forge = h.forge();
    h.fail(
        "POST",
        &comments_path(),
        1,
        502,
        "<html><body>502 Bad Gateway</body></html>",
    );
    let created = forge
        .upsert_comment(&repo(), PR, MARKER, &format!("{MARKER}\nv1"))
        .await
        .unwrap();
    h.fail(
        "PATCH",
        &format!("/repos/{REPO}/issues/comments/"),
        2,
        503,
        "",
    );
    let edited = forge
        .upsert_comment(&repo(), PR, MARKER, &format!("{MARKER}\nv2"))
        .await
        .unwrap();
    assert_eq!(created.id, edited.id);
    let st = h.state();
    assert_eq!(
        st.count("POST", &comments_path()),
        2,
        "one 502, one success"
    );
    assert_eq!(
        st.count(
            "PATCH",
            &format!("/repos/{REPO}/issues/comments/{}", created.id)
        ),
        3
    );
    assert_eq!(st.ours().len(), 1);
    assert_eq!(st.ours()[0].body, format!("{MARKER}\nv2"));
}

#[tokio::test]
async fn a_422_is_permanent_and_not_retried() {
    let h = Harness::start().await;
    let forge = h.forge();
    h.fail("POST", &comments_path(), 10, 422, &validation_failed_body());
    let err = forge
        .upsert_comment(&repo(), PR, MARKER, "body")
        .await
        .unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    assert_eq!(err.status(), Some(422));
    assert!(
        err.to_string()
            .contains("Validation Failed (Label.color: invalid)"),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains(&format!("POST {}", comments_path())),
        "{err}"
    );
    assert_eq!(h.state().count("POST", &comments_path()), 1);
    assert!(h.state().comments.is_empty());
}

#[tokio::test]
async fn post_comment_creates_a_new_comment_each_time() {
    let h = Harness::start().await;
    let forge = h.forge();
    let a = forge
        .post_comment(&repo(), PR, "a maintainer must run `/promptgate run`")
        .await
        .unwrap();
    let b = forge.post_comment(&repo(), PR, "again").await.unwrap();
    assert_ne!(a.id, b.id);
    assert_eq!(h.state().comments.len(), 2);
}

// ---- statuses --------------------------------------------------------------------

#[tokio::test]
async fn set_status_posts_to_the_exact_sha() {
    let h = Harness::start().await;
    let forge = h.forge();
    forge
        .set_status(
            &repo(),
            HEAD_SHA,
            "promptgate",
            StatusState::Pending,
            "evaluating 3 suites",
            None,
        )
        .await
        .unwrap();
    let long = "needs_review: ".to_string() + &"é".repeat(300);
    forge
        .set_status(
            &repo(),
            HEAD_SHA,
            "promptgate",
            StatusState::Failure,
            &long,
            Some("https://bot.example/runs/42"),
        )
        .await
        .unwrap();
    let st = h.state();
    assert_eq!(st.statuses.len(), 2);
    let (pending, fin) = (&st.statuses[0], &st.statuses[1]);
    assert_eq!(pending.sha, HEAD_SHA);
    assert_eq!(pending.context, "promptgate");
    assert_eq!(pending.state, "pending");
    assert_eq!(pending.description, "evaluating 3 suites");
    assert_eq!(pending.target_url, None);
    assert_eq!(fin.sha, HEAD_SHA);
    assert_eq!(fin.state, "failure");
    assert!(fin.description.starts_with("needs_review: é"));
    assert_eq!(fin.description.chars().count(), 140);
    assert_eq!(
        fin.target_url.as_deref(),
        Some("https://bot.example/runs/42")
    );
}

// ---- reading files ---------------------------------------------------------------

#[tokio::test]
async fn read_file_decodes_content_and_404_is_none() {
    let h = Harness::start().await;
    h.put_file(
        HEAD_SHA,
        "prompts/summarise.md",
        b"Summarise:\n{{ text }}\n",
    );
    h.put_file(HEAD_SHA, "prompts/with space#1.md", "héllo".as_bytes());
    h.put_file(HEAD_SHA, "empty.txt", b"");
    let forge = h.forge();
    assert_eq!(
        forge
            .read_file(&repo(), HEAD_SHA, "prompts/summarise.md")
            .await
            .unwrap()
            .as_deref(),
        Some(&b"Summarise:\n{{ text }}\n"[..])
    );
    assert_eq!(
        forge
            .read_file(&repo(), HEAD_SHA, "prompts/with space#1.md")
            .await
            .unwrap()
            .as_deref(),
        Some("héllo".as_bytes())
    );
    assert_eq!(
        forge
            .read_file(&repo(), HEAD_SHA, "empty.txt")
            .await
            .unwrap(),
        Some(vec![])
    );
    assert_eq!(
        forge
            .read_file(&repo(), BASE_SHA, "prompts/summarise.md")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        forge
            .read_file(&repo(), HEAD_SHA, "missing.md")
            .await
            .unwrap(),
        None
    );
    let st = h.state();
    assert!(st.requests.iter().any(|r| r.path
        == format!("/repos/{REPO}/contents/prompts/with%20space%231.md")
        && r.query == format!("ref={HEAD_SHA}")));
}

#[tokio::test]
async fn a_file_over_1mb_is_read_through_the_blob_api() {
    let h = Harness::start().await;
    let big: Vec<u8> = (0..1_200_000u32).map(|i| (i % 251) as u8).collect();
    h.put_file(HEAD_SHA, "data/big.jsonl", &big);
    h.state().large.insert("data/big.jsonl".into());
    let got = h
        .forge()
        .read_file(&repo(), HEAD_SHA, "data/big.jsonl")
        .await
        .unwrap();
    assert_eq!(got.as_deref(), Some(&big[..]));
    let blob = blob_sha(HEAD_SHA, "data/big.jsonl");
    assert_eq!(
        h.state()
            .count("GET", &format!("/repos/{REPO}/git/blobs/{blob}")),
        1
    );
}

#[tokio::test]
async fn list_files_returns_blobs_only() {
    let h = Harness::start().await;
    h.put_file(HEAD_SHA, "promptgate.yaml", b"x");
    h.put_file(HEAD_SHA, "prompts/a.md", b"a");
    h.put_file(HEAD_SHA, "prompts/deep/b.md", b"b");
    h.put_file(BASE_SHA, "old.md", b"o");
    let files = h.forge().list_files(&repo(), HEAD_SHA).await.unwrap();
    assert_eq!(
        files,
        vec!["promptgate.yaml", "prompts/a.md", "prompts/deep/b.md"]
    );
    let st = h.state();
    assert!(st.requests.iter().any(
        |r| r.path == format!("/repos/{REPO}/git/trees/{HEAD_SHA}") && r.query == "recursive=1"
    ));
}

#[tokio::test]
async fn changed_files_paginates_and_includes_renamed_from() {
    let h = Harness::start().await;
    {
        let mut st = h.state();
        let f = |status, name: &str, prev: Option<&str>| PrFile {
            status,
            filename: name.to_string(),
            previous: prev.map(String::from),
        };
        st.pr_files = vec![
            f("modified", "promptgate.yaml", None),
            f("added", "prompts/new.md", None),
            f(
                "renamed",
                "prompts/summary.md",
                Some("prompts/summarise.md"),
            ),
            f("removed", "datasets/old.jsonl", None),
            f("modified", "README.md", None),
        ];
    }
    let files = h.forge().changed_files(&repo(), PR).await.unwrap();
    assert_eq!(
        files,
        vec![
            "promptgate.yaml",
            "prompts/new.md",
            "prompts/summary.md",
            "prompts/summarise.md",
            "datasets/old.jsonl",
            "README.md"
        ]
    );
    let st = h.state();
    let pages: Vec<&str> = st
        .requests
        .iter()
        .filter(|r| r.path == format!("/repos/{REPO}/pulls/{PR}/files"))
        .map(|r| r.query.as_str())
        .collect();
    assert_eq!(
        pages,
        vec![
            "per_page=100&page=1",
            "per_page=100&page=2",
            "per_page=100&page=3"
        ]
    );
}

#[tokio::test]
async fn pull_request_and_prs_for_a_sha() {
    let h = Harness::start().await;
    let pr = |number: u64, state: &str, head_repo: Option<&str>, head_sha: &str| {
        json!({
            "number": number, "state": state, "draft": number == 9,
            "merge_commit_sha": "9999999999999999999999999999999999999999",
            "base": {"ref": "main", "sha": BASE_SHA, "repo": {"full_name": REPO}},
            "head": {"ref": "feature", "sha": head_sha,
                     "repo": head_repo.map(|r| json!({"full_name": r})).unwrap_or(Value::Null)},
        })
    };
    h.state().pulls = vec![
        pr(PR, "open", Some(REPO), HEAD_SHA),
        pr(8, "open", Some("mallory/prompts"), HEAD_SHA),
        pr(9, "open", None, BASE_SHA),
        pr(10, "closed", Some(REPO), HEAD_SHA),
    ];
    let forge = h.forge();
    let info = forge.pull_request(&repo(), PR).await.unwrap();
    assert_eq!(info.number, PR);
    assert_eq!(info.base_ref, "main");
    assert_eq!(info.base_sha, BASE_SHA);
    assert_eq!(info.head_sha, HEAD_SHA);
    assert_eq!(info.head_repo, REPO);
    assert!(!info.is_fork && !info.draft);
    let fork = forge.pull_request(&repo(), 8).await.unwrap();
    assert!(fork.is_fork);
    assert_eq!(fork.head_repo, "mallory/prompts");
    let deleted = forge.pull_request(&repo(), 9).await.unwrap();
    assert!(deleted.is_fork && deleted.draft);
    assert_eq!(
        forge
            .pull_requests_for_sha(&repo(), HEAD_SHA)
            .await
            .unwrap(),
        vec![PR, 8]
    );
    assert!(forge
        .pull_request(&repo(), 404)
        .await
        .unwrap_err()
        .is_not_found());
}

// ---- the core's Source -----------------------------------------------------------

#[tokio::test]
async fn forge_source_reads_through_and_memoizes() {
    let h = Harness::start().await;
    h.put_file(BASE_SHA, "prompts/a.md", b"base");
    h.put_file(HEAD_SHA, "prompts/a.md", b"head");
    h.state().pr_files = vec![PrFile {
        status: "modified",
        filename: "prompts/a.md".into(),
        previous: None,
    }];
    let forge: Arc<dyn Forge> = Arc::new(h.forge());
    let source = ForgeSource::new(forge, repo(), PR);
    let (base, head) = (Rev::Commit(BASE_SHA.into()), Rev::Commit(HEAD_SHA.into()));

    assert_eq!(
        source.changed_paths(&base, &head).await.unwrap(),
        vec!["prompts/a.md"]
    );
    assert_eq!(
        source.read(&head, "prompts/a.md").await.unwrap().as_deref(),
        Some(&b"head"[..])
    );
    assert_eq!(
        source.read(&base, "prompts/a.md").await.unwrap().as_deref(),
        Some(&b"base"[..])
    );
    assert_eq!(source.read(&head, "nope.md").await.unwrap(), None);
    let contents = |st: &State| {
        st.requests
            .iter()
            .filter(|r| r.path.contains("/contents/"))
            .count()
    };
    let files = |st: &State| {
        st.requests
            .iter()
            .filter(|r| r.path.ends_with("/files"))
            .count()
    };
    let counts = || {
        let st = h.state();
        (contents(&st), files(&st))
    };
    let before = counts();
    assert_eq!(before.0, 3);

    // Again: answered from memory, the missing file included.
    assert_eq!(
        source.read(&head, "prompts/a.md").await.unwrap().as_deref(),
        Some(&b"head"[..])
    );
    assert_eq!(source.read(&head, "nope.md").await.unwrap(), None);
    assert_eq!(
        source.changed_paths(&base, &head).await.unwrap(),
        vec!["prompts/a.md"]
    );
    assert_eq!(counts(), before);

    assert_eq!(
        source.list_files(&head).await.unwrap(),
        vec!["prompts/a.md"]
    );
    let err = source
        .read(&Rev::WorkTree, "prompts/a.md")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("work tree"), "{err}");
}

// ---- rate limits and errors ------------------------------------------------------

#[tokio::test]
async fn a_secondary_rate_limit_403_with_retry_after_is_retried() {
    let h = Harness::start().await;
    h.fail_with(
        "POST",
        &format!("/repos/{REPO}/statuses/"),
        1,
        403,
        r#"{"message":"You have exceeded a secondary rate limit. Please wait a few minutes before you try again.","documentation_url":"https://docs.github.com/rest/overview/resources-in-the-rest-api#secondary-rate-limits"}"#,
        vec![("retry-after", "1".into())],
    );
    let started = Instant::now();
    h.forge()
        .set_status(
            &repo(),
            HEAD_SHA,
            "promptgate",
            StatusState::Pending,
            "queued",
            None,
        )
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "{:?}",
        started.elapsed()
    );
    let st = h.state();
    assert_eq!(
        st.count("POST", &format!("/repos/{REPO}/statuses/{HEAD_SHA}")),
        2
    );
    assert_eq!(st.statuses.len(), 1);
}

#[tokio::test]
async fn a_secondary_rate_limit_without_retry_after_and_a_429_are_retried() {
    let h = Harness::start().await;
    h.fail(
        "GET",
        &format!("/repos/{REPO}/git/trees/"),
        1,
        403,
        r#"{"message":"You have exceeded a secondary rate limit and have been temporarily blocked from content creation."}"#,
    );
    h.fail_with(
        "GET",
        &format!("/repos/{REPO}/git/trees/"),
        1,
        429,
        r#"{"message":"Too Many Requests"}"#,
        vec![("x-ratelimit-remaining", "0".into())],
    );
    h.put_file(HEAD_SHA, "a.md", b"a");
    let files = h.forge().list_files(&repo(), HEAD_SHA).await.unwrap();
    assert_eq!(files, vec!["a.md"]);
    assert_eq!(
        h.state()
            .count("GET", &format!("/repos/{REPO}/git/trees/{HEAD_SHA}")),
        3
    );
}

#[tokio::test]
async fn a_plain_403_is_permanent() {
    let h = Harness::start().await;
    h.fail(
        "POST",
        &format!("/repos/{REPO}/statuses/"),
        5,
        403,
        &fixture("rest.collaborator-permission.403-no-push-access.pygithub-2018.json"),
    );
    let err = h
        .forge()
        .set_status(
            &repo(),
            HEAD_SHA,
            "promptgate",
            StatusState::Error,
            "x",
            None,
        )
        .await
        .unwrap_err();
    assert!(!err.is_retryable());
    assert_eq!(err.status(), Some(403));
    assert!(err.to_string().contains("Must have push access"), "{err}");
    assert_eq!(
        h.state()
            .count("POST", &format!("/repos/{REPO}/statuses/{HEAD_SHA}")),
        1
    );
}

#[tokio::test]
async fn persistent_5xx_gives_up_as_retryable() {
    let h = Harness::start().await;
    h.fail(
        "GET",
        &format!("/repos/{REPO}/pulls/{PR}"),
        100,
        500,
        r#"{"message":"Server Error"}"#,
    );
    let err = h.forge().pull_request(&repo(), PR).await.unwrap_err();
    assert!(err.is_retryable());
    assert_eq!(err.status(), Some(500));
    assert!(
        err.to_string().ends_with("(gave up after 5 attempts)"),
        "{err}"
    );
    assert_eq!(
        h.state().count("GET", &format!("/repos/{REPO}/pulls/{PR}")),
        5
    );
}

#[tokio::test]
async fn errors_never_contain_the_token() {
    let h = Harness::start().await;
    let forge = h.forge();
    let mut errors: Vec<ForgeError> = Vec::new();

    // A server that echoes the Authorization header back, permanently and transiently.
    for (status, times) in [(401u16, 1u32), (502, 100)] {
        h.state().failures.push(Failure {
            method: "GET",
            path_prefix: format!("/repos/{REPO}/pulls/"),
            times,
            status,
            body: String::new(),
            headers: vec![],
            echo_auth: true,
        });
        errors.push(forge.pull_request(&repo(), PR).await.unwrap_err());
        h.state().failures.clear();
    }
    // Nothing listening.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let offline = GitHubForge::new(
        &format!("http://127.0.0.1:{closed}"),
        GitHubAuth::Token(TOKEN.into()),
    )
    .unwrap()
    .with_retry_policy(ForgeRetryPolicy {
        max_attempts: 2,
        ..ForgeRetryPolicy::fast()
    });
    let e = offline
        .upsert_comment(&repo(), PR, MARKER, "x")
        .await
        .unwrap_err();
    assert!(e.is_retryable(), "{e}");
    errors.push(e);
    errors.push(
        offline
            .read_file(&repo(), HEAD_SHA, "a.md")
            .await
            .unwrap_err(),
    );
    // A bad API URL carrying credentials.
    errors.push(
        GitHubForge::new(
            &format!("https://x:{TOKEN}@ghe.example/api v3"),
            GitHubAuth::Token(TOKEN.into()),
        )
        .unwrap_err(),
    );
    errors
        .push(GitHubForge::new("ftp://ghe.example", GitHubAuth::Token(TOKEN.into())).unwrap_err());

    assert!(h
        .state()
        .requests
        .iter()
        .any(|r| r.auth.as_deref() == Some("Bearer ghp_SECRET123")));
    assert_eq!(errors.len(), 6);
    for e in &errors {
        for text in [e.to_string(), format!("{e:?}")] {
            assert!(!text.contains(TOKEN), "token leaked: {text}");
            assert!(!text.contains("SECRET123"), "token leaked: {text}");
        }
    }
    assert!(errors[0].to_string().contains("HTTP 401"), "{}", errors[0]);
    assert!(errors[1].to_string().contains("HTTP 502"), "{}", errors[1]);
}

#[tokio::test]
async fn github_enterprise_base_path_is_kept() {
    let h = Harness::start_with_prefix("/api/v3").await;
    h.put_file(HEAD_SHA, "prompts/a.md", b"ghe");
    let forge = GitHubForge::new(
        &format!("{}/", h.api_url()),
        GitHubAuth::Token(TOKEN.into()),
    )
    .unwrap()
    .with_retry_policy(ForgeRetryPolicy::fast());
    assert_eq!(
        forge
            .read_file(&repo(), HEAD_SHA, "prompts/a.md")
            .await
            .unwrap()
            .as_deref(),
        Some(&b"ghe"[..])
    );
    forge
        .upsert_comment(&repo(), PR, MARKER, "on GHE")
        .await
        .unwrap();
    assert_eq!(h.state().ours().len(), 1);
    assert!(h.state().requests.iter().all(|r| r.auth.is_some()));
}

// ---- GitHub App ------------------------------------------------------------------

/// A throwaway RSA key made with the `openssl` command; `None` when it is missing.
fn rsa_key_pem() -> Option<String> {
    let out = std::process::Command::new("openssl")
        .args(["genrsa", "-traditional", "2048"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8(out.stdout).ok())
        .flatten()
}

#[tokio::test]
async fn github_app_exchanges_its_jwt_for_a_cached_installation_token() {
    let Some(pem) = rsa_key_pem() else {
        eprintln!("openssl not available: skipping the GitHub App test");
        return;
    };
    let h = Harness::start().await;
    h.state().bot_login = "promptgate[bot]".into();
    h.state().comments.push(Comment {
        id: 1,
        issue: PR,
        login: "octocat".into(),
        body: format!("{MARKER} (quoted by a person)"),
    });
    let forge = GitHubForge::new(
        &h.api_url(),
        GitHubAuth::App {
            app_id: 99,
            private_key_pem: pem,
        },
    )
    .unwrap()
    .with_retry_policy(ForgeRetryPolicy::fast());
    forge
        .set_status(
            &repo(),
            HEAD_SHA,
            "promptgate",
            StatusState::Pending,
            "queued",
            None,
        )
        .await
        .unwrap();
    forge
        .upsert_comment(&repo(), PR, MARKER, "v1")
        .await
        .unwrap();
    forge
        .upsert_comment(&repo(), PR, MARKER, "v2")
        .await
        .unwrap();

    let st = h.state();
    assert_eq!(st.tokens_minted, 1, "the installation token is cached");
    assert_eq!(st.ours().len(), 1);
    assert_eq!(st.ours()[0].body, format!("{MARKER}\nv2"));
    for r in &st.requests {
        let auth = r.auth.as_deref().unwrap_or("");
        if r.path == format!("/repos/{REPO}/installation") || r.path.starts_with("/app") {
            assert!(
                auth.starts_with("Bearer ey"),
                "JWT expected on {}: {auth}",
                r.path
            );
        } else {
            assert_eq!(
                auth, "Bearer ghs_INSTALL1",
                "installation token expected on {}",
                r.path
            );
        }
    }
    assert_eq!(st.count("GET", &format!("/repos/{REPO}/installation")), 1);
}

#[test]
fn a_bad_app_key_is_a_clear_error() {
    let e = GitHubForge::new(
        "https://api.github.com",
        GitHubAuth::App {
            app_id: 1,
            private_key_pem: "not a key".into(),
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("private key"), "{e}");
}

// ---- the bot's run pipeline against this fake GitHub ------------------------------

mod bot_pipeline {
    use super::*;
    use promptgate::bot::Bot;
    use promptgate::event::{ForgeKind, RepoRef};
    use promptgate::server::metrics::Metrics;
    use promptgate::store::Store;
    use wiremock::matchers::{method, path};

    /// A chat model that answers with the user message, so the billing assertion
    /// (`icontains "invoice"`) passes at base and fails when the prompt drops the word.
    struct Echo;

    impl Respond for Echo {
        fn respond(&self, req: &Request) -> ResponseTemplate {
            let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
            let user = body["messages"]
                .as_array()
                .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
                .and_then(|m| m["content"].as_str())
                .unwrap_or_default()
                .to_string();
            ResponseTemplate::new(200).set_body_json(json!({
                "choices": [{"index": 0, "message": {"role": "assistant", "content": user}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 5}
            }))
        }
    }

    fn pull(number: u64, head_sha: &str, head_repo: &str) -> Value {
        json!({
            "number": number, "state": "open", "draft": false,
            "base": {"ref": "main", "sha": BASE_SHA, "repo": {"full_name": REPO}},
            "head": {"ref": "feature", "sha": head_sha, "repo": {"full_name": head_repo}},
        })
    }

    /// The repository at BASE_SHA and at `head` (a prompt edit), and PR 7 between them.
    fn seed(h: &Harness, model_url: &str, head: &str, head_prompt: &str) {
        for sha in [BASE_SHA, head] {
            h.put_file(
                sha,
                ".promptgate.yml",
                b"version: 1\nsuites:\n  billing:\n    prompts: { user: prompts/user.j2 }\n    model: models/m.yaml\n    dataset: evals/b.jsonl\n    metrics:\n      assertions: { min: 1.0 }\n",
            );
            h.put_file(
                sha,
                "models/m.yaml",
                format!("provider: openai\nmodel: chat\nbase_url: {model_url}\n").as_bytes(),
            );
            h.put_file(
                sha,
                "evals/b.jsonl",
                b"{\"id\": \"a\", \"vars\": {\"n\": 1}, \"assert\": [{\"type\": \"icontains\", \"value\": \"invoice\"}]}\n{\"id\": \"b\", \"vars\": {\"n\": 2}, \"assert\": [{\"type\": \"icontains\", \"value\": \"invoice\"}]}\n",
            );
        }
        h.put_file(BASE_SHA, "prompts/user.j2", b"Explain invoice {{ n }}.");
        h.put_file(head, "prompts/user.j2", head_prompt.as_bytes());
        let mut st = h.state();
        st.pr_files = vec![PrFile {
            status: "modified",
            filename: "prompts/user.j2".into(),
            previous: None,
        }];
        st.pulls = vec![pull(PR, head, REPO)];
    }

    async fn bot(h: &Harness) -> Bot {
        let store = Store::open_url("sqlite::memory:").await.unwrap();
        let mut forges: std::collections::HashMap<ForgeKind, Arc<dyn Forge>> = Default::default();
        forges.insert(ForgeKind::Github, Arc::new(h.forge()));
        Bot::new(
            forges,
            store,
            Arc::new(Metrics::new()),
            "http://bot.example/".into(),
            4,
        )
    }

    async fn model() -> MockServer {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v1/chat/completions"))
            .respond_with(Echo)
            .mount(&server)
            .await;
        server
    }

    fn repo_ref() -> RepoRef {
        RepoRef {
            forge: ForgeKind::Github,
            full_name: REPO.into(),
            project_id: None,
            installation_id: None,
        }
    }

    #[tokio::test]
    async fn pending_then_final_status_one_sticky_comment_and_a_redelivery_does_nothing() {
        let h = Harness::start().await;
        let m = model().await;
        seed(
            &h,
            &format!("{}/v1", m.uri()),
            HEAD_SHA,
            "Explain the bill {{ n }}.",
        );
        let bot = bot(&h).await;
        bot.evaluate(&repo_ref(), PR, false).await.unwrap();
        {
            let st = h.state();
            let ours: Vec<&StatusRec> = st
                .statuses
                .iter()
                .filter(|s| s.context == "promptgate")
                .collect();
            assert_eq!(ours.len(), 2, "{:?}", st.statuses);
            assert_eq!(
                (ours[0].state.as_str(), ours[0].sha.as_str()),
                ("pending", HEAD_SHA)
            );
            assert_eq!(
                (ours[1].state.as_str(), ours[1].sha.as_str()),
                ("failure", HEAD_SHA)
            );
            assert!(
                ours[1].description.contains("billing: assertions"),
                "{:?}",
                ours[1]
            );
            assert_eq!(
                ours[1].target_url.as_deref(),
                Some("http://bot.example/runs/1")
            );
            let comments = st.ours();
            assert_eq!(comments.len(), 1);
            assert!(comments[0].body.contains("billing"), "{}", comments[0].body);
        }
        let calls = m.received_requests().await.unwrap().len();
        assert_eq!(calls, 4, "2 affected cases at base and head");

        // The same commit again (a redelivery or a second event): nothing happens.
        bot.evaluate(&repo_ref(), PR, false).await.unwrap();
        assert_eq!(h.state().statuses.len(), 2);
        assert_eq!(m.received_requests().await.unwrap().len(), calls);

        // A push: the same comment is edited in place; statuses go on the new SHA.
        let new_head = "3333333333333333333333333333333333333333";
        seed(
            &h,
            &format!("{}/v1", m.uri()),
            new_head,
            "Explain invoice {{ n }} in detail.",
        );
        bot.evaluate(&repo_ref(), PR, false).await.unwrap();
        let st = h.state();
        assert_eq!(st.ours().len(), 1, "a second comment was created");
        let last = st.statuses.last().unwrap();
        assert_eq!(
            (last.state.as_str(), last.sha.as_str()),
            ("success", new_head)
        );
    }

    #[tokio::test]
    async fn a_fork_pr_is_not_run_and_gets_an_explanation() {
        let h = Harness::start().await;
        let m = model().await;
        seed(
            &h,
            &format!("{}/v1", m.uri()),
            HEAD_SHA,
            "Explain the bill {{ n }}.",
        );
        h.state().pulls = vec![pull(PR, HEAD_SHA, "mallory/prompts")];
        bot(&h)
            .await
            .evaluate(&repo_ref(), PR, false)
            .await
            .unwrap();
        assert!(m.received_requests().await.unwrap().is_empty());
        let st = h.state();
        assert!(st.statuses.is_empty());
        assert_eq!(st.ours().len(), 1);
        assert!(st.ours()[0].body.contains("/promptgate run"));
    }

    #[tokio::test]
    async fn a_failed_comment_write_is_retried_without_new_model_calls() {
        let h = Harness::start().await;
        let m = model().await;
        seed(
            &h,
            &format!("{}/v1", m.uri()),
            HEAD_SHA,
            "Explain the bill {{ n }}.",
        );
        // More 502s than the forge's own retries: the run must end `error` and retry.
        h.fail(
            "POST",
            &comments_path(),
            20,
            502,
            "{\"message\": \"Bad Gateway\"}",
        );
        let bot = bot(&h).await;
        assert!(bot.evaluate(&repo_ref(), PR, false).await.is_err());
        assert_eq!(h.state().ours().len(), 0);
        let calls = m.received_requests().await.unwrap().len();
        h.state().failures.clear();
        // The worker re-delivers: the comment lands, from the cache.
        bot.evaluate(&repo_ref(), PR, false).await.unwrap();
        assert_eq!(h.state().ours().len(), 1);
        assert_eq!(m.received_requests().await.unwrap().len(), calls);
        assert_eq!(h.state().statuses.last().unwrap().state, "failure");
    }
}
