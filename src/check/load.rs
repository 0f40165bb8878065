//! A suite's load test (SPEC §1 "Load test"): the head cases, rendered, sent
//! round-robin to the head manifest at `factor × peak_rps` for `duration`, open loop,
//! with no cache and no retries, then gated on the latencies and the error rate.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::suite_plan::PlannedSuite;
use crate::config::load::{LoadConfig, LoadMetric};
use crate::execute::client::ModelClient;
use crate::execute::{ChatRequest, Provider, ProviderError};
use crate::load::{LoadErrorKind, LoadOutcome, LoadPlan, LoadTarget};
use crate::report::{LoadGate, LoadReport};

/// The head cases as requests, and what the answers cost in tokens.
struct CaseTarget {
    provider: Arc<dyn Provider>,
    requests: Vec<ChatRequest>,
    input_tokens: AtomicU64,
    output_tokens: AtomicU64,
    /// Calls that reached the provider (an overload never does).
    sent: AtomicU64,
}

#[async_trait::async_trait]
impl LoadTarget for CaseTarget {
    async fn send(&self, index: usize) -> Result<(), LoadErrorKind> {
        let Some(req) = self.requests.get(index % self.requests.len().max(1)) else {
            return Err(LoadErrorKind::Server);
        };
        self.sent.fetch_add(1, Ordering::Relaxed);
        match self.provider.chat(req).await {
            Ok(answer) => {
                self.input_tokens
                    .fetch_add(answer.input_tokens, Ordering::Relaxed);
                self.output_tokens
                    .fetch_add(answer.output_tokens, Ordering::Relaxed);
                Ok(())
            }
            Err(ProviderError::Throttled { .. }) => Err(LoadErrorKind::Throttled),
            // A 5xx, a reset connection, and also a refusal (a 400): the endpoint did
            // not answer this request, which is what the error rate counts.
            Err(_) => Err(LoadErrorKind::Server),
        }
    }
}

/// Runs the suite's load test and gates it.
pub(super) async fn run(p: &PlannedSuite, cfg: &LoadConfig, client: &ModelClient) -> LoadReport {
    let head = &p.head.plan;
    let refused = |error: String| LoadReport {
        outcome: LoadOutcome {
            offered_rps: cfg.rate(),
            achieved_rps: 0.0,
            requests: 0,
            latency_ms: None,
            errors: Default::default(),
            error_rate: 0.0,
            peak_in_flight: 0,
            timeline: Vec::new(),
            schedule_lag_us: Default::default(),
        },
        duration_s: cfg.duration().as_secs_f64(),
        max_in_flight: cfg.max_in_flight(),
        gates: Vec::new(),
        pass: false,
        error: Some(error),
        cost_usd: 0.0,
    };
    if head.cases.is_empty() {
        return refused("the suite has no case at head to send".to_string());
    }
    let provider = match client.live_provider(&head.spec) {
        Ok(p) => p,
        Err(why) => return refused(format!("the load test cannot run: {why}")),
    };
    let plan = match LoadPlan::new(
        cfg.rate(),
        cfg.duration(),
        cfg.max_in_flight(),
        cfg.timeout(),
    ) {
        Ok(plan) => plan,
        Err(e) => return refused(e.to_string()),
    };
    let target = Arc::new(CaseTarget {
        provider,
        requests: head
            .cases
            .iter()
            .map(|c| ChatRequest {
                key: c.input_keys.first().cloned().unwrap_or_default(),
                spec: head.spec.clone(),
                messages: c.messages.clone(),
                guardrail: head.guardrail.clone(),
            })
            .collect(),
        input_tokens: AtomicU64::new(0),
        output_tokens: AtomicU64::new(0),
        sent: AtomicU64::new(0),
    });
    let outcome = crate::load::run(&plan, target.clone()).await;
    let (input, output) = (
        target.input_tokens.load(Ordering::Relaxed),
        target.output_tokens.load(Ordering::Relaxed),
    );
    client.count_live_calls(target.sent.load(Ordering::Relaxed), input, output);
    let cost_usd = head
        .pricing
        .as_ref()
        .map_or(0.0, |pr| pr.cost(input, output));
    let gates: Vec<LoadGate> = cfg
        .metrics
        .iter()
        .map(|(metric, threshold)| {
            let value = value_of(&outcome, *metric);
            LoadGate {
                metric: *metric,
                value,
                threshold: *threshold,
                // No answered request has no latency: that gate fails, it is not waved.
                pass: value.is_some_and(|v| threshold.holds(v)),
            }
        })
        .collect();
    LoadReport {
        pass: gates.iter().all(|g| g.pass),
        duration_s: plan.duration().as_secs_f64(),
        max_in_flight: plan.max_in_flight(),
        gates,
        error: None,
        cost_usd,
        outcome,
    }
}

fn value_of(o: &LoadOutcome, metric: LoadMetric) -> Option<f64> {
    match metric {
        LoadMetric::LatencyP50Ms => o.latency_ms.map(|l| l.p50 as f64),
        LoadMetric::LatencyP95Ms => o.latency_ms.map(|l| l.p95 as f64),
        LoadMetric::LatencyP99Ms => o.latency_ms.map(|l| l.p99 as f64),
        LoadMetric::ErrorRate => Some(o.error_rate),
    }
}
