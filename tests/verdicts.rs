//! Verdict integrity through the real binary (issue [2/9]): no green verdict the change
//! did not earn. Shared partials in other folders, a broken head config, gates that
//! cannot be computed, and datasets a PR weakens.

mod common;

use common::{check_json, fake_openai, generation_calls, git_in, suite_of, TestRepo};

const CASES: usize = 3;

fn config(base_url: &str) -> String {
    format!(
        "version: 1\nsuites:\n  support:\n    prompts:\n      system: prompts/support/system.j2\n      user: prompts/support/user.j2\n    model: models/m.yaml\n    dataset: evals/support.jsonl\n    metrics:\n      assertions: {{ min: 1.0 }}\n  billing:\n    prompts:\n      user: prompts/billing/user.j2\n    model: models/m.yaml\n    dataset: evals/billing.jsonl\n    metrics:\n      assertions: {{ min: 1.0 }}\n# {base_url}\n"
    )
}

fn dataset(prefix: &str) -> String {
    (0..CASES)
        .map(|i| {
            format!(
                "{{\"id\": \"{prefix}{i}\", \"vars\": {{\"q\": \"question {i}\"}}, \"assert\": [{{\"type\": \"contains\", \"value\": \"question {i}\"}}]}}\n"
            )
        })
        .collect()
}

/// Two suites; `support` renders a partial from another folder, which includes a
/// second partial relative to itself.
fn setup(base_url: &str) -> (TestRepo, String) {
    let repo = TestRepo::new();
    repo.write(".promptgate.yml", &config(base_url));
    repo.write(
        "prompts/support/system.j2",
        "{% include \"prompts/shared/tone.j2\" %}",
    );
    repo.write(
        "prompts/shared/tone.j2",
        "Be kind. {% include \"voice.j2\" %}",
    );
    repo.write("prompts/shared/voice.j2", "Speak plainly.");
    repo.write("prompts/support/user.j2", "{{ q }}");
    repo.write("prompts/billing/user.j2", "Billing: {{ q }}");
    repo.write(
        "models/m.yaml",
        &format!("provider: openai\nmodel: fake-chat\nbase_url: {base_url}\n"),
    );
    repo.write("evals/support.jsonl", &dataset("s"));
    repo.write("evals/billing.jsonl", &dataset("b"));
    let base = repo.commit("base");
    (repo, base)
}

#[tokio::test]
async fn a_shared_partial_in_another_folder_affects_the_suite_that_includes_it() {
    let server = fake_openai().await;
    let (repo, base) = setup(&format!("{}/v1", server.uri()));
    repo.write(
        "prompts/shared/tone.j2",
        "Be very kind. {% include \"voice.j2\" %}",
    );
    let head = repo.commit("edit the shared partial");
    let (code, report) = check_json(&repo, &base, &head, &[]);
    assert_eq!(code, 0, "{report}");
    let support = suite_of(&report, "support");
    assert_eq!(support["verdict"], "pass", "{support}");
    assert_eq!(support["cases"]["affected"], CASES, "{support}");
    assert_eq!(support["triggered_by"][0], "prompts/shared/tone.j2");
    assert_eq!(suite_of(&report, "billing")["verdict"], "skipped");
    assert_eq!(generation_calls(&server).await, 2 * CASES);
}

#[tokio::test]
async fn a_partial_included_from_a_partial_affects_the_suite() {
    let server = fake_openai().await;
    let (repo, base) = setup(&format!("{}/v1", server.uri()));
    repo.write("prompts/shared/voice.j2", "Speak plainly and briefly.");
    let head = repo.commit("edit the nested partial");
    let (code, report) = check_json(&repo, &base, &head, &[]);
    assert_eq!(code, 0, "{report}");
    let support = suite_of(&report, "support");
    assert_eq!(support["cases"]["affected"], CASES, "{support}");
    assert_eq!(support["triggered_by"][0], "prompts/shared/voice.j2");
    assert_eq!(generation_calls(&server).await, 2 * CASES);
}

#[tokio::test]
async fn a_renamed_partial_is_detected_and_a_dangling_include_is_an_error() {
    let server = fake_openai().await;
    let (repo, base) = setup(&format!("{}/v1", server.uri()));
    // Renamed and its includer updated: same text, so the keys are equal and nothing
    // needs a model call, but the suite is looked at: no case is affected, and the whole
    // suite's gates are read from the cache.
    repo.git(&["mv", "prompts/shared/voice.j2", "prompts/shared/style.j2"]);
    repo.write(
        "prompts/shared/tone.j2",
        "Be kind. {% include \"style.j2\" %}",
    );
    let head = repo.commit("rename the partial");
    let (code, report) = check_json(&repo, &base, &head, &[]);
    assert_eq!(code, 0, "{report}");
    let support = suite_of(&report, "support");
    let triggered = support["triggered_by"].to_string();
    assert!(
        triggered.contains("prompts/shared/voice.j2")
            && triggered.contains("prompts/shared/style.j2"),
        "{support}"
    );
    assert_eq!(support["verdict"], "pass", "{support}");
    assert_eq!(support["cases"]["affected"], 0, "{support}");
    // On a cold cache each case is generated once, as baseline work for the
    // whole-suite gates; nothing for the change itself.
    assert_eq!(generation_calls(&server).await, 3);
    assert_eq!(report["usage"]["baseline_calls"], 3, "{report}");

    // Renamed without updating the includer: an error naming the includer and line.
    repo.git(&["checkout", "-q", "-b", "dangling", &base]);
    repo.git(&["mv", "prompts/shared/voice.j2", "prompts/shared/style.j2"]);
    let head = repo.commit("rename only");
    let (code, report) = check_json(&repo, &base, &head, &[]);
    assert_eq!(code, 2, "{report}");
    let support = suite_of(&report, "support");
    assert_eq!(support["verdict"], "error");
    let errors = support["errors"].to_string();
    assert!(
        errors.contains("prompts/shared/tone.j2:1") && errors.contains("voice.j2"),
        "{errors}"
    );
}

#[tokio::test]
async fn an_unknown_key_in_the_head_config_is_an_error_naming_file_and_line() {
    let server = fake_openai().await;
    let (repo, base) = setup(&format!("{}/v1", server.uri()));
    let text = repo.read(".promptgate.yml").replace(
        "    dataset: evals/billing.jsonl\n",
        "    dataset: evals/billing.jsonl\n    sampels: 3\n",
    );
    repo.write(".promptgate.yml", &text);
    repo.write("prompts/billing/user.j2", "Billing question: {{ q }}");
    let head = repo.commit("typo in the config");
    let (code, report) = check_json(&repo, &base, &head, &[]);
    assert_eq!(code, 2, "{report}");
    assert_eq!(report["verdict"], "error");
    let errors = report["errors"].to_string();
    let line = text.lines().position(|l| l.contains("sampels")).unwrap() + 1;
    assert!(
        errors.contains(&format!(".promptgate.yml:{line}")) && errors.contains("sampels"),
        "{errors}"
    );
    assert_eq!(report["config_change"]["valid"], false, "{report}");
    assert_eq!(generation_calls(&server).await, 0, "nothing is evaluated");
}

#[tokio::test]
async fn a_head_config_naming_a_missing_file_is_an_error() {
    let server = fake_openai().await;
    let (repo, base) = setup(&format!("{}/v1", server.uri()));
    let text = repo.read(".promptgate.yml").replace(
        "dataset: evals/billing.jsonl",
        "dataset: evals/billing-v2.jsonl",
    );
    repo.write(".promptgate.yml", &text);
    let head = repo.commit("point at a dataset that is not there");
    let (code, report) = check_json(&repo, &base, &head, &[]);
    assert_eq!(code, 2, "{report}");
    let errors = report["errors"].to_string();
    assert!(errors.contains("evals/billing-v2.jsonl"), "{errors}");
}

#[tokio::test]
async fn a_gate_that_cannot_be_computed_is_found_by_validate() {
    let repo = TestRepo::new();
    repo.write(
        ".promptgate.yml",
        "version: 1\nsuites:\n  s:\n    prompts: { user: prompts/u.j2 }\n    model: models/m.yaml\n    dataset: evals/s.jsonl\n    metrics:\n      similarity: { min: 0.8 }\n      faithfulness: { min: 0.8 }\n      latency_p95_ms: { max: 2000 }\n",
    );
    repo.write("prompts/u.j2", "{{ q }}");
    repo.write("models/m.yaml", "provider: replay\nmodel: m\n");
    repo.write(
        "evals/s.jsonl",
        "{\"id\": \"a\", \"vars\": {\"q\": \"x\"}}\n",
    );
    repo.commit("base");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_promptgate"))
        .args(["validate", "--repo"])
        .arg(repo.path())
        .output()
        .expect("run promptgate");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{text}");
    for (line, metric, why) in [
        (8, "similarity", "evaluators.embedding"),
        (9, "faithfulness", "evaluators.judge"),
        (10, "latency_p95_ms", "replay"),
    ] {
        assert!(
            text.contains(&format!(
                ".promptgate.yml:{line}: suite `s`: `{metric}` is gated but cannot be computed"
            )) && text.contains(why),
            "{metric}: {text}"
        );
    }
}

#[tokio::test]
async fn deleting_golden_cases_or_their_assertions_needs_review() {
    let server = fake_openai().await;
    let (repo, base) = setup(&format!("{}/v1", server.uri()));
    // s1 is deleted, s2 loses its assertion; a new case is added (never held).
    repo.write(
        "evals/support.jsonl",
        "{\"id\": \"s0\", \"vars\": {\"q\": \"question 0\"}, \"assert\": [{\"type\": \"contains\", \"value\": \"question 0\"}]}\n{\"id\": \"s2\", \"vars\": {\"q\": \"question 2\"}}\n{\"id\": \"s9\", \"vars\": {\"q\": \"question 9\"}, \"assert\": [{\"type\": \"contains\", \"value\": \"9\"}]}\n",
    );
    let head = repo.commit("drop the hard cases");
    let (code, report) = check_json(&repo, &base, &head, &[]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["verdict"], "needs_review");
    let support = suite_of(&report, "support");
    assert_eq!(support["verdict"], "needs_review", "{support}");
    assert_eq!(support["cases"]["removed"], 1, "{support}");
    let changes: Vec<(String, String)> = support["dataset_changes"]
        .as_array()
        .expect("dataset_changes")
        .iter()
        .map(|c| {
            (
                c["case"].as_str().unwrap().to_string(),
                c["change"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        vec![
            ("s1".to_string(), "removed".to_string()),
            ("s2".to_string(), "assertions_removed".to_string())
        ]
    );

    // The comment says which cases and why the suite is held.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_promptgate"))
        .args(["check", "--format", "markdown", "--repo"])
        .arg(repo.path())
        .args(["--base", &base, "--head", &head])
        .output()
        .expect("run promptgate");
    let md = String::from_utf8_lossy(&out.stdout);
    assert!(md.contains("held for review"), "{md}");
    assert!(md.contains("s1: removed at head"), "{md}");
    assert!(md.contains("1 removed"), "{md}");

    // Only removing a case, with nothing left to evaluate, is held too.
    repo.git(&["checkout", "-q", "-b", "only-remove", &base]);
    repo.write(
        "evals/support.jsonl",
        &dataset("s")
            .lines()
            .take(2)
            .map(|l| format!("{l}\n"))
            .collect::<String>(),
    );
    let head = repo.commit("remove one case");
    let (code, report) = check_json(&repo, &base, &head, &[]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(suite_of(&report, "support")["verdict"], "needs_review");

    // Adding cases and assertions is never held.
    repo.git(&["checkout", "-q", "-b", "add", &base]);
    let more = format!(
        "{}{{\"id\": \"s7\", \"vars\": {{\"q\": \"question 7\"}}, \"assert\": [{{\"type\": \"contains\", \"value\": \"question 7\"}}, {{\"type\": \"contains\", \"value\": \"7\"}}]}}\n",
        dataset("s")
    );
    repo.write("evals/support.jsonl", &more);
    let head = repo.commit("add a case");
    let (code, report) = check_json(&repo, &base, &head, &[]);
    assert_eq!(code, 0, "{report}");
    let support = suite_of(&report, "support");
    assert_eq!(support["verdict"], "pass", "{support}");
    assert!(support.get("dataset_changes").is_none(), "{support}");
}

#[tokio::test]
async fn a_changed_expected_is_shown_base_vs_head_and_not_held() {
    let server = fake_openai().await;
    let (repo, base) = setup(&format!("{}/v1", server.uri()));
    repo.write(
        "evals/support.jsonl",
        &dataset("s").replacen("\"vars\"", "\"expected\": \"question 0, new\", \"vars\"", 1),
    );
    let head = repo.commit("add an expected output");
    let (code, report) = check_json(&repo, &base, &head, &[]);
    assert_eq!(code, 0, "{report}");
    let support = suite_of(&report, "support");
    assert_eq!(
        support["dataset_changes"][0]["change"], "expected_changed",
        "{support}"
    );
    let detail = support["details"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["case"] == "s0"))
        .unwrap_or_else(|| panic!("no detail for s0: {support}"));
    assert_eq!(detail["head"]["expected"], "question 0, new", "{detail}");
}

/// Runs `promptgate check` in `dir` with no `--base`; (exit code, stdout, stderr).
fn check_default_base(dir: &std::path::Path) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_promptgate"))
        .args(["check", "--format", "json", "--repo"])
        .arg(dir)
        .output()
        .expect("run promptgate");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[tokio::test]
async fn a_default_base_that_is_the_head_or_cannot_be_resolved_is_an_error() {
    let server = fake_openai().await;
    let (repo, _) = setup(&format!("{}/v1", server.uri()));
    // On the default branch's tip, with a clean tree: nothing to compare.
    let (code, _, err) = check_default_base(repo.path());
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("the default base is the head itself") && err.contains("--base"),
        "{err}"
    );

    // A default branch named `trunk` on the remote, cloned shallow and single-branch
    // from a feature branch: origin/HEAD is not set and the trunk is not fetched.
    repo.git(&["branch", "-m", "main", "trunk"]);
    repo.git(&["checkout", "-q", "-b", "feature"]);
    repo.write("prompts/billing/user.j2", "Billing, briefly: {{ q }}");
    repo.commit("feature work");
    repo.git(&["checkout", "-q", "trunk"]);
    let clones = tempfile::tempdir().expect("tempdir");
    let clone = clones.path().join("c");
    let url = format!("file://{}", repo.path().display());
    git_in(
        clones.path(),
        &[
            "clone",
            "-q",
            "--depth=1",
            "--single-branch",
            "--branch",
            "feature",
            &url,
            "c",
        ],
    );
    let (code, out, err) = check_default_base(&clone);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("the default branch is `origin/trunk`") && err.contains("git fetch"),
        "{err}"
    );

    // Fetched, but shallow: no merge base in the clone.
    git_in(
        &clone,
        &[
            "fetch",
            "-q",
            "--depth=1",
            "origin",
            "trunk:refs/remotes/origin/trunk",
        ],
    );
    let (code, out, err) = check_default_base(&clone);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("no common commit") && err.contains("--deepen"),
        "{err}"
    );

    // Deepened: the base is the merge base with origin/trunk, and the run is real.
    git_in(
        &clone,
        &["fetch", "-q", "--deepen=5", "origin", "feature", "trunk"],
    );
    let (code, out, err) = check_default_base(&clone);
    assert_eq!(code, 0, "{out}{err}");
    let report: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_ne!(report["base"], report["head"]);
    assert_eq!(
        suite_of(&report, "billing")["cases"]["affected"],
        CASES,
        "{report}"
    );
}

/// Every call is priced by its kind (judge and embedding evaluators take `pricing`), and
/// under `--replay` nothing is called or paid: replayed answers are counted apart, with
/// what a live run would have paid.
#[tokio::test]
async fn cost_is_reported_by_kind_and_replay_is_not_spending() {
    let server = fake_openai().await;
    let url = format!("{}/v1", server.uri());
    let repo = TestRepo::new();
    let price = "pricing: { input_per_1k_tokens: 1.0, output_per_1k_tokens: 2.0 }";
    repo.write(
        ".promptgate.yml",
        &format!(
            "version: 1\nsuites:\n  s:\n    prompts: {{ user: prompts/u.j2 }}\n    model: models/m.yaml\n    dataset: evals/s.jsonl\n    max_regression: 1.0\n    metrics:\n      similarity: {{ min: 0.1 }}\n      faithfulness: {{ min: 0.1 }}\nevaluators:\n  embedding: {{ provider: openai, model: e, base_url: \"{url}\", {price} }}\n  judge: {{ provider: openai, model: j, base_url: \"{url}\", {price} }}\n"
        ),
    );
    repo.write("prompts/u.j2", "{{ q }}");
    repo.write(
        "models/m.yaml",
        &format!("provider: openai\nmodel: m\nbase_url: {url}\n{price}\n"),
    );
    repo.write(
        "evals/s.jsonl",
        "{\"id\": \"a\", \"vars\": {\"q\": \"x\"}, \"expected\": \"x\"}\n",
    );
    let base = repo.commit("base");
    repo.write("prompts/u.j2", "Q: {{ q }}");
    let head = repo.commit("prompt");
    let (code, report) = check_json(&repo, &base, &head, &["--record"]);
    assert_eq!(code, 0, "{report}");
    let usage = &report["usage"];
    let by_kind = &usage["cost_by_kind"];
    for kind in ["generation", "judge", "embedding"] {
        assert!(by_kind[kind].as_f64().unwrap() > 0.0, "{kind}: {usage}");
    }
    let total: f64 = ["generation", "judge", "embedding", "attack"]
        .iter()
        .map(|k| by_kind[*k].as_f64().unwrap())
        .sum();
    assert!(
        (usage["cost_usd"].as_f64().unwrap() - total).abs() < 1e-12,
        "{usage}"
    );
    assert_eq!(usage["replayed"], 0);

    // Replayed from the recordings, with a cold cache: nothing called, nothing paid.
    let calls_before = server.received_requests().await.unwrap().len();
    let cold = repo.path().join("cold-cache.db");
    let (code, report) = check_json(
        &repo,
        &base,
        &head,
        &["--replay", "--cache", cold.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{report}");
    let usage = &report["usage"];
    assert_eq!(
        server.received_requests().await.unwrap().len(),
        calls_before
    );
    assert_eq!(usage["model_calls"], 0, "{usage}");
    assert_eq!(usage["cost_usd"], 0.0, "{usage}");
    assert!(usage["replayed"].as_u64().unwrap() > 0, "{usage}");
    assert!(
        usage["replayed_cost_usd"].as_f64().unwrap() > 0.0,
        "{usage}"
    );
}
