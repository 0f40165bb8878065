//! The gate: per-case scores → suite metrics → thresholds and regressions → verdict
//! (SPEC §1, §5). Pure arithmetic, no I/O.

pub mod flips;
pub mod paired;
pub mod prerequisites;
pub mod weakening;

use crate::config::{MetricName, SuiteConfig, Threshold};
use crate::report::{MetricRow, Verdict};
use crate::score::{stats, CaseScores, SampleScores};

/// Tolerance for comparing floating metric values with thresholds and regressions.
const EPS: f64 = 1e-9;

/// One case's value of a metric that is a mean over cases (samples averaged); `None`
/// for the metrics that are not (latency percentiles, failure counts).
pub fn case_value(metric: MetricName, case: &CaseScores) -> Option<f64> {
    match metric {
        MetricName::Assertions => case.assertions(),
        MetricName::Similarity => case.similarity(),
        MetricName::Faithfulness => case.faithfulness(),
        MetricName::Relevance => case.relevance(),
        MetricName::HallucinationRate => case.hallucination(),
        MetricName::CostPerCaseUsd => case.cost(),
        MetricName::LatencyP50Ms
        | MetricName::LatencyP95Ms
        | MetricName::InjectionFailures
        | MetricName::GuardrailFailures => None,
    }
}

/// A metric's value over the cases of one side; `None` when no case has a value.
pub fn metric_value(metric: MetricName, cases: &[CaseScores]) -> Option<f64> {
    let ok = cases.iter().filter(|c| c.error.is_none());
    match metric {
        MetricName::Assertions
        | MetricName::Similarity
        | MetricName::Faithfulness
        | MetricName::Relevance
        | MetricName::HallucinationRate
        | MetricName::CostPerCaseUsd => {
            let values: Vec<f64> = ok.filter_map(|c| case_value(metric, c)).collect();
            stats::mean(&values)
        }
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

/// A case is flaky when its samples disagree on any per-case outcome the suite gates:
/// its assertions, a per-case score against the suite's `min`, the judge's
/// hallucination flag.
pub fn flaky(suite: &SuiteConfig, case: &CaseScores) -> bool {
    let min = |m: MetricName| suite.metrics.get(&m).copied();
    let outcomes = |s: &SampleScores| -> [Option<bool>; 5] {
        let judged = |m: MetricName, v: Option<f64>| min(m).zip(v).map(|(t, v)| t.holds(v));
        [
            s.assertions.as_ref().map(|a| a.pass),
            judged(MetricName::Similarity, s.similarity),
            judged(
                MetricName::Faithfulness,
                s.judge.as_ref().map(|j| j.faithfulness),
            ),
            judged(MetricName::Relevance, s.judge.as_ref().map(|j| j.relevance)),
            min(MetricName::HallucinationRate)
                .and(s.judge.as_ref())
                .map(|j| j.hallucination),
        ]
    };
    let mut samples = case.samples.iter().map(outcomes);
    let Some(first) = samples.next() else {
        return false;
    };
    samples.any(|o| {
        o.iter()
            .zip(first.iter())
            .any(|(a, b)| a.is_some() && b.is_some() && a != b)
    })
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
    let mut row = MetricRow::new(metric, base, head);
    row.threshold = threshold;
    row.pass = match (threshold, head) {
        (Some(t), Some(h)) => t.holds(h),
        _ => true,
    };
    row.failing_on_base = !row.pass && threshold.zip(base).is_some_and(|(t, b)| !t.holds(b));
    row.regression = metric.is_unit_scale()
        && row
            .delta
            .is_some_and(|d| d.abs() > max_regression + EPS && metric.worsens(d));
    row
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
    } else {
        Verdict::combine(rows.iter().map(MetricRow::verdict))
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
            calls: 0,
            guardrail_intervened: false,
            assertions: Some(AssertOutcome {
                pass,
                failures: vec![],
            }),
            similarity: Some(sim),
            escalated: None,
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
        let suite: SuiteConfig = serde_yaml_ng::from_str(
            "prompts: {user: u.j2}\nmodel: m.yaml\ndataset: d.jsonl\nmetrics: {similarity: {min: 0.6}}",
        )
        .unwrap();
        assert!(!flaky(&suite, &cases[0]));
        assert!(flaky(&suite, &cases[1]));
        // Assertions agree, similarity crosses the gated minimum: flaky too.
        let sim_only = case("c", vec![sample(true, 0.9, 1), sample(true, 0.5, 1)]);
        assert!(flaky(&suite, &sim_only));
        let ungated: SuiteConfig =
            serde_yaml_ng::from_str("prompts: {user: u.j2}\nmodel: m.yaml\ndataset: d.jsonl")
                .unwrap();
        assert!(!flaky(&ungated, &sim_only));
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
    fn a_threshold_base_fails_too_needs_review_unless_head_is_worse() {
        let t = Some(Threshold {
            min: Some(1.0),
            max: None,
        });
        let same = metric_row(MetricName::Assertions, t, Some(0.5), Some(0.5), 0.05);
        assert!(same.failing_on_base && !same.pass);
        assert_eq!(same.verdict(), Verdict::NeedsReview);
        let better = metric_row(MetricName::Assertions, t, Some(0.5), Some(0.75), 0.05);
        assert_eq!(better.verdict(), Verdict::NeedsReview);
        let worse = metric_row(MetricName::Assertions, t, Some(0.5), Some(0.49), 0.05);
        assert_eq!(worse.verdict(), Verdict::Fail);
        let lat = Some(Threshold {
            min: None,
            max: Some(100.0),
        });
        let slower = metric_row(
            MetricName::LatencyP95Ms,
            lat,
            Some(200.0),
            Some(250.0),
            0.05,
        );
        assert_eq!(slower.verdict(), Verdict::Fail);
        let faster = metric_row(
            MetricName::LatencyP95Ms,
            lat,
            Some(200.0),
            Some(150.0),
            0.05,
        );
        assert_eq!(faster.verdict(), Verdict::NeedsReview);
        let passed_on_base = metric_row(MetricName::Assertions, t, Some(1.0), Some(0.5), 0.05);
        assert!(!passed_on_base.failing_on_base);
        assert_eq!(passed_on_base.verdict(), Verdict::Fail);
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
