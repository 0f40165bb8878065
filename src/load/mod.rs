//! Open-loop load generation: a constant arrival rate against one target, to measure
//! latency under load the way production traffic meets it.
//!
//! Arrival `i` is due at `start + i / rate`, whatever the earlier requests are doing:
//! a slow endpoint meets more concurrent requests instead of fewer (a closed loop of N
//! clients would slow its own arrivals down and hide the queueing: coordinated
//! omission). Requests in flight are bounded by `max_in_flight`; an arrival that
//! finds no room is counted as an `overload` error, never delayed and never dropped
//! silently, so `requests` is always the planned count. No cache, no retries.
//!
//! The module knows nothing of models or providers: a [`LoadTarget`] sends request
//! number `index` (the caller maps it round-robin to a case) and classifies failures.

mod svg;

use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio::task::{JoinError, JoinSet};
use tokio::time::{sleep_until, Instant};

pub use svg::svg_plot;

/// The timeline keeps at most this many points (a systematic sample), so an SVG of
/// a long run stays small.
pub const TIMELINE_POINTS: u64 = 500;

/// The largest run a plan may schedule: bounds the generator's own memory and the
/// time a mistyped rate could cost.
pub const MAX_REQUESTS: u64 = 10_000_000;

/// Highest value the histograms hold, in microseconds (one hour); larger values are
/// clamped to it rather than failing.
const HISTOGRAM_HIGH_US: u64 = 3_600_000_000;

/// Why one load request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadErrorKind {
    /// The endpoint throttled the request (HTTP 429, Bedrock ThrottlingException...).
    Throttled,
    /// The endpoint failed (a 5xx, a broken connection).
    Server,
    /// No complete answer within the plan's timeout.
    Timeout,
    /// The arrival found `max_in_flight` requests already in flight and was not sent.
    Overload,
}

/// What the generator drives. Implementations send one request and wait for the
/// complete answer (the whole body or stream), so latency is end to end.
#[async_trait::async_trait]
pub trait LoadTarget: Send + Sync + 'static {
    /// Sends request number `index` (the caller maps it round-robin to a case) and
    /// waits for the complete answer. It must not retry nor use a cache.
    async fn send(&self, index: usize) -> Result<(), LoadErrorKind>;
}

/// A validated load plan. The fields are private so that [`run`] never meets a plan
/// that [`LoadPlan::new`] would reject.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadPlan {
    rate_rps: f64,
    duration: Duration,
    max_in_flight: usize,
    timeout: Duration,
}

/// A plan that cannot run; the message names the offending field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("load plan: {field} {reason}")]
pub struct LoadPlanError {
    /// The field at fault: `rate_rps`, `duration`, `max_in_flight` or `timeout`.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl LoadPlanError {
    fn new(field: &'static str, reason: impl Into<String>) -> Self {
        LoadPlanError {
            field,
            reason: reason.into(),
        }
    }
}

impl LoadPlan {
    /// Checks a plan: a positive finite rate, a non-zero duration, room for at least
    /// one request in flight, a non-zero timeout, and between 1 and [`MAX_REQUESTS`]
    /// arrivals in all.
    pub fn new(
        rate_rps: f64,
        duration: Duration,
        max_in_flight: usize,
        timeout: Duration,
    ) -> Result<LoadPlan, LoadPlanError> {
        if !rate_rps.is_finite() || rate_rps <= 0.0 {
            return Err(LoadPlanError::new(
                "rate_rps",
                format!("must be a positive number of requests per second, got {rate_rps}"),
            ));
        }
        if duration.is_zero() {
            return Err(LoadPlanError::new("duration", "must be longer than zero"));
        }
        if max_in_flight == 0 {
            return Err(LoadPlanError::new("max_in_flight", "must be at least 1"));
        }
        if max_in_flight > Semaphore::MAX_PERMITS {
            return Err(LoadPlanError::new(
                "max_in_flight",
                format!("must be at most {}", Semaphore::MAX_PERMITS),
            ));
        }
        if timeout.is_zero() {
            return Err(LoadPlanError::new("timeout", "must be longer than zero"));
        }
        let planned = (rate_rps * duration.as_secs_f64()).round();
        if planned < 1.0 {
            return Err(LoadPlanError::new(
                "rate_rps",
                format!(
                    "× duration schedules no request ({rate_rps} rps for {:?})",
                    duration
                ),
            ));
        }
        if planned > MAX_REQUESTS as f64 {
            return Err(LoadPlanError::new(
                "rate_rps",
                format!("× duration schedules {planned} requests, more than {MAX_REQUESTS}"),
            ));
        }
        Ok(LoadPlan {
            rate_rps,
            duration,
            max_in_flight,
            timeout,
        })
    }

    /// Arrivals per second.
    pub fn rate_rps(&self) -> f64 {
        self.rate_rps
    }

    /// How long arrivals keep coming (in-flight requests may finish after it).
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// Most requests in flight at once.
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight
    }

    /// Per-request deadline, from send to the complete answer.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Arrivals scheduled: `round(rate × duration)`.
    pub fn requests(&self) -> u64 {
        // In range by construction (1..=MAX_REQUESTS).
        (self.rate_rps * self.duration.as_secs_f64()).round() as u64
    }

    /// When arrival `index` is due, from the start of the run.
    fn arrival_offset(&self, index: u64) -> Duration {
        Duration::from_secs_f64(index as f64 / self.rate_rps)
    }
}

/// Latency percentiles in integer milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Latencies {
    pub p50: u64,
    pub p95: u64,
    pub p99: u64,
    pub max: u64,
}

/// How late arrivals went out, in microseconds: the generator's own health. A large
/// lag means the machine, not the endpoint, limited the run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleLag {
    pub p50: u64,
    pub p99: u64,
    pub max: u64,
}

/// Failed requests by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorCounts {
    pub throttled: u64,
    pub server: u64,
    pub timeout: u64,
    pub overload: u64,
}

impl ErrorCounts {
    /// All errors together.
    pub fn total(&self) -> u64 {
        self.throttled + self.server + self.timeout + self.overload
    }

    fn count(&mut self, kind: LoadErrorKind) {
        let slot = match kind {
            LoadErrorKind::Throttled => &mut self.throttled,
            LoadErrorKind::Server => &mut self.server,
            LoadErrorKind::Timeout => &mut self.timeout,
            LoadErrorKind::Overload => &mut self.overload,
        };
        *slot += 1;
    }
}

/// One sampled request, for a plot of latency over time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelinePoint {
    /// When it was sent (or, for an overload, turned away), in ms since the start.
    pub t_ms: u64,
    /// Send to answer (or to the error) in ms; 0 for an overload.
    pub latency_ms: u64,
    /// Whether it got a complete answer.
    pub ok: bool,
}

/// What a run measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoadOutcome {
    /// The plan's arrival rate.
    pub offered_rps: f64,
    /// Successful answers divided by the planned duration in seconds.
    pub achieved_rps: f64,
    /// Arrivals scheduled, `round(rate × duration)`: every one is either answered or
    /// counted in `errors`.
    pub requests: u64,
    /// Percentiles over successful answers only (an error's latency says how fast it
    /// failed, not how fast the endpoint answers); absent when nothing succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<Latencies>,
    pub errors: ErrorCounts,
    /// `errors.total() / requests`.
    pub error_rate: f64,
    /// Most requests in flight at once, as the generator saw it at each arrival
    /// (including the arriving one): about rate × latency when the loop is open.
    pub peak_in_flight: u64,
    /// A systematic sample (every k-th arrival) of at most [`TIMELINE_POINTS`]
    /// requests, in time order. Error counts are exact in `errors`, not sampled.
    pub timeline: Vec<TimelinePoint>,
    /// Actual send time minus planned arrival time, over all arrivals.
    pub schedule_lag_us: ScheduleLag,
}

/// Runs a plan against a target and waits for the last request in flight (at most
/// one timeout after the last arrival).
///
/// Latency is measured from the moment the request is handed to the target to its
/// complete answer; the delay between the planned arrival and that moment is
/// reported separately as `schedule_lag_us`. A target that panics counts as a
/// `server` error.
pub async fn run(plan: &LoadPlan, target: Arc<dyn LoadTarget>) -> LoadOutcome {
    let requests = plan.requests();
    let room = Arc::new(Semaphore::new(plan.max_in_flight));
    let mut in_flight: JoinSet<Record> = JoinSet::new();
    let start = Instant::now();
    let mut tally = Tally::new(start, requests.div_ceil(TIMELINE_POINTS));

    for index in 0..requests {
        let planned = start + plan.arrival_offset(index);
        // Always awaited, even when late: the sleep yields to the runtime (cooperative
        // budget), so a generator behind schedule still lets requests progress.
        sleep_until(planned).await;
        while let Some(done) = in_flight.try_join_next() {
            tally.joined(done);
        }
        match Arc::clone(&room).try_acquire_owned() {
            Ok(permit) => {
                let now_in_flight = plan.max_in_flight - room.available_permits();
                tally.peak_in_flight = tally.peak_in_flight.max(now_in_flight as u64);
                let target = Arc::clone(&target);
                let timeout = plan.timeout;
                in_flight.spawn(async move {
                    let sent = Instant::now();
                    let answer = tokio::time::timeout(timeout, target.send(index as usize)).await;
                    let latency = sent.elapsed();
                    drop(permit);
                    Record {
                        index,
                        planned,
                        sent,
                        latency,
                        result: answer.unwrap_or(Err(LoadErrorKind::Timeout)),
                    }
                });
            }
            Err(_) => tally.record(Record {
                index,
                planned,
                sent: Instant::now(),
                latency: Duration::ZERO,
                result: Err(LoadErrorKind::Overload),
            }),
        }
    }
    while let Some(done) = in_flight.join_next().await {
        tally.joined(done);
    }
    tally.finish(plan, requests)
}

/// One request's fate, as its task reports it.
struct Record {
    index: u64,
    planned: Instant,
    sent: Instant,
    latency: Duration,
    result: Result<(), LoadErrorKind>,
}

/// A histogram that cannot fail: values are clamped to its range. The `Option` only
/// exists because construction returns a `Result` even for constant bounds.
struct Hist(Option<Histogram<u64>>);

impl Hist {
    fn new() -> Self {
        Hist(Histogram::new_with_bounds(1, HISTOGRAM_HIGH_US, 3).ok())
    }

    fn record(&mut self, value: u64) {
        if let Some(h) = self.0.as_mut() {
            h.saturating_record(value);
        }
    }

    /// The value at a quantile, or `None` when empty.
    fn quantile(&self, q: f64) -> Option<u64> {
        self.0
            .as_ref()
            .filter(|h| !h.is_empty())
            .map(|h| h.value_at_quantile(q))
    }
}

/// The running aggregate: histograms, counts, the sampled timeline.
struct Tally {
    start: Instant,
    stride: u64,
    ok: u64,
    errors: ErrorCounts,
    latency_us: Hist,
    /// Exact, since the histogram's max is only within its precision.
    max_latency_us: u64,
    lag_us: Hist,
    max_lag_us: u64,
    peak_in_flight: u64,
    timeline: Vec<TimelinePoint>,
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn millis_rounded(us: u64) -> u64 {
    us.saturating_add(500) / 1000
}

impl Tally {
    fn new(start: Instant, stride: u64) -> Self {
        Tally {
            start,
            stride: stride.max(1),
            ok: 0,
            errors: ErrorCounts::default(),
            latency_us: Hist::new(),
            max_latency_us: 0,
            lag_us: Hist::new(),
            max_lag_us: 0,
            peak_in_flight: 0,
            timeline: Vec::new(),
        }
    }

    fn joined(&mut self, done: Result<Record, JoinError>) {
        match done {
            Ok(record) => self.record(record),
            // Only a panic: tasks are never aborted while the run is alive.
            Err(_) => self.errors.count(LoadErrorKind::Server),
        }
    }

    fn record(&mut self, r: Record) {
        let lag = micros(r.sent.saturating_duration_since(r.planned));
        self.lag_us.record(lag);
        self.max_lag_us = self.max_lag_us.max(lag);
        let latency = micros(r.latency);
        match r.result {
            Ok(()) => {
                self.ok += 1;
                self.latency_us.record(latency);
                self.max_latency_us = self.max_latency_us.max(latency);
            }
            Err(kind) => self.errors.count(kind),
        }
        if r.index % self.stride == 0 {
            self.timeline.push(TimelinePoint {
                t_ms: millis_rounded(micros(r.sent.saturating_duration_since(self.start))),
                latency_ms: millis_rounded(latency),
                ok: r.result.is_ok(),
            });
        }
    }

    fn finish(mut self, plan: &LoadPlan, requests: u64) -> LoadOutcome {
        let latency_ms = (self.ok > 0).then(|| {
            let at = |q: f64| millis_rounded(self.latency_us.quantile(q).unwrap_or(0));
            let max = millis_rounded(self.max_latency_us);
            Latencies {
                p50: at(0.50).min(max),
                p95: at(0.95).min(max),
                p99: at(0.99).min(max),
                max,
            }
        });
        let lag_at = |q: f64| self.lag_us.quantile(q).unwrap_or(0).min(self.max_lag_us);
        let schedule_lag_us = ScheduleLag {
            p50: lag_at(0.50),
            p99: lag_at(0.99),
            max: self.max_lag_us,
        };
        self.timeline.sort_by_key(|p| p.t_ms);
        LoadOutcome {
            offered_rps: plan.rate_rps,
            achieved_rps: self.ok as f64 / plan.duration.as_secs_f64(),
            requests,
            latency_ms,
            errors: self.errors,
            error_rate: self.errors.total() as f64 / requests as f64,
            peak_in_flight: self.peak_in_flight,
            timeline: self.timeline,
            schedule_lag_us,
        }
    }
}

#[cfg(test)]
mod tests;
