//! `promptgate validate` reports every problem at once, each naming its file and line.

mod common;

use std::process::Command;

use common::TestRepo;

fn validate(repo: &TestRepo) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_promptgate"))
        .args(["validate", "--repo"])
        .arg(repo.path())
        .output()
        .expect("run promptgate");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
    )
}

fn good_repo() -> TestRepo {
    let repo = TestRepo::new();
    repo.write(
        ".promptgate.yml",
        "version: 1\nsuites:\n  support:\n    prompts:\n      system: prompts/system.j2\n      user: prompts/user.j2\n    model: models/m.yaml\n    dataset: evals/golden.jsonl\n    watch: [\"src/**\"]\n    metrics:\n      assertions: { min: 1.0 }\n",
    );
    repo.write("prompts/system.j2", "You help.");
    repo.write("prompts/user.j2", "{% include \"prompts/partials/q.j2\" %}");
    repo.write("prompts/partials/q.j2", "Q: {{ question }}");
    repo.write(
        "models/m.yaml",
        "provider: openai\nmodel: m\nbase_url: http://127.0.0.1:1/v1\n",
    );
    repo.write(
        "evals/golden.jsonl",
        "{\"id\": \"a\", \"vars\": {\"question\": \"x\"}}\n{\"id\": \"b\", \"vars\": {\"question\": \"y\"}, \"assert\": [{\"type\": \"regex\", \"value\": \"^y\"}]}\n",
    );
    repo.commit("base");
    repo
}

#[test]
fn a_valid_repository_passes() {
    let repo = good_repo();
    let (code, out) = validate(&repo);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("valid"));
}

#[test]
fn every_problem_is_reported_with_its_file_and_line() {
    let repo = good_repo();
    // Config: an unknown key on line 9 and a bad glob on line 10.
    repo.write(
        ".promptgate.yml",
        "version: 1\nsuites:\n  support:\n    prompts:\n      system: prompts/system.j2\n      user: prompts/user.j2\n    model: models/m.yaml\n    dataset: evals/golden.jsonl\n    wach: [\"x\"]\n    watch: [\"src/[oops\"]\n  billing:\n    prompts: { user: prompts/missing.j2 }\n    model: models/m.yaml\n    dataset: evals/golden.jsonl\n",
    );
    // Manifest: unknown parameter on line 5.
    repo.write(
        "models/m.yaml",
        "provider: openai\nmodel: m\nbase_url: http://127.0.0.1:1/v1\nparameters:\n  temprature: 0.1\n",
    );
    // Dataset: a duplicate id (line 2), bad JSON (line 3), a variable the template needs
    // is missing (line 4).
    repo.write(
        "evals/golden.jsonl",
        "{\"id\": \"a\", \"vars\": {\"question\": \"x\"}}\n{\"id\": \"a\", \"vars\": {\"question\": \"x\"}}\n{\"id\": \"c\",\n{\"id\": \"d\", \"vars\": {}}\n",
    );
    let (code, out) = validate(&repo);
    assert_eq!(code, 2, "{out}");
    for want in [
        ".promptgate.yml:9: suites.support: unknown field `wach`",
        ".promptgate.yml:10: suite `support`: bad glob `src/[oops`",
        "models/m.yaml:5:",
        "temprature",
        "evals/golden.jsonl:2: duplicate case id `a` (first on line 1)",
        "evals/golden.jsonl:3: invalid case",
        ".promptgate.yml:12: template `prompts/missing.j2` does not exist",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
}

#[test]
fn a_template_that_does_not_render_names_template_line_and_case() {
    let repo = good_repo();
    repo.write("prompts/partials/q.j2", "Q:\n{{ question | nosuchfilter }}");
    let (code, out) = validate(&repo);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("prompts/partials/q.j2:2:"), "{out}");

    repo.write("prompts/partials/q.j2", "Q:\n\n{{ questoin }}");
    let (_, out) = validate(&repo);
    assert!(
        out.contains("prompts/user.j2") || out.contains("prompts/partials/q.j2:3"),
        "{out}"
    );
    // One problem for both cases, naming them and the variable.
    assert!(
        out.contains("does not render for 2 cases: `a` (evals/golden.jsonl:1), `b` (evals/golden.jsonl:2): undefined variable `questoin`"),
        "{out}"
    );
}

#[test]
fn a_missing_include_names_the_including_template() {
    let repo = good_repo();
    repo.write(
        "prompts/user.j2",
        "line one\n{% include \"prompts/partials/nope.j2\" %}",
    );
    let (code, out) = validate(&repo);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(
            "prompts/user.j2:2: included template `prompts/partials/nope.j2` does not exist"
        ),
        "{out}"
    );
}

#[test]
fn a_missing_config_is_reported() {
    let repo = TestRepo::new();
    repo.write("README.md", "x");
    repo.commit("init");
    let (code, out) = validate(&repo);
    assert_eq!(code, 2);
    assert!(out.contains(".promptgate.yml: file not found"), "{out}");
}

/// Issue 10 item 7: a committed symlink to a host file is not read from the work tree
/// (the file would go to the model); validate names the link and fails. A link that
/// stays inside the repository is read as usual.
#[test]
fn a_symlink_leaving_the_repository_is_an_error_naming_it() {
    let repo = good_repo();
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("credentials");
    std::fs::write(&secret, "aws_secret_access_key = SHOULD-NOT-BE-READ\n").unwrap();
    let link = repo.path().join("prompts/partials/q.j2");
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(&secret, &link).unwrap();
    repo.commit("link out");
    let (code, out) = validate(&repo);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("prompts/partials/q.j2"), "{out}");
    assert!(out.contains("outside the repository"), "{out}");
    assert!(!out.contains("SHOULD-NOT-BE-READ"), "{out}");

    // Inside the repository, a link is fine.
    std::fs::remove_file(&link).unwrap();
    std::fs::write(repo.path().join("prompts/q-real.j2"), "Q: {{ question }}").unwrap();
    std::os::unix::fs::symlink("../q-real.j2", &link).unwrap();
    repo.commit("link in");
    let (code, out) = validate(&repo);
    assert_eq!(code, 0, "{out}");
}

/// What `check` would trip on later is caught by `validate` now, each problem once.
#[test]
fn validate_catches_what_check_would_trip_on_each_problem_once() {
    let repo = TestRepo::new();
    repo.write(
        ".promptgate.yml",
        "version: 1\nsuites:\n  s:\n    prompts: { user: prompts/u.j2 }\n    model: models/m.yaml\n    dataset: evals/s.jsonl\n    metrics:\n      assertions: { min: 80 }\n  t:\n    prompts: { user: prompts/u.j2 }\n    model: models/m.yaml\n    dataset: evals/e.jsonl\n    metrics:\n      latency_p95_ms: { max: 2000 }\n",
    );
    repo.write("prompts/u.j2", "{{ q }} {{ tone }}");
    repo.write(
        "models/m.yaml",
        "provider: openai\nmodel: m\nbase_url: 127.0.0.1:42603/v1\n",
    );
    repo.write(
        "evals/s.jsonl",
        "{\"id\": \"a\", \"vars\": {\"q\": \"x\"}, \"assert\": [{\"type\": \"contains\", \"value\": \"x\"}]}\n",
    );
    repo.write("evals/e.jsonl", "\n");
    repo.commit("base");
    let (code, out) = validate(&repo);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(".promptgate.yml:8: suite `s`: `assertions` threshold 80 is outside 0..1"),
        "{out}"
    );
    assert!(
        out.contains("evals/e.jsonl: the dataset has no cases"),
        "{out}"
    );
    let url = "models/m.yaml:3: base_url `127.0.0.1:42603/v1` is not an http(s) URL";
    assert_eq!(
        out.matches(url).count(),
        1,
        "shared by two suites, reported once: {out}"
    );

    // With the manifest fixed, the template's undefined variable is named, once.
    repo.write(
        "models/m.yaml",
        "provider: openai\nmodel: m\nbase_url: http://127.0.0.1:42603/v1\n",
    );
    repo.write(
        "evals/s.jsonl",
        "{\"id\": \"a\", \"vars\": {\"q\": \"x\"}, \"assert\": [{\"type\": \"contains\", \"value\": \"x\"}]}\n{\"id\": \"b\", \"vars\": {\"q\": \"y\"}, \"assert\": [{\"type\": \"contains\", \"value\": \"y\"}]}\n",
    );
    repo.commit("fix the manifest");
    let (code, out) = validate(&repo);
    assert_eq!(code, 2, "{out}");
    assert_eq!(out.matches("undefined variable `tone`").count(), 1, "{out}");
    assert!(out.contains("does not render for 2 cases"), "{out}");
}

/// `--version` names the commit the binary was built from (build.rs), so a bug report
/// or the image says which code runs.
#[test]
fn version_names_the_commit() {
    let out = Command::new(env!("CARGO_BIN_EXE_promptgate"))
        .arg("--version")
        .output()
        .expect("run promptgate");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let commit = text
        .split("(commit ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_default();
    assert!(
        commit == "unknown"
            || (commit.len() == 12 && commit.chars().all(|c| c.is_ascii_hexdigit())),
        "{text}"
    );
}

/// A mis-indented key is reported with its likely cause, not only as "missing field".
#[test]
fn a_mis_indented_key_is_reported_as_such() {
    let repo = good_repo();
    let text = repo.read(".promptgate.yml").replace(
        "    dataset: evals/golden.jsonl\n",
        "  dataset: evals/golden.jsonl\n",
    );
    repo.write(".promptgate.yml", &text);
    repo.commit("mis-indent");
    let (code, out) = validate(&repo);
    assert_eq!(code, 2, "{out}");
    let line = text.lines().position(|l| l.contains("dataset:")).unwrap() + 1;
    assert!(
        out.contains("missing field `dataset`")
            && out.contains(&format!("`dataset:` is written at line {line}"))
            && out.contains("indented wrongly"),
        "{out}"
    );
}
