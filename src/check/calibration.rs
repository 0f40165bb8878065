//! Calibrating the judge before its scores gate (SPEC §2, issue 13): the judge in force
//! grades the labelled answers of `evaluators.judge.calibration` (cached by key like any
//! call), and its agreement per label decides whether judge metrics gate this run.

use futures::future::join_all;
use serde_json::json;

use super::spend::{self, CallKind, Spend};
use crate::config::calibration::{CalibrationItem, CalibrationSet, DEFAULT_MIN_KAPPA};
use crate::config::{ModelSpec, Pricing, RepoConfig, CONFIG_PATH};
use crate::diag::{line_of, Diagnostic, Diagnostics};
use crate::execute::{ChatRequest, Message, ModelClient};
use crate::plan::keys;
use crate::report::{JudgeCalibration, LabelAgreement};
use crate::score::{judge, stats};
use crate::source::{read_text, Rev, Source};

/// A judge score at or above this counts as "yes" for a yes/no label.
const YES_AT: f64 = 0.5;

/// The calibration a run will do.
pub(super) struct PlannedCalibration {
    pub(super) set: CalibrationSet,
    pub(super) min_kappa: f64,
    pub(super) judge: ModelSpec,
    pub(super) pricing: Option<Pricing>,
}

/// The set `evaluators.judge.calibration` names at `rev`, parsed; `None` when the
/// config names none. A missing or malformed file is an error naming it.
pub async fn load(
    source: &dyn Source,
    rev: &Rev,
    config: &RepoConfig,
    config_text: &str,
) -> Result<Option<(CalibrationSet, f64)>, Diagnostics> {
    let Some(judge) = config.evaluators.judge.as_ref() else {
        return Ok(None);
    };
    let Some(path) = judge.calibration.as_deref() else {
        return Ok(None);
    };
    let min_kappa = judge.min_kappa.unwrap_or(DEFAULT_MIN_KAPPA);
    let fail = |msg: String| {
        let mut d = Diagnostics::default();
        d.push(Diagnostic::new(
            CONFIG_PATH,
            line_of(config_text, path),
            msg,
        ));
        d
    };
    match read_text(source, rev, path).await {
        Ok(Some(text)) => CalibrationSet::parse(path, &text).map(|s| Some((s, min_kappa))),
        Ok(None) => Err(fail(format!(
            "the judge calibration set `{path}` does not exist at {}",
            rev.label()
        ))),
        Err(e) => Err(fail(format!("cannot read `{path}`: {e:#}"))),
    }
}

/// The judge's agreement with the set, the spend of its calls, and per-item errors
/// (an answer that is not strict JSON): any error means the judge is not calibrated.
pub(super) async fn run(
    p: &PlannedCalibration,
    client: &ModelClient,
) -> (JudgeCalibration, Spend, Vec<String>) {
    let graded = join_all(p.set.items.iter().map(|item| grade(p, item, client))).await;
    let mut spent = Spend::default();
    let mut errors = Vec::new();
    let mut pairs: [Vec<(bool, bool)>; 3] = Default::default();
    for (item, result) in p.set.items.iter().zip(graded) {
        match result {
            Ok((scores, s)) => {
                spent.add(&s);
                let l = item.label;
                pairs[0].push((l.faithful, scores.faithfulness >= YES_AT));
                pairs[1].push((l.relevant, scores.relevance >= YES_AT));
                pairs[2].push((l.hallucination, scores.hallucination));
            }
            Err(e) => errors.push(format!(
                "judge calibration item `{}` ({}:{}): {e}",
                item.id, p.set.file, item.line
            )),
        }
    }
    let labels: Vec<LabelAgreement> = ["faithful", "relevant", "hallucination"]
        .into_iter()
        .zip(pairs.iter())
        .filter_map(|(label, pairs)| {
            stats::agreement(pairs).map(|a| LabelAgreement {
                label: label.to_string(),
                accuracy: a.accuracy,
                kappa: a.kappa,
            })
        })
        .collect();
    let weakest = labels
        .iter()
        .min_by(|a, b| a.kappa.total_cmp(&b.kappa))
        .filter(|w| w.kappa < p.min_kappa);
    let reason = if !errors.is_empty() {
        Some(format!(
            "the judge could not be calibrated on {} ({} of {} items failed)",
            p.set.file,
            errors.len(),
            p.set.items.len()
        ))
    } else {
        weakest.map(|w| {
            format!(
                "the judge agrees with {} at Cohen's kappa {:.2} on `{}`, below min_kappa {}",
                p.set.file, w.kappa, w.label, p.min_kappa
            )
        })
    };
    let calibration = JudgeCalibration {
        file: p.set.file.clone(),
        items: p.set.items.len(),
        min_kappa: p.min_kappa,
        labels,
        gates: reason.is_none(),
        reason,
    };
    (calibration, spent, errors)
}

/// The judge call that grades one labelled answer: the same prompt and key scheme the
/// cases use.
pub(super) fn grading_request(p: &PlannedCalibration, item: &CalibrationItem) -> ChatRequest {
    let mut vars = serde_json::Map::new();
    vars.insert("question".into(), json!(item.question));
    vars.insert("context".into(), json!(item.context));
    let request = [Message::new("user", item.question.clone())];
    let messages = judge::prompt(&request, &vars, None, &item.answer);
    let key = keys::digest(
        keys::JUDGE,
        &json!({"model": p.judge.identity(), "messages": messages}),
    );
    ChatRequest {
        key,
        spec: p.judge.clone(),
        messages,
        guardrail: None,
    }
}

/// One labelled answer through the same judge prompt and key scheme the cases use.
async fn grade(
    p: &PlannedCalibration,
    item: &CalibrationItem,
    client: &ModelClient,
) -> Result<(judge::JudgeScores, Spend), String> {
    let answer = client
        .chat(grading_request(p, item))
        .await
        .map_err(|e| e.to_string())?;
    let mut spent = Spend::default();
    spent.charge(
        CallKind::Judge,
        p.pricing.as_ref(),
        (answer.value.input_tokens, answer.value.output_tokens),
        spend::Source::of(answer.cached, client.replays(&p.judge)),
    );
    Ok((judge::parse(&answer.value.text)?, spent))
}
