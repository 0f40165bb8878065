//! Where a case's content comes from, through the real binary: a suite's `defaults`,
//! `file://` variables and CSV datasets. A change reaches exactly the cases whose
//! merged content it changes, counted at a fake OpenAI-compatible server (SPEC §3).

mod common;

use common::{check_json as check, fake_openai, generation_calls, suite_of as suite, TestRepo};

const CASES: usize = 4;

fn config(tone: &str) -> String {
    format!(
        r#"version: 1
suites:
  support:
    prompts:
      user: prompts/user.j2
    model: models/m.yaml
    dataset: evals/support.jsonl
    defaults:
      vars: {{ tone: {tone}, policy: "file://docs/policy.md" }}
      assert: [{{ type: icontains, value: question }}]
    metrics:
      assertions: {{ min: 1.0 }}
  faq:
    prompts:
      user: prompts/faq.j2
    model: models/m.yaml
    dataset: evals/faq.csv
    metrics:
      assertions: {{ min: 1.0 }}
"#
    )
}

/// Case 0 sets its own `tone`; cases 0 and 1 load `docs/refund.md` (next to the
/// dataset), the others write their document inline.
fn dataset() -> String {
    (0..CASES)
        .map(|i| {
            let tone = if i == 0 { "\"tone\": \"formal\", " } else { "" };
            let doc = if i < 2 {
                "file://docs/refund.md"
            } else {
                "inline text"
            };
            format!(
                "{{\"id\": \"s{i}\", \"vars\": {{{tone}\"question\": \"question {i}\", \"doc\": \"{doc}\"}}, \"assert\": [{{\"type\": \"contains\", \"value\": \"question {i}\"}}]}}\n"
            )
        })
        .collect()
}

fn setup(base_url: &str) -> (TestRepo, String) {
    let repo = TestRepo::new();
    repo.write(".promptgate.yml", &config("warm"));
    repo.write(
        "prompts/user.j2",
        "[{{ tone }}] {{ policy }} {{ doc }} {{ question }}",
    );
    repo.write("prompts/faq.j2", "FAQ: {{ question }}");
    repo.write(
        "models/m.yaml",
        &format!("provider: openai\nmodel: fake-chat\nbase_url: {base_url}\n"),
    );
    repo.write("docs/policy.md", "Returns within 30 days.");
    repo.write("evals/support.jsonl", &dataset());
    repo.write("evals/docs/refund.md", "Refunds go to the card.");
    repo.write(
        "evals/faq.csv",
        "id,question,__expected\nship,\"Do you ship, abroad?\",contains: abroad\nopen,\"When are you\n open?\",icontains: OPEN\n",
    );
    let base = repo.commit("base");
    (repo, base)
}

#[tokio::test]
async fn a_defaults_change_affects_exactly_the_cases_that_do_not_override_it() {
    let server = fake_openai().await;
    let url = format!("{}/v1", server.uri());
    let (repo, base) = setup(&url);
    repo.write(".promptgate.yml", &config("cool"));
    let head = repo.commit("defaults: cooler tone");
    let (code, report) = check(&repo, &base, &head, &[]);
    assert_eq!(code, 0, "{report}");
    let support = suite(&report, "support");
    assert_eq!(support["verdict"], "pass", "{support}");
    assert_eq!(support["triggered_by"][0], ".promptgate.yml", "{support}");
    // s0 sets its own tone: untouched. Cold cache: every base case and 3 head cases.
    assert_eq!(support["cases"]["affected"], CASES - 1, "{support}");
    assert_eq!(generation_calls(&server).await, CASES + CASES - 1);
    assert_eq!(suite(&report, "faq")["verdict"], "skipped");
    assert!(
        report["config_change"]["changes"]
            .to_string()
            .contains("support.defaults"),
        "{report}"
    );
}

#[tokio::test]
async fn removing_a_default_assertion_needs_review() {
    let server = fake_openai().await;
    let url = format!("{}/v1", server.uri());
    let (repo, base) = setup(&url);
    repo.write(
        ".promptgate.yml",
        &config("warm").replace("      assert: [{ type: icontains, value: question }]\n", ""),
    );
    let head = repo.commit("drop the default assertion");
    let (code, report) = check(&repo, &base, &head, &[]);
    let support = suite(&report, "support");
    assert_eq!(support["verdict"], "needs_review", "{support}");
    assert_eq!(code, 1);
    assert_eq!(support["cases"]["affected"], CASES);
    assert_eq!(
        support["dataset_changes"].as_array().map(Vec::len),
        Some(CASES),
        "{support}"
    );
}

#[tokio::test]
async fn a_loaded_file_triggers_the_suite_and_affects_only_its_cases() {
    let server = fake_openai().await;
    let url = format!("{}/v1", server.uri());
    let (repo, base) = setup(&url);
    repo.write("evals/docs/refund.md", "Refunds go to the original card.");
    let head = repo.commit("refund doc");
    let (code, report) = check(&repo, &base, &head, &[]);
    assert_eq!(code, 0, "{report}");
    let support = suite(&report, "support");
    assert_eq!(
        support["triggered_by"][0], "evals/docs/refund.md",
        "{support}"
    );
    assert_eq!(support["cases"]["affected"], 2, "{support}");
    assert_eq!(generation_calls(&server).await, CASES + 2);

    // A default's file (relative to the repository root) reaches every case.
    repo.write("docs/policy.md", "Returns within 60 days.");
    let head2 = repo.commit("policy doc");
    let (_, report) = check(&repo, &head, &head2, &[]);
    let support = suite(&report, "support");
    assert_eq!(support["triggered_by"][0], "docs/policy.md", "{support}");
    assert_eq!(support["cases"]["affected"], CASES, "{support}");
}

#[tokio::test]
async fn a_missing_file_is_an_error_naming_the_case_line_and_path() {
    let server = fake_openai().await;
    let url = format!("{}/v1", server.uri());
    let (repo, base) = setup(&url);
    let text = repo
        .read("evals/support.jsonl")
        .replacen("file://docs/refund.md", "file://docs/missing.md", 2)
        .replace("inline text", "file://../../../etc/passwd");
    repo.write("evals/support.jsonl", &text);
    let head = repo.commit("broken refs");
    let (code, report) = check(&repo, &base, &head, &[]);
    assert_eq!(code, 2, "{report}");
    let errors = suite(&report, "support")["errors"].to_string();
    assert!(
        errors.contains("evals/support.jsonl:1: case `s0`: variable `doc`: `file://docs/missing.md`: `evals/docs/missing.md` does not exist"),
        "{errors}"
    );
    assert!(
        errors.contains("evals/support.jsonl:3: case `s2`: variable `doc`: `file://../../../etc/passwd`: the path leaves the repository"),
        "{errors}"
    );
    assert_eq!(generation_calls(&server).await, 0);
}

#[tokio::test]
async fn a_csv_dataset_runs_and_one_row_is_one_case() {
    let server = fake_openai().await;
    let url = format!("{}/v1", server.uri());
    let (repo, base) = setup(&url);
    let (code, report) = check(&repo, &base, &base, &["--full", "--suite", "faq"]);
    assert_eq!(code, 0, "{report}");
    let faq = suite(&report, "faq");
    assert_eq!(faq["verdict"], "pass", "{faq}");
    assert_eq!(faq["cases"]["total"], 2, "{faq}");
    assert_eq!(generation_calls(&server).await, 2);

    let text = repo
        .read("evals/faq.csv")
        .replace("Do you ship, abroad?", "Do you ship abroad, too?");
    repo.write("evals/faq.csv", &text);
    let head = repo.commit("faq row");
    let (code, report) = check(&repo, &base, &head, &[]);
    assert_eq!(code, 0, "{report}");
    let faq = suite(&report, "faq");
    assert_eq!(faq["cases"]["affected"], 1, "{faq}");
    assert_eq!(suite(&report, "support")["verdict"], "skipped");
    // Base's answers are cached from the first run: one new generation.
    assert_eq!(generation_calls(&server).await, 3);
}
