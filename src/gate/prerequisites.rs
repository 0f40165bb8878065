//! Gates that cannot be computed, found before any model call: a threshold on a metric
//! whose inputs the suite does not have (no `expected`, no judge, no `pricing`, a
//! provider that reports no latency). Each is an error naming the metric and why, never
//! a pass; what can only be known at run time is left to [`super::uncomputable_reason`].

use crate::config::{MetricName, ProviderKind, SuiteConfig, CONFIG_PATH};
use crate::diag::{line_in_section, Diagnostic, Diagnostics};
use crate::plan::{EvaluatorSpecs, SuiteFiles};

/// Which evaluator models a run has (validate knows them from the config, check from
/// the resolved specs).
#[derive(Clone, Copy, Debug)]
pub struct Evaluators {
    pub embedding: bool,
    pub judge: bool,
}

impl From<&EvaluatorSpecs> for Evaluators {
    fn from(e: &EvaluatorSpecs) -> Self {
        Self {
            embedding: e.embedding.is_some(),
            judge: e.judge.is_some(),
        }
    }
}

/// Every gated metric of `suite` that its files and evaluators cannot produce.
pub fn static_problems(
    name: &str,
    suite: &SuiteConfig,
    files: &SuiteFiles,
    evaluators: Evaluators,
    config_text: &str,
) -> Diagnostics {
    let mut diags = Diagnostics::default();
    let cases = &files.dataset.cases;
    for &metric in suite.metrics.keys() {
        let why = match metric {
            MetricName::Assertions if cases.iter().all(|c| c.asserts.is_empty()) => Some(format!(
                "no case in `{}` has an `assert` list",
                suite.dataset
            )),
            MetricName::Similarity if !evaluators.embedding => {
                Some("no embedding model is configured (`evaluators.embedding`)".to_string())
            }
            MetricName::Similarity if cases.iter().all(|c| c.expected.is_none()) => Some(format!(
                "no case in `{}` has an `expected` output to compare with",
                suite.dataset
            )),
            m if m.needs_judge() && !evaluators.judge => {
                Some("no judge is configured (`evaluators.judge`)".to_string())
            }
            MetricName::LatencyP50Ms | MetricName::LatencyP95Ms
                if files.manifest.provider == ProviderKind::Replay =>
            {
                Some(format!(
                    "`{}` uses provider `replay`, which reports no latency",
                    suite.model
                ))
            }
            MetricName::CostPerCaseUsd if files.manifest.pricing.is_none() => Some(format!(
                "the model manifest `{}` has no `pricing`",
                suite.model
            )),
            MetricName::GuardrailFailures if suite.guardrail.is_none() => {
                Some("the suite names no `guardrail` config to test".to_string())
            }
            _ => None,
        };
        if let Some(why) = why {
            diags.push(Diagnostic::new(
                CONFIG_PATH,
                line_in_section(config_text, name, &format!("{}:", metric.as_str())),
                format!(
                    "suite `{name}`: `{}` is gated but cannot be computed: {why}",
                    metric.as_str()
                ),
            ));
        }
    }
    diags
}
