//! Prometheus metrics, hand-written over atomics (text exposition format 0.0.4).
//!
//! The intake records deliveries; the run pipeline records runs and model calls with
//! [`Metrics::record_run`] and [`Metrics::add_model_calls`]. The queue depth is read
//! from the database when `/metrics` is scraped.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::event::ForgeKind;
use crate::report::{Usage, Verdict};

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
    embedding_calls: AtomicU64,
    cache_hits: AtomicU64,
    input_tokens: AtomicU64,
    output_tokens: AtomicU64,
    /// What runs paid, in nano-USD (a counter of whole numbers; rendered in USD).
    cost_nano_usd: AtomicU64,
    runs_in_flight: AtomicU64,
    /// Non-cumulative counts per bucket; the last slot is +Inf.
    duration_buckets: [AtomicU64; RUN_DURATION_BUCKETS.len() + 1],
    duration_sum_micros: AtomicU64,
    duration_count: AtomicU64,
}

/// A run in flight; see [`Metrics::run_in_flight`].
pub struct InFlight(Arc<Metrics>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.runs_in_flight.fetch_sub(1, Ordering::Relaxed);
    }
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
    /// Deliveries failed for good (retries spent, undecodable, quarantined).
    pub failed: u64,
    pub oldest_queued_age_secs: f64,
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

    /// What a finished run used: calls made, cache hits, tokens and what it paid.
    pub fn record_usage(&self, usage: &Usage) {
        self.model_calls
            .fetch_add(usage.model_calls, Ordering::Relaxed);
        self.embedding_calls
            .fetch_add(usage.embedding_calls, Ordering::Relaxed);
        self.cache_hits
            .fetch_add(usage.cache_hits, Ordering::Relaxed);
        self.input_tokens
            .fetch_add(usage.input_tokens, Ordering::Relaxed);
        self.output_tokens
            .fetch_add(usage.output_tokens, Ordering::Relaxed);
        // Rounded to whole nano-dollars; a negative or NaN cost adds nothing.
        let nano = (usage.cost_usd * 1e9).round();
        if nano.is_finite() && nano > 0.0 {
            self.cost_nano_usd.fetch_add(nano as u64, Ordering::Relaxed);
        }
    }

    /// Counts a run as in flight until the guard is dropped (finished, failed or
    /// aborted by a push or a cancel).
    pub fn run_in_flight(self: &Arc<Self>) -> InFlight {
        self.runs_in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(self))
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
        let mut out = String::with_capacity(4096);
        let _ = writeln!(
            out,
            "# HELP promptgate_build_info The running build: version and commit.\n# TYPE promptgate_build_info gauge\npromptgate_build_info{{version=\"{}\",commit=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION"),
            env!("PROMPTGATE_COMMIT")
        );
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
            let _ = writeln!(
                out,
                "# HELP promptgate_deliveries_failed Deliveries failed for good (retries spent, undecodable or quarantined).\n# TYPE promptgate_deliveries_failed gauge\npromptgate_deliveries_failed {}",
                q.failed
            );
            let _ = writeln!(
                out,
                "# HELP promptgate_queue_oldest_age_seconds How long the oldest queued delivery has waited (0 when none waits).\n# TYPE promptgate_queue_oldest_age_seconds gauge\npromptgate_queue_oldest_age_seconds {:.3}",
                q.oldest_queued_age_secs
            );
        }
        let _ = writeln!(
            out,
            "# HELP promptgate_runs_in_flight Evaluations running in this process.\n# TYPE promptgate_runs_in_flight gauge\npromptgate_runs_in_flight {}",
            self.runs_in_flight.load(Ordering::Relaxed)
        );
        let counters: [(&str, &str, &AtomicU64); 6] = [
            (
                "promptgate_model_calls_total",
                "Model calls made by runs (cache hits excluded).",
                &self.model_calls,
            ),
            (
                "promptgate_embedding_calls_total",
                "Embedding calls made by runs (cache hits excluded).",
                &self.embedding_calls,
            ),
            (
                "promptgate_cache_hits_total",
                "Model answers and scores read from the result cache.",
                &self.cache_hits,
            ),
            (
                "promptgate_input_tokens_total",
                "Prompt tokens of the calls runs made.",
                &self.input_tokens,
            ),
            (
                "promptgate_output_tokens_total",
                "Completion tokens of the calls runs made.",
                &self.output_tokens,
            ),
            (
                "promptgate_cost_nano_usd_total",
                "What runs paid for model calls, in billionths of a US dollar.",
                &self.cost_nano_usd,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                value.load(Ordering::Relaxed)
            );
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

/// `promptgate_spend_usd_total{forge,repo}`: what each repository's runs paid this UTC
/// month (the figure `budget.per_month_usd` is checked against). A gauge: it starts
/// again at 0 each month.
pub fn spend_lines(rows: &[crate::store::spend::MonthSpend]) -> String {
    let mut out = String::from(
        "# HELP promptgate_spend_usd_total Dollars the repository's runs paid this UTC month.\n# TYPE promptgate_spend_usd_total gauge\n",
    );
    for r in rows {
        let _ = writeln!(
            out,
            "promptgate_spend_usd_total{{forge=\"{}\",repo=\"{}\"}} {}",
            label_value(&r.forge),
            label_value(&r.repo),
            r.usd
        );
    }
    out
}

/// A Prometheus label value: backslash, quote and newline escaped.
fn label_value(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
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
        let m = Arc::new(m);
        m.record_usage(&Usage {
            model_calls: 12,
            cache_hits: 3,
            input_tokens: 100,
            output_tokens: 40,
            cost_usd: 0.000328,
            ..Usage::default()
        });
        let flying = m.run_in_flight();
        let t = m.render(Some(QueueGauges {
            depth: 4,
            quarantined: 1,
            failed: 2,
            oldest_queued_age_secs: 12.5,
        }));
        assert!(t.contains("promptgate_runs_in_flight 1\n"), "{t}");
        drop(flying);
        assert!(m.render(None).contains("promptgate_runs_in_flight 0\n"));
        assert!(t.contains("promptgate_cache_hits_total 3\n"));
        assert!(t.contains("promptgate_input_tokens_total 100\n"));
        assert!(t.contains("promptgate_output_tokens_total 40\n"));
        assert!(t.contains("promptgate_cost_nano_usd_total 328000\n"));
        assert!(t.contains("promptgate_deliveries_failed 2\n"));
        assert!(t.contains("promptgate_queue_oldest_age_seconds 12.500\n"));
        assert!(t.contains("promptgate_build_info{version=\""));
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
