//! The gate: per-case scores → suite metrics → thresholds and regressions → verdict
//! (SPEC §1, §5). Pure arithmetic, no I/O.

pub mod prerequisites;
pub mod weakening;

use crate::config::{MetricName, SuiteConfig, Threshold};
use crate::report::{MetricRow, Verdict};
use crate::score::{stats, CaseScores};

/// Tolerance for comparing floating metric values with thresholds and regressions.
const EPS: f64 = 1e-9;

/// A metric's value over the cases of one side; `None` when no case has a value.
pub fn metric_value(metric: MetricName, cases: &[CaseScores]) -> Option<f64> {
    let ok = cases.iter().filter(|c| c.error.is_none());
    let collect =
        |f: fn(&CaseScores) -> Option<f64>| -> Vec<f64> { ok.clone().filter_map(f).collect() };
    match metric {
        MetricName::Assertions => stats::mean(&collect(CaseScores::assertions)),
        MetricName::Similarity => stats::mean(&collect(CaseScores::similarity)),
        MetricName::Faithfulness => stats::mean(&collect(CaseScores::faithfulness)),
        MetricName::Relevance => stats::mean(&collect(CaseScores::relevance)),
        MetricName::HallucinationRate => stats::mean(&collect(CaseScores::hallucination)),
        MetricName::CostPerCaseUsd => stats::mean(&collect(CaseScores::cost)),
        MetricName::LatencyP50Ms | MetricName::LatencyP95Ms => {
            let lat: Vec<f64> = ok
                .flat_map(|c| c.samples.iter().map(|s| s.latency_ms as f64))
                .collect();
            let p = if metric == MetricName::LatencyP50Ms {
                50.0
            } else {
                95.0
            };
            stats::percentile(&lat, p)
        }
        // Filled by the injection and guardrail suites, not from case scores.
        MetricName::InjectionFailures | MetricName::GuardrailFailures => None,
    }
}

/// Which rows the table shows: the suite's gated metrics, then the informational ones
/// that have a value (assertions when cases carry them, latency, cost with pricing).
pub fn shown_metrics(
    suite: &SuiteConfig,
    has_values: impl Fn(MetricName) -> bool,
) -> Vec<MetricName> {
    MetricName::ALL
        .into_iter()
        .filter(|m| {
            suite.metrics.contains_key(m)
                || (matches!(
                    m,
                    MetricName::Assertions
                        | MetricName::LatencyP50Ms
                        | MetricName::LatencyP95Ms
                        | MetricName::CostPerCaseUsd
                ) && has_values(*m))
        })
        .collect()
}

/// One table row: head against the threshold, and head against base for regressions.
pub fn metric_row(
    metric: MetricName,
    threshold: Option<Threshold>,
    base: Option<f64>,
    head: Option<f64>,
    max_regression: f64,
) -> MetricRow {
    let delta = match (base, head) {
        (Some(b), Some(h)) => Some(h - b),
        _ => None,
    };
    let pass = match (threshold, head) {
        (Some(t), Some(h)) => t.holds(h),
        _ => true,
    };
    let regression = metric.is_unit_scale()
        && delta.is_some_and(|d| {
            if metric.higher_is_better() {
                d < -max_regression - EPS
            } else {
                d > max_regression + EPS
            }
        });
    MetricRow {
        name: metric.as_str().to_string(),
        base,
        head,
        delta,
        threshold,
        pass,
        regression,
    }
}

/// Why a gated metric has no head value although head cases were evaluated: the gate
/// cannot be computed, which is an error, never a pass.
pub fn uncomputable_reason(metric: MetricName) -> &'static str {
    match metric {
        MetricName::Assertions => "no evaluated case has assertions",
        MetricName::Similarity => {
            "no evaluated case has an `expected` output, or no embedding model is configured"
        }
        MetricName::Faithfulness | MetricName::Relevance | MetricName::HallucinationRate => {
            "no judge is configured (`evaluators.judge`), or no case gave it what it grades"
        }
        MetricName::LatencyP50Ms | MetricName::LatencyP95Ms => {
            "the provider reported no latency (replayed or cached answers carry none)"
        }
        MetricName::CostPerCaseUsd => "the model manifest has no `pricing`",
        MetricName::InjectionFailures => "no injection attack ran",
        MetricName::GuardrailFailures => "no guardrail test ran",
    }
}

/// The suite verdict: error beats a failed threshold beats a regression.
pub fn suite_verdict(rows: &[MetricRow], has_errors: bool) -> Verdict {
    if has_errors {
        Verdict::Error
    } else if rows.iter().any(|r| !r.pass) {
        Verdict::Fail
    } else if rows.iter().any(|r| r.regression) {
        Verdict::NeedsReview
    } else {
        Verdict::Pass
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::score::assertions::AssertOutcome;
    use crate::score::judge::JudgeScores;
    use crate::score::SampleScores;

    fn sample(pass: bool, sim: f64, latency: u64) -> SampleScores {
        SampleScores {
            output: String::new(),
            latency_ms: latency,
            cost_usd: Some(0.001),
            spend: Default::default(),
            guardrail_intervened: false,
            assertions: Some(AssertOutcome {
                pass,
                failures: vec![],
            }),
            similarity: Some(sim),
            judge: Some(JudgeScores {
                faithfulness: sim,
                relevance: 1.0,
                hallucination: !pass,
                reason: String::new(),
            }),
        }
    }

    fn case(id: &str, samples: Vec<SampleScores>) -> CaseScores {
        CaseScores {
            id: id.into(),
            samples,
            ..Default::default()
        }
    }

    #[test]
    fn means_over_cases_and_samples() {
        let cases = vec![
            case("a", vec![sample(true, 0.9, 100)]),
            case("b", vec![sample(true, 0.7, 300), sample(false, 0.5, 200)]),
        ];
        // a: 1.0, b: 0.5 → 0.75
        assert_eq!(metric_value(MetricName::Assertions, &cases), Some(0.75));
        // a: 0.9, b: 0.6 → 0.75
        let sim = metric_value(MetricName::Similarity, &cases).unwrap();
        assert!((sim - 0.75).abs() < 1e-12);
        assert_eq!(
            metric_value(MetricName::HallucinationRate, &cases),
            Some(0.25)
        );
        assert_eq!(metric_value(MetricName::LatencyP95Ms, &cases), Some(300.0));
        assert_eq!(metric_value(MetricName::LatencyP50Ms, &cases), Some(200.0));
        assert!(!cases[0].flaky());
        assert!(cases[1].flaky());
    }

    #[test]
    fn errored_cases_do_not_score() {
        let mut bad = case("x", vec![sample(false, 0.0, 1)]);
        bad.error = Some("judge answer is not strict JSON".into());
        let cases = vec![case("a", vec![sample(true, 0.9, 100)]), bad];
        assert_eq!(metric_value(MetricName::Assertions, &cases), Some(1.0));
    }

    #[test]
    fn threshold_and_regression_table() {
        let min = |m| {
            Some(Threshold {
                min: Some(m),
                max: None,
            })
        };
        let max = |m| {
            Some(Threshold {
                min: None,
                max: Some(m),
            })
        };
        // (metric, threshold, base, head, pass, regression)
        let rows = [
            (
                MetricName::Similarity,
                min(0.82),
                Some(0.91),
                Some(0.84),
                true,
                true,
            ),
            (
                MetricName::Similarity,
                min(0.82),
                Some(0.91),
                Some(0.87),
                true,
                false,
            ),
            (
                MetricName::Similarity,
                min(0.82),
                Some(0.91),
                Some(0.86),
                true,
                false,
            ), // exactly 0.05
            (
                MetricName::Similarity,
                min(0.82),
                Some(0.91),
                Some(0.80),
                false,
                true,
            ),
            (
                MetricName::Assertions,
                min(1.0),
                Some(1.0),
                Some(1.0),
                true,
                false,
            ),
            (
                MetricName::HallucinationRate,
                max(0.02),
                Some(0.0),
                Some(0.01),
                true,
                false,
            ),
            (
                MetricName::HallucinationRate,
                max(0.5),
                Some(0.0),
                Some(0.2),
                true,
                true,
            ),
            (
                MetricName::LatencyP95Ms,
                max(450.0),
                Some(100.0),
                Some(400.0),
                true,
                false,
            ),
            (
                MetricName::LatencyP95Ms,
                max(450.0),
                Some(100.0),
                Some(451.0),
                false,
                false,
            ),
            (
                MetricName::Similarity,
                min(0.82),
                None,
                Some(0.9),
                true,
                false,
            ),
            (
                MetricName::Similarity,
                min(0.82),
                Some(0.9),
                None,
                true,
                false,
            ),
        ];
        for (i, (m, t, b, h, pass, reg)) in rows.into_iter().enumerate() {
            let r = metric_row(m, t, b, h, 0.05);
            assert_eq!((r.pass, r.regression), (pass, reg), "row {i}: {r:?}");
        }
    }

    #[test]
    fn verdict_precedence() {
        let ok = metric_row(MetricName::Similarity, None, Some(0.9), Some(0.9), 0.05);
        let reg = metric_row(MetricName::Similarity, None, Some(0.9), Some(0.5), 0.05);
        let fail = metric_row(
            MetricName::Similarity,
            Some(Threshold {
                min: Some(0.8),
                max: None,
            }),
            Some(0.9),
            Some(0.5),
            0.05,
        );
        assert_eq!(
            suite_verdict(std::slice::from_ref(&ok), false),
            Verdict::Pass
        );
        assert_eq!(
            suite_verdict(&[ok.clone(), reg.clone()], false),
            Verdict::NeedsReview
        );
        assert_eq!(
            suite_verdict(&[reg.clone(), fail.clone()], false),
            Verdict::Fail
        );
        assert_eq!(suite_verdict(&[ok, reg, fail], true), Verdict::Error);
        assert_eq!(
            Verdict::combine([Verdict::Skipped, Verdict::NeedsReview, Verdict::Pass]),
            Verdict::NeedsReview
        );
        assert_eq!(
            Verdict::combine([Verdict::Fail, Verdict::Error]),
            Verdict::Error
        );
        assert_eq!(Verdict::combine([]), Verdict::Pass);
    }
}
