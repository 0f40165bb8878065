//! `check`: the whole pipeline for one change, from base to head. The CLI calls it on a
//! local git repository; the bot calls it with a forge-backed `Source`. It never fails:
//! every problem ends up in the report, with verdict `error` and a message naming the
//! file and line or the case.

pub mod security;
pub mod spend;
pub mod work;

use std::collections::HashMap;
use std::time::Instant;

use futures::future::join_all;
use serde_json::json;

use crate::config::ModelManifest;
use crate::config::{
    MetricName, ModelRef, ModelSpec, Pricing, RepoConfig, SuiteConfig, CONFIG_PATH,
};
use crate::detect;
use crate::diag::{Diagnostic, Diagnostics};
use crate::execute::{ChatRequest, EmbedRequest, GuardrailRef, ModelClient};
use crate::gate;
use crate::plan::endpoints::{EndpointPolicy, EndpointRules};
use crate::plan::guardrail::{plan_guardrail_tests, PlannedGuardrailTest};
use crate::plan::injection::{plan_attacks, PlannedAttack};
use crate::plan::{self, keys, EvaluatorSpecs, PlannedCase, SidePlan};
use crate::report::{
    CaseCounts, CaseDetail, CaseSide, ConfigChange, DatasetChangeKind, Failure, GuardrailBlock,
    InjectionBlock, Report, SuiteReport, Tier, Verdict,
};
use crate::score::{self, assertions, judge, CaseScores, SampleScores};
use crate::source::{read_text, Rev, Source};
use security::AttackOutcome;
use spend::CallKind;
pub use work::WorkUnit;

/// Longest output excerpt kept in the report's per-case details.
const EXCERPT_CHARS: usize = 2000;

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
}

impl Default for CheckOptions {
    fn default() -> Self {
        Self {
            suites: Vec::new(),
            full: false,
            tier: Tier::Pr,
            endpoints: EndpointRules::default(),
            namespace: None,
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

/// A planned run: the suites to evaluate and the report so far (skipped and invalid
/// suites, notes, planning errors). Split from [`execute`] so an executor can fan the
/// model calls out (see [`CheckPlan::work`]) before the report is computed.
pub struct CheckPlan {
    report: Report,
    suites: Vec<PlannedSuite>,
    started: Instant,
}

/// Reads the config and files at base and head and plans every affected suite. Makes
/// no model call.
pub async fn plan(source: &dyn Source, revs: &Revisions, opts: &CheckOptions) -> CheckPlan {
    let started = Instant::now();
    let mut report = Report::new(revs.base_label.clone(), revs.head_label.clone(), opts.tier);
    let mut suites = Vec::new();
    if let Err(e) = plan_into(source, revs, opts, &mut report, &mut suites).await {
        report.errors.push(e);
    }
    CheckPlan {
        report,
        suites,
        started,
    }
}

/// Evaluates a plan through `client` and computes the report. With every result
/// already cached (what the CodeBuild executor arranges) it makes no model call.
pub async fn execute(plan: CheckPlan, client: &ModelClient) -> Report {
    let CheckPlan {
        mut report,
        suites,
        started,
    } = plan;
    evaluate_planned(&suites, client, &mut report).await;
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
    let evaluators =
        match resolve_evaluators(source, &policy_rev, &config, opts.tier, &policy_text).await {
            Ok(e) => e,
            Err(d) => return Err(d.to_string()),
        };

    let endpoints = endpoint_policy(source, revs, opts, &config, &policy_rev, &evaluators).await?;

    // Plan every suite first, then run all their calls together under one limit.
    for (name, suite) in &config.suites {
        if !opts.suites.is_empty() && !opts.suites.contains(name) {
            continue;
        }
        let deps =
            detect::Dependencies::of(source, &[&revs.base, &revs.head], suite, &policy_text).await;
        let triggered = detect::triggered_by(suite, &deps, &changed);
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
        let evaluators = suite_evaluators(suite, &evaluators);
        match plan_suite(
            source,
            revs,
            name,
            suite,
            &evaluators,
            samples,
            &policy_text,
        )
        .await
        {
            Ok((_, head, _))
                if endpoints.refusal(&head.plan.spec).is_some()
                    || evaluators.iter().any(|e| endpoints.refusal(e).is_some()) =>
            {
                let d =
                    refused_endpoints(source, revs, suite, &head, &evaluators, &endpoints).await;
                report.suites.push(errored(name, triggered, &d));
            }
            Ok((base, head, notes)) => {
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
                });
            }
            Err(d) => report.suites.push(errored(name, triggered, &d)),
        }
    }
    Ok(())
}

/// The endpoint policy of this run: the operator's lists, else what the base branch
/// names (its suites' manifests and its evaluators). When the policy config is the
/// head's (base has none), nothing of the PR's is trusted: only the operator's lists.
async fn endpoint_policy(
    source: &dyn Source,
    revs: &Revisions,
    opts: &CheckOptions,
    config: &RepoConfig,
    policy_rev: &Rev,
    evaluators: &EvaluatorSpecs,
) -> Result<EndpointPolicy, String> {
    let mut base_specs = Vec::new();
    if policy_rev != &revs.head {
        for suite in config.suites.values() {
            let text = read_text(source, policy_rev, &suite.model)
                .await
                .ok()
                .flatten();
            if let Some(m) = text.and_then(|t| ModelManifest::parse(&suite.model, &t).ok()) {
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

async fn evaluate_planned(planned: &[PlannedSuite], client: &ModelClient, report: &mut Report) {
    let planned_keys: Vec<String> = planned
        .iter()
        .flat_map(PlannedSuite::planned_keys)
        .collect();
    client.prefetch(&planned_keys).await;
    let results = join_all(planned.iter().map(|p| evaluate_suite(p, client))).await;
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
        report.suites.push(suite_report(p, results));
    }
    report.suites.sort_by(|a, b| a.name.cmp(&b.name));
}

/// The evaluators in force for the tier: `release.judge` replaces the judge on release.
async fn resolve_evaluators(
    source: &dyn Source,
    rev: &Rev,
    config: &RepoConfig,
    tier: Tier,
    config_text: &str,
) -> Result<EvaluatorSpecs, Diagnostics> {
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
    if diags.is_empty() {
        Ok(EvaluatorSpecs {
            embedding,
            judge,
            embedding_pricing,
            judge_pricing,
        })
    } else {
        Err(diags)
    }
}

/// Only the evaluators a suite's metrics use go into its score keys and calls.
fn suite_evaluators(suite: &SuiteConfig, all: &EvaluatorSpecs) -> EvaluatorSpecs {
    EvaluatorSpecs {
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

/// Everything planned for one suite at one revision.
struct SideWork {
    plan: SidePlan,
    attacks: Vec<PlannedAttack>,
    guardrail_tests: Vec<PlannedGuardrailTest>,
    /// Where the guardrail config lives and which region its tests call.
    guardrail_file: Option<String>,
    region: Option<String>,
}

struct PlannedSuite {
    name: String,
    suite: SuiteConfig,
    triggered: Vec<String>,
    /// `None` when the suite does not exist or cannot be evaluated at base.
    base: Option<SideWork>,
    head: SideWork,
    evaluators: EvaluatorSpecs,
    full: bool,
}

impl PlannedSuite {
    fn base_plan(&self) -> Option<&SidePlan> {
        self.base.as_ref().map(|b| &b.plan)
    }

    /// The judge attack runs use, when the suite asks for one.
    /// The injection judge and its price, when the suite asks for one.
    fn attack_judge(&self) -> Option<(&ModelSpec, Option<&Pricing>)> {
        self.evaluators
            .judge
            .as_ref()
            .filter(|_| self.suite.injection.judge)
            .map(|j| (j, self.evaluators.judge_pricing.as_ref()))
    }

    /// Head cases to evaluate: those whose input or score key differs from base (or
    /// that are new), or every case with `--full`.
    fn evaluated(&self) -> Vec<(&PlannedCase, Option<&PlannedCase>, bool)> {
        self.head
            .plan
            .cases
            .iter()
            .filter_map(|h| {
                let b = self.base_plan().and_then(|b| b.get(&h.case.id));
                let affected = match b {
                    Some(b) => b.input_keys != h.input_keys || b.score_key != h.score_key,
                    None => true,
                };
                (affected || self.full).then_some((h, b, affected))
            })
            .collect()
    }

    /// Attack runs whose key changed (or all with `--full`), with their base run.
    fn evaluated_attacks(&self) -> Vec<(&PlannedAttack, Option<&PlannedAttack>)> {
        let base: HashMap<(String, String), &PlannedAttack> = self
            .base
            .iter()
            .flat_map(|b| b.attacks.iter().map(|a| (a.run_id(), a)))
            .collect();
        self.head
            .attacks
            .iter()
            .filter_map(|h| {
                let b = base.get(&h.run_id()).copied();
                (self.full || b.is_none_or(|b| b.key != h.key)).then_some((h, b))
            })
            .collect()
    }

    /// Guardrail tests whose key changed (or all with `--full`); run at head only.
    fn evaluated_guardrail_tests(&self) -> Vec<&PlannedGuardrailTest> {
        let base: HashMap<&str, &str> = self
            .base
            .iter()
            .flat_map(|b| {
                b.guardrail_tests
                    .iter()
                    .map(|t| (t.test.id.as_str(), t.key.as_str()))
            })
            .collect();
        self.head
            .guardrail_tests
            .iter()
            .filter(|t| self.full || base.get(t.test.id.as_str()) != Some(&t.key.as_str()))
            .collect()
    }

    /// Every key this suite will look up, for one prefetch from the cache.
    fn planned_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = Vec::new();
        for (h, b, _) in self.evaluated() {
            keys.extend(h.input_keys.iter().cloned());
            keys.extend(b.into_iter().flat_map(|b| b.input_keys.iter().cloned()));
        }
        for (h, b) in self.evaluated_attacks() {
            keys.push(h.key.clone());
            keys.extend(b.map(|b| b.key.clone()));
        }
        keys.extend(
            self.evaluated_guardrail_tests()
                .into_iter()
                .map(|t| t.key.clone()),
        );
        keys
    }
}

/// Plans cases, attacks and guardrail tests of a suite at one revision.
fn plan_side_work(
    suite: &SuiteConfig,
    files: &plan::SuiteFiles,
    evaluators: &EvaluatorSpecs,
    samples: u32,
) -> Result<SideWork, Diagnostics> {
    let plan = plan::plan_side(suite, files, evaluators, samples)?;
    let attacks = if suite.runs_injection() {
        plan_attacks(suite, files)?
    } else {
        Vec::new()
    };
    let guardrail_tests = files
        .guardrail
        .as_ref()
        .map(plan_guardrail_tests)
        .unwrap_or_default();
    let region = match files.manifest.provider {
        crate::config::ProviderKind::Bedrock => files.manifest.region.clone(),
        _ => None,
    };
    Ok(SideWork {
        plan,
        attacks,
        guardrail_tests,
        guardrail_file: suite.guardrail.clone(),
        region,
    })
}

/// [`plan_side_work`] on the blocking pool: rendering runs the PR's templates, and even
/// within their fuel a large dataset is CPU work that must not stall the async runtime
/// (webhook intake, `/healthz`) of the service.
async fn plan_side_off_runtime(
    suite: &SuiteConfig,
    files: &plan::SuiteFiles,
    evaluators: &EvaluatorSpecs,
    samples: u32,
) -> Result<SideWork, Diagnostics> {
    let (suite, files, evaluators) = (suite.clone(), files.clone(), evaluators.clone());
    let name = suite.prompts.roles().first().map(|(_, p)| p.to_string());
    tokio::task::spawn_blocking(move || plan_side_work(&suite, &files, &evaluators, samples))
        .await
        .unwrap_or_else(|e| {
            let mut d = Diagnostics::default();
            d.push(Diagnostic::new(
                name.unwrap_or_default(),
                None,
                format!("rendering the suite's templates failed: {e}"),
            ));
            Err(d)
        })
}

async fn plan_suite(
    source: &dyn Source,
    revs: &Revisions,
    name: &str,
    suite: &SuiteConfig,
    evaluators: &EvaluatorSpecs,
    samples: u32,
    config_text: &str,
) -> Result<(Option<SideWork>, SideWork, Vec<String>), Diagnostics> {
    let head_files = plan::load_suite(source, &revs.head, suite, config_text).await?;
    let uncomputable = gate::prerequisites::static_problems(
        name,
        suite,
        &head_files,
        evaluators.into(),
        config_text,
    );
    let head = match plan_side_off_runtime(suite, &head_files, evaluators, samples).await {
        Ok(head) if uncomputable.is_empty() => head,
        Ok(_) => return Err(uncomputable),
        Err(mut d) => {
            d.extend(uncomputable);
            return Err(d);
        }
    };
    let mut notes = Vec::new();
    let base = match plan::load_suite(source, &revs.base, suite, config_text).await {
        Ok(files) => match plan_side_off_runtime(suite, &files, evaluators, samples).await {
            Ok(plan) => Some(plan),
            Err(d) => {
                notes.push(format!(
                    "the base revision cannot be evaluated, so every case counts as new:\n{d}"
                ));
                None
            }
        },
        Err(d) => {
            notes.push(format!(
                "the base revision cannot be evaluated, so every case counts as new:\n{d}"
            ));
            None
        }
    };
    Ok((base, head, notes))
}

/// What a suite's evaluation produced at base and head.
struct SuiteResults {
    base: Vec<CaseScores>,
    head: Vec<CaseScores>,
    attacks_base: Vec<AttackOutcome>,
    attacks_head: Vec<AttackOutcome>,
    /// Head guardrail tests: a failure, or an error message.
    guardrail: Vec<Result<Option<Failure>, String>>,
}

/// Evaluates the suite's cases and attacks at base and head, and its guardrail tests.
async fn evaluate_suite(p: &PlannedSuite, client: &ModelClient) -> SuiteResults {
    let chosen = p.evaluated();
    let head_ctx = CaseCtx::of(&p.evaluators, &p.head.plan);
    let base_ctx = p.base_plan().map(|b| CaseCtx::of(&p.evaluators, b));
    let head_jobs = chosen
        .iter()
        .map(|(h, _, _)| evaluate_case(&head_ctx, h, "head", client));
    let base_jobs = chosen.iter().filter_map(|(_, b, _)| {
        let (ctx, case) = (base_ctx.as_ref()?, (*b)?);
        Some(evaluate_case(ctx, case, "base", client))
    });
    let judge = p.attack_judge();
    let attacks = p.evaluated_attacks();
    let head_attacks = attacks.iter().map(|(h, _)| {
        let plan = &p.head.plan;
        security::run_attack(h, &plan.spec, plan.pricing.as_ref(), judge, client)
    });
    let base_attacks = attacks.iter().filter_map(|(_, b)| {
        let (plan, run) = (&p.base.as_ref()?.plan, (*b)?);
        Some(security::run_attack(
            run,
            &plan.spec,
            plan.pricing.as_ref(),
            judge,
            client,
        ))
    });
    let file = p.head.guardrail_file.clone().unwrap_or_default();
    let guardrail_jobs = p.evaluated_guardrail_tests().into_iter().map(|t| {
        let (file, region) = (file.clone(), p.head.region.clone());
        async move {
            security::run_guardrail_test(t, &file, region, client)
                .await
                .0
        }
    });
    let (head, base, attacks_head, attacks_base, guardrail) = futures::join!(
        join_all(head_jobs),
        join_all(base_jobs),
        join_all(head_attacks),
        join_all(base_attacks),
        join_all(guardrail_jobs)
    );
    SuiteResults {
        base,
        head,
        attacks_base,
        attacks_head,
        guardrail,
    }
}

/// What evaluating a case at one side needs besides the case itself.
struct CaseCtx<'a> {
    evaluators: &'a EvaluatorSpecs,
    spec: &'a ModelSpec,
    guardrail: Option<&'a GuardrailRef>,
    pricing: Option<&'a Pricing>,
    dataset_file: &'a str,
}

impl<'a> CaseCtx<'a> {
    fn of(evaluators: &'a EvaluatorSpecs, plan: &'a SidePlan) -> Self {
        Self {
            evaluators,
            spec: &plan.spec,
            guardrail: plan.guardrail.as_ref(),
            pricing: plan.pricing.as_ref(),
            dataset_file: &plan.dataset_file,
        }
    }
}

/// Runs one case's samples and scores them. Any failure makes the case an error that
/// names the case, its dataset line and the side.
async fn evaluate_case(
    ctx: &CaseCtx<'_>,
    case: &PlannedCase,
    side: &str,
    client: &ModelClient,
) -> CaseScores {
    let samples = join_all(
        case.input_keys
            .iter()
            .map(|key| evaluate_sample(ctx, case, key, client)),
    )
    .await;
    let mut scores = CaseScores {
        id: case.case.id.clone(),
        cached: true,
        ..Default::default()
    };
    for s in samples {
        match s {
            Ok((sample, cached)) => {
                scores.cached &= cached;
                scores.samples.push(sample);
            }
            Err(e) => {
                scores.cached = false;
                if scores.error.is_none() {
                    scores.error = Some(format!(
                        "case `{}` ({}:{}) at {side}: {e}",
                        case.case.id, ctx.dataset_file, case.case.line
                    ));
                }
            }
        }
    }
    scores
}

async fn evaluate_sample(
    ctx: &CaseCtx<'_>,
    case: &PlannedCase,
    key: &str,
    client: &ModelClient,
) -> Result<(SampleScores, bool), String> {
    let gen = client
        .chat(ChatRequest {
            key: key.to_string(),
            spec: ctx.spec.clone(),
            messages: case.messages.clone(),
            guardrail: ctx.guardrail.cloned(),
        })
        .await
        .map_err(|e| e.to_string())?;
    let mut all_cached = gen.cached;
    let out = gen.value;
    let mut sample = SampleScores {
        output: out.text.clone(),
        latency_ms: out.latency_ms,
        guardrail_intervened: out.guardrail_intervened,
        cost_usd: ctx
            .pricing
            .map(|pr| pr.cost(out.input_tokens, out.output_tokens)),
        ..Default::default()
    };
    sample.spend.charge(
        CallKind::Generation,
        ctx.pricing,
        (out.input_tokens, out.output_tokens),
        spend::Source::of(gen.cached, client.replays(ctx.spec)),
    );
    if !case.case.asserts.is_empty() {
        sample.assertions = Some(assertions::evaluate(&case.case.asserts, &out.text));
    }
    if let (Some(spec), Some(expected)) = (&ctx.evaluators.embedding, &case.case.expected) {
        let embed = |text: String| {
            let key = keys::digest(
                keys::EMBED,
                &json!({"model": spec.identity(), "text": text}),
            );
            client.embed(EmbedRequest {
                key,
                spec: spec.clone(),
                text,
            })
        };
        let (a, b) = futures::join!(embed(out.text.clone()), embed(expected.clone()));
        let (a, b) = (
            a.map_err(|e| format!("embedding: {e}"))?,
            b.map_err(|e| format!("embedding: {e}"))?,
        );
        all_cached &= a.cached && b.cached;
        for e in [&a, &b] {
            sample.spend.charge(
                CallKind::Embedding,
                ctx.evaluators.embedding_pricing.as_ref(),
                (e.value.input_tokens, 0),
                spend::Source::of(e.cached, client.replays(spec)),
            );
        }
        sample.similarity = score::cosine(&a.value.vector, &b.value.vector);
    }
    if let Some(spec) = &ctx.evaluators.judge {
        let messages = judge::prompt(
            &case.messages,
            &case.case.vars,
            case.case.expected.as_deref(),
            &out.text,
        );
        let key = keys::digest(
            keys::JUDGE,
            &json!({"model": spec.identity(), "messages": messages}),
        );
        let verdict = client
            .chat(ChatRequest {
                key,
                spec: spec.clone(),
                messages,
                guardrail: None,
            })
            .await
            .map_err(|e| format!("judge: {e}"))?;
        all_cached &= verdict.cached;
        sample.spend.charge(
            CallKind::Judge,
            ctx.evaluators.judge_pricing.as_ref(),
            (verdict.value.input_tokens, verdict.value.output_tokens),
            spend::Source::of(verdict.cached, client.replays(spec)),
        );
        sample.judge = Some(judge::parse(&verdict.value.text)?);
    }
    Ok((sample, all_cached))
}

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

fn suite_report(p: &PlannedSuite, r: SuiteResults) -> SuiteReport {
    let SuiteResults {
        base,
        head,
        attacks_base,
        attacks_head,
        guardrail,
    } = r;
    let chosen = p.evaluated();
    let base_by_id: HashMap<&str, &CaseScores> = base.iter().map(|b| (b.id.as_str(), b)).collect();
    let affected = chosen.iter().filter(|(_, _, a)| *a).count();
    let base_has = |m| gate::metric_value(m, &base).is_some();
    let head_has = |m| gate::metric_value(m, &head).is_some();
    let shown = gate::shown_metrics(&p.suite, |m| base_has(m) || head_has(m));
    let count = |n: usize, ran: bool| ran.then_some(n as f64);
    let injection_failures =
        |outcomes: &[AttackOutcome]| outcomes.iter().filter(|o| o.finding.is_some()).count();
    let guardrail_failures: Vec<Failure> = guardrail
        .iter()
        .filter_map(|g| g.as_ref().ok().cloned().flatten())
        .collect();
    let metrics: Vec<_> = shown
        .into_iter()
        .map(|m| {
            let (b, h) = match m {
                MetricName::InjectionFailures => (
                    count(injection_failures(&attacks_base), !attacks_base.is_empty()),
                    count(injection_failures(&attacks_head), !attacks_head.is_empty()),
                ),
                // Guardrail tests run at head only: the guardrail is a remote service.
                MetricName::GuardrailFailures => {
                    (None, count(guardrail_failures.len(), !guardrail.is_empty()))
                }
                _ => (
                    if p.base.is_some() {
                        gate::metric_value(m, &base)
                    } else {
                        None
                    },
                    gate::metric_value(m, &head),
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
        .collect();
    // A threshold on a case metric that has no value although head cases were
    // evaluated cannot be checked: an error naming the metric, never a pass.
    let mut metrics = metrics;
    let mut uncomputable = Vec::new();
    if !head.is_empty() {
        for row in metrics.iter_mut() {
            let Some(m) = MetricName::ALL.into_iter().find(|m| m.as_str() == row.name) else {
                continue;
            };
            let case_metric = !matches!(
                m,
                MetricName::InjectionFailures | MetricName::GuardrailFailures
            );
            if case_metric && row.threshold.is_some() && row.head.is_none() {
                row.pass = false;
                uncomputable.push(format!(
                    "metric `{}` is gated but has no value at head: {}",
                    row.name,
                    gate::uncomputable_reason(m)
                ));
            }
        }
    }
    let errors: Vec<String> = uncomputable
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
    let verdict = if chosen.is_empty() && attacks_head.is_empty() && guardrail.is_empty() {
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
    let failures: Vec<Failure> = head
        .iter()
        .flat_map(|c| case_failures(&p.suite, c))
        .collect();
    let flaky: Vec<String> = head
        .iter()
        .filter(|c| c.flaky())
        .map(|c| c.id.clone())
        .collect();
    let details = head
        .iter()
        .map(|h| {
            let b = base_by_id.get(h.id.as_str()).copied();
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
                flaky: h.flaky(),
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
        })
        .collect();
    let cached = head
        .iter()
        .filter(|h| h.cached && base_by_id.get(h.id.as_str()).is_none_or(|b| b.cached))
        .count();
    let injection = p.suite.runs_injection().then(|| InjectionBlock {
        attempts: attacks_head.len(),
        failures: attacks_head
            .iter()
            .filter_map(|a| a.finding.clone())
            .collect(),
    });
    let guardrail_block = p.suite.runs_guardrail_tests().then_some(GuardrailBlock {
        tests: guardrail.len(),
        failures: guardrail_failures,
    });
    let mut report = SuiteReport::empty(&p.name, verdict);
    report.triggered_by = p.triggered.clone();
    report.cases = CaseCounts {
        total: p.head.plan.cases.len(),
        affected,
        evaluated: chosen.len(),
        cached,
        removed: dataset_changes
            .iter()
            .filter(|c| c.change == DatasetChangeKind::Removed)
            .count(),
    };
    report.dataset_changes = dataset_changes;
    report.metrics = metrics;
    report.failures = failures;
    report.injection = injection;
    report.guardrail = guardrail_block;
    report.errors = errors;
    report.flaky = flaky;
    report.details = details;
    report
}

async fn skipped(name: &str, suite: &SuiteConfig, source: &dyn Source, head: &Rev) -> SuiteReport {
    let mut report = SuiteReport::empty(name, Verdict::Skipped);
    report.cases.total = match read_text(source, head, &suite.dataset).await {
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

/// Validates the head's config and lists what it would change in policy.
fn config_change(base: &RepoConfig, head_text: &str) -> ConfigChange {
    match RepoConfig::parse(head_text) {
        Err(d) => ConfigChange {
            valid: false,
            errors: d.0.iter().map(|x| x.to_string()).collect(),
            changes: Vec::new(),
        },
        Ok(head) => {
            let mut changes = Vec::new();
            for name in head.suites.keys().filter(|n| !base.suites.contains_key(*n)) {
                changes.push(format!("adds suite `{name}`"));
            }
            for name in base.suites.keys().filter(|n| !head.suites.contains_key(*n)) {
                changes.push(format!("removes suite `{name}`"));
            }
            for (name, b) in &base.suites {
                let Some(h) = head.suites.get(name) else {
                    continue;
                };
                for m in MetricName::ALL {
                    let (bt, ht) = (b.metrics.get(&m), h.metrics.get(&m));
                    if bt != ht {
                        changes.push(format!(
                            "`{name}.{}`: {} → {}",
                            m.as_str(),
                            fmt_threshold(bt),
                            fmt_threshold(ht)
                        ));
                    }
                }
                if b.max_regression() != h.max_regression() {
                    changes.push(format!(
                        "`{name}.max_regression`: {} → {}",
                        b.max_regression(),
                        h.max_regression()
                    ));
                }
                if b.samples != h.samples {
                    changes.push(format!("`{name}.samples`: {} → {}", b.samples, h.samples));
                }
            }
            if base.evaluators != head.evaluators {
                changes.push("changes `evaluators`".to_string());
            }
            if base.release != head.release {
                changes
                    .push("changes `release` (branches, judge, samples or approvers)".to_string());
            }
            ConfigChange {
                valid: true,
                errors: Vec::new(),
                changes,
            }
        }
    }
}

fn fmt_threshold(t: Option<&crate::config::Threshold>) -> String {
    match t {
        None => "none".to_string(),
        Some(t) => match (t.min, t.max) {
            (Some(a), Some(b)) => format!("min {a}, max {b}"),
            (Some(a), None) => format!("min {a}"),
            (None, Some(b)) => format!("max {b}"),
            (None, None) => "none".to_string(),
        },
    }
}
