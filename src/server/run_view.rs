//! What the run page shows, computed from the stored report (SPEC §5): per case the
//! base and head sides with their word diff, scores with deltas, the case's failures
//! and flags; per suite the metric table, injection and guardrail findings, the load
//! test. The case filters (`?show=&suite=&metric=&q=&sort=`) apply here, on the server,
//! so the page works without its script; the script (`run.js`) repeats the same rules
//! in the browser only to save the round trip.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::word_diff::{self, Piece};
use crate::config::{MetricName, MetricUnit, Threshold};
use crate::report::load::LoadView;
use crate::report::markdown::{delta_with_ci, fmt_usd, thousands};
use crate::report::{CaseDetail, CaseSide, Failure, InjectionFailure, MetricRow, Report, Usage};

/// The page's query: the signed link's grant, and the case filters.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct PageQuery {
    pub exp: Option<u64>,
    pub sig: Option<String>,
    #[serde(default)]
    pub show: String,
    #[serde(default)]
    pub suite: String,
    #[serde(default)]
    pub metric: String,
    #[serde(default)]
    pub q: String,
    #[serde(default)]
    pub sort: String,
}

/// The `show=` choices, in the order the page offers them.
pub const SHOWS: [&str; 5] = ["all", "regressed", "fixed", "failing", "flaky"];

/// The filters as applied: unknown values fall back to "all" and report order, so an
/// edited URL shows something rather than an error.
#[derive(Clone, Debug, Serialize)]
pub struct Filter {
    pub show: &'static str,
    pub suite: String,
    pub metric: String,
    pub q: String,
    /// `delta` (worst change first), `case` (by id), or `""` (the report's order).
    pub sort: &'static str,
}

impl Filter {
    pub fn of(q: &PageQuery) -> Self {
        Filter {
            show: SHOWS
                .into_iter()
                .find(|s| *s == q.show.trim())
                .unwrap_or("all"),
            suite: q.suite.trim().to_string(),
            metric: q.metric.trim().to_string(),
            q: q.q.trim().to_string(),
            sort: match q.sort.trim() {
                "delta" => "delta",
                "case" => "case",
                _ => "",
            },
        }
    }

    /// Nothing is left out: the page holds every case and the script can filter alone.
    fn keeps_all(&self) -> bool {
        self.show == "all" && self.suite.is_empty() && self.metric.is_empty() && self.q.is_empty()
    }

    fn keeps(&self, c: &CaseView) -> bool {
        (self.show == "all" || c.flags.contains(&self.show))
            && (self.suite.is_empty() || c.suite == self.suite)
            && (self.metric.is_empty() || c.metrics.contains(&self.metric))
            && (self.q.is_empty() || c.matches(&self.q.to_lowercase()))
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct SideView {
    pub output: String,
    pub error: Option<String>,
    pub expected: Option<String>,
    pub guardrail_intervened: bool,
}

impl SideView {
    fn of(s: &CaseSide) -> Self {
        SideView {
            output: s.output.clone(),
            error: s.error.clone(),
            expected: s.expected.clone(),
            guardrail_intervened: s.guardrail_intervened,
        }
    }
}

/// One score of a case at base and head.
#[derive(Clone, Debug, Serialize)]
pub struct ScoreLine {
    pub metric: String,
    pub base: String,
    pub head: String,
    pub delta: String,
    /// `worse`, `better` or `""`, by the metric's direction.
    pub trend: &'static str,
}

#[derive(Clone, Debug, Serialize)]
pub struct CaseView {
    pub suite: String,
    pub case: String,
    pub status: String,
    /// Which `show=` choices list the case (besides `all`).
    pub flags: Vec<&'static str>,
    pub base: Option<SideView>,
    pub head: Option<SideView>,
    /// Base → head word diff; empty unless both sides have an output.
    pub diff: Vec<Piece>,
    /// Both sides have an output and they differ.
    pub changed: bool,
    pub scores: Vec<ScoreLine>,
    /// The case's entries of the suite's failures (assertions, thresholds, errors).
    pub failures: Vec<Failure>,
    /// Metrics the case has a score for (what `metric=` matches).
    pub metrics: Vec<String>,
    /// Sort keys for `sort=delta`: per metric, and `""` for the worst of them; the
    /// change in the metric's good direction, so the most negative is the worst.
    pub sort_keys: BTreeMap<String, f64>,
    /// `sort_keys` as JSON, for the script.
    pub sort_json: String,
}

impl CaseView {
    fn matches(&self, needle: &str) -> bool {
        let side = |s: &Option<SideView>| {
            s.as_ref()
                .is_some_and(|s| s.output.to_lowercase().contains(needle))
        };
        self.case.to_lowercase().contains(needle) || side(&self.base) || side(&self.head)
    }
}

/// A case's score name as the metric it feeds (`hallucination` is the per-case
/// `hallucination_rate`), for its direction; unknown names count as higher-is-better.
fn higher_is_better(score: &str) -> bool {
    if score == "hallucination" {
        return false;
    }
    MetricName::ALL
        .into_iter()
        .find(|m| m.as_str() == score)
        .is_none_or(|m| m.higher_is_better())
}

fn case_view(suite: &crate::report::SuiteReport, d: &CaseDetail) -> CaseView {
    let mut flags = Vec::new();
    if suite.flips.regressed.contains(&d.case) {
        flags.push("regressed");
    }
    if suite.flips.fixed.contains(&d.case) {
        flags.push("fixed");
    }
    if matches!(d.status.as_str(), "fail" | "error") {
        flags.push("failing");
    }
    if d.flaky || suite.flaky.contains(&d.case) {
        flags.push("flaky");
    }
    let names: BTreeSet<&String> = d
        .base
        .iter()
        .chain(d.head.iter())
        .flat_map(|s| s.scores.keys())
        .collect();
    let mut sort_keys = BTreeMap::new();
    let scores = names
        .iter()
        .map(|name| {
            let at = |s: &Option<CaseSide>| s.as_ref().and_then(|s| s.scores.get(*name).copied());
            let (b, h) = (at(&d.base), at(&d.head));
            let delta = b.zip(h).map(|(b, h)| h - b);
            let good = delta.map(|x| if higher_is_better(name) { x } else { -x });
            if let Some(g) = good {
                sort_keys.insert(name.to_string(), g);
            }
            ScoreLine {
                metric: name.to_string(),
                base: b.map_or_else(dash, ratio),
                head: h.map_or_else(dash, ratio),
                delta: delta.map_or_else(dash, |x| signed(MetricUnit::Ratio, x)),
                trend: match good {
                    Some(g) if g < -1e-9 => "worse",
                    Some(g) if g > 1e-9 => "better",
                    _ => "",
                },
            }
        })
        .collect();
    if let Some(worst) = sort_keys.values().copied().reduce(f64::min) {
        sort_keys.insert(String::new(), worst);
    }
    let (diff, changed) = match (&d.base, &d.head) {
        (Some(b), Some(h)) => (word_diff::diff(&b.output, &h.output), b.output != h.output),
        _ => (Vec::new(), false),
    };
    CaseView {
        suite: suite.name.clone(),
        case: d.case.clone(),
        status: d.status.clone(),
        flags,
        base: d.base.as_ref().map(SideView::of),
        head: d.head.as_ref().map(SideView::of),
        diff,
        changed,
        scores,
        failures: suite
            .failures
            .iter()
            .filter(|f| f.case == d.case)
            .cloned()
            .collect(),
        metrics: names.into_iter().cloned().collect(),
        sort_json: serde_json::to_string(&sort_keys).unwrap_or_else(|_| "{}".to_string()),
        sort_keys,
    }
}

fn dash() -> String {
    "—".to_string()
}

fn ratio(v: f64) -> String {
    value(MetricUnit::Ratio, v)
}

/// A metric value in its unit: `0.840`, `430 ms` (whole milliseconds), `$0.000328`, `3`.
fn value(unit: MetricUnit, v: f64) -> String {
    if !v.is_finite() {
        return "n/a".to_string();
    }
    match unit {
        MetricUnit::Ratio => {
            let s = format!("{v:.3}");
            if s == "-0.000" {
                "0.000".to_string()
            } else {
                s
            }
        }
        MetricUnit::Millis => format!("{} ms", thousands(v.round() as i64)),
        MetricUnit::Usd => fmt_usd(v),
        MetricUnit::Count if v.fract() == 0.0 => thousands(v as i64),
        MetricUnit::Count => format!("{v:.3}"),
    }
}

/// `+0.050`, `-0.070`, `0.000` when it rounds to zero.
fn signed(unit: MetricUnit, d: f64) -> String {
    let body = value(unit, d.abs());
    if body.bytes().all(|b| !b.is_ascii_digit() || b == b'0') {
        body
    } else if d < 0.0 {
        format!("-{body}")
    } else {
        format!("+{body}")
    }
}

fn threshold(unit: MetricUnit, t: &Threshold) -> String {
    match (t.min, t.max) {
        (Some(a), Some(b)) => format!("{} … {}", value(unit, a), value(unit, b)),
        (Some(a), None) => format!("≥ {}", value(unit, a)),
        (None, Some(b)) => format!("≤ {}", value(unit, b)),
        (None, None) => dash(),
    }
}

/// A row of a suite's metric table.
#[derive(Clone, Debug, Serialize)]
pub struct MetricLine {
    pub name: &'static str,
    pub base: String,
    pub head: String,
    pub delta: String,
    pub threshold: String,
    /// `—` for a metric that was not evaluated (no head value): no ✅ for nothing.
    pub result: String,
    /// `pass`, `fail`, `needs_review` or `""` (not evaluated, not gated).
    pub class: &'static str,
}

fn metric_line(m: &MetricRow) -> MetricLine {
    let unit = m.name.unit();
    let opt = |v: Option<f64>| v.map_or_else(dash, |v| value(unit, v));
    let (mut result, class) = if let Some(why) = &m.not_gated {
        (format!("shown, not gated: {why}"), "")
    } else if m.head.is_none() {
        (dash(), "")
    } else if !m.pass {
        ("❌ threshold not met".to_string(), "fail")
    } else if m.regression {
        ("⚠️ regression".to_string(), "needs_review")
    } else {
        ("✅".to_string(), "pass")
    };
    if m.failing_on_base {
        result.push_str(" (failing on base too)");
    }
    if let Some(inc) = m.inconclusive {
        result.push_str(&match inc.samples_needed {
            Some(n) => format!(" — inconclusive: ~{n} samples per case would settle it"),
            None => " — inconclusive: the estimate sits on the limit".to_string(),
        });
    }
    let delta = delta_with_ci(m, |d| signed(unit, d));
    MetricLine {
        name: m.name.as_str(),
        base: opt(m.base),
        head: opt(m.head),
        delta,
        threshold: m
            .threshold
            .as_ref()
            .map_or_else(dash, |t| threshold(unit, t)),
        result,
        class,
    }
}

/// A failed guardrail test: what was expected and what happened, split from the
/// stored detail ("expected blocked, but … let it through") when it has that shape.
#[derive(Clone, Debug, Serialize)]
pub struct GuardrailLine {
    pub case: String,
    pub expected: String,
    pub actual: String,
}

fn guardrail_line(f: &Failure) -> GuardrailLine {
    let (expected, actual) = f
        .detail
        .strip_prefix("expected ")
        .and_then(|rest| rest.split_once(", but "))
        .map_or((dash(), f.detail.clone()), |(e, a)| {
            (e.to_string(), a.to_string())
        });
    GuardrailLine {
        case: f.case.clone(),
        expected,
        actual,
    }
}

/// Of `ran` attacks or tests, the ones that failed.
#[derive(Clone, Debug, Serialize)]
pub struct Findings<T> {
    pub ran: usize,
    pub failures: Vec<T>,
}

#[derive(Clone, Debug, Serialize)]
pub struct SuiteView {
    pub name: String,
    pub metrics: Vec<MetricLine>,
    /// `None` when no attack ran (never "0 of 0").
    pub injection: Option<Findings<InjectionFailure>>,
    /// `None` when no guardrail test ran.
    pub guardrail: Option<Findings<GuardrailLine>>,
    pub load: Option<LoadView>,
}

#[derive(Clone, Debug, Serialize)]
pub struct UsageView {
    pub model_calls: u64,
    pub embedding_calls: u64,
    pub cache_hits: u64,
    pub baseline_calls: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost: String,
    /// (kind, dollars) of the kinds that cost something.
    pub cost_by_kind: Vec<(&'static str, String)>,
    pub replayed: u64,
    pub replayed_cost: String,
    /// Whole milliseconds.
    pub duration_ms: String,
}

fn usage_view(u: &Usage, duration_ms: u64) -> UsageView {
    let k = &u.cost_by_kind;
    UsageView {
        model_calls: u.model_calls,
        embedding_calls: u.embedding_calls,
        cache_hits: u.cache_hits,
        baseline_calls: u.baseline_calls,
        input_tokens: u.input_tokens,
        output_tokens: u.output_tokens,
        cost: fmt_usd(u.cost_usd),
        cost_by_kind: [
            ("generation", k.generation),
            ("judge", k.judge),
            ("embedding", k.embedding),
            ("attack", k.attack),
            ("load", k.load),
        ]
        .into_iter()
        .filter(|(_, v)| *v != 0.0)
        .map(|(n, v)| (n, fmt_usd(v)))
        .collect(),
        replayed: u.replayed,
        replayed_cost: fmt_usd(u.replayed_cost_usd),
        duration_ms: thousands(i64::try_from(duration_ms).unwrap_or(i64::MAX)),
    }
}

/// Everything the page shows that is computed from the report.
#[derive(Clone, Debug, Serialize)]
pub struct PageView {
    pub suites: Vec<SuiteView>,
    /// The cases the filter keeps, in the order asked for.
    pub cases: Vec<CaseView>,
    pub total_cases: usize,
    /// How many cases each `show=` choice lists (of all cases).
    pub counts: Vec<(&'static str, usize)>,
    pub filter: Filter,
    /// Nothing is filtered out (the script may filter in the browser).
    pub complete: bool,
    pub suite_names: Vec<String>,
    pub metric_names: Vec<String>,
    pub usage: UsageView,
}

pub fn page_view(report: &Report, filter: Filter) -> PageView {
    let all: Vec<CaseView> = report
        .suites
        .iter()
        .flat_map(|s| s.details.iter().map(move |d| case_view(s, d)))
        .collect();
    let counts = SHOWS
        .into_iter()
        .map(|show| {
            let n = all
                .iter()
                .filter(|c| show == "all" || c.flags.contains(&show))
                .count();
            (show, n)
        })
        .collect();
    let metric_names: BTreeSet<String> = all.iter().flat_map(|c| c.metrics.clone()).collect();
    let total_cases = all.len();
    let mut cases: Vec<CaseView> = all.into_iter().filter(|c| filter.keeps(c)).collect();
    match filter.sort {
        "delta" => {
            let key = |c: &CaseView| c.sort_keys.get(&filter.metric).copied();
            // Stable: equal keys keep the report's order; cases without a delta last.
            cases.sort_by(|a, b| match (key(a), key(b)) {
                (Some(x), Some(y)) => x.total_cmp(&y),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            });
        }
        "case" => cases.sort_by(|a, b| a.case.cmp(&b.case)),
        _ => {}
    }
    PageView {
        suites: report
            .suites
            .iter()
            .map(|s| SuiteView {
                name: s.name.clone(),
                metrics: s.metrics.iter().map(metric_line).collect(),
                injection: s
                    .injection
                    .as_ref()
                    .filter(|i| i.attempts > 0 || !i.failures.is_empty())
                    .map(|i| Findings {
                        ran: i.attempts,
                        failures: i.failures.clone(),
                    }),
                guardrail: s
                    .guardrail
                    .as_ref()
                    .filter(|g| g.tests > 0 || !g.failures.is_empty())
                    .map(|g| Findings {
                        ran: g.tests,
                        failures: g.failures.iter().map(guardrail_line).collect(),
                    }),
                load: s.load.as_ref().map(LoadView::of),
            })
            .collect(),
        cases,
        total_cases,
        counts,
        complete: filter.keeps_all(),
        filter,
        suite_names: report.suites.iter().map(|s| s.name.clone()).collect(),
        metric_names: metric_names.into_iter().collect(),
        usage: usage_view(&report.usage, report.duration_ms),
    }
}

/// `application/x-www-form-urlencoded` escaping of one query value, for the links the
/// pages build (pagination, filters).
pub fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_keep_their_digits_and_units() {
        assert_eq!(value(MetricUnit::Usd, 0.000328), "$0.000328");
        assert_eq!(value(MetricUnit::Millis, 429.6), "430 ms");
        assert_eq!(signed(MetricUnit::Ratio, -0.05), "-0.050");
        assert_eq!(signed(MetricUnit::Ratio, -0.0001), "0.000");
        assert_eq!(signed(MetricUnit::Ratio, 0.07), "+0.070");
        let mut row = MetricRow::new(MetricName::Similarity, Some(0.9), None);
        assert_eq!(metric_line(&row).result, "—", "not evaluated: no ✅");
        row.head = Some(0.95);
        assert_eq!(metric_line(&row).result, "✅");
        assert_eq!(query_escape("a b/ü&"), "a+b%2F%C3%BC%26");
    }

    #[test]
    fn a_guardrail_failure_splits_into_expected_and_actual() {
        let f = Failure {
            case: "pii".into(),
            metric: "guardrail".into(),
            detail: "expected blocked, but g 1 let it through (action NONE)".into(),
        };
        let l = guardrail_line(&f);
        assert_eq!(
            (l.expected.as_str(), l.actual.as_str()),
            ("blocked", "g 1 let it through (action NONE)")
        );
    }
}
