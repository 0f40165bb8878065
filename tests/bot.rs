//! The bot end to end, bors-style: real published deliveries, signed, posted to the real
//! router; the queue and workers hand them to the real run pipeline, which talks to the
//! stateful fake GitHub (`common::github`) and a fake model. Assertions are on what
//! GitHub would hold and what the database stored.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use common::echo::{model, Echo};
use common::github::{Harness, PrFile, StatusRec};
use common::service::{db_path, settings, wait_until, Database, Postgres, Service};
use promptgate::event::ForgeKind;
use promptgate::forge::Forge;
use serde_json::{json, Value};
use wiremock::MockServer;

const SECRET: &str = "bot-test-webhook-secret";
const GITLAB_SECRET: &str = "bot-test-gitlab-secret";
/// What `webhook.pull_request.opened.octokit.json` is about.
const REPO: &str = "Codertocat/Hello-World";
const PR: u64 = 2;
const BASE: &str = "f95f852bd8fca8fcc58a9a2d6c842781e32a215e";
const HEAD: &str = "ec26c3e57ca3a959ca5aad62de7213c562f8c821";
const NEW_HEAD: &str = "3333333333333333333333333333333333333333";

fn fixture(rel: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{rel}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn pull(head_sha: &str, head_repo: &str) -> Value {
    json!({
        "number": PR, "state": "open", "draft": false,
        "base": {"ref": "main", "sha": BASE, "repo": {"full_name": REPO}},
        "head": {"ref": "feature", "sha": head_sha, "repo": {"full_name": head_repo}},
    })
}

/// The repository at BASE and at `head` (the prompt as `head_prompt`), PR 2 between.
fn seed(h: &Harness, model_url: &str, head: &str, head_prompt: &str) {
    h.put_billing(BASE, model_url, "Explain invoice {{ n }}.");
    h.put_billing(head, model_url, head_prompt);
    let mut st = h.state();
    st.repo = REPO.to_string();
    st.pr_files = vec![PrFile {
        status: "modified",
        filename: "prompts/user.j2".into(),
        previous: None,
    }];
    st.pulls = vec![pull(head, REPO)];
}

/// Delivers octokit's `opened` (as `d-1`) and waits until its run has asked the model.
async fn open_and_wait_for_the_model(svc: &Service, m: &MockServer) {
    let opened = fixture("github/webhook.pull_request.opened.octokit.json");
    assert_eq!(
        svc.github("pull_request", "d-1", SECRET, &opened).await,
        202
    );
    wait_until(|| async { !m.received_requests().await.unwrap().is_empty() }).await;
}

/// The fake GitHub and the model, seeded with a PR whose head prompt drops "invoice".
async fn world(echo: Echo, head: &str) -> (Harness, MockServer) {
    let h = Harness::start().await;
    let m = model(echo).await;
    seed(&h, &format!("{}/v1", m.uri()), head, FAILING);
    (h, m)
}

/// A head prompt that loses the word the cases assert on.
const FAILING: &str = "Explain the bill {{ n }}.";

fn bot_settings() -> promptgate::settings::Settings {
    settings(&[
        ("PROMPTGATE_GITHUB_TOKEN", common::github::TOKEN),
        ("PROMPTGATE_GITHUB_WEBHOOK_SECRET", SECRET),
        ("PROMPTGATE_GITLAB_TOKEN", "glpat-bot-test"),
        ("PROMPTGATE_GITLAB_WEBHOOK_SECRET", GITLAB_SECRET),
        ("PROMPTGATE_PUBLIC_URL", "http://bot.example"),
    ])
}

/// The service with the real run pipeline against the fake GitHub.
async fn start(h: &Harness, db: &(impl Database + ?Sized)) -> Service {
    let forge: Arc<dyn Forge> = Arc::new(h.forge());
    Service::with_bot(bot_settings(), db, ForgeKind::Github, forge).await
}

/// The service with the real run pipeline against the fake GitLab.
async fn start_gitlab(gl: &common::gitlab::FakeGitLab, db: &(impl Database + ?Sized)) -> Service {
    use promptgate::forge::{ForgeRetryPolicy, GitLabForge};
    let forge: Arc<dyn Forge> = Arc::new(
        GitLabForge::new(&gl.url, common::gitlab::TOKEN)
            .unwrap()
            .with_retry_policy(ForgeRetryPolicy::fast()),
    );
    Service::with_bot(bot_settings(), db, ForgeKind::Gitlab, forge).await
}

fn ours(h: &Harness) -> Vec<StatusRec> {
    h.state()
        .statuses
        .iter()
        .filter(|s| s.context == "promptgate")
        .cloned()
        .collect()
}

/// Waits for a final (not pending) `promptgate` status on `sha`.
async fn final_status(h: &Harness, sha: &str) -> StatusRec {
    wait_until(|| async { ours(h).iter().any(|s| s.sha == sha && s.state != "pending") }).await;
    ours(h)
        .into_iter()
        .rfind(|s| s.sha == sha && s.state != "pending")
        .unwrap()
}

#[tokio::test]
async fn a_pr_delivery_gets_pending_then_final_status_and_one_comment_edited_on_push() {
    let dir = tempfile::tempdir().unwrap();
    github_pr_flow(&db_path(&dir)).await;
}

/// The same flow with the store on Postgres (issue 14).
#[tokio::test]
async fn on_postgres_a_pr_delivery_gets_its_statuses_and_one_comment_edited_on_push() {
    github_pr_flow(&Postgres::new().await).await;
}

async fn github_pr_flow(db: &(impl Database + ?Sized)) {
    let (h, m) = world(Echo::default(), HEAD).await;
    let model_url = format!("{}/v1", m.uri());
    let svc = start(&h, db).await;

    let opened = fixture("github/webhook.pull_request.opened.octokit.json");
    assert_eq!(
        svc.github("pull_request", "d-1", SECRET, &opened).await,
        202
    );
    let done = final_status(&h, HEAD).await;
    assert_eq!(done.state, "failure");
    assert!(done.description.contains("billing: assertions"), "{done:?}");
    // The link names the run by its random id and carries a signed grant to read it.
    let public_id = svc.text("SELECT public_id FROM runs WHERE id = 1").await;
    let link = done.target_url.clone().unwrap_or_default();
    assert!(
        link.starts_with(&format!("http://bot.example/runs/{public_id}?exp=")),
        "{link}"
    );
    assert!(link.contains("&sig="), "{link}");
    let statuses = ours(&h);
    assert_eq!(statuses.len(), 2, "{statuses:?}");
    assert_eq!(
        (statuses[0].state.as_str(), statuses[0].sha.as_str()),
        ("pending", HEAD)
    );
    assert_eq!(h.state().ours().len(), 1);
    let calls = m.received_requests().await.unwrap().len();
    assert_eq!(calls, 4, "2 affected cases at base and head");

    // The same delivery again answers 2xx and does nothing; another delivery of the
    // same commit (e.g. `synchronize` for it) does not run again either.
    assert!((200..300).contains(&svc.github("pull_request", "d-1", SECRET, &opened).await));
    let sync = fixture("github/webhook.pull_request.synchronize.octokit.json");
    assert_eq!(svc.github("pull_request", "d-2", SECRET, &sync).await, 202);
    svc.drained().await;
    assert_eq!(ours(&h).len(), 2);
    assert_eq!(m.received_requests().await.unwrap().len(), calls);
    assert_eq!(svc.count("SELECT COUNT(*) FROM runs").await, 1);

    // A push: the same comment is edited in place and the statuses go on the new SHA.
    seed(
        &h,
        &model_url,
        NEW_HEAD,
        "Explain invoice {{ n }} in detail.",
    );
    assert_eq!(svc.github("pull_request", "d-3", SECRET, &sync).await, 202);
    let done = final_status(&h, NEW_HEAD).await;
    assert_eq!(done.state, "success");
    let run = svc
        .count(&format!(
            "SELECT id FROM runs WHERE head_sha = '{NEW_HEAD}'"
        ))
        .await;
    let public_id = svc
        .text(&format!("SELECT public_id FROM runs WHERE id = {run}"))
        .await;
    let link = done.target_url.clone().unwrap_or_default();
    assert!(
        link.starts_with(&format!("http://bot.example/runs/{public_id}?exp=")),
        "{link}"
    );
    {
        let st = h.state();
        assert_eq!(st.ours().len(), 1, "a second comment was created");
        assert!(st.ours()[0].body.contains("billing"));
    }
    assert_eq!(svc.count("SELECT COUNT(*) FROM runs").await, 2);
    let (code, page) = svc.get(link.trim_start_matches("http://bot.example")).await;
    assert_eq!(code, 200);
    assert!(page.contains("billing"), "{page}");
    // Without the grant, or by its row number, the page is not readable.
    assert_eq!(svc.get(&format!("/runs/{public_id}")).await.0, 401);
    assert_eq!(svc.get(&format!("/runs/{run}")).await.0, 404);
    svc.stop().await;
}

#[tokio::test]
async fn a_restart_mid_run_completes_the_run_exactly_once() {
    let echo = Echo::default();
    echo.slow.store(true, Ordering::SeqCst);
    let (h, m) = world(echo.clone(), HEAD).await;
    let dir = tempfile::tempdir().unwrap();
    let db = db_path(&dir);

    let first = start(&h, &db).await;
    // The run has started: pending is set and the model was asked.
    open_and_wait_for_the_model(&first, &m).await;
    assert_eq!(ours(&h).len(), 1);
    first.stop().await;
    assert!(ours(&h).iter().all(|s| s.state == "pending"));

    // A new process on the same database picks the delivery up again.
    echo.slow.store(false, Ordering::SeqCst);
    let second = start(&h, &db).await;
    let done = final_status(&h, HEAD).await;
    assert_eq!(done.state, "failure");
    second.drained().await;
    let finals: Vec<StatusRec> = ours(&h)
        .into_iter()
        .filter(|s| s.state != "pending")
        .collect();
    assert_eq!(finals.len(), 1, "{finals:?}");
    assert_eq!(h.state().ours().len(), 1);
    assert_eq!(second.count("SELECT COUNT(*) FROM runs").await, 1);
    assert_eq!(
        second
            .count("SELECT COUNT(*) FROM runs WHERE status = 'done'")
            .await,
        1
    );
    second.stop().await;
}

/// Issue 14 item 5: a replica that crashed holding a lease takes it back as soon as it
/// is restarted, instead of waiting for the lease (30 s here) to run out.
#[tokio::test]
async fn a_crashed_replica_restarted_takes_its_lease_back_at_once() {
    let echo = Echo::default();
    echo.slow.store(true, Ordering::SeqCst);
    let (h, m) = world(echo.clone(), HEAD).await;
    let dir = tempfile::tempdir().unwrap();
    let db = db_path(&dir);
    let first = start(&h, &db).await;
    open_and_wait_for_the_model(&first, &m).await;
    first.crash().await;
    echo.slow.store(false, Ordering::SeqCst);
    let started = std::time::Instant::now();
    let second = start(&h, &db).await;
    let done = final_status(&h, HEAD).await;
    assert_eq!(done.state, "failure");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "waited for the lease: {:?}",
        started.elapsed()
    );
    second.drained().await;
    assert_eq!(h.state().ours().len(), 1);
    second.stop().await;
}

/// Issue 14 item 6: two deliveries asking for the same head at once (here `opened` and
/// a `synchronize` of the same commit, taken by two workers; or by two replicas on one
/// Postgres) make one evaluation: one pending status, one final, no repeated call.
async fn one_evaluation_per_head(db: &(impl Database + ?Sized), two_replicas: bool) {
    let echo = Echo::default();
    echo.delay_ms.store(2000, Ordering::SeqCst);
    let (h, m) = world(echo.clone(), HEAD).await;
    let replica = |host: &'static str| {
        let forge: Arc<dyn Forge> = Arc::new(h.forge());
        Service::bot_named(
            bot_settings(),
            db,
            common::service::test_options(),
            Some(host),
            ForgeKind::Github,
            forge,
        )
    };
    let first = replica("pod-0").await;
    let second = if two_replicas {
        Some(replica("pod-1").await)
    } else {
        None
    };
    let opened = fixture("github/webhook.pull_request.opened.octokit.json");
    let sync = fixture("github/webhook.pull_request.synchronize.octokit.json");
    assert_eq!(
        first.github("pull_request", "d-1", SECRET, &opened).await,
        202
    );
    wait_until(|| async { !m.received_requests().await.unwrap().is_empty() }).await;
    let other = second.as_ref().unwrap_or(&first);
    assert_eq!(
        other.github("pull_request", "d-2", SECRET, &sync).await,
        202
    );
    // The second delivery is handled (left to the evaluation already running) while
    // the first still waits on the model.
    wait_until(|| async {
        other
            .count("SELECT COUNT(*) FROM deliveries WHERE delivery_id = 'd-2' AND status = 'done'")
            .await
            == 1
    })
    .await;
    assert_eq!(final_status(&h, HEAD).await.state, "failure");
    first.drained().await;
    let states: Vec<String> = ours(&h).into_iter().map(|s| s.state).collect();
    assert_eq!(states, ["pending", "failure"], "{states:?}");
    assert_eq!(
        m.received_requests().await.unwrap().len(),
        4,
        "2 affected cases at base and head, once"
    );
    assert_eq!(h.state().ours().len(), 1);
    if let Some(second) = second {
        second.stop().await;
    }
    first.stop().await;
}

#[tokio::test]
async fn two_workers_asked_for_the_same_head_evaluate_it_once() {
    let dir = tempfile::tempdir().unwrap();
    one_evaluation_per_head(&db_path(&dir), false).await;
}

#[tokio::test]
async fn two_replicas_on_postgres_asked_for_the_same_head_evaluate_it_once() {
    one_evaluation_per_head(&Postgres::new().await, true).await;
}

/// Issue 14 item 6: a crash after the final status was posted but before the run was
/// marked done makes the next delivery re-publish; the commit does not get a second
/// final status (nor a new pending one), and the run ends done.
#[tokio::test]
async fn a_publish_interrupted_after_the_final_status_does_not_post_it_twice() {
    let (h, m) = world(Echo::default(), HEAD).await;
    let dir = tempfile::tempdir().unwrap();
    let svc = start(&h, &db_path(&dir)).await;
    let opened = fixture("github/webhook.pull_request.opened.octokit.json");
    assert_eq!(
        svc.github("pull_request", "d-1", SECRET, &opened).await,
        202
    );
    assert_eq!(final_status(&h, HEAD).await.state, "failure");
    svc.drained().await;
    let calls = m.received_requests().await.unwrap().len();
    // What the crash leaves: the report stored, the run not yet done.
    sqlx::query("UPDATE runs SET status = 'running'")
        .execute(svc.state.store.pool())
        .await
        .unwrap();
    let sync = fixture("github/webhook.pull_request.synchronize.octokit.json");
    assert_eq!(svc.github("pull_request", "d-2", SECRET, &sync).await, 202);
    svc.drained().await;
    let states: Vec<String> = ours(&h).into_iter().map(|s| s.state).collect();
    assert_eq!(states, ["pending", "failure"], "{states:?}");
    assert_eq!(h.state().ours().len(), 1);
    assert_eq!(
        svc.count("SELECT COUNT(*) FROM runs WHERE status = 'done'")
            .await,
        1
    );
    // Re-published from the cache: no model call repeated.
    assert_eq!(m.received_requests().await.unwrap().len(), calls);
    svc.stop().await;
}

/// Issue 14 item 7: a push while the old head is still evaluating ends the old head's
/// status ("superseded by …") instead of leaving it pending forever.
#[tokio::test]
async fn a_superseded_head_gets_a_final_status_naming_the_new_one() {
    let echo = Echo::default();
    echo.slow.store(true, Ordering::SeqCst);
    let (h, m) = world(echo.clone(), HEAD).await;
    let model_url = format!("{}/v1", m.uri());
    let dir = tempfile::tempdir().unwrap();
    let svc = start(&h, &db_path(&dir)).await;
    open_and_wait_for_the_model(&svc, &m).await;
    seed(
        &h,
        &model_url,
        NEW_HEAD,
        "Explain invoice {{ n }} in detail.",
    );
    echo.slow.store(false, Ordering::SeqCst);
    let sync = fixture("github/webhook.pull_request.synchronize.octokit.json");
    assert_eq!(svc.github("pull_request", "d-2", SECRET, &sync).await, 202);
    assert_eq!(final_status(&h, NEW_HEAD).await.state, "success");
    svc.drained().await;
    let old: Vec<StatusRec> = ours(&h).into_iter().filter(|s| s.sha == HEAD).collect();
    let last = old.last().unwrap();
    assert_eq!(last.state, "error", "{old:?}");
    assert!(
        last.description.contains("Superseded by 3333333"),
        "{old:?}"
    );
    // Nothing finished the old head after that.
    assert_eq!(
        old.iter().filter(|s| s.state != "pending").count(),
        1,
        "{old:?}"
    );
    assert_eq!(h.state().ours().len(), 1);
    svc.stop().await;
}

#[tokio::test]
async fn a_forge_5xx_on_the_comment_write_is_retried_by_the_queue() {
    let (h, m) = world(Echo::default(), HEAD).await;
    // More 502s than the forge client's own 5 attempts: the first delivery attempt
    // fails, the queue retries it, and the second attempt gets through.
    h.fail(
        "POST",
        &format!("/repos/{REPO}/issues/{PR}/comments"),
        7,
        502,
        "{\"message\": \"Bad Gateway\"}",
    );
    let dir = tempfile::tempdir().unwrap();
    let svc = start(&h, &db_path(&dir)).await;
    let opened = fixture("github/webhook.pull_request.opened.octokit.json");
    assert_eq!(
        svc.github("pull_request", "d-1", SECRET, &opened).await,
        202
    );
    let done = final_status(&h, HEAD).await;
    assert_eq!(done.state, "failure");
    assert_eq!(h.state().ours().len(), 1);
    let attempts = h
        .state()
        .count("POST", &format!("/repos/{REPO}/issues/{PR}/comments"));
    assert_eq!(attempts, 8, "7 failures then one success");
    // The retry came from the cache: no model call was repeated.
    assert_eq!(m.received_requests().await.unwrap().len(), 4);
    svc.drained().await;
    assert_eq!(
        svc.count("SELECT COUNT(*) FROM deliveries WHERE attempts >= 2")
            .await,
        1
    );
    svc.stop().await;
}

#[tokio::test]
async fn a_fork_pr_is_not_run_and_gets_an_explanation() {
    let (h, m) = world(Echo::default(), HEAD).await;
    h.state().pulls = vec![pull(HEAD, "mallory/Hello-World")];
    let dir = tempfile::tempdir().unwrap();
    let svc = start(&h, &db_path(&dir)).await;
    let opened = fixture("github/webhook.pull_request.opened.octokit.json");
    assert_eq!(
        svc.github("pull_request", "d-1", SECRET, &opened).await,
        202
    );
    svc.drained().await;
    assert!(m.received_requests().await.unwrap().is_empty());
    {
        let st = h.state();
        assert!(st.statuses.is_empty());
        assert_eq!(st.ours().len(), 1);
        assert!(st.ours()[0].body.contains("/promptgate run"));
    }
    assert_eq!(svc.count("SELECT COUNT(*) FROM runs").await, 0);
    svc.stop().await;
}

#[tokio::test]
async fn a_title_only_gitlab_update_and_a_foreign_check_rerun_make_no_run() {
    let (h, m) = world(Echo::default(), HEAD).await;
    let dir = tempfile::tempdir().unwrap();
    let svc = start(&h, &db_path(&dir)).await;
    let title = fixture("gitlab/webhook.merge_request.update.title.atlantis.json");
    assert_eq!(
        svc.gitlab("Merge Request Hook", "u-1", GITLAB_SECRET, &title)
            .await,
        202
    );
    // A re-run of another App's check (the bot authenticates with a token: it owns no
    // check runs).
    let rerun = fixture("github/webhook.check_run.rerequested.octokit.json");
    assert_eq!(svc.github("check_run", "d-2", SECRET, &rerun).await, 202);
    svc.drained().await;
    assert_eq!(svc.count("SELECT COUNT(*) FROM deliveries").await, 2);
    assert_eq!(
        svc.count("SELECT COUNT(*) FROM deliveries WHERE status = 'done'")
            .await,
        2
    );
    assert_eq!(svc.count("SELECT COUNT(*) FROM runs").await, 0);
    assert!(m.received_requests().await.unwrap().is_empty());
    assert!(h.state().statuses.is_empty());
    svc.stop().await;
}

/// The same pipeline on GitLab: the real atlantis `Merge Request Hook` (open) through the
/// router, the GitLab forge (the `gitlab` crate) against the fake GitLab.
#[tokio::test]
async fn a_gitlab_merge_request_gets_statuses_and_one_note() {
    let dir = tempfile::tempdir().unwrap();
    gitlab_mr_flow(&db_path(&dir)).await;
}

/// The same merge request with the store on Postgres (issue 14).
#[tokio::test]
async fn on_postgres_a_gitlab_merge_request_gets_statuses_and_one_note() {
    gitlab_mr_flow(&Postgres::new().await).await;
}

async fn gitlab_mr_flow(db: &(impl Database + ?Sized)) {
    use common::gitlab::{FakeGitLab, MergeRequest};
    // What `webhook.merge_request.open.atlantis.json` is about.
    const PID: u64 = 4580910;
    const IID: u64 = 12;
    const GL_HEAD: &str = "d2eae324ca26242abca45d7b49d582cddb2a4f15";
    let m = model(Echo::default()).await;
    let gl = FakeGitLab::start().await;
    gl.add_project(PID, "lkysow/atlantis-example");
    gl.set_branch(PID, "main", BASE);
    let mut mr = MergeRequest::new(PID, IID, BASE, GL_HEAD);
    mr.diffs = vec![("prompts/user.j2".into(), "prompts/user.j2".into())];
    gl.add_mr(mr);
    gl.seed_billing(
        PID,
        BASE,
        GL_HEAD,
        &format!("{}/v1", m.uri()),
        "Explain the bill {{ n }}.",
    );

    let svc = start_gitlab(&gl, db).await;
    let open = fixture("gitlab/webhook.merge_request.open.atlantis.json");
    assert_eq!(
        svc.gitlab("Merge Request Hook", "u-1", GITLAB_SECRET, &open)
            .await,
        202
    );
    svc.drained().await;
    let statuses: Vec<(String, String, String)> = gl
        .statuses()
        .into_iter()
        .filter(|s| s.name == "promptgate")
        .map(|s| (s.sha, s.state, s.description.unwrap_or_default()))
        .collect();
    assert_eq!(statuses.len(), 2, "{statuses:?}");
    assert_eq!(
        (statuses[0].0.as_str(), statuses[0].1.as_str()),
        (GL_HEAD, "pending")
    );
    assert_eq!(
        (statuses[1].0.as_str(), statuses[1].1.as_str()),
        (GL_HEAD, "failed")
    );
    assert!(
        statuses[1].2.contains("billing: assertions"),
        "{statuses:?}"
    );
    let notes = gl.notes(PID, IID);
    assert_eq!(notes.len(), 1);
    assert!(notes[0].body.contains("<!-- promptgate:sticky -->"));
    assert_eq!(
        svc.count("SELECT COUNT(*) FROM runs WHERE forge = 'gitlab'")
            .await,
        1
    );
    svc.stop().await;
}

/// As a GitHub App: "Re-run" on our check (the octokit `check_run.rerequested`, whose
/// App id 2 is ours here) re-evaluates the PR found by head SHA, and the result is also
/// a check run whose summary is the score table.
#[tokio::test]
async fn as_an_app_a_rerun_of_our_check_re_evaluates_and_posts_a_check_run() {
    use promptgate::forge::{ForgeRetryPolicy, GitHubAuth, GitHubForge};
    const RERUN_REPO: &str = "github/hello-world";
    const RERUN_HEAD: &str = "d6fde92930d4715a2b49857d24b940956b26d2d3";
    let pem = common::github::rsa_key_pem();
    let (h, _model) = world(Echo::default(), RERUN_HEAD).await;
    {
        let mut st = h.state();
        st.repo = RERUN_REPO.to_string();
        st.pulls = vec![json!({
            "number": 9, "state": "open", "draft": false,
            "base": {"ref": "main", "sha": BASE, "repo": {"full_name": RERUN_REPO}},
            "head": {"ref": "feature", "sha": RERUN_HEAD, "repo": {"full_name": RERUN_REPO}},
        })];
    }
    let forge: Arc<dyn Forge> = Arc::new(
        GitHubForge::new(
            &h.api_url(),
            GitHubAuth::App {
                app_id: 2,
                private_key_pem: pem,
            },
        )
        .unwrap()
        .with_retry_policy(ForgeRetryPolicy::fast()),
    );
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::with_bot(bot_settings(), &db_path(&dir), ForgeKind::Github, forge).await;
    let rerun = fixture("github/webhook.check_run.rerequested.octokit.json");
    assert_eq!(svc.github("check_run", "r-1", SECRET, &rerun).await, 202);
    let done = final_status(&h, RERUN_HEAD).await;
    assert_eq!(done.state, "failure");
    svc.drained().await;
    let st = h.state();
    assert_eq!(st.check_runs.len(), 1, "{:?}", st.check_runs);
    let run = &st.check_runs[0];
    assert_eq!(run["name"], "promptgate");
    assert_eq!(run["head_sha"], RERUN_HEAD);
    assert_eq!(run["conclusion"], "failure");
    let summary = run["output"]["summary"].as_str().unwrap_or_default();
    assert!(
        summary.contains("billing") && summary.contains("| metric |"),
        "{summary}"
    );
    assert!(!summary.contains("promptgate:sticky"));
}

/// A delivery whose worker died each of the three times it took it (a memory bomb
/// kills the process, and the next claim would kill it again) is set aside, and the
/// PR's commit gets an error status saying so instead of a `pending` that never ends.
#[tokio::test]
async fn a_quarantined_delivery_gets_an_error_status_on_its_commit() {
    let (h, m) = world(Echo::default(), HEAD).await;
    let dir = tempfile::tempdir().unwrap();
    let svc = start(&h, &db_path(&dir)).await;
    // What three crashed claims leave behind: running, attempts 3, the lease expired.
    sqlx::query(
        "INSERT INTO deliveries (forge, delivery_id, event, body, status, attempts, lease_owner, lease_until) \
         VALUES ('github', 'd-crash', 'pull_request', ?1, 'running', 3, 'dead-worker', 1)",
    )
    .bind(fixture("github/webhook.pull_request.opened.octokit.json"))
    .execute(svc.state.store.pool())
    .await
    .unwrap();
    let done = final_status(&h, HEAD).await;
    assert_eq!(done.state, "error", "{done:?}");
    assert!(done.description.contains("stopped 3 times"), "{done:?}");
    assert_eq!(
        svc.count("SELECT COUNT(*) FROM deliveries WHERE status = 'failed' AND last_error LIKE 'quarantined%'")
            .await,
        1
    );
    // Set aside means not run: no model call, no run row.
    assert!(m.received_requests().await.unwrap().is_empty());
    assert_eq!(svc.count("SELECT COUNT(*) FROM runs").await, 0);
    let (_, metrics) = svc.get("/metrics").await;
    assert!(
        metrics.contains("promptgate_deliveries_quarantined 1"),
        "{metrics}"
    );
    svc.stop().await;
}

/// Runs PR 2 with `manifest` as the head's models/m.yaml (changed by the PR); returns
/// the final status and the sticky comment.
async fn with_head_manifest(h: &Harness, manifest: &str) -> (StatusRec, String) {
    h.put_file(HEAD, "models/m.yaml", manifest.as_bytes());
    h.state().pr_files.push(PrFile {
        status: "modified",
        filename: "models/m.yaml".into(),
        previous: None,
    });
    let dir = tempfile::tempdir().unwrap();
    let svc = start(h, &db_path(&dir)).await;
    let opened = fixture("github/webhook.pull_request.opened.octokit.json");
    assert_eq!(
        svc.github("pull_request", "d-manifest", SECRET, &opened)
            .await,
        202
    );
    let done = final_status(h, HEAD).await;
    let comment = h.state().ours()[0].body.clone();
    svc.stop().await;
    (done, comment)
}

/// A PR that points its manifest at a server of its choosing, with a key variable of
/// the bot's, through a signed webhook: no request reaches that server, and the commit
/// gets an error naming the manifest (SPEC: the allowlist defaults to what the base
/// branch's manifests name).
#[tokio::test]
async fn a_pr_cannot_send_the_bots_key_to_its_own_server() {
    let (h, _model) = world(Echo::default(), HEAD).await;
    let attacker = MockServer::start().await;
    let manifest = format!(
        "provider: openai\nmodel: chat\nbase_url: {}/v1\napi_key_env: HOME\n",
        attacker.uri()
    );
    let (done, comment) = with_head_manifest(&h, &manifest).await;
    assert_eq!(done.state, "error", "{done:?}");
    assert!(
        attacker.received_requests().await.unwrap().is_empty(),
        "the PR's server was called"
    );
    assert!(comment.contains("models/m.yaml"), "{comment}");
    assert!(comment.contains("PROMPTGATE_MODEL_ENDPOINTS"), "{comment}");
}

/// A PR cannot choose its own answers by switching its model to recordings: the bot
/// refuses `provider: replay` and names the manifest line.
#[tokio::test]
async fn the_bot_refuses_a_replay_provider_from_the_pr() {
    let (h, _model) = world(Echo::default(), HEAD).await;
    let (done, comment) = with_head_manifest(&h, "provider: replay\nmodel: chat\n").await;
    assert_eq!(done.state, "error", "{done:?}");
    assert!(comment.contains("models/m.yaml:1"), "{comment}");
    assert!(comment.contains("provider: replay"), "{comment}");
}

/// Where main has moved on since the PR branched: GitHub's `base.sha` is main's tip, so
/// the bot diffs and evaluates against the compare API's merge base (main's own later
/// edits are not the PR's), and reads policy at the tip.
#[tokio::test]
async fn the_bot_evaluates_against_the_merge_base_and_reads_policy_at_the_tip() {
    const MERGE_BASE: &str = "1111111111111111111111111111111111111111";
    let (h, m) = world(Echo::default(), HEAD).await;
    for path in [".promptgate.yml", "models/m.yaml", "evals/b.jsonl"] {
        let bytes = h.state().files[&(HEAD.to_string(), path.to_string())].clone();
        h.put_file(MERGE_BASE, path, &bytes);
    }
    h.put_file(MERGE_BASE, "prompts/user.j2", b"Explain invoice {{ n }}.");
    // Main's later commits: other wording, and a policy of two samples per case.
    h.put_file(
        BASE,
        "prompts/user.j2",
        b"Main's later wording for invoice {{ n }}.",
    );
    h.put_file(
        BASE,
        ".promptgate.yml",
        b"version: 1\nsuites:\n  billing:\n    prompts: { user: prompts/user.j2 }\n    model: models/m.yaml\n    dataset: evals/b.jsonl\n    samples: 2\n    metrics:\n      assertions: { min: 1.0 }\n",
    );
    h.state()
        .merge_bases
        .insert((BASE.to_string(), HEAD.to_string()), MERGE_BASE.to_string());
    let dir = tempfile::tempdir().unwrap();
    let svc = start(&h, &db_path(&dir)).await;
    let opened = fixture("github/webhook.pull_request.opened.octokit.json");
    assert_eq!(
        svc.github("pull_request", "d-mb", SECRET, &opened).await,
        202
    );
    let done = final_status(&h, HEAD).await;
    assert_eq!(done.state, "failure", "{done:?}");

    let bodies: Vec<String> = m
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).to_string())
        .collect();
    // 2 cases × 2 samples (the tip's policy) × base and head.
    assert_eq!(bodies.len(), 8, "{bodies:#?}");
    assert!(
        bodies.iter().all(|b| !b.contains("later wording")),
        "{bodies:#?}"
    );
    assert!(
        bodies.iter().any(|b| b.contains("Explain invoice 1.")),
        "{bodies:#?}"
    );
    assert!(
        h.state()
            .count("GET", &format!("/repos/{REPO}/compare/{BASE}...{HEAD}"))
            >= 1
    );
    assert_eq!(
        svc.text("SELECT base_sha FROM runs WHERE id = 1").await,
        MERGE_BASE
    );
    let report = svc.text("SELECT report_json FROM runs WHERE id = 1").await;
    assert!(
        report.contains(&format!("\"base\":\"{MERGE_BASE}\"")),
        "{report}"
    );
    svc.stop().await;
}

/// A PR whose base branch is changed (`edited` with `changes.base`) is evaluated again
/// at the same head against the new base; a title or body edit is not.
#[tokio::test]
async fn a_retargeted_pr_is_re_evaluated_against_its_new_base() {
    let (h, m) = world(Echo::default(), HEAD).await;
    let dir = tempfile::tempdir().unwrap();
    let svc = start(&h, &db_path(&dir)).await;
    let opened = fixture("github/webhook.pull_request.opened.octokit.json");
    assert_eq!(
        svc.github("pull_request", "d-rt-1", SECRET, &opened).await,
        202
    );
    assert_eq!(final_status(&h, HEAD).await.state, "failure");
    let calls = m.received_requests().await.unwrap().len();

    // The real delivery, as GitHub sends it for a title edit and for a retarget.
    let mut edited: Value = serde_json::from_slice(&opened).unwrap();
    edited["action"] = json!("edited");
    edited["changes"] = json!({"title": {"from": "Old title"}});
    let body = serde_json::to_vec(&edited).unwrap();
    assert!((200..300).contains(&svc.github("pull_request", "d-rt-2", SECRET, &body).await));
    svc.drained().await;
    assert_eq!(
        m.received_requests().await.unwrap().len(),
        calls,
        "a title edit runs nothing"
    );

    // Retargeted onto a branch that already has the head's prompt: against it, no case
    // is affected, so the same head goes from failure (worse than base) to
    // needs_review (the whole suite fails its gate, but base fails it as well).
    const NEW_BASE: &str = "4444444444444444444444444444444444444444";
    for path in [
        ".promptgate.yml",
        "models/m.yaml",
        "evals/b.jsonl",
        "prompts/user.j2",
    ] {
        let bytes = h.state().files[&(HEAD.to_string(), path.to_string())].clone();
        h.put_file(NEW_BASE, path, &bytes);
    }
    h.state().pulls[0]["base"] =
        json!({"ref": "develop", "sha": NEW_BASE, "repo": {"full_name": REPO}});
    edited["changes"] = json!({"base": {"ref": {"from": "master"}, "sha": {"from": BASE}}});
    let body = serde_json::to_vec(&edited).unwrap();
    let before = ours(&h).len();
    assert_eq!(
        svc.github("pull_request", "d-rt-3", SECRET, &body).await,
        202
    );
    wait_until(|| async { ours(&h).len() >= before + 2 }).await;
    svc.drained().await;
    let last = ours(&h).into_iter().last().unwrap();
    assert_eq!(
        (last.sha.as_str(), last.state.as_str()),
        (HEAD, "failure"),
        "{last:?}"
    );
    assert!(
        last.description
            .starts_with("needs_review — billing: assertions fails on base too"),
        "{last:?}"
    );
    assert_eq!(
        svc.text("SELECT base_sha FROM runs WHERE id = 1").await,
        NEW_BASE
    );
    assert_eq!(svc.count("SELECT COUNT(*) FROM runs").await, 1);
    svc.stop().await;
}

/// A GitHub `push` to the default branch (the documented shape; no published delivery
/// is among the shared fixtures).
fn push_delivery(branch: &str, before: &str, after: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "ref": format!("refs/heads/{branch}"), "before": before, "after": after,
        "created": false, "deleted": false, "forced": false,
        "repository": {"full_name": REPO, "id": 1296269, "default_branch": "main"},
        "pusher": {"name": "octocat"}, "sender": {"id": 1, "login": "octocat"},
    }))
    .unwrap()
}

/// SPEC §3: with the default branch's results cached by the bot (a push to main), a PR
/// costs its affected head cases × samples and nothing else.
#[tokio::test]
async fn a_push_to_the_default_branch_warms_the_cache_so_a_pr_pays_only_its_head() {
    let (h, m) = world(Echo::default(), HEAD).await;
    let dir = tempfile::tempdir().unwrap();
    let svc = start(&h, &db_path(&dir)).await;

    // A push elsewhere, a tag and a deleted main run nothing.
    let feature = push_delivery("feature", BASE, HEAD);
    assert_eq!(svc.github("push", "p-0", SECRET, &feature).await, 202);
    let mut tag: Value = serde_json::from_slice(&push_delivery("main", BASE, HEAD)).unwrap();
    tag["ref"] = json!("refs/tags/v1");
    let tag = serde_json::to_vec(&tag).unwrap();
    assert_eq!(svc.github("push", "p-t", SECRET, &tag).await, 202);
    let deleted = push_delivery("main", BASE, "0000000000000000000000000000000000000000");
    assert_eq!(svc.github("push", "p-d", SECRET, &deleted).await, 202);
    svc.drained().await;
    assert_eq!(m.received_requests().await.unwrap().len(), 0);

    let push = push_delivery("main", "0123456789012345678901234567890123456789", BASE);
    assert_eq!(svc.github("push", "p-1", SECRET, &push).await, 202);
    svc.drained().await;
    assert_eq!(
        m.received_requests().await.unwrap().len(),
        2,
        "the baseline evaluates main's 2 cases once"
    );
    // A baseline posts nothing and records no PR run.
    assert!(ours(&h).is_empty(), "{:?}", ours(&h));
    assert!(h.state().ours().is_empty());
    assert_eq!(svc.count("SELECT COUNT(*) FROM runs").await, 0);
    // The same commit pushed again (another delivery) is all cache hits.
    assert_eq!(svc.github("push", "p-2", SECRET, &push).await, 202);
    svc.drained().await;
    assert_eq!(m.received_requests().await.unwrap().len(), 2);

    let opened = fixture("github/webhook.pull_request.opened.octokit.json");
    assert_eq!(
        svc.github("pull_request", "d-1", SECRET, &opened).await,
        202
    );
    let done = final_status(&h, HEAD).await;
    assert_eq!(done.state, "failure", "{done:?}");
    assert_eq!(
        m.received_requests().await.unwrap().len(),
        4,
        "the PR adds only its 2 affected head cases (a cold cache would add 4)"
    );
    let report: Value =
        serde_json::from_str(&svc.text("SELECT report_json FROM runs WHERE id = 1").await).unwrap();
    assert_eq!(report["usage"]["baseline_calls"], 0, "{report}");
    assert_eq!(report["usage"]["model_calls"], 2, "{report}");
    svc.stop().await;
}

/// The published GitLab Push Hook (docs) to `master`, the project's default branch.
#[tokio::test]
async fn a_gitlab_push_hook_to_the_default_branch_is_a_baseline() {
    use common::gitlab::FakeGitLab;
    // What `webhook.push.docs-current.json` is about.
    const PID: u64 = 15;
    const AFTER: &str = "da1560886d4f094c3e6c9ef40349f7d38b5d27d7";
    let m = model(Echo::default()).await;
    let gl = FakeGitLab::start().await;
    gl.add_project(PID, "mike/diaspora");
    gl.seed_billing(
        PID,
        AFTER,
        HEAD,
        &format!("{}/v1", m.uri()),
        "Explain the bill {{ n }}.",
    );
    let dir = tempfile::tempdir().unwrap();
    let svc = start_gitlab(&gl, &db_path(&dir)).await;
    let push = fixture("gitlab/webhook.push.docs-current.json");
    assert_eq!(
        svc.gitlab("Push Hook", "u-1", GITLAB_SECRET, &push).await,
        202
    );
    svc.drained().await;
    let bodies: Vec<String> = m
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).to_string())
        .collect();
    assert_eq!(
        bodies.len(),
        1,
        "the baseline evaluates master's one case once"
    );
    assert!(bodies.iter().all(|b| b.contains("invoice")), "{bodies:#?}");
    assert!(gl.statuses().is_empty());
    // Redelivered under another id: the cache answers.
    assert_eq!(
        svc.gitlab("Push Hook", "u-2", GITLAB_SECRET, &push).await,
        202
    );
    svc.drained().await;
    assert_eq!(m.received_requests().await.unwrap().len(), 1);
    svc.stop().await;
}

/// The repository at BASE and at each of `heads`: a judge that flags case `b` (its
/// context says UNSUPPORTED) as hallucinated, under a hallucination gate it passes, and
/// `tickets` on hallucinations.
fn seed_ticketed(h: &Harness, model_url: &str, heads: &[&str]) {
    seed_tickets_with(h, model_url, heads, "fine", "")
}

/// [`seed_ticketed`] with case `a`'s note and more `tickets` keys.
fn seed_tickets_with(h: &Harness, model_url: &str, heads: &[&str], note_a: &str, more: &str) {
    let config = format!(
        "version: 1\nsuites:\n  billing:\n    prompts: {{ user: prompts/user.j2 }}\n    model: models/m.yaml\n    dataset: evals/b.jsonl\n    metrics:\n      assertions: {{ min: 1.0 }}\n      hallucination_rate: {{ max: 1.0 }}\nevaluators:\n  judge: {{ provider: openai, model: judge, base_url: \"{model_url}\" }}\ntickets:\n  on: [hallucination]\n  labels: [llm-quality]\n{more}"
    );
    for sha in std::iter::once(BASE).chain(heads.iter().copied()) {
        h.put_file(sha, ".promptgate.yml", config.as_bytes());
        h.put_file(
            sha,
            "models/m.yaml",
            format!("provider: openai\nmodel: chat\nbase_url: {model_url}\n").as_bytes(),
        );
        h.put_file(
            sha,
            "evals/b.jsonl",
            format!("{{\"id\": \"a\", \"vars\": {{\"n\": 1, \"note\": \"{note_a}\"}}, \"assert\": [{{\"type\": \"icontains\", \"value\": \"invoice\"}}]}}\n{{\"id\": \"b\", \"vars\": {{\"n\": 2, \"note\": \"UNSUPPORTED, write to jane@example.com\"}}, \"assert\": [{{\"type\": \"icontains\", \"value\": \"invoice\"}}]}}\n").as_bytes(),
        );
        let prompt: &[u8] = if sha == BASE {
            b"Explain invoice {{ n }}. ({{ note }})"
        } else {
            b"Explain invoice {{ n }} in detail. ({{ note }})"
        };
        h.put_file(sha, "prompts/user.j2", prompt);
    }
    let mut st = h.state();
    st.repo = REPO.to_string();
    st.pr_files = vec![PrFile {
        status: "modified",
        filename: "prompts/user.j2".into(),
        previous: None,
    }];
}

/// SPEC §1 `tickets`: a hallucination under a passing gate opens exactly one issue; a
/// later head with the same output comments on it; once closed, it stays closed.
#[tokio::test]
async fn a_hallucination_under_a_passing_gate_opens_one_ticket_and_later_runs_comment() {
    const THIRD: &str = "4444444444444444444444444444444444444444";
    let h = Harness::start().await;
    let m = common::fake_openai().await;
    let model_url = format!("{}/v1", m.uri());
    seed_ticketed(&h, &model_url, &[HEAD, NEW_HEAD, THIRD]);
    h.state().pulls = vec![pull(HEAD, REPO)];
    let dir = tempfile::tempdir().unwrap();
    let svc = start(&h, &db_path(&dir)).await;

    let opened = fixture("github/webhook.pull_request.opened.octokit.json");
    assert_eq!(
        svc.github("pull_request", "t-1", SECRET, &opened).await,
        202
    );
    let done = final_status(&h, HEAD).await;
    assert_eq!(done.state, "success", "{done:?}");
    let issues = h.issues();
    assert_eq!(issues.len(), 1, "{issues:#?}");
    let issue = &issues[0];
    assert_eq!(issue.labels, vec!["llm-quality".to_string()]);
    assert!(
        issue.title.contains("hallucination in billing / b"),
        "{}",
        issue.title
    );
    assert!(
        issue.body.contains("<!-- promptgate:ticket:"),
        "{}",
        issue.body
    );
    assert!(issue.body.contains("#2"), "names the PR: {}", issue.body);
    assert!(issue.body.contains("prompts/user.j2"), "{}", issue.body);
    assert!(
        issue.body.contains("http://bot.example/runs/"),
        "{}",
        issue.body
    );
    assert!(
        !issue.body.contains("jane@example.com") && issue.body.contains("[EMAIL]"),
        "excerpts are redacted: {}",
        issue.body
    );
    let sticky = h.state().ours()[0].body.clone();
    assert!(
        sticky.contains("**Tickets:** 1 opened, 0 updated"),
        "{sticky}"
    );
    let report: Value =
        serde_json::from_str(&svc.text("SELECT report_json FROM runs WHERE id = 1").await).unwrap();
    let tickets = report["tickets"].as_array().unwrap();
    assert_eq!(tickets.len(), 1, "{report}");
    assert_eq!(
        (
            tickets[0]["case"].as_str(),
            tickets[0]["finding"].as_str(),
            tickets[0]["new"].as_bool()
        ),
        (Some("b"), Some("hallucination"), Some(true))
    );
    let key = tickets[0]["key"].as_str().unwrap().to_string();
    assert!(issue.body.contains(&key));

    // A push with the same prompt: the same output, so the same ticket, one comment.
    h.state().pulls = vec![pull(NEW_HEAD, REPO)];
    let sync = fixture("github/webhook.pull_request.synchronize.octokit.json");
    assert_eq!(svc.github("pull_request", "t-2", SECRET, &sync).await, 202);
    assert_eq!(final_status(&h, NEW_HEAD).await.state, "success");
    assert_eq!(h.issues().len(), 1, "no second issue");
    let comments = h.issue_comments(issue.number);
    assert_eq!(comments.len(), 1, "{comments:#?}");
    assert!(
        comments[0].body.contains("Seen again in #2"),
        "{}",
        comments[0].body
    );
    let run2: Value = serde_json::from_str(
        &svc.text(&format!(
            "SELECT report_json FROM runs WHERE head_sha = '{NEW_HEAD}'"
        ))
        .await,
    )
    .unwrap();
    assert_eq!(run2["tickets"][0]["new"], false, "{run2}");
    assert_eq!(run2["tickets"][0]["status"], "updated", "{run2}");

    // Closed by a person: it stays closed, and nothing more is said on it.
    h.close_issue(issue.number);
    h.state().pulls = vec![pull(THIRD, REPO)];
    assert_eq!(svc.github("pull_request", "t-3", SECRET, &sync).await, 202);
    assert_eq!(final_status(&h, THIRD).await.state, "success");
    assert_eq!(h.issues().len(), 1);
    assert_eq!(h.issue_comments(issue.number).len(), 1);
    let run3: Value = serde_json::from_str(
        &svc.text(&format!(
            "SELECT report_json FROM runs WHERE head_sha = '{THIRD}'"
        ))
        .await,
    )
    .unwrap();
    assert_eq!(run3["tickets"][0]["status"], "closed", "{run3}");
    svc.stop().await;
}

/// Past `max_per_run`, the findings share one summary issue; a second PR run at the
/// same head does not open it again.
#[tokio::test]
async fn tickets_over_the_cap_share_one_summary_issue() {
    let h = Harness::start().await;
    let m = common::fake_openai().await;
    let model_url = format!("{}/v1", m.uri());
    seed_tickets_with(
        &h,
        &model_url,
        &[HEAD],
        "UNSUPPORTED too",
        "  max_per_run: 1\n",
    );
    h.state().pulls = vec![pull(HEAD, REPO)];
    let dir = tempfile::tempdir().unwrap();
    let svc = start(&h, &db_path(&dir)).await;
    let opened = fixture("github/webhook.pull_request.opened.octokit.json");
    assert_eq!(
        svc.github("pull_request", "c-1", SECRET, &opened).await,
        202
    );
    assert_eq!(final_status(&h, HEAD).await.state, "success");
    let issues = h.issues();
    assert_eq!(issues.len(), 2, "one ticket and one summary: {issues:#?}");
    assert!(
        issues.iter().any(|i| i.title.contains("1 more findings")),
        "{issues:#?}"
    );
    let report: Value =
        serde_json::from_str(&svc.text("SELECT report_json FROM runs WHERE id = 1").await).unwrap();
    let statuses: Vec<&str> = report["tickets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["opened", "capped"], "{report}");
    svc.stop().await;
}

/// Another PR that produces the same output finds the same ticket: a comment naming
/// that PR, no second issue.
#[tokio::test]
async fn a_second_pr_with_the_same_finding_comments_on_the_first_ticket() {
    const OTHER_PR: u64 = 3;
    let h = Harness::start().await;
    let m = common::fake_openai().await;
    let model_url = format!("{}/v1", m.uri());
    seed_ticketed(&h, &model_url, &[HEAD, NEW_HEAD]);
    let mut second = pull(NEW_HEAD, REPO);
    second["number"] = json!(OTHER_PR);
    h.state().pulls = vec![pull(HEAD, REPO), second];
    let dir = tempfile::tempdir().unwrap();
    let svc = start(&h, &db_path(&dir)).await;
    let opened = fixture("github/webhook.pull_request.opened.octokit.json");
    assert_eq!(svc.github("pull_request", "p2", SECRET, &opened).await, 202);
    assert_eq!(final_status(&h, HEAD).await.state, "success");
    let mut other: Value = serde_json::from_slice(&opened).unwrap();
    other["number"] = json!(OTHER_PR);
    other["pull_request"]["number"] = json!(OTHER_PR);
    let other = serde_json::to_vec(&other).unwrap();
    assert_eq!(svc.github("pull_request", "p3", SECRET, &other).await, 202);
    assert_eq!(final_status(&h, NEW_HEAD).await.state, "success");
    let issues = h.issues();
    assert_eq!(issues.len(), 1, "{issues:#?}");
    let comments = h.issue_comments(issues[0].number);
    assert_eq!(comments.len(), 1, "{comments:#?}");
    assert!(
        comments[0].body.contains("Seen again in #3"),
        "{}",
        comments[0].body
    );
    svc.stop().await;
}

/// GitLab: the ticket is a project issue with the labels, found again by a later head.
#[tokio::test]
async fn a_gitlab_hallucination_opens_one_project_issue() {
    use common::gitlab::{FakeGitLab, MergeRequest};
    const PID: u64 = 4580910;
    const IID: u64 = 12;
    const GL_HEAD: &str = "d2eae324ca26242abca45d7b49d582cddb2a4f15";
    let m = common::fake_openai().await;
    let model_url = format!("{}/v1", m.uri());
    let gl = FakeGitLab::start().await;
    gl.add_project(PID, "lkysow/atlantis-example");
    gl.set_branch(PID, "main", BASE);
    let mut mr = MergeRequest::new(PID, IID, BASE, GL_HEAD);
    mr.diffs = vec![("prompts/user.j2".into(), "prompts/user.j2".into())];
    gl.add_mr(mr);
    // The files seed_ticketed writes to the fake GitHub, here in the fake GitLab.
    let h = Harness::start().await;
    seed_ticketed(&h, &model_url, &[HEAD]);
    let files = h.state().files.clone();
    for ((sha, path), bytes) in files {
        let sha = if sha == HEAD {
            GL_HEAD.to_string()
        } else {
            sha
        };
        gl.add_file(PID, &sha, &path, &bytes);
    }
    let dir = tempfile::tempdir().unwrap();
    let svc = start_gitlab(&gl, &db_path(&dir)).await;
    let open = fixture("gitlab/webhook.merge_request.open.atlantis.json");
    assert_eq!(
        svc.gitlab("Merge Request Hook", "g-1", GITLAB_SECRET, &open)
            .await,
        202
    );
    svc.drained().await;
    let issues = gl.issues(PID);
    assert_eq!(issues.len(), 1, "{issues:#?}");
    assert_eq!(issues[0].labels, vec!["llm-quality".to_string()]);
    assert!(
        issues[0].title.contains("hallucination in billing / b"),
        "{issues:#?}"
    );
    assert!(
        issues[0].description.contains("!12"),
        "names the MR: {}",
        issues[0].description
    );
    assert!(issues[0].description.contains("<!-- promptgate:ticket:"));
    let notes = gl.notes(PID, IID);
    assert!(
        notes[0].body.contains("**Tickets:** 1 opened"),
        "{}",
        notes[0].body
    );
    svc.stop().await;
}
