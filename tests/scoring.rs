//! Scoring through the real binary: samples and flaky cases, the judge (strict JSON or
//! an error), and the release tier.

mod common;

use std::collections::HashMap;
use std::process::Command;
use std::sync::Mutex;

use common::{calls, generation_calls, metric_of, TestRepo};
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

fn chat_response(content: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5}
    }))
}

/// Repeated identical generation requests (the samples of one case) alternate between
/// an answer with "30 days" and one without, whatever order calls arrive in; the judge
/// answers with `judge_answer`.
struct Alternating {
    seen: Mutex<HashMap<String, usize>>,
    judge_answer: String,
}

impl Respond for Alternating {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let body = String::from_utf8_lossy(&req.body);
        if body.contains("You grade answers") {
            return chat_response(&self.judge_answer);
        }
        let i = {
            let mut seen = self.seen.lock().unwrap();
            let n = seen.entry(body.to_string()).or_insert(0);
            *n += 1;
            *n - 1
        };
        chat_response(if i % 2 == 0 {
            "Returns within 30 days."
        } else {
            "Returns are accepted."
        })
    }
}

async fn server(judge_answer: &str) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(Alternating {
            seen: Mutex::new(HashMap::new()),
            judge_answer: judge_answer.to_string(),
        })
        .mount(&server)
        .await;
    server
}

fn setup(url: &str, samples: u32, judge: bool) -> (TestRepo, String) {
    let repo = TestRepo::new();
    let judge_cfg = if judge {
        format!("      faithfulness: {{ min: 0.5 }}\n      hallucination_rate: {{ max: 0.5 }}\nevaluators:\n  judge: {{ provider: openai, model: judge-1, base_url: \"{url}\" }}\nrelease:\n  branches: [\"release/*\"]\n  samples: 2\n  judge: {{ manifest: models/judge.yaml }}\n")
    } else {
        String::new()
    };
    repo.write(
        ".promptgate.yml",
        &format!("version: 1\nsuites:\n  s:\n    prompts: {{ user: prompts/user.j2 }}\n    model: models/m.yaml\n    dataset: evals/s.jsonl\n    samples: {samples}\n    metrics:\n      assertions: {{ min: 0.0 }}\n{judge_cfg}"),
    );
    repo.write("prompts/user.j2", "{{ q }}");
    repo.write(
        "models/m.yaml",
        &format!("provider: openai\nmodel: chat-1\nbase_url: {url}\n"),
    );
    repo.write(
        "models/judge.yaml",
        &format!("provider: openai\nmodel: big-judge\nbase_url: {url}\n"),
    );
    repo.write(
        "evals/s.jsonl",
        "{\"id\": \"a\", \"vars\": {\"q\": \"How long to return?\"}, \"expected\": \"30 days\", \"assert\": [{\"type\": \"contains\", \"value\": \"30 days\"}]}\n{\"id\": \"b\", \"vars\": {\"q\": \"Return window?\"}, \"assert\": [{\"type\": \"contains\", \"value\": \"30 days\"}]}\n",
    );
    let base = repo.commit("base");
    (repo, base)
}

fn check(repo: &TestRepo, base: &str, head: &str, extra: &[&str]) -> (i32, Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_promptgate"))
        .args([
            "check",
            "--format",
            "json",
            "--max-concurrency",
            "1",
            "--repo",
        ])
        .arg(repo.path())
        .args(["--base", base, "--head", head])
        .args(extra)
        .output()
        .expect("run promptgate");
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code().unwrap_or(-1), report)
}

#[tokio::test]
async fn samples_multiply_calls_and_disagreeing_samples_are_flaky() {
    let server = server("").await;
    let url = format!("{}/v1", server.uri());
    let (repo, base) = setup(&url, 3, false);
    repo.write("prompts/user.j2", "Q: {{ q }}");
    let head = repo.commit("prompt");
    let (code, report) = check(&repo, &base, &head, &[]);
    assert_eq!(code, 0, "{report}");
    // 2 affected cases × 3 samples × (base + head).
    assert_eq!(generation_calls(&server).await, 12);
    let suite = &report["suites"][0];
    let flaky: Vec<&str> = suite["flaky"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(flaky.len(), 2, "{suite}");
    // Each case's score is the mean over its samples: 2 of 3 passed.
    let head_assert = suite["metrics"][0]["head"].as_f64().unwrap();
    assert!((head_assert - 2.0 / 3.0).abs() < 1e-9, "{suite}");
}

#[tokio::test]
async fn judge_scores_feed_the_metrics() {
    let server = server(
        r#"{"faithfulness": 0.9, "relevance": 0.8, "hallucination": false, "reason": "ok"}"#,
    )
    .await;
    let url = format!("{}/v1", server.uri());
    let (repo, base) = setup(&url, 1, true);
    repo.write("prompts/user.j2", "Q: {{ q }}");
    let head = repo.commit("prompt");
    let (code, report) = check(&repo, &base, &head, &[]);
    assert_eq!(code, 0, "{report}");
    let metrics = &report["suites"][0]["metrics"];
    let faith = metrics
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "faithfulness")
        .unwrap();
    assert_eq!(faith["head"], 0.9);
    assert_eq!(faith["base"], 0.9);
    // 2 cases × 2 sides generations + as many judge calls.
    assert_eq!(calls(&server).await.0, 8);
    assert_eq!(report["usage"]["model_calls"], 8);
}

#[tokio::test]
async fn a_malformed_judge_answer_is_an_error_for_the_case_not_a_score() {
    let server = server("The answer looks faithful to me.").await;
    let url = format!("{}/v1", server.uri());
    let (repo, base) = setup(&url, 1, true);
    repo.write("prompts/user.j2", "Q: {{ q }}");
    let head = repo.commit("prompt");
    let (code, report) = check(&repo, &base, &head, &[]);
    assert_eq!(code, 2, "{report}");
    let suite = &report["suites"][0];
    assert_eq!(suite["verdict"], "error");
    let errors = suite["errors"].to_string();
    assert!(errors.contains("case `a` (evals/s.jsonl:1)"), "{errors}");
    assert!(errors.contains("not strict JSON"), "{errors}");
}

#[tokio::test]
async fn release_tier_runs_every_case_with_release_judge_and_samples() {
    let server = server(r#"{"faithfulness": 1, "relevance": 1, "hallucination": false}"#).await;
    let url = format!("{}/v1", server.uri());
    let (repo, base) = setup(&url, 1, true);
    repo.write("README.md", "unrelated\n");
    let head = repo.commit("docs");
    let (_, report) = check(&repo, &base, &head, &["--tier", "release"]);
    assert_eq!(report["tier"], "release");
    let suite = &report["suites"][0];
    assert_eq!(suite["cases"]["evaluated"], 2, "{suite}");
    // Base and head render the same: 2 cases × 2 release samples, generated once.
    assert_eq!(generation_calls(&server).await, 4);
    let reqs = server.received_requests().await.unwrap();
    let judge_models: Vec<String> = reqs
        .iter()
        .filter(|r| String::from_utf8_lossy(&r.body).contains("You grade answers"))
        .map(|r| {
            serde_json::from_slice::<Value>(&r.body).unwrap()["model"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert!(!judge_models.is_empty());
    assert!(
        judge_models.iter().all(|m| m == "big-judge"),
        "{judge_models:?}"
    );
}

/// A threshold on a metric that cannot be computed is an error naming the metric and
/// why, never a pass (exit 2). What the files show (cost with no `pricing` in the
/// manifest) is refused before any model call.
#[tokio::test]
async fn a_gated_metric_with_no_data_is_an_error_not_a_pass() {
    let m = server("{}").await;
    let url = format!("{}/v1", m.uri());
    let (repo, _) = setup(&url, 1, false);
    let config = repo.read(".promptgate.yml").replace(
        "      assertions: { min: 0.0 }\n",
        "      assertions: { min: 0.0 }\n      cost_per_case_usd: { max: 0.01 }\n",
    );
    repo.write(".promptgate.yml", &config);
    let base = repo.commit("gate cost");
    repo.write("prompts/user.j2", "Answer briefly: {{ q }}");
    let head = repo.commit("edit the prompt");
    let (code, report) = check(&repo, &base, &head, &[]);
    assert_eq!(code, 2, "{report:#}");
    assert_eq!(report["verdict"], "error");
    let errors = report["suites"][0]["errors"].to_string();
    assert!(
        errors.contains(".promptgate.yml:")
            && errors.contains("`cost_per_case_usd` is gated but cannot be computed")
            && errors.contains("has no `pricing`"),
        "{errors}"
    );
    assert_eq!(
        calls(&m).await,
        (0, 0),
        "no model call for a gate that cannot be computed"
    );

    // Only case `b` is affected, and it has no assertions. Gates are over the whole
    // suite (SPEC §1), so `a`'s assertions give the metric its value: no error.
    repo.git(&["checkout", "-q", "-b", "runtime", &base]);
    repo.write(
        ".promptgate.yml",
        &repo
            .read(".promptgate.yml")
            .replace("      cost_per_case_usd: { max: 0.01 }\n", ""),
    );
    repo.write(
        "evals/s.jsonl",
        "{\"id\": \"a\", \"vars\": {\"q\": \"How long to return?\"}, \"assert\": [{\"type\": \"contains\", \"value\": \"30 days\"}]}\n{\"id\": \"b\", \"vars\": {\"q\": \"Return window?\"}}\n",
    );
    let base = repo.commit("b has no assertions");
    repo.write(
        "evals/s.jsonl",
        &repo
            .read("evals/s.jsonl")
            .replace("Return window?", "What is the return window?"),
    );
    let head = repo.commit("edit case b");
    let (code, report) = check(&repo, &base, &head, &[]);
    let suite = &report["suites"][0];
    assert_eq!(suite["cases"]["affected"], 1, "{suite}");
    let assertions = metric_of(suite, "assertions");
    assert!(assertions["head"].is_number(), "{suite}");
    assert!(
        !report.to_string().contains("has no value at head"),
        "{report}"
    );
    assert_ne!(code, 2, "{report:#}");
}

/// A judge that reads the answer: "WRONG" in it is unfaithful and hallucinated.
struct Discerning;

impl Respond for Discerning {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let body = String::from_utf8_lossy(&req.body);
        if !body.contains("You grade answers") {
            return chat_response("Returns within 30 days.");
        }
        let graded = body.rsplit("## Answer to grade").next().unwrap_or("");
        chat_response(if graded.contains("WRONG") {
            r#"{"faithfulness": 0.1, "relevance": 0.9, "hallucination": true, "reason": "unsupported"}"#
        } else {
            r#"{"faithfulness": 0.9, "relevance": 0.9, "hallucination": false, "reason": "supported"}"#
        })
    }
}

const CALIBRATION: &str = r#"{"id": "c1", "question": "Return window?", "context": "30 days", "answer": "30 days.", "label": {"faithful": true, "relevant": true, "hallucination": false}}
{"id": "c2", "question": "Return window?", "context": "30 days", "answer": "WRONG: 90 days.", "label": {"faithful": false, "relevant": true, "hallucination": true}}
{"id": "c3", "question": "Ship to Canada?", "context": "We ship to Canada", "answer": "Yes.", "label": {"faithful": true, "relevant": true, "hallucination": false}}
{"id": "c4", "question": "Ship to Canada?", "context": "We ship to Canada", "answer": "WRONG: only to Mars.", "label": {"faithful": false, "relevant": true, "hallucination": true}}
"#;

/// `evaluators.judge.calibration`: the judge grades the labelled set first. A judge
/// that agrees gates as usual; one that does not (here: it flags everything) has its
/// metrics shown but not gating, and the report says why.
#[tokio::test]
async fn a_judge_below_its_calibration_does_not_gate() {
    for discerning in [true, false] {
        let server = MockServer::start().await;
        let judge_answer =
            r#"{"faithfulness": 0.1, "relevance": 0.9, "hallucination": true, "reason": "x"}"#;
        let mock = Mock::given(method("POST")).and(path("/v1/chat/completions"));
        if discerning {
            mock.respond_with(Discerning).mount(&server).await;
        } else {
            mock.respond_with(Alternating {
                seen: Mutex::new(HashMap::new()),
                judge_answer: judge_answer.to_string(),
            })
            .mount(&server)
            .await;
        }
        let url = format!("{}/v1", server.uri());
        let (repo, _) = setup(&url, 1, true);
        let config = repo.read(".promptgate.yml").replace(
            &format!("judge: {{ provider: openai, model: judge-1, base_url: \"{url}\" }}"),
            &format!("judge: {{ provider: openai, model: judge-1, base_url: \"{url}\", calibration: evals/judge-calibration.jsonl, min_kappa: 0.6 }}"),
        );
        repo.write(".promptgate.yml", &config);
        repo.write("evals/judge-calibration.jsonl", CALIBRATION);
        let base = repo.commit("calibrate the judge");
        repo.write("prompts/user.j2", "Answer: {{ q }}");
        let head = repo.commit("edit the prompt");
        let (code, report) = check(&repo, &base, &head, &[]);
        let cal = &report["judge_calibration"];
        assert_eq!(cal["items"], 4, "{report:#}");
        assert_eq!(cal["gates"], discerning, "{cal}");
        let suite = &report["suites"][0];
        let row = |name: &str| metric_of(suite, name);
        if discerning {
            let kappas: Vec<f64> = cal["labels"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|l| l["label"] != "relevant")
                .map(|l| l["kappa"].as_f64().unwrap())
                .collect();
            assert_eq!(kappas, vec![1.0, 1.0], "{cal}");
            assert!(row("faithfulness")["not_gated"].is_null(), "{suite}");
        } else {
            assert!(
                cal["reason"]
                    .as_str()
                    .unwrap()
                    .contains("below min_kappa 0.6"),
                "{cal}"
            );
            // The judge says every answer hallucinates: shown, failing, not gating.
            let h = row("hallucination_rate");
            assert_eq!(h["head"], 1.0, "{suite}");
            assert!(h["not_gated"].is_string(), "{h}");
            assert_eq!(suite["verdict"], "pass", "{suite}");
            assert_eq!(code, 0, "{report:#}");
            assert!(
                report["notes"].to_string().contains("do not gate"),
                "{report}"
            );
        }
    }
}

/// SPEC §1: the CLI lists the tickets a run would file in the JSON and opens nothing.
#[tokio::test]
async fn the_cli_lists_tickets_and_files_none() {
    let server = server(
        r#"{"faithfulness": 0.3, "relevance": 0.8, "hallucination": true, "reason": "invents a policy"}"#,
    )
    .await;
    let url = format!("{}/v1", server.uri());
    let (repo, _) = setup(&url, 1, true);
    let config = repo.read(".promptgate.yml").replace(
        "hallucination_rate: { max: 0.5 }",
        "hallucination_rate: { max: 1.0 }",
    ) + "tickets: { on: [hallucination, regressed], labels: [llm-quality] }\n";
    repo.write(".promptgate.yml", &config);
    let base = repo.commit("tickets");
    repo.write("prompts/user.j2", "Q: {{ q }}");
    let head = repo.commit("prompt");
    let (_, report) = check(&repo, &base, &head, &[]);
    let tickets = report["tickets"].as_array().expect("tickets listed");
    let mut cases: Vec<&str> = tickets
        .iter()
        .map(|t| t["case"].as_str().unwrap())
        .collect();
    cases.sort();
    assert_eq!(cases, ["a", "b"], "{report}");
    for t in tickets {
        assert_eq!(t["finding"], "hallucination");
        assert_eq!(t["issue"], Value::Null);
        assert_eq!(t["new"], false);
        assert_eq!(t["key"].as_str().unwrap().len(), 64);
        assert!(
            t["reason"].as_str().unwrap().contains("invents a policy"),
            "{t}"
        );
    }
    // Only what `on` lists: no injection tickets, and no regression happened.
    let (_, markdown) = {
        let out = Command::new(env!("CARGO_BIN_EXE_promptgate"))
            .args(["check", "--format", "markdown", "--repo"])
            .arg(repo.path())
            .args(["--base", &base, "--head", &head])
            .output()
            .unwrap();
        (
            out.status,
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    assert!(markdown.contains("2 not filed"), "{markdown}");
}

/// The fake model echoes each case's `q`, so every output is known: one case passes
/// every assertion, one passes on weights against its `threshold`, one fails.
#[tokio::test]
async fn new_assertion_types_and_a_weighted_case_threshold_through_the_binary() {
    let server = common::fake_openai().await;
    let url = format!("{}/v1", server.uri());
    let repo = TestRepo::new();
    repo.write(
        ".promptgate.yml",
        "version: 1\nsuites:\n  s:\n    prompts: { user: prompts/user.j2 }\n    model: models/m.yaml\n    dataset: evals/s.jsonl\n    metrics:\n      assertions: { min: 0.5 }\n",
    );
    repo.write("prompts/user.j2", "{{ q }}");
    repo.write(
        "models/m.yaml",
        &format!("provider: openai\nmodel: chat-1\nbase_url: {url}\npricing: {{ input_per_1k_tokens: 0.001, output_per_1k_tokens: 0.002 }}\n"),
    );
    let cases = [
        json!({"id": "json", "vars": {"q": "{\"queue\": \"billing\", \"tags\": [\"refund\"], \"escalate\": false}"}, "assert": [
            {"type": "is-valid-json"},
            {"type": "json-path", "value": [{"path": "$.queue", "equals": "billing"}, {"path": "$.tags[0]", "equals": "refund"}, {"path": "$['escalate']", "equals": false}]},
            {"type": "not-icontains-any", "value": ["sorry"]},
            {"type": "cost", "threshold": 0.001},
            {"type": "latency", "threshold": 60000}
        ]}),
        json!({"id": "weighted", "vars": {"q": "Yes, you can return them within 30 days."}, "expected": "You can return them within 30 days.", "threshold": 0.75, "assert": [
            {"type": "starts-with", "value": "Yes", "weight": 3},
            {"type": "rouge-l"},
            {"type": "contains-all", "value": ["30 days", "receipt"]}
        ]}),
        json!({"id": "fails", "vars": {"q": "Sorry, I cannot help with that."}, "assert": [
            {"type": "not-starts-with", "value": "Sorry"},
            {"type": "icontains-any", "value": ["HELP"]},
            {"type": "regex", "value": "^sorry", "flags": "i"},
            {"type": "word-count", "max": 3}
        ]}),
    ];
    let lines: Vec<String> = cases.iter().map(|c| c.to_string()).collect();
    repo.write("evals/s.jsonl", &(lines.join("\n") + "\n"));
    let base = repo.commit("base");
    // A new temperature: every case is affected and the fake answers as before.
    repo.write(
        "models/m.yaml",
        &format!("provider: openai\nmodel: chat-1\nbase_url: {url}\nparameters: {{ temperature: 0.1 }}\npricing: {{ input_per_1k_tokens: 0.001, output_per_1k_tokens: 0.002 }}\n"),
    );
    let head = repo.commit("temperature");
    let (code, report) = check(&repo, &base, &head, &[]);
    assert_eq!(code, 0, "{report}");
    let suite = &report["suites"][0];
    assert_eq!(suite["cases"]["evaluated"], 3, "{suite}");
    let assertions = metric_of(suite, "assertions");
    assert!(
        (assertions["head"].as_f64().unwrap() - 2.0 / 3.0).abs() < 1e-9,
        "{assertions}"
    );
    let failures = suite["failures"].as_array().unwrap();
    let failed: Vec<&str> = failures
        .iter()
        .filter(|f| f["metric"] == "assertions")
        .map(|f| f["case"].as_str().unwrap())
        .collect();
    assert_eq!(failed, vec!["fails"], "{suite}");
    let detail = failures[0]["detail"].as_str().unwrap();
    assert!(
        detail.contains("not-starts-with \"Sorry\": it does"),
        "{detail}"
    );
    assert!(
        detail.contains("word-count: 6 words (want at most 3)"),
        "{detail}"
    );
    assert!(!detail.contains("icontains-any"), "{detail}");
}

/// Grades by model: the cheap judge (`judge-1`) is unsure (0.5) about answers to
/// "How long…", sure (0.95) about the rest; the heavy judge (`big-judge`) gives 0.9.
struct TwoJudges;

impl Respond for TwoJudges {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        let text = body["messages"].to_string();
        let content = match body["model"].as_str() {
            Some("judge-1") if text.contains("How long") => {
                json!({"faithfulness": 0.5, "relevance": 0.9, "hallucination": false, "reason": "unsure"}).to_string()
            }
            Some("judge-1") => json!({"faithfulness": 0.95, "relevance": 0.9, "hallucination": false, "reason": "ok"}).to_string(),
            Some("big-judge") => json!({"faithfulness": 0.9, "relevance": 0.9, "hallucination": false, "reason": "checked"}).to_string(),
            _ => "Returns within 30 days.".to_string(),
        };
        ResponseTemplate::new(200).set_body_json(json!({
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 10}
        }))
    }
}

/// SPEC §1 `judge_escalation`: answers whose cheap-judge score lands in the band are
/// graded again by `release.judge`, whose grade counts; the report says how many and
/// what it cost; the band and the heavy judge are in the score key.
#[tokio::test]
async fn ambiguous_answers_are_escalated_to_the_release_judge() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(TwoJudges)
        .mount(&server)
        .await;
    let url = format!("{}/v1", server.uri());
    let (repo, _) = setup(&url, 1, true);
    let config = repo.read(".promptgate.yml").replace(
        "    metrics:\n",
        "    judge_escalation: { band: [0.4, 0.7] }\n    metrics:\n",
    );
    repo.write(".promptgate.yml", &config);
    repo.write(
        "models/judge.yaml",
        &format!("provider: openai\nmodel: big-judge\nbase_url: {url}\npricing: {{ input_per_1k_tokens: 1.0, output_per_1k_tokens: 1.0 }}\n"),
    );
    let base = repo.commit("escalation");
    repo.write("prompts/user.j2", "Q: {{ q }}");
    let head = repo.commit("prompt");
    let (code, report) = check(&repo, &base, &head, &[]);
    assert_eq!(code, 0, "{report}");
    let suite = &report["suites"][0];
    let e = &suite["judge_escalation"];
    assert_eq!(e["judge"], "big-judge", "{suite}");
    assert_eq!(e["judged"], 4, "2 cases at base and head: {e}");
    assert_eq!(e["escalated"], 2, "case a at both sides: {e}");
    // 2 escalated calls × (100 + 10 tokens) at $1 per 1k.
    assert!((e["cost_usd"].as_f64().unwrap() - 0.22).abs() < 1e-9, "{e}");
    // The heavy judge's 0.9 replaces the cheap 0.5: (0.9 + 0.95) / 2.
    let faith = metric_of(suite, "faithfulness");
    assert!(
        (faith["head"].as_f64().unwrap() - 0.925).abs() < 1e-9,
        "{faith}"
    );
    // 4 generations, 4 cheap judge calls, 2 escalations.
    assert_eq!(report["usage"]["model_calls"], 10, "{report}");

    // A wider band escalates more: a new score key, so the cases are scored again.
    let wider = repo
        .read(".promptgate.yml")
        .replace("[0.4, 0.7]", "[0.4, 0.99]");
    repo.write(".promptgate.yml", &wider);
    let base2 = repo.commit("wider band");
    let (_, again) = check(&repo, &base2, &base2, &["--full"]);
    let e = &again["suites"][0]["judge_escalation"];
    assert_eq!(
        e["escalated"], e["judged"],
        "every grade is in the band now: {e}"
    );
}

/// Echoes generations, embeds by bag of words, and grades rubrics: 0.9 when the graded
/// answer says "please", else 0.2.
struct Rubrics;

impl Respond for Rubrics {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        if req.url.path().ends_with("/embeddings") {
            let input = body["input"].as_str().unwrap_or_default();
            return ResponseTemplate::new(200).set_body_json(json!({
                "data": [{"index": 0, "embedding": common::bag_of_words(input)}],
                "usage": {"prompt_tokens": 3}
            }));
        }
        let messages = body["messages"].as_array().cloned().unwrap_or_default();
        let last = messages
            .last()
            .and_then(|m| m["content"].as_str())
            .unwrap_or_default()
            .to_string();
        let content = if messages[0]["content"]
            .as_str()
            .unwrap_or_default()
            .contains("against a rubric")
        {
            let answer = last.split("## Answer to grade").nth(1).unwrap_or_default();
            let score = if answer.contains("please") { 0.9 } else { 0.2 };
            json!({"score": score, "reason": "fake rubric"}).to_string()
        } else {
            last
        };
        ResponseTemplate::new(200).set_body_json(json!({
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5}
        }))
    }
}

/// SPEC §2 `similar` and `llm-rubric`: graded by the evaluators, whatever the suite's
/// metrics; the grade and the threshold decide; the grader is in the score key.
#[tokio::test]
async fn similar_and_llm_rubric_assertions_are_graded_by_the_evaluators() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(Rubrics)
        .mount(&server)
        .await;
    let url = format!("{}/v1", server.uri());
    let repo = TestRepo::new();
    repo.write(
        ".promptgate.yml",
        &format!("version: 1\nsuites:\n  s:\n    prompts: {{ user: prompts/user.j2 }}\n    model: models/m.yaml\n    dataset: evals/s.jsonl\n    metrics:\n      assertions: {{ min: 0.0 }}\nevaluators:\n  embedding: {{ provider: openai, model: embed-1, base_url: \"{url}\" }}\n  judge: {{ provider: openai, model: judge-1, base_url: \"{url}\" }}\n"),
    );
    repo.write("prompts/user.j2", "{{ q }}");
    repo.write(
        "models/m.yaml",
        &format!("provider: openai\nmodel: chat-1\nbase_url: {url}\n"),
    );
    repo.write(
        "evals/s.jsonl",
        concat!(
            r#"{"id": "polite", "vars": {"q": "please return the shoes within 30 days"}, "assert": [{"type": "similar", "value": "return the shoes within 30 days please", "threshold": 0.9}, {"type": "llm-rubric", "value": "The answer is polite.", "threshold": 0.8}]}"#,
            "\n",
            r#"{"id": "curt", "vars": {"q": "returns: 30 days"}, "assert": [{"type": "llm-rubric", "value": "The answer is polite.", "threshold": 0.8}]}"#,
            "\n",
            r#"{"id": "far", "vars": {"q": "our store opens at nine"}, "assert": [{"type": "similar", "value": "return the shoes within 30 days"}]}"#,
            "\n"
        ),
    );
    let base = repo.commit("base");
    repo.write("prompts/user.j2", "{{ q }} ");
    let head = repo.commit("head");
    let (_, report) = check(&repo, &base, &head, &[]);
    let suite = &report["suites"][0];
    assert_eq!(suite["verdict"], "pass", "{suite}");
    let failing: Vec<&str> = suite["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["case"].as_str().unwrap())
        .collect();
    assert_eq!(failing, ["curt", "far"], "{suite}");
    let detail = suite["failures"].to_string();
    assert!(
        detail.contains("scored 0.200 (at least 0.8): fake rubric"),
        "{detail}"
    );
    // One in three cases passes its assertions.
    let m = metric_of(suite, "assertions");
    assert!(
        (m["head"].as_f64().unwrap() - 1.0 / 3.0).abs() < 1e-9,
        "{m}"
    );

    // No embedding evaluator: `similar` cannot be graded, and that is an error.
    let no_embed = repo
        .read(".promptgate.yml")
        .lines()
        .filter(|l| !l.contains("embedding:"))
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    repo.write(".promptgate.yml", &no_embed);
    let base2 = repo.commit("no embedding");
    repo.write("prompts/user.j2", "{{ q }}  ");
    let head2 = repo.commit("head2");
    let (code, report) = check(&repo, &base2, &head2, &[]);
    assert_eq!(code, 2, "{report}");
    assert!(
        report["suites"][0]["errors"]
            .to_string()
            .contains("assertion `similar` needs `evaluators.embedding`"),
        "{report}"
    );
}
