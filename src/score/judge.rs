//! LLM-as-judge: one call per output grades faithfulness, relevance and hallucination.
//! The judge must answer strict JSON; anything else is an error for that case, never a
//! silent 0 or 1.

use serde::{Deserialize, Serialize};

use crate::execute::Message;
use crate::score::assertions::strip_fence;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JudgeScores {
    pub faithfulness: f64,
    pub relevance: f64,
    pub hallucination: bool,
    #[serde(default)]
    pub reason: String,
}

const SYSTEM: &str = "You grade answers produced by an AI assistant. \
Reply with exactly one JSON object and nothing else, of the form \
{\"faithfulness\": <number 0..1>, \"relevance\": <number 0..1>, \"hallucination\": <true|false>, \"reason\": \"<one short sentence>\"}. \
faithfulness: how fully the answer is supported by the context and reference (1 = every claim supported). \
relevance: how directly the answer addresses the request (1 = fully on point). \
hallucination: true when the answer states any fact that the context and reference do not support.";

/// The judge conversation for one output. `request` is the rendered conversation the
/// model saw; `context` the case variables; `expected` the reference answer.
pub fn prompt(
    request: &[Message],
    context: &serde_json::Map<String, serde_json::Value>,
    expected: Option<&str>,
    output: &str,
) -> Vec<Message> {
    let mut user = String::new();
    user.push_str("## Context (case variables)\n");
    user.push_str(&serde_json::to_string_pretty(context).unwrap_or_default());
    user.push_str("\n\n## Conversation the assistant saw\n");
    for m in request {
        user.push_str(&format!("[{}]\n{}\n", m.role, m.content));
    }
    if let Some(expected) = expected {
        user.push_str("\n## Reference answer\n");
        user.push_str(expected);
        user.push('\n');
    }
    user.push_str("\n## Answer to grade\n");
    user.push_str(output);
    user.push_str("\n\nReply with the JSON object only.");
    vec![Message::new("system", SYSTEM), Message::new("user", user)]
}

/// Parses the judge's answer. One surrounding code fence is tolerated; any other text,
/// a missing field, or a score outside 0..1 is an error that quotes the answer.
pub fn parse(answer: &str) -> Result<JudgeScores, String> {
    let (obj, excerpt) = json_object(answer)?;
    let unit = |name: &str| -> Result<f64, String> {
        let v = obj
            .get(name)
            .and_then(|v| v.as_f64())
            .ok_or_else(|| format!("judge answer has no numeric `{name}`: {excerpt:?}"))?;
        if (0.0..=1.0).contains(&v) {
            Ok(v)
        } else {
            Err(format!("judge `{name}` {v} is outside 0..1: {excerpt:?}"))
        }
    };
    let faithfulness = unit("faithfulness")?;
    let relevance = unit("relevance")?;
    let hallucination = obj
        .get("hallucination")
        .and_then(|v| v.as_bool())
        .ok_or_else(|| format!("judge answer has no boolean `hallucination`: {excerpt:?}"))?;
    let reason = obj
        .get("reason")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string();
    Ok(JudgeScores {
        faithfulness,
        relevance,
        hallucination,
        reason,
    })
}

/// The judge's answer as one JSON object (one surrounding code fence tolerated), and
/// an excerpt of it for messages.
fn json_object(
    answer: &str,
) -> Result<(serde_json::Map<String, serde_json::Value>, String), String> {
    let text = strip_fence(answer.trim());
    let excerpt: String = answer.chars().take(200).collect();
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| format!("judge answer is not strict JSON ({e}): {excerpt:?}"))?;
    match value {
        serde_json::Value::Object(obj) => Ok((obj, excerpt)),
        _ => Err(format!("judge answer is not a JSON object: {excerpt:?}")),
    }
}

/// Parses an `llm-rubric` grade: `{"score": 0..1, "reason": "..."}`, strictly.
pub fn parse_rubric(answer: &str) -> Result<(f64, String), String> {
    let (obj, excerpt) = json_object(answer)?;
    let score = obj
        .get("score")
        .and_then(|v| v.as_f64())
        .ok_or_else(|| format!("rubric grade has no numeric `score`: {excerpt:?}"))?;
    if !(0.0..=1.0).contains(&score) {
        return Err(format!(
            "rubric `score` {score} is outside 0..1: {excerpt:?}"
        ));
    }
    let reason = obj
        .get("reason")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string();
    Ok((score, reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_strict_and_fenced_json() {
        let s = parse(
            r#"{"faithfulness": 0.9, "relevance": 1, "hallucination": false, "reason": "ok"}"#,
        )
        .unwrap();
        assert_eq!(s.faithfulness, 0.9);
        assert_eq!(s.relevance, 1.0);
        assert!(!s.hallucination);
        let s = parse(
            "```json\n{\"faithfulness\": 0, \"relevance\": 0.5, \"hallucination\": true}\n```",
        )
        .unwrap();
        assert!(s.hallucination);
    }

    #[test]
    fn malformed_answers_are_errors_not_scores() {
        for bad in [
            "The answer is faithful.",
            "Sure! {\"faithfulness\": 1, \"relevance\": 1, \"hallucination\": false}",
            "{\"faithfulness\": 1.2, \"relevance\": 1, \"hallucination\": false}",
            "{\"faithfulness\": \"high\", \"relevance\": 1, \"hallucination\": false}",
            "{\"faithfulness\": 1, \"relevance\": 1}",
            "[1, 1, false]",
            "",
        ] {
            assert!(parse(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn prompt_carries_output_and_reference() {
        let msgs = prompt(
            &[Message::new("user", "How long?")],
            &serde_json::Map::new(),
            Some("30 days"),
            "Within 30 days.",
        );
        assert_eq!(msgs.len(), 2);
        assert!(msgs[1].content.contains("Within 30 days."));
        assert!(msgs[1].content.contains("## Reference answer\n30 days"));
    }
}
