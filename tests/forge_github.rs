//! The GitHub forge client against the stateful fake GitHub in `common::github`: the
//! tests assert on what GitHub would hold, not on which mock was hit.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::github::*;
use promptgate::forge::{
    Forge, ForgeError, ForgeRetryPolicy, ForgeSource, GitHubAuth, GitHubForge, StatusState,
};
use promptgate::source::{Rev, Source};
use serde_json::{json, Value};

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
async fn the_latest_status_of_a_context_is_read_back() {
    let h = Harness::start().await;
    let forge = h.forge();
    assert_eq!(
        forge
            .latest_status(&repo(), HEAD_SHA, "promptgate")
            .await
            .unwrap(),
        None
    );
    for (context, state, text) in [
        ("promptgate", StatusState::Pending, "evaluating"),
        (
            "promptgate",
            StatusState::Failure,
            "billing: assertions 0.50 < 1.00",
        ),
        (
            "promptgate/release-approval",
            StatusState::Pending,
            "waiting",
        ),
    ] {
        forge
            .set_status(&repo(), HEAD_SHA, context, state, text, None)
            .await
            .unwrap();
    }
    assert_eq!(
        forge
            .latest_status(&repo(), HEAD_SHA, "promptgate")
            .await
            .unwrap(),
        Some((
            StatusState::Failure,
            "billing: assertions 0.50 < 1.00".to_string()
        ))
    );
    assert_eq!(
        forge
            .latest_status(&repo(), HEAD_SHA, "promptgate/release-approval")
            .await
            .unwrap()
            .map(|s| s.0),
        Some(StatusState::Pending)
    );
    assert_eq!(
        forge
            .latest_status(&repo(), "0".repeat(40).as_str(), "promptgate")
            .await
            .unwrap(),
        None
    );
}

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

#[tokio::test]
async fn github_app_exchanges_its_jwt_for_a_cached_installation_token() {
    let pem = rsa_key_pem();
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

// ---- permissions, approvals, check runs --------------------------------------------

fn user(login: &str, id: u64) -> promptgate::event::UserRef {
    promptgate::event::UserRef {
        id,
        login: login.into(),
    }
}

#[tokio::test]
async fn permission_uses_role_name_and_checks_the_numeric_id() {
    use promptgate::forge::Permission;
    let h = Harness::start().await;
    h.user("maint", 11, "maintain");
    h.user("tri", 12, "triage");
    h.user("outsider", 13, "none");
    let forge = h.forge();
    let p = |login: &'static str, id: u64| {
        let forge = &forge;
        async move { forge.permission(&repo(), &user(login, id)).await.unwrap() }
    };
    assert_eq!(p("maint", 11).await, Permission::Maintain);
    assert!(p("maint", 11).await.can_write());
    assert_eq!(p("tri", 12).await, Permission::Triage);
    assert!(!p("tri", 12).await.can_write());
    assert_eq!(p("outsider", 13).await, Permission::None);
    // The login now belongs to another account than the one that commented.
    assert_eq!(p("maint", 999).await, Permission::None);
    // No such user at all.
    assert_eq!(p("ghost", 14).await, Permission::None);
}

#[tokio::test]
async fn team_membership_is_by_login_then_bound_to_the_id() {
    let h = Harness::start().await;
    h.user("alice", 21, "write");
    h.user("bob", 22, "write");
    h.state()
        .teams
        .insert("acme/ml-leads".into(), vec!["alice".into()]);
    let forge = h.forge();
    assert!(forge
        .is_group_member(&repo(), "acme/ml-leads", &user("alice", 21))
        .await
        .unwrap());
    assert!(!forge
        .is_group_member(&repo(), "acme/ml-leads", &user("bob", 22))
        .await
        .unwrap());
    assert!(!forge
        .is_group_member(&repo(), "acme/ml-leads", &user("alice", 99))
        .await
        .unwrap());
    let err = forge
        .is_group_member(&repo(), "ml-leads", &user("alice", 21))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("@org/team-slug"), "{err}");
    assert_eq!(forge.user_id(&repo(), "bob").await.unwrap(), Some(22));
    assert_eq!(forge.user_id(&repo(), "nobody").await.unwrap(), None);
}

#[tokio::test]
async fn acknowledge_reacts_with_eyes_and_approve_posts_a_review_on_the_sha() {
    let h = Harness::start().await;
    let id = h.user_comment(PR, "alice", "/promptgate approve");
    let forge = h.forge();
    forge.acknowledge(&repo(), PR, id).await.unwrap();
    forge
        .approve(&repo(), PR, HEAD_SHA, "approved by @alice")
        .await
        .unwrap();
    let st = h.state();
    assert_eq!(st.reactions, vec![(id, "eyes".to_string())]);
    assert_eq!(st.reviews.len(), 1);
    assert_eq!(st.reviews[0]["event"], "APPROVE");
    assert_eq!(st.reviews[0]["commit_id"], HEAD_SHA);
    assert_eq!(st.reviews[0]["number"], PR);
}

#[tokio::test]
async fn check_runs_are_only_posted_as_an_app_and_updated_in_place() {
    use promptgate::forge::CheckRun;
    let h = Harness::start().await;
    let check = |state| CheckRun {
        name: "promptgate".into(),
        head_sha: HEAD_SHA.into(),
        state,
        title: "evaluating".into(),
        summary: "| metric | base | head |".into(),
        details_url: Some("http://bot.example/runs/1".into()),
    };
    // A token cannot write check runs: nothing is sent.
    h.forge()
        .post_check_run(&repo(), &check(StatusState::Pending))
        .await
        .unwrap();
    assert!(h.state().check_runs.is_empty());
    assert_eq!(h.forge().app_id(), None);

    let pem = rsa_key_pem();
    let app = GitHubForge::new(
        &h.api_url(),
        GitHubAuth::App {
            app_id: 99,
            private_key_pem: pem,
        },
    )
    .unwrap()
    .with_retry_policy(ForgeRetryPolicy::fast());
    assert_eq!(app.app_id(), Some(99));
    app.post_check_run(&repo(), &check(StatusState::Pending))
        .await
        .unwrap();
    app.post_check_run(&repo(), &check(StatusState::Failure))
        .await
        .unwrap();
    let st = h.state();
    assert_eq!(st.check_runs.len(), 1, "{:?}", st.check_runs);
    let run = &st.check_runs[0];
    assert_eq!(run["status"], "completed");
    assert_eq!(run["conclusion"], "failure");
    assert_eq!(run["output"]["summary"], "| metric | base | head |");
    assert_eq!(run["details_url"], "http://bot.example/runs/1");
}

// ---- issues (tickets) ------------------------------------------------------------

const TICKET: &str = "<!-- promptgate:ticket:billing/a:hallucination -->";

fn labels() -> Vec<String> {
    vec!["promptgate".into(), "hallucination".into()]
}

fn issues_path() -> String {
    format!("/repos/{REPO}/issues")
}

#[tokio::test]
async fn an_issue_is_opened_found_by_its_marker_commented_on_and_seen_closed() {
    let h = Harness::start().await;
    // Someone else's issue quoting the marker is never taken for ours.
    let quoted = h.add_issue(
        "octocat",
        "why this comment?",
        &format!("the bot wrote {TICKET}"),
        &["promptgate", "hallucination"],
    );
    let forge = h.forge();

    let opened = forge
        .open_issue(
            &repo(),
            "  Hallucination in billing/a  ",
            "The model invented a refund policy.",
            &labels(),
            TICKET,
        )
        .await
        .unwrap();
    assert_eq!(opened.number, quoted + 1);
    assert_eq!(
        opened.url,
        format!("https://github.com/{REPO}/issues/{}", opened.number)
    );
    assert!(opened.open);
    {
        let st = h.state();
        let issue = st.issue(opened.number).unwrap();
        assert_eq!(issue.title, "Hallucination in billing/a");
        assert_eq!(
            issue.body,
            format!("{TICKET}\nThe model invented a refund policy."),
            "the marker is prepended"
        );
        assert_eq!(issue.labels, labels());
        assert_eq!(issue.login, BOT);
        assert_eq!(issue.state, "open");
    }

    let found = forge
        .find_issue(&repo(), TICKET, &labels(), 100)
        .await
        .unwrap();
    assert_eq!(found.as_ref(), Some(&opened));
    // The scan asks for every state, newest first, narrowed by the labels.
    {
        let st = h.state();
        let list = st
            .requests
            .iter()
            .rfind(|r| r.method == "GET" && r.path == issues_path())
            .unwrap();
        assert_eq!(
            list.query,
            "state=all&sort=created&direction=desc&labels=promptgate%2Challucination\
             &per_page=100&page=1"
        );
    }
    let other = "<!-- promptgate:ticket:billing/b:hallucination -->";
    assert_eq!(
        forge.find_issue(&repo(), other, &[], 100).await.unwrap(),
        None
    );

    forge
        .comment_on_issue(&repo(), opened.number, "seen again in #123 at abc1234")
        .await
        .unwrap();
    let comments = h.issue_comments(opened.number);
    assert_eq!(comments.len(), 1);
    assert_eq!(comments[0].body, "seen again in #123 at abc1234");
    assert_eq!(comments[0].login, BOT);
    assert!(h.issue_comments(quoted).is_empty());
    // PR comments are untouched.
    assert!(h.state().ours().is_empty());

    h.close_issue(opened.number);
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

    assert_eq!(h.issues().len(), 2);
    assert_eq!(h.state().count("POST", &issues_path()), 1);
}

#[tokio::test]
async fn the_scan_skips_pull_requests_reads_pages_and_stops_at_the_limit() {
    let h = Harness::start().await;
    // Ours is the oldest, behind 150 newer issues: page 2 of the listing.
    let ours = h.add_issue(BOT, "ticket", &format!("{TICKET}\nbody"), &[]);
    for i in 0..150 {
        h.add_issue("octocat", &format!("issue {i}"), "unrelated", &[]);
    }
    // The newest item is a pull request of ours whose body carries the marker: the
    // issues API lists it, and it must be skipped.
    let pr = h.state().next_issue_number();
    h.state().pulls = vec![json!({
        "number": pr,
        "state": "open",
        "title": "a PR quoting the ticket",
        "body": format!("{TICKET}\nfixes it"),
        "user": {"login": BOT, "id": 4242},
        "head": {"sha": HEAD_SHA, "ref": "fix", "repo": {"full_name": REPO}},
        "base": {"sha": BASE_SHA, "ref": "main", "repo": {"full_name": REPO}},
    })];
    let forge = h.forge();

    let found = forge.find_issue(&repo(), TICKET, &[], 500).await.unwrap();
    assert_eq!(found.map(|i| i.number), Some(ours));
    let pages: Vec<String> = h
        .state()
        .requests
        .iter()
        .filter(|r| r.path == issues_path())
        .map(|r| r.query.clone())
        .collect();
    assert_eq!(pages.len(), 2, "{pages:?}");
    assert!(pages[1].ends_with("per_page=100&page=2"), "{pages:?}");

    // At most `limit` items are read: ours is beyond the first 120.
    h.state().requests.clear();
    assert_eq!(
        forge.find_issue(&repo(), TICKET, &[], 120).await.unwrap(),
        None
    );
    let pages = h.state().count("GET", &issues_path());
    assert_eq!(pages, 2);
    h.state().requests.clear();
    assert_eq!(
        forge.find_issue(&repo(), TICKET, &[], 50).await.unwrap(),
        None
    );
    assert_eq!(h.state().count("GET", &issues_path()), 1);
    assert!(h
        .state()
        .requests
        .iter()
        .all(|r| !r.query.contains("page=2")));

    // A pull request is not an issue when asked for by number either.
    assert_eq!(forge.issue(&repo(), pr).await.unwrap(), None);
}

#[tokio::test]
async fn issue_calls_retry_a_502_and_a_retried_open_does_not_duplicate() {
    let h = Harness::start().await;
    let forge = h.forge();

    h.fail(
        "POST",
        &issues_path(),
        1,
        502,
        "<html>502 Bad Gateway</html>",
    );
    let opened = forge
        .open_issue(&repo(), "Injection in billing", "body", &labels(), TICKET)
        .await
        .unwrap();
    assert_eq!(h.issues().len(), 1);
    assert_eq!(h.state().count("POST", &issues_path()), 2);
    // Before writing again the retry looked for what the failed write may have made.
    assert_eq!(h.state().count("GET", &issues_path()), 1);

    h.fail("GET", &issues_path(), 1, 502, "");
    let found = forge
        .find_issue(&repo(), TICKET, &labels(), 100)
        .await
        .unwrap();
    assert_eq!(found.as_ref(), Some(&opened));

    let one = format!("{}/{}", issues_path(), opened.number);
    h.fail("GET", &one, 1, 503, "");
    assert!(forge
        .issue(&repo(), opened.number)
        .await
        .unwrap()
        .is_some_and(|i| i.open));

    let comments = format!("{}/comments", one);
    h.fail("POST", &comments, 1, 502, "");
    forge
        .comment_on_issue(&repo(), opened.number, "seen again")
        .await
        .unwrap();
    assert_eq!(h.issue_comments(opened.number).len(), 1);
    assert_eq!(h.state().count("POST", &comments), 2);

    // A write that went through behind a 502: the retry finds the issue and does not
    // open a second one (simulated by an issue already carrying the marker).
    let other = "<!-- promptgate:ticket:billing/b:injection -->";
    let made = h.add_issue(BOT, "Injection in billing/b", other, &["promptgate"]);
    h.fail("POST", &issues_path(), 1, 502, "");
    let again = forge
        .open_issue(&repo(), "Injection in billing/b", "body", &labels(), other)
        .await
        .unwrap();
    assert_eq!(again.number, made);
    assert_eq!(h.issues().len(), 2);

    // A 422 is permanent: one attempt.
    h.state().requests.clear();
    h.fail("POST", &issues_path(), 1, 422, &validation_failed_body());
    let err = forge
        .open_issue(&repo(), "t", "b", &[], "<!-- promptgate:ticket:c -->")
        .await
        .unwrap_err();
    assert!(!err.is_retryable());
    assert_eq!(err.status(), Some(422));
    assert_eq!(h.state().count("POST", &issues_path()), 1);

    // An empty marker would match any issue.
    assert!(forge.find_issue(&repo(), " ", &[], 10).await.is_err());
    assert!(forge.open_issue(&repo(), "t", "b", &[], "").await.is_err());
}
