//! The published invocation-log record (`schemaType: ModelInvocationLog`) and the
//! request/answer pair a replay needs from it: Converse bodies, and InvokeModel with
//! the Anthropic messages body. Other records are skipped and counted.

use serde::Serialize;
use serde_json::Value;

use super::source::LogObject;
use crate::execute::Message;

/// A body inline in the record, or in the object the record points to.
#[derive(Clone, Debug, PartialEq)]
pub enum Body {
    Inline(Value),
    S3(String),
    Missing,
}

/// One eligible record, before its bodies are fetched.
#[derive(Clone, Debug, PartialEq)]
pub struct Invocation {
    pub request_id: String,
    /// Seconds since the epoch.
    pub timestamp: i64,
    pub operation: String,
    pub model_id: String,
    pub input: Body,
    pub output: Body,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// Records left out, by reason.
#[derive(Clone, Debug, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct Skipped {
    /// Lines that are not a `ModelInvocationLog` record.
    pub unreadable: u64,
    /// Operations a replay cannot send (embeddings, images, …).
    pub operation: u64,
    /// Another model than `shadow.model_id`.
    pub model: u64,
    /// Older than `since` (or later than now).
    pub outside_window: u64,
    /// Sampled, but the body is not a text conversation a replay can send.
    pub body: u64,
}

pub struct ParsedLogs {
    pub eligible: Vec<Invocation>,
    pub skipped: Skipped,
}

/// Operations whose bodies a replay understands.
const OPERATIONS: [&str; 3] = ["Converse", "ConverseStream", "InvokeModel"];

/// The eligible records of `objects`: operation, `modelId` and a timestamp in
/// `[now - since, now]`.
pub fn parse_objects(
    objects: &[LogObject],
    now: i64,
    since_secs: i64,
    model_id: Option<&str>,
) -> ParsedLogs {
    let mut skipped = Skipped::default();
    let mut eligible = Vec::new();
    for line in objects.iter().flat_map(|o| o.text.lines()) {
        if line.trim().is_empty() {
            continue;
        }
        let Some(r) = serde_json::from_str::<Value>(line)
            .ok()
            .and_then(|v| record(&v))
        else {
            skipped.unreadable += 1;
            continue;
        };
        if !OPERATIONS.contains(&r.operation.as_str()) {
            skipped.operation += 1;
        } else if model_id.is_some_and(|m| m != r.model_id) {
            skipped.model += 1;
        } else if r.timestamp < now - since_secs || r.timestamp > now + 300 {
            skipped.outside_window += 1;
        } else {
            eligible.push(r);
        }
    }
    ParsedLogs { eligible, skipped }
}

fn record(v: &Value) -> Option<Invocation> {
    if v.get("schemaType")?.as_str()? != "ModelInvocationLog" {
        return None;
    }
    let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let timestamp = aws_smithy_types::DateTime::from_str(
        &text("timestamp")?,
        aws_smithy_types::date_time::Format::DateTime,
    )
    .ok()?
    .secs();
    let body = |side: &str, key: &str| {
        let s = v.get(side);
        match (
            s.and_then(|s| s.get(format!("{key}BodyJson"))),
            s.and_then(|s| s.get(format!("{key}BodyS3Path")))
                .and_then(Value::as_str),
        ) {
            (Some(b), _) if !b.is_null() => Body::Inline(b.clone()),
            (_, Some(p)) => Body::S3(p.to_string()),
            _ => Body::Missing,
        }
    };
    let tokens = |side: &str, key: &str| {
        v.get(side)
            .and_then(|s| s.get(format!("{key}TokenCount")))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    Some(Invocation {
        request_id: text("requestId")?,
        timestamp,
        operation: text("operation")?,
        model_id: text("modelId")?,
        input: body("input", "input"),
        output: body("output", "output"),
        input_tokens: tokens("input", "input"),
        output_tokens: tokens("output", "output"),
    })
}

/// What production sent and answered.
#[derive(Clone, Debug, PartialEq)]
pub struct Exchange {
    pub messages: Vec<Message>,
    pub answer: String,
    /// Converse's `metrics.latencyMs`, when logged.
    pub latency_ms: Option<u64>,
}

/// The text conversation of a Converse body or an Anthropic messages body; an error
/// names what a replay cannot send (images, tool results, another body shape).
pub fn exchange(input: &Value, output: &Value) -> Result<Exchange, String> {
    let mut messages = Vec::new();
    match input.get("system") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => messages.push(Message::new("system", s.clone())),
        Some(parts) => messages.push(Message::new("system", text_parts(parts)?)),
    }
    let turns = input
        .get("messages")
        .and_then(Value::as_array)
        .ok_or("the input body has no `messages` (not Converse or Anthropic messages)")?;
    for m in turns {
        let role = m
            .get("role")
            .and_then(Value::as_str)
            .ok_or("a message has no role")?;
        let content = match m.get("content") {
            Some(Value::String(s)) => s.clone(),
            Some(parts) => text_parts(parts)?,
            None => return Err("a message has no content".into()),
        };
        messages.push(Message::new(role, content));
    }
    // Converse: output.message.content; Anthropic: content.
    let content = output
        .pointer("/output/message/content")
        .or_else(|| output.get("content"))
        .ok_or("the output body has no message content")?;
    let answer = text_parts(content)?;
    let latency_ms = output.pointer("/metrics/latencyMs").and_then(Value::as_u64);
    Ok(Exchange {
        messages,
        answer,
        latency_ms,
    })
}

/// `[{text}]` (Converse) or `[{type: "text", text}]` (Anthropic), joined.
fn text_parts(parts: &Value) -> Result<String, String> {
    let parts = parts.as_array().ok_or("content is not a list of blocks")?;
    let mut texts = Vec::new();
    for p in parts {
        match p.get("text").and_then(Value::as_str) {
            Some(t) => texts.push(t),
            None => return Err("a content block is not text (image, document or tool use)".into()),
        }
    }
    Ok(texts.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn converse_and_anthropic_bodies() {
        let conv = exchange(
            &json!({"system": [{"text": "Be brief."}], "messages": [{"role": "user", "content": [{"text": "Hi"}]}]}),
            &json!({"output": {"message": {"role": "assistant", "content": [{"text": "Hello"}]}}, "metrics": {"latencyMs": 120}}),
        )
        .unwrap();
        assert_eq!(
            conv.messages,
            vec![
                Message::new("system", "Be brief."),
                Message::new("user", "Hi")
            ]
        );
        assert_eq!(
            (conv.answer.as_str(), conv.latency_ms),
            ("Hello", Some(120))
        );
        let anth = exchange(
            &json!({"anthropic_version": "bedrock-2023-05-31", "system": "S", "messages": [{"role": "user", "content": "Q"}]}),
            &json!({"content": [{"type": "text", "text": "A"}], "usage": {"input_tokens": 3}}),
        )
        .unwrap();
        assert_eq!(anth.messages.len(), 2);
        assert_eq!(anth.answer, "A");
        assert!(exchange(&json!({"inputText": "x"}), &json!({})).is_err());
    }
}
