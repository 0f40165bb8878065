//! `models: [A, B]` (SPEC §2): the suite runs on each model side by side, the first one
//! gates, and each model's cases are scoped by their own keys.

mod common;

use std::process::Command;

use common::{check_json as check, fake_openai, metric_of, suite_of as suite, TestRepo};
use serde_json::{json, Value};
use wiremock::matchers::{body_partial_json, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const CASES: usize = 3;

fn manifest(base_url: &str, model: &str, temperature: f64) -> String {
    format!(
        "provider: openai\nmodel: {model}\nbase_url: {base_url}\nparameters: {{ temperature: {temperature}, max_tokens: 64 }}\npricing: {{ input_per_1k_tokens: 0.001, output_per_1k_tokens: 0.002 }}\n"
    )
}

fn dataset() -> String {
    (0..CASES)
        .map(|i| format!("{{\"id\": \"c{i}\", \"vars\": {{\"question\": \"refund question {i}\"}}, \"assert\": [{{\"type\": \"contains\", \"value\": \"question {i}\"}}]}}\n"))
        .collect()
}

/// A fake where `fake-a` echoes the question (and passes) and `fake-b` answers
/// nothing useful (and fails every assertion).
async fn server() -> MockServer {
    let server = fake_openai().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(body_partial_json(json!({"model": "fake-b"})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "chatcmpl-b", "object": "chat.completion", "model": "fake-b",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "I cannot help."}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14}
        })))
        .with_priority(1)
        .mount(&server)
        .await;
    server
}

/// Chat calls the fake received for one model id.
async fn calls_for(server: &MockServer, model: &str) -> usize {
    let reqs = server.received_requests().await.unwrap_or_default();
    reqs.iter()
        .filter(|r| r.url.path().ends_with("/chat/completions"))
        .filter(|r| serde_json::from_slice::<Value>(&r.body).is_ok_and(|b| b["model"] == model))
        .count()
}

fn setup(base_url: &str) -> (TestRepo, String) {
    let repo = TestRepo::new();
    repo.write(
        ".promptgate.yml",
        "version: 1\nsuites:\n  support:\n    prompts:\n      user: prompts/user.j2\n    models: [models/a.yaml, models/b.yaml]\n    dataset: evals/support.jsonl\n    metrics:\n      assertions: { min: 1.0 }\n",
    );
    repo.write("prompts/user.j2", "{{ question }}");
    repo.write("models/a.yaml", &manifest(base_url, "fake-a", 0.2));
    repo.write("models/b.yaml", &manifest(base_url, "fake-b", 0.2));
    repo.write("evals/support.jsonl", &dataset());
    let base = repo.commit("base");
    (repo, base)
}

#[tokio::test]
async fn first_model_gates_and_bumping_the_second_reruns_only_its_cases() {
    let server = server().await;
    let url = format!("{}/v1", server.uri());
    let (repo, base) = setup(&url);

    // A prompt change reaches both models' cases, at base and head.
    repo.write("prompts/user.j2", "Q: {{ question }}");
    let head1 = repo.commit("prompt");
    let (code, report) = check(&repo, &base, &head1, &[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(
        report["verdict"], "pass",
        "the failing compared model gated: {report}"
    );
    let s = suite(&report, "support");
    assert_eq!(s["verdict"], "pass", "{s}");
    assert_eq!(metric_of(s, "assertions")["head"], 1.0);
    let compared = s["compared"].as_array().expect("compared");
    assert_eq!(compared.len(), 1, "{s}");
    let b = &compared[0];
    assert_eq!(b["model"], "models/b.yaml");
    assert_eq!(b["model_id"], "fake-b");
    // Failing at base too and not worse: its own verdict would ask for review.
    assert_eq!(b["verdict"], "needs_review", "{b}");
    assert_eq!(b["cases"]["total"], CASES);
    assert_eq!(metric_of(b, "assertions")["head"], 0.0, "{b}");
    assert_eq!(calls_for(&server, "fake-a").await, 2 * CASES);
    assert_eq!(calls_for(&server, "fake-b").await, 2 * CASES);

    // Bumping b's manifest triggers the suite and re-runs only b's head cases.
    repo.write("models/b.yaml", &manifest(&url, "fake-b", 0.7));
    let head2 = repo.commit("bump b");
    let (code, report) = check(&repo, &head1, &head2, &[]);
    assert_eq!(code, 0, "{report}");
    let s = suite(&report, "support");
    assert_eq!(s["triggered_by"], json!(["models/b.yaml"]), "{s}");
    assert_eq!(s["verdict"], "pass", "{s}");
    assert_eq!(s["cases"]["affected"], 0, "a's cases are unaffected: {s}");
    assert_eq!(
        calls_for(&server, "fake-a").await,
        2 * CASES,
        "a was re-run"
    );
    assert_eq!(
        calls_for(&server, "fake-b").await,
        3 * CASES,
        "b's head only"
    );
    assert_eq!(report["usage"]["model_calls"], CASES, "{report}");
    assert!(report["usage"]["cache_hits"].as_u64().unwrap_or(0) >= 2 * CASES as u64);
    let b = &s["compared"][0];
    assert_eq!(b["cases"]["affected"], CASES, "{b}");
    assert_eq!(b["cases"]["evaluated"], CASES, "{b}");
    assert_eq!(b["cases"]["cached"], 0, "{b}");

    // The comment shows both models side by side.
    let out = Command::new(env!("CARGO_BIN_EXE_promptgate"))
        .args(["check", "--format", "markdown", "--repo"])
        .arg(repo.path())
        .args(["--base", &head1, "--head", &head2])
        .output()
        .expect("run promptgate");
    let md = String::from_utf8_lossy(&out.stdout);
    assert!(md.contains("**Compared models (not gating)**"), "{md}");
    assert!(
        md.contains("| metric | gating model | `models/b.yaml` |"),
        "{md}"
    );
    assert!(md.contains("| `assertions` | 1.000 ✅ | 0.000 ❌"), "{md}");
    assert!(md.contains("`models/b.yaml` (`fake-b`): "), "{md}");
    assert_eq!(
        calls_for(&server, "fake-b").await,
        3 * CASES,
        "markdown run was cached"
    );
}

#[tokio::test]
async fn a_compared_model_outside_the_allowlist_is_an_error_before_any_call() {
    let server = server().await;
    let url = format!("{}/v1", server.uri());
    let (repo, base) = setup(&url);
    repo.write(
        "models/b.yaml",
        &manifest("http://198.51.100.7/v1", "fake-b", 0.2),
    );
    let head = repo.commit("b elsewhere");
    let (code, report) = check(&repo, &base, &head, &[]);
    assert_ne!(code, 0, "{report}");
    let s = suite(&report, "support");
    assert_eq!(s["verdict"], "error", "{s}");
    assert!(s["errors"].to_string().contains("models/b.yaml"), "{s}");
    assert_eq!(calls_for(&server, "fake-a").await, 0);
    assert_eq!(calls_for(&server, "fake-b").await, 0);
}

#[tokio::test]
async fn a_compared_model_that_cannot_run_is_an_error_row_not_a_pass() {
    let server = server().await;
    let url = format!("{}/v1", server.uri());
    let (repo, base) = setup(&url);
    // b's manifest loses its prices while the policy (base) gates on cost.
    let policy = repo.read(".promptgate.yml").replace(
        "assertions: { min: 1.0 }",
        "assertions: { min: 1.0 }\n      cost_per_case_usd: { max: 1.0 }",
    );
    repo.write(".promptgate.yml", &policy);
    let base = {
        let _ = base;
        repo.commit("gate cost")
    };
    let b = manifest(&url, "fake-b", 0.2);
    let unpriced: String = b
        .lines()
        .filter(|l| !l.starts_with("pricing"))
        .map(|l| format!("{l}\n"))
        .collect();
    repo.write("models/b.yaml", &unpriced);
    let head = repo.commit("b unpriced");
    let (code, report) = check(&repo, &base, &head, &[]);
    assert_eq!(code, 0, "{report}");
    let s = suite(&report, "support");
    assert_eq!(s["verdict"], "pass", "{s}");
    let row = &s["compared"][0];
    assert_eq!(row["model"], "models/b.yaml");
    assert_eq!(row["verdict"], "error", "{row}");
    assert!(
        row["errors"].to_string().contains("cost_per_case_usd"),
        "{row}"
    );
    assert_eq!(calls_for(&server, "fake-b").await, 0);
    assert!(
        report["notes"].to_string().contains("models/b.yaml"),
        "{report}"
    );
}
