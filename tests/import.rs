//! `promptgate import promptfoo` (issue 17): a realistic promptfoo config becomes a
//! repository that validates and runs; what has no promptgate equivalent is listed with
//! its line, and nothing is overwritten without `--force`.

mod common;

use std::process::Command;

use common::TestRepo;

fn promptgate(args: &[&str], dir: &std::path::Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_promptgate"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run promptgate");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_promptfoo_config_becomes_a_repository_that_validates_and_runs() {
    let server = common::fake_openai().await;
    let url = format!("{}/v1", server.uri());
    let repo = TestRepo::new();
    repo.write(
        "promptfoo/prompts/support.json",
        r#"[{"role": "system", "content": "You are a {{tone}} support agent."}, {"role": "user", "content": "{{question}}"}]"#,
    );
    repo.write(
        "promptfoo/promptfooconfig.yaml",
        &format!(
            r#"description: Customer support answers
prompts:
  - file://prompts/support.json
  - "Answer briefly: {{{{question}}}}"
providers:
  - id: openai:gpt-4o-mini
    config:
      temperature: 0.2
      max_tokens: 256
      apiBaseUrl: {url}
  - anthropic:messages:claude-3-haiku-20240307
defaultTest:
  vars:
    tone: friendly
  assert:
    - type: not-icontains
      value: "as an ai"
tests:
  - description: Refund window
    vars:
      question: How long do I have to return shoes?
    assert:
      - type: icontains
        value: return
      - type: javascript
        value: output.length < 500
  - vars:
      question: Do you ship to Canada?
      tone: formal
    assert:
      - type: contains-any
        value: [Canada, canada]
        weight: 2
"#
        ),
    );
    let config = repo.path().join("promptfoo/promptfooconfig.yaml");
    let (code, stdout, stderr) = promptgate(
        &["import", "promptfoo", config.to_str().unwrap()],
        repo.path(),
    );
    assert_eq!(
        code, 1,
        "some constructs are not translated\n{stdout}{stderr}"
    );
    assert!(stdout.contains("wrote ./.promptgate.yml"), "{stdout}");
    let untranslated: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("not translated:"))
        .collect();
    assert_eq!(untranslated.len(), 2, "{stdout}");
    assert!(
        untranslated
            .iter()
            .any(|l| l.contains("line 11:") && l.contains("anthropic")),
        "{stdout}"
    );
    assert!(
        untranslated
            .iter()
            .any(|l| l.contains("line 25:") && l.contains("assertion `javascript`")),
        "{stdout}"
    );
    let cfg = repo.read(".promptgate.yml");
    assert!(cfg.contains("system: prompts/support/system.j2"), "{cfg}");
    assert_eq!(
        repo.read("prompts/support/system.j2"),
        "You are a {{tone}} support agent."
    );
    let manifest = repo.read("models/gpt-4o-mini.yaml");
    assert!(
        manifest.contains("parameters: { max_tokens: 256, temperature: 0.2 }"),
        "{manifest}"
    );
    let dataset = repo.read("evals/promptfoo.jsonl");
    assert!(dataset.contains(r#""id":"refund-window""#), "{dataset}");
    // defaultTest became the suites' defaults; the test's own var stays in the case.
    assert!(dataset.contains(r#""tone":"formal""#), "{dataset}");
    assert!(!dataset.contains("not-icontains"), "{dataset}");
    assert!(
        cfg.contains(r#"defaults: {"assert":[{"type":"not-icontains","value":"as an ai"}],"vars":{"tone":"friendly"}}"#),
        "{cfg}"
    );

    let (code, out, err) = promptgate(&["validate"], repo.path());
    assert_eq!(code, 0, "the import validates: {out}{err}");

    // Runs: the echo model answers with the question, so every case passes.
    let head = repo.commit("imported");
    // The imported manifest reads its key from OPENAI_API_KEY, as promptfoo does.
    let out = Command::new(env!("CARGO_BIN_EXE_promptgate"))
        .args([
            "check", "--format", "json", "--full", "--base", &head, "--head", &head, "--repo",
        ])
        .arg(repo.path())
        .env("OPENAI_API_KEY", "sk-test-not-a-key")
        .output()
        .unwrap();
    let code = out.status.code().unwrap_or(-1);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["suites"].as_array().unwrap().len(), 2, "{report}");
    assert_eq!(report["suites"][0]["cases"]["total"], 2);

    // A second import would overwrite: refused, nothing written.
    let (code, _, err) = promptgate(
        &["import", "promptfoo", config.to_str().unwrap()],
        repo.path(),
    );
    assert_ne!(code, 0);
    assert!(err.contains("exists; nothing was written"), "{err}");
}
