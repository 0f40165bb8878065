//! The sticky PR comment (SPEC §7), rendered from `comment-templates/` with minijinja.
//!
//! The templates are embedded in the binary; a directory given in
//! [`RenderOptions::templates_dir`] may override any of them (the root `comment.md.j2` or a
//! partial) with a file of the same name. Formatting (numbers, deltas, thresholds, excerpts,
//! fences) is done here, so the templates only lay out pre-formatted strings; user-provided
//! text goes through the filters registered in [`environment`]:
//!
//! - `text`: one line of inline markdown (newlines become spaces, `<` is escaped);
//! - `cell`: makes a value safe inside a table cell (pipes escaped, newlines removed);
//!   apply it last, e.g. `{{ f.detail | text | cell }}` or `{{ f.case | code | cell }}`;
//! - `code`: an inline code span whose backtick delimiter is longer than any run inside;
//! - `html`: HTML-escapes (for `<summary>` lines);
//! - `fence`: a backtick fence longer than any backtick run in the text;
//! - `thousands`: `4873` → `4,873`.
//!
//! The comment always fits in [`RenderOptions::max_chars`] characters: the renderer starts
//! with a generous budget (excerpt length, details and failures shown per suite) and shrinks
//! it until the result fits, then drops every list and keeps only verdict, tables and usage,
//! and as the very last resort emits a summary built without templates.

use std::path::{Path, PathBuf};

use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde::Serialize;

use super::{
    CaseDetail, CaseSide, DatasetChangeKind, Failure, MetricRow, Report, SuiteReport, Tier, Usage,
    Verdict,
};
use crate::config::{MetricUnit, Threshold};

/// Hidden marker the bot uses to find its one sticky comment; always the first line.
pub const COMMENT_MARKER: &str = "<!-- promptgate:sticky -->";

/// GitHub's maximum comment body size, in characters.
pub const GITHUB_COMMENT_LIMIT: usize = 65_536;

/// The root template.
pub const ROOT_TEMPLATE: &str = "comment.md.j2";

/// The embedded templates, by name. A file of the same name in
/// [`RenderOptions::templates_dir`] replaces the embedded one.
pub const EMBEDDED_TEMPLATES: &[(&str, &str)] = &[
    (
        "comment.md.j2",
        include_str!("../../comment-templates/comment.md.j2"),
    ),
    (
        "config_change.md.j2",
        include_str!("../../comment-templates/config_change.md.j2"),
    ),
    (
        "suite.md.j2",
        include_str!("../../comment-templates/suite.md.j2"),
    ),
    (
        "case.md.j2",
        include_str!("../../comment-templates/case.md.j2"),
    ),
    (
        "tickets.md.j2",
        include_str!("../../comment-templates/tickets.md.j2"),
    ),
    (
        "usage.md.j2",
        include_str!("../../comment-templates/usage.md.j2"),
    ),
];

#[derive(Clone, Debug)]
pub struct RenderOptions {
    /// Directory whose files override the embedded templates of the same name.
    pub templates_dir: Option<PathBuf>,
    /// Link to the full report (`/runs/{id}`), shown at the end of the comment.
    pub report_url: Option<String>,
    /// Maximum size of the comment in characters (not bytes).
    pub max_chars: usize,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions {
            templates_dir: None,
            report_url: None,
            max_chars: GITHUB_COMMENT_LIMIT,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// A template does not parse or does not render.
    #[error("comment template {file}{}: {message}", line_suffix(.line))]
    Template {
        /// The template's name, or its path when it comes from the override directory.
        file: String,
        line: Option<usize>,
        message: String,
    },
}

fn line_suffix(line: &Option<usize>) -> String {
    match line {
        Some(l) => format!(" line {l}"),
        None => String::new(),
    }
}

/// Renders the sticky PR comment for `report`. The result starts with
/// [`COMMENT_MARKER`], is at most `opts.max_chars` characters long and has no unclosed
/// `<details>` or code fence. Only a broken template is an error, never the size.
pub fn render_comment(report: &Report, opts: &RenderOptions) -> Result<String, RenderError> {
    let env = environment(opts.templates_dir.as_deref());
    let dir = opts.templates_dir.as_deref();
    let tmpl = env
        .get_template(ROOT_TEMPLATE)
        .map_err(|e| template_error(&e, dir))?;

    let mut budget = Budget::initial();
    loop {
        let view = CommentView::build(report, opts, &budget);
        let raw = tmpl.render(&view).map_err(|e| template_error(&e, dir))?;
        let out = finish(&raw);
        if out.chars().count() <= opts.max_chars {
            return Ok(out);
        }
        if !budget.shrink(report) {
            break;
        }
    }
    Ok(fallback(report, opts))
}

/// The minijinja environment with the embedded templates, the overrides of `dir` and the
/// filters the templates use.
pub fn environment(dir: Option<&Path>) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_keep_trailing_newline(true);
    let dir = dir.map(Path::to_path_buf);
    env.set_loader(move |name| load_template(dir.as_deref(), name));
    env.add_filter("cell", cell);
    env.add_filter("text", text);
    env.add_filter("code", code_span);
    env.add_filter("html", html_escape);
    env.add_filter("fence", fence_for);
    env.add_filter("thousands", |n: i64| thousands(n));
    env
}

fn load_template(dir: Option<&Path>, name: &str) -> Result<Option<String>, minijinja::Error> {
    let safe = !name.is_empty()
        && name
            .split(['/', '\\'])
            .all(|part| !part.is_empty() && part != "." && part != "..")
        && !name.contains(':');
    if let (Some(dir), true) = (dir, safe) {
        let path = dir.join(name);
        if path.is_file() {
            return std::fs::read_to_string(&path).map(Some).map_err(|e| {
                minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    format!("cannot read {}: {e}", path.display()),
                )
            });
        }
    }
    Ok(EMBEDDED_TEMPLATES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, src)| (*src).to_string()))
}

fn template_error(err: &minijinja::Error, dir: Option<&Path>) -> RenderError {
    // The innermost minijinja error that knows its template is the most precise one (an
    // error in an included partial is wrapped by the include in the parent).
    let mut best = err;
    let mut cur: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    while let Some(e) = cur {
        if let Some(me) = e.downcast_ref::<minijinja::Error>() {
            if me.name().is_some() {
                best = me;
            }
        }
        cur = e.source();
    }
    let name = best.name().unwrap_or(ROOT_TEMPLATE);
    let file = match dir.map(|d| d.join(name)) {
        Some(p) if p.is_file() => p.display().to_string(),
        _ => name.to_string(),
    };
    let message = match best.detail() {
        Some(d) => format!("{}: {d}", best.kind()),
        None => best.kind().to_string(),
    };
    RenderError::Template {
        file,
        line: best.line(),
        message,
    }
}

// ---------------------------------------------------------------------------------------
// Budget
// ---------------------------------------------------------------------------------------

/// How much of each suite the comment shows; shrunk step by step until the comment fits.
#[derive(Clone, Debug, Serialize)]
struct Budget {
    /// Characters of each output excerpt.
    excerpt_chars: usize,
    /// Case details shown per suite.
    max_details: usize,
    /// Failures (and injection / guardrail failures) shown per suite.
    max_failures: usize,
    /// Entries of the other lists (errors, notes, flaky cases, triggering paths).
    max_items: usize,
    /// Characters of one line of user-provided text (error, failure detail, evidence).
    text_chars: usize,
    /// Drop every list: keep only verdict, errors, tables, counts and usage.
    compact: bool,
}

const MIN_EXCERPT_CHARS: usize = 200;

impl Budget {
    fn initial() -> Budget {
        Budget {
            excerpt_chars: 1_600,
            max_details: 20,
            max_failures: 50,
            max_items: 20,
            text_chars: 400,
            compact: false,
        }
    }

    /// One step smaller; false when there is nothing left to shrink. Steps that would not
    /// change what `report` shows (halving excerpts no output is that long, ...) are skipped.
    fn shrink(&mut self, report: &Report) -> bool {
        if self.compact {
            if self.max_items > 3 || self.text_chars > 100 {
                self.max_items = (self.max_items / 2).max(3);
                self.text_chars = (self.text_chars / 2).max(100);
                return true;
            }
            return false;
        }
        let most_details = report.suites.iter().map(|s| s.details.len()).max();
        let most_details = most_details.unwrap_or(0).min(self.max_details);
        let most_failures = report
            .suites
            .iter()
            .map(|s| {
                let inj = s.injection.as_ref().map_or(0, |i| i.failures.len());
                let gr = s.guardrail.as_ref().map_or(0, |g| g.failures.len());
                s.failures.len().max(inj).max(gr)
            })
            .max();
        let most_failures = most_failures.unwrap_or(0).min(self.max_failures);
        let longest_output = report
            .suites
            .iter()
            .flat_map(|s| &s.details)
            .flat_map(|d| [&d.base, &d.head])
            .flatten()
            .map(|side| side.output.len())
            .max()
            .unwrap_or(0);
        if most_details > 0
            && self.excerpt_chars > MIN_EXCERPT_CHARS
            && longest_output > MIN_EXCERPT_CHARS
        {
            self.excerpt_chars =
                (self.excerpt_chars.min(longest_output) / 2).max(MIN_EXCERPT_CHARS);
        } else if most_details > 0 {
            self.max_details = most_details / 2;
        } else if most_failures > 0 {
            self.max_details = 0;
            self.max_failures = most_failures / 2;
            self.text_chars = (self.text_chars * 3 / 4).max(160);
        } else {
            self.compact = true;
            self.max_details = 0;
            self.max_failures = 0;
            self.max_items = self.max_items.min(10);
            self.text_chars = self.text_chars.min(200);
        }
        true
    }
}

// ---------------------------------------------------------------------------------------
// The view the templates see
// ---------------------------------------------------------------------------------------

#[derive(Serialize)]
struct CommentView {
    marker: &'static str,
    verdict: VerdictView,
    base: String,
    head: String,
    tier: &'static str,
    tier_label: &'static str,
    errors: Vec<String>,
    errors_more: usize,
    notes: Vec<String>,
    notes_more: usize,
    config_change: Option<ConfigChangeView>,
    suites: Vec<SuiteView>,
    suites_skipped: usize,
    usage: UsageView,
    tickets: super::tickets::TicketsView,
    /// The preflight: calls and dollars expected before the run.
    estimate: Option<EstimateView>,
    /// The run waits for `/promptgate run --confirm` (or ran over budget, confirmed).
    over_budget: Option<OverBudgetView>,
    report_url: Option<String>,
    budget: Budget,
    /// True when the size budget is down to verdict, tables and usage.
    compact: bool,
}

#[derive(Serialize)]
struct EscalationView {
    band: [f64; 2],
    judge: String,
    judged: usize,
    escalated: usize,
    cost: String,
}

#[derive(Serialize)]
struct EstimateView {
    calls: u64,
    cost: String,
}

#[derive(Serialize)]
struct OverBudgetView {
    setting: String,
    estimate: String,
    would_be: String,
    allowed: String,
    confirmed: bool,
    held: bool,
}

#[derive(Serialize)]
struct VerdictView {
    key: &'static str,
    emoji: &'static str,
    label: &'static str,
}

#[derive(Serialize)]
struct ConfigChangeView {
    valid: bool,
    errors: Vec<String>,
    errors_more: usize,
    changes: Vec<String>,
    changes_more: usize,
}

#[derive(Serialize)]
struct SuiteView {
    name: String,
    verdict: VerdictView,
    skipped: bool,
    triggered_by: Vec<String>,
    triggered_by_more: usize,
    cases: CountsView,
    flips: FlipsView,
    /// One line per dataset change (`case: what`), and whether any holds the suite.
    dataset_changes: Vec<String>,
    dataset_changes_more: usize,
    dataset_weakened: bool,
    metrics: Vec<MetricView>,
    /// Compared models (`models:` after the first): one column each beside the gating
    /// model's head values, one row per metric.
    compared: Vec<ComparedView>,
    compared_rows: Vec<ComparedRowView>,
    errors: Vec<String>,
    errors_more: usize,
    failures: Vec<FailureView>,
    failures_total: usize,
    failures_more: usize,
    flaky: Vec<String>,
    flaky_total: usize,
    flaky_more: usize,
    injection: Option<InjectionView>,
    guardrail: Option<GuardrailView>,
    load: Option<super::load::LoadView>,
    shadow: Option<super::shadow::ShadowView>,
    judge_escalation: Option<EscalationView>,
    details: Vec<DetailView>,
    details_total: usize,
    details_more: usize,
    /// What compact mode leaves out, e.g. `5,000 failures`, `12 case details`.
    omitted: Vec<String>,
}

#[derive(Serialize)]
struct ComparedView {
    model: String,
    model_id: Option<String>,
    verdict: VerdictView,
    cases: CountsView,
    errors: Vec<String>,
}

#[derive(Serialize)]
struct ComparedRowView {
    name: String,
    /// The gating model's head value and result, then each compared model's.
    cells: Vec<String>,
}

#[derive(Serialize)]
struct FlipsView {
    regressed: Vec<String>,
    regressed_total: usize,
    regressed_more: usize,
    fixed: Vec<String>,
    fixed_total: usize,
    fixed_more: usize,
    new: usize,
    removed: usize,
    unchanged: usize,
    /// Anything to say: some case changed outcome, appeared or went.
    any: bool,
}

#[derive(Serialize)]
struct CountsView {
    total: usize,
    affected: usize,
    evaluated: usize,
    cached: usize,
    removed: usize,
}

#[derive(Serialize)]
struct MetricView {
    name: String,
    base: String,
    head: String,
    delta: String,
    threshold: String,
    result: String,
    pass: bool,
    regression: bool,
}

#[derive(Serialize)]
struct FailureView {
    case: String,
    metric: String,
    detail: String,
}

#[derive(Serialize)]
struct InjectionView {
    attempts: usize,
    failures: Vec<InjectionFailureView>,
    failures_total: usize,
    failures_more: usize,
}

#[derive(Serialize)]
struct InjectionFailureView {
    case: String,
    attack: String,
    technique: String,
    evidence: String,
}

#[derive(Serialize)]
struct GuardrailView {
    tests: usize,
    failures: Vec<FailureView>,
    failures_total: usize,
    failures_more: usize,
}

#[derive(Serialize)]
struct DetailView {
    case: String,
    status: String,
    icon: &'static str,
    flaky: bool,
    sides: Vec<SideView>,
}

#[derive(Serialize)]
struct SideView {
    /// `base` or `head`.
    label: &'static str,
    /// False when the case does not exist on this side.
    present: bool,
    output: String,
    /// Backtick fence longer than any backtick run of `output`.
    fence: String,
    /// The output was cut to `budget.excerpt_chars`.
    truncated: bool,
    output_chars: usize,
    scores: Vec<ScoreView>,
    error: Option<String>,
    /// The suite's guardrail intervened on this side's generation.
    guardrail_intervened: bool,
    /// The case's `expected` at this side, when base and head differ.
    expected: Option<String>,
}

#[derive(Serialize)]
struct ScoreView {
    name: String,
    value: String,
}

#[derive(Serialize)]
struct UsageView {
    model_calls: u64,
    baseline_calls: u64,
    embedding_calls: u64,
    cache_hits: u64,
    input_tokens: u64,
    output_tokens: u64,
    cost: String,
    duration: String,
    replayed: u64,
    replayed_cost: String,
}

impl CommentView {
    fn build(report: &Report, opts: &RenderOptions, budget: &Budget) -> CommentView {
        let (errors, errors_more) = take_texts(&report.errors, budget.max_items, budget);
        let (notes, notes_more) = take_texts(&report.notes, budget.max_items, budget);
        let config_change = report.config_change.as_ref().map(|cc| {
            let (errors, errors_more) = take_texts(&cc.errors, budget.max_items, budget);
            let (changes, changes_more) = take_texts(&cc.changes, budget.max_items, budget);
            ConfigChangeView {
                valid: cc.valid,
                errors,
                errors_more,
                changes,
                changes_more,
            }
        });
        let waiting = report.over_budget.as_ref().is_some_and(|o| o.held);
        CommentView {
            marker: COMMENT_MARKER,
            verdict: if waiting {
                VerdictView {
                    key: "over_budget",
                    emoji: "⏸️",
                    label: "waiting — over budget",
                }
            } else {
                verdict_view(report.verdict)
            },
            base: short_rev(&report.base),
            head: short_rev(&report.head),
            tier: match report.tier {
                Tier::Pr => "pr",
                Tier::Release => "release",
            },
            tier_label: tier_label(report.tier),
            errors,
            errors_more,
            notes,
            notes_more,
            config_change,
            suites: report
                .suites
                .iter()
                .map(|s| suite_view(s, budget))
                .collect(),
            suites_skipped: report
                .suites
                .iter()
                .filter(|s| s.verdict == Verdict::Skipped)
                .count(),
            usage: usage_view(&report.usage, report.duration_ms),
            tickets: super::tickets::TicketsView::build(&report.tickets, budget.max_items),
            estimate: report.estimate.as_ref().map(|e| EstimateView {
                calls: e.calls,
                cost: fmt_usd(e.cost_usd),
            }),
            over_budget: report.over_budget.as_ref().map(|o| OverBudgetView {
                setting: o.setting.clone(),
                estimate: fmt_usd(o.estimate_usd),
                would_be: fmt_usd(o.would_be_usd),
                allowed: fmt_usd(o.allowed_usd),
                confirmed: o.confirmed,
                held: o.held,
            }),
            report_url: opts.report_url.as_deref().map(link_destination),
            budget: budget.clone(),
            compact: budget.compact,
        }
    }
}

fn suite_view(s: &SuiteReport, budget: &Budget) -> SuiteView {
    let (triggered_by, triggered_by_more) = take_texts(&s.triggered_by, budget.max_items, budget);
    let (errors, errors_more) = take_texts(&s.errors, budget.max_items, budget);
    let (flaky, flaky_more) = take_texts(&s.flaky, budget.max_items, budget);
    let change_lines: Vec<String> = s
        .dataset_changes
        .iter()
        .map(|c| {
            let what = match c.change {
                DatasetChangeKind::Removed => "removed at head",
                DatasetChangeKind::AssertionsRemoved => "assertions removed",
                DatasetChangeKind::ExpectedChanged => "expected output changed",
            };
            if c.detail.is_empty() {
                format!("{}: {what}", c.case)
            } else {
                format!("{}: {what} ({})", c.case, c.detail)
            }
        })
        .collect();
    let (dataset_changes, dataset_changes_more) =
        take_texts(&change_lines, budget.max_items, budget);
    let (flaky, flaky_more) = if budget.compact {
        (Vec::new(), s.flaky.len())
    } else {
        (flaky, flaky_more)
    };
    let shown_failures = s.failures.len().min(budget.max_failures);
    let injection = s.injection.as_ref().map(|inj| {
        let shown = inj.failures.len().min(budget.max_failures);
        InjectionView {
            attempts: inj.attempts,
            failures: inj.failures[..shown]
                .iter()
                .map(|f| InjectionFailureView {
                    case: clip(&f.case, budget.text_chars),
                    attack: clip(&f.attack, budget.text_chars),
                    technique: clip(&f.technique, budget.text_chars),
                    evidence: clip(&f.evidence, budget.text_chars),
                })
                .collect(),
            failures_total: inj.failures.len(),
            failures_more: inj.failures.len() - shown,
        }
    });
    let guardrail = s.guardrail.as_ref().map(|g| {
        let shown = g.failures.len().min(budget.max_failures);
        GuardrailView {
            tests: g.tests,
            failures: failure_views(&g.failures[..shown], budget),
            failures_total: g.failures.len(),
            failures_more: g.failures.len() - shown,
        }
    });
    // Failing and erroring cases first (stable, so the report's order decides among them).
    let mut order: Vec<&CaseDetail> = s.details.iter().collect();
    order.sort_by_key(|d| detail_rank(d, &s.flips));
    let shown_details = s.details.len().min(budget.max_details);
    let mut omitted = Vec::new();
    let mut omit = |n: usize, one: &str, many: &str| {
        if n > 0 {
            omitted.push(format!(
                "{} {}",
                thousands(n as i64),
                if n == 1 { one } else { many }
            ));
        }
    };
    omit(s.failures.len(), "failure", "failures");
    omit(
        s.injection.as_ref().map_or(0, |i| i.failures.len()),
        "injection failure",
        "injection failures",
    );
    omit(
        s.guardrail.as_ref().map_or(0, |g| g.failures.len()),
        "guardrail failure",
        "guardrail failures",
    );
    omit(s.flaky.len(), "flaky case", "flaky cases");
    omit(s.details.len(), "case detail", "case details");
    SuiteView {
        name: s.name.clone(),
        verdict: verdict_view(s.verdict),
        skipped: s.verdict == Verdict::Skipped,
        triggered_by,
        triggered_by_more,
        cases: counts_view(&s.cases),
        flips: flips_view(&s.flips, budget),
        dataset_changes,
        dataset_changes_more,
        dataset_weakened: s.dataset_changes.iter().any(|c| c.change.weakens()),
        metrics: s.metrics.iter().map(metric_view).collect(),
        compared: s
            .compared
            .iter()
            .map(|c| ComparedView {
                model: c.model.clone(),
                model_id: c.model_id.clone(),
                verdict: verdict_view(c.verdict),
                cases: counts_view(&c.cases),
                errors: take_texts(&c.errors, budget.max_items, budget).0,
            })
            .collect(),
        compared_rows: compared_rows(s),
        errors,
        errors_more,
        failures: failure_views(&s.failures[..shown_failures], budget),
        failures_total: s.failures.len(),
        failures_more: s.failures.len() - shown_failures,
        flaky,
        flaky_total: s.flaky.len(),
        flaky_more,
        injection,
        guardrail,
        load: s.load.as_ref().map(super::load::LoadView::of),
        shadow: s.shadow.as_ref().map(super::shadow::ShadowView::of),
        judge_escalation: s.judge_escalation.as_ref().map(|e| EscalationView {
            band: e.band,
            judge: e.judge.clone(),
            judged: e.judged,
            escalated: e.escalated,
            cost: fmt_usd(e.cost_usd),
        }),
        details: order[..shown_details]
            .iter()
            .map(|d| detail_view(d, budget))
            .collect(),
        details_total: s.details.len(),
        details_more: s.details.len() - shown_details,
        omitted,
    }
}

fn counts_view(c: &super::CaseCounts) -> CountsView {
    CountsView {
        total: c.total,
        affected: c.affected,
        evaluated: c.evaluated,
        cached: c.cached,
        removed: c.removed,
    }
}

/// One row per gating metric: its head value and result for the gating model, then
/// for each compared model (`—` where a model has no such value).
fn compared_rows(s: &SuiteReport) -> Vec<ComparedRowView> {
    if s.compared.is_empty() {
        return Vec::new();
    }
    let cell = |m: Option<&MetricRow>| {
        m.map_or_else(
            || "—".to_string(),
            |m| {
                let v = metric_view(m);
                format!("{} {}", v.head, v.result)
            },
        )
    };
    s.metrics
        .iter()
        .map(|m| ComparedRowView {
            name: m.name.to_string(),
            cells: std::iter::once(cell(Some(m)))
                .chain(
                    s.compared
                        .iter()
                        .map(|c| cell(c.metrics.iter().find(|r| r.name == m.name))),
                )
                .collect(),
        })
        .collect()
}

/// Regressed cases first, then errors, failures, flaky, the rest, passes.
fn detail_rank(d: &CaseDetail, flips: &super::Flips) -> u8 {
    if flips.regressed.contains(&d.case) {
        return 0;
    }
    match d.status.as_str() {
        "error" => 1,
        "fail" => 2,
        _ if d.flaky => 3,
        "pass" => 5,
        _ => 4,
    }
}

fn flips_view(f: &super::Flips, budget: &Budget) -> FlipsView {
    let (regressed, regressed_more) = take_texts(&f.regressed, budget.max_items, budget);
    let (fixed, fixed_more) = take_texts(&f.fixed, budget.max_items, budget);
    FlipsView {
        regressed,
        regressed_total: f.regressed.len(),
        regressed_more,
        fixed,
        fixed_total: f.fixed.len(),
        fixed_more,
        new: f.new,
        removed: f.removed,
        unchanged: f.unchanged,
        any: !f.regressed.is_empty() || !f.fixed.is_empty() || f.new > 0 || f.removed > 0,
    }
}

fn failure_views(failures: &[Failure], budget: &Budget) -> Vec<FailureView> {
    failures
        .iter()
        .map(|f| FailureView {
            case: clip(&f.case, budget.text_chars),
            metric: clip(&f.metric, budget.text_chars),
            detail: clip(&f.detail, budget.text_chars),
        })
        .collect()
}

fn detail_view(d: &CaseDetail, budget: &Budget) -> DetailView {
    let icon = match d.status.as_str() {
        "pass" => "✅",
        "fail" => "❌",
        "error" => "🛑",
        "added" => "🆕",
        "removed" => "➖",
        _ => "🔹",
    };
    DetailView {
        case: clip(&d.case, budget.text_chars),
        status: clip(&d.status, 40),
        icon,
        flaky: d.flaky,
        sides: vec![
            side_view("base", d.base.as_ref(), budget),
            side_view("head", d.head.as_ref(), budget),
        ],
    }
}

fn side_view(label: &'static str, side: Option<&CaseSide>, budget: &Budget) -> SideView {
    let Some(side) = side else {
        return SideView {
            label,
            present: false,
            output: String::new(),
            fence: "```".to_string(),
            truncated: false,
            output_chars: 0,
            scores: Vec::new(),
            error: None,
            guardrail_intervened: false,
            expected: None,
        };
    };
    let (output, truncated, output_chars) = excerpt(&side.output, budget.excerpt_chars);
    SideView {
        label,
        present: true,
        fence: fence_for(&output),
        output,
        truncated,
        output_chars,
        scores: side
            .scores
            .iter()
            .map(|(name, v)| ScoreView {
                name: name.clone(),
                value: fmt_value(MetricUnit::Ratio, *v),
            })
            .collect(),
        error: side.error.as_deref().map(|e| clip(e, budget.text_chars)),
        guardrail_intervened: side.guardrail_intervened,
        expected: side.expected.as_deref().map(|e| clip(e, budget.text_chars)),
    }
}

fn usage_view(u: &Usage, duration_ms: u64) -> UsageView {
    UsageView {
        model_calls: u.model_calls,
        baseline_calls: u.baseline_calls,
        embedding_calls: u.embedding_calls,
        cache_hits: u.cache_hits,
        input_tokens: u.input_tokens,
        output_tokens: u.output_tokens,
        cost: fmt_usd(u.cost_usd),
        duration: fmt_duration(duration_ms),
        replayed: u.replayed,
        replayed_cost: fmt_usd(u.replayed_cost_usd),
    }
}

fn verdict_view(v: Verdict) -> VerdictView {
    VerdictView {
        key: v.as_str(),
        emoji: verdict_emoji(v),
        label: verdict_label(v),
    }
}

fn verdict_emoji(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "✅",
        Verdict::Skipped => "⏭️",
        Verdict::NeedsReview => "⚠️",
        Verdict::Fail => "❌",
        Verdict::Error => "🛑",
    }
}

fn verdict_label(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "passed",
        Verdict::Skipped => "skipped",
        Verdict::NeedsReview => "needs review",
        Verdict::Fail => "failed",
        Verdict::Error => "error",
    }
}

fn tier_label(t: Tier) -> &'static str {
    match t {
        Tier::Pr => "PR tier",
        Tier::Release => "release tier",
    }
}

/// The first `max` entries of a list of user texts, each clipped, and how many were left out.
fn take_texts(items: &[String], max: usize, budget: &Budget) -> (Vec<String>, usize) {
    let shown = items.len().min(max);
    let out = items[..shown]
        .iter()
        .map(|s| clip(s, budget.text_chars))
        .collect();
    (out, items.len() - shown)
}

// ---------------------------------------------------------------------------------------
// Formatting
// ---------------------------------------------------------------------------------------

fn fmt_value(kind: MetricUnit, v: f64) -> String {
    if !v.is_finite() {
        return "n/a".to_string();
    }
    match kind {
        MetricUnit::Ratio => format!("{v:.3}"),
        MetricUnit::Millis => thousands(v.round() as i64),
        MetricUnit::Usd => fmt_usd(v),
        MetricUnit::Count if v.fract() == 0.0 => thousands(v as i64),
        MetricUnit::Count => format!("{v:.3}"),
    }
}

/// Dollars with 4 to 6 decimals, enough for about three significant digits:
/// `$0.0421`, `$0.00291`, `$0.000120`.
pub(crate) fn fmt_usd(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".to_string();
    }
    let a = v.abs();
    let digits = if a == 0.0 || a >= 0.01 {
        4
    } else if a >= 0.001 {
        5
    } else {
        6
    };
    let body = format!("{a:.digits$}");
    if v < 0.0 && !is_zero_text(&body) {
        format!("−${body}")
    } else {
        format!("${body}")
    }
}

fn is_zero_text(s: &str) -> bool {
    s.chars().all(|c| !c.is_ascii_digit() || c == '0')
}

/// Signed delta: `+0.012`, `−0.070`, `+12`, `−$0.0010`; `0.000` when it rounds to zero.
fn fmt_delta(kind: MetricUnit, d: f64) -> String {
    if !d.is_finite() {
        return "n/a".to_string();
    }
    let body = fmt_value(kind, d.abs());
    if is_zero_text(&body) {
        body
    } else if d < 0.0 {
        format!("−{body}")
    } else {
        format!("+{body}")
    }
}

/// A threshold bound as written in the config: `0.82`, `450`, `$0.01`.
fn fmt_bound(kind: MetricUnit, v: f64) -> String {
    let plain = if !v.is_finite() {
        "n/a".to_string()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        thousands(v as i64)
    } else {
        format!("{v}")
    };
    if kind == MetricUnit::Usd {
        format!("${plain}")
    } else {
        plain
    }
}

fn fmt_threshold(kind: MetricUnit, t: &Threshold) -> String {
    let mut parts = Vec::new();
    if let Some(min) = t.min {
        parts.push(format!("≥ {}", fmt_bound(kind, min)));
    }
    if let Some(max) = t.max {
        parts.push(format!("≤ {}", fmt_bound(kind, max)));
    }
    if parts.is_empty() {
        "—".to_string()
    } else {
        parts.join(", ")
    }
}

fn metric_view(m: &MetricRow) -> MetricView {
    let kind = m.name.unit();
    let opt = |v: Option<f64>| v.map_or_else(|| "—".to_string(), |v| fmt_value(kind, v));
    let mut result = if m.head.is_none() && m.pass && !m.regression {
        "—".to_string()
    } else {
        match (m.pass, m.regression) {
            (true, false) => "✅",
            (true, true) => "⚠️ regression",
            (false, false) => "❌",
            (false, true) => "❌ ⚠️ regression",
        }
        .to_string()
    };
    if m.not_gated.is_some() {
        result = "shown, not gated: the judge is below its calibration".to_string();
    } else if m.failing_on_base {
        result.push_str(if m.verdict() == Verdict::NeedsReview {
            " failing on base too, not worse: review"
        } else {
            " failing on base too, and worse"
        });
    }
    if let Some(inc) = m.inconclusive {
        result.push_str(&match inc.samples_needed {
            Some(n) => format!(
                " inconclusive: ~{} samples per case would settle it",
                thousands(i64::from(n))
            ),
            None => " inconclusive: the estimate sits on the limit".to_string(),
        });
    }
    if let (Some(f), Some(d)) = (m.flaky_delta, m.delta) {
        if f.abs() > 1e-12 {
            result.push_str(&format!(
                " (flaky cases: {} of Δ {})",
                fmt_delta(kind, f),
                fmt_delta(kind, d)
            ));
        }
    }
    let delta = delta_with_ci(m, |d| fmt_delta(kind, d));
    MetricView {
        name: m.name.as_str().to_string(),
        base: opt(m.base),
        head: opt(m.head),
        delta,
        threshold: m
            .threshold
            .as_ref()
            .map_or_else(|| "—".to_string(), |t| fmt_threshold(kind, t)),
        result,
        pass: m.pass,
        regression: m.regression,
    }
}

/// A row's delta and its confidence interval, `Δ [low, high]`, each written by `fmt`;
/// `—` without a delta.
pub(crate) fn delta_with_ci(m: &MetricRow, fmt: impl Fn(f64) -> String) -> String {
    match (m.delta, m.delta_ci) {
        (Some(d), Some([low, high])) => format!("{} [{}, {}]", fmt(d), fmt(low), fmt(high)),
        (Some(d), None) => fmt(d),
        (None, _) => "—".to_string(),
    }
}

/// `4873` → `4,873`.
pub(crate) fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `850 ms`, `12.3 s`, `4m 05s`, `1h 02m`.
fn fmt_duration(ms: u64) -> String {
    if ms < 1_000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else if ms < 3_600_000 {
        let s = ms / 1000;
        format!("{}m {:02}s", s / 60, s % 60)
    } else {
        let m = ms / 60_000;
        format!("{}h {:02}m", m / 60, m % 60)
    }
}

/// A commit SHA shortened to 7 characters; anything else (a branch name) kept, clipped.
fn short_rev(rev: &str) -> String {
    if rev.len() >= 12 && rev.chars().all(|c| c.is_ascii_hexdigit()) {
        rev[..7].to_string()
    } else {
        clip(rev, 60)
    }
}

/// Link destination safe inside `[text](…)`.
fn link_destination(url: &str) -> String {
    let mut out = String::with_capacity(url.len());
    for c in url.chars() {
        match c {
            ' ' => out.push_str("%20"),
            '(' => out.push_str("%28"),
            ')' => out.push_str("%29"),
            '<' => out.push_str("%3C"),
            '>' => out.push_str("%3E"),
            '\n' | '\r' | '\t' => {}
            c => out.push(c),
        }
    }
    out
}

/// At most `max` characters of `s`, ending in `…` when cut.
fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// An output excerpt for a fenced block: line endings normalised, trailing whitespace
/// dropped, cut to `max` characters, and `<details>`/`<summary>` tags neutralised so that
/// text counting tags cannot be confused. Returns (excerpt, truncated, total chars).
fn excerpt(s: &str, max: usize) -> (String, bool, usize) {
    let norm = s.replace("\r\n", "\n").replace('\r', "\n");
    let norm = norm.trim_end();
    let total = norm.chars().count();
    let (mut out, truncated) = if total > max {
        let mut cut: String = norm.chars().take(max).collect();
        cut.truncate(cut.trim_end().len());
        cut.push_str("\n…");
        (cut, true)
    } else {
        (norm.to_string(), false)
    };
    for tag in ["<details", "</details", "<summary", "</summary"] {
        if out.to_ascii_lowercase().contains(tag) {
            out = neutralise_tag(&out, tag);
        }
    }
    (out, truncated, total)
}

/// Inserts a zero-width space after the `<` of every (case-insensitive) `tag`.
fn neutralise_tag(s: &str, tag: &str) -> String {
    let lower = s.to_ascii_lowercase();
    let mut out = String::with_capacity(s.len() + 8);
    let mut last = 0;
    for (i, _) in lower.match_indices(tag) {
        out.push_str(&s[last..i + 1]);
        out.push('\u{200b}');
        last = i + 1;
    }
    out.push_str(&s[last..]);
    out
}

fn longest_backtick_run(s: &str) -> usize {
    let mut best = 0;
    let mut run = 0;
    for c in s.chars() {
        if c == '`' {
            run += 1;
            best = best.max(run);
        } else {
            run = 0;
        }
    }
    best
}

// ---------------------------------------------------------------------------------------
// Filters
// ---------------------------------------------------------------------------------------

/// A backtick fence longer than any backtick run in `s` (at least three).
fn fence_for(s: &str) -> String {
    "`".repeat((longest_backtick_run(s) + 1).max(3))
}

/// Makes a value safe as (part of) a table cell: newlines become spaces, pipes are escaped
/// (also inside code spans, which GFM tables unescape), with an odd backslash run before a
/// pipe evened out so the escape is not itself escaped.
fn cell(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    let mut backslashes = 0usize;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                if chars.peek() != Some(&'\n') {
                    out.push(' ');
                }
                backslashes = 0;
            }
            '\n' => {
                out.push(' ');
                backslashes = 0;
            }
            '|' => {
                if backslashes % 2 == 1 {
                    out.push('\\');
                }
                out.push_str("\\|");
                backslashes = 0;
            }
            '\\' => {
                out.push('\\');
                backslashes += 1;
            }
            c => {
                out.push(c);
                backslashes = 0;
            }
        }
    }
    out
}

/// One line of inline markdown text: newlines become spaces and a `<` that could start
/// HTML or an autolink (`<x`, `</`, `<!`, `<?`) is escaped, so user text cannot open a tag
/// such as a stray `</details>`. Errors and details carry text from providers and
/// forges, so brackets are escaped too (no link or image, which would load from the
/// sender's server) and an `@` before a name gets a zero-width space (no mention).
fn text(s: &str) -> String {
    let one_line = s.replace("\r\n", " ").replace(['\n', '\r'], " ");
    let mut out = String::with_capacity(one_line.len());
    let mut chars = one_line.chars().peekable();
    while let Some(c) = chars.next() {
        let next = chars.peek().copied();
        match c {
            '<' if next
                .is_some_and(|n| n.is_ascii_alphabetic() || matches!(n, '/' | '!' | '?')) =>
            {
                out.push_str("&lt;");
            }
            '[' | ']' => {
                out.push('\\');
                out.push(c);
            }
            '@' if next.is_some_and(|n| n.is_ascii_alphanumeric()) => out.push_str("@\u{200b}"),
            c => out.push(c),
        }
    }
    out
}

/// Text from a forge or provider error, made safe for one line of markdown: no
/// `@mentions` (a zero-width space after `@`), no links, images or HTML (their
/// punctuation is backslash-escaped), one line, at most 200 characters.
pub fn untrusted_line(text: &str) -> String {
    let mut out = String::new();
    for ch in text.chars().take(200) {
        match ch {
            '\n' | '\r' => out.push(' '),
            '@' => out.push_str("@\u{200b}"),
            '\\' | '`' | '*' | '_' | '[' | ']' | '(' | ')' | '<' | '>' | '!' | '#' | '|' => {
                out.push('\\');
                out.push(ch);
            }
            _ => out.push(ch),
        }
    }
    out
}

/// An inline code span that survives any backticks in `s`.
fn code_span(s: &str) -> String {
    let one_line = s.replace("\r\n", " ").replace(['\n', '\r'], " ");
    let ticks = "`".repeat(longest_backtick_run(&one_line) + 1);
    if one_line.is_empty() {
        return "` `".to_string();
    }
    let pad = one_line.starts_with('`') || one_line.ends_with('`');
    if pad {
        format!("{ticks} {one_line} {ticks}")
    } else {
        format!("{ticks}{one_line}{ticks}")
    }
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Post-processing and the last-resort summary
// ---------------------------------------------------------------------------------------

/// Makes the rendered text a well-formed comment: the marker as the first line, runs of
/// blank lines outside code blocks collapsed, any code fence or `<details>` a (custom)
/// template left open closed, one trailing newline.
fn finish(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len() + COMMENT_MARKER.len() + 1);
    let body = raw.trim_start_matches(['\n', '\r']);
    if !body.starts_with(COMMENT_MARKER) {
        out.push_str(COMMENT_MARKER);
        out.push('\n');
    }
    let mut fence: Option<usize> = None;
    let mut blank_run = 0usize;
    let mut open_details: usize = 0;
    for line in body.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        let ticks = trimmed.chars().take_while(|&c| c == '`').count();
        match fence {
            Some(n) => {
                if indent < 4 && ticks >= n && trimmed[ticks..].trim().is_empty() {
                    fence = None;
                }
            }
            None => {
                if line.trim().is_empty() {
                    blank_run += 1;
                    if blank_run > 1 {
                        continue;
                    }
                } else {
                    blank_run = 0;
                }
                if indent < 4 && ticks >= 3 && !trimmed[ticks..].contains('`') {
                    fence = Some(ticks);
                } else {
                    let lower = line.to_ascii_lowercase();
                    open_details += lower.matches("<details").count();
                    open_details = open_details.saturating_sub(lower.matches("</details").count());
                }
            }
        }
        out.push_str(line.trim_end_matches('\r'));
        out.push('\n');
    }
    if let Some(n) = fence {
        out.push_str(&"`".repeat(n));
        out.push('\n');
    }
    for _ in 0..open_details {
        out.push_str("\n</details>\n");
    }
    let trimmed_len = out.trim_end().len();
    out.truncate(trimmed_len);
    out.push('\n');
    out
}

/// The summary used when even the compact comment is too long (thousands of suites, a
/// custom template that ignores the budget): built without templates, plain lines only,
/// cut at a line boundary to fit.
fn fallback(report: &Report, opts: &RenderOptions) -> String {
    let max = opts.max_chars;
    let mut head = vec![
        COMMENT_MARKER.to_string(),
        format!(
            "## {} promptgate: {} — `{}`..`{}` ({})",
            verdict_emoji(report.verdict),
            verdict_label(report.verdict),
            short_rev(&report.base).replace('`', "'"),
            short_rev(&report.head).replace('`', "'"),
            tier_label(report.tier)
        ),
        String::new(),
        "_Summary only: the full comment exceeds the size limit — see the full report._"
            .to_string(),
        String::new(),
    ];
    for e in report.errors.iter().take(3) {
        head.push(format!("- 🛑 {}", text(&clip(e, 160))));
    }
    if report.errors.len() > 3 {
        head.push(format!(
            "- …and {} more errors",
            thousands((report.errors.len() - 3) as i64)
        ));
    }
    if !report.errors.is_empty() {
        head.push(String::new());
    }
    let mut tail = vec![String::new()];
    let u = &report.usage;
    tail.push(format!(
        "**Usage:** {} model calls · {} embedding calls · {} cache hits · {} input + {} output tokens · {} · took {}",
        thousands(u.model_calls as i64),
        thousands(u.embedding_calls as i64),
        thousands(u.cache_hits as i64),
        thousands(u.input_tokens as i64),
        thousands(u.output_tokens as i64),
        fmt_usd(u.cost_usd),
        fmt_duration(report.duration_ms)
    ));
    if let Some(url) = &opts.report_url {
        tail.push(String::new());
        tail.push(format!("📄 [Full report]({})", link_destination(url)));
    }
    let len = |lines: &[String]| lines.iter().map(|l| l.chars().count() + 1).sum::<usize>();
    let mut suite_lines: Vec<String> = Vec::new();
    let fixed = len(&head) + len(&tail);
    let mut used = fixed;
    for (i, s) in report.suites.iter().enumerate() {
        let failures = match s.failures.len() {
            0 => String::new(),
            1 => ", 1 failure".to_string(),
            n => format!(", {} failures", thousands(n as i64)),
        };
        let line = format!(
            "- {} {} — {} ({} of {} cases affected{failures})",
            verdict_emoji(s.verdict),
            text(&clip(&s.name, 80)),
            verdict_label(s.verdict),
            thousands(s.cases.affected as i64),
            thousands(s.cases.total as i64),
        );
        let line_len = line.chars().count() + 1;
        let more = format!(
            "- …and {} more suites — see the full report",
            thousands((report.suites.len() - i) as i64)
        );
        let reserve = if i + 1 < report.suites.len() {
            more.chars().count() + 1
        } else {
            0
        };
        if used + line_len + reserve > max {
            if used + more.chars().count() < max {
                suite_lines.push(more);
            }
            break;
        }
        used += line_len;
        suite_lines.push(line);
    }
    head.extend(suite_lines);
    head.extend(tail);
    let mut out = String::new();
    let mut count = 0usize;
    for line in head {
        let n = line.chars().count() + 1;
        if count + n > max {
            break;
        }
        out.push_str(&line);
        out.push('\n');
        count += n;
    }
    if out.is_empty() {
        // Not even the marker fits: the best that can be done is to respect the limit.
        out = COMMENT_MARKER.chars().take(max).collect();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untrusted_lines_cannot_mention_link_or_embed() {
        let evil =
            "HTTP 403 <img src=x> ![p](http://evil/x.png) [click](http://evil) @maintainer\nline2";
        let safe = untrusted_line(evil);
        assert!(!safe.contains('\n'), "{safe}");
        assert!(!safe.contains("@maintainer"), "{safe}");
        assert!(
            safe.contains("\\<img") && safe.contains("\\!\\[p\\]\\("),
            "{safe}"
        );
        assert!(safe.contains("\\[click\\]\\(http://evil\\)"), "{safe}");
        assert_eq!(untrusted_line(&"x".repeat(500)).chars().count(), 200);
    }

    #[test]
    fn error_text_in_the_comment_cannot_mention_link_or_embed() {
        // A provider's error message, as it reaches a suite's errors.
        let evil =
            "model said ![p](http://evil/x.png) [click](http://evil) @maintainer <img src=x>";
        let safe = text(evil);
        assert!(!safe.contains("@maintainer"), "{safe}");
        assert!(safe.contains("@\u{200b}maintainer"), "{safe}");
        assert!(safe.contains("!\\[p\\](http://evil/x.png)"), "{safe}");
        assert!(safe.contains("\\[click\\]"), "{safe}");
        assert!(safe.contains("&lt;img"), "{safe}");
        assert_eq!(
            text("mail a @ b, cost $0.1 <= 2"),
            "mail a @ b, cost $0.1 <= 2"
        );
    }

    #[test]
    fn numbers() {
        assert_eq!(thousands(4873), "4,873");
        assert_eq!(thousands(-1234567), "-1,234,567");
        assert_eq!(thousands(12), "12");
        assert_eq!(fmt_delta(MetricUnit::Ratio, -0.07), "−0.070");
        assert_eq!(fmt_delta(MetricUnit::Ratio, 0.012), "+0.012");
        assert_eq!(fmt_delta(MetricUnit::Ratio, -0.0001), "0.000");
        assert_eq!(fmt_delta(MetricUnit::Millis, 12.4), "+12");
        assert_eq!(fmt_usd(0.0421), "$0.0421");
        assert_eq!(fmt_usd(0.00012), "$0.000120");
        assert_eq!(fmt_usd(0.00291), "$0.00291");
        assert_eq!(
            fmt_threshold(
                MetricUnit::Ratio,
                &Threshold {
                    min: Some(0.82),
                    max: None
                }
            ),
            "≥ 0.82"
        );
        assert_eq!(
            fmt_threshold(
                MetricUnit::Millis,
                &Threshold {
                    min: None,
                    max: Some(450.0)
                }
            ),
            "≤ 450"
        );
        assert_eq!(fmt_duration(83_000), "1m 23s");
        assert_eq!(fmt_duration(850), "850 ms");
    }

    #[test]
    fn escaping() {
        assert_eq!(cell("a|b\nc"), "a\\|b c");
        assert_eq!(cell("a\\|b"), "a\\\\\\|b");
        assert_eq!(code_span("a`b"), "``a`b``");
        assert_eq!(code_span("`x`"), "`` `x` ``");
        assert_eq!(fence_for("x ``` y"), "````");
        assert_eq!(fence_for("plain"), "```");
        assert_eq!(text("a<b\nc"), "a&lt;b c");
        assert_eq!(text("0.6 < 0.8 </details>"), "0.6 < 0.8 &lt;/details>");
    }

    #[test]
    fn finish_closes_what_is_open() {
        let out = finish("hello\n<details><summary>x</summary>\n\n````text\nabc\n```\n");
        assert!(out.starts_with(COMMENT_MARKER));
        assert!(out.contains("abc\n```\n````\n"));
        assert!(out.trim_end().ends_with("</details>"));
    }

    #[test]
    fn fallback_fits() {
        let mut report = Report::new("a".repeat(40), "b".repeat(40), Tier::Pr);
        report.verdict = Verdict::Fail;
        for max in [0, 5, 30, 100, 1000] {
            let opts = RenderOptions {
                max_chars: max,
                ..RenderOptions::default()
            };
            assert!(fallback(&report, &opts).chars().count() <= max);
        }
    }
}
