//! A suite's shadow replay in the report (SPEC §10 `suites[].shadow`).

use serde::{Deserialize, Serialize};

use crate::config::Threshold;
use crate::shadow::Skipped;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ShadowReport {
    /// The change is one a replay can test (model manifest, or a static system prompt).
    pub applies: bool,
    /// What was replayed, or why nothing was.
    pub reason: String,
    /// Where the logs were read, and the window.
    #[serde(default)]
    pub logs: String,
    #[serde(default)]
    pub since: String,
    pub eligible: usize,
    pub sampled: usize,
    pub replayed: usize,
    /// The sampled `requestId`s, in sample order.
    #[serde(default)]
    pub sampled_ids: Vec<String>,
    /// Mean similarity of candidate and production answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub similarity: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift_rate: Option<f64>,
    /// The similarity below which a replay counts as drift.
    #[serde(default)]
    pub floor: f64,
    pub metrics: Vec<ShadowGate>,
    /// Lowest similarity first, PII-redacted.
    pub worst: Vec<ShadowExample>,
    #[serde(default)]
    pub skipped: Skipped,
    /// Mean latency, ms: production (logged `metrics.latencyMs`) and candidate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub production_latency_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate_latency_ms: Option<f64>,
    /// Dollars of the sampled requests: production from the logged token counts at the
    /// base manifest's pricing, candidate at the head's. `None` without pricing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub production_cost_usd: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate_cost_usd: Option<f64>,
    /// What this run paid for the replays and their embeddings (0 when cached).
    #[serde(default)]
    pub cost_usd: f64,
    /// Every gate holds (false when `applies` and the replay could not run).
    pub pass: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShadowGate {
    pub name: String,
    pub head: Option<f64>,
    pub threshold: Threshold,
    pub pass: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShadowExample {
    pub request_id: String,
    pub similarity: f64,
    pub production: String,
    pub candidate: String,
}

/// The shadow replay as the comment shows it: preformatted, so a template needs no logic.
#[derive(Clone, Debug, Serialize)]
pub struct ShadowView {
    pub applies: bool,
    pub reason: String,
    /// `N production requests from the last 24h`.
    pub title: String,
    pub eligible: usize,
    pub sampled: usize,
    pub replayed: usize,
    pub skipped: String,
    pub similarity: String,
    pub drift_rate: String,
    pub floor: String,
    pub latency: String,
    pub cost: String,
    pub gates: Vec<ShadowGateView>,
    pub worst: Vec<ShadowExampleView>,
    pub error: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ShadowGateView {
    pub name: String,
    pub value: String,
    pub threshold: String,
    pub result: &'static str,
}

#[derive(Clone, Debug, Serialize)]
pub struct ShadowExampleView {
    pub request_id: String,
    pub similarity: String,
    pub production: String,
    pub candidate: String,
}

impl ShadowView {
    pub fn of(r: &ShadowReport) -> Self {
        let num = |v: Option<f64>| v.map_or("—".to_string(), |v| format!("{v:.3}"));
        let ms = |v: Option<f64>| v.map_or("—".to_string(), |v| format!("{v:.0} ms"));
        let usd = |v: Option<f64>| v.map_or("— (no pricing)".to_string(), |v| format!("${v:.6}"));
        let s = &r.skipped;
        ShadowView {
            applies: r.applies,
            reason: r.reason.clone(),
            title: format!("{} production requests from the last {}", r.replayed, r.since),
            eligible: r.eligible,
            sampled: r.sampled,
            replayed: r.replayed,
            skipped: format!(
                "{} unreadable · {} other operation · {} other model · {} outside the window · {} not a text conversation",
                s.unreadable, s.operation, s.model, s.outside_window, s.body
            ),
            similarity: num(r.similarity),
            drift_rate: r.drift_rate.map_or("—".to_string(), |d| format!("{:.1} %", d * 100.0)),
            floor: format!("{:.2}", r.floor),
            latency: format!(
                "production {} · candidate {}",
                ms(r.production_latency_ms),
                ms(r.candidate_latency_ms)
            ),
            cost: format!(
                "production {} · candidate {}",
                usd(r.production_cost_usd),
                usd(r.candidate_cost_usd)
            ),
            gates: r
                .metrics
                .iter()
                .map(|g| ShadowGateView {
                    name: g.name.clone(),
                    value: num(g.head),
                    threshold: [g.threshold.min.map(|m| format!("≥ {m}")), g.threshold.max.map(|m| format!("≤ {m}"))]
                        .into_iter()
                        .flatten()
                        .collect::<Vec<_>>()
                        .join(", "),
                    result: if g.pass { "✅" } else { "❌" },
                })
                .collect(),
            worst: r
                .worst
                .iter()
                .map(|w| ShadowExampleView {
                    request_id: w.request_id.clone(),
                    similarity: format!("{:.3}", w.similarity),
                    production: w.production.clone(),
                    candidate: w.candidate.clone(),
                })
                .collect(),
            error: r.error.clone(),
        }
    }
}
