//! Amazon Bedrock: chat through the Converse API (optionally through a guardrail),
//! embeddings through InvokeModel (Titan Text Embeddings v2 body shape), and guardrail
//! screening through ApplyGuardrail. Credentials, region and endpoint come from
//! the standard AWS configuration chain (environment, profile, instance role;
//! `AWS_ENDPOINT_URL_BEDROCK_RUNTIME` / `AWS_ENDPOINT_URL` for an endpoint override).

use std::collections::HashMap;
use std::time::Instant;

use async_trait::async_trait;
use aws_config::retry::RetryConfig;
use aws_config::BehaviorVersion;
use aws_sdk_bedrockruntime::config::Region;
use aws_sdk_bedrockruntime::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_bedrockruntime::primitives::Blob;
use aws_sdk_bedrockruntime::types::{
    ContentBlock, ConversationRole, ConverseOutput, GuardrailAction, GuardrailAssessment,
    GuardrailConfiguration, GuardrailContentBlock, GuardrailContentSource, GuardrailTextBlock,
    GuardrailTrace, InferenceConfiguration, Message as BedrockMessage, StopReason,
    SystemContentBlock, Tool as BedrockTool, ToolConfiguration, ToolInputSchema, ToolSpecification,
};
use aws_sdk_bedrockruntime::Client;
use aws_smithy_types::{Document, Number};
use serde_json::{json, Value};
use tokio::sync::Mutex;

use super::{
    ChatRequest, ChatResponse, EmbedRequest, EmbedResponse, GuardrailRequest, GuardrailResponse,
    Provider, ProviderError, ToolCall,
};
use crate::config::{GuardrailSource, ModelSpec};

/// Error codes worth retrying whatever the HTTP status.
const RETRYABLE_CODES: &[&str] = &[
    "ThrottlingException",
    "ServiceUnavailableException",
    "InternalServerException",
    "ModelNotReadyException",
    "ModelTimeoutException",
    "TooManyRequestsException",
];

/// One SDK client per region, built on first use. The SDK's own retries are off: the
/// `ModelClient` retries in one place.
#[derive(Default)]
pub struct BedrockProvider {
    clients: Mutex<HashMap<Option<String>, Client>>,
}

impl BedrockProvider {
    pub fn new() -> Self {
        Self::default()
    }

    /// The client for `region` (`None`: the AWS region chain). `subject` names what
    /// the call is for (e.g. ``model `m` `` or `guardrail gr-abc`) in the error given
    /// when no region can be found, which is checked here rather than left to the SDK.
    async fn client(&self, region: Option<&str>, subject: &str) -> Result<Client, ProviderError> {
        let client = {
            let mut clients = self.clients.lock().await;
            let key = region.map(str::to_string);
            match clients.get(&key) {
                Some(client) => client.clone(),
                None => {
                    let mut loader = aws_config::defaults(BehaviorVersion::latest())
                        .retry_config(RetryConfig::disabled());
                    if let Some(region) = region {
                        loader = loader.region(Region::new(region.to_string()));
                    }
                    let config = loader.load().await;
                    let client = Client::new(&config);
                    clients.insert(key, client.clone());
                    client
                }
            }
        };
        if client.config().region().is_none() {
            return Err(ProviderError::Fatal(format!(
                "Bedrock is not reachable for {subject}: no AWS region configured (set AWS_REGION or the manifest's region)"
            )));
        }
        Ok(client)
    }
}

/// Converse messages: `system` messages go to the system prompt; consecutive messages
/// of one role are merged (Converse requires roles to alternate).
fn converse_messages(
    req: &ChatRequest,
) -> Result<(Vec<SystemContentBlock>, Vec<BedrockMessage>), ProviderError> {
    let mut system = Vec::new();
    let mut turns: Vec<(ConversationRole, Vec<ContentBlock>)> = Vec::new();
    for m in &req.messages {
        let role = match m.role.as_str() {
            "system" => {
                system.push(SystemContentBlock::Text(m.content.clone()));
                continue;
            }
            "user" => ConversationRole::User,
            "assistant" => ConversationRole::Assistant,
            other => {
                return Err(ProviderError::Fatal(format!(
                    "model `{}`: Bedrock Converse does not take messages with role `{other}` (use system, user or assistant)",
                    req.spec.model
                )))
            }
        };
        let block = ContentBlock::Text(m.content.clone());
        match turns.last_mut() {
            Some((last, blocks)) if *last == role => blocks.push(block),
            _ => turns.push((role, vec![block])),
        }
    }
    let messages = turns
        .into_iter()
        .map(|(role, blocks)| {
            BedrockMessage::builder()
                .role(role)
                .set_content(Some(blocks))
                .build()
                .map_err(|e| {
                    ProviderError::Fatal(format!(
                        "model `{}`: cannot build a Converse message: {e}",
                        req.spec.model
                    ))
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((system, messages))
}

fn inference_config(spec: &ModelSpec) -> Option<InferenceConfiguration> {
    let p = &spec.parameters;
    if p.temperature.is_none() && p.max_tokens.is_none() && p.top_p.is_none() && p.stop.is_none() {
        return None;
    }
    Some(
        InferenceConfiguration::builder()
            .set_max_tokens(p.max_tokens.map(|n| i32::try_from(n).unwrap_or(i32::MAX)))
            .set_temperature(p.temperature.map(|t| t as f32))
            .set_top_p(p.top_p.map(|t| t as f32))
            .set_stop_sequences(p.stop.clone())
            .build(),
    )
}

/// Refuses the knobs Converse has no field for, rather than calling without them: the
/// manifest check says so at load, this covers specs built elsewhere.
fn unsupported_knobs(spec: &ModelSpec) -> Result<(), ProviderError> {
    let p = &spec.parameters;
    let set = [
        ("seed", p.seed.is_some()),
        ("response_format", p.response_format.is_some()),
        ("extra_headers", !p.extra_headers.is_empty()),
    ];
    match set.iter().find(|(_, on)| *on) {
        Some((key, _)) => Err(ProviderError::Fatal(format!(
            "model `{}`: Bedrock Converse does not take `{key}`",
            spec.model
        ))),
        None => Ok(()),
    }
}

/// Converse `toolConfig`: each manifest tool as a `toolSpec` whose `inputSchema.json`
/// is the tool's `parameters`.
fn tool_config(spec: &ModelSpec) -> Result<Option<ToolConfiguration>, ProviderError> {
    if spec.parameters.tools.is_empty() {
        return Ok(None);
    }
    let fatal = |e: aws_smithy_types::error::operation::BuildError| {
        ProviderError::Fatal(format!(
            "model `{}`: cannot build the Converse tool config: {e}",
            spec.model
        ))
    };
    let tools = spec
        .parameters
        .tools
        .iter()
        .map(|t| {
            ToolSpecification::builder()
                .name(&t.name)
                .set_description(t.description.clone())
                .input_schema(ToolInputSchema::Json(to_document(&t.schema())))
                .build()
                .map(BedrockTool::ToolSpec)
                .map_err(fatal)
        })
        .collect::<Result<Vec<_>, _>>()?;
    ToolConfiguration::builder()
        .set_tools(Some(tools))
        .build()
        .map(Some)
        .map_err(fatal)
}

/// JSON to the SDK's `Document` (tool schemas go out as documents).
fn to_document(v: &Value) -> Document {
    match v {
        Value::Null => Document::Null,
        Value::Bool(b) => Document::Bool(*b),
        Value::Number(n) => Document::Number(match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => Number::PosInt(u),
            (None, Some(i)) => Number::NegInt(i),
            _ => Number::Float(n.as_f64().unwrap_or(0.0)),
        }),
        Value::String(s) => Document::String(s.clone()),
        Value::Array(xs) => Document::Array(xs.iter().map(to_document).collect()),
        Value::Object(m) => {
            Document::Object(m.iter().map(|(k, v)| (k.clone(), to_document(v))).collect())
        }
    }
}

/// The SDK's `Document` to JSON (tool-call inputs come back as documents). A float that
/// JSON cannot hold (NaN, infinity) becomes null.
fn from_document(d: &Document) -> Value {
    match d {
        Document::Null => Value::Null,
        Document::Bool(b) => Value::Bool(*b),
        Document::Number(Number::PosInt(u)) => json!(u),
        Document::Number(Number::NegInt(i)) => json!(i),
        Document::Number(Number::Float(f)) => json!(f),
        Document::String(s) => Value::String(s.clone()),
        Document::Array(xs) => Value::Array(xs.iter().map(from_document).collect()),
        Document::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), from_document(v)))
                .collect(),
        ),
    }
}

fn non_negative(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// Maps an SDK error: throttling, unavailability, server errors, timeouts and
/// connection failures are retryable; anything else (validation, access denied, an
/// unknown model, no credentials) is fatal and carries the error code and message.
/// `subject` names what the call was for, e.g. ``model `m` `` or `guardrail gr-abc`.
fn map_sdk_error<E>(subject: &str, operation: &str, err: SdkError<E>) -> ProviderError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = err.raw_response().map(|r| r.status().as_u16());
    let retryable = |message: String| ProviderError::Retryable {
        message,
        retry_after: None,
    };
    match &err {
        SdkError::ServiceError(ctx) => {
            let e = ctx.err();
            let code = e.code().unwrap_or("UnknownError");
            let message = e.message().unwrap_or("no message");
            let status_text = status.map(|s| format!(" (HTTP {s})")).unwrap_or_default();
            let text = format!("{subject}: Bedrock {operation}: {code}: {message}{status_text}");
            let server_side = status.is_some_and(|s| s >= 500);
            if code == "ThrottlingException" || status == Some(429) {
                ProviderError::Throttled {
                    message: text,
                    retry_after: None,
                }
            } else if RETRYABLE_CODES.contains(&code) || server_side {
                retryable(text)
            } else {
                ProviderError::Fatal(text)
            }
        }
        // Credentials are resolved before anything is sent; when the chain finds none
        // the SDK reports a dispatch (or construction) failure that no retry will fix.
        SdkError::DispatchFailure(_) | SdkError::ConstructionFailure(_)
            if is_credentials_error(&err) =>
        {
            ProviderError::Fatal(format!(
                "Bedrock is not reachable for {subject}: no AWS credentials found (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, choose a profile with AWS_PROFILE, or run with an instance or task role): {}",
                DisplayErrorContext(&err)
            ))
        }
        SdkError::TimeoutError(_) => retryable(format!(
            "{subject}: Bedrock {operation} timed out: {}",
            DisplayErrorContext(&err)
        )),
        SdkError::DispatchFailure(failure) if !failure.is_user() => retryable(format!(
            "{subject}: Bedrock {operation}: cannot reach the service: {}",
            DisplayErrorContext(&err)
        )),
        SdkError::ResponseError(_) if status.is_some_and(|s| s >= 500) => retryable(format!(
            "{subject}: Bedrock {operation}: {}",
            DisplayErrorContext(&err)
        )),
        _ => ProviderError::Fatal(format!(
            "{subject}: Bedrock {operation}: {}",
            DisplayErrorContext(&err)
        )),
    }
}

/// Whether a failure before transmission came from the credentials chain. The SDK's
/// `CredentialsError` is not re-exported, so its wording is matched instead: every
/// variant's message names credentials ("the credential provider was not enabled",
/// "an error occurred while loading credentials", ...).
fn is_credentials_error<E>(err: &SdkError<E>) -> bool
where
    E: std::error::Error + 'static,
{
    if let SdkError::DispatchFailure(failure) = err {
        if failure.is_io() || failure.is_timeout() {
            return false;
        }
    }
    DisplayErrorContext(err)
        .to_string()
        .to_ascii_lowercase()
        .contains("credential")
}

fn model_subject(model: &str) -> String {
    format!("model `{model}`")
}

fn guardrail_subject(req: &GuardrailRequest) -> String {
    format!(
        "guardrail {} (version {})",
        req.guardrail.id, req.guardrail.version
    )
}

/// The policies that acted, from ApplyGuardrail `assessments`, as
/// `<policy>:<what>:<action>` strings (word policies name the match or list type):
/// `topicPolicy:<name>:<action>`, `contentPolicy:<type>:<action>`,
/// `wordPolicy:customWords:<match>`, `wordPolicy:managedWordLists:<type>`,
/// `sensitiveInformationPolicy:<type>:<action>` (PII entities; regexes by name),
/// `contextualGroundingPolicy:<type>:<action>`. Entries whose action is `NONE`
/// (detected in detect-only mode, nothing done) are left out.
fn acted_policies(assessments: &[GuardrailAssessment]) -> Vec<String> {
    let mut out = Vec::new();
    let acted = |action: &str| action != "NONE";
    for a in assessments {
        if let Some(p) = a.topic_policy() {
            for t in p.topics() {
                if acted(t.action().as_str()) {
                    out.push(format!("topicPolicy:{}:{}", t.name(), t.action().as_str()));
                }
            }
        }
        if let Some(p) = a.content_policy() {
            for f in p.filters() {
                if acted(f.action().as_str()) {
                    out.push(format!(
                        "contentPolicy:{}:{}",
                        f.r#type().as_str(),
                        f.action().as_str()
                    ));
                }
            }
        }
        if let Some(p) = a.word_policy() {
            for w in p.custom_words() {
                if acted(w.action().as_str()) {
                    out.push(format!("wordPolicy:customWords:{}", w.r#match()));
                }
            }
            for w in p.managed_word_lists() {
                if acted(w.action().as_str()) {
                    out.push(format!(
                        "wordPolicy:managedWordLists:{}",
                        w.r#type().as_str()
                    ));
                }
            }
        }
        if let Some(p) = a.sensitive_information_policy() {
            for e in p.pii_entities() {
                if acted(e.action().as_str()) {
                    out.push(format!(
                        "sensitiveInformationPolicy:{}:{}",
                        e.r#type().as_str(),
                        e.action().as_str()
                    ));
                }
            }
            for r in p.regexes() {
                if acted(r.action().as_str()) {
                    let name = r.name().or(r.regex()).unwrap_or("regex");
                    out.push(format!(
                        "sensitiveInformationPolicy:{}:{}",
                        name,
                        r.action().as_str()
                    ));
                }
            }
        }
        if let Some(p) = a.contextual_grounding_policy() {
            for f in p.filters() {
                if acted(f.action().as_str()) {
                    out.push(format!(
                        "contextualGroundingPolicy:{}:{}",
                        f.r#type().as_str(),
                        f.action().as_str()
                    ));
                }
            }
        }
    }
    out
}

#[async_trait]
impl Provider for BedrockProvider {
    fn describe(&self) -> String {
        "bedrock".to_string()
    }

    async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, ProviderError> {
        let spec = &req.spec;
        unsupported_knobs(spec)?;
        let (system, messages) = converse_messages(req)?;
        let subject = model_subject(&spec.model);
        let client = self.client(spec.region.as_deref(), &subject).await?;
        let mut call = client
            .converse()
            .model_id(&spec.model)
            .set_messages(Some(messages));
        if !system.is_empty() {
            call = call.set_system(Some(system));
        }
        if let Some(config) = inference_config(spec) {
            call = call.inference_config(config);
        }
        if let Some(tools) = tool_config(spec)? {
            call = call.tool_config(tools);
        }
        if let Some(guardrail) = &req.guardrail {
            call = call.guardrail_config(
                GuardrailConfiguration::builder()
                    .guardrail_identifier(&guardrail.id)
                    .guardrail_version(&guardrail.version)
                    .trace(GuardrailTrace::Enabled)
                    .build(),
            );
        }
        let start = Instant::now();
        let out = call
            .send()
            .await
            .map_err(|e| map_sdk_error(&subject, "Converse", e))?;
        let wall_ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);

        let (text, tool_calls) = match out.output() {
            Some(ConverseOutput::Message(message)) => {
                let blocks = message.content();
                let text = blocks
                    .iter()
                    .filter_map(|block| block.as_text().ok())
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join("");
                let calls = blocks
                    .iter()
                    .filter_map(|block| block.as_tool_use().ok())
                    .map(|t| ToolCall {
                        name: t.name().to_string(),
                        arguments: from_document(t.input()),
                    })
                    .collect::<Vec<_>>();
                (text, calls)
            }
            _ => {
                return Err(ProviderError::Fatal(format!(
                    "model `{}`: Bedrock Converse answered without a message (stop reason {})",
                    spec.model,
                    out.stop_reason().as_str()
                )))
            }
        };
        let (input_tokens, output_tokens) = out
            .usage()
            .map(|u| {
                (
                    non_negative(u.input_tokens().into()),
                    non_negative(u.output_tokens().into()),
                )
            })
            .unwrap_or((0, 0));
        let latency_ms = out
            .metrics()
            .map(|m| non_negative(m.latency_ms()))
            .unwrap_or(wall_ms);
        Ok(ChatResponse {
            text,
            input_tokens,
            output_tokens,
            latency_ms,
            guardrail_intervened: *out.stop_reason() == StopReason::GuardrailIntervened,
            tool_calls,
        })
    }

    async fn embed(&self, req: &EmbedRequest) -> Result<EmbedResponse, ProviderError> {
        let spec = &req.spec;
        let body = serde_json::to_vec(&json!({"inputText": req.text})).map_err(|e| {
            ProviderError::Fatal(format!(
                "model `{}`: cannot encode the request: {e}",
                spec.model
            ))
        })?;
        let subject = model_subject(&spec.model);
        let client = self.client(spec.region.as_deref(), &subject).await?;
        let out = client
            .invoke_model()
            .model_id(&spec.model)
            .content_type("application/json")
            .accept("application/json")
            .body(Blob::new(body))
            .send()
            .await
            .map_err(|e| map_sdk_error(&subject, "InvokeModel", e))?;
        let v: Value = serde_json::from_slice(out.body().as_ref()).map_err(|e| {
            ProviderError::Fatal(format!(
                "model `{}`: Bedrock InvokeModel answered with invalid JSON: {e}",
                spec.model
            ))
        })?;
        let vector = v
            .get("embedding")
            .and_then(Value::as_array)
            .and_then(|xs| {
                xs.iter()
                    .map(|x| x.as_f64().map(|f| f as f32))
                    .collect::<Option<Vec<f32>>>()
            })
            .ok_or_else(|| {
                ProviderError::Fatal(format!(
                    "model `{}`: Bedrock InvokeModel answered without a numeric `embedding` (is it a Titan text embeddings model?): {}",
                    spec.model,
                    super::openai::excerpt(&v.to_string())
                ))
            })?;
        let input_tokens = v
            .get("inputTextTokenCount")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        Ok(EmbedResponse {
            vector,
            input_tokens,
        })
    }

    async fn apply_guardrail(
        &self,
        req: &GuardrailRequest,
    ) -> Result<GuardrailResponse, ProviderError> {
        let subject = guardrail_subject(req);
        let client = self.client(req.region.as_deref(), &subject).await?;
        let text = GuardrailTextBlock::builder()
            .text(&req.text)
            .build()
            .map_err(|e| {
                ProviderError::Fatal(format!("{subject}: cannot build the text block: {e}"))
            })?;
        let source = match req.source {
            GuardrailSource::Input => GuardrailContentSource::Input,
            GuardrailSource::Output => GuardrailContentSource::Output,
        };
        let out = client
            .apply_guardrail()
            .guardrail_identifier(&req.guardrail.id)
            .guardrail_version(&req.guardrail.version)
            .source(source)
            .content(GuardrailContentBlock::Text(text))
            .send()
            .await
            .map_err(|e| map_sdk_error(&subject, "ApplyGuardrail", e))?;
        let intervened = match out.action() {
            GuardrailAction::GuardrailIntervened => true,
            GuardrailAction::None => false,
            other => {
                return Err(ProviderError::Fatal(format!(
                    "{subject}: Bedrock ApplyGuardrail answered with an unknown action `{}`",
                    other.as_str()
                )))
            }
        };
        Ok(GuardrailResponse {
            intervened,
            policies: acted_policies(out.assessments()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Parameters, ProviderKind};
    use crate::execute::Message;

    fn req(messages: Vec<Message>) -> ChatRequest {
        ChatRequest {
            key: "k".into(),
            spec: ModelSpec {
                provider: ProviderKind::Bedrock,
                model: "m".into(),
                region: None,
                base_url: None,
                api_key_env: None,
                parameters: Parameters::default(),
            },
            messages,
            guardrail: None,
        }
    }

    #[test]
    fn system_goes_apart_and_same_roles_merge() {
        let (system, messages) = converse_messages(&req(vec![
            Message::new("system", "be brief"),
            Message::new("user", "a"),
            Message::new("user", "b"),
            Message::new("assistant", "c"),
        ]))
        .unwrap();
        assert_eq!(system.len(), 1);
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[0].content().len(), 2);
        assert_eq!(*messages[1].role(), ConversationRole::Assistant);
    }

    #[test]
    fn unknown_role_is_fatal() {
        let err = converse_messages(&req(vec![Message::new("tool", "x")])).unwrap_err();
        assert!(err.to_string().contains("`tool`"), "{err}");
    }
}
