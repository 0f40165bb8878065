//! Evaluating a planned suite: every case's samples through the model client, scored.

use futures::future::join_all;
use serde_json::json;

use super::security::{self, AttackOutcome};
use super::spend::{self, CallKind};
use super::suite_plan::PlannedSuite;
use crate::config::{ModelSpec, Pricing};
use crate::execute::{ChatRequest, EmbedRequest, GuardrailRef, ModelClient};
use crate::plan::{keys, EvaluatorSpecs, PlannedCase, SidePlan};
use crate::report::Failure;
use crate::score::{self, assertions, judge, CaseScores, SampleScores};

/// What a suite's evaluation produced at base and head.
pub(super) struct SuiteResults {
    /// Every base case (those shared with head are head's results).
    pub(super) base: Vec<CaseScores>,
    /// Every head case, in the order of [`PlannedSuite::case_jobs`].
    pub(super) head: Vec<CaseScores>,
    /// Chat calls made for base and for the cases the change does not affect.
    pub(super) baseline_calls: u64,
    pub(super) attacks_base: Vec<AttackOutcome>,
    pub(super) attacks_head: Vec<AttackOutcome>,
    /// Head guardrail tests: a failure, or an error message.
    pub(super) guardrail: Vec<Result<Option<Failure>, String>>,
}

/// Evaluates the suite's cases and attacks at base and head, and its guardrail tests.
/// Every case of both sides is scored (gates are whole-suite properties); a case the
/// change does not affect is evaluated once and its result serves both sides.
pub(super) async fn evaluate_suite(p: &PlannedSuite, client: &ModelClient) -> SuiteResults {
    let jobs = p.case_jobs();
    let base_only = p.base_only_cases();
    let head_ctx = CaseCtx::of(&p.evaluators, &p.head.plan);
    let base_ctx = p.base_plan().map(|b| CaseCtx::of(&p.evaluators, b));
    let head_jobs = jobs
        .iter()
        .map(|j| evaluate_case(&head_ctx, j.head, "head", client));
    let base_jobs = base_only.iter().filter_map(|b| {
        let ctx = base_ctx.as_ref()?;
        Some(evaluate_case(ctx, b, "base", client))
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
    let (head, mut base, attacks_head, attacks_base, guardrail) = futures::join!(
        join_all(head_jobs),
        join_all(base_jobs),
        join_all(head_attacks),
        join_all(base_attacks),
        join_all(guardrail_jobs)
    );
    let unaffected = jobs.iter().zip(&head).filter(|(j, _)| !j.affected);
    let baseline_calls = base.iter().map(CaseScores::calls).sum::<u64>()
        + unaffected.map(|(_, h)| h.calls()).sum::<u64>();
    base.extend(
        jobs.iter()
            .zip(&head)
            .filter(|(j, _)| j.shared)
            .map(|(_, h)| h.clone()),
    );
    SuiteResults {
        base,
        head,
        baseline_calls,
        attacks_base,
        attacks_head,
        guardrail,
    }
}

/// What evaluating a case at one side needs besides the case itself.
pub(super) struct CaseCtx<'a> {
    pub(super) evaluators: &'a EvaluatorSpecs,
    pub(super) spec: &'a ModelSpec,
    pub(super) guardrail: Option<&'a GuardrailRef>,
    pub(super) pricing: Option<&'a Pricing>,
    pub(super) dataset_file: &'a str,
}

impl<'a> CaseCtx<'a> {
    pub(super) fn of(evaluators: &'a EvaluatorSpecs, plan: &'a SidePlan) -> Self {
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
pub(super) async fn evaluate_case(
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
    let source = spend::Source::of(gen.cached, client.replays(ctx.spec));
    sample.calls += u64::from(source == spend::Source::Called);
    sample.spend.charge(
        CallKind::Generation,
        ctx.pricing,
        (out.input_tokens, out.output_tokens),
        source,
    );
    if !case.case.asserts.is_empty() {
        let (graded, cached) = grade_assertions(ctx, case, &out.text, client, &mut sample).await?;
        all_cached &= cached;
        let subject = assertions::Subject {
            output: &out.text,
            expected: case.case.expected.as_deref(),
            latency_ms: out.latency_ms,
            cost_usd: sample.cost_usd,
            graded: Some(&graded),
            tool_calls: &out.tool_calls,
        };
        sample.assertions = Some(assertions::evaluate(
            &case.case.asserts,
            case.case.threshold,
            &subject,
        ));
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
        let pricing = ctx.evaluators.judge_pricing.as_ref();
        let (grade, cached) = judge_once(client, spec, pricing, &messages, &mut sample).await?;
        all_cached &= cached;
        sample.judge = Some(grade);
        // An ambiguous grade is asked again of the heavy judge, whose grade counts.
        if let (Some(e), Some(g)) = (&ctx.evaluators.escalation, &sample.judge) {
            if e.band.contains(g.faithfulness) || e.band.contains(g.relevance) {
                let before = sample.spend.paid.judge;
                let (grade, cached) =
                    judge_once(client, &e.judge, e.pricing.as_ref(), &messages, &mut sample)
                        .await
                        .map_err(|m| format!("escalated {m}"))?;
                all_cached &= cached;
                sample.escalated = Some(sample.spend.paid.judge - before);
                sample.judge = Some(grade);
            }
        }
    }
    Ok((sample, all_cached))
}

/// The system prompt of an `llm-rubric` grade: the user's rubric, strict JSON back.
const RUBRIC_SYSTEM: &str = "You grade an answer produced by an AI assistant against a rubric. \
Reply with exactly one JSON object and nothing else, of the form \
{\"score\": <number 0..1>, \"reason\": \"<one short sentence>\"}, where 1 means the answer \
fully meets the rubric and 0 that it does not meet it at all.";

/// Grades the case's model-graded assertions on `output`: `similar` by the cosine of
/// the embeddings, `llm-rubric` by the judge. A grader that is missing or fails is an
/// error of the case, never a failed (or passed) assertion.
async fn grade_assertions(
    ctx: &CaseCtx<'_>,
    case: &PlannedCase,
    output: &str,
    client: &ModelClient,
    sample: &mut SampleScores,
) -> Result<(std::collections::HashMap<String, (f64, String)>, bool), String> {
    use crate::config::assertion::grading_key;
    use crate::config::AssertionKind;
    let mut graded = std::collections::HashMap::new();
    let mut all_cached = true;
    for a in &case.case.asserts {
        let Some(text) = a.graded_text(case.case.expected.as_deref()) else {
            continue;
        };
        let text = text?;
        let key = grading_key(a.kind, &text);
        if graded.contains_key(&key) {
            continue;
        }
        let grade = match a.kind {
            AssertionKind::Similar => {
                let spec =
                    ctx.evaluators.assert_embedding.as_ref().ok_or(
                        "assertion `similar` needs `evaluators.embedding` in .promptgate.yml",
                    )?;
                let pricing = ctx.evaluators.embedding_pricing.as_ref();
                let mut vectors = Vec::new();
                for t in [output, text.as_str()] {
                    let req_key =
                        keys::digest(keys::EMBED, &json!({"model": spec.identity(), "text": t}));
                    let e = client
                        .embed(EmbedRequest {
                            key: req_key,
                            spec: spec.clone(),
                            text: t.to_string(),
                        })
                        .await
                        .map_err(|e| format!("assertion `similar`: embedding: {e}"))?;
                    all_cached &= e.cached;
                    sample.spend.charge(
                        CallKind::Embedding,
                        pricing,
                        (e.value.input_tokens, 0),
                        spend::Source::of(e.cached, client.replays(spec)),
                    );
                    vectors.push(e.value.vector);
                }
                let cos = score::cosine(&vectors[0], &vectors[1])
                    .ok_or("assertion `similar`: the embeddings cannot be compared")?;
                (cos, "cosine of the embeddings".to_string())
            }
            AssertionKind::LlmRubric => {
                let spec =
                    ctx.evaluators.assert_judge.as_ref().ok_or(
                        "assertion `llm-rubric` needs `evaluators.judge` in .promptgate.yml",
                    )?;
                let messages = vec![
                    crate::execute::Message::new("system", RUBRIC_SYSTEM),
                    crate::execute::Message::new(
                        "user",
                        format!("## Rubric\n{text}\n\n## Answer to grade\n{output}\n\nReply with the JSON object only."),
                    ),
                ];
                let req_key = keys::digest(
                    keys::JUDGE,
                    &json!({"model": spec.identity(), "messages": messages}),
                );
                let answer = client
                    .chat(ChatRequest {
                        key: req_key,
                        spec: spec.clone(),
                        messages,
                        guardrail: None,
                    })
                    .await
                    .map_err(|e| format!("assertion `llm-rubric`: judge: {e}"))?;
                all_cached &= answer.cached;
                let source = spend::Source::of(answer.cached, client.replays(spec));
                sample.calls += u64::from(source == spend::Source::Called);
                sample.spend.charge(
                    CallKind::Judge,
                    ctx.evaluators.judge_pricing.as_ref(),
                    (answer.value.input_tokens, answer.value.output_tokens),
                    source,
                );
                judge::parse_rubric(&answer.value.text)
                    .map_err(|e| format!("assertion `llm-rubric`: {e}"))?
            }
            _ => continue,
        };
        graded.insert(key, grade);
    }
    Ok((graded, all_cached))
}

/// One judge call on `messages`, booked into `sample`: the parsed grade, and whether
/// the answer came from the cache.
async fn judge_once(
    client: &ModelClient,
    spec: &crate::config::ModelSpec,
    pricing: Option<&crate::config::Pricing>,
    messages: &[crate::execute::Message],
    sample: &mut SampleScores,
) -> Result<(judge::JudgeScores, bool), String> {
    let key = keys::digest(
        keys::JUDGE,
        &json!({"model": spec.identity(), "messages": messages}),
    );
    let verdict = client
        .chat(ChatRequest {
            key,
            spec: spec.clone(),
            messages: messages.to_vec(),
            guardrail: None,
        })
        .await
        .map_err(|e| format!("judge: {e}"))?;
    let source = spend::Source::of(verdict.cached, client.replays(spec));
    sample.calls += u64::from(source == spend::Source::Called);
    sample.spend.charge(
        CallKind::Judge,
        pricing,
        (verdict.value.input_tokens, verdict.value.output_tokens),
        source,
    );
    Ok((judge::parse(&verdict.value.text)?, verdict.cached))
}
