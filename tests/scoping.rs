//! Diff scoping through the real binary, with model calls counted at a fake
//! OpenAI-compatible server (SPEC §3): only affected cases run, at base and head, and a
//! re-run makes no call.

mod common;

use common::{
    calls, check_json as check, fake_openai, generation_calls, metric_of, suite_of as suite,
    TestRepo,
};

const SUPPORT_CASES: usize = 6;
const BILLING_CASES: usize = 4;

fn config(similarity_min: f64) -> String {
    format!(
        r#"version: 1
suites:
  support:
    prompts:
      system: prompts/support/system.j2
      user: prompts/support/user.j2
    model: models/support.yaml
    dataset: evals/support.jsonl
    metrics:
      assertions: {{ min: 1.0 }}
      similarity: {{ min: {similarity_min} }}
  billing:
    prompts:
      user: prompts/billing/user.j2
    model: models/billing.yaml
    dataset: evals/billing.jsonl
    metrics:
      assertions: {{ min: 1.0 }}
evaluators:
  embedding: {{ provider: openai, model: embed-1, base_url: "{{BASE}}" }}
"#
    )
}

fn manifest(base_url: &str, temperature: f64) -> String {
    format!(
        "provider: openai\nmodel: fake-chat\nbase_url: {base_url}\nparameters: {{ temperature: {temperature}, max_tokens: 64 }}\npricing: {{ input_per_1k_tokens: 0.001, output_per_1k_tokens: 0.002 }}\n"
    )
}

fn support_dataset(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "{{\"id\": \"s{i}\", \"vars\": {{\"question\": \"refund question {i}\"}}, \"expected\": \"refund question {i}\", \"assert\": [{{\"type\": \"contains\", \"value\": \"question {i}\"}}]}}\n"
            )
        })
        .collect()
}

fn billing_dataset(n: usize) -> String {
    (0..n)
        .map(|i| format!("{{\"id\": \"b{i}\", \"vars\": {{\"invoice\": \"INV-{i}\"}}, \"assert\": [{{\"type\": \"icontains\", \"value\": \"inv-{i}\"}}]}}\n"))
        .collect()
}

/// A repository with two suites, committed as the base.
fn setup(base_url: &str) -> (TestRepo, String) {
    let repo = TestRepo::new();
    repo.write(".promptgate.yml", &config(0.8).replace("{BASE}", base_url));
    repo.write("README.md", "# demo\n");
    repo.write("prompts/support/system.j2", "You are a support agent.");
    repo.write("prompts/support/user.j2", "{{ question }}");
    repo.write("prompts/billing/user.j2", "Explain invoice {{ invoice }}.");
    repo.write("models/support.yaml", &manifest(base_url, 0.2));
    repo.write("models/billing.yaml", &manifest(base_url, 0.0));
    repo.write("evals/support.jsonl", &support_dataset(SUPPORT_CASES));
    repo.write("evals/billing.jsonl", &billing_dataset(BILLING_CASES));
    let base = repo.commit("base");
    (repo, base)
}

#[tokio::test]
async fn readme_only_change_runs_nothing() {
    let server = fake_openai().await;
    let (repo, base) = setup(&format!("{}/v1", server.uri()));
    repo.write("README.md", "# demo\n\nMore words.\n");
    let head = repo.commit("docs");
    let (code, report) = check(&repo, &base, &head, &[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["verdict"], "pass");
    assert_eq!(suite(&report, "support")["verdict"], "skipped");
    assert_eq!(suite(&report, "billing")["verdict"], "skipped");
    assert_eq!(calls(&server).await, (0, 0));
    assert_eq!(report["usage"]["model_calls"], 0);
}

#[tokio::test]
async fn one_template_runs_only_its_suite_at_base_and_head_then_rerun_is_free() {
    let server = fake_openai().await;
    let (repo, base) = setup(&format!("{}/v1", server.uri()));
    repo.write(
        "prompts/billing/user.j2",
        "Please explain invoice {{ invoice }} briefly.",
    );
    let head = repo.commit("billing prompt");
    let (code, report) = check(&repo, &base, &head, &[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(suite(&report, "support")["verdict"], "skipped");
    let billing = suite(&report, "billing");
    assert_eq!(billing["verdict"], "pass", "{billing}");
    assert_eq!(billing["cases"]["affected"], BILLING_CASES);
    assert_eq!(billing["triggered_by"][0], "prompts/billing/user.j2");
    // Every affected case once at base and once at head; billing has no embeddings.
    assert_eq!(calls(&server).await, (2 * BILLING_CASES, 0));
    assert_eq!(report["usage"]["model_calls"], 2 * BILLING_CASES);

    // A re-run is answered from the cache.
    let (code2, report2) = check(&repo, &base, &head, &[]);
    assert_eq!(code2, 0);
    assert_eq!(
        calls(&server).await,
        (2 * BILLING_CASES, 0),
        "re-run made calls"
    );
    assert_eq!(report2["usage"]["model_calls"], 0);
    assert_eq!(suite(&report2, "billing")["cases"]["cached"], BILLING_CASES);
    assert_eq!(
        report2["usage"]["cache_hits"].as_u64().unwrap() as usize,
        2 * BILLING_CASES
    );
}

#[tokio::test]
async fn one_dataset_line_runs_one_case() {
    let server = fake_openai().await;
    let (repo, base) = setup(&format!("{}/v1", server.uri()));
    let text = repo
        .read("evals/support.jsonl")
        .replace("refund question 3\"}", "refund question 3, in euros\"}");
    repo.write("evals/support.jsonl", &text);
    let head = repo.commit("one case");
    let (_, report) = check(&repo, &base, &head, &[]);
    let support = suite(&report, "support");
    assert_eq!(support["cases"]["total"], SUPPORT_CASES);
    assert_eq!(support["cases"]["affected"], 1, "{support}");
    // Cold cache: every base case (the whole-suite gates) and the affected head case.
    assert_eq!(generation_calls(&server).await, SUPPORT_CASES + 1);
    assert_eq!(
        report["usage"]["baseline_calls"].as_u64(),
        Some(SUPPORT_CASES as u64)
    );
    assert_eq!(suite(&report, "billing")["verdict"], "skipped");
}

#[tokio::test]
async fn expected_only_change_reuses_the_generation() {
    let server = fake_openai().await;
    let (repo, base) = setup(&format!("{}/v1", server.uri()));
    let text = repo.read("evals/support.jsonl").replace(
        "\"expected\": \"refund question 2\"",
        "\"expected\": \"a refund answer\"",
    );
    repo.write("evals/support.jsonl", &text);
    let head = repo.commit("expected changed");
    let (_, report) = check(&repo, &base, &head, &[]);
    // The score key changed, the input key did not: one generation serves both sides,
    // and the other base cases are generated once for the whole-suite gates.
    assert_eq!(suite(&report, "support")["cases"]["affected"], 1);
    assert_eq!(generation_calls(&server).await, SUPPORT_CASES);
}

#[tokio::test]
async fn manifest_parameter_runs_the_whole_suite() {
    let server = fake_openai().await;
    let url = format!("{}/v1", server.uri());
    let (repo, base) = setup(&url);
    repo.write("models/support.yaml", &manifest(&url, 0.7));
    let head = repo.commit("temperature");
    let (_, report) = check(&repo, &base, &head, &[]);
    assert_eq!(
        suite(&report, "support")["cases"]["affected"],
        SUPPORT_CASES
    );
    assert_eq!(suite(&report, "billing")["verdict"], "skipped");
    assert_eq!(generation_calls(&server).await, 2 * SUPPORT_CASES);
    let (_, emb) = calls(&server).await;
    assert!(emb > 0, "similarity needs embeddings");
}

#[tokio::test]
async fn base_results_are_reused_by_a_later_change() {
    let server = fake_openai().await;
    let (repo, base) = setup(&format!("{}/v1", server.uri()));
    repo.write("prompts/billing/user.j2", "Invoice {{ invoice }}: explain.");
    let head1 = repo.commit("pr 1");
    check(&repo, &base, &head1, &[]);
    assert_eq!(generation_calls(&server).await, 2 * BILLING_CASES);
    // A second PR from the same base: base answers come from the cache.
    repo.git(&["checkout", "-q", "-b", "pr2", &base]);
    repo.write(
        "prompts/billing/user.j2",
        "Invoice {{ invoice }}, explained.",
    );
    let head2 = repo.commit("pr 2");
    check(&repo, &base, &head2, &[]);
    assert_eq!(generation_calls(&server).await, 3 * BILLING_CASES);
}

#[tokio::test]
async fn full_evaluates_every_case() {
    let server = fake_openai().await;
    let (repo, base) = setup(&format!("{}/v1", server.uri()));
    repo.write("README.md", "# changed\n");
    let head = repo.commit("docs");
    let (_, report) = check(&repo, &base, &head, &["--full"]);
    assert_eq!(
        suite(&report, "support")["cases"]["evaluated"],
        SUPPORT_CASES
    );
    assert_eq!(suite(&report, "support")["cases"]["affected"], 0);
    // Base and head render identically, so each case is generated once.
    assert_eq!(
        generation_calls(&server).await,
        SUPPORT_CASES + BILLING_CASES
    );
}

#[tokio::test]
async fn a_pr_cannot_loosen_its_own_thresholds() {
    let server = fake_openai().await;
    let url = format!("{}/v1", server.uri());
    let (repo, base) = setup(&url);
    // The head prefixes every answer, so `contains "question N"` still holds but the
    // billing assertion is broken by the new prompt; the PR also drops the threshold.
    repo.write("prompts/billing/user.j2", "Explain the bill.");
    repo.write(
        ".promptgate.yml",
        &config(0.8).replace("{BASE}", &url).replace(
            "assertions: { min: 1.0 }\nevaluators",
            "assertions: { min: 0.0 }\nevaluators",
        ),
    );
    let head = repo.commit("loosen");
    let (code, report) = check(&repo, &base, &head, &[]);
    assert_eq!(report["verdict"], "fail", "{report}");
    assert_eq!(code, 1);
    let change = &report["config_change"];
    assert_eq!(change["valid"], true);
    assert!(
        change["changes"].to_string().contains("billing.assertions"),
        "{change}"
    );
}

#[tokio::test]
async fn regression_beyond_max_regression_needs_review() {
    let server = fake_openai().await;
    let url = format!("{}/v1", server.uri());
    let (repo, base) = setup(&url);
    // The fake prefixes answers with the system prompt's PREFIX word, which lowers the
    // similarity to `expected` without breaking the `contains` assertions.
    repo.write(
        "prompts/support/system.j2",
        "You are a support agent. PREFIX=Sure:",
    );
    let head = repo.commit("prefix");
    let (code, report) = check(&repo, &base, &head, &["--suite", "support"]);
    let support = suite(&report, "support");
    let sim = metric_of(support, "similarity");
    assert_eq!(sim["base"], 1.0, "{support}");
    assert!(sim["delta"].as_f64().unwrap() < -0.05, "{sim}");
    assert_eq!(sim["regression"], true);
    assert_eq!(support["verdict"], "needs_review", "{support}");
    assert_eq!(report["verdict"], "needs_review");
    assert_eq!(code, 1);
}

#[tokio::test]
async fn template_that_does_not_render_is_an_error_naming_file_and_line() {
    let server = fake_openai().await;
    let (repo, base) = setup(&format!("{}/v1", server.uri()));
    repo.write("prompts/billing/user.j2", "Explain\ninvoice {{ invoce }}.");
    let head = repo.commit("typo");
    let (code, report) = check(&repo, &base, &head, &[]);
    assert_eq!(code, 2, "{report}");
    assert_eq!(report["verdict"], "error");
    let errors = suite(&report, "billing")["errors"].to_string();
    assert!(errors.contains("prompts/billing/user.j2:2"), "{errors}");
    assert!(errors.contains("evals/billing.jsonl:1"), "{errors}");
    assert_eq!(calls(&server).await, (0, 0));
}

#[tokio::test]
async fn provider_failure_is_an_error_naming_the_case() {
    // Nothing listens here: every call fails to connect.
    let (repo, base) = setup("http://127.0.0.1:9/v1");
    repo.write(
        "prompts/billing/user.j2",
        "Explain invoice {{ invoice }} now.",
    );
    let head = repo.commit("change");
    let (code, report) = check(&repo, &base, &head, &["--timeout", "2"]);
    assert_eq!(code, 2, "{report}");
    let errors = suite(&report, "billing")["errors"].to_string();
    assert!(
        errors.contains("case `b0` (evals/billing.jsonl:1)"),
        "{errors}"
    );
}

#[tokio::test]
async fn record_then_replay_needs_no_server() {
    let server = fake_openai().await;
    let (repo, base) = setup(&format!("{}/v1", server.uri()));
    repo.write("prompts/support/user.j2", "Q: {{ question }}");
    let head = repo.commit("change");
    let (_, recorded) = check(&repo, &base, &head, &["--record"]);
    let n = calls(&server).await;
    assert!(n.0 > 0);
    // Fresh cache, replay only: same verdict and metrics, no call reaches the server.
    std::fs::remove_file(repo.cache_path()).expect("cache exists");
    let (_, replayed) = check(&repo, &base, &head, &["--replay"]);
    assert_eq!(calls(&server).await, n);
    assert_eq!(replayed["verdict"], recorded["verdict"]);
    assert_eq!(
        suite(&replayed, "support")["metrics"],
        suite(&recorded, "support")["metrics"]
    );

    // A case with no recording is an error that names it.
    std::fs::remove_file(repo.cache_path()).expect("cache exists");
    let text = repo.read("evals/support.jsonl")
        + "{\"id\": \"new-case\", \"vars\": {\"question\": \"never recorded\"}}\n";
    repo.write("evals/support.jsonl", &text);
    let head2 = repo.commit("new case");
    let (code, report) = check(&repo, &base, &head2, &["--replay"]);
    assert_eq!(code, 2);
    let errors = suite(&report, "support")["errors"].to_string();
    assert!(
        errors.contains("case `new-case`") && errors.contains("no recording"),
        "{errors}"
    );
}

/// Issue 10 items 5 and 6: a head template that loops 10^10 times, or that repeats a
/// large variable into a huge message, is an `error` for its case that names the
/// template and the limit, and ends quickly; no model call is made for it.
#[tokio::test]
async fn template_cpu_and_memory_bombs_are_errors_naming_the_template_and_limit() {
    let server = fake_openai().await;
    let (repo, base) = setup(&format!("{}/v1", server.uri()));
    repo.write(
        "prompts/billing/user.j2",
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}Explain invoice {{ invoice }}.",
    );
    let head = repo.commit("cpu bomb");
    // Without fuel this render would run for hours; with it, the check ends.
    let (code, report) = check(&repo, &base, &head, &[]);
    assert_eq!(code, 2, "{report}");
    let text = report.to_string();
    assert!(text.contains("prompts/billing/user.j2"), "{text}");
    assert!(text.contains("template steps"), "{text}");

    repo.git(&["checkout", "-q", &base, "-b", "memory"]);
    repo.write(
        "prompts/billing/user.j2",
        "{% for i in range(3000) %}{{ invoice }}{{ invoice }}{{ invoice }}{% endfor %}",
    );
    repo.write(
        "evals/billing.jsonl",
        &format!(
            "{{\"id\": \"b0\", \"vars\": {{\"invoice\": \"{}\"}}}}\n",
            "x".repeat(200)
        ),
    );
    let head = repo.commit("memory bomb");
    let (code, report) = check(&repo, &base, &head, &[]);
    assert_eq!(code, 2, "{report}");
    let text = report.to_string();
    assert!(text.contains("prompts/billing/user.j2"), "{text}");
    assert!(text.contains("the limit is 1048576 bytes"), "{text}");
    assert_eq!(
        generation_calls(&server).await,
        0,
        "no call for a case that errs"
    );
}

/// Issue 10 item 9: with `--replay`, recordings committed by the change under test are
/// answers it chose itself; the report says so in `notes`.
#[tokio::test]
async fn replaying_recordings_the_change_wrote_is_flagged() {
    let server = fake_openai().await;
    let (repo, base) = setup(&format!("{}/v1", server.uri()));
    repo.write(
        "prompts/billing/user.j2",
        "Explain invoice {{ invoice }} briefly.",
    );
    let head = repo.commit("billing prompt");
    let (code, _) = check(&repo, &base, &head, &["--record"]);
    assert_eq!(code, 0);
    let recorded = repo.commit("recordings");
    let (_, report) = check(&repo, &base, &recorded, &["--replay"]);
    let notes = report["notes"].to_string();
    assert!(
        notes.contains("recording(s) under `.promptgate/recordings/` changed"),
        "{notes}"
    );
    // Recordings already at the base are not flagged.
    let (_, report) = check(&repo, &recorded, &recorded, &["--replay"]);
    assert!(
        !report["notes"].to_string().contains("recording(s)"),
        "{report}"
    );
}

/// Issue 10 item 1: a head manifest that points its key at a server of its own is an
/// error naming the manifest line, and that server receives nothing. The CLI can widen
/// the endpoints for local use, but a key still goes only where it is paired.
#[tokio::test]
async fn a_head_manifest_cannot_send_keys_or_prompts_to_its_own_server() {
    let server = fake_openai().await;
    let attacker = fake_openai().await;
    let (repo, base) = setup(&format!("{}/v1", server.uri()));
    repo.write(
        "models/billing.yaml",
        &format!(
            "provider: openai\nmodel: fake-chat\nbase_url: {}/v1\napi_key_env: OPENAI_API_KEY\n",
            attacker.uri()
        ),
    );
    let head = repo.commit("point billing at my server");
    let widen = format!("{}/*", attacker.uri());
    for (flags, line, why) in [
        (
            vec![],
            "models/billing.yaml:3",
            "is not an allowed model endpoint",
        ),
        // Widened for a local run, the endpoint is allowed, but not the key.
        (
            vec!["--allow-endpoint", widen.as_str()],
            "models/billing.yaml:4",
            "api_key_env OPENAI_API_KEY may not be sent",
        ),
    ] {
        let (code, report) = check(&repo, &base, &head, &flags);
        assert_eq!(code, 2, "{report}");
        let errors = suite(&report, "billing")["errors"].to_string();
        assert!(errors.contains(line) && errors.contains(why), "{errors}");
        let received = attacker.received_requests().await.unwrap_or_default();
        assert!(
            received.is_empty(),
            "the attacker got {} requests",
            received.len()
        );
    }
}

/// Issue 10 item 3: push 1 points the manifest at a server that answers perfectly
/// (allowed here by a widened endpoint list), push 2 restores the manifest with the
/// same regressed prompt. The input keys are equal, but the cached answers came from
/// the other endpoint: push 2 asks the real model and fails.
#[tokio::test]
async fn answers_cached_from_another_endpoint_are_not_served() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let real = fake_openai().await;
    let perfect = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "INV-0 INV-1 INV-2 INV-3"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 5}
        })))
        .mount(&perfect)
        .await;
    let (repo, base) = setup(&format!("{}/v1", real.uri()));
    // The regression: the prompt no longer carries the invoice number.
    repo.write("prompts/billing/user.j2", "Explain the bill.");
    let manifest = repo.read("models/billing.yaml");
    repo.write(
        "models/billing.yaml",
        &manifest.replace(&real.uri(), &perfect.uri()),
    );
    let push1 = repo.commit("ungrounded prompt, answered by my server");
    let widen = format!("{}/*", perfect.uri());
    let (code, report) = check(&repo, &base, &push1, &["--allow-endpoint", &widen]);
    assert_eq!(code, 0, "the perfect server passes push 1: {report}");

    repo.write("models/billing.yaml", &manifest);
    let push2 = repo.commit("manifest restored");
    let before = generation_calls(&real).await;
    let (code, report) = check(&repo, &base, &push2, &[]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(suite(&report, "billing")["verdict"], "fail", "{report}");
    assert!(
        generation_calls(&real).await > before,
        "the real model was asked"
    );
}

/// `promptgate baseline` in the repository, as a CI job on the default branch runs it.
fn baseline(repo: &TestRepo, rev: &str) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_promptgate"))
        .args(["baseline", "--repo"])
        .arg(repo.path())
        .args(["--rev", rev])
        .output()
        .expect("run promptgate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// SPEC §3's call counts: with the default branch's results cached by `baseline`, a PR
/// pays for its affected head cases only, and its gates are over the whole suite.
#[tokio::test]
async fn a_warm_baseline_makes_a_pr_pay_for_its_affected_cases_only() {
    let server = fake_openai().await;
    let (repo, base) = setup(&format!("{}/v1", server.uri()));
    let (code, out) = baseline(&repo, &base);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("suite `support`") && out.contains("suite `billing`"),
        "{out}"
    );
    // Base and head are the same revision: every case once.
    assert_eq!(
        generation_calls(&server).await,
        SUPPORT_CASES + BILLING_CASES
    );
    // A second baseline of the same revision is free.
    let (code, _) = baseline(&repo, &base);
    assert_eq!(code, 0);
    assert_eq!(
        generation_calls(&server).await,
        SUPPORT_CASES + BILLING_CASES
    );

    // One dataset line edited: one head case evaluated, nothing else.
    let text = repo
        .read("evals/support.jsonl")
        .replace("refund question 3\"}", "refund question 3, in euros\"}");
    repo.write("evals/support.jsonl", &text);
    let head = repo.commit("one case");
    let (code, report) = check(&repo, &base, &head, &[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(
        generation_calls(&server).await,
        SUPPORT_CASES + BILLING_CASES + 1
    );
    assert_eq!(report["usage"]["model_calls"], 1, "{report}");
    assert_eq!(report["usage"]["baseline_calls"], 0, "{report}");
    let support = suite(&report, "support");
    assert_eq!(support["cases"]["affected"], 1);
    assert_eq!(support["cases"]["evaluated"], 1);
    // Whole-suite values: the edited case still passes `contains "question 3"`, so all
    // six cases pass at both sides, and the interval of a zero change is a point.
    let assertions = metric_of(support, "assertions");
    assert_eq!(
        (assertions["base"].as_f64(), assertions["head"].as_f64()),
        (Some(1.0), Some(1.0))
    );
    assert_eq!(
        assertions["delta_ci"],
        serde_json::json!([0.0, 0.0]),
        "{assertions}"
    );
    assert_eq!(support["flips"]["unchanged"], SUPPORT_CASES, "{support}");

    // A re-run: nothing.
    let (_, again) = check(&repo, &base, &head, &[]);
    assert_eq!(again["usage"]["model_calls"], 0);
    assert_eq!(
        generation_calls(&server).await,
        SUPPORT_CASES + BILLING_CASES + 1
    );
}

/// One case's assertion broken at head: the whole suite's value falls by 1/N, the
/// interval holds the delta, and exactly that case is listed as regressed.
#[tokio::test]
async fn a_broken_case_is_a_flip_and_the_delta_is_over_the_whole_suite() {
    let server = fake_openai().await;
    let (repo, base) = setup(&format!("{}/v1", server.uri()));
    // The fake echoes the question: `contains "question 2"` no longer holds.
    let text = repo.read("evals/support.jsonl").replace(
        "\"question\": \"refund question 2\"",
        "\"question\": \"refund q2\"",
    );
    repo.write("evals/support.jsonl", &text);
    let head = repo.commit("break s2");
    let (code, report) = check(&repo, &base, &head, &["--suite", "support"]);
    let support = suite(&report, "support");
    assert_eq!(support["cases"]["affected"], 1, "{support}");
    assert_eq!(
        support["flips"]["regressed"],
        serde_json::json!(["s2"]),
        "{support}"
    );
    assert_eq!(support["flips"]["fixed"], serde_json::json!([]));
    let row = metric_of(support, "assertions");
    let n = SUPPORT_CASES as f64;
    assert!(
        (row["head"].as_f64().unwrap() - (n - 1.0) / n).abs() < 1e-9,
        "{row}"
    );
    let delta = row["delta"].as_f64().unwrap();
    assert!((delta + 1.0 / n).abs() < 1e-9, "{row}");
    let ci = row["delta_ci"].as_array().cloned().unwrap_or_default();
    let (low, high) = (ci[0].as_f64().unwrap(), ci[1].as_f64().unwrap());
    assert!(low < delta && delta < high, "{row}");
    // The head fails `assertions ≥ 1.0` and base passed it: a failure.
    assert_eq!(support["verdict"], "fail", "{support}");
    assert_eq!(code, 1);
    // The regressed case leads the details, with both outputs.
    assert_eq!(support["details"][0]["case"], "s2", "{support}");
    assert!(support["details"][0]["base"]["output"].is_string());

    // The markdown comment says the same.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_promptgate"))
        .args(["check", "--repo"])
        .arg(repo.path())
        .args(["--base", &base, "--head", &head, "--suite", "support"])
        .output()
        .unwrap();
    let md = String::from_utf8_lossy(&out.stdout);
    assert!(md.contains("**1 regressed** (`s2`)"), "{md}");
    assert!(
        md.contains(&format!("{:.3} [", -1.0 / n).replace('-', "−")),
        "{md}"
    );
}
