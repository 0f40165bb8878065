//! STUB: replaced by the provider work. Public API is fixed.
use std::path::PathBuf;
use std::time::Duration;

use super::{ChatRequest, ChatResponse, EmbedRequest, EmbedResponse, ProviderError};
use crate::store::Store;

#[derive(Clone, Debug)]
pub enum Mode {
    Live,
    Record(PathBuf),
    Replay(PathBuf),
}

#[derive(Clone, Debug)]
pub struct ClientOptions {
    pub max_in_flight: usize,
    pub timeout: Duration,
    pub max_attempts: u32,
    pub backoff_base: Duration,
    pub mode: Mode,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            max_in_flight: 8,
            timeout: Duration::from_secs(60),
            max_attempts: 5,
            backoff_base: Duration::from_millis(500),
            mode: Mode::Live,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Fetched<T> {
    pub value: T,
    pub cached: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UsageCounters {
    pub chat_calls: u64,
    pub embed_calls: u64,
    pub cache_hits: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub retries: u64,
}

pub struct ModelClient {
    #[allow(dead_code)]
    store: Store,
    #[allow(dead_code)]
    opts: ClientOptions,
}

impl ModelClient {
    pub fn new(store: Store, opts: ClientOptions) -> Self {
        Self { store, opts }
    }
    pub async fn chat(&self, _req: ChatRequest) -> Result<Fetched<ChatResponse>, ProviderError> {
        Err(ProviderError::Fatal("stub".into()))
    }
    pub async fn embed(&self, _req: EmbedRequest) -> Result<Fetched<EmbedResponse>, ProviderError> {
        Err(ProviderError::Fatal("stub".into()))
    }
    pub fn usage(&self) -> UsageCounters {
        UsageCounters::default()
    }
    /// Calls finished so far (fetched or cached), for progress display.
    pub fn done(&self) -> u64 {
        0
    }
}
