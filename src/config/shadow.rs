//! `suites.<name>.shadow`: replay of production requests from Amazon Bedrock model
//! invocation logs against the head (SPEC §10).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::load::parse_duration;
use super::repo::Threshold;
use crate::diag::{line_in_section, Diagnostic, Diagnostics};

/// The window of logs read when `since` is not set.
pub const DEFAULT_SINCE: &str = "24h";
/// Requests replayed when `sample` is not set.
pub const DEFAULT_SAMPLE: usize = 200;
/// Below this similarity a replay counts as drift, unless `metrics.similarity.min`
/// sets another floor.
pub const DEFAULT_FLOOR: f64 = 0.85;
/// The gate when the block sets no `metrics`: a shadow block always gates something.
pub const DEFAULT_MAX_DRIFT: f64 = 0.05;
/// A sample this large would make one PR pay for a day of traffic.
pub const MAX_SAMPLE: usize = 5_000;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShadowConfig {
    /// `s3://bucket/prefix/` where Bedrock writes the logs (or a local directory).
    pub logs: String,
    /// Only records this recent, e.g. `24h`, `90m`.
    #[serde(default = "default_since")]
    pub since: String,
    /// Requests replayed at most.
    #[serde(default = "default_sample")]
    pub sample: usize,
    /// Only records of this production model id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_id: Option<String>,
    /// `similarity` (mean, also the drift floor) and `drift_rate`.
    #[serde(default)]
    pub metrics: BTreeMap<ShadowMetric, Threshold>,
}

fn default_since() -> String {
    DEFAULT_SINCE.to_string()
}

fn default_sample() -> usize {
    DEFAULT_SAMPLE
}

/// What a shadow replay can gate on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShadowMetric {
    Similarity,
    DriftRate,
}

impl ShadowMetric {
    pub fn as_str(self) -> &'static str {
        match self {
            ShadowMetric::Similarity => "similarity",
            ShadowMetric::DriftRate => "drift_rate",
        }
    }
}

impl ShadowConfig {
    /// `since`, checked by [`ShadowConfig::check`].
    pub fn since(&self) -> Duration {
        parse_duration(&self.since).unwrap_or(Duration::from_secs(86_400))
    }

    /// The similarity below which a replay counts as drift.
    pub fn floor(&self) -> f64 {
        self.metrics
            .get(&ShadowMetric::Similarity)
            .and_then(|t| t.min)
            .unwrap_or(DEFAULT_FLOOR)
    }

    /// The gates in force: the configured ones, else `drift_rate ≤ 0.05`.
    pub fn gates(&self) -> BTreeMap<ShadowMetric, Threshold> {
        if self.metrics.is_empty() {
            let max = Threshold {
                min: None,
                max: Some(DEFAULT_MAX_DRIFT),
            };
            return BTreeMap::from([(ShadowMetric::DriftRate, max)]);
        }
        self.metrics.clone()
    }

    /// Problems with the values, naming the suite and the line.
    pub fn check(&self, suite: &str, text: &str, diags: &mut Diagnostics) {
        let file = super::CONFIG_PATH;
        let mut bad = |key: &str, message: String| {
            diags.push(Diagnostic::new(
                file,
                line_in_section(text, suite, key),
                format!("suite `{suite}`: shadow.{message}"),
            ))
        };
        if let Err(e) = crate::shadow::LogSource::parse(&self.logs) {
            bad("logs:", format!("logs: {e}"));
        }
        match parse_duration(&self.since) {
            Ok(d) if d.is_zero() => bad("since:", "since must be above 0".into()),
            Ok(_) => {}
            Err(e) => bad("since:", format!("since: {e}")),
        }
        if self.sample == 0 || self.sample > MAX_SAMPLE {
            bad(
                "sample:",
                format!("sample {} must be 1..={MAX_SAMPLE}", self.sample),
            );
        }
        if self
            .model_id
            .as_deref()
            .is_some_and(|m| m.trim().is_empty())
        {
            bad("model_id:", "model_id must not be empty".into());
        }
        for (metric, t) in &self.metrics {
            let key = format!("{}:", metric.as_str());
            if t.min.is_none() && t.max.is_none() {
                bad(
                    &key,
                    format!("metrics.{} needs `min` or `max`", metric.as_str()),
                );
            }
            for bound in [t.min, t.max].into_iter().flatten() {
                if !(0.0..=1.0).contains(&bound) {
                    bad(
                        &key,
                        format!(
                            "metrics.{} threshold {bound} is outside 0..1",
                            metric.as_str()
                        ),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_floor_and_gates() {
        let c: ShadowConfig = serde_yaml_ng::from_str("logs: s3://b/p/").unwrap();
        assert_eq!(c.since(), Duration::from_secs(86_400));
        assert_eq!(c.sample, 200);
        assert_eq!(c.floor(), 0.85);
        assert_eq!(c.gates()[&ShadowMetric::DriftRate].max, Some(0.05));
        let mut d = Diagnostics::default();
        c.check("s", "", &mut d);
        assert!(d.is_empty(), "{d}");
        let bad: ShadowConfig = serde_yaml_ng::from_str(
            "logs: ftp://x\nsince: soon\nsample: 0\nmetrics: { drift_rate: { max: 5 }, similarity: {} }",
        )
        .unwrap();
        let mut d = Diagnostics::default();
        bad.check("s", "", &mut d);
        let text = d.to_string();
        for needle in [
            "logs:",
            "`soon`",
            "sample 0",
            "threshold 5",
            "needs `min` or `max`",
        ] {
            assert!(text.contains(needle), "{needle}: {text}");
        }
        assert!(serde_yaml_ng::from_str::<ShadowConfig>("logs: x\nsampel: 3").is_err());
    }
}
