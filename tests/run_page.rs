//! The run page, its JSON and the run index through the real service: a published PR
//! delivery runs the real pipeline against the fake GitHub and an echoing model, then
//! the pages are fetched over HTTP and opened in headless Chromium (installed by
//! scripts/test.sh; without it these tests fail, they do not skip).

mod common;

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;

use base64::Engine;
use common::echo::{model, Echo};
use common::github::{Harness, PrFile};
use common::service::{db_path, settings, wait_until, Service};
use promptgate::event::ForgeKind;
use promptgate::forge::Forge;
use serde_json::json;

const SECRET: &str = "run-page-webhook-secret";
/// What `webhook.pull_request.opened.octokit.json` is about.
const REPO: &str = "Codertocat/Hello-World";
const BASE: &str = "f95f852bd8fca8fcc58a9a2d6c842781e32a215e";
const HEAD: &str = "ec26c3e57ca3a959ca5aad62de7213c562f8c821";
const NEXT_HEAD: &str = "4444444444444444444444444444444444444444";
const WEB_USER: (&str, &str) = ("alice", "s3cret");
const PROXY_HEADER: &str = "X-Forwarded-User";

/// Three cases asserting "invoice". The head prompt drops the word, so `a` and `b`
/// regress; `c` carries it in its variable and still passes.
const DATASET: &str = r#"{"id": "a", "vars": {"n": "1"}, "assert": [{"type": "icontains", "value": "invoice"}]}
{"id": "b", "vars": {"n": "2"}, "assert": [{"type": "icontains", "value": "invoice"}]}
{"id": "c", "vars": {"n": "invoice 3"}, "assert": [{"type": "icontains", "value": "invoice"}]}
"#;

/// The files of one revision, the user prompt as given.
fn revision(model_url: &str, prompt: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            ".promptgate.yml",
            "version: 1\nsuites:\n  billing:\n    prompts: { user: prompts/user.j2 }\n    \
             model: models/m.yaml\n    dataset: evals/b.jsonl\n    metrics:\n      assertions: { min: 1.0 }\n"
                .to_string(),
        ),
        (
            "models/m.yaml",
            format!("provider: openai\nmodel: chat\nbase_url: {model_url}\n"),
        ),
        ("evals/b.jsonl", DATASET.to_string()),
        ("prompts/user.j2", prompt.to_string()),
    ]
}

/// PR 2 of the fake GitHub from BASE to `head`, whose prompt is `head_prompt`.
fn open_pr(h: &Harness, model_url: &str, head: &str, head_prompt: &str) {
    for (sha, prompt) in [(BASE, "Explain invoice {{ n }}."), (head, head_prompt)] {
        for (path, text) in revision(model_url, prompt) {
            h.put_file(sha, path, text.as_bytes());
        }
    }
    let mut st = h.state();
    st.repo = REPO.to_string();
    st.pr_files = vec![PrFile {
        status: "modified",
        filename: "prompts/user.j2".into(),
        previous: None,
    }];
    st.pulls = vec![json!({
        "number": 2, "state": "open", "draft": false,
        "base": {"ref": "main", "sha": BASE, "repo": {"full_name": REPO}},
        "head": {"ref": "feature", "sha": head, "repo": {"full_name": REPO}},
    })];
}

fn fixture(rel: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{rel}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

async fn start(h: &Harness, db: &Path) -> Service {
    let forge: Arc<dyn Forge> = Arc::new(h.forge());
    let users = format!("{}:{}", WEB_USER.0, WEB_USER.1);
    let s = settings(&[
        ("PROMPTGATE_GITHUB_TOKEN", common::github::TOKEN),
        ("PROMPTGATE_GITHUB_WEBHOOK_SECRET", SECRET),
        ("PROMPTGATE_PUBLIC_URL", "http://bot.example"),
        ("PROMPTGATE_WEB_USERS", &users),
        ("PROMPTGATE_WEB_AUTH_HEADER", PROXY_HEADER),
    ]);
    Service::with_bot(s, db, ForgeKind::Github, forge).await
}

/// The signed link of the final `promptgate` status on `sha`, as a path.
async fn final_link(h: &Harness, sha: &str) -> String {
    let done = || {
        h.state()
            .statuses
            .iter()
            .rfind(|s| s.context == "promptgate" && s.sha == sha && s.state != "pending")
            .and_then(|s| s.target_url.clone())
    };
    wait_until(|| async { done().is_some() }).await;
    done()
        .unwrap_or_default()
        .trim_start_matches("http://bot.example")
        .to_string()
}

/// A run of PR 2 at HEAD where `a` and `b` regress: the service, its page link.
async fn regressed_run(h: &Harness, m: &wiremock::MockServer, db: &Path) -> (Service, String) {
    open_pr(
        h,
        &format!("{}/v1", m.uri()),
        HEAD,
        "Explain the bill {{ n }}.",
    );
    let svc = start(h, db).await;
    let opened = fixture("github/webhook.pull_request.opened.octokit.json");
    assert_eq!(
        svc.github("pull_request", "rp-1", SECRET, &opened).await,
        202
    );
    let link = final_link(h, HEAD).await;
    assert!(
        link.starts_with("/runs/") && link.contains("?exp="),
        "{link}"
    );
    (svc, link)
}

/// minijinja writes `/` as `&#x2f;`; the tests read the text as a browser would.
fn unslash(html: &str) -> String {
    html.replace("&#x2f;", "/")
}

fn count(html: &str, needle: &str) -> usize {
    html.matches(needle).count()
}

/// `/runs/ID?exp=…&sig=…` → `/runs/ID.json?exp=…&sig=…`.
fn json_link(link: &str) -> String {
    link.replacen('?', ".json?", 1)
}

#[tokio::test]
async fn the_page_shows_both_sides_and_a_diff_and_filters_on_the_server() {
    let h = Harness::start().await;
    let m = model(Echo::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let (svc, link) = regressed_run(&h, &m, &db_path(&dir)).await;

    let r = svc
        .http
        .get(format!("{}{link}", svc.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let headers = r.headers().clone();
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert!(headers["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("script-src 'sha256-"));
    let page = unslash(&r.text().await.unwrap());
    // Three cases; `a` regressed: base and head outputs side by side, the words that
    // changed marked.
    assert_eq!(count(&page, "<article class=\"case\""), 3, "{page}");
    assert!(page.contains("Explain <del>invoice</del> 1."), "{page}");
    assert!(page.contains("Explain <ins>the bill</ins> 1."), "{page}");
    assert!(page.contains(r#"<span class="flag regressed">regressed</span>"#));
    assert!(
        page.contains("show=") && page.contains("regressed (2)"),
        "{page}"
    );
    // Scores at base and head with the delta; the case's failed assertion.
    assert!(
        page.contains(r#"<td class="n worse">-1.000</td>"#),
        "{page}"
    );
    assert!(page.contains("❌ <strong>assertions</strong>"), "{page}");
    // The suite metric was evaluated: a result; nothing reads "0 of 0".
    assert!(!page.contains("0 of 0"), "{page}");
    assert!(page.contains("ms</td>"), "duration in whole ms: {page}");

    // Server-side filters: the same link with a query.
    let (code, regressed) = svc.get(&format!("{link}&show=regressed")).await;
    assert_eq!(code, 200);
    let regressed = unslash(&regressed);
    assert_eq!(count(&regressed, "<article class=\"case\""), 2);
    assert!(regressed.contains(r#"data-case="a""#) && regressed.contains(r#"data-case="b""#));
    assert!(!regressed.contains(r#"data-case="c""#));
    assert!(regressed.contains(r#"data-complete="false""#));
    // The filter form keeps the grant, so "Apply" stays signed in.
    let sig = link.split("sig=").nth(1).unwrap();
    assert!(
        regressed.contains(&format!(r#"name="sig" value="{sig}""#)),
        "{regressed}"
    );
    let (_, searched) = svc.get(&format!("{link}&q=INVOICE+3")).await;
    assert_eq!(count(&searched, "<article class=\"case\""), 1);
    assert!(searched.contains(r#"data-case="c""#));
    let (_, fixed) = svc.get(&format!("{link}&show=fixed&sort=delta")).await;
    assert_eq!(count(&fixed, "<article class=\"case\""), 0);
    assert!(fixed.contains("No case matches these filters."));
    let (_, by_suite) = svc
        .get(&format!("{link}&suite=nope&metric=assertions"))
        .await;
    assert_eq!(count(&by_suite, "<article class=\"case\""), 0);
    let (_, by_metric) = svc
        .get(&format!("{link}&suite=billing&metric=assertions"))
        .await;
    assert_eq!(count(&by_metric, "<article class=\"case\""), 3);
    svc.stop().await;
}

#[tokio::test]
async fn the_json_is_the_stored_report_behind_the_same_access() {
    let h = Harness::start().await;
    let m = model(Echo::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let (svc, link) = regressed_run(&h, &m, &db_path(&dir)).await;
    let stored = svc.text("SELECT report_json FROM runs WHERE id = 1").await;
    let public_id = svc.text("SELECT public_id FROM runs WHERE id = 1").await;

    let r = svc
        .http
        .get(format!("{}{}", svc.url, json_link(&link)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(
        r.text().await.unwrap(),
        stored,
        "byte-equal to runs.report_json"
    );
    // The page links to it with the same grant.
    let (_, page) = svc.get(&link).await;
    let sig = link.split("sig=").nth(1).unwrap();
    assert!(unslash(&page).contains(&format!("{public_id}.json?exp=")) && page.contains(sig));

    // Without access: 401 for the page, the JSON and the index; the row number is no run.
    for path in [
        format!("/runs/{public_id}"),
        format!("/runs/{public_id}.json"),
        "/runs".to_string(),
    ] {
        assert_eq!(svc.get(&path).await.0, 401, "{path}");
        assert_eq!(
            svc.get_with(&path, PROXY_HEADER, " ").await.0,
            401,
            "{path}"
        );
    }
    assert_eq!(svc.get("/runs/1.json").await.0, 404);
    // Another run's signature does not open this run's JSON; a tampered one neither.
    let other = svc.state.links.url(
        "",
        "00000000000000000000000000000000",
        std::time::SystemTime::now(),
    );
    let other_grant = other.split_once('?').unwrap().1;
    assert_eq!(
        svc.get(&format!("/runs/{public_id}.json?{other_grant}"))
            .await
            .0,
        401
    );
    let tampered = json_link(&link).replace("sig=", "sig=A");
    assert_eq!(svc.get(&tampered).await.0, 401);
    // A web user or the proxy's user reads it without a link.
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", WEB_USER.0, WEB_USER.1))
    );
    let (code, body) = svc
        .get_with(&format!("/runs/{public_id}.json"), "authorization", &basic)
        .await;
    assert_eq!((code, body.as_str()), (200, stored.as_str()));
    let (code, _) = svc
        .get_with(&format!("/runs/{public_id}"), PROXY_HEADER, "bob")
        .await;
    assert_eq!(code, 200);
    svc.stop().await;
}

#[tokio::test]
async fn the_index_lists_runs_newest_first_a_page_at_a_time() {
    let h = Harness::start().await;
    let m = model(Echo::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let (svc, _) = regressed_run(&h, &m, &db_path(&dir)).await;
    // A push: a second run of the PR, newer.
    open_pr(
        &h,
        &format!("{}/v1", m.uri()),
        NEXT_HEAD,
        "Explain invoice {{ n }} now.",
    );
    let sync = fixture("github/webhook.pull_request.synchronize.octokit.json");
    assert_eq!(svc.github("pull_request", "rp-2", SECRET, &sync).await, 202);
    final_link(&h, NEXT_HEAD).await;
    // And a run of another repository, older than both.
    sqlx::query(
        "INSERT INTO runs (forge, repo, pr, head_sha, status, public_id, created_at) \
         VALUES ('gitlab', 'g/other', 9, 'abc', 'running', ?1, '2000-01-01T00:00:00.000Z')",
    )
    .bind(promptgate::server::links::new_public_id())
    .execute(svc.state.store.pool())
    .await
    .unwrap();
    let first = svc.text("SELECT public_id FROM runs WHERE id = 1").await;
    let second = svc
        .text(&format!(
            "SELECT public_id FROM runs WHERE head_sha = '{NEXT_HEAD}'"
        ))
        .await;
    let oldest = svc
        .text("SELECT public_id FROM runs WHERE repo = 'g/other'")
        .await;

    let order = |html: &str| -> Vec<String> {
        html.split("<tr class=\"run\" data-id=\"")
            .skip(1)
            .map(|s| s[..32].to_string())
            .collect()
    };
    let (code, all) = svc.get_with("/runs", PROXY_HEADER, "bob").await;
    assert_eq!(code, 200);
    assert_eq!(
        order(&all),
        [second.as_str(), first.as_str(), oldest.as_str()]
    );
    assert!(unslash(&all).contains(&format!(r#"href="/runs/{second}.json""#)));

    let (_, p1) = svc.get_with("/runs?per_page=2", PROXY_HEADER, "bob").await;
    assert_eq!(order(&p1), [second.as_str(), first.as_str()]);
    let p1 = unslash(&p1);
    assert!(p1.contains("/runs?per_page=2&amp;page=2"), "{p1}");
    assert!(!p1.contains("rel=\"prev\""));
    let (_, p2) = svc
        .get_with("/runs?per_page=2&page=2", PROXY_HEADER, "bob")
        .await;
    assert_eq!(order(&p2), [oldest.as_str()]);
    assert!(p2.contains("rel=\"prev\"") && !p2.contains("rel=\"next\""));

    // Per repository and PR.
    let (_, pr) = svc
        .get_with(
            "/runs?repo=Codertocat%2FHello-World&pr=2",
            PROXY_HEADER,
            "bob",
        )
        .await;
    assert_eq!(order(&pr), [second.as_str(), first.as_str()]);
    let r = svc
        .http
        .get(format!("{}/runs", svc.url))
        .basic_auth(WEB_USER.0, Some(WEB_USER.1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    // A run's signed link does not open the index.
    let link = svc
        .state
        .links
        .url("", &first, std::time::SystemTime::now());
    let grant = link.split_once('?').unwrap().1;
    assert_eq!(svc.get(&format!("/runs?{grant}")).await.0, 401);
    svc.stop().await;
}

/// Headless Chromium from Debian's `chromium` package (`PROMPTGATE_CHROMIUM` names
/// another binary). Missing, it fails the test: scripts/test.sh installs it.
async fn chromium(args: &[&str], url: &str) -> String {
    let bin = std::env::var("PROMPTGATE_CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let profile = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(&bin)
        .args(["--headless=new", "--no-sandbox", "--disable-gpu"])
        .args([
            "--no-first-run",
            "--disable-extensions",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(90), out)
        .await
        .expect("chromium finishes within 90 s")
        .unwrap_or_else(|e| {
            panic!("cannot run {bin} ({e}): install it with `apt-get install chromium` (scripts/test.sh does)")
        });
    assert!(
        out.status.success(),
        "{bin} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn dump_dom(url: &str) -> String {
    unslash(&chromium(&["--virtual-time-budget=5000", "--dump-dom"], url).await)
}

#[tokio::test]
async fn in_chromium_the_page_filters_in_the_browser_and_on_the_server() {
    let h = Harness::start().await;
    let m = model(Echo::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let (svc, link) = regressed_run(&h, &m, &db_path(&dir)).await;
    let page = format!("{}{link}", svc.url);

    // The whole page: the script ran (the CSP lets its hash through), all three cases
    // are there, the regressed one with both outputs and its diff.
    let dom = dump_dom(&page).await;
    assert!(
        dom.contains(r#"data-js="ready""#),
        "the script did not run:\n{dom}"
    );
    assert!(dom.contains(r#"data-shown="3""#), "{dom}");
    assert!(dom.contains("Explain <del>invoice</del> 1."), "{dom}");
    assert!(dom.contains("Explain <ins>the bill</ins> 1."), "{dom}");

    // The script filters in the browser: `#show=regressed` hides `c`, and the counter
    // and the URL's query follow.
    let dom = dump_dom(&format!("{page}#show=regressed")).await;
    assert!(dom.contains(r#"data-shown="2""#), "{dom}");
    assert!(dom.contains(r#"<span id="shown-count">2</span>"#), "{dom}");
    let c = dom
        .split("<article ")
        .find(|a| a.contains(r#"data-case="c""#))
        .expect("case c stays in the page");
    assert!(c.contains("hidden"), "c is not hidden: {c}");
    let dom = dump_dom(&format!("{page}#q=invoice%203&sort=case")).await;
    assert!(dom.contains(r#"data-shown="1""#), "{dom}");

    // The server's filter: the page holds only the regressed cases, so it needs no
    // script (headless `--dump-dom` cannot run with scripts off: it serialises the DOM
    // with one); the script leaves a server-filtered list alone.
    let filtered = dump_dom(&format!("{page}&show=regressed")).await;
    assert_eq!(count(&filtered, "<article class=\"case\""), 2, "{filtered}");
    assert!(!filtered.contains(r#"data-case="c""#), "{filtered}");
    assert!(filtered.contains(r#"data-shown="2""#), "{filtered}");

    // 420 px wide it renders, and it prints.
    let shots = tempfile::tempdir().unwrap();
    let png = shots.path().join("narrow.png");
    chromium(
        &[
            "--window-size=420,1600",
            "--hide-scrollbars",
            &format!("--screenshot={}", png.display()),
        ],
        &page,
    )
    .await;
    let bytes = std::fs::read(&png).expect("a screenshot");
    assert_eq!(&bytes[1..4], b"PNG");
    let width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    assert_eq!(width, 420);
    let pdf = shots.path().join("page.pdf");
    chromium(
        &[
            "--no-pdf-header-footer",
            &format!("--print-to-pdf={}", pdf.display()),
        ],
        &page,
    )
    .await;
    assert!(std::fs::read(&pdf).expect("a PDF").starts_with(b"%PDF"));
    svc.stop().await;
}
