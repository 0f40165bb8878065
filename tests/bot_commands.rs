//! Slash commands end to end: the real `issue_comment` delivery (pytorch's Probot
//! capture, with the comment's text and author set per test) signed and posted to the
//! real router; the bot checks permissions, reacts, runs, approves — against the
//! stateful fake GitHub. Assertions are on what GitHub holds and on the audit log.

mod common;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use common::echo::{model, Echo};
use common::github::{Harness, PrFile, StatusRec};
use common::service::{db_path, settings, test_options, wait_until, Service};
use promptgate::audit::{AuditKind, AuditLog};
use promptgate::event::ForgeKind;
use promptgate::forge::Forge;
use promptgate::server::ServeOptions;
use serde_json::{json, Value};
use wiremock::MockServer;

const SECRET: &str = "commands-test-secret";
/// What `webhook.issue_comment.created.on-pr.pytorch.probot.json` is about.
const REPO: &str = "zhouzhuojie/gha-ci-playground";
const PR: u64 = 31;
const BASE: &str = "f95f852bd8fca8fcc58a9a2d6c842781e32a215e";
const HEAD: &str = "ec26c3e57ca3a959ca5aad62de7213c562f8c821";
const NEW_HEAD: &str = "3333333333333333333333333333333333333333";
const MAINTAINER: (&str, u64) = ("maya", 501);
const OUTSIDER: (&str, u64) = ("zhouzhuojie", 658840);
const APPROVER: (&str, u64) = ("alice", 502);
const TEAM_APPROVER: (&str, u64) = ("tom", 503);

struct World {
    h: Harness,
    model: MockServer,
    echo: Echo,
    svc: Service,
    _dir: tempfile::TempDir,
}

const PASSING: &str = "Explain invoice {{ n }}.";
const FAILING: &str = "Explain the bill {{ n }}.";
/// Case `a` keeps the word, case `b` loses it: assertions 1.0 → 0.5, which still meets
/// `min: 0.5` but regresses beyond `max_regression`.
const REGRESSING: &str =
    "{% if n == 1 %}Explain invoice{% else %}Explain the bill{% endif %} {{ n }}.";

fn config(release: bool) -> String {
    let mut cfg = String::from(
        "version: 1\nsuites:\n  billing:\n    prompts: { user: prompts/user.j2 }\n    model: models/m.yaml\n    dataset: evals/b.jsonl\n    metrics:\n      assertions: { min: 0.5 }\n    max_regression: 0.05\n",
    );
    cfg.push_str("release:\n  approvers: [alice, \"@acme/ml-leads\"]\n");
    if release {
        cfg.push_str("  branches: [\"release/*\"]\n");
    }
    cfg
}

impl World {
    async fn start(base_ref: &str, head_prompt: &str) -> World {
        World::start_with(base_ref, head_prompt, test_options()).await
    }

    /// [`start`](Self::start) with serve options of the test's own (one worker, say).
    async fn start_with(base_ref: &str, head_prompt: &str, options: ServeOptions) -> World {
        let h = Harness::start().await;
        let echo = Echo::default();
        let model = model(echo.clone()).await;
        h.user(MAINTAINER.0, MAINTAINER.1, "maintain");
        h.user(OUTSIDER.0, OUTSIDER.1, "read");
        h.user(APPROVER.0, APPROVER.1, "write");
        h.user(TEAM_APPROVER.0, TEAM_APPROVER.1, "admin");
        h.state()
            .teams
            .insert("acme/ml-leads".into(), vec![TEAM_APPROVER.0.into()]);
        let dir = tempfile::tempdir().unwrap();
        let svc = start(&h, &db_path(&dir), options).await;
        let w = World {
            h,
            model,
            echo,
            svc,
            _dir: dir,
        };
        w.seed(base_ref, HEAD, head_prompt);
        w
    }

    /// The repository at BASE and `head`, PR 31 between them into `base_ref`.
    fn seed(&self, base_ref: &str, head: &str, head_prompt: &str) {
        let model_url = format!("{}/v1", self.model.uri());
        let release = base_ref.starts_with("release/");
        for sha in [BASE, head] {
            self.h
                .put_file(sha, ".promptgate.yml", config(release).as_bytes());
            self.h.put_file(
                sha,
                "models/m.yaml",
                format!("provider: openai\nmodel: chat\nbase_url: {model_url}\nparameters: {{ temperature: 0 }}\n").as_bytes(),
            );
            self.h.put_file(
                sha,
                "evals/b.jsonl",
                b"{\"id\": \"a\", \"vars\": {\"n\": 1}, \"assert\": [{\"type\": \"icontains\", \"value\": \"invoice\"}]}\n{\"id\": \"b\", \"vars\": {\"n\": 2}, \"assert\": [{\"type\": \"icontains\", \"value\": \"invoice\"}]}\n",
            );
        }
        self.h.put_file(BASE, "prompts/user.j2", PASSING.as_bytes());
        self.h
            .put_file(head, "prompts/user.j2", head_prompt.as_bytes());
        let mut st = self.h.state();
        st.repo = REPO.to_string();
        st.pr_files = vec![PrFile {
            status: "modified",
            filename: "prompts/user.j2".into(),
            previous: None,
        }];
        st.pulls = vec![json!({
            "number": PR, "state": "open", "draft": false,
            "base": {"ref": base_ref, "sha": BASE, "repo": {"full_name": REPO}},
            "head": {"ref": "feature", "sha": head, "repo": {"full_name": REPO}},
        })];
    }

    /// `who` comments `body` on the PR (the real delivery, with text and author set);
    /// waits until the bot has handled it. Returns the comment id.
    async fn comment(&self, who: (&str, u64), body: &str) -> u64 {
        let id = self.deliver_comment(who, body, None).await;
        self.svc.drained().await;
        id
    }

    /// `who` comments `body` (or, with `id`, that comment is delivered again under a
    /// new delivery id); returns once the service accepted it, without waiting for
    /// the queue. Returns the comment id.
    async fn deliver_comment(&self, who: (&str, u64), body: &str, again: Option<u64>) -> u64 {
        let id = match again {
            Some(id) => id,
            None => self.h.user_comment(PR, who.0, body),
        };
        let mut payload =
            fixture_json("github/webhook.issue_comment.created.on-pr.pytorch.probot.json")
                ["payload"]
                .clone();
        payload["comment"]["body"] = json!(body);
        payload["comment"]["id"] = json!(id);
        payload["comment"]["user"]["login"] = json!(who.0);
        payload["comment"]["user"]["id"] = json!(who.1);
        // The commenter is the one who acted.
        payload["sender"]["login"] = json!(who.0);
        payload["sender"]["id"] = json!(who.1);
        // The capture's issue lacks the `pull_request` link GitHub sends for PR comments.
        payload["issue"]["pull_request"] =
            json!({"url": format!("https://api.github.com/repos/{REPO}/pulls/{PR}")});
        let bytes = serde_json::to_vec(&payload).unwrap();
        let delivery = match again {
            Some(_) => format!("c-{id}-again"),
            None => format!("c-{id}"),
        };
        let code = self
            .svc
            .github("issue_comment", &delivery, SECRET, &bytes)
            .await;
        assert_eq!(code, 202);
        id
    }

    /// Opens the PR (octokit's `opened` example, retargeted); does not wait.
    async fn open(&self) {
        self.pr_event("opened", "open-1").await;
    }

    /// A `synchronize` delivery (octokit's example, retargeted at this PR).
    async fn push(&self, delivery: &str) {
        self.pr_event("synchronize", delivery).await;
        self.svc.drained().await;
    }

    /// Octokit's `pull_request.{action}` example retargeted at this PR, delivered.
    async fn pr_event(&self, action: &str, delivery: &str) {
        let mut payload = fixture_json(&format!(
            "github/webhook.pull_request.{action}.octokit.json"
        ));
        payload["number"] = json!(PR);
        payload["pull_request"]["number"] = json!(PR);
        payload["repository"]["full_name"] = json!(REPO);
        let bytes = serde_json::to_vec(&payload).unwrap();
        assert_eq!(
            self.svc
                .github("pull_request", delivery, SECRET, &bytes)
                .await,
            202
        );
    }

    fn statuses(&self, context: &str, sha: &str) -> Vec<StatusRec> {
        self.h
            .state()
            .statuses
            .iter()
            .filter(|s| s.context == context && s.sha == sha)
            .cloned()
            .collect()
    }

    fn last(&self, context: &str, sha: &str) -> Option<StatusRec> {
        self.statuses(context, sha).pop()
    }

    /// Comments by the bot that are not the sticky one.
    fn replies(&self) -> Vec<String> {
        let st = self.h.state();
        st.comments
            .iter()
            .filter(|c| c.login == st.bot_login && !c.body.contains(common::github::MARKER))
            .map(|c| c.body.clone())
            .collect()
    }

    async fn audit(&self) -> Vec<(AuditKind, String, Option<String>)> {
        AuditLog::new(self.svc.state.store.db())
            .entries()
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.entry.kind, e.entry.actor_login, e.entry.sha))
            .collect()
    }

    async fn model_calls(&self) -> usize {
        self.model.received_requests().await.unwrap().len()
    }
}

fn fixture_json(rel: &str) -> Value {
    let path = format!("{}/tests/fixtures/{rel}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

async fn start(h: &Harness, db: &Path, options: ServeOptions) -> Service {
    let forge: Arc<dyn Forge> = Arc::new(h.forge());
    let settings = settings(&[
        ("PROMPTGATE_GITHUB_TOKEN", common::github::TOKEN),
        ("PROMPTGATE_GITHUB_WEBHOOK_SECRET", SECRET),
    ]);
    Service::bot_with(settings, db, options, ForgeKind::Github, forge).await
}

#[tokio::test]
async fn an_outsider_is_refused_and_nothing_runs() {
    let w = World::start("main", FAILING).await;
    let id = w.comment(OUTSIDER, "/promptgate run").await;
    assert_eq!(w.model_calls().await, 0);
    assert!(w.h.state().statuses.is_empty());
    assert!(
        w.h.state().reactions.is_empty(),
        "a denied command is not acknowledged"
    );
    let replies = w.replies();
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert!(replies[0].contains("needs write access"), "{}", replies[0]);
    assert!(replies[0].contains("@zhouzhuojie"));
    let audit = w.audit().await;
    assert_eq!(
        audit,
        vec![(AuditKind::Denial, OUTSIDER.0.to_string(), None)]
    );
    // Acknowledged nothing: no reaction on the outsider's comment.
    assert!(!w.h.state().reactions.iter().any(|(c, _)| *c == id));
}

#[tokio::test]
async fn a_maintainer_re_runs_and_the_command_is_acknowledged_first() {
    let w = World::start("main", FAILING).await;
    let id = w.comment(MAINTAINER, "/promptgate run --full").await;
    assert_eq!(w.h.state().reactions, vec![(id, "eyes".to_string())]);
    let done = w.last("promptgate", HEAD).unwrap();
    assert_eq!(done.state, "failure", "{done:?}");
    assert_eq!(w.model_calls().await, 4);
    // A second request re-runs the same commit (from the cache).
    w.comment(MAINTAINER, "/promptgate run billing").await;
    let finals = w
        .statuses("promptgate", HEAD)
        .into_iter()
        .filter(|s| s.state != "pending")
        .count();
    assert_eq!(finals, 2);
    assert_eq!(w.model_calls().await, 4);
    let kinds: Vec<AuditKind> = w.audit().await.into_iter().map(|e| e.0).collect();
    assert_eq!(
        kinds,
        vec![
            AuditKind::Command,
            AuditKind::Run,
            AuditKind::Command,
            AuditKind::Run
        ]
    );
    // Unknown suites and commands get the help text, naming the problem.
    w.comment(MAINTAINER, "/promptgate run nosuch").await;
    w.comment(MAINTAINER, "/promptgate aprove").await;
    let replies = w.replies();
    assert!(
        replies
            .iter()
            .any(|r| r.contains("unknown suite") && r.contains("nosuch")),
        "{replies:?}"
    );
    assert!(replies.iter().any(|r| r.contains("aprove")), "{replies:?}");
}

#[tokio::test]
async fn cancel_stops_a_running_evaluation() {
    let w = World::start("main", FAILING).await;
    w.echo.slow.store(true, Ordering::SeqCst);
    // Open the PR: the run starts and waits on the model.
    w.open().await;
    wait_until(|| async { w.model_calls().await > 0 }).await;
    w.comment(MAINTAINER, "/promptgate cancel").await;
    let last = w.last("promptgate", HEAD).unwrap();
    assert_eq!(
        last.state,
        "error",
        "{:?} {:?}",
        w.statuses("promptgate", HEAD),
        w.replies()
    );
    assert!(last.description.contains("Cancelled by @maya"), "{last:?}");
    assert_eq!(
        w.svc
            .count("SELECT COUNT(*) FROM runs WHERE status = 'cancelled'")
            .await,
        1
    );
    // The aborted run never published a score table.
    assert!(w.h.state().ours().is_empty());
}

/// Issue 14 item 3: another replica's `/promptgate cancel` can only mark the run row
/// (the evaluation runs here); the evaluation notices within seconds and stops without
/// publishing.
#[tokio::test]
async fn a_run_cancelled_through_its_row_by_another_replica_stops() {
    let w = World::start("main", FAILING).await;
    w.echo.slow.store(true, Ordering::SeqCst);
    w.open().await;
    wait_until(|| async { w.model_calls().await > 0 }).await;
    let in_flight = || w.svc.state.metrics.render(None);
    assert!(in_flight().contains("promptgate_runs_in_flight 1\n"));
    // What the other replica's cancel does to the shared database.
    let runs = promptgate::store::runs::Runs::new(w.svc.state.store.db());
    assert_eq!(runs.cancel_pr("github", REPO, PR).await.unwrap(), 1);
    wait_until(|| async { in_flight().contains("promptgate_runs_in_flight 0\n") }).await;
    assert_eq!(
        w.svc
            .count("SELECT COUNT(*) FROM runs WHERE status = 'cancelled'")
            .await,
        1
    );
    // The stopped run published no score table and no final status.
    assert!(w.h.state().ours().is_empty());
    let last = w.last("promptgate", HEAD).unwrap();
    assert_eq!(
        last.state,
        "pending",
        "{:?}",
        w.statuses("promptgate", HEAD)
    );
}

#[tokio::test]
async fn release_flow_evaluation_passes_then_approve_then_a_push_drops_it() {
    let w = World::start("release/1.0", PASSING).await;
    w.comment(MAINTAINER, "/promptgate run").await;
    assert_eq!(w.last("promptgate", HEAD).unwrap().state, "success");
    let pending = w.last("promptgate/release-approval", HEAD).unwrap();
    assert_eq!(pending.state, "pending");
    assert!(pending.description.contains("passed"), "{pending:?}");
    // The release tier ran every case.
    assert_eq!(
        w.svc
            .count("SELECT COUNT(*) FROM runs WHERE tier = 'release'")
            .await,
        1
    );

    // A team member (@acme/ml-leads) approves.
    w.comment(TEAM_APPROVER, "/promptgate approve").await;
    let approved = w.last("promptgate/release-approval", HEAD).unwrap();
    assert_eq!(approved.state, "success");
    assert!(approved.description.contains("@tom"), "{approved:?}");
    {
        let st = w.h.state();
        assert_eq!(st.reviews.len(), 1);
        assert_eq!(st.reviews[0]["event"], "APPROVE");
        assert_eq!(st.reviews[0]["commit_id"], HEAD);
    }
    let notes = w
        .replies()
        .into_iter()
        .find(|r| r.contains("Release notes"))
        .expect("release notes");
    assert!(notes.contains(HEAD), "{notes}");
    assert!(notes.contains("prompts/user.j2"), "{notes}");
    assert!(notes.contains("chat"), "{notes}");
    assert!(notes.contains("assertions"), "{notes}");
    let audit = w.audit().await;
    assert!(
        audit.contains(&(
            AuditKind::Approval,
            TEAM_APPROVER.0.to_string(),
            Some(HEAD.to_string())
        )),
        "{audit:?}"
    );
    let chain = promptgate::audit::verify(&w.svc.state.store.db())
        .await
        .unwrap();
    assert!(chain.first_broken.is_none(), "{:?}", chain.first_broken);
    assert_eq!(chain.entries, audit.len());

    // A push: the approval does not carry over.
    w.seed("release/1.0", NEW_HEAD, "Explain invoice {{ n }} please.");
    w.push("push-1").await;
    let after = w.last("promptgate/release-approval", NEW_HEAD).unwrap();
    assert_eq!(after.state, "pending", "{after:?}");
    assert_eq!(w.h.state().reviews.len(), 1);
}

/// Issue 14 item 7 on a release branch: a push while the old head is evaluating ends
/// both of the old head's statuses, the release approval's too.
#[tokio::test]
async fn a_superseded_release_head_ends_its_approval_status_too() {
    let w = World::start("release/1.0", PASSING).await;
    w.echo.delay_ms.store(1500, Ordering::SeqCst);
    w.open().await;
    wait_until(|| async { w.model_calls().await > 0 }).await;
    assert_eq!(
        w.last("promptgate/release-approval", HEAD).unwrap().state,
        "pending"
    );
    w.seed("release/1.0", NEW_HEAD, "Explain invoice {{ n }} please.");
    w.echo.delay_ms.store(0, Ordering::SeqCst);
    w.push("push-1").await;
    for context in ["promptgate", "promptgate/release-approval"] {
        let last = w.last(context, HEAD).unwrap();
        assert_eq!(
            last.state,
            "error",
            "{context}: {:?}",
            w.statuses(context, HEAD)
        );
        assert!(
            last.description.contains("Superseded by 3333333"),
            "{context}: {last:?}"
        );
    }
    assert_eq!(w.last("promptgate", NEW_HEAD).unwrap().state, "success");
}

#[tokio::test]
async fn an_approval_before_the_evaluation_passed_does_not_count() {
    let w = World::start("release/1.0", FAILING).await;
    w.comment(MAINTAINER, "/promptgate run").await;
    assert_eq!(w.last("promptgate", HEAD).unwrap().state, "failure");
    w.comment(APPROVER, "/promptgate approve").await;
    assert_eq!(
        w.last("promptgate/release-approval", HEAD).unwrap().state,
        "pending"
    );
    assert!(w.h.state().reviews.is_empty());
    assert!(
        w.replies().iter().any(|r| r.contains("does not count")),
        "{:?}",
        w.replies()
    );
    // Not kept for later either: nothing is recorded on the run.
    assert_eq!(
        w.svc
            .count("SELECT COUNT(*) FROM runs WHERE approved_by IS NOT NULL")
            .await,
        0
    );
    // A maintainer who is not an approver is refused outright.
    w.comment(MAINTAINER, "/promptgate approve").await;
    assert!(w
        .replies()
        .iter()
        .any(|r| r.contains("not one of the `release.approvers`")));
}

#[tokio::test]
async fn needs_review_then_approve_turns_the_status_to_success() {
    let w = World::start("main", REGRESSING).await;
    // `--full`: case `a` renders the same at head, so only `b` is affected by the diff;
    // over both cases the head still meets the threshold but regressed.
    w.comment(MAINTAINER, "/promptgate run --full").await;
    let first = w.last("promptgate", HEAD).unwrap();
    assert_eq!(first.state, "failure");
    assert!(first.description.contains("needs_review"), "{first:?}");
    w.comment(APPROVER, "/promptgate approve").await;
    let last = w.last("promptgate", HEAD).unwrap();
    assert_eq!(last.state, "success", "{last:?}");
    assert!(last.description.contains("approved by @alice"), "{last:?}");
    assert!(last.description.contains(&HEAD[..7]), "{last:?}");
    // Not a release PR: no review, no release status.
    assert!(w.h.state().reviews.is_empty());
    assert!(w.last("promptgate/release-approval", HEAD).is_none());
}

/// GitLab: the real atlantis Note Hook (text and author set per comment) through the
/// router; permissions by access level; the 👀 award; the run.
#[tokio::test]
async fn gitlab_notes_a_reporter_is_refused_and_a_maintainer_runs() {
    use common::gitlab::{FakeGitLab, MergeRequest, TOKEN};
    use promptgate::forge::{ForgeRetryPolicy, GitLabForge};
    // What `webhook.note.on-merge-request.atlantis.json` is about.
    const PID: u64 = 5;
    const IID: u64 = 1;
    const GL_HEAD: &str = "562e173be03b8ff2efb05345d12df18815438a4b";
    let model = model(Echo::default()).await;
    let gl = FakeGitLab::start().await;
    gl.add_project(PID, "gitlabhq/gitlab-test");
    gl.set_branch(PID, "markdown", BASE);
    let mut mr = MergeRequest::new(PID, IID, BASE, GL_HEAD);
    mr.target_branch = "markdown".into();
    mr.diffs = vec![("prompts/user.j2".into(), "prompts/user.j2".into())];
    gl.add_mr(mr);
    gl.seed_billing(
        PID,
        BASE,
        GL_HEAD,
        &format!("{}/v1", model.uri()),
        "Explain the bill {{ n }}.",
    );
    gl.add_user(71, "rita");
    gl.set_member(PID, 71, 20); // Reporter
    gl.add_user(72, "max");
    gl.set_member(PID, 72, 40); // Maintainer
    let forge: Arc<dyn Forge> = Arc::new(
        GitLabForge::new(&gl.url, TOKEN)
            .unwrap()
            .with_retry_policy(ForgeRetryPolicy::fast()),
    );
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(&[
        ("PROMPTGATE_GITLAB_TOKEN", TOKEN),
        ("PROMPTGATE_GITLAB_WEBHOOK_SECRET", SECRET),
    ]);
    let svc = Service::with_bot(settings, &db_path(&dir), ForgeKind::Gitlab, forge).await;
    let note = |who: (&str, u64), text: &str| {
        let id = gl.add_note(PID, IID, who.1, text);
        let mut payload = fixture_json("gitlab/webhook.note.on-merge-request.atlantis.json");
        payload["object_attributes"]["note"] = json!(text);
        payload["object_attributes"]["id"] = json!(id);
        payload["object_attributes"]["author_id"] = json!(who.1);
        payload["user"]["username"] = json!(who.0);
        payload["user"]["id"] = json!(who.1);
        (id, serde_json::to_vec(&payload).unwrap())
    };

    let (rita_note, body) = note(("rita", 71), "/promptgate run");
    assert_eq!(svc.gitlab("Note Hook", "n-1", SECRET, &body).await, 202);
    svc.drained().await;
    assert!(gl.statuses().is_empty());
    assert!(gl.awards().is_empty());
    let replies: Vec<String> = gl.notes(PID, IID).into_iter().map(|n| n.body).collect();
    assert!(
        replies
            .iter()
            .any(|b| b.contains("@rita") && b.contains("needs write access")),
        "{replies:?}"
    );
    assert!(rita_note > 0);

    let (max_note, body) = note(("max", 72), "/promptgate run");
    assert_eq!(svc.gitlab("Note Hook", "n-2", SECRET, &body).await, 202);
    svc.drained().await;
    let awards = gl.awards();
    assert_eq!(awards.len(), 1, "{awards:?}");
    assert_eq!(awards[0].name, "eyes");
    assert_eq!(awards[0].note_id, max_note);
    let states: Vec<String> = gl
        .statuses()
        .into_iter()
        .filter(|s| s.name == "promptgate" && s.sha == GL_HEAD)
        .map(|s| s.state)
        .collect();
    assert_eq!(states, vec!["pending", "failed"]);
    svc.stop().await;
}

#[tokio::test]
async fn a_maintainer_runs_a_fork_pr_and_the_allowance_is_audited() {
    let w = World::start("main", FAILING).await;
    w.h.state().pulls[0]["head"]["repo"]["full_name"] = json!("mallory/gha-ci-playground");
    // An outsider cannot start it.
    w.comment(OUTSIDER, "/promptgate run").await;
    assert_eq!(w.model_calls().await, 0);
    w.comment(MAINTAINER, "/promptgate run").await;
    assert_eq!(w.last("promptgate", HEAD).unwrap().state, "failure");
    assert_eq!(w.model_calls().await, 4);
    let audit = w.audit().await;
    assert!(
        audit.contains(&(
            AuditKind::ForkAllowance,
            MAINTAINER.0.to_string(),
            Some(HEAD.to_string())
        )),
        "{audit:?}"
    );
}

#[tokio::test]
async fn a_refused_review_still_records_the_release_approval() {
    let w = World::start("release/1.0", PASSING).await;
    w.comment(MAINTAINER, "/promptgate run").await;
    // GitHub answers 422 when the bot may not approve (e.g. the PR is its own).
    w.h.fail(
        "POST",
        &format!("/repos/{REPO}/pulls/{PR}/reviews"),
        1,
        422,
        &common::github::validation_failed_body(),
    );
    w.comment(APPROVER, "/promptgate approve").await;
    assert_eq!(
        w.last("promptgate/release-approval", HEAD).unwrap().state,
        "success"
    );
    assert!(
        w.replies()
            .iter()
            .any(|r| r.contains("refused the bot's review")),
        "{:?}",
        w.replies()
    );
}

const STRANGER: (&str, u64) = ("drive-by", 777);

#[tokio::test]
async fn a_comment_of_a_thousand_commands_gets_one_reply() {
    let w = World::start("main", FAILING).await;
    let mut body = String::from("/promptgate run\n");
    for i in 0..999 {
        body.push_str(&format!("/promptgate frobnicate{i}\n"));
    }
    w.comment(MAINTAINER, &body).await;
    let replies = w.replies();
    assert_eq!(replies.len(), 1, "one reply for the whole comment");
    assert!(
        replies[0].contains("990 more were ignored"),
        "{}",
        &replies[0][..replies[0].len().min(2000)]
    );
    assert!(replies[0].contains("frobnicate8") && !replies[0].contains("frobnicate9"));
    // The run among them still ran, once.
    assert!(w.model_calls().await > 0);
    let commands = w
        .audit()
        .await
        .into_iter()
        .filter(|(k, _, _)| *k == AuditKind::Command)
        .count();
    assert_eq!(commands, 1);
}

#[tokio::test]
async fn someone_without_access_gets_no_help_and_no_answer_to_a_typo() {
    let w = World::start("main", FAILING).await;
    w.h.user(STRANGER.0, STRANGER.1, "none");
    w.comment(STRANGER, "/promptgate help").await;
    w.comment(STRANGER, "/promptgate frobnicate").await;
    assert!(w.replies().is_empty(), "{:?}", w.replies());
    assert!(w.h.state().reactions.is_empty());
    assert_eq!(w.model_calls().await, 0);
    // A reader still gets help (they have access to the repository).
    w.comment(OUTSIDER, "/promptgate help").await;
    assert_eq!(w.replies().len(), 1);
}

#[tokio::test]
async fn a_command_hidden_after_a_mid_line_html_comment_does_not_run() {
    let w = World::start("main", FAILING).await;
    w.comment(
        MAINTAINER,
        "/promptgate help\nthanks <!-- invisible\n/promptgate run\n-->",
    )
    .await;
    assert_eq!(w.model_calls().await, 0);
    assert!(w.h.state().statuses.is_empty());
    assert_eq!(w.replies().len(), 1);
}

impl World {
    /// `sender` edits the comment `id` written by `author` from `previous` to `body`
    /// (the real `issue_comment` delivery with action `edited`).
    async fn edit(
        &self,
        id: u64,
        author: (&str, u64),
        sender: (&str, u64),
        previous: &str,
        body: &str,
    ) {
        let mut payload =
            fixture_json("github/webhook.issue_comment.created.on-pr.pytorch.probot.json")
                ["payload"]
                .clone();
        payload["action"] = json!("edited");
        payload["changes"] = json!({"body": {"from": previous}});
        payload["comment"]["body"] = json!(body);
        payload["comment"]["id"] = json!(id);
        payload["comment"]["user"]["login"] = json!(author.0);
        payload["comment"]["user"]["id"] = json!(author.1);
        payload["sender"]["login"] = json!(sender.0);
        payload["sender"]["id"] = json!(sender.1);
        payload["issue"]["pull_request"] =
            json!({"url": format!("https://api.github.com/repos/{REPO}/pulls/{PR}")});
        let bytes = serde_json::to_vec(&payload).unwrap();
        let delivery = format!("e-{id}-{}", sender.1);
        assert_eq!(
            self.svc
                .github("issue_comment", &delivery, SECRET, &bytes)
                .await,
            202
        );
        self.svc.drained().await;
    }
}

#[tokio::test]
async fn an_edit_by_someone_else_runs_nothing_under_the_authors_name() {
    let w = World::start("main", FAILING).await;
    let id = w.comment(MAINTAINER, "Looks good to me.").await;
    // A writer (not the maintainer) edits the maintainer's comment into a command.
    w.edit(
        id,
        MAINTAINER,
        APPROVER,
        "Looks good to me.",
        "/promptgate run",
    )
    .await;
    assert_eq!(w.model_calls().await, 0);
    assert!(w.h.state().statuses.is_empty());
    assert!(w.audit().await.is_empty(), "{:?}", w.audit().await);
    assert!(w.replies().is_empty());
    // The author's own edit runs the command it added.
    w.edit(
        id,
        MAINTAINER,
        MAINTAINER,
        "Looks good to me.",
        "/promptgate run",
    )
    .await;
    assert!(w.model_calls().await > 0);
    let audit = w.audit().await;
    assert_eq!(
        audit[0],
        (
            AuditKind::Command,
            MAINTAINER.0.to_string(),
            Some(HEAD.to_string())
        ),
        "{audit:?}"
    );
}

impl World {
    /// The maintainer says `cancel` (not waiting on the queue); returns once the
    /// status says so.
    async fn cancel_and_wait(&self) {
        self.deliver_comment(MAINTAINER, "/promptgate cancel", None)
            .await;
        wait_until(|| async {
            self.last("promptgate", HEAD)
                .is_some_and(|s| s.description.contains("Cancelled by @maya"))
        })
        .await;
    }
}

/// One evaluation worker, held busy by a model that takes a minute.
async fn busy_world() -> World {
    let w = World::start_with(
        "main",
        FAILING,
        ServeOptions {
            workers: 1,
            ..test_options()
        },
    )
    .await;
    w.echo.slow.store(true, Ordering::SeqCst);
    w.open().await;
    wait_until(|| async { w.model_calls().await > 0 }).await;
    w
}

#[tokio::test]
async fn help_and_cancel_are_answered_while_every_worker_evaluates() {
    let w = busy_world().await;
    // The only evaluation worker waits on the model for a minute; the commands are
    // answered by the commands worker in the meantime.
    w.deliver_comment(MAINTAINER, "/promptgate help", None)
        .await;
    wait_until(|| async { w.replies().iter().any(|r| r.contains("/promptgate run")) }).await;
    w.cancel_and_wait().await;
    assert_eq!(w.last("promptgate", HEAD).unwrap().state, "error");
    assert!(
        w.h.state().ours().is_empty(),
        "the aborted run published nothing"
    );
}

#[tokio::test]
async fn cancel_drops_a_run_that_is_still_queued() {
    let w = busy_world().await;
    // Queued behind the busy worker: nothing evaluates it yet.
    w.deliver_comment(MAINTAINER, "/promptgate run --full", None)
        .await;
    let queued =
        "SELECT COUNT(*) FROM deliveries WHERE event = 'promptgate:run' AND status = 'queued'";
    wait_until(|| async { w.svc.count(queued).await == 1 }).await;
    w.cancel_and_wait().await;
    // The model answers at once from now on: a run that still started would finish.
    w.echo.slow.store(false, Ordering::SeqCst);
    w.svc.drained().await;
    assert_eq!(
        w.svc
            .text("SELECT last_error FROM deliveries WHERE event = 'promptgate:run'")
            .await,
        "cancelled before it started"
    );
    assert_eq!(
        w.svc.count("SELECT COUNT(*) FROM runs").await,
        1,
        "only the cancelled run"
    );
    let finals: Vec<String> = w
        .statuses("promptgate", HEAD)
        .into_iter()
        .filter(|s| s.state != "pending")
        .map(|s| s.description)
        .collect();
    assert_eq!(finals.len(), 1, "{finals:?}");
}

#[tokio::test]
async fn a_run_comment_delivered_twice_evaluates_once() {
    let w = World::start("main", FAILING).await;
    let id = w
        .deliver_comment(MAINTAINER, "/promptgate run --full", None)
        .await;
    w.svc.drained().await;
    w.deliver_comment(MAINTAINER, "/promptgate run --full", Some(id))
        .await;
    w.svc.drained().await;
    assert_eq!(
        w.svc
            .count("SELECT COUNT(*) FROM deliveries WHERE event = 'promptgate:run'")
            .await,
        1
    );
    assert_eq!(w.svc.count("SELECT COUNT(*) FROM runs").await, 1);
    assert_eq!(w.model_calls().await, 4);
}

/// SPEC §6 `--confirm`, issue 18: a run whose estimate breaks `budget.per_run_usd`
/// starts nothing and stays `pending` saying so; a maintainer who is not an approver
/// cannot confirm it; an approver's `/promptgate run --confirm` runs it (audited), and
/// what it paid is in `/metrics`.
#[tokio::test]
async fn a_run_over_budget_waits_for_an_approvers_confirm() {
    let w = World::start("main", FAILING).await;
    let model_url = format!("{}/v1", w.model.uri());
    let cfg = config(false) + "budget: { per_run_usd: 0.0001 }\n";
    for sha in [BASE, HEAD] {
        w.h.put_file(sha, ".promptgate.yml", cfg.as_bytes());
        w.h.put_file(
            sha,
            "models/m.yaml",
            format!("provider: openai\nmodel: chat\nbase_url: {model_url}\npricing: {{ input_per_1k_tokens: 1.0, output_per_1k_tokens: 1.0 }}\n").as_bytes(),
        );
    }
    w.open().await;
    w.svc.drained().await;
    assert_eq!(w.model_calls().await, 0, "nothing runs over budget");
    let waiting = w.last("promptgate", HEAD).unwrap();
    assert_eq!(waiting.state, "pending", "{waiting:?}");
    assert!(
        waiting.description.starts_with("over budget: $"),
        "{waiting:?}"
    );
    assert!(
        waiting.description.contains("$0.0001 allowed"),
        "{waiting:?}"
    );
    let sticky = w.h.state().ours()[0].body.clone();
    assert!(sticky.contains("**Over budget.**"), "{sticky}");
    assert!(sticky.contains("/promptgate run --confirm"), "{sticky}");

    w.comment(MAINTAINER, "/promptgate run --confirm").await;
    assert_eq!(w.model_calls().await, 0, "a maintainer is not an approver");
    assert!(
        w.replies()
            .iter()
            .any(|r| r.contains("`--confirm` runs a run over budget")),
        "{:?}",
        w.replies()
    );

    w.comment(APPROVER, "/promptgate run --confirm").await;
    assert_eq!(w.model_calls().await, 4, "2 cases at base and head");
    let done = w.last("promptgate", HEAD).unwrap();
    assert_eq!(done.state, "failure", "{done:?}");
    let audit = w.audit().await;
    assert!(
        audit
            .iter()
            .any(|(k, who, _)| *k == AuditKind::Command && who == APPROVER.0),
        "{audit:?}"
    );
    let (_, metrics) = w.svc.get("/metrics").await;
    let line = metrics
        .lines()
        .find(|l| l.starts_with("promptgate_spend_usd_total{forge=\"github\""))
        .unwrap_or_else(|| panic!("{metrics}"));
    let usd: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(usd > 0.0, "{line}");
}
