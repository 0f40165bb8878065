//! The GitLab forge client against the fake GitLab in `common::gitlab`: every trait
//! method, asserting on what the fake holds afterwards (statuses, notes, awards,
//! approvals), plus retries, scrubbing and the lazily built client.

mod common;

use std::time::{Duration, Instant};

use common::gitlab::{Failure, FakeGitLab, MergeRequest, TOKEN};
use promptgate::event::{ForgeKind, UserRef};
use promptgate::forge::{
    Forge, ForgeError, ForgeRetryPolicy, GitLabForge, Permission, RepoId, StatusState,
};

const PID: u64 = 42;
const PATH: &str = "acme/ml/prompts";
const MARKER: &str = "<!-- promptgate:sticky -->";
const BASE: &str = "1111111111111111111111111111111111111111";
const HEAD: &str = "2222222222222222222222222222222222222222";
const MR: u64 = 7;

/// A fake with project `acme/ml/prompts` (id 42) and merge request !7 from `BASE` to
/// `HEAD`.
async fn fake() -> FakeGitLab {
    let fake = FakeGitLab::start().await;
    fake.add_project(PID, PATH);
    fake.set_branch(PID, "main", BASE);
    let mut mr = MergeRequest::new(PID, MR, BASE, HEAD);
    mr.diffs = vec![
        ("prompts/a.md".into(), "prompts/a.md".into()),
        ("prompts/old.md".into(), "prompts/new.md".into()),
    ];
    fake.add_mr(mr);
    fake
}

fn forge(fake: &FakeGitLab) -> GitLabForge {
    GitLabForge::new(&fake.url, TOKEN)
        .unwrap()
        .with_retry_policy(ForgeRetryPolicy::fast())
}

fn repo() -> RepoId {
    RepoId {
        full_name: PATH.into(),
        project_id: Some(PID),
    }
}

fn user(id: u64, login: &str) -> UserRef {
    UserRef {
        id,
        login: login.into(),
    }
}

// ---- statuses ----------------------------------------------------------------------

#[tokio::test]
async fn set_status_posts_named_statuses_on_the_sha() {
    let fake = fake().await;
    let forge = forge(&fake);
    let long = "é".repeat(300);
    forge
        .set_status(
            &repo(),
            HEAD,
            "promptgate",
            StatusState::Pending,
            "running",
            None,
        )
        .await
        .unwrap();
    forge
        .set_status(
            &repo(),
            HEAD,
            "promptgate",
            StatusState::Success,
            &long,
            Some("https://pg.example/runs/1"),
        )
        .await
        .unwrap();
    forge
        .set_status(
            &repo(),
            HEAD,
            "promptgate/release-approval",
            StatusState::Failure,
            "needs_review",
            None,
        )
        .await
        .unwrap();
    forge
        .set_status(
            &repo(),
            BASE,
            "promptgate",
            StatusState::Error,
            "boom",
            None,
        )
        .await
        .unwrap();

    let statuses = fake.statuses();
    let seen: Vec<(&str, &str, &str)> = statuses
        .iter()
        .map(|s| (s.sha.as_str(), s.name.as_str(), s.state.as_str()))
        .collect();
    assert_eq!(
        seen,
        vec![
            (HEAD, "promptgate", "pending"),
            (HEAD, "promptgate", "success"),
            (HEAD, "promptgate/release-approval", "failed"),
            (BASE, "promptgate", "failed"),
        ]
    );
    let success = &statuses[1];
    let description = success.description.as_deref().unwrap();
    assert!(description.chars().count() <= 140, "{description}");
    assert!(description.len() <= 255);
    assert_eq!(
        success.target_url.as_deref(),
        Some("https://pg.example/runs/1")
    );
    assert_eq!(statuses[2].description.as_deref(), Some("needs_review"));
    assert!(fake.requests().iter().all(|r| r.method != "POST"
        || r.path == format!("/projects/{PID}/statuses/{HEAD}")
        || r.path == format!("/projects/{PID}/statuses/{BASE}")));
}

#[tokio::test]
async fn a_repeated_pending_status_is_not_an_error() {
    let fake = fake().await;
    let forge = forge(&fake);
    for _ in 0..2 {
        forge
            .set_status(
                &repo(),
                HEAD,
                "promptgate",
                StatusState::Pending,
                "queued",
                None,
            )
            .await
            .unwrap();
    }
    assert_eq!(fake.statuses().len(), 1);
    // Refused by GitLab (400), not retried.
    assert_eq!(fake.count("POST", "/projects/42/statuses/"), 2);
}

#[tokio::test]
async fn a_project_is_addressed_by_path_when_its_id_is_unknown() {
    let fake = fake().await;
    let forge = forge(&fake);
    let by_path = RepoId::new(PATH);
    forge
        .set_status(
            &by_path,
            HEAD,
            "promptgate",
            StatusState::Success,
            "ok",
            None,
        )
        .await
        .unwrap();
    assert_eq!(fake.statuses().len(), 1);
    assert_eq!(
        fake.requests().last().map(|r| r.path.clone()),
        Some(format!("/projects/acme%2Fml%2Fprompts/statuses/{HEAD}"))
    );
    let info = forge.pull_request(&by_path, MR).await.unwrap();
    assert_eq!(info.head_sha, HEAD);
}

// ---- notes -------------------------------------------------------------------------

#[tokio::test]
async fn upsert_creates_once_then_edits_in_place() {
    let fake = fake().await;
    fake.add_user(5, "alice");
    // Someone quoting the marker: not ours, never edited.
    let quoted = fake.add_note(PID, MR, 5, &format!("look: {MARKER}"));
    let forge = forge(&fake);

    let first = forge
        .upsert_comment(&repo(), MR, MARKER, "verdict: pending")
        .await
        .unwrap();
    let second = forge
        .upsert_comment(&repo(), MR, MARKER, "verdict: pass")
        .await
        .unwrap();
    assert_eq!(first.id, second.id);
    assert_eq!(
        second.url.as_deref(),
        Some(
            format!(
                "{}/{PATH}/-/merge_requests/{MR}#note_{}",
                fake.url, second.id
            )
            .as_str()
        )
    );

    let notes = fake.notes(PID, MR);
    let ours: Vec<_> = notes
        .iter()
        .filter(|n| n.author_id == fake.bot_id())
        .collect();
    assert_eq!(ours.len(), 1, "{notes:?}");
    assert_eq!(ours[0].id.to_string(), first.id);
    assert_eq!(ours[0].body, format!("{MARKER}\nverdict: pass"));
    assert_eq!(ours[0].edits, 1);
    let theirs = notes.iter().find(|n| n.id == quoted).unwrap();
    assert_eq!(theirs.edits, 0);
    assert_eq!(fake.count("PUT", "/projects/42/merge_requests/7/notes/"), 1);
    // The bot's identity is asked once.
    assert_eq!(
        fake.count("GET", "/user"),
        2,
        "one at build, one for the identity"
    );
}

#[tokio::test]
async fn an_unchanged_body_is_not_rewritten() {
    let fake = fake().await;
    let forge = forge(&fake);
    for _ in 0..2 {
        forge
            .upsert_comment(&repo(), MR, MARKER, &format!("{MARKER}\nsame"))
            .await
            .unwrap();
    }
    assert_eq!(fake.notes(PID, MR).len(), 1);
    assert_eq!(fake.count("PUT", "/projects/"), 0);
}

#[tokio::test]
async fn a_500_on_the_note_write_is_retried_without_a_duplicate() {
    let fake = fake().await;
    let forge = forge(&fake);
    fake.fail_next("POST", "/projects/42/merge_requests/7/notes", 1, 500);
    forge
        .upsert_comment(&repo(), MR, MARKER, "hello")
        .await
        .unwrap();
    assert_eq!(fake.notes(PID, MR).len(), 1);
    assert_eq!(fake.count("POST", "/projects/42/merge_requests/7/notes"), 2);
}

#[tokio::test]
async fn notes_are_found_across_pages() {
    let fake = fake().await;
    fake.add_user(5, "alice");
    let forge = forge(&fake);
    let ours = forge
        .upsert_comment(&repo(), MR, MARKER, "v1")
        .await
        .unwrap();
    for i in 0..5 {
        fake.add_note(PID, MR, 5, &format!("chatter {i}"));
    }
    fake.lock().max_per_page = Some(2);
    let again = forge
        .upsert_comment(&repo(), MR, MARKER, "v2")
        .await
        .unwrap();
    assert_eq!(ours.id, again.id);
    assert_eq!(fake.notes(PID, MR).len(), 6);
}

#[tokio::test]
async fn post_comment_creates_a_new_note_each_time() {
    let fake = fake().await;
    let forge = forge(&fake);
    let a = forge.post_comment(&repo(), MR, "one").await.unwrap();
    let b = forge.post_comment(&repo(), MR, "one").await.unwrap();
    assert_ne!(a.id, b.id);
    let bodies: Vec<String> = fake.notes(PID, MR).into_iter().map(|n| n.body).collect();
    assert_eq!(bodies, vec!["one", "one"]);
}

// ---- files -------------------------------------------------------------------------

#[tokio::test]
async fn read_file_returns_bytes_and_none_on_404() {
    let fake = fake().await;
    fake.add_file(PID, HEAD, "prompts/a b#1.md", b"hello \xff");
    let forge = forge(&fake);
    assert_eq!(
        forge
            .read_file(&repo(), HEAD, "prompts/a b#1.md")
            .await
            .unwrap(),
        Some(b"hello \xff".to_vec())
    );
    assert_eq!(
        forge.read_file(&repo(), HEAD, "missing.md").await.unwrap(),
        None
    );
    // The file exists at HEAD only.
    fake.add_file(PID, BASE, "other.md", b"x");
    assert_eq!(
        forge
            .read_file(&repo(), BASE, "prompts/a b#1.md")
            .await
            .unwrap(),
        None
    );
    // An unknown commit or project is an error, not "no file".
    let e = forge
        .read_file(&repo(), "3333333333333333333333333333333333333333", "x.md")
        .await
        .unwrap_err();
    assert!(e.message().contains("Commit Not Found"), "{e}");
    let e = forge
        .read_file(&RepoId::new("no/such"), HEAD, "x.md")
        .await
        .unwrap_err();
    assert!(e.message().contains("Project Not Found"), "{e}");
    assert!(forge
        .read_file(&repo(), HEAD, "../etc/passwd")
        .await
        .is_err());
}

#[tokio::test]
async fn list_files_returns_blobs_only_across_pages() {
    let fake = fake().await;
    for path in ["a.md", "prompts/b.md", "prompts/deep/c.md", "data/d.jsonl"] {
        fake.add_file(PID, HEAD, path, b"x");
    }
    fake.lock().max_per_page = Some(2);
    let forge = forge(&fake);
    let files = forge.list_files(&repo(), HEAD).await.unwrap();
    assert_eq!(
        files,
        vec!["a.md", "data/d.jsonl", "prompts/b.md", "prompts/deep/c.md"]
    );
    let tree_calls: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/repository/tree"))
        .collect();
    assert!(tree_calls.len() >= 4, "{tree_calls:?}");
    assert!(tree_calls.iter().all(|r| r.query.contains("recursive=true")
        && r.query.contains(&format!("ref={HEAD}"))
        && r.body.is_empty()));
}

#[tokio::test]
async fn changed_files_include_both_sides_of_a_rename_once() {
    let fake = fake().await;
    {
        let mut s = fake.lock();
        s.max_per_page = Some(1);
        s.mrs[0]
            .diffs
            .push(("prompts/a.md".into(), "prompts/a.md".into()));
    }
    let forge = forge(&fake);
    let files = forge.changed_files(&repo(), MR).await.unwrap();
    assert_eq!(
        files,
        vec!["prompts/a.md", "prompts/new.md", "prompts/old.md"]
    );
    assert_eq!(fake.count("GET", "/projects/42/merge_requests/7/diffs"), 3);
}

// ---- merge requests ----------------------------------------------------------------

#[tokio::test]
async fn pull_request_reads_refs_draft_and_forks() {
    let fake = fake().await;
    let forge = forge(&fake);
    let info = forge.pull_request(&repo(), MR).await.unwrap();
    assert_eq!(info.number, MR);
    assert_eq!(info.base_ref, "main");
    assert_eq!(info.base_sha, BASE);
    assert_eq!(info.head_sha, HEAD);
    assert_eq!(info.head_repo, PATH);
    assert_eq!(info.merge_base_sha, BASE);
    assert!(!info.is_fork);
    assert!(!info.draft);

    // The target moved on: policy at its tip (start_sha), the diff from the merge base.
    const TIP: &str = "9999999999999999999999999999999999999999";
    fake.mr_mut(MR, |m| m.start_sha = Some(TIP.into()));
    let info = forge.pull_request(&repo(), MR).await.unwrap();
    assert_eq!(
        (info.base_sha.as_str(), info.merge_base_sha.as_str()),
        (TIP, BASE)
    );
    fake.mr_mut(MR, |m| m.start_sha = None);

    // A draft from a fork.
    fake.add_project(77, "mallory/prompts");
    let mut fork = MergeRequest::new(PID, 8, BASE, "4444444444444444444444444444444444444444");
    fork.source_project_id = Some(77);
    fork.draft = true;
    fake.add_mr(fork);
    let info = forge.pull_request(&repo(), 8).await.unwrap();
    assert!(info.is_fork);
    assert!(info.draft);
    assert_eq!(info.head_repo, "mallory/prompts");

    // A fork that was deleted since.
    let mut gone = MergeRequest::new(PID, 9, BASE, HEAD);
    gone.source_project_id = Some(78);
    fake.add_mr(gone);
    let info = forge.pull_request(&repo(), 9).await.unwrap();
    assert!(info.is_fork);
    assert_eq!(info.head_repo, "");

    let e = forge.pull_request(&repo(), 404).await.unwrap_err();
    assert!(e.is_not_found() && !e.is_retryable(), "{e:?}");
}

#[tokio::test]
async fn a_fresh_merge_request_without_diff_refs_uses_the_target_head() {
    let fake = fake().await;
    fake.set_branch(PID, "release", "5555555555555555555555555555555555555555");
    let mut mr = MergeRequest::new(PID, 10, "ignored", HEAD);
    mr.diff_refs_ready = false;
    mr.target_branch = "release".into();
    fake.add_mr(mr);
    let forge = forge(&fake);
    let info = forge.pull_request(&repo(), 10).await.unwrap();
    assert_eq!(info.base_ref, "release");
    assert_eq!(info.base_sha, "5555555555555555555555555555555555555555");
    assert_eq!(info.head_sha, HEAD);
    assert_eq!(
        fake.count("GET", "/projects/42/repository/branches/release"),
        1
    );
}

#[tokio::test]
async fn pull_requests_for_a_sha_are_open_ones_at_that_head() {
    let fake = fake().await;
    let mut closed = MergeRequest::new(PID, 11, BASE, HEAD);
    closed.state = "closed".into();
    fake.add_mr(closed);
    let mut moved_on = MergeRequest::new(PID, 12, BASE, "6666666666666666666666666666666666666666");
    moved_on.previous_shas = vec![HEAD.into()];
    fake.add_mr(moved_on);
    fake.add_mr(MergeRequest::new(PID, 13, BASE, HEAD));
    let forge = forge(&fake);
    assert_eq!(
        forge.pull_requests_for_sha(&repo(), HEAD).await.unwrap(),
        vec![MR, 13]
    );
}

// ---- people ------------------------------------------------------------------------

#[tokio::test]
async fn permission_maps_access_levels_by_numeric_id() {
    let fake = fake().await;
    let forge = forge(&fake);
    for (id, level, expected) in [
        (20, 20, Permission::Read),
        (30, 30, Permission::Write),
        (40, 40, Permission::Maintain),
        (50, 50, Permission::Admin),
        (10, 10, Permission::Read),
    ] {
        fake.add_user(id, &format!("u{id}"));
        fake.set_member(PID, id, level);
        let got = forge
            .permission(&repo(), &user(id, &format!("u{id}")))
            .await
            .unwrap();
        assert_eq!(got, expected, "access level {level}");
    }
    assert!(forge
        .permission(&repo(), &user(30, "u30"))
        .await
        .unwrap()
        .can_write());
    // Not a member.
    assert_eq!(
        forge
            .permission(&repo(), &user(31, "nobody"))
            .await
            .unwrap(),
        Permission::None
    );
    // A blocked account keeps its membership row but no access.
    fake.set_user_state(40, "blocked");
    assert_eq!(
        forge.permission(&repo(), &user(40, "u40")).await.unwrap(),
        Permission::None
    );
    // A membership awaiting a seat is not one.
    fake.lock()
        .members
        .iter_mut()
        .filter(|(_, m)| m.user_id == 50)
        .for_each(|(_, m)| m.membership_state = "awaiting".into());
    assert_eq!(
        forge.permission(&repo(), &user(50, "u50")).await.unwrap(),
        Permission::None
    );
    assert!(fake
        .requests()
        .iter()
        .any(|r| r.path == "/projects/42/members/all/30"));
}

#[tokio::test]
async fn group_membership() {
    let fake = fake().await;
    fake.add_user(5, "alice");
    fake.add_user(6, "bob");
    fake.add_group_member("acme/reviewers", 5, 30);
    let forge = forge(&fake);
    assert!(forge
        .is_group_member(&repo(), "acme/reviewers", &user(5, "alice"))
        .await
        .unwrap());
    assert!(!forge
        .is_group_member(&repo(), "acme/reviewers", &user(6, "bob"))
        .await
        .unwrap());
    assert!(!forge
        .is_group_member(&repo(), "no/such-group", &user(5, "alice"))
        .await
        .unwrap());
    assert!(fake
        .requests()
        .iter()
        .any(|r| r.path == "/groups/acme%2Freviewers/members/all/5"));
    fake.set_user_state(5, "blocked");
    assert!(!forge
        .is_group_member(&repo(), "acme/reviewers", &user(5, "alice"))
        .await
        .unwrap());
    assert!(forge
        .is_group_member(&repo(), "", &user(5, "alice"))
        .await
        .is_err());
}

#[tokio::test]
async fn user_id_by_username() {
    let fake = fake().await;
    fake.add_user(5, "Alice");
    let forge = forge(&fake);
    assert_eq!(forge.user_id(&repo(), "alice").await.unwrap(), Some(5));
    assert_eq!(forge.user_id(&repo(), "@Alice").await.unwrap(), Some(5));
    assert_eq!(forge.user_id(&repo(), "carol").await.unwrap(), None);
    assert_eq!(forge.user_id(&repo(), "").await.unwrap(), None);
}

#[tokio::test]
async fn acknowledge_awards_eyes_once() {
    let fake = fake().await;
    fake.add_user(5, "alice");
    let note = fake.add_note(PID, MR, 5, "/promptgate run");
    let forge = forge(&fake);
    forge.acknowledge(&repo(), MR, note).await.unwrap();
    forge.acknowledge(&repo(), MR, note).await.unwrap();
    let awards = fake.awards();
    assert_eq!(awards.len(), 1);
    assert_eq!(awards[0].name, "eyes");
    assert_eq!(awards[0].note_id, note);
    assert_eq!(awards[0].user_id, fake.bot_id());
    assert!(forge.acknowledge(&repo(), MR, 123_456).await.is_err());
}

#[tokio::test]
async fn approve_is_bound_to_the_sha() {
    let fake = fake().await;
    let forge = forge(&fake);
    let e = forge
        .approve(&repo(), MR, BASE, "approved by promptgate")
        .await
        .unwrap_err();
    assert!(!e.is_retryable());
    assert_eq!(e.status(), Some(409));
    assert!(e.message().contains("moved"), "{e}");
    assert!(fake.approvals().is_empty());
    assert!(fake.notes(PID, MR).is_empty());

    forge
        .approve(&repo(), MR, HEAD, "approved by promptgate")
        .await
        .unwrap();
    // Approving again (GitLab answers 401) is not an error.
    forge.approve(&repo(), MR, HEAD, "").await.unwrap();
    let approvals = fake.approvals();
    assert_eq!(approvals.len(), 1);
    assert_eq!(approvals[0].sha, HEAD);
    assert_eq!(approvals[0].user_id, fake.bot_id());
    let notes = fake.notes(PID, MR);
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0].body, "approved by promptgate");
    assert!(fake
        .requests()
        .iter()
        .any(|r| r.path == "/projects/42/merge_requests/7/approve"
            && r.body.contains(&format!("sha={HEAD}"))));
}

// ---- retries and errors ------------------------------------------------------------

#[tokio::test]
async fn a_500_then_success_is_retried() {
    let fake = fake().await;
    let forge = forge(&fake);
    fake.fail_next("POST", "/projects/42/statuses/", 1, 500);
    forge
        .set_status(
            &repo(),
            HEAD,
            "promptgate",
            StatusState::Success,
            "ok",
            None,
        )
        .await
        .unwrap();
    assert_eq!(fake.statuses().len(), 1);
    assert_eq!(fake.count("POST", "/projects/42/statuses/"), 2);
}

#[tokio::test]
async fn a_persistent_500_gives_a_retryable_error() {
    let fake = fake().await;
    let forge = forge(&fake);
    fake.fail_next("GET", "/projects/42/merge_requests/7", 100, 500);
    let e = forge.pull_request(&repo(), MR).await.unwrap_err();
    assert!(e.is_retryable(), "{e:?}");
    assert_eq!(e.status(), Some(500));
    assert!(
        e.message()
            .starts_with("GitLab GET /projects/42/merge_requests/7: 500"),
        "{e}"
    );
    assert!(e.message().contains("gave up after 5 attempts"), "{e}");
    assert_eq!(fake.count("GET", "/projects/42/merge_requests/7"), 5);
}

#[tokio::test]
async fn a_429_waits_for_retry_after() {
    let fake = fake().await;
    let forge = forge(&fake);
    fake.fail_next_with(Failure {
        method: "GET".into(),
        path_prefix: "/projects/42/merge_requests/7/diffs".into(),
        times: 1,
        status: 429,
        body: r#"{"message":"Retry later"}"#.into(),
        headers: vec![("retry-after".into(), "1".into())],
        echo_token: false,
    });
    let started = Instant::now();
    let files = forge.changed_files(&repo(), MR).await.unwrap();
    assert_eq!(files.len(), 3);
    assert!(started.elapsed() >= Duration::from_secs(1));
}

#[tokio::test]
async fn a_403_is_permanent_and_names_the_call() {
    let fake = fake().await;
    let forge = forge(&fake);
    fake.fail_next_with(Failure {
        method: "POST".into(),
        path_prefix: "/projects/42/statuses/".into(),
        times: 1,
        status: 403,
        body: r#"{"message":"403 Forbidden"}"#.into(),
        headers: Vec::new(),
        echo_token: false,
    });
    let e = forge
        .set_status(
            &repo(),
            HEAD,
            "promptgate",
            StatusState::Success,
            "ok",
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(
        e,
        ForgeError::Permanent {
            status: Some(403),
            ..
        }
    ));
    assert_eq!(
        e.message(),
        format!("GitLab POST /projects/42/statuses/{HEAD}: 403 Forbidden")
    );
    assert_eq!(fake.count("POST", "/projects/42/statuses/"), 1);
}

#[tokio::test]
async fn errors_never_contain_the_token() {
    let fake = fake().await;
    let forge = forge(&fake);
    // A proxy that echoes the credential, after a 401 and after a 500.
    for status in [401, 500] {
        fake.fail_next_with(Failure {
            method: "GET".into(),
            path_prefix: "/projects/42/merge_requests/7".into(),
            times: 10,
            status,
            body: format!(r#"{{"message":"{status} token {{token}} rejected"}}"#),
            headers: Vec::new(),
            echo_token: true,
        });
        let e = forge.pull_request(&repo(), MR).await.unwrap_err();
        assert_eq!(e.status(), Some(status));
        assert!(!e.to_string().contains(TOKEN), "{e}");
        assert!(e.to_string().contains("[REDACTED]"), "{e}");
        assert!(!format!("{e:?}").contains(TOKEN));
        fake.lock().failures.clear();
    }
    // A token that does not look like one (no glpat- prefix) is scrubbed by value.
    let odd = "s3cr3t-odd-token-value";
    fake.lock().token = odd.into();
    let other = GitLabForge::new(&fake.url, odd)
        .unwrap()
        .with_retry_policy(ForgeRetryPolicy::fast());
    fake.fail_next_with(Failure {
        method: "GET".into(),
        path_prefix: "/projects/42/merge_requests/7".into(),
        times: 1,
        status: 401,
        body: r#"{"message":"401 Unauthorized: {token}"}"#.into(),
        headers: Vec::new(),
        echo_token: true,
    });
    let e = other.pull_request(&repo(), MR).await.unwrap_err();
    assert!(!e.to_string().contains(odd), "{e}");
    assert!(!format!("{other:?}").contains(odd));
}

#[tokio::test]
async fn a_wrong_token_is_a_permanent_401() {
    let fake = fake().await;
    let wrong = GitLabForge::new(&fake.url, "glpat-WRONGwrongWRONG")
        .unwrap()
        .with_retry_policy(ForgeRetryPolicy::fast());
    let e = wrong.pull_request(&repo(), MR).await.unwrap_err();
    assert!(!e.is_retryable(), "{e:?}");
    assert_eq!(e.status(), Some(401));
    assert!(!e.to_string().contains("WRONGwrong"), "{e}");
    assert_eq!(fake.count("GET", "/user"), 1);
}

// ---- the lazily built client -------------------------------------------------------

#[tokio::test]
async fn the_client_is_built_on_first_use_and_rebuilt_after_a_failure() {
    // Nothing listening: construction still succeeds, the call fails retryably.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let down = GitLabForge::new(&format!("http://{closed}"), TOKEN)
        .unwrap()
        .with_retry_policy(ForgeRetryPolicy {
            max_attempts: 2,
            ..ForgeRetryPolicy::fast()
        });
    let e = down.pull_request(&repo(), MR).await.unwrap_err();
    assert!(e.is_retryable(), "{e:?}");
    assert!(e.message().contains("connection error"), "{e}");

    // GitLab up but failing: nothing is sent by `new`, the build's token check fails,
    // and the next call builds the client again.
    let fake = fake().await;
    let forge = forge(&fake);
    assert!(fake.requests().is_empty());
    fake.fail_next("GET", "/user", 100, 503);
    let e = forge.pull_request(&repo(), MR).await.unwrap_err();
    assert!(e.is_retryable(), "{e:?}");
    assert_eq!(fake.count("GET", "/projects/"), 0);
    fake.lock().failures.clear();
    let info = forge.pull_request(&repo(), MR).await.unwrap();
    assert_eq!(info.head_sha, HEAD);
    forge.pull_request(&repo(), MR).await.unwrap();
    assert_eq!(fake.count("GET", "/user"), 6, "5 failed builds, then one");
}

#[test]
fn bad_settings_are_refused_at_construction() {
    assert!(GitLabForge::new("not a url", TOKEN).is_err());
    assert!(GitLabForge::new("https://gitlab.example.com", "").is_err());
    let forge = GitLabForge::new("https://gitlab.example.com/", TOKEN).unwrap();
    assert_eq!(forge.base_url(), "https://gitlab.example.com");
    assert_eq!(forge.kind(), ForgeKind::Gitlab);
}

// ---- issues (tickets) --------------------------------------------------------------

const TICKET: &str = "<!-- promptgate:ticket:billing/a:hallucination -->";
const ISSUES: &str = "/projects/42/issues";

fn labels() -> Vec<String> {
    vec!["promptgate".into(), "hallucination".into()]
}

/// Requests of `method` to exactly `path`.
fn exactly(fake: &FakeGitLab, method: &str, path: &str) -> Vec<common::gitlab::Logged> {
    fake.requests()
        .into_iter()
        .filter(|r| r.method == method && r.path == path)
        .collect()
}

#[tokio::test]
async fn an_issue_is_opened_found_by_its_marker_noted_on_and_seen_closed() {
    let fake = fake().await;
    fake.add_user(5, "alice");
    // Someone else's issue quoting the marker is never taken for ours.
    let quoted = fake.add_issue(
        PID,
        5,
        "why this note?",
        &format!("the bot wrote {TICKET}"),
        &["promptgate", "hallucination"],
    );
    let forge = forge(&fake);

    let opened = forge
        .open_issue(
            &repo(),
            "Hallucination in billing/a",
            "The model invented a refund policy.",
            &labels(),
            TICKET,
        )
        .await
        .unwrap();
    assert_eq!(opened.number, quoted + 1, "iids count per project");
    assert_eq!(
        opened.url,
        format!(
            "https://gitlab.example.com/{PATH}/-/issues/{}",
            opened.number
        )
    );
    assert!(opened.open);
    let issues = fake.issues(PID);
    let issue = issues.iter().find(|i| i.iid == opened.number).unwrap();
    assert_eq!(issue.title, "Hallucination in billing/a");
    assert_eq!(
        issue.description,
        format!("{TICKET}\nThe model invented a refund policy."),
        "the marker is prepended"
    );
    assert_eq!(issue.labels, labels());
    assert_eq!(issue.author_id, fake.bot_id());
    assert_eq!(issue.state, "opened");

    let found = forge
        .find_issue(&repo(), TICKET, &labels(), 100)
        .await
        .unwrap();
    assert_eq!(found.as_ref(), Some(&opened));
    // Every state, newest first, only the bot's, narrowed by the labels.
    let list = exactly(&fake, "GET", ISSUES);
    let query = &list.last().unwrap().query;
    for part in [
        "state=all",
        "order_by=created_at",
        "sort=desc",
        "author_id=99",
        "labels=promptgate%2Challucination",
        "per_page=100",
        "page=1",
    ] {
        assert!(query.split('&').any(|p| p == part), "{part} in {query}");
    }
    let other = "<!-- promptgate:ticket:billing/b:hallucination -->";
    assert_eq!(
        forge.find_issue(&repo(), other, &[], 100).await.unwrap(),
        None
    );

    forge
        .comment_on_issue(&repo(), opened.number, "seen again in !123 at abc1234")
        .await
        .unwrap();
    let notes = fake.issue_notes(PID, opened.number);
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0].body, "seen again in !123 at abc1234");
    assert_eq!(notes[0].author_id, fake.bot_id());
    assert!(fake.issue_notes(PID, quoted).is_empty());
    assert!(
        fake.notes(PID, MR).is_empty(),
        "merge request notes untouched"
    );

    fake.close_issue(PID, opened.number);
    let found = forge
        .find_issue(&repo(), TICKET, &labels(), 100)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.number, opened.number);
    assert!(!found.open, "a closed issue is still found, as closed");
    let one = forge.issue(&repo(), opened.number).await.unwrap().unwrap();
    assert_eq!((one.number, one.open), (opened.number, false));
    assert_eq!(one.url, opened.url);
    assert_eq!(forge.issue(&repo(), 999).await.unwrap(), None);
    // A missing project is an error, not a missing issue.
    let gone = RepoId {
        full_name: "acme/gone".into(),
        project_id: Some(4242),
    };
    let e = forge.issue(&gone, 1).await.unwrap_err();
    assert_eq!(e.status(), Some(404));

    assert_eq!(fake.issues(PID).len(), 2);
    assert_eq!(exactly(&fake, "POST", ISSUES).len(), 1);
}

#[tokio::test]
async fn the_issue_scan_reads_pages_and_stops_at_the_limit() {
    let fake = fake().await;
    let bot = fake.bot_id();
    // Ours is the oldest, behind 150 newer issues of the bot: page 2.
    let ours = fake.add_issue(PID, bot, "ticket", &format!("{TICKET}\nbody"), &[]);
    for i in 0..150 {
        fake.add_issue(PID, bot, &format!("issue {i}"), "unrelated", &[]);
    }
    let forge = forge(&fake);

    let found = forge.find_issue(&repo(), TICKET, &[], 500).await.unwrap();
    assert_eq!(found.map(|i| i.number), Some(ours));
    let pages = exactly(&fake, "GET", ISSUES);
    assert_eq!(pages.len(), 2);
    assert!(pages[1].query.contains("page=2"), "{:?}", pages[1].query);

    fake.lock().requests.clear();
    assert_eq!(
        forge.find_issue(&repo(), TICKET, &[], 120).await.unwrap(),
        None
    );
    assert_eq!(exactly(&fake, "GET", ISSUES).len(), 2);
    fake.lock().requests.clear();
    assert_eq!(
        forge.find_issue(&repo(), TICKET, &[], 50).await.unwrap(),
        None
    );
    let pages = exactly(&fake, "GET", ISSUES);
    assert_eq!(pages.len(), 1);
    assert!(
        pages[0].query.contains("per_page=50"),
        "{:?}",
        pages[0].query
    );
}

#[tokio::test]
async fn issue_calls_retry_a_502_and_a_retried_open_does_not_duplicate() {
    let fake = fake().await;
    let forge = forge(&fake);

    fake.fail_next("POST", ISSUES, 1, 502);
    let opened = forge
        .open_issue(&repo(), "Injection in billing", "body", &labels(), TICKET)
        .await
        .unwrap();
    assert_eq!(fake.issues(PID).len(), 1);
    assert_eq!(exactly(&fake, "POST", ISSUES).len(), 2);
    // Before writing again the retry looked for what the failed write may have made.
    assert_eq!(exactly(&fake, "GET", ISSUES).len(), 1);

    fake.fail_next("GET", ISSUES, 1, 502);
    let found = forge
        .find_issue(&repo(), TICKET, &labels(), 100)
        .await
        .unwrap();
    assert_eq!(found.as_ref(), Some(&opened));

    let one = format!("{ISSUES}/{}", opened.number);
    fake.fail_next("GET", &one, 1, 503);
    assert!(forge
        .issue(&repo(), opened.number)
        .await
        .unwrap()
        .is_some_and(|i| i.open));

    let notes = format!("{one}/notes");
    fake.fail_next("POST", &notes, 1, 502);
    forge
        .comment_on_issue(&repo(), opened.number, "seen again")
        .await
        .unwrap();
    assert_eq!(fake.issue_notes(PID, opened.number).len(), 1);
    assert_eq!(exactly(&fake, "POST", &notes).len(), 2);

    // A write that went through behind a 502: the retry finds the issue and does not
    // open a second one (simulated by an issue already carrying the marker).
    let other = "<!-- promptgate:ticket:billing/b:injection -->";
    let made = fake.add_issue(PID, fake.bot_id(), "Injection in billing/b", other, &[]);
    fake.fail_next("POST", ISSUES, 1, 502);
    let again = forge
        .open_issue(&repo(), "Injection in billing/b", "body", &labels(), other)
        .await
        .unwrap();
    assert_eq!(again.number, made);
    assert_eq!(fake.issues(PID).len(), 2);

    // A 400 is permanent: one attempt.
    fake.lock().requests.clear();
    fake.fail_next("POST", ISSUES, 1, 400);
    let e = forge
        .open_issue(&repo(), "t", "b", &[], "<!-- promptgate:ticket:c -->")
        .await
        .unwrap_err();
    assert!(!e.is_retryable());
    assert_eq!(exactly(&fake, "POST", ISSUES).len(), 1);

    assert!(forge.find_issue(&repo(), "", &[], 10).await.is_err());
}
