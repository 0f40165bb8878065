//! A suite's load test in the report (SPEC §5 `suites[].load`).

use serde::{Deserialize, Serialize};

use crate::config::load::LoadMetric;
use crate::config::Threshold;
use crate::load::LoadOutcome;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoadReport {
    /// Offered and achieved rate, requests, latencies, errors by kind, the timeline.
    #[serde(flatten)]
    pub outcome: LoadOutcome,
    /// The test window, seconds.
    pub duration_s: f64,
    /// Requests in flight at most (arrivals beyond it are `overload` errors).
    pub max_in_flight: usize,
    pub gates: Vec<LoadGate>,
    /// Every gate holds (and the test ran).
    pub pass: bool,
    /// Why the test could not run or could not be judged, when it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Dollars the test's requests cost, from the head manifest's pricing.
    #[serde(default)]
    pub cost_usd: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoadGate {
    pub metric: LoadMetric,
    /// `None` when the test produced no value for it (no answered request).
    pub value: Option<f64>,
    pub threshold: Threshold,
    pub pass: bool,
}

/// The load test as the comment shows it: preformatted, so a template needs no logic.
#[derive(Clone, Debug, Serialize)]
pub struct LoadView {
    pub offered_rps: String,
    pub achieved_rps: String,
    pub duration_s: String,
    pub requests: u64,
    /// `p50 / p95 / p99 / max` in ms, or "—" when nothing was answered.
    pub latency: String,
    pub errors: String,
    pub error_rate: String,
    pub gates: Vec<LoadGateView>,
    pub pass: bool,
    pub error: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct LoadGateView {
    pub metric: &'static str,
    pub value: String,
    pub threshold: String,
    pub result: &'static str,
}

impl LoadView {
    pub fn of(r: &LoadReport) -> Self {
        let o = &r.outcome;
        let value = |metric: LoadMetric, v: Option<f64>| match (metric, v) {
            (_, None) => "—".to_string(),
            (LoadMetric::ErrorRate, Some(v)) => format!("{:.1} %", v * 100.0),
            (_, Some(v)) => format!("{v:.0} ms"),
        };
        let bound = |metric: LoadMetric, t: &Threshold| {
            let mut parts = Vec::new();
            if let Some(min) = t.min {
                parts.push(format!("≥ {}", value(metric, Some(min))));
            }
            if let Some(max) = t.max {
                parts.push(format!("≤ {}", value(metric, Some(max))));
            }
            parts.join(", ")
        };
        LoadView {
            offered_rps: format!("{:.2}", o.offered_rps),
            achieved_rps: format!("{:.2}", o.achieved_rps),
            duration_s: format!("{:.0}", r.duration_s),
            requests: o.requests,
            latency: o.latency_ms.map_or("—".to_string(), |l| {
                format!("{} / {} / {} / {}", l.p50, l.p95, l.p99, l.max)
            }),
            errors: format!(
                "{} throttled · {} server · {} timeout · {} overload",
                o.errors.throttled, o.errors.server, o.errors.timeout, o.errors.overload
            ),
            error_rate: format!("{:.1} %", o.error_rate * 100.0),
            gates: r
                .gates
                .iter()
                .map(|g| LoadGateView {
                    metric: g.metric.as_str(),
                    value: value(g.metric, g.value),
                    threshold: bound(g.metric, &g.threshold),
                    result: if g.pass { "✅" } else { "❌" },
                })
                .collect(),
            pass: r.pass,
            error: r.error.clone(),
        }
    }
}
