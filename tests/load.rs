//! Load tests through the binary (SPEC §1 "Load test", issue 19): a release-tier run of
//! a suite with `load` against fake OpenAI-compatible models. A fast one keeps up and
//! passes; a queueing one, whose latency grows with the requests it holds, pushes p95
//! over the gate and fails the suite; a throttling one shows `throttled` errors.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use common::{check_json, suite_of, TestRepo};
use serde_json::{json, Value};

/// How the fake answers: each request takes `base`; with `one_at_a_time` it serves
/// one request at a time, so the requests it holds wait in a queue and latency grows
/// with the concurrency it meets; every `throttle_every`-th request gets a 429.
#[derive(Clone, Default)]
struct Fake {
    base: Duration,
    one_at_a_time: bool,
    throttle_every: usize,
    worker: Arc<tokio::sync::Mutex<()>>,
    seen: Arc<AtomicUsize>,
}

async fn chat(State(f): State<Fake>, Json(_body): Json<Value>) -> Response {
    let n = f.seen.fetch_add(1, Ordering::SeqCst) + 1;
    if f.throttle_every > 0 && n % f.throttle_every == 0 {
        return (StatusCode::TOO_MANY_REQUESTS, "slow down").into_response();
    }
    let _turn = if f.one_at_a_time {
        Some(f.worker.lock().await)
    } else {
        None
    };
    tokio::time::sleep(f.base).await;
    Json(json!({
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Returns are accepted within 30 days."}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 8}
    }))
    .into_response()
}

async fn serve(f: Fake) -> String {
    let app = Router::new()
        .route("/v1/chat/completions", post(chat))
        .with_state(f);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}/v1")
}

/// A repository whose suite load-tests at 1.5 × 8 = 12 rps for 3 s, gated at p95 ≤ 150 ms.
fn repo(url: &str) -> (TestRepo, String) {
    let repo = TestRepo::new();
    repo.write(
        ".promptgate.yml",
        "version: 1\nsuites:\n  support:\n    prompts: { user: prompts/user.j2 }\n    model: models/m.yaml\n    dataset: evals/s.jsonl\n    metrics:\n      assertions: { min: 1.0 }\n    load:\n      peak_rps: 8\n      factor: 1.5\n      duration: 3s\n      metrics: { latency_p95_ms: { max: 150 }, error_rate: { max: 0.05 } }\n",
    );
    repo.write("prompts/user.j2", "{{ q }}");
    repo.write(
        "models/m.yaml",
        &format!("provider: openai\nmodel: chat-1\nbase_url: {url}\npricing: {{ input_per_1k_tokens: 0.001, output_per_1k_tokens: 0.002 }}\n"),
    );
    repo.write(
        "evals/s.jsonl",
        "{\"id\": \"a\", \"vars\": {\"q\": \"How long to return?\"}, \"assert\": [{\"type\": \"contains\", \"value\": \"30 days\"}]}\n{\"id\": \"b\", \"vars\": {\"q\": \"Return window?\"}, \"assert\": [{\"type\": \"contains\", \"value\": \"30 days\"}]}\n",
    );
    let sha = repo.commit("base");
    (repo, sha)
}

fn release(repo: &TestRepo, sha: &str) -> (i32, Value) {
    check_json(repo, sha, sha, &["--tier", "release"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fast_endpoint_keeps_up_and_passes() {
    // Answers at once: the p95 gate (150 ms) leaves room for a loaded CI machine.
    let fake = Fake::default();
    let url = serve(fake.clone()).await;
    let (repo, sha) = repo(&url);
    let (code, report) = tokio::task::spawn_blocking(move || release(&repo, &sha))
        .await
        .unwrap();
    let load = &suite_of(&report, "support")["load"];
    assert_eq!(load["requests"], 36, "{load}");
    assert_eq!(load["offered_rps"], 12.0);
    let achieved = load["achieved_rps"].as_f64().unwrap();
    assert!(
        (achieved - 12.0).abs() <= 0.6,
        "achieved {achieved} rps: {load}"
    );
    assert!(load["latency_ms"]["p95"].as_u64().unwrap() < 150, "{load}");
    assert_eq!(load["error_rate"], 0.0);
    assert_eq!(load["pass"], true);
    assert_eq!(code, 0, "{report}");
    // 2 cases generated once (base = head) plus the 36 load requests, all counted.
    assert_eq!(fake.seen.load(Ordering::SeqCst), 38);
    assert_eq!(report["usage"]["model_calls"], 38, "{report}");
    let load_cost = report["usage"]["cost_by_kind"]["load"].as_f64().unwrap();
    // 36 × (12 input tokens at $0.001/1k + 8 output at $0.002/1k).
    assert!(
        (load_cost - 36.0 * 0.000028).abs() < 1e-12,
        "{load_cost}: {report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queueing_endpoint_fails_the_p95_gate_while_arrivals_keep_coming() {
    // One request at a time, 110 ms each: it serves 9 rps and meets 12, so its queue
    // grows (open loop: arrivals do not wait for answers).
    let fake = Fake {
        base: Duration::from_millis(110),
        one_at_a_time: true,
        ..Fake::default()
    };
    let url = serve(fake.clone()).await;
    let (repo, sha) = repo(&url);
    let (code, report) = tokio::task::spawn_blocking(move || release(&repo, &sha))
        .await
        .unwrap();
    let suite = suite_of(&report, "support");
    let load = &suite["load"];
    assert_eq!(load["requests"], 36, "{load}");
    let achieved = load["achieved_rps"].as_f64().unwrap();
    assert!(achieved > 10.0, "every arrival was still answered: {load}");
    let p95 = load["latency_ms"]["p95"].as_u64().unwrap();
    assert!(p95 > 150, "p95 {p95} ms: {load}");
    assert!(load["peak_in_flight"].as_u64().unwrap() > 3, "{load}");
    let gate = load["gates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["metric"] == "latency_p95_ms")
        .unwrap();
    assert_eq!(gate["pass"], false, "{gate}");
    assert_eq!(load["pass"], false);
    assert_eq!(suite["verdict"], "fail", "{suite}");
    assert_eq!(code, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttles_are_counted_as_throttled_errors_and_gate_the_error_rate() {
    let fake = Fake {
        base: Duration::from_millis(5),
        throttle_every: 4,
        ..Fake::default()
    };
    let url = serve(fake.clone()).await;
    let (repo, sha) = repo(&url);
    let (_, report) = tokio::task::spawn_blocking(move || {
        // The PR tier runs a load test only when asked.
        let (_, pr) = check_json(&repo, &sha, &sha, &[]);
        assert!(suite_of(&pr, "support").get("load").is_none(), "{pr}");
        check_json(&repo, &sha, &sha, &["--load"])
    })
    .await
    .unwrap();
    let load = &suite_of(&report, "support")["load"];
    let throttled = load["errors"]["throttled"].as_u64().unwrap();
    assert!((8..=10).contains(&throttled), "about 1 in 4 of 36: {load}");
    assert_eq!(load["errors"]["server"], 0);
    assert_eq!(load["pass"], false, "error_rate over 0.05: {load}");
    let gate = &load["gates"][1];
    assert_eq!(
        (gate["metric"].as_str(), gate["pass"].as_bool()),
        (Some("error_rate"), Some(false))
    );
    assert_eq!(suite_of(&report, "support")["verdict"], "fail");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_comment_shows_the_load_table() {
    let url = serve(Fake {
        base: Duration::from_millis(5),
        throttle_every: 4,
        ..Fake::default()
    })
    .await;
    let (repo, sha) = repo(&url);
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_promptgate"))
            .args(["check", "--format", "markdown", "--load", "--repo"])
            .arg(repo.path())
            .args(["--base", &sha, "--head", &sha])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let md = String::from_utf8_lossy(&out.stdout);
    assert!(
        md.contains("**Load test** (open loop): 36 requests at 12.00 rps for 3 s"),
        "{md}"
    );
    assert!(md.contains("| `error_rate` |"), "{md}");
    assert!(md.contains("≤ 5.0 % | ❌"), "{md}");
    assert!(md.contains("| `latency_p95_ms` |"), "{md}");
}
