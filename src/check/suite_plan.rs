//! One suite planned at base and head: what is rendered and keyed at each side, and
//! which cases, attacks and guardrail tests the change affects.

use std::collections::HashMap;

use super::Revisions;
use crate::config::{ModelSpec, Pricing, SuiteConfig};
use crate::diag::{Diagnostic, Diagnostics};
use crate::gate;
use crate::plan::guardrail::{plan_guardrail_tests, PlannedGuardrailTest};
use crate::plan::injection::{plan_attacks, PlannedAttack};
use crate::plan::{self, EvaluatorSpecs, PlannedCase, SidePlan};
use crate::source::Source;

/// Everything planned for one suite at one revision.
pub(super) struct SideWork {
    pub(super) plan: SidePlan,
    pub(super) attacks: Vec<PlannedAttack>,
    pub(super) guardrail_tests: Vec<PlannedGuardrailTest>,
    /// Where the guardrail config lives and which region its tests call.
    pub(super) guardrail_file: Option<String>,
    pub(super) region: Option<String>,
    /// The system template's text, and its rendering when it needs no per-request
    /// variable (what a shadow replay may put in place of the logged system prompt).
    pub(super) system_template: Option<String>,
    pub(super) system_static: Option<String>,
}

/// One head case, what it is compared with, and whether the change reaches it.
pub(super) struct CaseJob<'a> {
    pub(super) head: &'a PlannedCase,
    pub(super) base: Option<&'a PlannedCase>,
    /// Its input or score key differs from base's, or it is new at head.
    pub(super) affected: bool,
    /// Same keys and prices at both sides: base's result is head's, evaluated once.
    pub(super) shared: bool,
}

pub(super) struct PlannedSuite {
    pub(super) name: String,
    pub(super) suite: SuiteConfig,
    pub(super) triggered: Vec<String>,
    /// `None` when the suite does not exist or cannot be evaluated at base.
    pub(super) base: Option<SideWork>,
    pub(super) head: SideWork,
    pub(super) evaluators: EvaluatorSpecs,
    pub(super) full: bool,
    /// Generations per case at this tier.
    pub(super) samples: u32,
    /// The load test to run after the evaluation, when this run runs it.
    pub(super) load: Option<crate::config::load::LoadConfig>,
    /// The shadow replay to run after the evaluation.
    pub(super) shadow: Option<crate::config::shadow::ShadowConfig>,
    /// `Some(manifest)`: this plan is the suite on a compared model, whose report goes
    /// into the gating suite's `compared` instead of the run's suites.
    pub(super) compared_of: Option<String>,
    /// Compared models that could not be planned, as their error rows.
    pub(super) compared_failed: Vec<crate::report::ComparedModel>,
}

impl PlannedSuite {
    pub(super) fn base_plan(&self) -> Option<&SidePlan> {
        self.base.as_ref().map(|b| &b.plan)
    }

    /// The judge attack runs use, when the suite asks for one.
    /// The injection judge and its price, when the suite asks for one.
    pub(super) fn attack_judge(&self) -> Option<(&ModelSpec, Option<&Pricing>)> {
        self.evaluators
            .judge
            .as_ref()
            .filter(|_| self.suite.injection.judge)
            .map(|j| (j, self.evaluators.judge_pricing.as_ref()))
    }

    /// Every head case with its base counterpart. Whole-suite metrics need them all;
    /// only the affected ones differ between the sides (SPEC §1, §3).
    pub(super) fn case_jobs(&self) -> Vec<CaseJob<'_>> {
        let base = self.base_plan();
        let same_prices = base.is_some_and(|b| b.pricing == self.head.plan.pricing);
        self.head
            .plan
            .cases
            .iter()
            .map(|h| {
                let b = base.and_then(|b| b.get(&h.case.id));
                let affected = match b {
                    Some(b) => b.input_keys != h.input_keys || b.score_key != h.score_key,
                    None => true,
                };
                CaseJob {
                    head: h,
                    base: b,
                    affected,
                    shared: b.is_some() && !affected && same_prices,
                }
            })
            .collect()
    }

    /// Base cases evaluated on their own: the affected ones, unaffected ones whose
    /// prices differ (no extra call: their answers are head's, from the cache), and
    /// [`Self::removed_cases`].
    pub(super) fn base_only_cases(&self) -> Vec<&PlannedCase> {
        let jobs = self.case_jobs();
        let paired = jobs.iter().filter(|j| !j.shared).filter_map(|j| j.base);
        paired.chain(self.removed_cases()).collect()
    }

    /// Base cases missing at head: base's whole-suite value is over all of its cases.
    pub(super) fn removed_cases(&self) -> Vec<&PlannedCase> {
        let Some(base) = self.base_plan() else {
            return Vec::new();
        };
        let head = &self.head.plan;
        base.cases
            .iter()
            .filter(|c| head.get(&c.case.id).is_none())
            .collect()
    }

    /// Attack runs whose key changed (or all with `--full`), with their base run.
    pub(super) fn evaluated_attacks(&self) -> Vec<(&PlannedAttack, Option<&PlannedAttack>)> {
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
    pub(super) fn evaluated_guardrail_tests(&self) -> Vec<&PlannedGuardrailTest> {
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
    pub(super) fn planned_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = Vec::new();
        for job in self.case_jobs() {
            keys.extend(job.head.input_keys.iter().cloned());
        }
        for b in self.base_only_cases() {
            keys.extend(b.input_keys.iter().cloned());
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
    let system_template = suite
        .prompts
        .system
        .as_ref()
        .and_then(|p| files.templates.get(p).cloned());
    let system_static = suite.prompts.system.as_ref().and_then(|p| {
        plan::Renderer::new(&files.templates)
            .ok()?
            .render_path(p, &serde_json::Map::new())
            .ok()
    });
    Ok(SideWork {
        plan,
        attacks,
        guardrail_tests,
        guardrail_file: suite.guardrail.clone(),
        region,
        system_template,
        system_static,
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

/// A suite as each side plans it: the policy's suite with the `defaults` of that
/// side's `.promptgate.yml` (the policy's where that file does not define the suite).
#[derive(Clone, Copy)]
pub(super) struct SuiteSides<'a> {
    pub(super) base: &'a SuiteConfig,
    pub(super) head: &'a SuiteConfig,
}

pub(super) async fn plan_suite(
    source: &dyn Source,
    revs: &Revisions,
    name: &str,
    sides: SuiteSides<'_>,
    evaluators: &EvaluatorSpecs,
    samples: u32,
    config_text: &str,
) -> Result<(Option<SideWork>, SideWork, Vec<String>), Diagnostics> {
    let suite = sides.head;
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
    let base = match plan::load_suite(source, &revs.base, sides.base, config_text).await {
        Ok(files) => match plan_side_off_runtime(sides.base, &files, evaluators, samples).await {
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
