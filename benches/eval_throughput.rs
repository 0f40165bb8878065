//! Evaluation throughput: N cases through the real pipeline (`check::run` on a git
//! repository) against a local fake OpenAI-compatible server that answers after a
//! fixed latency L, with K calls in flight. Reports wall time against the floor
//! ceil(N/K)·L, and CPU time per case (the fake server runs in this process, so its
//! CPU is included: an upper bound).
//!
//! `cargo bench --bench eval_throughput` (env: BENCH_N, BENCH_K, BENCH_L_MS, BENCH_RUNS).

use std::process::Command;
use std::time::{Duration, Instant};

use axum::routing::post;
use axum::{Json, Router};
use promptgate::check::{self, CheckOptions, Revisions};
use promptgate::execute::{ClientOptions, ModelClient};
use promptgate::source::{GitSource, Rev};
use promptgate::store::Store;
use serde_json::{json, Value};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// User + system CPU seconds of this process, from /proc (Linux).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

fn git(dir: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .expect("git");
    assert!(out.status.success(), "git {args:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::main]
async fn main() {
    let n = env_or("BENCH_N", 2000) as usize;
    let k = env_or("BENCH_K", 32) as usize;
    let latency = Duration::from_millis(env_or("BENCH_L_MS", 50));
    let runs = env_or("BENCH_RUNS", 3);

    let app = Router::new().route(
        "/v1/chat/completions",
        post(move |Json(body): Json<Value>| async move {
            tokio::time::sleep(latency).await;
            let user = body["messages"][0]["content"].as_str().unwrap_or_default().to_string();
            Json(json!({
                "choices": [{"index": 0, "message": {"role": "assistant", "content": user}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 12, "completion_tokens": 6}
            }))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });

    // Base: the suite with an empty dataset; head: N cases, so all N are affected
    // and only the head side runs: exactly N model calls.
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    git(root, &["init", "-q", "-b", "main"]);
    git(root, &["config", "user.email", "b@example.com"]);
    git(root, &["config", "user.name", "bench"]);
    let write = |rel: &str, text: &str| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    };
    write(
        ".promptgate.yml",
        "version: 1\nsuites:\n  bench:\n    prompts: { user: prompts/user.j2 }\n    model: models/m.yaml\n    dataset: evals/cases.jsonl\n    metrics:\n      assertions: { min: 1.0 }\n",
    );
    write("prompts/user.j2", "Echo case {{ n }}");
    write(
        "models/m.yaml",
        &format!("provider: openai\nmodel: fake\nbase_url: http://{addr}/v1\n"),
    );
    write("evals/cases.jsonl", "");
    git(root, &["add", "-A"]);
    git(root, &["commit", "-q", "-m", "base"]);
    let base = git(root, &["rev-parse", "HEAD"]);
    let cases: String = (0..n)
        .map(|i| format!("{{\"id\":\"c{i}\",\"vars\":{{\"n\":{i}}},\"assert\":[{{\"type\":\"contains\",\"value\":\"case {i}\"}}]}}\n"))
        .collect();
    write("evals/cases.jsonl", &cases);
    git(root, &["add", "-A"]);
    git(root, &["commit", "-q", "-m", "head"]);
    let head = git(root, &["rev-parse", "HEAD"]);

    let source = GitSource::open(root).await.expect("open repo");
    let revs = Revisions {
        base: Rev::Commit(base.clone()),
        head: Rev::Commit(head.clone()),
        policy: None,
        base_label: base,
        head_label: head,
    };
    let floor = latency.as_secs_f64() * (n as f64 / k as f64).ceil();
    println!(
        "eval_throughput: N={n} K={k} L={}ms floor=ceil(N/K)*L={floor:.3}s",
        latency.as_millis()
    );
    for run in 1..=runs {
        // A fresh in-memory cache per run, so every run makes all N calls.
        let store = Store::open_url("sqlite::memory:").await.expect("store");
        let client = ModelClient::new(
            store,
            ClientOptions {
                max_in_flight: k,
                ..ClientOptions::default()
            },
        );
        let cpu0 = cpu_seconds();
        let t0 = Instant::now();
        let report = check::run(&source, &revs, &CheckOptions::default(), &client).await;
        let wall = t0.elapsed().as_secs_f64();
        let cpu = cpu_seconds().zip(cpu0).map(|(a, b)| a - b);
        assert_eq!(report.usage.model_calls as usize, n, "{:?}", report.errors);
        println!(
            "run {run}: wall={wall:.3}s wall/floor={:.3} cpu/case={} verdict={}",
            wall / floor,
            cpu.map(|c| format!("{:.1}us", c / n as f64 * 1e6))
                .unwrap_or_else(|| "n/a".into()),
            report.verdict.as_str()
        );
    }
}
