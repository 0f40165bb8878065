//! Any OpenAI-compatible server (OpenAI, vLLM, Ollama, llama.cpp, LiteLLM…):
//! `POST {base_url}/chat/completions` and `POST {base_url}/embeddings`.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{json, Value};

use super::{
    ChatRequest, ChatResponse, EmbedRequest, EmbedResponse, Provider, ProviderError, ToolCall,
};
use crate::config::ModelSpec;

/// The longest excerpt of an error body put into a message.
const BODY_EXCERPT_CHARS: usize = 300;

/// One shared HTTP client (connection pool) for every OpenAI-compatible endpoint; the
/// endpoint comes from each request's `spec.base_url`.
pub struct OpenAiProvider {
    http: Result<reqwest::Client, String>,
}

impl Default for OpenAiProvider {
    fn default() -> Self {
        Self::new()
    }
}

impl OpenAiProvider {
    pub fn new() -> Self {
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .connect_timeout(Duration::from_secs(10))
            // A manifest's base_url is written by the PR: a redirect would carry the
            // request (and its answer, into the comment) to a host nobody allowed,
            // such as a cloud metadata endpoint. A 3xx is an error instead.
            .redirect(reqwest::redirect::Policy::none())
            // Names resolve through a guard that refuses metadata and, for names the
            // operator did not list, internal addresses (src/execute/address.rs).
            .dns_resolver(std::sync::Arc::new(
                super::address::GuardedResolver::from_env(),
            ))
            .user_agent(concat!("promptgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot create the HTTP client: {}", error_chain(&e)));
        Self { http }
    }

    /// Uses a given client (for tests or a custom proxy/TLS setup).
    pub fn with_client(client: reqwest::Client) -> Self {
        Self { http: Ok(client) }
    }

    /// POSTs `body` to `{base_url}/{path}`; returns the parsed JSON body and the wall
    /// time of the request in milliseconds.
    async fn post(
        &self,
        spec: &ModelSpec,
        path: &str,
        body: &Value,
    ) -> Result<(Value, u64), ProviderError> {
        let http = self
            .http
            .as_ref()
            .map_err(|e| ProviderError::Fatal(e.clone()))?;
        let base = spec.base_url.as_deref().ok_or_else(|| {
            ProviderError::Fatal(format!(
                "model `{}`: provider openai needs `base_url` (for example http://127.0.0.1:11434/v1)",
                spec.model
            ))
        })?;
        let url = format!("{}/{}", base.trim_end_matches('/'), path);
        if let Some(host) = reqwest::Url::parse(&url)
            .ok()
            .and_then(|u| u.host_str().map(String::from))
        {
            super::address::check_literal(&host).map_err(|why| {
                ProviderError::Fatal(format!("model `{}`: POST {url}: {why}", spec.model))
            })?;
        }
        let mut request = http.post(&url).json(body);
        for (name, value) in &spec.parameters.extra_headers {
            // Checked when the manifest is read; again here for specs built elsewhere.
            if let Some(reason) = crate::config::manifest::forbidden_header(name, value) {
                return Err(ProviderError::Fatal(format!(
                    "model `{}`: {reason}",
                    spec.model
                )));
            }
            request = request.header(name, value);
        }
        if let Some(var) = &spec.api_key_env {
            if let Some(reason) = crate::config::manifest::forbidden_key_env(var) {
                return Err(ProviderError::Fatal(format!(
                    "model `{}`: {reason}",
                    spec.model
                )));
            }
            let key = match std::env::var(var) {
                Ok(key) if !key.trim().is_empty() => key,
                Ok(_) => {
                    return Err(ProviderError::Fatal(format!(
                        "model `{}`: environment variable {var} (api_key_env) is empty",
                        spec.model
                    )))
                }
                Err(_) => {
                    return Err(ProviderError::Fatal(format!(
                        "model `{}`: environment variable {var} (api_key_env) is not set",
                        spec.model
                    )))
                }
            };
            // bearer_auth marks the header sensitive; the key never reaches a message.
            request = request.bearer_auth(key.trim());
        }

        let start = Instant::now();
        let response = request.send().await.map_err(|e| {
            let what = format!("model `{}`: POST {url}: {}", spec.model, error_chain(&e));
            if e.is_builder() {
                ProviderError::Fatal(what)
            } else {
                ProviderError::Retryable {
                    message: what,
                    retry_after: None,
                }
            }
        })?;
        let status = response.status();
        let retry_after = parse_retry_after(response.headers());
        let text = response
            .text()
            .await
            .map_err(|e| ProviderError::Retryable {
                message: format!(
                    "model `{}`: POST {url}: reading the response: {}",
                    spec.model,
                    error_chain(&e)
                ),
                retry_after: None,
            })?;
        let latency_ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);

        if !status.is_success() {
            // The body goes to the operator's log only; what reaches the PR (comment,
            // run page) is the status line and, when the body has the OpenAI error
            // shape, its short message: a body from some other service (an internal
            // host, a metadata endpoint) is never shown.
            tracing::warn!(model = %spec.model, %url, %status, body = %excerpt(&text), "model endpoint answered with an error");
            let line = status_line(status, &text);
            let message = format!("model `{}`: POST {url}: {line}", spec.model);
            let retryable = status.as_u16() == 408 || status.is_server_error();
            return Err(if status.as_u16() == 429 {
                ProviderError::Throttled {
                    message,
                    retry_after,
                }
            } else if retryable {
                ProviderError::Retryable {
                    message,
                    retry_after,
                }
            } else {
                ProviderError::Fatal(message)
            });
        }
        let value: Value = serde_json::from_str(&text).map_err(|e| {
            tracing::warn!(model = %spec.model, %url, body = %excerpt(&text), "model endpoint answered with something that is not JSON");
            ProviderError::Fatal(format!(
                "model `{}`: POST {url}: the response is not valid JSON ({e})",
                spec.model
            ))
        })?;
        Ok((value, latency_ms))
    }
}

/// The chat-completions request body: parameters that are not set are left out so the
/// server's defaults apply.
pub fn chat_body(req: &ChatRequest) -> Value {
    let messages: Vec<Value> = req
        .messages
        .iter()
        .map(|m| json!({"role": m.role, "content": m.content}))
        .collect();
    let mut body = serde_json::Map::new();
    body.insert("model".into(), json!(req.spec.model));
    body.insert("messages".into(), Value::Array(messages));
    let p = &req.spec.parameters;
    if let Some(t) = p.temperature {
        body.insert("temperature".into(), json!(t));
    }
    if let Some(n) = p.max_tokens {
        body.insert("max_tokens".into(), json!(n));
    }
    if let Some(t) = p.top_p {
        body.insert("top_p".into(), json!(t));
    }
    if let Some(stop) = &p.stop {
        body.insert("stop".into(), json!(stop));
    }
    if let Some(seed) = p.seed {
        body.insert("seed".into(), json!(seed));
    }
    if let Some(format) = &p.response_format {
        body.insert("response_format".into(), json!(format));
    }
    if !p.tools.is_empty() {
        let tools: Vec<Value> = p
            .tools
            .iter()
            .map(|t| {
                let mut function = json!({"name": t.name, "parameters": t.schema()});
                if let (Some(d), Some(f)) = (&t.description, function.as_object_mut()) {
                    f.insert("description".into(), json!(d));
                }
                json!({"type": "function", "function": function})
            })
            .collect();
        body.insert("tools".into(), Value::Array(tools));
    }
    Value::Object(body)
}

/// `message.tool_calls[].function {name, arguments}`, where `arguments` is a JSON
/// string; an entry without a function name is a bad answer shape.
fn tool_calls(
    spec: &ModelSpec,
    v: &Value,
    message: &Value,
) -> Result<Vec<ToolCall>, ProviderError> {
    let Some(calls) = message.get("tool_calls").filter(|c| !c.is_null()) else {
        return Ok(Vec::new());
    };
    let calls = calls
        .as_array()
        .ok_or_else(|| shape_error(spec, "list in choices[0].message.tool_calls", v))?;
    calls
        .iter()
        .map(|call| {
            let function = call.get("function");
            let name = function
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .ok_or_else(|| shape_error(spec, "function name in a tool call", v))?;
            let arguments = match function.and_then(|f| f.get("arguments")) {
                Some(Value::String(raw)) => {
                    serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.clone()))
                }
                // Some servers send the arguments as an object already.
                Some(other) => other.clone(),
                None => json!({}),
            };
            Ok(ToolCall {
                name: name.to_string(),
                arguments,
            })
        })
        .collect()
}

fn token_count(v: &Value, pointer: &str) -> u64 {
    v.pointer(pointer).and_then(Value::as_u64).unwrap_or(0)
}

fn shape_error(spec: &ModelSpec, what: &str, v: &Value) -> ProviderError {
    ProviderError::Fatal(format!(
        "model `{}`: the response has no {what}: {}",
        spec.model,
        excerpt(&v.to_string())
    ))
}

#[async_trait]
impl Provider for OpenAiProvider {
    fn describe(&self) -> String {
        "openai-compatible server".to_string()
    }

    async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, ProviderError> {
        let (v, latency_ms) = self
            .post(&req.spec, "chat/completions", &chat_body(req))
            .await?;
        let message = v
            .pointer("/choices/0/message")
            .ok_or_else(|| shape_error(&req.spec, "choices[0].message", &v))?;
        let text = match message.get("content") {
            Some(Value::String(s)) => s.clone(),
            // A message without text (for example only tool calls) answers nothing.
            None | Some(Value::Null) => String::new(),
            Some(_) => {
                return Err(shape_error(
                    &req.spec,
                    "text in choices[0].message.content",
                    &v,
                ))
            }
        };
        Ok(ChatResponse {
            text,
            input_tokens: token_count(&v, "/usage/prompt_tokens"),
            output_tokens: token_count(&v, "/usage/completion_tokens"),
            latency_ms,
            guardrail_intervened: false,
            tool_calls: tool_calls(&req.spec, &v, message)?,
        })
    }

    async fn embed(&self, req: &EmbedRequest) -> Result<EmbedResponse, ProviderError> {
        let body = json!({"model": req.spec.model, "input": req.text});
        let (v, _) = self.post(&req.spec, "embeddings", &body).await?;
        let vector = v
            .pointer("/data/0/embedding")
            .and_then(Value::as_array)
            .and_then(|xs| {
                xs.iter()
                    .map(|x| x.as_f64().map(|f| f as f32))
                    .collect::<Option<Vec<f32>>>()
            })
            .ok_or_else(|| shape_error(&req.spec, "numeric data[0].embedding", &v))?;
        Ok(EmbedResponse {
            vector,
            input_tokens: token_count(&v, "/usage/prompt_tokens"),
        })
    }
}

/// `Retry-After` in seconds (the HTTP-date form is ignored).
pub fn parse_retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    let secs: f64 = value.trim().parse().ok()?;
    if secs.is_finite() && secs >= 0.0 {
        Some(Duration::from_secs_f64(secs.min(86_400.0)))
    } else {
        None
    }
}

/// The longest provider error message quoted in a status line.
const STATUS_MESSAGE_CHARS: usize = 120;

/// `HTTP 400 Bad Request`, plus the provider's own short message when the body has the
/// OpenAI error shape (`{"error": {"message": ...}}` or `{"error": "..."}`). A 3xx says
/// that redirects are not followed, without the `Location`.
fn status_line(status: reqwest::StatusCode, body: &str) -> String {
    let mut line = format!("HTTP {status}");
    if status.is_redirection() {
        line.push_str(": redirects are not followed for model calls");
        return line;
    }
    let message = serde_json::from_str::<Value>(body).ok().and_then(|v| {
        let e = v.get("error")?;
        e.get("message")
            .and_then(Value::as_str)
            .or_else(|| e.as_str())
            .map(str::to_string)
    });
    if let Some(message) = message {
        let flat = message.split_whitespace().collect::<Vec<_>>().join(" ");
        let mut short: String = flat.chars().take(STATUS_MESSAGE_CHARS).collect();
        if flat.chars().nth(STATUS_MESSAGE_CHARS).is_some() {
            short.push('…');
        }
        line.push_str(": ");
        line.push_str(&short);
    }
    line
}

/// At most [`BODY_EXCERPT_CHARS`] characters of a response body, on one line.
pub fn excerpt(body: &str) -> String {
    let flat: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.is_empty() {
        return "(empty body)".to_string();
    }
    let mut out: String = flat.chars().take(BODY_EXCERPT_CHARS).collect();
    if flat.chars().nth(BODY_EXCERPT_CHARS).is_some() {
        out.push('…');
    }
    out
}

/// An error with its causes, `outer: inner: innermost` (reqwest's own message is often
/// just "error sending request").
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpt_is_capped_and_flat() {
        let long = "x".repeat(1000);
        let e = excerpt(&long);
        assert_eq!(e.chars().count(), BODY_EXCERPT_CHARS + 1);
        assert_eq!(excerpt("a\n  b"), "a b");
        assert_eq!(excerpt(""), "(empty body)");
    }

    #[test]
    fn retry_after_seconds() {
        let mut h = reqwest::header::HeaderMap::new();
        assert_eq!(parse_retry_after(&h), None);
        h.insert(reqwest::header::RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(parse_retry_after(&h), Some(Duration::from_secs(3)));
        h.insert(
            reqwest::header::RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(parse_retry_after(&h), None);
    }
}
