//! Shadow replay through the binary: gzipped Bedrock invocation logs on moto S3 (with a
//! large body under data/) and in a local directory, the fake model, the sample, the
//! replayed requests, the drift figures, the redaction and the free re-run.

#[path = "common/codebuild.rs"]
mod cb;
mod common;

use std::io::Write;
use std::process::Command;

use common::{calls, fake_openai, TestRepo};
use serde_json::Value;
use sha2::{Digest, Sha256};

const PREFIX: &str = "AWSLogs/123456789012/BedrockModelInvocationLogs/us-east-1/";
const HAIKU: &str = "anthropic.claude-3-haiku-20240307-v1:0";

fn gz(text: &str) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(text.as_bytes()).unwrap();
    e.finish().unwrap()
}

/// The fixture records with live timestamps: recent ones an hour ago, the old one 3 days.
fn records(bucket: &str) -> String {
    let iso = |secs_ago: u64| {
        let t = std::time::SystemTime::now() - std::time::Duration::from_secs(secs_ago);
        aws_smithy_types::DateTime::from(t)
            .fmt(aws_smithy_types::date_time::Format::DateTime)
            .unwrap()
    };
    std::fs::read_to_string("tests/fixtures/bedrock-logs/records.jsonl")
        .unwrap()
        .replace("__RECENT__", &iso(3600))
        .replace("__OLD__", &iso(3 * 86_400))
        .replace("__BUCKET__", bucket)
}

fn large_body() -> String {
    std::fs::read_to_string("tests/fixtures/bedrock-logs/req-large-input.json").unwrap()
}

fn repo(url: &str, logs: &str) -> (TestRepo, String) {
    let repo = TestRepo::new();
    repo.write(
        ".promptgate.yml",
        &format!(
            "version: 1\nsuites:\n  s:\n    prompts: {{ system: prompts/system.j2, user: prompts/user.j2 }}\n    model: models/m.yaml\n    dataset: evals/s.jsonl\n    metrics:\n      assertions: {{ min: 0.0 }}\n    shadow:\n      logs: {logs}\n      since: 24h\n      sample: 10\n      model_id: {HAIKU}\n      metrics: {{ similarity: {{ min: 0.85 }}, drift_rate: {{ max: 0.2 }} }}\nevaluators:\n  embedding: {{ provider: openai, model: emb-1, base_url: \"{url}\" }}\n"
        ),
    );
    repo.write("prompts/system.j2", "You are a support agent.");
    repo.write("prompts/user.j2", "{{ q }}");
    repo.write(
        "models/m.yaml",
        &format!("provider: openai\nmodel: chat-1\nbase_url: {url}\npricing: {{ input_per_1k_tokens: 0.001, output_per_1k_tokens: 0.002 }}\n"),
    );
    repo.write(
        "evals/s.jsonl",
        "{\"id\": \"a\", \"vars\": {\"q\": \"hi\"}, \"assert\": [{\"type\": \"contains\", \"value\": \"hi\"}]}\n",
    );
    let base = repo.commit("base");
    (repo, base)
}

/// The eligible fixture ids in the order the sample takes them.
fn expected_order() -> Vec<String> {
    let mut ids: Vec<String> = ["req-refund", "req-contact", "req-large", "req-invoke"]
        .map(String::from)
        .to_vec();
    ids.sort_by_key(|id| hex::encode(Sha256::digest(id.as_bytes())));
    ids
}

fn run(repo: &TestRepo, args: &[&str], env: &[(&str, &str)]) -> (i32, Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_promptgate"))
        .args(args)
        .arg("--repo")
        .arg(repo.path())
        .args(["--cache"])
        .arg(repo.cache_path())
        .envs(env.iter().copied())
        .output()
        .expect("run promptgate");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), v)
}

#[tokio::test]
async fn a_model_bump_replays_sampled_production_requests_from_s3() {
    let moto = cb::Moto::start();
    let s3 = cb::s3_client(&moto.url);
    s3.create_bucket().bucket("logs").send().await.unwrap();
    for (key, body) in [
        (
            format!("{PREFIX}2024/01/01/00/records.json.gz"),
            gz(&records("logs")),
        ),
        (
            format!("{PREFIX}amazon-bedrock-logs-permission-check"),
            b"ok".to_vec(),
        ),
        (
            format!("{PREFIX}data/req-large-input.json.gz"),
            gz(&large_body()),
        ),
    ] {
        s3.put_object()
            .bucket("logs")
            .key(key)
            .body(body.into())
            .send()
            .await
            .unwrap();
    }
    let server = fake_openai().await;
    let url = format!("{}/v1", server.uri());
    let (repo, base) = repo(&url, &format!("s3://logs/{PREFIX}"));
    let manifest = repo.read("models/m.yaml").replace("chat-1", "chat-2");
    repo.write("models/m.yaml", &manifest);
    let head = repo.commit("bump the model");
    let env = [
        ("AWS_ENDPOINT_URL_S3", moto.url.as_str()),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];
    let args = [
        "check", "--format", "json", "--base", &base, "--head", &head,
    ];
    let (code, report) = run(&repo, &args, &env);
    let suite = &report["suites"][0];
    let shadow = &suite["shadow"];
    assert_eq!(shadow["applies"], true, "{report}");
    assert_eq!(shadow["reason"], "model manifest changed");
    assert_eq!(shadow["eligible"], 4, "{shadow}");
    assert_eq!(shadow["sampled"], 4);
    assert_eq!(shadow["replayed"], 4);
    let ids: Vec<String> = serde_json::from_value(shadow["sampled_ids"].clone()).unwrap();
    assert_eq!(ids, expected_order());
    assert_eq!(shadow["skipped"]["model"], 1);
    assert_eq!(shadow["skipped"]["outside_window"], 1);
    assert_eq!(shadow["skipped"]["unreadable"], 1);
    // The fake echoes the question: only the contact request's production answer differs.
    assert_eq!(shadow["drift_rate"], 0.25);
    let drift = shadow["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "drift_rate")
        .unwrap();
    assert_eq!(drift["pass"], false);
    assert_eq!(suite["verdict"], "fail");
    assert_eq!(code, 1);
    let worst = &shadow["worst"][0];
    assert_eq!(worst["request_id"], "req-contact");
    let shown = format!("{} {}", worst["production"], worst["candidate"]);
    assert!(
        !shown.contains("jane@example.com") && !shown.contains("555 123"),
        "{shown}"
    );
    assert!(
        shown.contains("[EMAIL]") && shown.contains("[NUMBER]"),
        "{shown}"
    );
    // Sent as logged, to the head model: the large body came from data/.
    let reqs = server.received_requests().await.unwrap();
    let replays: Vec<Value> = reqs
        .iter()
        .filter(|r| r.url.path().ends_with("/chat/completions"))
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .filter(|b: &Value| {
            b["messages"].to_string().contains("support agent")
                && !b["messages"].to_string().contains("\"hi\"")
        })
        .collect();
    assert_eq!(replays.len(), 4, "{replays:?}");
    assert!(replays.iter().all(|b| b["model"] == "chat-2"));
    assert!(replays.iter().any(|b| b["messages"]
        .to_string()
        .contains("Summarise the attached contract")));
    assert!(
        shadow["production_cost_usd"].as_f64().is_some()
            && shadow["candidate_cost_usd"].as_f64().is_some()
    );
    // The same re-run is free.
    let before = calls(&server).await;
    let (_, again) = run(&repo, &args, &env);
    assert_eq!(calls(&server).await, before, "a re-run calls nothing");
    assert_eq!(again["usage"]["model_calls"], 0);
    assert_eq!(again["suites"][0]["shadow"]["drift_rate"], 0.25);
}

#[tokio::test]
async fn the_cli_replays_a_local_directory_and_says_when_shadow_does_not_apply() {
    let server = fake_openai().await;
    let url = format!("{}/v1", server.uri());
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("a/data")).unwrap();
    std::fs::write(dir.path().join("a/records.json.gz"), gz(&records("logs"))).unwrap();
    std::fs::write(
        dir.path().join("a/data/req-large-input.json.gz"),
        gz(&large_body()),
    )
    .unwrap();
    let logs = dir.path().display().to_string();
    let (repo, base) = repo(&url, &logs);
    // Nothing changed yet: the replay does not apply, and says why.
    let (code, out) = run(
        &repo,
        &[
            "shadow", "--suite", "s", "--format", "json", "--base", &base,
        ],
        &[],
    );
    assert_eq!(out["applies"], false, "{out}");
    assert!(out["reason"].as_str().unwrap().contains("neither"), "{out}");
    assert_eq!(code, 0);
    // A static system prompt change replaces the logged one.
    repo.write("prompts/system.j2", "PREFIX=new: You are a support agent.");
    let (_, out) = run(
        &repo,
        &[
            "shadow", "--suite", "s", "--format", "json", "--base", &base, "--sample", "2",
            "--logs", &logs,
        ],
        &[],
    );
    assert_eq!(out["reason"], "system prompt changed", "{out}");
    assert_eq!(out["sampled"], 2);
    let ids: Vec<String> = serde_json::from_value(out["sampled_ids"].clone()).unwrap();
    assert_eq!(ids, expected_order()[..2].to_vec());
    let reqs = server.received_requests().await.unwrap();
    let sent: Vec<String> = reqs
        .iter()
        .filter(|r| r.url.path().ends_with("/chat/completions"))
        .map(|r| String::from_utf8_lossy(&r.body).to_string())
        .collect();
    assert_eq!(sent.len(), 2);
    assert!(
        sent.iter()
            .all(|b| b.contains("PREFIX=new") && b.contains("chat-1")),
        "{sent:?}"
    );
}
