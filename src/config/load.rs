//! `suites.<name>.load`: the open-loop load test of a suite's head model (SPEC §1).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::repo::Threshold;
use crate::diag::{line_in_section, Diagnostic, Diagnostics};

/// The test runs at this multiple of the expected peak unless the suite says otherwise.
pub const DEFAULT_FACTOR: f64 = 1.5;
/// How long the test runs when `duration` is not set.
pub const DEFAULT_DURATION: &str = "60s";
/// A request without a complete answer after this long counts as a `timeout` error.
pub const DEFAULT_TIMEOUT: &str = "30s";
/// A load test longer than this is refused: it would hold a bot worker for too long.
pub const MAX_DURATION: Duration = Duration::from_secs(30 * 60);

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadConfig {
    /// Expected production peak, requests per second.
    pub peak_rps: f64,
    /// The test runs at `factor × peak_rps`.
    #[serde(default = "default_factor")]
    pub factor: f64,
    /// How long arrivals go on, e.g. `60s`, `2m`, `500ms`.
    #[serde(default = "default_duration")]
    pub duration: String,
    /// Per-request limit; later answers count as `timeout` errors.
    #[serde(default = "default_timeout")]
    pub timeout: String,
    /// Requests in flight at most; an arrival beyond it is an `overload` error. Default:
    /// four times the concurrency the rate needs at a one-second latency, at least 32.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<usize>,
    /// The gates: `latency_p50_ms`, `latency_p95_ms`, `latency_p99_ms`, `error_rate`.
    #[serde(default)]
    pub metrics: BTreeMap<LoadMetric, Threshold>,
}

fn default_factor() -> f64 {
    DEFAULT_FACTOR
}

fn default_duration() -> String {
    DEFAULT_DURATION.to_string()
}

fn default_timeout() -> String {
    DEFAULT_TIMEOUT.to_string()
}

/// What a load test can gate on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadMetric {
    LatencyP50Ms,
    LatencyP95Ms,
    LatencyP99Ms,
    ErrorRate,
}

impl LoadMetric {
    pub fn as_str(self) -> &'static str {
        match self {
            LoadMetric::LatencyP50Ms => "latency_p50_ms",
            LoadMetric::LatencyP95Ms => "latency_p95_ms",
            LoadMetric::LatencyP99Ms => "latency_p99_ms",
            LoadMetric::ErrorRate => "error_rate",
        }
    }
}

impl std::fmt::Display for LoadMetric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl LoadConfig {
    /// Arrivals per second.
    pub fn rate(&self) -> f64 {
        self.peak_rps * self.factor
    }

    /// `duration`, checked by [`LoadConfig::check`] (zero when it does not parse).
    pub fn duration(&self) -> Duration {
        parse_duration(&self.duration).unwrap_or_default()
    }

    pub fn timeout(&self) -> Duration {
        parse_duration(&self.timeout).unwrap_or(Duration::from_secs(30))
    }

    /// Requests the test sends: the rate over the duration.
    pub fn requests(&self) -> u64 {
        (self.rate() * self.duration().as_secs_f64()).round() as u64
    }

    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight
            .unwrap_or_else(|| ((4.0 * self.rate()).ceil() as usize).max(32))
    }

    /// Problems with the values, naming the suite and the line.
    pub fn check(&self, suite: &str, text: &str, diags: &mut Diagnostics) {
        let file = super::CONFIG_PATH;
        let at = |key: &str| line_in_section(text, suite, key);
        let mut bad = |key: &str, message: String| {
            diags.push(Diagnostic::new(
                file,
                at(key),
                format!("suite `{suite}`: load.{message}"),
            ))
        };
        if !(self.peak_rps.is_finite() && self.peak_rps > 0.0) {
            bad(
                "peak_rps:",
                format!("peak_rps {} must be above 0", self.peak_rps),
            );
        }
        if !(self.factor.is_finite() && self.factor > 0.0) {
            bad("factor:", format!("factor {} must be above 0", self.factor));
        }
        match parse_duration(&self.duration) {
            Ok(d) if d.is_zero() => bad("duration:", "duration must be above 0".into()),
            Ok(d) if d > MAX_DURATION => bad(
                "duration:",
                format!(
                    "duration `{}` is longer than the {} minutes a load test may run",
                    self.duration,
                    MAX_DURATION.as_secs() / 60
                ),
            ),
            Ok(_) => {}
            Err(e) => bad("duration:", format!("duration: {e}")),
        }
        match parse_duration(&self.timeout) {
            Ok(d) if d.is_zero() => bad("timeout:", "timeout must be above 0".into()),
            Ok(_) => {}
            Err(e) => bad("timeout:", format!("timeout: {e}")),
        }
        if self.max_in_flight == Some(0) {
            bad("max_in_flight:", "max_in_flight must be at least 1".into());
        }
        if self.peak_rps > 0.0 && self.factor > 0.0 && self.requests() == 0 {
            bad(
                "duration:",
                "rate × duration sends no request; raise peak_rps or duration".into(),
            );
        }
        for (metric, t) in &self.metrics {
            let key = format!("{}:", metric.as_str());
            if t.min.is_none() && t.max.is_none() {
                bad(&key, format!("metrics.{metric} needs `min` or `max`"));
            }
            for bound in [t.min, t.max].into_iter().flatten() {
                let ok = match metric {
                    LoadMetric::ErrorRate => (0.0..=1.0).contains(&bound),
                    _ => bound >= 0.0,
                };
                if !ok {
                    bad(
                        &key,
                        format!("metrics.{metric} threshold {bound} is out of range"),
                    );
                }
            }
        }
    }
}

/// A duration as people write it in YAML: `500ms`, `30s`, `2m`, `1h`, or a number of
/// seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (e.g. 500ms, 30s, 2m, 1h)"))?;
    let seconds = match unit.trim() {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86_400.0,
        other => {
            return Err(format!(
                "`{text}`: unknown unit `{other}` (use ms, s, m, h or d)"
            ))
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("`{text}` is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("3 weeks").is_err());
    }

    #[test]
    fn defaults_and_derived_values() {
        let c: LoadConfig = serde_yaml_ng::from_str("peak_rps: 4").unwrap();
        assert_eq!(c.rate(), 6.0);
        assert_eq!(c.duration(), Duration::from_secs(60));
        assert_eq!(c.requests(), 360);
        assert_eq!(c.max_in_flight(), 32);
        let mut d = Diagnostics::default();
        c.check("s", "", &mut d);
        assert!(d.is_empty(), "{d}");
        let bad: LoadConfig = serde_yaml_ng::from_str(
            "peak_rps: 0\nduration: forever\nmetrics: { error_rate: { max: 2 } }",
        )
        .unwrap();
        let mut d = Diagnostics::default();
        bad.check("s", "", &mut d);
        let text = d.to_string();
        assert!(text.contains("peak_rps 0"), "{text}");
        assert!(text.contains("`forever` is not a duration"), "{text}");
        assert!(text.contains("error_rate threshold 2"), "{text}");
    }
}
