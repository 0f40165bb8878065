//! `ModelClient`: what every provider shares. In order, for each request:
//! the result cache (by the request's content key), in-flight de-duplication (one
//! provider call per key however many tasks ask at once), at most `max_in_flight`
//! provider calls at a time, a per-attempt timeout and retries with backoff
//! ([`super::retry`]), then the cache write and, in record mode, the recording.
//! Chat, embedding and guardrail (ApplyGuardrail) calls all take this one path.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::{OwnedMutexGuard, Semaphore};

use super::bedrock::BedrockProvider;
use super::openai::OpenAiProvider;
use super::replay::{recording_path, write_recording, ReplayProvider, DEFAULT_RECORDINGS_DIR};
use super::retry::{with_retries, RetryPolicy};
use super::{
    ChatRequest, ChatResponse, EmbedRequest, EmbedResponse, GuardrailRequest, GuardrailResponse,
    Provider, ProviderError,
};
use crate::config::ProviderKind;
use crate::store::{Store, KIND_CHAT, KIND_EMBEDDING, KIND_GUARDRAIL};

#[derive(Clone, Debug)]
pub enum Mode {
    /// Call the configured providers.
    Live,
    /// Call the configured providers and write a recording of every result (fetched or
    /// cached) into the directory.
    Record(PathBuf),
    /// Answer everything from the recordings in the directory; no model is reached.
    Replay(PathBuf),
    /// Answer only from the result cache; a miss is an error containing
    /// [`NOT_CACHED`]. The bot uses it under the CodeBuild executor, whose builds (not
    /// the bot) hold the model permissions.
    CacheOnly,
}

/// The field of a cached value that names where it came from: the namespace (the
/// repository) and the endpoint that answered. Content keys leave the endpoint out so
/// recordings replay anywhere, but a cache shared by every PR must not serve an answer
/// that a PR's own server gave (push a manifest pointing at a server with perfect
/// answers, then restore it: the answers stay cached) to a request for the real
/// endpoint, nor one repository's results to another. Recordings carry no stamp.
pub const ORIGIN_FIELD: &str = "_origin";

/// A result-cache entry as the store writes it: key, kind, value.
pub type CacheWrite = (String, &'static str, Value);

/// Part of the error for a request that `Mode::CacheOnly` cannot answer.
pub const NOT_CACHED: &str = "not in the result cache";

#[derive(Clone, Debug)]
pub struct ClientOptions {
    pub max_in_flight: usize,
    pub timeout: Duration,
    pub max_attempts: u32,
    pub backoff_base: Duration,
    pub mode: Mode,
    /// Where `provider: replay` manifests read in `Live` mode (Record and Replay name
    /// their own folder); the CLI passes the repository's `.promptgate/recordings`.
    pub recordings_dir: Option<PathBuf>,
    /// Whose results these are (the bot: `forge:owner/repo`). A cached result is served
    /// only to the namespace and the endpoint that produced it (see [`ORIGIN_FIELD`]).
    pub namespace: Option<String>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            max_in_flight: 8,
            timeout: Duration::from_secs(60),
            max_attempts: 5,
            backoff_base: Duration::from_millis(500),
            mode: Mode::Live,
            recordings_dir: None,
            namespace: None,
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
    /// ApplyGuardrail calls made (not answered from the cache).
    pub guardrail_calls: u64,
    pub cache_hits: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub retries: u64,
    /// Answers read from recordings instead of being called.
    pub replayed: u64,
}

#[derive(Default)]
struct Counters {
    replayed: AtomicU64,
    chat_calls: AtomicU64,
    embed_calls: AtomicU64,
    guardrail_calls: AtomicU64,
    cache_hits: AtomicU64,
    input_tokens: AtomicU64,
    output_tokens: AtomicU64,
    retries: AtomicU64,
    done: AtomicU64,
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// One async lock per key currently being fetched; entries are removed when the last
/// holder or waiter is gone.
#[derive(Default)]
struct KeyLocks {
    map: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

struct KeyGuard<'a> {
    locks: &'a KeyLocks,
    key: String,
    guard: Option<OwnedMutexGuard<()>>,
}

impl KeyLocks {
    async fn lock(&self, key: &str) -> KeyGuard<'_> {
        let lock = {
            let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
            map.entry(key.to_string()).or_default().clone()
        };
        let guard = lock.lock_owned().await;
        KeyGuard {
            locks: self,
            key: key.to_string(),
            guard: Some(guard),
        }
    }
}

impl Drop for KeyGuard<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut map = self.locks.map.lock().unwrap_or_else(|e| e.into_inner());
        // Clones are only taken under the map lock, so a count of 1 (the map's own)
        // means nobody holds or waits for this key.
        if map
            .get(&self.key)
            .is_some_and(|l| Arc::strong_count(l) == 1)
        {
            map.remove(&self.key);
        }
    }
}

/// A request of any kind, so the cache/dedup/retry/record path is written once.
#[derive(Clone, Copy)]
enum Job<'a> {
    Chat(&'a ChatRequest),
    Embed(&'a EmbedRequest),
    Guardrail(&'a GuardrailRequest),
}

enum Answer {
    Chat(ChatResponse),
    Embed(EmbedResponse),
    Guardrail(GuardrailResponse),
}

impl Job<'_> {
    fn key(&self) -> &str {
        match self {
            Job::Chat(r) => &r.key,
            Job::Embed(r) => &r.key,
            Job::Guardrail(r) => &r.key,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Job::Chat(_) => KIND_CHAT,
            Job::Embed(_) => KIND_EMBEDDING,
            Job::Guardrail(_) => KIND_GUARDRAIL,
        }
    }

    /// The human-readable request stored in a recording.
    fn summary(&self) -> Value {
        match self {
            Job::Chat(r) => {
                let mut summary = r.spec.identity();
                if let Value::Object(map) = &mut summary {
                    map.insert("messages".into(), json!(r.messages));
                    if let Some(g) = &r.guardrail {
                        map.insert("guardrail".into(), json!(g));
                    }
                }
                summary
            }
            Job::Embed(r) => {
                let mut summary = r.spec.identity();
                if let Value::Object(map) = &mut summary {
                    map.insert("text".into(), json!(r.text));
                }
                summary
            }
            Job::Guardrail(r) => json!({
                "guardrail_id": r.guardrail.id,
                "guardrail_version": r.guardrail.version,
                "source": r.source,
                "text": r.text,
            }),
        }
    }

    /// Reads a cached value of this job's kind; `None` if it does not fit.
    fn answer_from(&self, value: Value) -> Option<Answer> {
        match self {
            Job::Chat(_) => serde_json::from_value(value).ok().map(Answer::Chat),
            Job::Embed(_) => serde_json::from_value(value).ok().map(Answer::Embed),
            Job::Guardrail(_) => serde_json::from_value(value).ok().map(Answer::Guardrail),
        }
    }
}

impl Answer {
    fn to_value(&self) -> Result<Value, serde_json::Error> {
        match self {
            Answer::Chat(r) => serde_json::to_value(r),
            Answer::Embed(r) => serde_json::to_value(r),
            Answer::Guardrail(r) => serde_json::to_value(r),
        }
    }

    fn tokens(&self) -> (u64, u64) {
        match self {
            Answer::Chat(r) => (r.input_tokens, r.output_tokens),
            Answer::Embed(r) => (r.input_tokens, 0),
            Answer::Guardrail(_) => (0, 0),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Answer::Chat(_) => KIND_CHAT,
            Answer::Embed(_) => KIND_EMBEDDING,
            Answer::Guardrail(_) => KIND_GUARDRAIL,
        }
    }
}

/// The error for an answer of another kind than the job's (which cannot happen: the
/// job decides both the provider call and how a cached value is read).
fn wrong_kind(key: &str, wanted: &str, got: &Answer) -> ProviderError {
    ProviderError::Fatal(format!(
        "internal error: the {wanted} request for key {key} answered with a {} result",
        got.kind()
    ))
}

pub struct ModelClient {
    store: Store,
    opts: ClientOptions,
    limiter: Semaphore,
    openai: Arc<OpenAiProvider>,
    bedrock: Arc<BedrockProvider>,
    replay: ReplayProvider,
    key_locks: KeyLocks,
    counters: Counters,
    /// Results known in this run (prefetched or fetched), so repeated lookups skip
    /// the database.
    memo: std::sync::Mutex<HashMap<String, Value>>,
    /// Keys a prefetch found absent from the cache.
    absent: std::sync::Mutex<HashSet<String>>,
    /// Fetched results not yet written to the cache.
    pending: tokio::sync::Mutex<Vec<(String, &'static str, Value)>>,
    /// Every result fetched in this run, when asked for ([`ModelClient::with_fetch_log`]):
    /// what a CodeBuild worker sends back to the bot.
    fetch_log: Option<std::sync::Mutex<Vec<CacheWrite>>>,
    /// Keys whose cache entries count as fetched in this run (`cached: false`, no cache
    /// hit): results a CodeBuild shard fetched for this very run.
    fresh: std::sync::Mutex<HashSet<String>>,
    /// Results a CodeBuild shard returned, not trusted yet ([`ModelClient::with_offered`]).
    offered: Option<std::sync::Mutex<HashMap<String, (&'static str, Value)>>>,
    /// The offered results a request of this run asked for and could use.
    accepted: std::sync::Mutex<Vec<CacheWrite>>,
    /// Fetched results are written once this many wait ([`ModelClient::write_through`]).
    write_batch: usize,
}

/// Fetched results are written to the cache in transactions of this many.
const WRITE_BATCH: usize = 64;

impl ModelClient {
    pub fn new(store: Store, opts: ClientOptions) -> Self {
        let permits = opts.max_in_flight.clamp(1, Semaphore::MAX_PERMITS);
        let replay_dir = match &opts.mode {
            Mode::Record(dir) | Mode::Replay(dir) => dir.clone(),
            Mode::Live | Mode::CacheOnly => opts
                .recordings_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from(DEFAULT_RECORDINGS_DIR)),
        };
        Self {
            store,
            opts,
            limiter: Semaphore::new(permits),
            openai: Arc::new(OpenAiProvider::new()),
            bedrock: Arc::new(BedrockProvider::new()),
            replay: ReplayProvider::new(replay_dir),
            key_locks: KeyLocks::default(),
            counters: Counters::default(),
            memo: std::sync::Mutex::new(HashMap::new()),
            absent: std::sync::Mutex::new(HashSet::new()),
            pending: tokio::sync::Mutex::new(Vec::new()),
            fetch_log: None,
            fresh: std::sync::Mutex::new(HashSet::new()),
            offered: None,
            accepted: std::sync::Mutex::new(Vec::new()),
            write_batch: WRITE_BATCH,
        }
    }

    /// Writes every fetched result to the cache as it arrives instead of in batches:
    /// what the bot wants, so that a crash (a replica killed mid-run) repeats only the
    /// calls that were in flight, at the cost of one small transaction per answer.
    pub fn write_through(mut self) -> Self {
        self.write_batch = 1;
        self
    }

    /// Results from outside (a CodeBuild shard) that are taken only when a request
    /// this client makes asks for their key and they answer it (kind, endpoint and
    /// namespace): running a plan's units over them tells which ones the plan really
    /// asked for, so a tampered result cannot add any other key to the cache.
    pub fn with_offered(mut self, entries: Vec<CacheWrite>) -> Self {
        self.offered = Some(std::sync::Mutex::new(
            entries
                .into_iter()
                .map(|(k, kind, v)| (k, (kind, v)))
                .collect(),
        ));
        self
    }

    /// The offered results some request took (see [`ModelClient::with_offered`]).
    pub fn take_accepted(&self) -> Vec<CacheWrite> {
        self.accepted
            .lock()
            .map(|mut a| std::mem::take(&mut *a))
            .unwrap_or_default()
    }

    /// An offered result for `job`, moved into this run's memo when it answers it. Both
    /// happen under the memo's lock, so a concurrent lookup of the key finds one or
    /// the other.
    fn accept_offered(&self, job: Job<'_>) -> Option<Answer> {
        let offered = self.offered.as_ref()?;
        let mut memo = self.memo.lock().ok()?;
        if let Some(value) = memo.get(job.key()) {
            return self.answer_from(job, value.clone());
        }
        let (kind, value) = offered.lock().ok()?.remove(job.key())?;
        if kind != job.kind() {
            return None;
        }
        let answer = self.answer_from(job, value.clone())?;
        memo.insert(job.key().to_string(), value.clone());
        if let Ok(mut accepted) = self.accepted.lock() {
            accepted.push((job.key().to_string(), kind, value));
        }
        Some(answer)
    }

    /// Keeps every fetched result so [`ModelClient::take_fetched`] can hand it on.
    pub fn with_fetch_log(mut self) -> Self {
        self.fetch_log = Some(std::sync::Mutex::new(Vec::new()));
        self
    }

    /// The results fetched (not answered from the cache) since the last call.
    pub fn take_fetched(&self) -> Vec<CacheWrite> {
        self.fetch_log
            .as_ref()
            .and_then(|l| l.lock().ok().map(|mut l| std::mem::take(&mut *l)))
            .unwrap_or_default()
    }

    /// Cache entries under these keys were fetched for this run elsewhere (a CodeBuild
    /// shard): answer them as fetched, so the report's cached counts and paid cost
    /// equal those of a run that fetched them in process.
    pub fn count_as_fetched(&self, keys: impl IntoIterator<Item = String>) {
        if let Ok(mut fresh) = self.fresh.lock() {
            fresh.extend(keys);
        }
    }

    /// Loads the cached results for `keys` in a few queries, so the calls that follow
    /// do not each make a database round trip (which dominates CPU time at scale).
    pub async fn prefetch(&self, keys: &[String]) {
        match self.store.get_many(keys).await {
            Ok(found) => {
                if let Ok(mut absent) = self.absent.lock() {
                    absent.extend(keys.iter().filter(|k| !found.contains_key(*k)).cloned());
                }
                if let Ok(mut memo) = self.memo.lock() {
                    memo.extend(found);
                }
            }
            Err(e) => tracing::warn!("cannot prefetch from the result cache: {e:#}"),
        }
    }

    /// Writes the results still buffered to the cache. `check` calls it at the end of
    /// a run; results are also written every `WRITE_BATCH` answers (every answer with
    /// [`ModelClient::write_through`]).
    pub async fn flush(&self) {
        let batch = std::mem::take(&mut *self.pending.lock().await);
        if batch.is_empty() {
            return;
        }
        if let Err(e) = self.store.put_many(&batch).await {
            tracing::warn!("cannot write {} results to the cache: {e:#}", batch.len());
        }
    }

    /// Remembers a fetched result for this run and queues it for the cache.
    async fn remember(&self, key: &str, kind: &'static str, value: Value) {
        if let Ok(mut memo) = self.memo.lock() {
            memo.insert(key.to_string(), value.clone());
        }
        if let Some(Ok(mut log)) = self.fetch_log.as_ref().map(|l| l.lock()) {
            log.push((key.to_string(), kind, value.clone()));
        }
        let full = {
            let mut pending = self.pending.lock().await;
            pending.push((key.to_string(), kind, value));
            pending.len() >= self.write_batch
        };
        if full {
            self.flush().await;
        }
    }

    /// The cached result of `key` known to this run (after [`ModelClient::prefetch`]):
    /// what an estimate reads to know which calls a run will not make, and how long
    /// earlier answers were.
    pub fn known(&self, key: &str) -> Option<Value> {
        self.memo_get(key)
    }

    fn memo_get(&self, key: &str) -> Option<Value> {
        self.memo.lock().ok().and_then(|m| m.get(key).cloned())
    }

    pub async fn chat(&self, req: ChatRequest) -> Result<Fetched<ChatResponse>, ProviderError> {
        let fetched = self.run(Job::Chat(&req)).await?;
        match fetched.value {
            Answer::Chat(value) => Ok(Fetched {
                value,
                cached: fetched.cached,
            }),
            other => Err(wrong_kind(&req.key, KIND_CHAT, &other)),
        }
    }

    pub async fn embed(&self, req: EmbedRequest) -> Result<Fetched<EmbedResponse>, ProviderError> {
        let fetched = self.run(Job::Embed(&req)).await?;
        match fetched.value {
            Answer::Embed(value) => Ok(Fetched {
                value,
                cached: fetched.cached,
            }),
            other => Err(wrong_kind(&req.key, KIND_EMBEDDING, &other)),
        }
    }

    /// Screens `req.text` with a Bedrock guardrail (ApplyGuardrail), through the same
    /// cache, de-duplication, limit, retries and recording as chat and embeddings. In
    /// Live and Record mode the call always goes to Bedrock, whichever provider the
    /// suite's models use; in Replay mode it is answered from the recordings.
    pub async fn apply_guardrail(
        &self,
        req: GuardrailRequest,
    ) -> Result<Fetched<GuardrailResponse>, ProviderError> {
        let fetched = self.run(Job::Guardrail(&req)).await?;
        match fetched.value {
            Answer::Guardrail(value) => Ok(Fetched {
                value,
                cached: fetched.cached,
            }),
            other => Err(wrong_kind(&req.key, KIND_GUARDRAIL, &other)),
        }
    }

    /// The provider that answers `spec` live, for calls that bypass the cache, the
    /// de-duplication, the retries and the limiter (a load test sets its own pace and
    /// counts every failure). Refused where no live call is possible: replayed answers
    /// and the cache-only bot measure nothing. Count what it did with
    /// [`ModelClient::count_live_calls`].
    pub fn live_provider(
        &self,
        spec: &crate::config::ModelSpec,
    ) -> Result<Arc<dyn Provider>, String> {
        if let Some(why) = self.live_refusal(spec) {
            return Err(why);
        }
        Ok(match spec.provider {
            ProviderKind::Openai => self.openai.clone(),
            ProviderKind::Bedrock => self.bedrock.clone(),
            ProviderKind::Replay => Arc::new(self.replay.clone()),
        })
    }

    /// Adds calls made through [`ModelClient::live_provider`] to the run's usage.
    pub fn count_live_calls(&self, calls: u64, input_tokens: u64, output_tokens: u64) {
        add(&self.counters.chat_calls, calls);
        add(&self.counters.input_tokens, input_tokens);
        add(&self.counters.output_tokens, output_tokens);
    }

    /// Why [`ModelClient::live_provider`] cannot reach `spec` live, if it cannot.
    pub fn live_refusal(&self, spec: &crate::config::ModelSpec) -> Option<String> {
        match self.opts.mode {
            Mode::CacheOnly => Some(format!(
                "model `{}` cannot be called live here: this bot runs its model calls on CodeBuild",
                spec.model
            )),
            _ if self.replays(spec) => Some(format!(
                "model `{}` answers from recordings (replay), which measure no latency",
                spec.model
            )),
            _ => None,
        }
    }

    pub fn usage(&self) -> UsageCounters {
        let c = &self.counters;
        UsageCounters {
            chat_calls: c.chat_calls.load(Ordering::Relaxed),
            embed_calls: c.embed_calls.load(Ordering::Relaxed),
            guardrail_calls: c.guardrail_calls.load(Ordering::Relaxed),
            cache_hits: c.cache_hits.load(Ordering::Relaxed),
            input_tokens: c.input_tokens.load(Ordering::Relaxed),
            output_tokens: c.output_tokens.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
            replayed: c.replayed.load(Ordering::Relaxed),
        }
    }

    /// Whether a call to `spec` is answered from recordings (replay mode, or a
    /// `provider: replay` manifest): such an answer is not a call and costs nothing.
    pub fn replays(&self, spec: &crate::config::ModelSpec) -> bool {
        matches!(self.opts.mode, Mode::Replay(_)) || spec.provider == ProviderKind::Replay
    }

    /// Calls finished so far (fetched or cached; a call that failed is finished too),
    /// for progress display.
    pub fn done(&self) -> u64 {
        self.counters.done.load(Ordering::Relaxed)
    }

    fn provider_for(&self, job: Job<'_>) -> &dyn Provider {
        if let Mode::Replay(_) = self.opts.mode {
            return &self.replay;
        }
        let spec = match job {
            Job::Chat(r) => &r.spec,
            Job::Embed(r) => &r.spec,
            // ApplyGuardrail screens text from any model: always Bedrock.
            Job::Guardrail(_) => return self.bedrock.as_ref(),
        };
        match spec.provider {
            ProviderKind::Openai => self.openai.as_ref(),
            ProviderKind::Bedrock => self.bedrock.as_ref(),
            ProviderKind::Replay => &self.replay,
        }
    }

    fn record_dir(&self) -> Option<&Path> {
        match &self.opts.mode {
            Mode::Record(dir) => Some(dir),
            _ => None,
        }
    }

    async fn run(&self, job: Job<'_>) -> Result<Fetched<Answer>, ProviderError> {
        let result = self.run_inner(job).await;
        add(&self.counters.done, 1);
        result
    }

    async fn run_inner(&self, job: Job<'_>) -> Result<Fetched<Answer>, ProviderError> {
        if let Some(answer) = self.lookup(job).await {
            return self.cache_hit(job, answer).await;
        }
        // One fetch per key: later askers wait here, then find the result cached.
        let _key_guard = self.key_locks.lock(job.key()).await;
        if let Some(answer) = self
            .memo_get(job.key())
            .and_then(|v| self.answer_from(job, v))
        {
            return self.cache_hit(job, answer).await;
        }

        if let Mode::CacheOnly = self.opts.mode {
            return Err(ProviderError::Fatal(format!(
                "{} request {} is {NOT_CACHED}",
                job.kind(),
                job.key()
            )));
        }
        let provider = self.provider_for(job);
        let replayed = match job {
            Job::Chat(r) => self.replays(&r.spec),
            Job::Embed(r) => self.replays(&r.spec),
            Job::Guardrail(_) => matches!(self.opts.mode, Mode::Replay(_)),
        };
        match job {
            _ if replayed => add(&self.counters.replayed, 1),
            Job::Chat(_) => add(&self.counters.chat_calls, 1),
            Job::Embed(_) => add(&self.counters.embed_calls, 1),
            Job::Guardrail(_) => add(&self.counters.guardrail_calls, 1),
        }
        let policy = RetryPolicy::new(
            self.opts.max_attempts,
            self.opts.backoff_base,
            self.opts.timeout,
        );
        let (result, retries) = with_retries(&policy, Some(&self.limiter), move || async move {
            match job {
                Job::Chat(r) => provider.chat(r).await.map(Answer::Chat),
                Job::Embed(r) => provider.embed(r).await.map(Answer::Embed),
                Job::Guardrail(r) => provider.apply_guardrail(r).await.map(Answer::Guardrail),
            }
        })
        .await;
        add(&self.counters.retries, u64::from(retries));
        let answer = result?;

        let (input_tokens, output_tokens) = answer.tokens();
        add(&self.counters.input_tokens, input_tokens);
        add(&self.counters.output_tokens, output_tokens);

        match answer.to_value() {
            Ok(mut value) => {
                if let Some(dir) = self.record_dir() {
                    self.record(dir, job, value.clone()).await?;
                }
                if let Value::Object(map) = &mut value {
                    map.insert(ORIGIN_FIELD.into(), Value::String(self.origin(job)));
                }
                self.remember(job.key(), job.kind(), value).await;
            }
            Err(e) => tracing::warn!("cannot serialise the result for key {}: {e}", job.key()),
        }
        Ok(Fetched {
            value: answer,
            cached: false,
        })
    }

    /// Where an answer to `job` comes from in this client: the namespace and the
    /// endpoint (replay mode answers from recordings, which is its own origin).
    fn origin(&self, job: Job<'_>) -> String {
        let endpoint = match (&self.opts.mode, job) {
            (Mode::Replay(_), _) => "replay".to_string(),
            (_, Job::Chat(ChatRequest { spec, .. }) | Job::Embed(EmbedRequest { spec, .. })) => {
                match spec.provider {
                    ProviderKind::Openai => format!(
                        "openai {}",
                        spec.base_url
                            .as_deref()
                            .unwrap_or_default()
                            .trim_end_matches('/')
                    ),
                    ProviderKind::Bedrock => {
                        format!("bedrock {}", spec.region.as_deref().unwrap_or("default"))
                    }
                    ProviderKind::Replay => "replay".to_string(),
                }
            }
            (_, Job::Guardrail(r)) => {
                format!("bedrock {}", r.region.as_deref().unwrap_or("default"))
            }
        };
        format!(
            "{} {endpoint}",
            self.opts.namespace.as_deref().unwrap_or("-")
        )
    }

    /// A cached value as an answer to `job`: of the right kind, and from this
    /// client's namespace and the job's endpoint.
    fn answer_from(&self, job: Job<'_>, value: Value) -> Option<Answer> {
        let origin = value.get(ORIGIN_FIELD).and_then(Value::as_str);
        if origin != Some(self.origin(job).as_str()) {
            return None;
        }
        job.answer_from(value)
    }

    /// The cached answer for a job, if there is a readable one of the right kind.
    async fn lookup(&self, job: Job<'_>) -> Option<Answer> {
        if let Some(answer) = self.accept_offered(job) {
            return Some(answer);
        }
        if let Some(value) = self.memo_get(job.key()) {
            return self.answer_from(job, value);
        }
        if self.absent.lock().is_ok_and(|a| a.contains(job.key())) {
            return None;
        }
        match self.store.get(job.key()).await {
            Ok(Some(value)) => {
                let answer = self.answer_from(job, value);
                if answer.is_none() {
                    tracing::debug!(
                        "cache entry {} is not a {} result from {}; fetching it again",
                        job.key(),
                        job.kind(),
                        self.origin(job)
                    );
                }
                answer
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!("cannot read the result cache for key {}: {e:#}", job.key());
                None
            }
        }
    }

    async fn cache_hit(
        &self,
        job: Job<'_>,
        answer: Answer,
    ) -> Result<Fetched<Answer>, ProviderError> {
        if self.fresh.lock().is_ok_and(|f| f.contains(job.key())) {
            return Ok(Fetched {
                value: answer,
                cached: false,
            });
        }
        add(&self.counters.cache_hits, 1);
        if let Some(dir) = self.record_dir() {
            // A recording set must be complete even when the cache was warm.
            if !recording_path(dir, job.key()).exists() {
                let value = answer.to_value().map_err(|e| {
                    ProviderError::Fatal(format!(
                        "cannot serialise the result for key {}: {e}",
                        job.key()
                    ))
                })?;
                self.record(dir, job, value).await?;
            }
        }
        Ok(Fetched {
            value: answer,
            cached: true,
        })
    }

    async fn record(&self, dir: &Path, job: Job<'_>, response: Value) -> Result<(), ProviderError> {
        let dir = dir.to_path_buf();
        let key = job.key().to_string();
        let kind = job.kind();
        let summary = job.summary();
        let shown = recording_path(&dir, &key).display().to_string();
        let written = tokio::task::spawn_blocking(move || {
            write_recording(&dir, &key, kind, summary, response)
        })
        .await;
        match written {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(ProviderError::Fatal(format!(
                "cannot write recording {shown}: {e}"
            ))),
            Err(e) => Err(ProviderError::Fatal(format!(
                "cannot write recording {shown}: {e}"
            ))),
        }
    }
}
