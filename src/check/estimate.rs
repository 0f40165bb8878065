//! The cost preflight (SPEC §5 `estimate`, issue 18): after planning and before the
//! first model call, the calls the plan will make (the planned requests the result
//! cache does not hold) and what they cost at the manifests' prices. Token counts are
//! guessed as [`METHOD`] says; the estimate sits next to `usage` in the report so its
//! error is visible run after run.

use serde_json::Value;

use super::calibration::{grading_request, PlannedCalibration};
use super::suite_plan::PlannedSuite;
use crate::config::{ModelSpec, Pricing};
use crate::execute::client::ModelClient;
use crate::execute::Message;
use crate::plan::injection::PlannedAttack;
use crate::plan::PlannedCase;
use crate::report::estimate::{Estimate, METHOD};
use crate::report::CallKind;

/// Output tokens assumed when nothing better is known.
const DEFAULT_OUTPUT_TOKENS: u64 = 256;
/// A judge's answer: one short JSON object.
const JUDGE_OUTPUT_TOKENS: u64 = 60;
/// The judge's fixed instructions, in tokens.
const JUDGE_SYSTEM_TOKENS: u64 = 130;

/// Tokens of a text: ≈ 4 characters each.
fn tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4)
}

fn message_tokens(messages: &[Message]) -> u64 {
    messages.iter().map(|m| tokens(&m.content) + 4).sum()
}

fn price(pricing: Option<&Pricing>, input: u64, output: u64) -> f64 {
    pricing.map_or(0.0, |p| p.cost(input, output))
}

/// The cached answer's output tokens for `key`, if this run knows it.
fn cached_output_tokens(client: &ModelClient, key: &str) -> Option<u64> {
    client
        .known(key)
        .and_then(|v| v.get("output_tokens").and_then(Value::as_u64))
}

/// Every call the planned suites and the calibration will make, and what it costs.
/// Call after [`ModelClient::prefetch`] of the planned keys.
pub(super) fn estimate(
    planned: &[PlannedSuite],
    calibration: Option<&PlannedCalibration>,
    client: &ModelClient,
) -> Estimate {
    let mut e = Estimate {
        method: METHOD.to_string(),
        ..Estimate::default()
    };
    for p in planned {
        suite(&mut e, p, client);
    }
    if let Some(c) = calibration {
        for item in &c.set.items {
            let req = grading_request(c, item);
            if client.known(&req.key).is_none() {
                let input = message_tokens(&req.messages);
                let usd = price(c.pricing.as_ref(), input, JUDGE_OUTPUT_TOKENS);
                e.add(CallKind::Judge, input, JUDGE_OUTPUT_TOKENS, usd);
            }
        }
    }
    e
}

fn suite(e: &mut Estimate, p: &PlannedSuite, client: &ModelClient) {
    let head = &p.head.plan;
    let output_guess = |case: &PlannedCase, other: Option<&PlannedCase>, spec: &ModelSpec| {
        other
            .and_then(|o| o.input_keys.first())
            .and_then(|k| cached_output_tokens(client, k))
            .or_else(|| case.case.expected.as_deref().map(tokens))
            .or_else(|| spec.parameters.max_tokens.map(u64::from))
            .unwrap_or(DEFAULT_OUTPUT_TOKENS)
    };
    let side = |e: &mut Estimate,
                case: &PlannedCase,
                other: Option<&PlannedCase>,
                spec: &ModelSpec,
                pricing: Option<&Pricing>| {
        let input = message_tokens(&case.messages);
        let output = output_guess(case, other, spec);
        for key in &case.input_keys {
            if client.known(key).is_some() {
                continue;
            }
            e.add(
                CallKind::Generation,
                input,
                output,
                price(pricing, input, output),
            );
            if p.evaluators.judge.is_some() {
                let vars = serde_json::to_string(&case.case.vars).unwrap_or_default();
                let judge_in = JUDGE_SYSTEM_TOKENS
                    + input
                    + output
                    + tokens(&vars)
                    + case.case.expected.as_deref().map_or(0, tokens);
                e.add(
                    CallKind::Judge,
                    judge_in,
                    JUDGE_OUTPUT_TOKENS,
                    price(
                        p.evaluators.judge_pricing.as_ref(),
                        judge_in,
                        JUDGE_OUTPUT_TOKENS,
                    ),
                );
            }
            if p.evaluators.embedding.is_some() {
                let usd = price(p.evaluators.embedding_pricing.as_ref(), output, 0);
                e.add(CallKind::Embedding, output, 0, usd);
            }
        }
    };
    let base = p.base_plan();
    for job in p.case_jobs() {
        side(e, job.head, job.base, &head.spec, head.pricing.as_ref());
    }
    if let Some(b) = base {
        for case in p.base_only_cases() {
            let other = head.get(&case.case.id);
            side(e, case, other, &b.spec, b.pricing.as_ref());
        }
    }
    let attack = |e: &mut Estimate, a: &PlannedAttack, spec: &ModelSpec, pricing| {
        if client.known(&a.key).is_some() {
            return;
        }
        let input = message_tokens(&a.messages);
        let output = spec
            .parameters
            .max_tokens
            .map_or(DEFAULT_OUTPUT_TOKENS, u64::from)
            .min(DEFAULT_OUTPUT_TOKENS);
        e.add(
            CallKind::Attack,
            input,
            output,
            price(pricing, input, output),
        );
    };
    for (h, b) in p.evaluated_attacks() {
        attack(e, h, &head.spec, head.pricing.as_ref());
        if let (Some(b), Some(base)) = (b, base) {
            attack(e, b, &base.spec, base.pricing.as_ref());
        }
    }
    for t in p.evaluated_guardrail_tests() {
        if client.known(&t.key).is_none() {
            e.add(CallKind::Guardrail, 0, 0, 0.0);
        }
    }
    if let Some(load) = &p.load {
        let n = head.cases.len().max(1) as u64;
        let input = head
            .cases
            .iter()
            .map(|c| message_tokens(&c.messages))
            .sum::<u64>()
            / n;
        let output = head
            .cases
            .iter()
            .map(|c| output_guess(c, base.and_then(|b| b.get(&c.case.id)), &head.spec))
            .sum::<u64>()
            / n;
        for _ in 0..load.requests() {
            e.add(
                CallKind::Load,
                input,
                output,
                price(head.pricing.as_ref(), input, output),
            );
        }
    }
}
