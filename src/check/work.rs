//! Units of model work: what a planned run asks of the models, cut into pieces that
//! can run anywhere (in process, or in a CodeBuild shard) through the same evaluation
//! code as `check`. A unit is self-contained: rendered requests, model specs and the
//! case data the scorers read, so whoever runs it needs no repository access.
//!
//! Running a unit only fills the result cache; the report is computed afterwards by
//! [`super::execute`] from that cache, so a sharded run and a local run give the
//! same report.

use futures::future::join_all;
use serde::{Deserialize, Serialize};

use super::evaluate::{evaluate_case, CaseCtx};
use super::security;
use super::suite_plan::PlannedSuite;
use crate::config::ModelSpec;
use crate::execute::client::NOT_CACHED;
use crate::execute::{GuardrailRef, ModelClient};
use crate::plan::guardrail::PlannedGuardrailTest;
use crate::plan::injection::PlannedAttack;
use crate::plan::{EvaluatorSpecs, PlannedCase};
use crate::store::{KIND_CHAT, KIND_GUARDRAIL};

/// One piece of model work.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WorkUnit {
    /// One case's samples at head and (when evaluated apart) base, kept together so
    /// the work both sides share (the expected answer's embedding) is fetched once.
    Case {
        suite: String,
        /// Boxed: with its prices it is the largest field of any variant.
        evaluators: Box<EvaluatorSpecs>,
        sides: Vec<CaseSideWork>,
    },
    /// One attack run at head and (when planned there) base.
    Attack {
        suite: String,
        judge: Option<ModelSpec>,
        runs: Vec<AttackRunWork>,
    },
    /// One guardrail test (head only).
    GuardrailTest {
        suite: String,
        file: String,
        region: Option<String>,
        test: PlannedGuardrailTest,
    },
}

/// A case at one side: the model, the guardrail Converse applies, and the case.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CaseSideWork {
    /// `head` or `base`, for error messages.
    pub side: String,
    pub spec: ModelSpec,
    pub guardrail: Option<GuardrailRef>,
    pub dataset_file: String,
    pub case: PlannedCase,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AttackRunWork {
    pub spec: ModelSpec,
    pub run: PlannedAttack,
}

/// What running a unit found: the errors of its requests, split by whether the
/// request was merely absent from the cache (under `Mode::CacheOnly`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnitOutcome {
    pub not_cached: bool,
    pub errors: Vec<String>,
}

impl WorkUnit {
    /// Short name for messages, e.g. `support-answer/refund-window`.
    pub fn label(&self) -> String {
        match self {
            WorkUnit::Case { suite, sides, .. } => format!(
                "{suite}/{}",
                sides.first().map(|s| s.case.case.id.as_str()).unwrap_or("")
            ),
            WorkUnit::Attack { suite, runs, .. } => match runs.first() {
                Some(r) => format!("{suite}/{}+{}", r.run.case_id, r.run.attack.id),
                None => suite.clone(),
            },
            WorkUnit::GuardrailTest { suite, test, .. } => {
                format!("{suite}/guardrail:{}", test.test.id)
            }
        }
    }

    /// Every model the unit may call (generation, judge, embedding).
    pub fn models(&self) -> Vec<&ModelSpec> {
        match self {
            WorkUnit::Case {
                evaluators, sides, ..
            } => sides
                .iter()
                .map(|s| &s.spec)
                .chain(evaluators.iter())
                .collect(),
            WorkUnit::Attack { judge, runs, .. } => {
                runs.iter().map(|r| &r.spec).chain(judge.iter()).collect()
            }
            WorkUnit::GuardrailTest { .. } => Vec::new(),
        }
    }

    /// The generation and guardrail keys the unit starts from (judge and embedding
    /// keys depend on the generated text). A cached one is handed to a shard so it is
    /// reused rather than generated again.
    pub fn primary_keys(&self) -> Vec<(String, &'static str)> {
        match self {
            WorkUnit::Case { sides, .. } => sides
                .iter()
                .flat_map(|s| s.case.input_keys.iter().map(|k| (k.clone(), KIND_CHAT)))
                .collect(),
            WorkUnit::Attack { runs, .. } => runs
                .iter()
                .map(|r| (r.run.key.clone(), KIND_CHAT))
                .collect(),
            WorkUnit::GuardrailTest { test, .. } => vec![(test.key.clone(), KIND_GUARDRAIL)],
        }
    }

    /// Model requests the unit makes at most (for shard sizing and progress): every
    /// sample with its judge and embeddings, every attack with its judge.
    pub fn weight(&self) -> usize {
        match self {
            WorkUnit::Case {
                evaluators, sides, ..
            } => {
                let per_sample = 1
                    + usize::from(evaluators.judge.is_some())
                    + 2 * usize::from(evaluators.embedding.is_some());
                sides
                    .iter()
                    .map(|s| s.case.input_keys.len() * per_sample)
                    .sum()
            }
            WorkUnit::Attack { judge, runs, .. } => runs.len() * (1 + usize::from(judge.is_some())),
            WorkUnit::GuardrailTest { .. } => 1,
        }
    }

    /// Runs the unit through the same code `check` uses, so every result the report
    /// will read lands in `client`'s cache.
    pub async fn run(&self, client: &ModelClient) -> UnitOutcome {
        let errors: Vec<String> = match self {
            WorkUnit::Case {
                evaluators, sides, ..
            } => {
                let jobs = sides.iter().map(|s| async move {
                    let ctx = CaseCtx {
                        evaluators,
                        spec: &s.spec,
                        guardrail: s.guardrail.as_ref(),
                        pricing: None,
                        dataset_file: &s.dataset_file,
                    };
                    evaluate_case(&ctx, &s.case, &s.side, client).await.error
                });
                join_all(jobs).await.into_iter().flatten().collect()
            }
            WorkUnit::Attack { judge, runs, .. } => {
                let jobs = runs
                    .iter()
                    // A build only fills the cache; the run that reads it books the cost.
                    .map(|r| {
                        security::run_attack(
                            &r.run,
                            &r.spec,
                            None,
                            judge.as_ref().map(|j| (j, None)),
                            client,
                        )
                    });
                join_all(jobs)
                    .await
                    .into_iter()
                    .filter_map(|o| o.error)
                    .collect()
            }
            WorkUnit::GuardrailTest {
                file, region, test, ..
            } => security::run_guardrail_test(test, file, region.clone(), client)
                .await
                .0
                .err()
                .into_iter()
                .collect(),
        };
        UnitOutcome {
            not_cached: errors.iter().any(|e| e.contains(NOT_CACHED)),
            errors,
        }
    }
}

impl PlannedSuite {
    /// The suite's units: exactly the cases, attacks and guardrail tests `execute`
    /// evaluates.
    pub(super) fn work(&self) -> Vec<WorkUnit> {
        let mut units = Vec::new();
        let side = |name: &str, plan: &crate::plan::SidePlan, case: &PlannedCase| CaseSideWork {
            side: name.to_string(),
            spec: plan.spec.clone(),
            guardrail: plan.guardrail.clone(),
            dataset_file: plan.dataset_file.clone(),
            case: case.clone(),
        };
        let evaluators = Box::new(self.evaluators.clone());
        for job in self.case_jobs() {
            let mut sides = vec![side("head", &self.head.plan, job.head)];
            if let (Some(plan), Some(b), false) = (self.base_plan(), job.base, job.shared) {
                sides.push(side("base", plan, b));
            }
            units.push(WorkUnit::Case {
                suite: self.name.clone(),
                evaluators: evaluators.clone(),
                sides,
            });
        }
        if let Some(plan) = self.base_plan() {
            for b in self.removed_cases() {
                units.push(WorkUnit::Case {
                    suite: self.name.clone(),
                    evaluators: evaluators.clone(),
                    sides: vec![side("base", plan, b)],
                });
            }
        }
        let judge = self.attack_judge().map(|(j, _)| j.clone());
        for (h, b) in self.evaluated_attacks() {
            let mut runs = vec![AttackRunWork {
                spec: self.head.plan.spec.clone(),
                run: h.clone(),
            }];
            if let (Some(base), Some(b)) = (self.base.as_ref(), b) {
                runs.push(AttackRunWork {
                    spec: base.plan.spec.clone(),
                    run: b.clone(),
                });
            }
            units.push(WorkUnit::Attack {
                suite: self.name.clone(),
                judge: judge.clone(),
                runs,
            });
        }
        let file = self.head.guardrail_file.clone().unwrap_or_default();
        for t in self.evaluated_guardrail_tests() {
            units.push(WorkUnit::GuardrailTest {
                suite: self.name.clone(),
                file: file.clone(),
                region: self.head.region.clone(),
                test: t.clone(),
            });
        }
        units
    }
}
