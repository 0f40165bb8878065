//! Model calls: one `Provider` trait for OpenAI-compatible servers, Bedrock and
//! recorded responses, behind a `ModelClient` that adds what every provider shares:
//! the result cache, at most K calls in flight, a per-call timeout, retries with
//! backoff and jitter, and recording.

pub mod address;
pub mod bedrock;
pub mod client;
pub mod openai;
pub mod replay;
pub mod retry;

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::config::ModelSpec;

pub use client::{ClientOptions, Fetched, Mode, ModelClient, UsageCounters};

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// A chat generation. `key` is the content key of the request (the input key for a
/// case, the judge key for a judge call): the cache and recordings are indexed by it.
#[derive(Clone, Debug)]
pub struct ChatRequest {
    pub key: String,
    pub spec: ModelSpec,
    pub messages: Vec<Message>,
    /// Bedrock only: the guardrail Converse applies (`guardrailConfig`), so golden
    /// cases pass through it as production traffic does. Other providers ignore it.
    pub guardrail: Option<GuardrailRef>,
}

/// A Bedrock guardrail and version.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GuardrailRef {
    pub id: String,
    pub version: String,
}

/// One ApplyGuardrail call: screen `text` as model input or output.
#[derive(Clone, Debug)]
pub struct GuardrailRequest {
    pub key: String,
    pub guardrail: GuardrailRef,
    pub source: crate::config::GuardrailSource,
    pub text: String,
    /// Region for the Bedrock client; `None` uses the AWS region chain.
    pub region: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GuardrailResponse {
    /// `GUARDRAIL_INTERVENED` (true) or `NONE` (false).
    pub intervened: bool,
    /// Which policies acted, from `assessments`, e.g. `contentPolicy:VIOLENCE:BLOCKED`.
    #[serde(default)]
    pub policies: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatResponse {
    pub text: String,
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub output_tokens: u64,
    /// The provider's own latency figure where it reports one (Converse
    /// `metrics.latencyMs`), else the measured wall time of the successful attempt.
    #[serde(default)]
    pub latency_ms: u64,
    /// The guardrail passed in `ChatRequest::guardrail` intervened (Converse
    /// `stopReason: guardrail_intervened`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub guardrail_intervened: bool,
    /// The tools the model called, in order (`tool-called`, `tool-args-schema`). Left
    /// out when empty, so results cached before tools existed read back unchanged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
}

/// One call the model made to a manifest's tool.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    pub name: String,
    /// The parsed arguments; arguments that are not JSON are kept as the raw string,
    /// so a schema check fails on them instead of the whole generation.
    pub arguments: serde_json::Value,
}

#[derive(Clone, Debug)]
pub struct EmbedRequest {
    pub key: String,
    pub spec: ModelSpec,
    pub text: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EmbedResponse {
    pub vector: Vec<f32>,
    #[serde(default)]
    pub input_tokens: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// 429, 5xx, ThrottlingException, a connection reset, a timeout: worth retrying.
    #[error("{message}")]
    Retryable {
        message: String,
        retry_after: Option<Duration>,
    },
    /// The provider asked us to slow down (HTTP 429, Bedrock ThrottlingException):
    /// retryable like [`ProviderError::Retryable`], and counted apart by a load test.
    #[error("{message}")]
    Throttled {
        message: String,
        retry_after: Option<Duration>,
    },
    /// A request the provider will never accept (400, 401, 404, a bad answer shape).
    #[error("{0}")]
    Fatal(String),
    /// Replay found no recording for the request.
    #[error("no recording for key {key} (looked in {path}); run `promptgate check --record` with a reachable model first")]
    MissingRecording { key: String, path: String },
}

impl ProviderError {
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ProviderError::Retryable { .. } | ProviderError::Throttled { .. }
        )
    }
}

#[async_trait]
pub trait Provider: Send + Sync {
    /// Short name for messages, e.g. `openai http://127.0.0.1:11434/v1`.
    fn describe(&self) -> String;
    async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, ProviderError>;
    async fn embed(&self, req: &EmbedRequest) -> Result<EmbedResponse, ProviderError>;
    /// Bedrock ApplyGuardrail (and its recordings); other providers cannot.
    async fn apply_guardrail(
        &self,
        req: &GuardrailRequest,
    ) -> Result<GuardrailResponse, ProviderError> {
        Err(ProviderError::Fatal(format!(
            "{} cannot apply guardrail {}",
            self.describe(),
            req.guardrail.id
        )))
    }
}
