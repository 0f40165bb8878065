//! The open-loop load generator's own cost: `load::run` at BENCH_RATE req/s for
//! BENCH_SECS s against an in-process target that answers at once, in real time (not
//! paused). Reports how late arrivals went out (schedule lag p50/p99/max, µs) and
//! the CPU the whole process used per 1,000 requests: what the generator itself adds
//! to a measurement, and the arrival rate one machine can hold.
//!
//! Tokio's timer has a 1 ms resolution (a deadline is rounded up to the next tick), so
//! a lag around 0.5–1 ms is the timer's, not the generator's; beyond that it is the
//! machine (other load, thread wake-ups).
//!
//! CPU comes from /proc (Linux): the sum of the threads' schedstat run times in ns
//! when available, else utime + stime from /proc/self/stat (10 ms ticks).
//!
//! `cargo bench --bench load_generator` (env: BENCH_RATE, BENCH_SECS, BENCH_RUNS).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use promptgate::load::{self, LoadErrorKind, LoadPlan, LoadTarget};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// User + system CPU seconds of this process, from /proc/self/stat (USER_HZ = 100).
fn stat_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// CPU seconds run by this process's live threads, from each
/// /proc/self/task/<tid>/schedstat (first field: ns on CPU). Finer than the ticks
/// of /proc/self/stat; the runtime's threads live for the whole benchmark.
fn schedstat_cpu_seconds() -> Option<f64> {
    let mut ns: u64 = 0;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let path = task.ok()?.path().join("schedstat");
        let text = std::fs::read_to_string(path).ok()?;
        ns += text.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(ns as f64 / 1e9)
}

fn cpu_seconds() -> Option<(f64, &'static str)> {
    schedstat_cpu_seconds()
        .map(|s| (s, "schedstat"))
        .or_else(|| stat_cpu_seconds().map(|s| (s, "stat")))
}

/// Answers at once: everything measured is the generator and the runtime.
struct Instant0;

#[async_trait]
impl LoadTarget for Instant0 {
    async fn send(&self, _index: usize) -> Result<(), LoadErrorKind> {
        Ok(())
    }
}

#[tokio::main]
async fn main() {
    let rate = env_or("BENCH_RATE", 500) as f64;
    let secs = env_or("BENCH_SECS", 5);
    let runs = env_or("BENCH_RUNS", 3);
    let plan = LoadPlan::new(
        rate,
        Duration::from_secs(secs),
        256,
        Duration::from_secs(10),
    )
    .expect("plan");
    let threads = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "load_generator: {rate} rps for {secs} s = {} requests per run, zero-latency target, {threads} CPU(s)",
        plan.requests()
    );
    let target: Arc<dyn LoadTarget> = Arc::new(Instant0);
    let mut per_1000 = Vec::new();
    let mut lags = Vec::new();
    for run in 1..=runs {
        let cpu0 = cpu_seconds();
        let t0 = Instant::now();
        let out = load::run(&plan, Arc::clone(&target)).await;
        let wall = t0.elapsed().as_secs_f64();
        let cpu = cpu_seconds()
            .zip(cpu0)
            .map(|((a, src), (b, _))| (a - b, src));
        assert_eq!(out.errors.total(), 0, "{:?}", out.errors);
        let lag = out.schedule_lag_us;
        let cpu_per_1000 = cpu.map(|(c, _)| c / out.requests as f64 * 1000.0);
        println!(
            "run {run}: wall={wall:.3}s achieved={:.1} rps lag p50={}us p99={}us max={}us cpu={} cpu/1000 req={}",
            out.achieved_rps,
            lag.p50,
            lag.p99,
            lag.max,
            cpu.map(|(c, src)| format!("{:.1}ms ({src})", c * 1e3))
                .unwrap_or_else(|| "n/a".into()),
            cpu_per_1000
                .map(|c| format!("{:.2}ms", c * 1e3))
                .unwrap_or_else(|| "n/a".into()),
        );
        lags.push(lag);
        per_1000.extend(cpu_per_1000);
    }
    // The quotable line: the median run by p99 lag, the median CPU figure.
    lags.sort_by_key(|l| l.p99);
    per_1000.sort_by(f64::total_cmp);
    if let Some(lag) = lags.get(lags.len() / 2) {
        println!(
            "README: at {rate} rps the generator sends on schedule within {} µs (p50), {} µs (p99), {} µs (max), using {} CPU ms per 1,000 requests ({threads} CPUs, median of {runs} runs)",
            lag.p50,
            lag.p99,
            lag.max,
            per_1000
                .get(per_1000.len() / 2)
                .map(|c| format!("{:.2}", c * 1e3))
                .unwrap_or_else(|| "n/a".into()),
        );
    }
}
