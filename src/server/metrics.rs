//! Prometheus metrics, hand-written over atomics (text exposition format 0.0.4).
//!
//! The intake records deliveries; the run pipeline records runs and model calls with
//! [`Metrics::record_run`] and [`Metrics::add_model_calls`]. The queue depth is read
//! from the database when `/metrics` is scraped.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::event::ForgeKind;
use crate::report::Verdict;

/// Upper bounds (seconds) of the run duration histogram buckets.
pub const RUN_DURATION_BUCKETS: [f64; 11] = [
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0,
];

const VERDICTS: [Verdict; 5] = [
    Verdict::Pass,
    Verdict::Skipped,
    Verdict::NeedsReview,
    Verdict::Fail,
    Verdict::Error,
];

#[derive(Default)]
struct PerForge([AtomicU64; 2]);

impl PerForge {
    fn inc(&self, forge: ForgeKind) {
        self.0[forge_index(forge)].fetch_add(1, Ordering::Relaxed);
    }
    fn get(&self, forge: ForgeKind) -> u64 {
        self.0[forge_index(forge)].load(Ordering::Relaxed)
    }
}

fn forge_index(f: ForgeKind) -> usize {
    match f {
        ForgeKind::Github => 0,
        ForgeKind::Gitlab => 1,
    }
}

fn verdict_index(v: Verdict) -> usize {
    match v {
        Verdict::Pass => 0,
        Verdict::Skipped => 1,
        Verdict::NeedsReview => 2,
        Verdict::Fail => 3,
        Verdict::Error => 4,
    }
}

#[derive(Default)]
pub struct Metrics {
    received: PerForge,
    rejected: PerForge,
    deduped: PerForge,
    runs: [AtomicU64; 5],
    model_calls: AtomicU64,
    /// Non-cumulative counts per bucket; the last slot is +Inf.
    duration_buckets: [AtomicU64; RUN_DURATION_BUCKETS.len() + 1],
    duration_sum_micros: AtomicU64,
    duration_count: AtomicU64,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// What `/metrics` reads from the queue at scrape time.
#[derive(Clone, Copy, Debug, Default)]
pub struct QueueGauges {
    pub depth: u64,
    pub quarantined: u64,
}

impl Metrics {
    pub fn new() -> Self {
        Self::default()
    }

    /// A delivery reached a served webhook endpoint (before verification).
    pub fn record_received(&self, forge: ForgeKind) {
        self.received.inc(forge);
    }

    /// A delivery was refused: bad or missing signature.
    pub fn record_rejected(&self, forge: ForgeKind) {
        self.rejected.inc(forge);
    }

    /// A verified delivery was already stored (a redelivery).
    pub fn record_deduped(&self, forge: ForgeKind) {
        self.deduped.inc(forge);
    }

    /// A run finished with `verdict` after `duration`.
    pub fn record_run(&self, verdict: Verdict, duration: Duration) {
        self.runs[verdict_index(verdict)].fetch_add(1, Ordering::Relaxed);
        let secs = duration.as_secs_f64();
        let slot = RUN_DURATION_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(RUN_DURATION_BUCKETS.len());
        self.duration_buckets[slot].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        self.duration_sum_micros
            .fetch_add(micros, Ordering::Relaxed);
        self.duration_count.fetch_add(1, Ordering::Relaxed);
    }

    /// Model calls made (cache hits excluded), e.g. `report.usage.model_calls`.
    pub fn add_model_calls(&self, n: u64) {
        self.model_calls.fetch_add(n, Ordering::Relaxed);
    }

    pub fn received(&self, forge: ForgeKind) -> u64 {
        self.received.get(forge)
    }

    pub fn rejected(&self, forge: ForgeKind) -> u64 {
        self.rejected.get(forge)
    }

    pub fn deduped(&self, forge: ForgeKind) -> u64 {
        self.deduped.get(forge)
    }

    /// The exposition text; `queue` is `None` when the database could not be read.
    pub fn render(&self, queue: Option<QueueGauges>) -> String {
        let mut out = String::with_capacity(2048);
        let per_forge = |out: &mut String, name: &str, help: &str, c: &PerForge| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            for f in ForgeKind::ALL {
                let _ = writeln!(out, "{name}{{forge=\"{f}\"}} {}", c.get(f));
            }
        };
        per_forge(
            &mut out,
            "promptgate_deliveries_received_total",
            "Webhook deliveries received on a served endpoint.",
            &self.received,
        );
        per_forge(
            &mut out,
            "promptgate_deliveries_rejected_total",
            "Webhook deliveries rejected for a bad or missing signature.",
            &self.rejected,
        );
        per_forge(
            &mut out,
            "promptgate_deliveries_deduped_total",
            "Verified webhook deliveries dropped as redeliveries.",
            &self.deduped,
        );
        if let Some(q) = queue {
            let _ = writeln!(
                out,
                "# HELP promptgate_queue_depth Deliveries queued or being processed."
            );
            let _ = writeln!(out, "# TYPE promptgate_queue_depth gauge");
            let _ = writeln!(out, "promptgate_queue_depth {}", q.depth);
            let _ = writeln!(
                out,
                "# HELP promptgate_deliveries_quarantined Deliveries set aside because their worker stopped each time it handled them."
            );
            let _ = writeln!(out, "# TYPE promptgate_deliveries_quarantined gauge");
            let _ = writeln!(out, "promptgate_deliveries_quarantined {}", q.quarantined);
        }
        let _ = writeln!(
            out,
            "# HELP promptgate_runs_total Runs finished, by verdict."
        );
        let _ = writeln!(out, "# TYPE promptgate_runs_total counter");
        for v in VERDICTS {
            let _ = writeln!(
                out,
                "promptgate_runs_total{{verdict=\"{}\"}} {}",
                v.as_str(),
                self.runs[verdict_index(v)].load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP promptgate_model_calls_total Model calls made by runs (cache hits excluded)."
        );
        let _ = writeln!(out, "# TYPE promptgate_model_calls_total counter");
        let _ = writeln!(
            out,
            "promptgate_model_calls_total {}",
            self.model_calls.load(Ordering::Relaxed)
        );
        let name = "promptgate_run_duration_seconds";
        let _ = writeln!(out, "# HELP {name} Wall time of a run.");
        let _ = writeln!(out, "# TYPE {name} histogram");
        let mut cumulative = 0u64;
        for (i, bound) in RUN_DURATION_BUCKETS.iter().enumerate() {
            cumulative += self.duration_buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        cumulative += self.duration_buckets[RUN_DURATION_BUCKETS.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let sum = self.duration_sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(
            out,
            "{name}_count {}",
            self.duration_count.load(Ordering::Relaxed)
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_a_cumulative_histogram() {
        let m = Metrics::new();
        m.record_received(ForgeKind::Github);
        m.record_received(ForgeKind::Github);
        m.record_rejected(ForgeKind::Gitlab);
        m.record_run(Verdict::Pass, Duration::from_secs(3));
        m.record_run(Verdict::Fail, Duration::from_secs(90));
        m.record_run(Verdict::Fail, Duration::from_secs(7200));
        m.add_model_calls(12);
        let t = m.render(Some(QueueGauges {
            depth: 4,
            quarantined: 1,
        }));
        assert!(t.contains("promptgate_deliveries_quarantined 1\n"));
        assert!(t.contains("promptgate_deliveries_received_total{forge=\"github\"} 2\n"));
        assert!(t.contains("promptgate_deliveries_rejected_total{forge=\"gitlab\"} 1\n"));
        assert!(t.contains("promptgate_queue_depth 4\n"));
        assert!(t.contains("promptgate_runs_total{verdict=\"fail\"} 2\n"));
        assert!(t.contains("promptgate_model_calls_total 12\n"));
        assert!(t.contains("promptgate_run_duration_seconds_bucket{le=\"1\"} 0\n"));
        assert!(t.contains("promptgate_run_duration_seconds_bucket{le=\"5\"} 1\n"));
        assert!(t.contains("promptgate_run_duration_seconds_bucket{le=\"120\"} 2\n"));
        assert!(t.contains("promptgate_run_duration_seconds_bucket{le=\"3600\"} 2\n"));
        assert!(t.contains("promptgate_run_duration_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(t.contains("promptgate_run_duration_seconds_sum 7293\n"));
        assert!(t.contains("promptgate_run_duration_seconds_count 3\n"));
    }
}
