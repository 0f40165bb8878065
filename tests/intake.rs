//! Webhook intake through the real router, bors-style: a fresh SQLite database per
//! test, real published deliveries from `tests/fixtures/` (see its README), the real
//! signature rules, and the worker feeding a recording handler.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};
use tokio::sync::Notify;

mod common;

use common::service::{db_path, settings, wait_until, Service as Bot};
use promptgate::event::{
    CommentAction, CommentEvent, Event, ForgeKind, PrAction, RepoRef, UserRef,
};
use promptgate::server;
use promptgate::server::worker::{skip_reason, EventHandler};
use promptgate::settings::{RepoAllowlist, Settings};
use promptgate::webhook::{self, verify::github_signature};

/// The secret Cogni-DAO/cogni-git-review publishes in `fixtures/**/AGENTS.md`; its
/// GitHub captures are signed with it and its GitLab capture carries it as the token.
const COGNI_SECRET: &str = "402786017574bd28f9d8f7a18648939751c47fe09077d56e10f0444f14fbb73b";
/// taskcluster's test secret (`services/github/config.yml`).
const TASKCLUSTER_SECRET: &str = "abc123";
/// A second, rotated-out GitHub secret for the binary (which refuses secrets shorter
/// than 16 characters, so the fixtures' published `abc123` cannot be used there).
const ROTATED_SECRET: &str = "rotated-out-webhook-secret-0001";
const GITHUB_TOKEN: &str = "ghp_intake_test_token_0123456789";
const GITLAB_TOKEN: &str = "glpat-intake-test-token";

// ---------------------------------------------------------------------------------
// fixtures

fn fixture_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

fn fixture(rel: &str) -> Vec<u8> {
    std::fs::read(fixture_path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn fixture_json(rel: &str) -> Value {
    serde_json::from_slice(&fixture(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The delivery headers of a Cogni capture that a forge sets (not the receiving
/// proxy's), lower-cased.
fn capture_headers(rel: &str) -> Vec<(String, String)> {
    let v = fixture_json(rel);
    let mut out = Vec::new();
    for (k, val) in v["headers"].as_object().expect("headers") {
        let k = k.to_ascii_lowercase();
        if k.starts_with("x-github-")
            || k.starts_with("x-hub-")
            || k.starts_with("x-gitlab-")
            || k == "idempotency-key"
            || k == "content-type"
        {
            out.push((k, val.as_str().expect("header string").to_string()));
        }
    }
    out
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {name} header"))
}

/// A taskcluster `{headers, body}` file: its headers, the body as the file has it
/// (pretty-printed), and the body as GitHub sent it (compact, keys in order).
struct Taskcluster {
    headers: Vec<(String, String)>,
    pretty: Vec<u8>,
    compact: Vec<u8>,
}

fn taskcluster(rel: &str) -> Taskcluster {
    #[derive(serde::Deserialize)]
    struct Wrapped {
        headers: BTreeMap<String, Value>,
        body: Box<serde_json::value::RawValue>,
    }
    let bytes = fixture(rel);
    let w: Wrapped = serde_json::from_slice(&bytes).unwrap();
    Taskcluster {
        headers: w
            .headers
            .into_iter()
            .map(|(k, v)| {
                let v = match v {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                (k.to_ascii_lowercase(), v)
            })
            .collect(),
        pretty: w.body.get().as_bytes().to_vec(),
        compact: compact_json(w.body.get()).into_bytes(),
    }
}

/// `JSON.stringify(JSON.parse(text))` for text that JSON.stringify pretty-printed:
/// the same tokens with the insignificant whitespace removed, keys kept in order.
/// (`serde_json::to_vec` of a parsed `Value` is not the same here: without the
/// `preserve_order` feature it sorts object keys.)
fn compact_json(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in text.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !matches!(c, ' ' | '\n' | '\r' | '\t') {
            out.push(c);
        }
    }
    out
}

/// `.payload` of a Probot fixture.
fn probot_payload(rel: &str) -> Vec<u8> {
    serde_json::to_vec(&fixture_json(rel)["payload"]).unwrap()
}

// ---------------------------------------------------------------------------------
// the bot under test

/// Both forges, with the Cogni secret (GitHub also accepts taskcluster's).
fn default_settings() -> Settings {
    settings(&[
        ("PROMPTGATE_GITHUB_TOKEN", GITHUB_TOKEN),
        (
            "PROMPTGATE_GITHUB_WEBHOOK_SECRET",
            &format!("{COGNI_SECRET},{TASKCLUSTER_SECRET}"),
        ),
        ("PROMPTGATE_GITLAB_TOKEN", GITLAB_TOKEN),
        ("PROMPTGATE_GITLAB_WEBHOOK_SECRET", COGNI_SECRET),
    ])
}

#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<(String, Event)>>,
    /// The first this-many calls fail.
    failures_left: AtomicUsize,
}

impl Recorder {
    fn failing(n: usize) -> Self {
        Self {
            failures_left: AtomicUsize::new(n),
            ..Self::default()
        }
    }

    fn seen(&self) -> Vec<(String, Event)> {
        self.seen.lock().unwrap().clone()
    }
}

#[async_trait]
impl EventHandler for Recorder {
    async fn handle(&self, delivery_id: &str, event: Event) -> anyhow::Result<()> {
        self.seen
            .lock()
            .unwrap()
            .push((delivery_id.to_string(), event));
        let fail = self
            .failures_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if fail {
            anyhow::bail!("transient failure (test)");
        }
        Ok(())
    }
}

/// Never finishes; tells when it started.
#[derive(Default)]
struct Stuck {
    started: Notify,
}

#[async_trait]
impl EventHandler for Stuck {
    async fn handle(&self, _delivery_id: &str, _event: Event) -> anyhow::Result<()> {
        self.started.notify_one();
        std::future::pending::<()>().await;
        Ok(())
    }
}

/// The service with `handler` as the worker's handler.
async fn start_bot(settings: Settings, handler: Arc<dyn EventHandler>, db: &Path) -> Bot {
    Bot::start(settings, db, move |_| handler).await
}

fn db(dir: &tempfile::TempDir) -> PathBuf {
    db_path(dir)
}

const COGNI_GITHUB: [&str; 4] = [
    "webhook.pull_request.opened.cogni",
    "webhook.pull_request.synchronize.cogni",
    "webhook.check_suite.rerequested.cogni",
    "webhook.check_run.created.cogni",
];

// ---------------------------------------------------------------------------------
// signatures

#[tokio::test]
async fn cogni_github_captures_verify_over_the_raw_bytes_and_are_stored() {
    let dir = tempfile::tempdir().unwrap();
    let bot = start_bot(default_settings(), Arc::new(Recorder::default()), &db(&dir)).await;
    for name in COGNI_GITHUB {
        let headers = capture_headers(&format!("github/{name}.capture.json"));
        let body = fixture(&format!("github/{name}.raw-body.json"));
        let r = bot.post("/webhooks/github", &headers, body).await;
        assert_eq!(r.status().as_u16(), 202, "{name}");
    }
    assert_eq!(bot.rows().await, 4);
    let mut expected: Vec<String> = COGNI_GITHUB
        .iter()
        .map(|n| {
            header(
                &capture_headers(&format!("github/{n}.capture.json")),
                "x-github-delivery",
            )
            .to_string()
        })
        .collect();
    let mut got = bot.delivery_ids().await;
    expected.sort();
    got.sort();
    assert_eq!(got, expected);
    // Re-serialising the JSON changes the bytes and so breaks the signature.
    let name = COGNI_GITHUB[0];
    let mut headers = capture_headers(&format!("github/{name}.capture.json"));
    headers.retain(|(k, _)| k != "x-github-delivery");
    headers.push(("x-github-delivery".into(), "reserialised".into()));
    let value = fixture_json(&format!("github/{name}.raw-body.json"));
    let pretty = serde_json::to_vec_pretty(&value).unwrap();
    assert_eq!(
        bot.post("/webhooks/github", &headers, pretty)
            .await
            .status(),
        401
    );
    assert_eq!(bot.rows().await, 4);
    bot.stop().await;
}

#[tokio::test]
async fn taskcluster_signatures_verify_only_against_compact_json() {
    let dir = tempfile::tempdir().unwrap();
    let only_taskcluster = settings(&[
        ("PROMPTGATE_GITHUB_TOKEN", GITHUB_TOKEN),
        ("PROMPTGATE_GITHUB_WEBHOOK_SECRET", TASKCLUSTER_SECRET),
    ]);
    let bot = start_bot(only_taskcluster, Arc::new(Recorder::default()), &db(&dir)).await;
    let with_sha256 = [
        "github/webhook.issue_comment.created.on-pr.taskcluster.headers+body.json",
        "github/webhook.issue_comment.edited.on-pr.taskcluster.headers+body.json",
        "github/webhook.issue_comment.deleted.on-pr.taskcluster.headers+body.json",
        "github/webhook.pull_request.closed.not-merged.taskcluster.headers+body.json",
    ];
    for (i, rel) in with_sha256.iter().enumerate() {
        let tc = taskcluster(rel);
        assert!(header(&tc.headers, "x-hub-signature-256").starts_with("sha256="));
        // The file's pretty-printed bytes are not what GitHub signed.
        let r = bot
            .post("/webhooks/github", &tc.headers, tc.pretty.clone())
            .await;
        assert_eq!(r.status().as_u16(), 401, "{rel} (pretty)");
        assert_eq!(
            bot.rows().await,
            i as i64,
            "nothing stored for a bad signature"
        );
        let r = bot
            .post("/webhooks/github", &tc.headers, tc.compact.clone())
            .await;
        assert_eq!(r.status().as_u16(), 202, "{rel} (compact)");
    }
    assert_eq!(bot.rows().await, 4);

    // pull_request.opened only carries the legacy sha1 header: sign the compact body
    // with sha256 ourselves, as GitHub does today.
    let tc = taskcluster("github/webhook.pull_request.opened.taskcluster.headers+body.json");
    let mut headers: Vec<(String, String)> = tc
        .headers
        .iter()
        .filter(|(k, _)| k != "content-length" && k != "host")
        .cloned()
        .collect();
    assert!(headers.iter().all(|(k, _)| k != "x-hub-signature-256"));
    let r = bot
        .post("/webhooks/github", &headers, tc.compact.clone())
        .await;
    assert_eq!(
        r.status().as_u16(),
        401,
        "the legacy sha1 header alone is not accepted"
    );
    headers.push((
        "x-hub-signature-256".into(),
        github_signature(TASKCLUSTER_SECRET, &tc.compact),
    ));
    let r = bot.post("/webhooks/github", &headers, tc.compact).await;
    assert_eq!(r.status().as_u16(), 202);
    assert_eq!(bot.rows().await, 5);
    bot.stop().await;
}

#[tokio::test]
async fn bad_signatures_are_401_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let bot = start_bot(default_settings(), Arc::new(Recorder::default()), &db(&dir)).await;
    let name = "webhook.pull_request.opened.cogni";
    let headers = capture_headers(&format!("github/{name}.capture.json"));
    let body = fixture(&format!("github/{name}.raw-body.json"));

    // Tampered: one byte of the body changed.
    let mut tampered = body.clone();
    let pos = tampered.iter().position(|b| *b == b'3').unwrap();
    tampered[pos] = b'4';
    assert_eq!(
        bot.post("/webhooks/github", &headers, tampered)
            .await
            .status(),
        401
    );
    // Wrong secret.
    assert_eq!(
        bot.github("pull_request", "d-wrong", "not-the-secret", &body)
            .await,
        401
    );
    // Missing signature.
    let unsigned: Vec<_> = headers
        .iter()
        .filter(|(k, _)| !k.starts_with("x-hub-signature"))
        .cloned()
        .collect();
    assert_eq!(
        bot.post("/webhooks/github", &unsigned, body.clone())
            .await
            .status(),
        401
    );
    // Malformed signature.
    let mut malformed = unsigned.clone();
    malformed.push(("x-hub-signature-256".into(), "sha256=xyz".into()));
    assert_eq!(
        bot.post("/webhooks/github", &malformed, body.clone())
            .await
            .status(),
        401
    );
    // GitLab: wrong and missing token.
    let gl_headers =
        capture_headers("gitlab/webhook.merge_request.open.test-button.cogni.capture.json");
    let gl_body = fixture("gitlab/webhook.merge_request.open.test-button.cogni.raw-body.json");
    let mut wrong = gl_headers.clone();
    wrong.retain(|(k, _)| k != "x-gitlab-token");
    let missing = wrong.clone();
    wrong.push(("x-gitlab-token".into(), format!("{COGNI_SECRET}x")));
    assert_eq!(
        bot.post("/webhooks/gitlab", &wrong, gl_body.clone())
            .await
            .status(),
        401
    );
    assert_eq!(
        bot.post("/webhooks/gitlab", &missing, gl_body)
            .await
            .status(),
        401
    );

    assert_eq!(bot.rows().await, 0);
    assert_eq!(bot.state.queue.depth().await.unwrap(), 0);
    assert_eq!(bot.state.metrics.rejected(ForgeKind::Github), 4);
    assert_eq!(bot.state.metrics.rejected(ForgeKind::Gitlab), 2);
    bot.stop().await;
}

#[tokio::test]
async fn a_redelivery_is_acknowledged_and_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = Arc::new(Recorder::default());
    let bot = start_bot(default_settings(), recorder.clone(), &db(&dir)).await;
    let name = "webhook.pull_request.synchronize.cogni";
    let headers = capture_headers(&format!("github/{name}.capture.json"));
    let body = fixture(&format!("github/{name}.raw-body.json"));
    let first = bot.post("/webhooks/github", &headers, body.clone()).await;
    assert_eq!(first.status().as_u16(), 202);
    let again = bot.post("/webhooks/github", &headers, body).await;
    assert_eq!(again.status().as_u16(), 200);
    let answer: Value = again.json().await.unwrap();
    assert_eq!(answer["status"], "duplicate");
    assert_eq!(bot.rows().await, 1);
    bot.drained().await;
    assert_eq!(recorder.seen().len(), 1);
    assert_eq!(bot.state.metrics.deduped(ForgeKind::Github), 1);
    bot.stop().await;
}

#[tokio::test]
async fn gitlab_token_and_delivery_ids() {
    let dir = tempfile::tempdir().unwrap();
    let bot = start_bot(default_settings(), Arc::new(Recorder::default()), &db(&dir)).await;
    let headers =
        capture_headers("gitlab/webhook.merge_request.open.test-button.cogni.capture.json");
    let body = fixture("gitlab/webhook.merge_request.open.test-button.cogni.raw-body.json");
    let r = bot.post("/webhooks/gitlab", &headers, body.clone()).await;
    assert_eq!(r.status().as_u16(), 202);
    // Idempotency-Key is the delivery id.
    assert_eq!(
        bot.delivery_ids().await,
        [header(&headers, "idempotency-key")]
    );
    assert_eq!(
        bot.post("/webhooks/gitlab", &headers, body.clone())
            .await
            .status(),
        200
    );

    // Older GitLab: no Idempotency-Key → X-Gitlab-Event-UUID.
    let mut older: Vec<_> = headers
        .iter()
        .filter(|(k, _)| k != "idempotency-key")
        .cloned()
        .collect();
    assert_eq!(
        bot.post("/webhooks/gitlab", &older, body.clone())
            .await
            .status(),
        202
    );
    // Neither header: the body's SHA-256 identifies the event.
    older.retain(|(k, _)| k != "x-gitlab-event-uuid");
    assert_eq!(
        bot.post("/webhooks/gitlab", &older, body.clone())
            .await
            .status(),
        202
    );
    assert_eq!(
        bot.post("/webhooks/gitlab", &older, body).await.status(),
        200
    );
    let ids = bot.delivery_ids().await;
    assert_eq!(ids.len(), 3);
    assert_eq!(ids[1], header(&headers, "x-gitlab-event-uuid"));
    assert!(
        ids[2].starts_with("sha256:") && ids[2].len() == 7 + 64,
        "{}",
        ids[2]
    );
    assert_eq!(bot.state.metrics.deduped(ForgeKind::Gitlab), 2);
    bot.stop().await;
}

#[tokio::test]
async fn rotated_secrets_all_verify() {
    let dir = tempfile::tempdir().unwrap();
    let rotated = settings(&[
        ("PROMPTGATE_GITHUB_TOKEN", GITHUB_TOKEN),
        ("PROMPTGATE_GITHUB_WEBHOOK_SECRET", "old-secret, new-secret"),
        ("PROMPTGATE_GITLAB_TOKEN", GITLAB_TOKEN),
        ("PROMPTGATE_GITLAB_WEBHOOK_SECRET", "old-token,new-token"),
    ]);
    let bot = start_bot(rotated, Arc::new(Recorder::default()), &db(&dir)).await;
    let body = fixture("github/webhook.ping.repo-hook.octokit.json");
    assert_eq!(bot.github("ping", "p1", "old-secret", &body).await, 202);
    assert_eq!(bot.github("ping", "p2", "new-secret", &body).await, 202);
    assert_eq!(bot.github("ping", "p3", "newer-secret", &body).await, 401);
    let gl = fixture("gitlab/webhook.note.on-merge-request.atlantis.json");
    for (token, want) in [("new-token", 202), ("old-token", 202), ("new-toke", 401)] {
        let headers = vec![
            ("x-gitlab-event".to_string(), "Note Hook".to_string()),
            ("x-gitlab-token".to_string(), token.to_string()),
            ("x-gitlab-event-uuid".to_string(), format!("uuid-{token}")),
        ];
        assert_eq!(
            bot.post("/webhooks/gitlab", &headers, gl.clone())
                .await
                .status(),
            want,
            "{token}"
        );
    }
    assert_eq!(bot.rows().await, 4);
    bot.stop().await;
}

#[tokio::test]
async fn a_forge_without_a_secret_is_not_served() {
    let dir = tempfile::tempdir().unwrap();
    let github_only = settings(&[
        ("PROMPTGATE_GITHUB_TOKEN", GITHUB_TOKEN),
        ("PROMPTGATE_GITHUB_WEBHOOK_SECRET", COGNI_SECRET),
    ]);
    let bot = start_bot(github_only, Arc::new(Recorder::default()), &db(&dir)).await;
    let headers =
        capture_headers("gitlab/webhook.merge_request.open.test-button.cogni.capture.json");
    let body = fixture("gitlab/webhook.merge_request.open.test-button.cogni.raw-body.json");
    assert_eq!(
        bot.post("/webhooks/gitlab", &headers, body).await.status(),
        404
    );
    assert_eq!(bot.rows().await, 0);
    bot.stop().await;
}

#[tokio::test]
async fn oversized_and_incomplete_deliveries_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let bot = start_bot(default_settings(), Arc::new(Recorder::default()), &db(&dir)).await;
    let big = vec![b' '; server::MAX_BODY_BYTES + 1];
    let sent = bot
        .http
        .post(format!("{}/webhooks/github", bot.url))
        .header("x-github-event", "ping")
        .header("x-github-delivery", "big")
        .header("x-hub-signature-256", github_signature(COGNI_SECRET, &big))
        .body(big)
        .send()
        .await;
    // The server may answer 413 and close the connection before the client is done
    // sending; either way nothing is stored.
    if let Ok(r) = sent {
        assert_eq!(r.status().as_u16(), 413);
    }
    // Signed but without a delivery id.
    let body = b"{}".to_vec();
    let headers = vec![
        ("x-github-event".to_string(), "ping".to_string()),
        (
            "x-hub-signature-256".to_string(),
            github_signature(COGNI_SECRET, &body),
        ),
    ];
    assert_eq!(
        bot.post("/webhooks/github", &headers, body).await.status(),
        400
    );
    // Signed, but named like a run the bot queues for itself: a sender with the secret
    // still cannot skip the command checks by posting one.
    let run =
        br#"{"repo":{"forge":"github","full_name":"o/r"},"number":1,"suites":[],"full":true}"#;
    assert_eq!(
        bot.github("promptgate:run", "d-internal", COGNI_SECRET, run)
            .await,
        400
    );
    assert_eq!(
        bot.github(
            "pull_request",
            "promptgate:run:github:o/r#1:1:x",
            COGNI_SECRET,
            run
        )
        .await,
        400
    );
    assert_eq!(bot.rows().await, 0);
    bot.stop().await;
}

// ---------------------------------------------------------------------------------
// settings

#[tokio::test]
async fn the_service_refuses_to_start_without_a_webhook_secret() {
    let no_secret = settings(&[("PROMPTGATE_GITHUB_TOKEN", GITHUB_TOKEN)]);
    let err = server::serve(no_secret).await.unwrap_err().to_string();
    assert!(
        err.contains("PROMPTGATE_GITHUB_WEBHOOK_SECRET is not set"),
        "{err}"
    );
    let no_secret = settings(&[("PROMPTGATE_GITLAB_TOKEN", GITLAB_TOKEN)]);
    let err = no_secret.validate().unwrap_err().to_string();
    assert!(err.contains("PROMPTGATE_GITLAB_WEBHOOK_SECRET"), "{err}");

    // The binary: exit status 2 and the variable named on stderr.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_promptgate"))
        .arg("serve")
        .env_clear()
        .env("PROMPTGATE_GITHUB_TOKEN", GITHUB_TOKEN)
        .env("PROMPTGATE_LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("PROMPTGATE_GITHUB_WEBHOOK_SECRET"),
        "{stderr}"
    );
    assert!(!stderr.contains(GITHUB_TOKEN), "{stderr}");

    // A secret shorter than 16 characters is refused at start-up, without showing it.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_promptgate"))
        .arg("serve")
        .env_clear()
        .env("PROMPTGATE_GITHUB_TOKEN", GITHUB_TOKEN)
        .env(
            "PROMPTGATE_GITHUB_WEBHOOK_SECRET",
            format!("{COGNI_SECRET},{TASKCLUSTER_SECRET}"),
        )
        .env("PROMPTGATE_LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("PROMPTGATE_GITHUB_WEBHOOK_SECRET: secret #2 is 6 characters"),
        "{stderr}"
    );
    assert!(!stderr.contains(TASKCLUSTER_SECRET), "{stderr}");
}

#[test]
fn settings_debug_never_shows_credentials() {
    let s = settings(&[
        ("PROMPTGATE_GITHUB_TOKEN", GITHUB_TOKEN),
        ("PROMPTGATE_GITHUB_APP_ID", "42"),
        (
            "PROMPTGATE_GITHUB_PRIVATE_KEY",
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEsecret\n",
        ),
        ("PROMPTGATE_GITHUB_WEBHOOK_SECRET", "hook-one,hook-two"),
        ("PROMPTGATE_GITLAB_TOKEN", GITLAB_TOKEN),
        ("PROMPTGATE_GITLAB_WEBHOOK_SECRET", COGNI_SECRET),
        (
            "PROMPTGATE_DATABASE_URL",
            "postgres://bot:pg-password@db/promptgate",
        ),
    ]);
    let text = format!("{s:?}\n{s:#?}");
    for secret in [
        GITHUB_TOKEN,
        "MIIEsecret",
        "hook-one",
        "hook-two",
        GITLAB_TOKEN,
        COGNI_SECRET,
        "pg-password",
    ] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    assert!(text.contains("github_app_id: Some(42)"), "{text}");
}

#[tokio::test]
async fn the_store_url_picks_the_backend_and_other_schemes_are_refused() {
    let err = server::open_store("mysql://bot:pw-secret@db/promptgate")
        .await
        .unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("PROMPTGATE_DATABASE_URL"), "{text}");
    assert!(
        text.contains("expected sqlite://PATH or postgres://"),
        "{text}"
    );
    assert!(!text.contains("pw-secret"), "{text}");
    // A postgres:// URL opens the real server (scripts/test.sh starts one).
    let url = promptgate::store::testing::new_postgres_database()
        .await
        .unwrap();
    let store = server::open_store(&url).await.unwrap();
    assert_eq!(store.db().backend(), promptgate::store::Backend::Postgres);
}

// ---------------------------------------------------------------------------------
// parsing real payloads

fn gh(event: &str, body: &[u8]) -> Event {
    webhook::parse(ForgeKind::Github, event, body).expect("parses")
}

fn gl(event: &str, body: &[u8]) -> Event {
    webhook::parse(ForgeKind::Gitlab, event, body).expect("parses")
}

fn ignored(e: &Event) -> &str {
    match e {
        Event::Ignored(reason) => reason,
        other => panic!("expected Ignored, got {other:?}"),
    }
}

#[test]
fn parses_github_pull_requests() {
    let body = fixture("github/webhook.pull_request.opened.cogni.raw-body.json");
    let Event::PullRequest(pr) = gh("pull_request", &body) else {
        panic!("not a PR")
    };
    assert_eq!(pr.action, PrAction::Opened);
    assert_eq!(pr.number, 315);
    assert_eq!(
        pr.repo,
        RepoRef {
            forge: ForgeKind::Github,
            full_name: "derekg1729/test-repo".into(),
            project_id: None,
            installation_id: Some(87385964),
        }
    );
    assert_eq!(pr.head_sha, "eeb67d6e0f131d27102080b6bb50be2ddae28cc3");
    assert_eq!(
        pr.base_sha.as_deref(),
        Some("cf4f801049f678c0253179636aeabea6946de7e9")
    );
    assert_eq!(pr.base_ref, "main");
    assert_eq!(pr.head_ref, "cogni-e2e-1759155366275");
    assert!(!pr.is_fork && !pr.draft);
    assert_eq!(
        pr.author,
        UserRef {
            id: 58641509,
            login: "derekg1729".into()
        }
    );

    let body = fixture("github/webhook.pull_request.synchronize.cogni.raw-body.json");
    let Event::PullRequest(pr) = gh("pull_request", &body) else {
        panic!("not a PR")
    };
    assert_eq!(pr.action, PrAction::Synchronize);
    assert_eq!(pr.head_sha, "b47337c4ca1d0241a46b452efc902c18973b5ad6");

    for (file, action) in [
        (
            "github/webhook.pull_request.opened.octokit.json",
            PrAction::Opened,
        ),
        (
            "github/webhook.pull_request.synchronize.octokit.json",
            PrAction::Synchronize,
        ),
    ] {
        let Event::PullRequest(pr) = gh("pull_request", &fixture(file)) else {
            panic!("{file}: not a PR")
        };
        assert_eq!(pr.action, action, "{file}");
        assert_eq!(pr.repo.full_name, "Codertocat/Hello-World");
        assert_eq!(pr.number, 2);
        assert_eq!(pr.head_sha, "ec26c3e57ca3a959ca5aad62de7213c562f8c821");
        assert_eq!(pr.author.id, 21031067);
        assert!(!pr.is_fork);
    }
    // A taskcluster delivery without a `draft` key (older payload).
    let tc = taskcluster("github/webhook.pull_request.opened.taskcluster.headers+body.json");
    assert!(matches!(gh("pull_request", &tc.compact), Event::PullRequest(ref p) if !p.draft));

    assert!(ignored(&gh(
        "pull_request",
        &fixture("github/webhook.pull_request.labeled.octokit.json")
    ))
    .contains("labeled"));
    let tc =
        taskcluster("github/webhook.pull_request.closed.not-merged.taskcluster.headers+body.json");
    assert!(ignored(&gh("pull_request", &tc.compact)).contains("closed"));
}

#[test]
fn parses_github_comments() {
    let body = probot_payload("github/webhook.issue_comment.created.on-pr.pytorch.probot.json");
    let Event::Comment(c) = gh("issue_comment", &body) else {
        panic!("not a comment")
    };
    assert_eq!(c.action, CommentAction::Created);
    assert_eq!(c.repo.full_name, "zhouzhuojie/gha-ci-playground");
    assert_eq!((c.number, c.comment_id), (31, 890173751));
    assert_eq!(c.body, "test a new comment");
    assert_eq!(c.author.login, "zhouzhuojie");
    assert_eq!(c.author.id, 658840);
    assert!(!c.author_is_bot);
    assert_eq!(c.previous_body, None);

    let tc = taskcluster("github/webhook.issue_comment.edited.on-pr.taskcluster.headers+body.json");
    let Event::Comment(c) = gh("issue_comment", &tc.compact) else {
        panic!("not a comment")
    };
    assert_eq!(c.action, CommentAction::Edited);
    assert_eq!((c.number, c.comment_id), (15, 2158396678));
    assert_eq!(c.body, "test PR comment\r\n\r\n/taskcluster test");
    assert_eq!(c.previous_body.as_deref(), Some("test PR comment"));

    let tc =
        taskcluster("github/webhook.issue_comment.deleted.on-pr.taskcluster.headers+body.json");
    assert!(ignored(&gh("issue_comment", &tc.compact)).contains("deleted"));
    let on_issue = fixture("github/webhook.issue_comment.created.on-issue.octokit.json");
    assert!(ignored(&gh("issue_comment", &on_issue)).contains("not on a pull request"));
}

#[test]
fn parses_github_reruns_and_ping() {
    let body = fixture("github/webhook.check_suite.rerequested.cogni.raw-body.json");
    let Event::Rerun(r) = gh("check_suite", &body) else {
        panic!("not a rerun")
    };
    // The real payload's pull_requests is empty: the head SHA is what identifies it.
    assert_eq!(
        fixture_json("github/webhook.check_suite.rerequested.cogni.raw-body.json")["check_suite"]
            ["pull_requests"],
        serde_json::json!([])
    );
    assert_eq!(r.head_sha, "9acf02a83a763726b17686f7b39ee7e056643e43");
    assert_eq!(r.head_branch.as_deref(), Some("cogni-e2e-1759155577082"));
    assert_eq!(r.repo.full_name, "derekg1729/test-repo");
    assert_eq!(r.app_id, Some(2010729));

    let body = fixture("github/webhook.check_run.rerequested.octokit.json");
    let Event::Rerun(r) = gh("check_run", &body) else {
        panic!("not a rerun")
    };
    assert_eq!(r.head_sha, "d6fde92930d4715a2b49857d24b940956b26d2d3");
    assert_eq!(r.check_name.as_deref(), Some("randscape"));

    let created = fixture("github/webhook.check_run.created.cogni.raw-body.json");
    assert!(ignored(&gh("check_run", &created)).contains("created"));
    assert_eq!(
        gh(
            "ping",
            &fixture("github/webhook.ping.repo-hook.octokit.json")
        ),
        Event::Ping
    );
    assert!(ignored(&gh("installation", b"{\"action\":\"created\"}")).contains("installation"));
    assert!(webhook::parse(ForgeKind::Github, "pull_request", b"payload=%7B%7D").is_err());
}

#[test]
fn parses_gitlab_merge_requests() {
    let Event::PullRequest(mr) = gl(
        "Merge Request Hook",
        &fixture("gitlab/webhook.merge_request.open.atlantis.json"),
    ) else {
        panic!("not an MR")
    };
    assert_eq!(mr.action, PrAction::Opened);
    assert_eq!(
        mr.repo,
        RepoRef {
            forge: ForgeKind::Gitlab,
            full_name: "lkysow/atlantis-example".into(),
            project_id: Some(4580910),
            installation_id: None,
        }
    );
    assert_eq!(mr.number, 12);
    assert_eq!(mr.head_sha, "d2eae324ca26242abca45d7b49d582cddb2a4f15");
    assert_eq!(
        (mr.head_ref.as_str(), mr.base_ref.as_str()),
        ("patch-1", "main")
    );
    assert_eq!(mr.base_sha, None);
    assert!(!mr.is_fork && !mr.draft);
    assert_eq!(
        mr.author,
        UserRef {
            id: 1755902,
            login: "lkysow".into()
        }
    );

    let Event::PullRequest(mr) = gl(
        "Merge Request Hook",
        &fixture("gitlab/webhook.merge_request.update.new-commit-oldrev.atlantis.json"),
    ) else {
        panic!("not an MR")
    };
    assert_eq!(mr.action, PrAction::Synchronize);
    assert_eq!(mr.head_sha, "5ff66a1f7404deee915b50998c340e96d995f048");
    assert_eq!(mr.number, 3);

    let title_only = fixture("gitlab/webhook.merge_request.update.title.atlantis.json");
    assert!(ignored(&gl("Merge Request Hook", &title_only)).contains("update without new commits"));

    let ready = fixture("gitlab/webhook.merge_request.update.mark-as-ready.atlantis.json");
    assert!(
        matches!(gl("Merge Request Hook", &ready), Event::PullRequest(ref p) if p.action == PrAction::ReadyForReview)
    );

    // GitLab 10.2 docs example: no user ids, no draft flag.
    let old = fixture("gitlab/webhook.merge_request.docs-gitlab-10.2-2017.json");
    assert!(
        matches!(gl("Merge Request Hook", &old), Event::PullRequest(ref p) if p.action == PrAction::Opened && p.number == 1)
    );

    // The UI "Test" button replays a merged MR as `open`: nothing to evaluate.
    let test_button = fixture("gitlab/webhook.merge_request.open.test-button.cogni.raw-body.json");
    assert!(ignored(&gl("Merge Request Hook", &test_button)).contains("merged"));

    // Ours: the atlantis MR, from another project (a fork).
    let mut fork = fixture_json("gitlab/webhook.merge_request.open.atlantis.json");
    fork["object_attributes"]["source_project_id"] = serde_json::json!(999);
    let Event::PullRequest(mr) = gl("Merge Request Hook", &serde_json::to_vec(&fork).unwrap())
    else {
        panic!("not an MR")
    };
    assert!(mr.is_fork);

    // A push to the default branch is a baseline now (issue 13); other hooks are not.
    let Event::Push(push) = gl(
        "Push Hook",
        &fixture("gitlab/webhook.push.docs-current.json"),
    ) else {
        panic!("a push to the default branch")
    };
    assert_eq!(push.branch, "master");
    assert!(ignored(&gl(
        "Tag Push Hook",
        &fixture("gitlab/webhook.push.docs-current.json")
    ))
    .contains("Tag Push Hook"));
}

#[test]
fn parses_gitlab_notes() {
    let Event::Comment(c) = gl(
        "Note Hook",
        &fixture("gitlab/webhook.note.on-merge-request.atlantis.json"),
    ) else {
        panic!("not a comment")
    };
    assert_eq!(c.action, CommentAction::Created);
    assert_eq!(c.repo.full_name, "gitlabhq/gitlab-test");
    assert_eq!(c.repo.project_id, Some(5));
    assert_eq!((c.number, c.comment_id), (1, 1244));
    assert_eq!(c.body, "This MR needs work.");
    assert_eq!(
        c.author,
        UserRef {
            id: 1,
            login: "root".into()
        }
    );
    assert_eq!(
        c.head_sha.as_deref(),
        Some("562e173be03b8ff2efb05345d12df18815438a4b")
    );
    assert!(!c.author_is_bot);

    let current = fixture("gitlab/webhook.note.on-merge-request.docs-current.json");
    assert!(
        matches!(gl("Note Hook", &current), Event::Comment(ref c) if c.action == CommentAction::Created && c.number == 1)
    );

    // An edit carries no previous text and may be made by someone else: ignored.
    let mut edited: Value = serde_json::from_slice(&current).unwrap();
    edited["object_attributes"]["action"] = json!("update");
    edited["object_attributes"]["note"] = json!("/promptgate approve");
    assert!(
        ignored(&gl("Note Hook", &serde_json::to_vec(&edited).unwrap())).contains("new notes only")
    );
    // A note delivered for a user who is not its author is not acted on.
    let mut other: Value = serde_json::from_slice(&current).unwrap();
    other["user"]["id"] = json!(99);
    assert!(ignored(&gl("Note Hook", &serde_json::to_vec(&other).unwrap())).contains("not run"));
}

#[test]
fn the_bots_own_comments_and_other_repositories_are_skipped() {
    let comment = |login: &str, is_bot: bool, body: &str| {
        Event::Comment(CommentEvent {
            repo: RepoRef {
                forge: ForgeKind::Github,
                full_name: "acme/prompts".into(),
                project_id: None,
                installation_id: None,
            },
            number: 1,
            comment_id: 2,
            action: CommentAction::Created,
            author: UserRef {
                id: 3,
                login: login.into(),
            },
            body: body.into(),
            previous_body: None,
            author_is_bot: is_bot,
            head_sha: None,
        })
    };
    let all = RepoAllowlist::any();
    assert_eq!(
        skip_reason(&comment("alice", false, "/promptgate run"), &all),
        None
    );
    assert!(skip_reason(&comment("promptgate[bot]", true, "hi"), &all).is_some());
    let own = format!(
        "{}\n## promptgate: pass",
        promptgate::report::markdown::COMMENT_MARKER
    );
    assert!(skip_reason(&comment("svc-user", false, &own), &all).is_some());
    let only_other = RepoAllowlist::new(&["other/*".to_string()]).unwrap();
    assert!(skip_reason(&comment("alice", false, "x"), &only_other)
        .unwrap()
        .contains("PROMPTGATE_REPO_ALLOWLIST"));
}

// ---------------------------------------------------------------------------------
// workers

#[tokio::test]
async fn each_delivery_reaches_the_handler_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = Arc::new(Recorder::default());
    let mut s = default_settings();
    s.repo_allowlist =
        RepoAllowlist::new(&["derekg1729/*".to_string(), "lkysow/*".to_string()]).unwrap();
    let bot = start_bot(s, recorder.clone(), &db(&dir)).await;
    for name in COGNI_GITHUB {
        let headers = capture_headers(&format!("github/{name}.capture.json"));
        let body = fixture(&format!("github/{name}.raw-body.json"));
        assert_eq!(
            bot.post("/webhooks/github", &headers, body.clone())
                .await
                .status(),
            202
        );
        // A redelivery of each, right away.
        assert_eq!(
            bot.post("/webhooks/github", &headers, body).await.status(),
            200
        );
    }
    // Outside the allowlist: stored, then skipped.
    let outside = fixture("github/webhook.pull_request.opened.octokit.json");
    assert_eq!(
        bot.github("pull_request", "outside-1", COGNI_SECRET, &outside)
            .await,
        202
    );
    // A comment on a plain issue: ignored.
    let on_issue = fixture("github/webhook.issue_comment.created.on-issue.octokit.json");
    assert_eq!(
        bot.github("issue_comment", "issue-1", COGNI_SECRET, &on_issue)
            .await,
        202
    );
    // A GitLab MR push.
    let mr = fixture("gitlab/webhook.merge_request.open.atlantis.json");
    let headers = vec![
        (
            "x-gitlab-event".to_string(),
            "Merge Request Hook".to_string(),
        ),
        ("x-gitlab-token".to_string(), COGNI_SECRET.to_string()),
        ("idempotency-key".to_string(), "gl-1".to_string()),
    ];
    assert_eq!(
        bot.post("/webhooks/gitlab", &headers, mr).await.status(),
        202
    );
    bot.drained().await;

    let seen = recorder.seen();
    let mut ids: Vec<&str> = seen.iter().map(|(id, _)| id.as_str()).collect();
    ids.sort();
    let mut want: Vec<String> = COGNI_GITHUB[..3]
        .iter()
        .map(|n| {
            header(
                &capture_headers(&format!("github/{n}.capture.json")),
                "x-github-delivery",
            )
            .to_string()
        })
        .collect();
    want.push("gl-1".into());
    want.sort();
    assert_eq!(
        ids, want,
        "check_run.created, the outside repo and the issue comment are skipped"
    );
    let kinds: Vec<&str> = seen.iter().map(|(_, e)| e.kind()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "pull_request").count(), 3);
    assert_eq!(kinds.iter().filter(|k| **k == "rerun").count(), 1);
    let counts = bot.state.queue.counts().await.unwrap();
    assert_eq!((counts.done, counts.failed), (7, 0));
    bot.stop().await;
}

#[tokio::test]
async fn a_failing_handler_is_retried_and_a_broken_body_fails() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = Arc::new(Recorder::failing(2));
    let bot = start_bot(default_settings(), recorder.clone(), &db(&dir)).await;
    let body = fixture("github/webhook.pull_request.synchronize.octokit.json");
    assert_eq!(
        bot.github("pull_request", "retry-me", COGNI_SECRET, &body)
            .await,
        202
    );
    // Verified but not JSON: stored (the signature is good), then failed with the reason.
    assert_eq!(
        bot.github("pull_request", "broken", COGNI_SECRET, b"{\"action\":")
            .await,
        202
    );
    bot.drained().await;
    let seen = recorder.seen();
    assert_eq!(seen.len(), 3, "two failures, then success");
    assert!(seen.iter().all(|(id, _)| id == "retry-me"));
    let counts = bot.state.queue.counts().await.unwrap();
    assert_eq!((counts.done, counts.failed), (1, 1));
    let (error, attempts): (Option<String>, i64) =
        sqlx::query_as("SELECT last_error, attempts FROM deliveries WHERE delivery_id = 'broken'")
            .fetch_one(bot.state.store.pool())
            .await
            .unwrap();
    assert_eq!(attempts, 1, "an unparseable body is not retried");
    assert!(error.unwrap().contains("pull_request"));
    bot.stop().await;
}

/// Fails each delivery by its id: `panic-*` panics, `gone-*` gets a forge 404, `busy-*`
/// a forge 502 the first time.
#[derive(Default)]
struct ByClass {
    calls: Mutex<Vec<String>>,
}

#[async_trait]
impl EventHandler for ByClass {
    async fn handle(&self, delivery_id: &str, _event: Event) -> anyhow::Result<()> {
        let first = {
            let mut calls = self.calls.lock().unwrap();
            let first = !calls.iter().any(|c| c == delivery_id);
            calls.push(delivery_id.to_string());
            first
        };
        if delivery_id.starts_with("panic-") {
            panic!("a bug in the handler (test)");
        }
        if delivery_id.starts_with("gone-") {
            return Err(anyhow::Error::new(promptgate::forge::ForgeError::permanent(
                Some(404),
                "GET /repos/o/r/pulls/9: Not Found",
            ))
            .context("reading the pull request"));
        }
        if delivery_id.starts_with("busy-") && first {
            return Err(anyhow::Error::new(promptgate::forge::ForgeError::retryable(
                Some(502),
                "Bad Gateway",
                None,
            ))
            .context("writing the comment"));
        }
        Ok(())
    }
}

/// Issue 12 item 2: the queue retries by error class. A forge 5xx is retried; a forge
/// 404 (a retry would fail the same way) and a panic are recorded once as failed, with
/// the reason, and counted.
#[tokio::test]
async fn handler_errors_are_retried_by_class() {
    let dir = tempfile::tempdir().unwrap();
    let handler = Arc::new(ByClass::default());
    let bot = start_bot(default_settings(), handler.clone(), &db(&dir)).await;
    let body = fixture("github/webhook.pull_request.synchronize.octokit.json");
    for id in ["busy-1", "gone-1", "panic-1"] {
        assert_eq!(
            bot.github("pull_request", id, COGNI_SECRET, &body).await,
            202
        );
    }
    bot.drained().await;
    let calls = handler.calls.lock().unwrap().clone();
    let count = |id: &str| calls.iter().filter(|c| *c == id).count();
    assert_eq!(
        (count("busy-1"), count("gone-1"), count("panic-1")),
        (2, 1, 1),
        "{calls:?}"
    );
    let rows: Vec<(String, String, i64, Option<String>)> = sqlx::query_as(
        "SELECT delivery_id, status, attempts, last_error FROM deliveries ORDER BY delivery_id",
    )
    .fetch_all(bot.state.store.pool())
    .await
    .unwrap();
    let find = |id: &str| rows.iter().find(|r| r.0 == id).unwrap().clone();
    assert_eq!(find("busy-1").1, "done");
    let gone = find("gone-1");
    assert_eq!((gone.1.as_str(), gone.2), ("failed", 1));
    assert!(gone.3.unwrap().contains("Not Found"));
    let panicked = find("panic-1");
    assert_eq!((panicked.1.as_str(), panicked.2), ("failed", 1));
    assert!(panicked
        .3
        .unwrap()
        .starts_with("panic: a bug in the handler"));
    let (_, metrics) = bot.get("/metrics").await;
    assert!(
        metrics.contains("promptgate_deliveries_failed 2\n"),
        "{metrics}"
    );
    bot.stop().await;
}

#[tokio::test]
async fn shutdown_releases_the_lease_and_a_restart_processes_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let stuck = Arc::new(Stuck::default());
    let bot = start_bot(default_settings(), stuck.clone(), &db(&dir)).await;
    let body = fixture("github/webhook.pull_request.opened.octokit.json");
    assert_eq!(
        bot.github("pull_request", "long-run", COGNI_SECRET, &body)
            .await,
        202
    );
    tokio::time::timeout(Duration::from_secs(10), stuck.started.notified())
        .await
        .expect("the handler starts");
    let pool = bot.state.store.pool().clone();
    bot.stop().await;
    let (status, attempts, owner): (String, i64, Option<String>) =
        sqlx::query_as("SELECT status, attempts, lease_owner FROM deliveries")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((status.as_str(), attempts, owner), ("queued", 0, None));
    drop(pool);

    let recorder = Arc::new(Recorder::default());
    let bot = start_bot(default_settings(), recorder.clone(), &db(&dir)).await;
    bot.drained().await;
    assert_eq!(recorder.seen().len(), 1);
    assert_eq!(recorder.seen()[0].0, "long-run");
    bot.stop().await;
}

// ---------------------------------------------------------------------------------
// operations

/// Issue 15: `promptgate healthcheck` (the image's HEALTHCHECK) asks /readyz of the
/// service on PROMPTGATE_LISTEN, or the URL given: 0 when ready, 1 when not.
// Multi-threaded: the probe process is waited for on a test thread while the service
// answers on the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_healthcheck_subcommand_asks_readyz() {
    let dir = tempfile::tempdir().unwrap();
    let bot = start_bot(default_settings(), Arc::new(Stuck::default()), &db(&dir)).await;
    let run = |args: &[&str], listen: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_promptgate"))
            .arg("healthcheck")
            .args(args)
            .env_clear()
            .env("PROMPTGATE_LISTEN", listen)
            .env("PROMPTGATE_LOG", "error")
            .output()
            .unwrap()
    };
    let port = bot.url.rsplit(':').next().unwrap().to_string();
    let ready = run(&[], &format!("0.0.0.0:{port}"));
    let text = String::from_utf8_lossy(&ready.stdout).to_string();
    assert_eq!(ready.status.code(), Some(0), "{text}");
    assert!(text.starts_with("ready: http://127.0.0.1:"), "{text}");
    assert!(text.contains("/readyz answered 200"), "{text}");
    let missing = run(&["--url", &format!("{}/nowhere", bot.url)], "127.0.0.1:1");
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stdout).contains("answered 404"));
    bot.stop().await;
    let closed = run(&["--timeout", "2"], &format!("127.0.0.1:{port}"));
    assert_eq!(closed.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&closed.stdout).starts_with("not ready: "));
}

#[tokio::test]
async fn healthz_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    // A handler that never finishes keeps the queue depth observable.
    let bot = start_bot(default_settings(), Arc::new(Stuck::default()), &db(&dir)).await;
    assert_eq!(bot.get("/healthz").await.0, 200);
    assert_eq!(bot.get("/readyz").await.0, 200);
    assert_eq!(bot.get("/livez").await.0, 200);
    assert_eq!(
        bot.state
            .workers_alive
            .load(std::sync::atomic::Ordering::Relaxed),
        3,
        "both test workers and the commands worker count as running"
    );

    let body = fixture("github/webhook.pull_request.opened.octokit.json");
    assert_eq!(
        bot.github("pull_request", "m1", COGNI_SECRET, &body).await,
        202
    );
    assert_eq!(
        bot.github("pull_request", "m2", COGNI_SECRET, &body).await,
        202
    );
    assert_eq!(
        bot.github("pull_request", "m2", COGNI_SECRET, &body).await,
        200
    );
    assert_eq!(bot.github("pull_request", "m3", "wrong", &body).await, 401);
    let gl_headers =
        capture_headers("gitlab/webhook.merge_request.open.test-button.cogni.capture.json");
    let gl_body = fixture("gitlab/webhook.merge_request.open.test-button.cogni.raw-body.json");
    assert_eq!(
        bot.post("/webhooks/gitlab", &gl_headers, gl_body)
            .await
            .status(),
        202
    );
    bot.state
        .metrics
        .record_run(promptgate::report::Verdict::Fail, Duration::from_secs(42));
    bot.state.metrics.record_usage(&promptgate::report::Usage {
        model_calls: 17,
        cache_hits: 5,
        input_tokens: 900,
        output_tokens: 300,
        cost_usd: 0.0042,
        ..Default::default()
    });

    let (status, text) = bot.get("/metrics").await;
    assert_eq!(status, 200);
    for line in [
        "promptgate_deliveries_received_total{forge=\"github\"} 4",
        "promptgate_deliveries_received_total{forge=\"gitlab\"} 1",
        "promptgate_deliveries_rejected_total{forge=\"github\"} 1",
        "promptgate_deliveries_rejected_total{forge=\"gitlab\"} 0",
        "promptgate_deliveries_deduped_total{forge=\"github\"} 1",
        "promptgate_queue_depth 3",
        "promptgate_runs_total{verdict=\"fail\"} 1",
        "promptgate_runs_total{verdict=\"pass\"} 0",
        "promptgate_model_calls_total 17",
        "promptgate_run_duration_seconds_bucket{le=\"30\"} 0",
        "promptgate_run_duration_seconds_bucket{le=\"60\"} 1",
        "promptgate_run_duration_seconds_count 1",
        "# TYPE promptgate_run_duration_seconds histogram",
        "promptgate_cache_hits_total 5",
        "promptgate_input_tokens_total 900",
        "promptgate_output_tokens_total 300",
        "promptgate_cost_nano_usd_total 4200000",
        "promptgate_deliveries_failed 0",
        "promptgate_runs_in_flight 0",
        "# TYPE promptgate_queue_oldest_age_seconds gauge",
        "# TYPE promptgate_build_info gauge",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    bot.stop().await;
}

#[tokio::test]
async fn the_run_page() {
    use promptgate::config::{MetricName, Threshold};
    use promptgate::report::{Failure, MetricRow, Report, SuiteReport, Tier, Verdict};

    let dir = tempfile::tempdir().unwrap();
    let bot = start_bot(default_settings(), Arc::new(Recorder::default()), &db(&dir)).await;
    assert_eq!(bot.get("/runs/1").await.0, 404);
    assert_eq!(bot.get("/runs/not-a-number").await.0, 404);
    let link = |public_id: &str| {
        bot.state
            .links
            .url("", public_id, std::time::SystemTime::now())
    };

    let mut report = Report::new("cf4f801".into(), "eeb67d6".into(), Tier::Pr);
    report.verdict = Verdict::Fail;
    let mut suite = SuiteReport::empty("support-answers", Verdict::Fail);
    let mut row = MetricRow::new(MetricName::Faithfulness, Some(0.9), Some(0.85));
    row.threshold = Some(Threshold {
        min: Some(0.88),
        max: None,
    });
    row.pass = false;
    suite.metrics.push(row);
    suite.failures.push(Failure {
        case: "refund-policy".into(),
        metric: "contains".into(),
        detail: "<script>alert(1)</script>".into(),
    });
    report.suites.push(suite);
    let id: String = sqlx::query_scalar(
        "INSERT INTO runs (forge, repo, pr, head_sha, base_sha, status, verdict, report_json, public_id) \
         VALUES ('github', 'derekg1729/test-repo', 315, 'eeb67d6', 'cf4f801', 'done', 'fail', ?1, \
         '0123456789abcdef0123456789abcdef') RETURNING public_id",
    )
    .bind(serde_json::to_string(&report).unwrap())
    .fetch_one(bot.state.store.pool())
    .await
    .unwrap();

    let (status, html) = bot.get(&link(&id)).await;
    assert_eq!(status, 200, "{html}");
    // minijinja's HTML escaping also writes `/` as `&#x2f;`.
    let html = html.replace("&#x2f;", "/");
    for needle in [
        "derekg1729/test-repo",
        "https://github.com/derekg1729/test-repo/pull/315",
        "support-answers",
        "faithfulness",
        "0.900",
        "0.850",
        "-0.050",
        "≥ 0.880",
        "refund-policy",
        "&lt;script&gt;",
    ] {
        assert!(html.contains(needle), "missing {needle:?} in\n{html}");
    }
    assert!(
        !html.contains("<script>alert"),
        "report text must be escaped"
    );

    // A run still in progress, without a report.
    let id = running_run(&bot, "gitlab", "g/p", 3).await;
    let (status, html) = bot.get(&link(&id)).await;
    assert_eq!(status, 200);
    let html = html.replace("&#x2f;", "/");
    assert!(html.contains("the run is running"), "{html}");
    assert!(
        html.contains("https://gitlab.com/g/p/-/merge_requests/3"),
        "{html}"
    );
    bot.stop().await;
}

/// Stores a run in progress, without a report; returns its public id.
async fn running_run(bot: &Bot, forge: &str, repo: &str, pr: i64) -> String {
    sqlx::query_scalar(
        "INSERT INTO runs (forge, repo, pr, head_sha, status, public_id) \
         VALUES (?1, ?2, ?3, 'abc', 'running', ?4) RETURNING public_id",
    )
    .bind(forge)
    .bind(repo)
    .bind(pr)
    .bind(promptgate::server::links::new_public_id())
    .fetch_one(bot.state.store.pool())
    .await
    .unwrap()
}

/// A run page is private data: without the signed link the bot posted, a sign-in
/// (basic auth) or the header of an authenticating proxy, it answers 401; a tampered,
/// expired or other run's link does not open it; the row number does not address it.
#[tokio::test]
async fn a_run_page_opens_only_with_a_signed_link_or_a_sign_in() {
    use base64::Engine;
    use sha2::Digest;

    let dir = tempfile::tempdir().unwrap();
    let hashed = hex::encode(sha2::Sha256::digest(b"s3cret-too"));
    let env = [
        ("PROMPTGATE_GITHUB_TOKEN", GITHUB_TOKEN.to_string()),
        ("PROMPTGATE_GITHUB_WEBHOOK_SECRET", COGNI_SECRET.to_string()),
        (
            "PROMPTGATE_WEB_USERS",
            format!("alice:s3cret,bob:sha256:{hashed}"),
        ),
        ("PROMPTGATE_WEB_AUTH_HEADER", "X-Forwarded-User".to_string()),
    ];
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let bot = start_bot(settings(&pairs), Arc::new(Recorder::default()), &db(&dir)).await;
    let public_id = running_run(&bot, "github", "o/r", 1).await;
    let page = format!("/runs/{public_id}");
    let now = std::time::SystemTime::now();

    // No credential: 401 with a basic-auth challenge.
    let r = reqwest::get(format!("{}{page}", bot.url)).await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(
        r.headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some("Basic realm=\"promptgate\"")
    );
    let run_id: i64 = bot.count("SELECT id FROM runs").await;
    assert_eq!(bot.get(&format!("/runs/{run_id}")).await.0, 404);

    // The signed link opens it; changed, expired or foreign links do not.
    let good = bot.state.links.url("", &public_id, now);
    assert_eq!(bot.get(&good).await.0, 200);
    let (path, query) = good.split_once('?').unwrap();
    let (exp, sig) = query.split_once('&').unwrap();
    let exp: u64 = exp.trim_start_matches("exp=").parse().unwrap();
    assert_eq!(
        bot.get(&format!("{path}?exp={}&{sig}", exp + 1)).await.0,
        401,
        "a longer expiry under the same signature"
    );
    let mut flipped = sig.trim_start_matches("sig=").to_string();
    let last = if flipped.ends_with('A') { "B" } else { "A" };
    flipped.replace_range(flipped.len() - 1.., last);
    assert_eq!(
        bot.get(&format!("{path}?exp={exp}&sig={flipped}")).await.0,
        401
    );
    let stale = bot.state.links.url(
        "",
        &public_id,
        now - promptgate::server::links::LINK_LIFETIME * 2,
    );
    assert_eq!(bot.get(&stale).await.0, 401, "an expired link");
    let other = bot
        .state
        .links
        .url("", "00000000000000000000000000000000", now);
    let other_sig = other.split_once('?').unwrap().1;
    assert_eq!(bot.get(&format!("{page}?{other_sig}")).await.0, 401);

    // Basic auth, plain and hashed entries; a wrong password is refused.
    let basic = |cred: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(cred)
        )
    };
    for (cred, want) in [
        ("alice:s3cret", 200),
        ("bob:s3cret-too", 200),
        ("alice:wrong", 401),
        ("bob:sha256:", 401),
        ("mallory:s3cret", 401),
    ] {
        assert_eq!(
            bot.get_with(&page, "authorization", &basic(cred)).await.0,
            want,
            "{cred}"
        );
    }
    // The proxy's header, when the operator names it.
    assert_eq!(
        bot.get_with(&page, "x-forwarded-user", "carol").await.0,
        200
    );
    assert_eq!(bot.get_with(&page, "x-forwarded-user", " ").await.0, 401);
    bot.stop().await;
}

/// The real binary: JSON logs on stderr (not a terminal), a SIGTERM stops it cleanly, and
/// nothing it logs — at trace level, dependencies included — holds a credential or a
/// signature.
#[tokio::test]
async fn logs_are_json_and_never_contain_tokens_secrets_or_signatures() {
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let private_key =
        "-----BEGIN RSA PRIVATE KEY-----\nMIIE-private-key-body\n-----END RSA PRIVATE KEY-----\n";
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_promptgate"))
        .arg("serve")
        .env_clear()
        // RUST_LOG is honoured when PROMPTGATE_LOG is not set.
        .env("RUST_LOG", "trace")
        .env("PROMPTGATE_LISTEN", format!("127.0.0.1:{port}"))
        .env(
            "PROMPTGATE_DATABASE_URL",
            format!("sqlite://{}", db(&dir).display()),
        )
        // The run pipeline calls the forge: keep it on loopback, where nothing listens.
        .env("PROMPTGATE_GITHUB_API_URL", "http://127.0.0.1:9")
        .env("PROMPTGATE_GITHUB_APP_ID", "12345")
        .env("PROMPTGATE_GITHUB_PRIVATE_KEY", private_key)
        .env("PROMPTGATE_GITHUB_TOKEN", GITHUB_TOKEN)
        .env(
            "PROMPTGATE_GITHUB_WEBHOOK_SECRET",
            format!("{ROTATED_SECRET},{COGNI_SECRET}"),
        )
        .env("PROMPTGATE_GITLAB_TOKEN", GITLAB_TOKEN)
        .env("PROMPTGATE_GITLAB_WEBHOOK_SECRET", COGNI_SECRET)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    wait_until(|| async {
        http.get(format!("{url}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    let post = |path: &'static str, headers: Vec<(String, String)>, body: Vec<u8>| {
        let mut req = http.post(format!("{url}{path}")).body(body);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        async move { req.send().await.unwrap().status().as_u16() }
    };
    let name = "webhook.pull_request.opened.cogni";
    let headers = capture_headers(&format!("github/{name}.capture.json"));
    let body = fixture(&format!("github/{name}.raw-body.json"));
    assert_eq!(
        post("/webhooks/github", headers.clone(), body.clone()).await,
        202
    );
    let mut wrong = headers.clone();
    wrong.retain(|(k, _)| !k.starts_with("x-hub-signature") && k != "x-github-delivery");
    wrong.push(("x-github-delivery".into(), "bad-1".into()));
    wrong.push((
        "x-hub-signature-256".into(),
        github_signature("wrong-secret", &body),
    ));
    assert_eq!(post("/webhooks/github", wrong, body.clone()).await, 401);
    let gl_headers =
        capture_headers("gitlab/webhook.merge_request.open.test-button.cogni.capture.json");
    let gl_body = fixture("gitlab/webhook.merge_request.open.test-button.cogni.raw-body.json");
    assert_eq!(
        post("/webhooks/gitlab", gl_headers.clone(), gl_body.clone()).await,
        202
    );
    let mut wrong = gl_headers.clone();
    wrong.retain(|(k, _)| k != "x-gitlab-token");
    wrong.push(("x-gitlab-token".into(), "guessed-token-value".into()));
    assert_eq!(post("/webhooks/gitlab", wrong, gl_body).await, 401);
    // Let the workers take the two deliveries.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(0), "{text}");

    let mut messages = Vec::new();
    let mut levels = std::collections::BTreeSet::new();
    for line in text.lines() {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        if let Some(m) = v["message"].as_str() {
            messages.push(m.to_string());
        }
        if let Some(l) = v["level"].as_str() {
            levels.insert(l.to_string());
        }
    }
    assert!(
        levels.contains("TRACE"),
        "RUST_LOG=trace was ignored: {levels:?}"
    );
    for wanted in [
        "promptgate listening on",
        "delivery queued",
        "webhook rejected",
        // The bot's forge is unreachable here, so deliveries fail and are retried.
        "handle",
        "stopped",
    ] {
        assert!(
            messages.iter().any(|m| m.contains(wanted)),
            "no {wanted:?} log line in:\n{text}"
        );
    }
    assert!(
        text.contains("<redacted>"),
        "the settings are logged, redacted:\n{text}"
    );
    let sig = header(&headers, "x-hub-signature-256");
    let sig_hex = sig.trim_start_matches("sha256=");
    let wrong_sig = github_signature("wrong-secret", &body);
    for secret in [
        COGNI_SECRET,
        ROTATED_SECRET,
        GITHUB_TOKEN,
        GITLAB_TOKEN,
        "MIIE-private-key-body",
        "guessed-token-value",
        "wrong-secret",
        sig_hex,
        wrong_sig.trim_start_matches("sha256="),
    ] {
        assert!(
            !text.contains(secret),
            "{secret} appears in the logs:\n{text}"
        );
    }
}

/// Issue 10 item 11: a body that arrives too slowly is cut off with 408, and while the
/// intake's body budget is taken, another delivery waits briefly and then gets 503;
/// once the budget is free again, deliveries are taken as usual.
#[tokio::test]
async fn slow_bodies_time_out_and_the_body_budget_bounds_intake() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let dir = tempfile::tempdir().unwrap();
    let store = server::open_store(&format!("sqlite://{}", db(&dir).display()))
        .await
        .unwrap();
    let mut state = server::AppState::new(Arc::new(default_settings()), store).unwrap();
    // One 64 KiB chunk of budget, a 300 ms wait for it, 1 s per delivery.
    state.admission = server::admission::Admission::new(
        64 * 1024,
        Duration::from_millis(300),
        Duration::from_secs(1),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server::run(
        state,
        listener,
        Arc::new(Recorder::default()),
        common::service::test_options(),
        async move {
            let _ = stopped.await;
        },
    ));
    let url = format!("http://{addr}");
    let http = common::service::no_reuse_client();
    wait_until(|| async {
        http.get(format!("{url}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;

    // A sender that promises 1000 bytes and sends 10.
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(
        b"POST /webhooks/github HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\nx-github-event: ping\r\nx-github-delivery: slow-1\r\nx-hub-signature-256: sha256=00\r\n\r\n0123456789",
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    // Meanwhile the budget is taken: a signed delivery is refused with 503.
    let body = br#"{"zen":"Keep it logically awesome.","hook_id":1}"#.to_vec();
    let send = |delivery: &'static str| {
        http.post(format!("{url}/webhooks/github"))
            .header("x-github-event", "ping")
            .header("x-github-delivery", delivery)
            .header("x-hub-signature-256", github_signature(COGNI_SECRET, &body))
            .body(body.clone())
            .send()
    };
    let refused = send("d-1").await.unwrap();
    assert_eq!(refused.status().as_u16(), 503);
    assert!(refused.headers().contains_key("retry-after"));

    // The slow body is cut off.
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), slow.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the slow connection was held open");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");

    // With the budget free again, the delivery is taken.
    assert_eq!(send("d-2").await.unwrap().status().as_u16(), 202);
    let _ = stop.send(());
    serving.await.unwrap().unwrap();
}

/// Slow or silent clients do not hold connections: a socket that sends nothing, one
/// that sends half its headers, and a keep-alive connection left idle after a request
/// are all closed by the server once the header read timeout passes (500 ms in these
/// tests, 10 s in production), while the service keeps answering.
#[tokio::test]
async fn silent_slow_and_idle_connections_are_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    let dir = tempfile::tempdir().unwrap();
    let bot = start_bot(default_settings(), Arc::new(Recorder::default()), &db(&dir)).await;
    let addr = bot.url.trim_start_matches("http://").to_string();

    /// Reads until the server closes the connection; returns what it sent.
    async fn until_closed(s: &mut TcpStream) -> String {
        let mut all = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => all.extend_from_slice(&buf[..n]),
                Err(_) => panic!("the server kept the connection open for 5 s"),
            }
        }
        String::from_utf8_lossy(&all).into_owned()
    }

    let mut silent = TcpStream::connect(&addr).await.unwrap();
    let mut slow = TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"POST /webhooks/github HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut idle = TcpStream::connect(&addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();

    let started = std::time::Instant::now();
    // The service answers while those are open.
    assert_eq!(bot.get("/healthz").await.0, 200);
    let (silent_seen, slow_seen, idle_seen) = tokio::join!(
        until_closed(&mut silent),
        until_closed(&mut slow),
        until_closed(&mut idle)
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(!silent_seen.contains("200 OK"), "{silent_seen}");
    assert!(!slow_seen.contains("202"), "{slow_seen}");
    // The idle one got its answer first, then was closed.
    assert!(idle_seen.starts_with("HTTP/1.1 200 OK"), "{idle_seen}");
    assert_eq!(bot.get("/healthz").await.0, 200);
    bot.stop().await;
}

/// Readiness follows the database: with its pool closed (what an unreachable database
/// looks like to the service) `/readyz` and `/healthz` answer 503, while `/livez` (the
/// process is up) stays 200, so an orchestrator stops routing without restarting.
#[tokio::test]
async fn readyz_is_503_when_the_database_is_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let bot = start_bot(default_settings(), Arc::new(Recorder::default()), &db(&dir)).await;
    assert_eq!(bot.get("/readyz").await.0, 200);
    bot.state.store.pool().close().await;
    let (code, body) = bot.get("/readyz").await;
    assert_eq!((code, body.as_str()), (503, "database unavailable\n"));
    assert_eq!(bot.get("/healthz").await.0, 503);
    assert_eq!(bot.get("/livez").await.0, 200);
}
