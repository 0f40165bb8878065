//! From a suite's scores at base and head to its part of the report: metrics, gates,
//! failures and per-case details.

use std::collections::{HashMap, HashSet};

use super::evaluate::SuiteResults;
use super::security::AttackOutcome;
use super::suite_plan::{CaseJob, PlannedSuite};
use crate::config::{MetricName, SuiteConfig};
use crate::gate::{self, flips::CaseOutcome};
use crate::plan::SidePlan;
use crate::report::{
    CaseCounts, CaseDetail, CaseSide, ComparedModel, DatasetChangeKind, Failure, Flips,
    GuardrailBlock, Inconclusive, InjectionBlock, MetricRow, SuiteReport, Verdict,
};
use crate::score::CaseScores;

/// Longest output excerpt kept in the report's per-case details.
const EXCERPT_CHARS: usize = 2000;

fn excerpt(text: &str) -> String {
    if text.chars().count() <= EXCERPT_CHARS {
        text.to_string()
    } else {
        let mut s: String = text.chars().take(EXCERPT_CHARS).collect();
        s.push('…');
        s
    }
}

fn case_side(c: &CaseScores) -> CaseSide {
    let mut scores = std::collections::BTreeMap::new();
    let named: [(&str, Option<f64>); 5] = [
        ("assertions", c.assertions()),
        ("similarity", c.similarity()),
        ("faithfulness", c.faithfulness()),
        ("relevance", c.relevance()),
        ("hallucination", c.hallucination()),
    ];
    for (k, v) in named {
        if let Some(v) = v {
            scores.insert(k.to_string(), v);
        }
    }
    CaseSide {
        guardrail_intervened: c.samples.iter().any(|s| s.guardrail_intervened),
        output: c
            .samples
            .first()
            .map(|s| excerpt(&s.output))
            .unwrap_or_default(),
        scores,
        error: c.error.clone(),
        expected: None,
    }
}

/// Per-case failures at head: errors, failed assertions, and per-case scores under a
/// suite threshold, so a reviewer sees which cases pull a metric down.
fn case_failures(suite: &SuiteConfig, c: &CaseScores) -> Vec<Failure> {
    let mut out = Vec::new();
    let fail = |metric: &str, detail: String| Failure {
        case: c.id.clone(),
        metric: metric.to_string(),
        detail,
    };
    if let Some(e) = &c.error {
        out.push(fail("error", e.clone()));
        return out;
    }
    let failed: Vec<String> = c
        .samples
        .iter()
        .filter_map(|s| s.assertions.as_ref())
        .filter(|a| !a.pass)
        .flat_map(|a| a.failures.clone())
        .collect();
    if !failed.is_empty() {
        let mut uniq = failed;
        uniq.dedup();
        out.push(fail("assertions", uniq.join("; ")));
    }
    for (metric, value) in [
        (MetricName::Similarity, c.similarity()),
        (MetricName::Faithfulness, c.faithfulness()),
        (MetricName::Relevance, c.relevance()),
    ] {
        if let (Some(t), Some(v)) = (suite.metrics.get(&metric), value) {
            if !t.holds(v) {
                out.push(fail(
                    metric.as_str(),
                    format!("{v:.3} is below {:.3}", t.min.unwrap_or_default()),
                ));
            }
        }
    }
    if let Some(j) = c
        .samples
        .iter()
        .filter_map(|s| s.judge.as_ref())
        .find(|j| j.hallucination)
    {
        if suite.metrics.contains_key(&MetricName::HallucinationRate) {
            out.push(fail(
                "hallucination_rate",
                format!("judge flagged: {}", j.reason),
            ));
        }
    }
    out
}

/// `judge_not_gated`: why judge metrics are shown but do not gate (a judge below its
/// calibration), when they do not.
pub(super) fn suite_report(
    p: &PlannedSuite,
    r: SuiteResults,
    judge_not_gated: Option<&str>,
) -> SuiteReport {
    let SuiteResults {
        base,
        head,
        attacks_base,
        attacks_head,
        guardrail,
        ..
    } = r;
    let jobs = p.case_jobs();
    let base_by_id: HashMap<&str, &CaseScores> = base.iter().map(|b| (b.id.as_str(), b)).collect();
    let flaky_ids: HashSet<&str> = head
        .iter()
        .filter(|c| gate::flaky(&p.suite, c))
        .map(|c| c.id.as_str())
        .collect();
    let mut metrics = metric_rows(p, &base, &head, &attacks_base, &attacks_head, &guardrail);
    for row in metrics.iter_mut() {
        paired_stats(p, row, &head, &base_by_id, &flaky_ids);
        if row.name.needs_judge() {
            row.not_gated = judge_not_gated.map(str::to_string);
        }
    }
    // A threshold on a case metric that has no value although head cases were
    // evaluated cannot be checked: an error naming the metric, never a pass.
    let mut uncomputable = Vec::new();
    if !head.is_empty() {
        for row in metrics.iter_mut() {
            let case_metric = !matches!(
                row.name,
                MetricName::InjectionFailures | MetricName::GuardrailFailures
            );
            if case_metric
                && row.threshold.is_some()
                && row.head.is_none()
                && row.not_gated.is_none()
            {
                row.pass = false;
                row.failing_on_base = false;
                uncomputable.push(format!(
                    "metric `{}` is gated but has no value at head: {}",
                    row.name,
                    gate::uncomputable_reason(row.name)
                ));
            }
        }
    }
    let mut errors: Vec<String> = uncomputable
        .into_iter()
        .chain(
            head.iter()
                .chain(base.iter())
                .filter_map(|c| c.error.clone()),
        )
        .chain(
            attacks_head
                .iter()
                .chain(attacks_base.iter())
                .filter_map(|a| a.error.clone()),
        )
        .chain(guardrail.iter().filter_map(|g| g.as_ref().err().cloned()))
        .collect();
    // A case shared by both sides carries its one error twice.
    let mut seen = HashSet::new();
    errors.retain(|e| seen.insert(e.clone()));
    let dataset_changes = match p.base_plan() {
        Some(b) => gate::weakening::dataset_changes(
            &b.cases.iter().map(|c| &c.case).collect::<Vec<_>>(),
            &p.head
                .plan
                .cases
                .iter()
                .map(|c| &c.case)
                .collect::<Vec<_>>(),
        ),
        None => Vec::new(),
    };
    let weakened = dataset_changes.iter().any(|c| c.change.weakens());
    let verdict = if head.is_empty() && attacks_head.is_empty() && guardrail.is_empty() {
        Verdict::Skipped
    } else {
        gate::suite_verdict(&metrics, !errors.is_empty())
    };
    // Removed cases or assertions hold even a suite that would pass (or had nothing
    // left to evaluate) for a human; a failure or an error stays what it is.
    let verdict = if weakened {
        Verdict::combine([verdict, Verdict::NeedsReview])
    } else {
        verdict
    };
    let outcome = |c: &CaseScores| {
        if c.error.is_some() {
            CaseOutcome::Error
        } else if case_failures(&p.suite, c).is_empty() {
            CaseOutcome::Pass
        } else {
            CaseOutcome::Fail
        }
    };
    let flips = match p.base_plan() {
        Some(_) => gate::flips::flips(
            &base
                .iter()
                .map(|c| (c.id.as_str(), outcome(c)))
                .collect::<Vec<_>>(),
            &head
                .iter()
                .map(|c| (c.id.as_str(), outcome(c)))
                .collect::<Vec<_>>(),
        ),
        None => Flips {
            new: head.len(),
            ..Flips::default()
        },
    };
    let failures: Vec<Failure> = head
        .iter()
        .flat_map(|c| case_failures(&p.suite, c))
        .collect();
    let regressed: HashSet<&str> = flips.regressed.iter().map(String::as_str).collect();
    let shown: Vec<(&CaseJob, &CaseScores)> = jobs
        .iter()
        .zip(&head)
        .filter(|(j, _)| j.affected || p.full)
        .collect();
    let mut details: Vec<CaseDetail> = shown
        .iter()
        .map(|(_, h)| {
            let b = base_by_id.get(h.id.as_str()).copied();
            case_detail(p, h, b, &dataset_changes, flaky_ids.contains(h.id.as_str()))
        })
        .collect();
    // The regressed cases lead: they are what a reviewer must look at first.
    details.sort_by_key(|d| !regressed.contains(d.case.as_str()));
    let cached = shown
        .iter()
        .filter(|(j, h)| {
            h.cached && (j.shared || base_by_id.get(h.id.as_str()).is_none_or(|b| b.cached))
        })
        .count();
    let injection = p.suite.runs_injection().then(|| InjectionBlock {
        attempts: attacks_head.len(),
        failures: attacks_head
            .iter()
            .filter_map(|a| a.finding.clone())
            .collect(),
    });
    let guardrail_failures = guardrail_failures(&guardrail);
    let guardrail_block = p.suite.runs_guardrail_tests().then_some(GuardrailBlock {
        tests: guardrail.len(),
        failures: guardrail_failures,
    });
    let mut report = SuiteReport::empty(&p.name, verdict);
    report.triggered_by = p.triggered.clone();
    report.cases = CaseCounts {
        total: p.head.plan.cases.len(),
        affected: jobs.iter().filter(|j| j.affected).count(),
        evaluated: shown.len(),
        cached,
        removed: dataset_changes
            .iter()
            .filter(|c| c.change == DatasetChangeKind::Removed)
            .count(),
    };
    report.dataset_changes = dataset_changes;
    report.flips = flips;
    report.metrics = metrics;
    report.failures = failures;
    report.injection = injection;
    report.guardrail = guardrail_block;
    report.errors = errors;
    report.flaky = head
        .iter()
        .filter(|c| flaky_ids.contains(c.id.as_str()))
        .map(|c| c.id.clone())
        .collect();
    report.details = details;
    report.findings =
        super::findings::findings(p, &jobs, &head, &attacks_head, &report.flips.regressed);
    report.judge_escalation = p.evaluators.escalation.as_ref().map(|e| {
        // A shared case's one evaluation serves both sides: count it once.
        let shared: HashSet<&str> = jobs
            .iter()
            .filter(|j| j.shared)
            .map(|j| j.head.case.id.as_str())
            .collect();
        let samples: Vec<_> = head
            .iter()
            .chain(base.iter().filter(|c| !shared.contains(c.id.as_str())))
            .flat_map(|c| c.samples.iter())
            .filter(|s| s.judge.is_some())
            .collect();
        crate::report::EscalationSummary {
            band: e.band.band,
            judge: e.judge.model.clone(),
            judged: samples.len(),
            escalated: samples.iter().filter(|s| s.escalated.is_some()).count(),
            cost_usd: samples.iter().filter_map(|s| s.escalated).sum(),
        }
    });
    report
}

fn guardrail_failures(guardrail: &[Result<Option<Failure>, String>]) -> Vec<Failure> {
    guardrail
        .iter()
        .filter_map(|g| g.as_ref().ok().cloned().flatten())
        .collect()
}

/// The table rows: the whole suite's value at base and head for every shown metric.
fn metric_rows(
    p: &PlannedSuite,
    base: &[CaseScores],
    head: &[CaseScores],
    attacks_base: &[AttackOutcome],
    attacks_head: &[AttackOutcome],
    guardrail: &[Result<Option<Failure>, String>],
) -> Vec<MetricRow> {
    let base_has = |m| gate::metric_value(m, base).is_some();
    let head_has = |m| gate::metric_value(m, head).is_some();
    let shown = gate::shown_metrics(&p.suite, |m| base_has(m) || head_has(m));
    let count = |n: usize, ran: bool| ran.then_some(n as f64);
    let injection_failures =
        |outcomes: &[AttackOutcome]| outcomes.iter().filter(|o| o.finding.is_some()).count();
    shown
        .into_iter()
        .map(|m| {
            let (b, h) = match m {
                MetricName::InjectionFailures => (
                    count(injection_failures(attacks_base), !attacks_base.is_empty()),
                    count(injection_failures(attacks_head), !attacks_head.is_empty()),
                ),
                // Guardrail tests run at head only: the guardrail is a remote service.
                MetricName::GuardrailFailures => (
                    None,
                    count(guardrail_failures(guardrail).len(), !guardrail.is_empty()),
                ),
                _ => (
                    p.base.as_ref().and_then(|_| gate::metric_value(m, base)),
                    gate::metric_value(m, head),
                ),
            };
            gate::metric_row(
                m,
                p.suite.metrics.get(&m).copied(),
                b,
                h,
                p.suite.max_regression(),
            )
        })
        .collect()
}

/// Fills a 0..1 row's confidence interval, its inconclusive mark and the flaky cases'
/// share of the delta, from the per-case paired differences (see [`gate::paired`]).
fn paired_stats(
    p: &PlannedSuite,
    row: &mut MetricRow,
    head: &[CaseScores],
    base_by_id: &HashMap<&str, &CaseScores>,
    flaky_ids: &HashSet<&str>,
) {
    let Some(delta) = row.delta.filter(|_| row.name.is_unit_scale()) else {
        return;
    };
    let mut diffs = Vec::new();
    let mut flaky_sum = 0.0;
    for h in head.iter().filter(|h| h.error.is_none()) {
        let Some(b) = base_by_id.get(h.id.as_str()).filter(|b| b.error.is_none()) else {
            continue;
        };
        if let (Some(hv), Some(bv)) = (gate::case_value(row.name, h), gate::case_value(row.name, b))
        {
            diffs.push(hv - bv);
            if flaky_ids.contains(h.id.as_str()) {
                flaky_sum += hv - bv;
            }
        }
    }
    let Some(paired) = gate::paired::Paired::of(&diffs) else {
        return;
    };
    row.delta_ci = Some(paired.ci95(delta));
    let limit = if row.name.higher_is_better() {
        -p.suite.max_regression()
    } else {
        p.suite.max_regression()
    };
    if paired.straddles(delta, limit) {
        row.inconclusive = Some(Inconclusive {
            limit,
            samples_needed: paired.samples_to_settle(delta, limit, p.samples),
        });
    }
    if !flaky_ids.is_empty() {
        row.flaky_delta = Some(flaky_sum / paired.n as f64);
    }
}

/// One case's collapsed base/head details.
fn case_detail(
    p: &PlannedSuite,
    h: &CaseScores,
    b: Option<&CaseScores>,
    dataset_changes: &[crate::report::DatasetChange],
    flaky: bool,
) -> CaseDetail {
    let status = if h.error.is_some() {
        "error"
    } else if !case_failures(&p.suite, h).is_empty() {
        "fail"
    } else if b.is_none() && p.base_plan().is_some_and(|bp| bp.get(&h.id).is_none()) {
        "added"
    } else {
        "pass"
    };
    let mut detail = CaseDetail {
        case: h.id.clone(),
        status: status.to_string(),
        flaky,
        base: b.map(case_side),
        head: Some(case_side(h)),
    };
    let expected_changed = dataset_changes
        .iter()
        .any(|c| c.case == h.id && c.change == DatasetChangeKind::ExpectedChanged);
    if expected_changed {
        let expected = |plan: Option<&SidePlan>| {
            plan.and_then(|pl| pl.get(&h.id))
                .and_then(|c| c.case.expected.clone())
        };
        if let Some(side) = detail.base.as_mut() {
            side.expected = expected(p.base_plan());
        }
        if let Some(side) = detail.head.as_mut() {
            side.expected = expected(Some(&p.head.plan));
        }
    }
    detail
}

/// A compared model's row from its run's report: the metrics and counts, with its
/// verdict kept apart from the gating suite's.
pub(super) fn compared(model: &str, p: &PlannedSuite, r: SuiteReport) -> ComparedModel {
    ComparedModel {
        model: model.to_string(),
        model_id: Some(p.head.plan.spec.model.clone()),
        verdict: r.verdict,
        cases: r.cases,
        metrics: r.metrics,
        errors: r.errors,
    }
}

/// The row of a compared model that could not be planned (a missing or invalid
/// manifest, a gate its manifest cannot compute): an error shown, never a pass.
pub(super) fn compared_error(model: &str, d: &crate::diag::Diagnostics) -> ComparedModel {
    ComparedModel {
        model: model.to_string(),
        model_id: None,
        verdict: Verdict::Error,
        cases: CaseCounts::default(),
        metrics: Vec::new(),
        errors: d.0.iter().map(|x| x.to_string()).collect(),
    }
}
