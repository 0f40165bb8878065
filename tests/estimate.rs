//! The cost preflight through the binary (SPEC §4 `check --estimate`, §5 `estimate`,
//! issue 18): the estimate calls nothing, predicts the calls of the run that follows
//! and its cost within 25 %, and a warm cache estimates nothing to pay.

mod common;

use common::{check_json, TestRepo};
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// Echoes the user message and reports tokens as a tokenizer would, about one per
/// four characters of every message (plus a little per message).
struct Counting;

impl Respond for Counting {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        let messages = body["messages"].as_array().cloned().unwrap_or_default();
        let user = messages
            .iter()
            .rev()
            .find(|m| m["role"] == "user")
            .and_then(|m| m["content"].as_str())
            .unwrap_or_default()
            .to_string();
        let prompt: usize = messages
            .iter()
            .map(|m| m["content"].as_str().unwrap_or_default().len().div_ceil(4) + 3)
            .sum();
        ResponseTemplate::new(200).set_body_json(json!({
            "choices": [{"index": 0, "message": {"role": "assistant", "content": user}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": user.len().div_ceil(4)}
        }))
    }
}

#[tokio::test]
async fn an_estimate_calls_nothing_and_predicts_the_run() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(Counting)
        .mount(&server)
        .await;
    let url = format!("{}/v1", server.uri());
    let repo = TestRepo::new();
    repo.write(
        ".promptgate.yml",
        "version: 1\nsuites:\n  s:\n    prompts: { user: prompts/user.j2 }\n    model: models/m.yaml\n    dataset: evals/s.jsonl\n    samples: 2\n    metrics:\n      assertions: { min: 0.0 }\nbudget: { per_run_usd: 0.000001 }\n",
    );
    repo.write("prompts/user.j2", "Answer the customer: {{ q }}");
    repo.write(
        "models/m.yaml",
        &format!("provider: openai\nmodel: chat-1\nbase_url: {url}\npricing: {{ input_per_1k_tokens: 3.0, output_per_1k_tokens: 15.0 }}\n"),
    );
    let mut cases = String::new();
    for i in 0..6 {
        let q =
            format!("How long do I have to return order number {i}, bought in the spring sale?");
        cases.push_str(
            &json!({"id": format!("c{i}"), "vars": {"q": q}, "expected": format!("Answer the customer: {q}"),
                    "assert": [{"type": "contains", "value": "order"}]})
                .to_string(),
        );
        cases.push('\n');
    }
    repo.write("evals/s.jsonl", &cases);
    let base = repo.commit("base");
    repo.write("prompts/user.j2", "Answer the customer kindly: {{ q }}");
    let head = repo.commit("head");

    let (code, estimated) = check_json(&repo, &base, &head, &["--estimate"]);
    assert_eq!(code, 0, "{estimated}");
    assert_eq!(server.received_requests().await.unwrap().len(), 0);
    assert_eq!(estimated["verdict"], "skipped", "nothing was evaluated");
    let e = &estimated["estimate"];
    // 6 cases × 2 samples at base and head, cold cache.
    assert_eq!(e["calls"], 24, "{e}");
    assert_eq!(e["calls_by_kind"]["generation"], 24, "{e}");
    assert!(
        e["method"].as_str().unwrap().contains("characters / 4"),
        "{e}"
    );
    // The budget is noted (the CLI does not enforce it; the bot waits for --confirm).
    assert_eq!(
        estimated["over_budget"]["setting"], "per_run_usd",
        "{estimated}"
    );

    let (_, run) = check_json(&repo, &base, &head, &[]);
    assert_eq!(run["usage"]["model_calls"], 24, "{run}");
    let actual = run["usage"]["cost_usd"].as_f64().unwrap();
    let predicted = run["estimate"]["cost_usd"].as_f64().unwrap();
    assert_eq!(predicted, e["cost_usd"].as_f64().unwrap());
    assert!(actual > 0.0);
    let error = (predicted - actual).abs() / actual;
    assert!(
        error <= 0.25,
        "estimate ${predicted} vs ${actual}: {:.0} % off",
        error * 100.0
    );
    assert!(
        run["notes"].to_string().contains("over budget"),
        "{}",
        run["notes"]
    );

    // Everything is cached now: a second estimate expects nothing to pay.
    let (_, again) = check_json(&repo, &base, &head, &["--estimate"]);
    assert_eq!(again["estimate"]["calls"], 0, "{again}");
    assert_eq!(again["estimate"]["cost_usd"], 0.0);
}

#[tokio::test]
async fn the_estimate_as_text() {
    let repo = TestRepo::new();
    repo.write(
        ".promptgate.yml",
        "version: 1\nsuites:\n  s:\n    prompts: { user: prompts/user.j2 }\n    model: models/m.yaml\n    dataset: evals/s.jsonl\n    metrics:\n      assertions: { min: 0.0 }\n",
    );
    repo.write("prompts/user.j2", "{{ q }}");
    repo.write(
        "models/m.yaml",
        "provider: openai\nmodel: chat-1\nbase_url: http://127.0.0.1:9/v1\nparameters: { max_tokens: 100 }\npricing: { input_per_1k_tokens: 1.0, output_per_1k_tokens: 2.0 }\n",
    );
    repo.write(
        "evals/s.jsonl",
        "{\"id\": \"a\", \"vars\": {\"q\": \"hi\"}, \"assert\": [{\"type\": \"contains\", \"value\": \"hi\"}]}\n",
    );
    let base = repo.commit("base");
    repo.write("prompts/user.j2", "Q: {{ q }}");
    let head = repo.commit("head");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_promptgate"))
        .args(["check", "--estimate", "--repo"])
        .arg(repo.path())
        .args(["--base", &base, "--head", &head])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains(": 2 model calls, $"), "{text}");
    // No expected answer: max_tokens (100) is the output guess, at $2 per 1k.
    assert!(text.contains("generation: 2 calls, $0.4"), "{text}");
}
