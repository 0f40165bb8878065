//! `check`: the whole pipeline for one change, from base to head. The CLI calls it on a
//! local git repository; the bot calls it with a forge-backed `Source`. It never fails:
//! every problem ends up in the report, with verdict `error` and a message naming the
//! file and line or the case.

pub mod calibration;
mod config_change;
mod estimate;
mod evaluate;
mod findings;
mod load;
mod preflight;
pub mod security;
mod shadow;
pub mod spend;
mod suite_plan;
mod suite_report;
pub mod work;

use std::time::Instant;

use futures::future::join_all;

use crate::config::ModelManifest;
use crate::config::{ModelRef, ModelSpec, Pricing, RepoConfig, SuiteConfig, CONFIG_PATH};
use crate::detect;
use crate::diag::{Diagnostic, Diagnostics};
use crate::execute::ModelClient;
use crate::plan::endpoints::{EndpointPolicy, EndpointRules};
use crate::plan::EvaluatorSpecs;
use crate::report::{Report, SuiteReport, Tier, Verdict};
use crate::source::{read_text, Rev, Source};
use config_change::config_change;
use evaluate::evaluate_suite;
use suite_plan::{plan_suite, PlannedSuite, SideWork, SuiteSides};
use suite_report::suite_report;
pub use work::WorkUnit;

#[derive(Clone, Debug)]
pub struct CheckOptions {
    /// Only these suites (all when empty).
    pub suites: Vec<String>,
    /// Evaluate every case, not only the affected ones.
    pub full: bool,
    pub tier: Tier,
    /// The operator's endpoint and key allowlists (and the CLI's widening flags).
    pub endpoints: EndpointRules,
    /// The result-cache namespace of the run (the bot: `forge:owner/repo`).
    pub namespace: Option<String>,
    /// Also run the suites' load tests (`check --load`, `/promptgate run load`); the
    /// release tier always does.
    pub load: bool,
    /// Plan and price the run, and call nothing (`check --estimate`).
    pub estimate_only: bool,
    /// Enforce the base config's `budget` against this spend so far (the bot); `None`
    /// only notes a run over budget (the CLI, whose user pays and asked).
    pub budget: Option<BudgetState>,
}

/// What the bot's store knows of past spending, and whether an approver confirmed
/// this run over its budget (`/promptgate run --confirm`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BudgetState {
    pub spent: crate::config::budget::Spent,
    pub confirmed: bool,
}

impl Default for CheckOptions {
    fn default() -> Self {
        Self {
            suites: Vec::new(),
            full: false,
            tier: Tier::Pr,
            endpoints: EndpointRules::default(),
            namespace: None,
            load: false,
            estimate_only: false,
            budget: None,
        }
    }
}

/// What the caller knows about the two revisions.
pub struct Revisions {
    /// What the change is compared against: the merge base of the head with the target
    /// branch (its diff and the base side of the evaluation).
    pub base: Rev,
    pub head: Rev,
    /// Where policy (suites, thresholds, evaluators) is read: the target branch's tip,
    /// which may have moved on since the merge base. `None`: the base.
    pub policy: Option<Rev>,
    /// Commit ids shown in the report.
    pub base_label: String,
    pub head_label: String,
}

/// Runs the gate for one change: [`plan`], then [`execute`].
pub async fn run(
    source: &dyn Source,
    revs: &Revisions,
    opts: &CheckOptions,
    client: &ModelClient,
) -> Report {
    execute(plan(source, revs, opts).await, client).await
}

/// Evaluates every suite at one revision into the result cache: what the bot does on a
/// push to the default branch and `promptgate baseline` does from the CLI. Base and
/// head are the revision, so every case is evaluated once, and only what the cache
/// lacks (what the push changed, or everything on a cold cache) costs a call. A PR
/// compared against that revision then pays for its affected cases only (SPEC §3).
pub async fn baseline(
    source: &dyn Source,
    rev: Rev,
    label: &str,
    opts: &CheckOptions,
    client: &ModelClient,
) -> Report {
    let (revs, opts) = baseline_run(rev, label, opts);
    run(source, &revs, &opts, client).await
}

/// What a baseline of `rev` evaluates: every case of every suite at that one revision,
/// which is its own base and its own policy (it is the default branch).
pub fn baseline_run(rev: Rev, label: &str, opts: &CheckOptions) -> (Revisions, CheckOptions) {
    let revs = Revisions {
        base: rev.clone(),
        head: rev,
        policy: None,
        base_label: label.to_string(),
        head_label: label.to_string(),
    };
    let opts = CheckOptions {
        full: true,
        ..opts.clone()
    };
    (revs, opts)
}

/// One line per suite of a baseline run: what is cached now, and what it cost.
pub fn baseline_summary(report: &Report) -> String {
    let mut out = format!(
        "promptgate baseline at {}: {} model calls, {} cache hits\n",
        report.head, report.usage.model_calls, report.usage.cache_hits
    );
    for s in &report.suites {
        out.push_str(&format!(
            "  suite `{}`: {} cases cached ({} were already), verdict at this revision: {}\n",
            s.name,
            s.cases.total,
            s.cases.cached,
            s.verdict.as_str()
        ));
    }
    for e in &report.errors {
        out.push_str(&format!("  error: {e}\n"));
    }
    out
}

/// `check --estimate` as text: the calls by kind, the tokens and the dollars.
pub fn estimate_summary(report: &Report) -> String {
    let Some(e) = &report.estimate else {
        let mut out =
            "promptgate estimate: no estimate (the run could not be planned)\n".to_string();
        for err in &report.errors {
            out.push_str(&format!("  error: {err}\n"));
        }
        return out;
    };
    let c = &e.calls_by_kind;
    let k = &e.cost_by_kind;
    let mut out = format!(
        "promptgate estimate for {}..{}: {} model calls, ${:.6}\n",
        report.base, report.head, e.calls, e.cost_usd
    );
    for (kind, calls, usd) in [
        ("generation", c.generation, k.generation),
        ("judge", c.judge, k.judge),
        ("embedding", c.embedding, k.embedding),
        ("attack", c.attack, k.attack),
        ("load", c.load, k.load),
    ] {
        out.push_str(&format!("  {kind}: {calls} calls, ${usd:.6}\n"));
    }
    out.push_str(&format!(
        "  guardrail: {} ApplyGuardrail calls (not priced)\n  tokens: {} input, {} output\n  how: {}\n",
        c.guardrail, e.input_tokens, e.output_tokens, e.method
    ));
    if let Some(o) = &report.over_budget {
        out.push_str(&format!(
            "  over budget: budget.{} allows ${:.4}, this run would make it ${:.4}\n",
            o.setting, o.allowed_usd, o.would_be_usd
        ));
    }
    for err in &report.errors {
        out.push_str(&format!("  error: {err}\n"));
    }
    out
}

/// A planned run: the suites to evaluate and the report so far (skipped and invalid
/// suites, notes, planning errors). Split from [`execute`] so an executor can fan the
/// model calls out (see [`CheckPlan::work`]) before the report is computed.
pub struct CheckPlan {
    report: Report,
    suites: Vec<PlannedSuite>,
    /// The judge's calibration, when a planned suite uses the judge and the config
    /// names a set.
    calibration: Option<calibration::PlannedCalibration>,
    started: Instant,
    estimate_only: bool,
    budget: Option<BudgetState>,
    /// The base config's `budget`.
    limits: Option<crate::config::budget::BudgetConfig>,
    /// The preflight ran (its estimate is in the report).
    preflown: bool,
}

/// Reads the config and files at base and head and plans every affected suite. Makes
/// no model call.
pub async fn plan(source: &dyn Source, revs: &Revisions, opts: &CheckOptions) -> CheckPlan {
    let started = Instant::now();
    let mut report = Report::new(revs.base_label.clone(), revs.head_label.clone(), opts.tier);
    let mut suites = Vec::new();
    let mut calibration = None;
    let mut limits = None;
    if let Err(e) = plan_into(
        source,
        revs,
        opts,
        &mut report,
        &mut suites,
        (&mut calibration, &mut limits),
    )
    .await
    {
        report.errors.push(e);
    }
    CheckPlan {
        report,
        suites,
        calibration,
        started,
        estimate_only: opts.estimate_only,
        budget: opts.budget,
        limits,
        preflown: false,
    }
}

/// Evaluates a plan through `client` and computes the report. With every result
/// already cached (what the CodeBuild executor arranges) it makes no model call.
pub async fn execute(mut plan: CheckPlan, client: &ModelClient) -> Report {
    if let Some(early) = plan.preflight(client).await {
        return early;
    }
    let CheckPlan {
        mut report,
        suites,
        calibration,
        started,
        ..
    } = plan;
    evaluate_planned(&suites, calibration.as_ref(), client, &mut report).await;
    keep_ticketed_findings(&mut report);
    client.flush().await;
    let counters = client.usage();
    report.usage.model_calls = counters.chat_calls;
    report.usage.embedding_calls = counters.embed_calls;
    report.usage.cache_hits = counters.cache_hits;
    report.usage.input_tokens = counters.input_tokens;
    report.usage.output_tokens = counters.output_tokens;
    report.usage.replayed = counters.replayed;
    let mut verdicts: Vec<Verdict> = report.suites.iter().map(|s| s.verdict).collect();
    if !report.errors.is_empty() {
        verdicts.push(Verdict::Error);
    }
    report.verdict = Verdict::combine(verdicts);
    report.duration_ms = started.elapsed().as_millis() as u64;
    report
}

/// Moves the findings of the kinds `tickets.on` lists into `report.tickets`.
fn keep_ticketed_findings(report: &mut Report) {
    let on = report
        .ticket_policy
        .as_ref()
        .map(|t| t.on.clone())
        .unwrap_or_default();
    for suite in &mut report.suites {
        let found = std::mem::take(&mut suite.findings);
        report
            .tickets
            .extend(found.into_iter().filter(|t| on.contains(&t.finding)));
    }
}

/// Recomputes the overall verdict after an executor added errors to a report.
pub fn finish_verdict(report: &mut Report) {
    let mut verdicts: Vec<Verdict> = report.suites.iter().map(|s| s.verdict).collect();
    if !report.errors.is_empty() {
        verdicts.push(Verdict::Error);
    }
    report.verdict = Verdict::combine(verdicts);
}

impl CheckPlan {
    /// Every unit of model work the plan needs, in a stable order: one per evaluated
    /// case (its samples at head and base), per attack run pair, per guardrail test.
    pub fn work(&self) -> Vec<WorkUnit> {
        self.suites.iter().flat_map(PlannedSuite::work).collect()
    }

    /// The report as planned so far (for an executor that must end the run early).
    pub fn report(&self) -> &Report {
        &self.report
    }
}

/// Policy (suites, thresholds, evaluators) comes from base; head's config is only
/// validated and summarised, so a PR cannot loosen its own gate (SPEC §1).
async fn plan_into(
    source: &dyn Source,
    revs: &Revisions,
    opts: &CheckOptions,
    report: &mut Report,
    planned: &mut Vec<PlannedSuite>,
    (calibration, limits): (
        &mut Option<calibration::PlannedCalibration>,
        &mut Option<crate::config::budget::BudgetConfig>,
    ),
) -> Result<(), String> {
    let read_config = |rev: Rev| async move {
        read_text(source, &rev, CONFIG_PATH)
            .await
            .map_err(|e| format!("{CONFIG_PATH}: cannot read at {}: {e:#}", rev.label()))
    };
    let base_text = read_config(revs.base.clone()).await?;
    let head_text = read_config(revs.head.clone()).await?;
    let (tip_text, tip_rev) = match &revs.policy {
        Some(tip) if tip != &revs.base => (read_config(tip.clone()).await?, tip.clone()),
        _ => (base_text.clone(), revs.base.clone()),
    };

    // Policy from the head (base has no config) trusts nothing the PR wrote.
    let policy_is_heads = tip_text.is_none();
    let (policy_text, policy_rev) = match (&tip_text, &head_text) {
        (Some(b), _) => (b.clone(), tip_rev.clone()),
        (None, Some(h)) => {
            report.notes.push(format!(
                "{CONFIG_PATH} does not exist at base; this first run uses the head's config."
            ));
            (h.clone(), revs.head.clone())
        }
        (None, None) => {
            return Err(format!(
                "{CONFIG_PATH} does not exist at base or head: nothing to evaluate"
            ))
        }
    };
    let config = RepoConfig::parse(&policy_text).map_err(|d| {
        format!(
            "the policy config (at {}) is invalid:\n{d}",
            policy_rev.label()
        )
    })?;
    *limits = config.budget.clone();
    // Tickets write to the forge: only a policy the PR did not write may ask for them.
    if !policy_is_heads {
        report.ticket_policy = config.tickets.clone();
    }
    if let (Some(b), Some(h)) = (&base_text, &head_text) {
        if b != h {
            report.config_change = Some(config_change(&config, h));
        }
    }
    // A changed head config is checked as completely as `validate` checks it, or it
    // would merge green and break every later PR (SPEC §1). It is still not the policy.
    if head_text.is_some() && base_text != head_text {
        let problems =
            crate::validate::validate(source, &revs.head, &CheckOptions::default()).await;
        if !problems.is_empty() {
            let errors: Vec<String> = problems.0.iter().map(|d| d.to_string()).collect();
            if let Some(cc) = report.config_change.as_mut() {
                cc.valid = false;
                cc.errors = errors.clone();
            }
            report.errors.push(format!(
                "the head's {CONFIG_PATH} (or a file it names) is invalid, so nothing was evaluated; `promptgate validate` at the head shows the same:"
            ));
            report.errors.extend(errors);
            return Ok(());
        }
    }

    for name in &opts.suites {
        if !config.suites.contains_key(name) {
            let known: Vec<&str> = config.suites.keys().map(String::as_str).collect();
            return Err(format!(
                "unknown suite `{name}` (the base config defines: {})",
                known.join(", ")
            ));
        }
    }

    let changed = source
        .changed_paths(&revs.base, &revs.head)
        .await
        .map_err(|e| format!("listing changed files: {e:#}"))?;

    let full = opts.full || opts.tier == Tier::Release;
    let release = config.release.clone().unwrap_or_default();
    let (evaluators, escalation_judge) =
        match resolve_evaluators(source, &policy_rev, &config, opts.tier, &policy_text).await {
            Ok(e) => e,
            Err(d) => return Err(d.to_string()),
        };

    let evaluator_specs: Vec<ModelSpec> = evaluators
        .iter()
        .chain(escalation_judge.as_ref().map(|(judge, _)| judge))
        .cloned()
        .collect();
    let endpoints = endpoint_policy(
        source,
        opts,
        &config,
        (!policy_is_heads).then_some(&policy_rev),
        &evaluator_specs,
    )
    .await?;

    // `defaults` are test content like the dataset: each side's come from its own
    // config, everything else from the policy.
    let side_configs = [&base_text, &head_text].map(|t| {
        t.as_deref()
            .and_then(|t| RepoConfig::parse_all(t).0)
            .map(|c| c.suites)
    });

    // Plan every suite first, then run all their calls together under one limit.
    for (name, suite) in &config.suites {
        if !opts.suites.is_empty() && !opts.suites.contains(name) {
            continue;
        }
        let [base_suite, head_suite] = side_configs.each_ref().map(|suites| {
            let mut at_side = suite.clone();
            if let Some(side) = suites.as_ref().and_then(|s| s.get(name)) {
                at_side.defaults = side.defaults.clone();
            }
            at_side
        });
        let sides = [(&revs.base, &base_suite), (&revs.head, &head_suite)];
        let deps = detect::Dependencies::of(source, &sides, &policy_text).await;
        let mut triggered = detect::triggered_by(suite, &deps, &changed);
        let load = suite
            .load
            .clone()
            .filter(|_| opts.load || opts.tier == Tier::Release);
        // Asked for by name (`--load`, `run load`): the load test runs even when the
        // change does not touch the suite.
        if triggered.is_empty() && load.is_some() && opts.load {
            triggered.push("load test requested".to_string());
        }
        if triggered.is_empty() && !full {
            report
                .suites
                .push(skipped(name, suite, source, &revs.head).await);
            continue;
        }
        let samples = match opts.tier {
            Tier::Release => release.samples.unwrap_or(suite.samples),
            Tier::Pr => suite.samples,
        };
        let evaluators = suite_evaluators(suite, &evaluators, escalation_judge.as_ref());
        let sides = SuiteSides {
            base: &base_suite,
            head: &head_suite,
        };
        // The suite as each compared model runs it, at base and head.
        let on_compared: Vec<(&String, [SuiteConfig; 2])> = suite
            .compared_models()
            .iter()
            .map(|m| {
                (
                    m,
                    [&base_suite, &head_suite].map(|s| s.on_compared_model(m)),
                )
            })
            .collect();
        // The gating model and each compared one are planned alike.
        let plan_on = |sides| {
            plan_suite(
                source,
                revs,
                name,
                sides,
                &evaluators,
                samples,
                &policy_text,
            )
        };
        let (base, head, mut notes) = match plan_on(sides).await {
            Ok(planned) => planned,
            Err(d) => {
                report.suites.push(errored(name, triggered, &d));
                continue;
            }
        };
        let mut refused =
            refused_endpoints(source, revs, suite, &head, &evaluators, &endpoints).await;
        // Each compared model is the suite planned again on its manifest: its own keys
        // scope it (its identity is in them), and unchanged cases come from the cache.
        let mut compared = Vec::new();
        let mut compared_failed = Vec::new();
        for (model, [on_base, on_head]) in &on_compared {
            let sides = SuiteSides {
                base: on_base,
                head: on_head,
            };
            match plan_on(sides).await {
                Ok((c_base, c_head, c_notes)) => {
                    // A compared manifest is PR-writable like the gating one (SPEC §2).
                    let none = EvaluatorSpecs::default();
                    refused.extend(
                        refused_endpoints(source, revs, on_head, &c_head, &none, &endpoints).await,
                    );
                    notes.extend(c_notes.into_iter().map(|n| format!("model `{model}`: {n}")));
                    compared.push(PlannedSuite {
                        name: name.clone(),
                        suite: suite.on_compared_model(model),
                        triggered: triggered.clone(),
                        base: c_base,
                        head: c_head,
                        evaluators: evaluators.clone(),
                        full,
                        samples,
                        load: None,
                        shadow: None,
                        compared_of: Some(model.to_string()),
                        compared_failed: Vec::new(),
                    });
                }
                Err(d) => {
                    notes.push(format!(
                        "compared model `{model}` cannot be evaluated (shown as an error, not gating)"
                    ));
                    compared_failed.push(suite_report::compared_error(model, &d));
                }
            }
        }
        if !refused.is_empty() {
            report.suites.push(errored(name, triggered, &refused));
            continue;
        }
        report
            .notes
            .extend(notes.into_iter().map(|n| format!("suite `{name}`: {n}")));
        planned.push(PlannedSuite {
            name: name.clone(),
            suite: suite.clone(),
            triggered,
            base,
            head,
            evaluators,
            full,
            samples,
            load,
            shadow: suite.shadow.clone(),
            compared_of: None,
            compared_failed,
        });
        planned.extend(compared);
    }
    let judge = planned.iter().find_map(|p| p.evaluators.judge.clone());
    if let Some(judge) = judge {
        match calibration::load(source, &policy_rev, &config, &policy_text).await {
            Ok(Some((set, min_kappa))) => {
                *calibration = Some(calibration::PlannedCalibration {
                    set,
                    min_kappa,
                    judge,
                    pricing: evaluators.judge_pricing.clone(),
                })
            }
            Ok(None) => {}
            Err(d) => return Err(d.to_string()),
        }
    }
    Ok(())
}

/// The endpoint policy of this run: the operator's lists, else what the base branch
/// names (its suites' manifests and its evaluators). When the policy config is the
/// head's (base has none), nothing of the PR's is trusted: only the operator's lists.
async fn endpoint_policy(
    source: &dyn Source,
    opts: &CheckOptions,
    config: &RepoConfig,
    trusted_rev: Option<&Rev>,
    evaluators: &[ModelSpec],
) -> Result<EndpointPolicy, String> {
    let mut base_specs = Vec::new();
    if let Some(policy_rev) = trusted_rev {
        // Every listed model of the trusted config, compared ones included.
        let models = config
            .suites
            .values()
            .flat_map(|s| std::iter::once(&s.model).chain(s.compared_models()))
            .cloned()
            .collect::<Vec<String>>();
        for path in models {
            let text = read_text(source, policy_rev, &path).await.ok().flatten();
            if let Some(m) = text.and_then(|t| ModelManifest::parse(&path, &t).ok()) {
                base_specs.push(m.spec());
            }
        }
        base_specs.extend(evaluators.iter().cloned());
    }
    EndpointPolicy::resolve(&opts.endpoints, &base_specs)
}

/// Why a suite's head manifest (or an evaluator) may not be called, naming the line.
async fn refused_endpoints(
    source: &dyn Source,
    revs: &Revisions,
    suite: &SuiteConfig,
    head: &SideWork,
    evaluators: &EvaluatorSpecs,
    policy: &EndpointPolicy,
) -> Diagnostics {
    let mut d = Diagnostics::default();
    if let Some(r) = policy.refusal(&head.plan.spec) {
        let text = read_text(source, &revs.head, &suite.model)
            .await
            .ok()
            .flatten();
        let line = text.and_then(|t| crate::diag::line_of(&t, r.field));
        d.push(Diagnostic::new(
            suite.model.clone(),
            line,
            format!("{}; no model was called", r.message),
        ));
    }
    for spec in evaluators.iter() {
        if let Some(r) = policy.refusal(spec) {
            d.push(Diagnostic::new(
                CONFIG_PATH,
                None,
                format!(
                    "evaluator `{}`: {}; no model was called",
                    spec.model, r.message
                ),
            ));
        }
    }
    d
}

async fn evaluate_planned(
    planned: &[PlannedSuite],
    calibration: Option<&calibration::PlannedCalibration>,
    client: &ModelClient,
    report: &mut Report,
) {
    // The judge is calibrated first: whether its metrics gate decides every suite.
    let mut judge_gate: Option<String> = None;
    if let Some(c) = calibration {
        let (result, spent, errors) = calibration::run(c, client).await;
        report.usage.cost_by_kind.add(&spent.paid);
        report.usage.replayed_cost_usd += spent.replayed_usd;
        report.errors.extend(errors);
        if let Some(reason) = &result.reason {
            report
                .notes
                .push(format!("judge metrics do not gate this run: {reason}"));
        }
        judge_gate = result.reason.clone();
        report.judge_calibration = Some(result);
    }
    // The planned keys are prefetched by `execute`, for the estimate.
    let results = join_all(planned.iter().map(|p| evaluate_suite(p, client))).await;
    let mut compared = Vec::new();
    for (p, results) in planned.iter().zip(results) {
        let mut spent = spend::Spend::default();
        for s in results
            .base
            .iter()
            .chain(results.head.iter())
            .flat_map(|c| c.samples.iter())
        {
            spent.add(&s.spend);
        }
        for a in results
            .attacks_base
            .iter()
            .chain(results.attacks_head.iter())
        {
            spent.add(&a.spend);
        }
        report.usage.cost_by_kind.add(&spent.paid);
        report.usage.cost_usd = report.usage.cost_by_kind.total();
        report.usage.replayed_cost_usd += spent.replayed_usd;
        report.usage.baseline_calls += results.baseline_calls;
        let suite = suite_report(p, results, judge_gate.as_deref());
        match &p.compared_of {
            Some(model) => compared.push((p.name.clone(), suite_report::compared(model, p, suite))),
            None => {
                let mut suite = suite;
                suite.compared = p.compared_failed.clone();
                report.suites.push(suite);
            }
        }
    }
    for (name, row) in compared {
        if let Some(s) = report.suites.iter_mut().find(|s| s.name == name) {
            s.compared.push(row);
        }
    }
    // In the order the config lists them.
    for (s, p) in report.suites.iter_mut().filter_map(|s| {
        let p = planned
            .iter()
            .find(|p| p.name == s.name && p.compared_of.is_none())?;
        Some((s, p))
    }) {
        let order = p.suite.compared_models();
        s.compared
            .sort_by_key(|c| order.iter().position(|m| m == &c.model));
    }
    // Load tests run after every evaluation, one at a time: concurrent traffic of
    // ours would be measured as the endpoint's latency.
    for p in planned {
        let Some(cfg) = &p.load else { continue };
        let result = load::run(p, cfg, client).await;
        report.usage.cost_by_kind.load += result.cost_usd;
        report.usage.cost_usd = report.usage.cost_by_kind.total();
        if let Some(s) = report.suites.iter_mut().find(|s| s.name == p.name) {
            let verdict = match (&result.error, result.pass) {
                (Some(e), _) => {
                    s.errors.push(format!("load test: {e}"));
                    Verdict::Error
                }
                (None, false) => Verdict::Fail,
                (None, true) => Verdict::Pass,
            };
            s.verdict = Verdict::combine([s.verdict, verdict]);
            s.load = Some(result);
        }
    }
    // Shadow replays too: they are model calls of their own, gated like metrics.
    for p in planned {
        let Some(cfg) = &p.shadow else { continue };
        let result = shadow::run(p, cfg, client).await;
        report.usage.cost_by_kind.shadow += result.cost_usd;
        report.usage.cost_usd = report.usage.cost_by_kind.total();
        if let Some(s) = report.suites.iter_mut().find(|s| s.name == p.name) {
            shadow::apply(s, result);
        }
    }
    report.suites.sort_by(|a, b| a.name.cmp(&b.name));
}

/// The evaluators in force for the tier: `release.judge` replaces the judge on release;
/// on a PR it is the judge `judge_escalation` escalates to, when a suite asks.
async fn resolve_evaluators(
    source: &dyn Source,
    rev: &Rev,
    config: &RepoConfig,
    tier: Tier,
    config_text: &str,
) -> Result<(EvaluatorSpecs, Option<(ModelSpec, Option<Pricing>)>), Diagnostics> {
    let judge_ref = match (tier, config.release.as_ref().and_then(|r| r.judge.as_ref())) {
        (Tier::Release, Some(j)) => Some(j),
        _ => config.evaluators.judge.as_ref(),
    };
    let mut diags = Diagnostics::default();
    let mut resolve = async |r: Option<&ModelRef>| -> Option<(ModelSpec, Option<Pricing>)> {
        let r = r?;
        if let Some(spec) = r.inline_spec() {
            return Some((spec, r.pricing.clone()));
        }
        let path = r.manifest.as_deref()?;
        match read_text(source, rev, path).await {
            Ok(Some(text)) => match crate::config::ModelManifest::parse(path, &text) {
                Ok(m) => Some((m.spec(), m.pricing.clone())),
                Err(d) => {
                    diags.extend(d);
                    None
                }
            },
            Ok(None) => {
                diags.push(crate::diag::Diagnostic::new(
                    CONFIG_PATH,
                    crate::diag::line_of(config_text, path),
                    format!(
                        "evaluator manifest `{path}` does not exist at {}",
                        rev.label()
                    ),
                ));
                None
            }
            Err(e) => {
                diags.push(crate::diag::Diagnostic::new(
                    path,
                    None,
                    format!("cannot read: {e:#}"),
                ));
                None
            }
        }
    };
    let (embedding, embedding_pricing) = resolve(config.evaluators.embedding.as_ref())
        .await
        .map_or((None, None), |(s, p)| (Some(s), p));
    let (judge, judge_pricing) = resolve(judge_ref)
        .await
        .map_or((None, None), |(s, p)| (Some(s), p));
    let escalates =
        tier == Tier::Pr && config.suites.values().any(|s| s.judge_escalation.is_some());
    let escalation_judge = if escalates {
        resolve(config.release.as_ref().and_then(|r| r.judge.as_ref())).await
    } else {
        None
    };
    if diags.is_empty() {
        Ok((
            EvaluatorSpecs {
                embedding,
                judge,
                embedding_pricing,
                judge_pricing,
                escalation: None,
                assert_embedding: None,
                assert_judge: None,
            },
            escalation_judge,
        ))
    } else {
        Err(diags)
    }
}

/// Only the evaluators a suite's metrics use go into its score keys and calls.
fn suite_evaluators(
    suite: &SuiteConfig,
    all: &EvaluatorSpecs,
    escalation_judge: Option<&(ModelSpec, Option<Pricing>)>,
) -> EvaluatorSpecs {
    let escalation = match (suite.judge_escalation, escalation_judge) {
        (Some(band), Some((judge, pricing))) if suite.uses_judge() => {
            Some(crate::plan::Escalation {
                judge: judge.clone(),
                pricing: pricing.clone(),
                band,
            })
        }
        _ => None,
    };
    EvaluatorSpecs {
        escalation,
        assert_embedding: all.embedding.clone(),
        assert_judge: all.judge.clone(),
        embedding: if suite.uses_embedding() {
            all.embedding.clone()
        } else {
            None
        },
        judge: if suite.uses_judge() {
            all.judge.clone()
        } else {
            None
        },
        embedding_pricing: all.embedding_pricing.clone(),
        judge_pricing: all.judge_pricing.clone(),
    }
}

async fn skipped(name: &str, suite: &SuiteConfig, source: &dyn Source, head: &Rev) -> SuiteReport {
    let mut report = SuiteReport::empty(name, Verdict::Skipped);
    report.cases.total = match read_text(source, head, &suite.dataset).await {
        // A CSV row may span lines, and its header is no case: count what parses.
        Ok(Some(text)) if crate::config::dataset::is_csv(&suite.dataset) => {
            crate::config::Dataset::parse(&suite.dataset, &text).map_or(0, |d| d.cases.len())
        }
        Ok(Some(text)) => text.lines().filter(|l| !l.trim().is_empty()).count(),
        _ => 0,
    };
    report
}

fn errored(name: &str, triggered: Vec<String>, d: &Diagnostics) -> SuiteReport {
    let mut report = SuiteReport::empty(name, Verdict::Error);
    report.triggered_by = triggered;
    report.errors = d.0.iter().map(|x| x.to_string()).collect();
    report
}

/// `promptgate shadow`: overrides of a suite's `shadow` block for one local run.
#[derive(Clone, Debug, Default)]
pub struct ShadowOverrides {
    pub logs: Option<String>,
    pub since: Option<String>,
    pub sample: Option<usize>,
}

/// Plans one suite from base to head and runs only its shadow replay (SPEC §4
/// `promptgate shadow`): what `check` adds to that suite, without its evaluation.
pub async fn shadow_only(
    source: &dyn Source,
    revs: &Revisions,
    suite: &str,
    overrides: &ShadowOverrides,
    opts: &CheckOptions,
    client: &ModelClient,
) -> Result<crate::report::ShadowReport, String> {
    let opts = CheckOptions {
        suites: vec![suite.to_string()],
        full: true,
        ..opts.clone()
    };
    let plan = plan(source, revs, &opts).await;
    if let Some(s) = plan.report.suites.iter().find(|s| s.name == suite) {
        return Err(format!(
            "suite `{suite}` cannot be planned:\n{}",
            s.errors.join("\n")
        ));
    }
    if !plan.report.errors.is_empty() {
        return Err(plan.report.errors.join("\n"));
    }
    let p = plan
        .suites
        .iter()
        .find(|p| p.name == suite)
        .ok_or_else(|| format!("suite `{suite}` was not planned"))?;
    let mut cfg = match (&p.shadow, &overrides.logs) {
        (Some(c), _) => c.clone(),
        (None, Some(logs)) => crate::config::shadow::ShadowConfig {
            logs: logs.clone(),
            since: crate::config::shadow::DEFAULT_SINCE.to_string(),
            sample: crate::config::shadow::DEFAULT_SAMPLE,
            model_id: None,
            metrics: Default::default(),
        },
        (None, None) => {
            return Err(format!(
                "suite `{suite}` has no `shadow` block; pass --logs to replay anyway"
            ))
        }
    };
    if let Some(l) = &overrides.logs {
        cfg.logs = l.clone();
    }
    if let Some(s) = &overrides.since {
        cfg.since = s.clone();
    }
    if let Some(n) = overrides.sample {
        cfg.sample = n;
    }
    let mut diags = Diagnostics::default();
    cfg.check(suite, "", &mut diags);
    if !diags.is_empty() {
        return Err(diags.to_string());
    }
    let result = shadow::run(p, &cfg, client).await;
    client.flush().await;
    Ok(result)
}
