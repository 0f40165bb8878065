//! Shared test support: a throwaway git repository and a fake OpenAI-compatible server
//! that answers deterministically and counts what it was asked.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

pub struct TestRepo {
    pub dir: tempfile::TempDir,
}

impl TestRepo {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = Self { dir };
        repo.git(&["init", "-q", "-b", "main"]);
        repo.git(&["config", "user.email", "t@example.com"]);
        repo.git(&["config", "user.name", "t"]);
        repo.git(&["config", "commit.gpgsign", "false"]);
        repo
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn git(&self, args: &[&str]) -> String {
        git_in(self.path(), args)
    }

    pub fn write(&self, rel: &str, content: &str) {
        let p = self.path().join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, content).expect("write");
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path().join(rel)).expect("read")
    }

    pub fn commit(&self, msg: &str) -> String {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--allow-empty", "-m", msg]);
        self.git(&["rev-parse", "HEAD"])
    }

    pub fn cache_path(&self) -> PathBuf {
        self.path().join(".git/promptgate/cache.db")
    }
}

/// Runs git in `dir` (any repository, e.g. a clone of a `TestRepo`); its trimmed stdout.
pub fn git_in(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Runs `promptgate check --format json` on `repo` from `base` to `head` and returns
/// (exit code, report).
pub fn check_json(repo: &TestRepo, base: &str, head: &str, extra: &[&str]) -> (i32, Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_promptgate"))
        .args(["check", "--format", "json", "--repo"])
        .arg(repo.path())
        .args(["--base", base, "--head", head])
        .args(extra)
        .output()
        .expect("run promptgate");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), report)
}

/// The metric row called `name` in a suite of a JSON report.
pub fn metric_of<'a>(suite: &'a Value, name: &str) -> &'a Value {
    suite["metrics"]
        .as_array()
        .and_then(|m| m.iter().find(|r| r["name"] == name))
        .unwrap_or_else(|| panic!("no metric {name} in {suite}"))
}

/// The suite called `name` in a JSON report.
pub fn suite_of<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["suites"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == name))
        .unwrap_or_else(|| panic!("no suite {name} in {report}"))
}

/// Words of a text hashed into a small vector: similar texts get similar embeddings.
pub fn bag_of_words(text: &str) -> Vec<f32> {
    let mut v = vec![0f32; 32];
    for w in text
        .to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        let h = w
            .bytes()
            .fold(5381u32, |h, b| h.wrapping_mul(33) ^ b as u32);
        v[(h % 32) as usize] += 1.0;
    }
    v
}

/// A fake chat model: it answers with the last user message, prefixed by whatever
/// the system prompt asks for with `PREFIX=<word>`; judge requests get a JSON grade.
pub struct FakeModel;

impl Respond for FakeModel {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        if req.url.path().ends_with("/embeddings") {
            let input = body["input"].as_str().unwrap_or_default();
            return ResponseTemplate::new(200).set_body_json(json!({
                "object": "list",
                "data": [{"object": "embedding", "index": 0, "embedding": bag_of_words(input)}],
                "model": body["model"],
                "usage": {"prompt_tokens": 3, "total_tokens": 3}
            }));
        }
        let messages = body["messages"].as_array().cloned().unwrap_or_default();
        let system = messages
            .iter()
            .find(|m| m["role"] == "system")
            .and_then(|m| m["content"].as_str())
            .unwrap_or_default()
            .to_string();
        let user = messages
            .iter()
            .rev()
            .find(|m| m["role"] == "user")
            .and_then(|m| m["content"].as_str())
            .unwrap_or_default()
            .to_string();
        let content = if system.starts_with("You grade answers") {
            let faithful = if user.contains("UNSUPPORTED") {
                0.2
            } else {
                0.95
            };
            json!({"faithfulness": faithful, "relevance": 0.9, "hallucination": faithful < 0.5, "reason": "fake"})
                .to_string()
        } else {
            let prefix = system
                .split_whitespace()
                .find_map(|w| w.strip_prefix("PREFIX="))
                .unwrap_or("");
            format!("{prefix}{user}")
        };
        ResponseTemplate::new(200).set_body_json(json!({
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
        }))
    }
}

pub async fn fake_openai() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(FakeModel)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/embeddings"))
        .respond_with(FakeModel)
        .mount(&server)
        .await;
    server
}

/// (chat calls, embedding calls) the fake has received.
pub async fn calls(server: &MockServer) -> (usize, usize) {
    let reqs = server.received_requests().await.unwrap_or_default();
    let chat = reqs
        .iter()
        .filter(|r| r.url.path().ends_with("/chat/completions"))
        .count();
    let emb = reqs
        .iter()
        .filter(|r| r.url.path().ends_with("/embeddings"))
        .count();
    (chat, emb)
}

/// Chat requests that were generations (not judge calls).
pub async fn generation_calls(server: &MockServer) -> usize {
    let reqs = server.received_requests().await.unwrap_or_default();
    reqs.iter()
        .filter(|r| r.url.path().ends_with("/chat/completions"))
        .filter(|r| !String::from_utf8_lossy(&r.body).contains("You grade answers"))
        .count()
}
pub mod echo;
pub mod github;
pub mod gitlab;
pub mod service;
