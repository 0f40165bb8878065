//! The CodeBuild executor. The bot plans the run itself (which units are affected and
//! not cached yet), writes one self-contained plan per shard to S3, and starts one
//! build per shard with a buildspec it wrote itself and no source checkout
//! (`NO_SOURCE`: the plan holds everything). Each build runs `promptgate worker` and
//! writes its result, signed with the run's key, next to its plan. The bot polls the
//! builds, retries a failed shard once, checks each result's signature, keeps only the
//! results its plan asked for, merges them into its own result cache, and computes the
//! report from that cache with [`check::execute`], exactly as a local run would.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_codebuild::error::ProvideErrorMetadata;
use aws_sdk_codebuild::types::{
    EnvironmentVariable, EnvironmentVariableType, SourceType, StatusType,
};
use aws_smithy_types::error::display::DisplayErrorContext;
use tokio::sync::watch;

use super::shard::ShardSizing;
use super::worker::{
    self, CacheEntry, ShardKey, ShardPlan, ShardResult, ShardUsage, ENV_SHARD_KEY, FORMAT_VERSION,
};
use super::{cancelled, error_report, Executor, RunRequest, Runs};
use crate::check::{self, WorkUnit};
use crate::execute::{ClientOptions, Mode, ModelClient};
use crate::report::Report;
use crate::settings::Settings;
use crate::store::Store;

/// The only buildspec a build runs (`buildspecOverride`): the repository's own
/// buildspec is never used, so a PR cannot change what runs with the build's role.
/// The reference copy in `deploy/` is this very file.
pub const BUILDSPEC: &str = include_str!("../../deploy/buildspec.yml");

/// Environment variables the buildspec reads.
pub const ENV_PLAN: &str = "PROMPTGATE_PLAN";
pub const ENV_RESULT: &str = "PROMPTGATE_RESULT";

/// A shard is started at most this many times (the first try and one retry).
const MAX_ATTEMPTS: u32 = 2;

#[derive(Clone, Debug)]
pub struct CodeBuildConfig {
    pub project: String,
    pub bucket: String,
    /// Key prefix in the bucket, without slashes at the ends (may be empty).
    pub prefix: String,
    pub sizing: ShardSizing,
    /// The whole fan-out, from the first StartBuild to the last result.
    pub deadline: Duration,
    /// Model requests in flight in each build.
    pub max_in_flight: usize,
    /// First wait before BatchGetBuilds; doubles up to `poll_max`.
    pub poll_initial: Duration,
    pub poll_max: Duration,
    /// Signs every run's shard results with this key instead of one drawn per run.
    /// For stand-in builds in tests, which cannot read a StartBuild's environment;
    /// `serve` never sets it.
    pub fixed_shard_key: Option<ShardKey>,
}

impl CodeBuildConfig {
    pub fn new(project: impl Into<String>, bucket: impl Into<String>) -> Self {
        Self {
            project: project.into(),
            bucket: bucket.into(),
            prefix: "promptgate".to_string(),
            sizing: ShardSizing::default(),
            deadline: Duration::from_secs(crate::settings::DEFAULT_CODEBUILD_DEADLINE_SECS),
            max_in_flight: 8,
            poll_initial: Duration::from_secs(10),
            poll_max: Duration::from_secs(60),
            fixed_shard_key: None,
        }
    }

    pub fn from_settings(s: &Settings) -> anyhow::Result<Self> {
        let project = s.codebuild_project.clone().ok_or_else(|| {
            anyhow::anyhow!(
                "PROMPTGATE_CODEBUILD_PROJECT is not set: PROMPTGATE_EXECUTOR=codebuild needs a project"
            )
        })?;
        let bucket = s.codebuild_bucket.clone().ok_or_else(|| {
            anyhow::anyhow!(
                "PROMPTGATE_CODEBUILD_BUCKET is not set: PROMPTGATE_EXECUTOR=codebuild needs an S3 bucket"
            )
        })?;
        Ok(Self {
            prefix: s.codebuild_prefix.trim_matches('/').to_string(),
            sizing: ShardSizing {
                max_shards: s.max_shards,
                min_cases_per_shard: s.min_cases_per_shard,
            },
            deadline: Duration::from_secs(s.codebuild_deadline_secs),
            max_in_flight: s.max_concurrency,
            ..Self::new(project, bucket)
        })
    }

    /// `<prefix>/runs/<run-key>/shard-<i>/<name>`.
    fn key(&self, run_key: &str, shard: usize, name: &str) -> String {
        let rel = format!("runs/{run_key}/shard-{shard}/{name}");
        if self.prefix.is_empty() {
            rel
        } else {
            format!("{}/{rel}", self.prefix)
        }
    }
}

/// The AWS configuration from the standard chains (credentials, region, and the
/// `AWS_ENDPOINT_URL*` overrides).
pub async fn load_aws_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await
}

/// An S3 client. With an endpoint override (a local stand-in, MinIO) requests use
/// path-style addressing, which those serve; AWS itself gets virtual-hosted style.
pub fn s3_client(cfg: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    let overridden = ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]
        .iter()
        .any(|v| std::env::var(v).is_ok_and(|x| !x.is_empty()));
    let conf = aws_sdk_s3::config::Builder::from(cfg)
        .force_path_style(overridden)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// A CodeBuild client whose standard retries (exponential backoff with jitter) also
/// cover `ThrottlingException`, with more attempts than the SDK default because
/// StartBuild bursts at the start of a large run.
pub fn codebuild_client(cfg: &aws_config::SdkConfig) -> aws_sdk_codebuild::Client {
    let conf = aws_sdk_codebuild::config::Builder::from(cfg)
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(8))
        .build();
    aws_sdk_codebuild::Client::from_conf(conf)
}

/// The console page of a build, whose "Build logs" tab shows its log.
pub fn console_link(region: &str, build_id: &str) -> String {
    let project = build_id.split_once(':').map_or(build_id, |(p, _)| p);
    format!(
        "https://{region}.console.aws.amazon.com/codesuite/codebuild/projects/{project}/build/{}/log?region={region}",
        build_id.replace(':', "%3A")
    )
}

pub struct CodeBuildExecutor {
    cfg: CodeBuildConfig,
    codebuild: aws_sdk_codebuild::Client,
    s3: aws_sdk_s3::Client,
    store: Store,
    runs: Runs,
}

impl CodeBuildExecutor {
    /// Clients from the standard AWS configuration chain.
    pub async fn from_env(cfg: CodeBuildConfig, store: Store) -> Self {
        let aws = load_aws_config().await;
        Self::with_clients(cfg, store, codebuild_client(&aws), s3_client(&aws))
    }

    pub fn with_clients(
        cfg: CodeBuildConfig,
        store: Store,
        codebuild: aws_sdk_codebuild::Client,
        s3: aws_sdk_s3::Client,
    ) -> Self {
        Self {
            cfg,
            codebuild,
            s3,
            store,
            runs: Runs::default(),
        }
    }

    fn region(&self) -> String {
        self.codebuild
            .config()
            .region()
            .map_or_else(|| "us-east-1".to_string(), |r| r.to_string())
    }

    /// A client that answers from the bot's cache alone, as `namespace`.
    fn cache_only_client(&self, namespace: Option<String>) -> ModelClient {
        ModelClient::new(
            self.store.clone(),
            ClientOptions {
                mode: Mode::CacheOnly,
                namespace,
                ..ClientOptions::default()
            },
        )
    }

    /// The units some result of which is not in the bot's cache yet: only those go
    /// to CodeBuild. Found by running every unit against the cache alone.
    async fn missing(&self, units: Vec<WorkUnit>, namespace: Option<String>) -> Vec<WorkUnit> {
        let probe = self.cache_only_client(namespace);
        let keys: Vec<String> = units
            .iter()
            .flat_map(|u| u.primary_keys().into_iter().map(|(k, _)| k))
            .collect();
        probe.prefetch(&keys).await;
        let outcomes = futures::future::join_all(units.iter().map(|u| u.run(&probe))).await;
        units
            .into_iter()
            .zip(outcomes)
            .filter(|(_, o)| o.not_cached)
            .map(|(u, _)| u)
            .collect()
    }

    /// Starts `shard`'s build and registers it with `stopper`. The request runs in a
    /// task of its own, so a run aborted while CodeBuild is answering still learns the
    /// build's id: the build is then stopped instead of running on unseen.
    async fn start_build(
        &self,
        run: &RunKey,
        shard: &Shard,
        stopper: &StopOnDrop,
    ) -> Result<String, String> {
        let env = |name: &str, value: String| {
            EnvironmentVariable::builder()
                .name(name)
                .value(value)
                .r#type(EnvironmentVariableType::Plaintext)
                .build()
                .map_err(|e| format!("building the environment override {name}: {e}"))
        };
        let plan_uri = format!("s3://{}/{}", self.cfg.bucket, shard.plan_key);
        let result_uri = format!("s3://{}/{}", self.cfg.bucket, shard.result_key);
        let request = self
            .codebuild
            .start_build()
            .project_name(&self.cfg.project)
            .source_type_override(SourceType::NoSource)
            .buildspec_override(BUILDSPEC)
            .environment_variables_override(env(ENV_PLAN, plan_uri)?)
            .environment_variables_override(env(ENV_RESULT, result_uri)?)
            .environment_variables_override(env(ENV_SHARD_KEY, run.shard_key.to_hex())?)
            .idempotency_token(format!("{}-{}-{}", run.id, shard.index, shard.attempts + 1));
        let tracked = Arc::clone(&stopper.tracked);
        let client = self.codebuild.clone();
        let sent = tokio::spawn(async move {
            let out = request.send().await;
            let id = out
                .as_ref()
                .ok()
                .and_then(|o| o.build_value())
                .and_then(|b| b.id());
            if let Some(id) = id {
                if !Tracked::add(&tracked, id) {
                    stop_builds(&client, vec![id.to_string()]).await;
                }
            }
            out
        });
        let out = sent
            .await
            .map_err(|e| {
                format!(
                    "starting the CodeBuild build for shard {}: {e}",
                    shard.index
                )
            })?
            .map_err(|e| {
                format!(
                    "cannot start a CodeBuild build for shard {} on project `{}`: {}",
                    shard.index,
                    self.cfg.project,
                    DisplayErrorContext(e)
                )
            })?;
        out.build_value()
            .and_then(|b| b.id())
            .map(str::to_string)
            .ok_or_else(|| {
                format!(
                    "CodeBuild started shard {} on project `{}` without returning a build id",
                    shard.index, self.cfg.project
                )
            })
    }

    /// Reads and checks a finished shard's result: its signature under the run's key
    /// over the exact bytes, before they are parsed.
    async fn read_result(&self, shard: &Shard, key: &ShardKey) -> Result<ShardResult, String> {
        let bytes = worker::s3_get(&self.s3, &self.cfg.bucket, &shard.result_key)
            .await
            .map_err(|e| format!("{e:#}"))?;
        let sig_key = worker::signature_location(&shard.result_key);
        let signature = worker::s3_get(&self.s3, &self.cfg.bucket, &sig_key)
            .await
            .map_err(|e| format!("{e:#}"))?;
        if !key.verify(&bytes, &signature) {
            return Err(format!(
                "s3://{}/{} is not signed with this run's key (s3://{}/{sig_key}); it was not \
                 written by the run's build",
                self.cfg.bucket, shard.result_key, self.cfg.bucket
            ));
        }
        let result: ShardResult = serde_json::from_slice(&bytes).map_err(|e| {
            format!(
                "s3://{}/{} is not a shard result: {e}",
                self.cfg.bucket, shard.result_key
            )
        })?;
        if result.version != FORMAT_VERSION || result.plan_sha256 != shard.digest {
            return Err(format!(
                "s3://{}/{} answers another plan (a stale result, or a worker of another version)",
                self.cfg.bucket, shard.result_key
            ));
        }
        Ok(result)
    }

    /// Writes a shard's results into the bot's cache, so this run's report and any
    /// later run (local or CodeBuild) reuse them. Only results the shard's own units
    /// ask for are kept: the units run over the returned entries (and the cache), and
    /// an entry no request of theirs takes (another key, kind, endpoint or repository)
    /// is dropped, so even a build that holds the key cannot write elsewhere.
    async fn merge(
        &self,
        result: ShardResult,
        shard: &Shard,
        namespace: Option<String>,
        merged: &mut Merged,
    ) -> Result<(), String> {
        let returned = result.entries.len();
        let offered: Vec<(String, &'static str, serde_json::Value)> = result
            .entries
            .into_iter()
            .filter_map(|e: CacheEntry| Some((e.key.clone(), e.store_kind()?, e.value)))
            .collect();
        let probe = self.cache_only_client(namespace).with_offered(offered);
        let keys: Vec<String> = shard
            .units
            .iter()
            .flat_map(|u| u.primary_keys().into_iter().map(|(k, _)| k))
            .collect();
        probe.prefetch(&keys).await;
        futures::future::join_all(shard.units.iter().map(|u| u.run(&probe))).await;
        let entries = probe.take_accepted();
        let ignored = returned - entries.len();
        if ignored > 0 {
            tracing::warn!(
                shard = shard.index,
                ignored,
                "a shard result held entries its plan did not ask for; not stored"
            );
            merged.ignored.push(format!(
                "shard {}: {ignored} of {returned}",
                shard.index + 1
            ));
        }
        for chunk in entries.chunks(500) {
            self.store.put_many(chunk).await.map_err(|e| {
                format!("writing shard {} results to the cache: {e:#}", result.shard)
            })?;
        }
        merged.keys.extend(entries.into_iter().map(|(k, _, _)| k));
        merged.usage.add(&result.usage);
        merged.unit_errors += result.errors.len();
        Ok(())
    }

    /// Writes the plans, starts the builds, waits for them and merges their results.
    async fn fan_out(
        &self,
        req: &RunRequest<'_>,
        units: Vec<WorkUnit>,
        cancel: &mut watch::Receiver<bool>,
        merged: &mut Merged,
    ) -> Result<(), String> {
        let run_key = format!("{}-{:08x}", safe_id(&req.run_id), rand::random::<u32>());
        let run = RunKey {
            id: run_key.clone(),
            shard_key: self
                .cfg
                .fixed_shard_key
                .clone()
                .unwrap_or_else(ShardKey::random),
        };
        let keys: Vec<String> = units
            .iter()
            .flat_map(|u| u.primary_keys().into_iter().map(|(k, _)| k))
            .collect();
        let cached = self
            .store
            .get_many(&keys)
            .await
            .map_err(|e| format!("reading the result cache: {e:#}"))?;
        let groups = self.cfg.sizing.split(units);
        let total = groups.len();
        let mut shards = Vec::with_capacity(total);
        for (index, units) in groups.into_iter().enumerate() {
            let seed = units
                .iter()
                .flat_map(WorkUnit::primary_keys)
                .filter_map(|(key, kind)| {
                    let value = cached.get(&key)?.clone();
                    Some(CacheEntry {
                        key,
                        kind: kind.to_string(),
                        value,
                    })
                })
                .collect();
            let plan = ShardPlan {
                version: FORMAT_VERSION,
                run_id: run_key.clone(),
                shard: index,
                head_sha: req.head_sha.clone(),
                max_in_flight: self.cfg.max_in_flight,
                namespace: req.opts.namespace.clone(),
                seed,
                units: units.clone(),
            };
            let bytes = serde_json::to_vec(&plan)
                .map_err(|e| format!("encoding shard plan {index}: {e}"))?;
            let shard = Shard {
                index,
                plan_key: self.cfg.key(&run_key, index, "plan.json"),
                result_key: self.cfg.key(&run_key, index, "result.json"),
                digest: worker::plan_digest(&bytes),
                build_id: None,
                attempts: 0,
                done: false,
                units,
            };
            worker::s3_put(&self.s3, &self.cfg.bucket, &shard.plan_key, bytes)
                .await
                .map_err(|e| format!("{e:#}"))?;
            shards.push(shard);
        }
        merged.shards = total;

        let stopper = StopOnDrop {
            codebuild: self.codebuild.clone(),
            tracked: Arc::default(),
        };
        let result = self
            .watch(req, &run, &mut shards, cancel, merged, &stopper)
            .await;
        if result.is_err() {
            stopper.stop_all().await;
        }
        merged.builds = shards.iter().filter_map(|s| s.build_id.clone()).collect();
        result
    }

    async fn watch(
        &self,
        req: &RunRequest<'_>,
        run: &RunKey,
        shards: &mut [Shard],
        cancel: &mut watch::Receiver<bool>,
        merged: &mut Merged,
        stopper: &StopOnDrop,
    ) -> Result<(), String> {
        let total = shards.len();
        for shard in shards.iter_mut() {
            let id = self.start_build(run, shard, stopper).await?;
            shard.attempts = 1;
            shard.build_id = Some(id);
        }
        let deadline = Instant::now() + self.cfg.deadline;
        let mut delay = self.cfg.poll_initial;
        while shards.iter().any(|s| !s.done) {
            let wait = delay.min(deadline.saturating_duration_since(Instant::now()));
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = cancelled(cancel) => {
                    return Err(format!(
                        "run {} was cancelled; its CodeBuild builds were stopped",
                        req.run_id
                    ));
                }
            }
            if Instant::now() >= deadline {
                let open: Vec<String> = shards
                    .iter()
                    .filter(|s| !s.done)
                    .filter_map(|s| s.build_id.clone())
                    .collect();
                return Err(format!(
                    "the CodeBuild run did not finish within PROMPTGATE_CODEBUILD_DEADLINE_SECS ({} s); stopped builds: {}",
                    self.cfg.deadline.as_secs(),
                    open.join(", ")
                ));
            }
            delay = (delay * 2).min(self.cfg.poll_max);
            let ids: Vec<String> = shards
                .iter()
                .filter(|s| !s.done)
                .filter_map(|s| s.build_id.clone())
                .collect();
            let builds = match self
                .codebuild
                .batch_get_builds()
                .set_ids(Some(ids.clone()))
                .send()
                .await
            {
                Ok(out) => out,
                Err(e) if transient(&e) => {
                    tracing::warn!(error = %DisplayErrorContext(&e), "BatchGetBuilds failed; polling again");
                    continue;
                }
                Err(e) => {
                    return Err(format!(
                        "BatchGetBuilds on project `{}` failed: {}",
                        self.cfg.project,
                        DisplayErrorContext(e)
                    ))
                }
            };
            let mut status: HashMap<String, (StatusType, String)> = builds
                .builds()
                .iter()
                .filter_map(|b| {
                    Some((
                        b.id()?.to_string(),
                        (
                            b.build_status()?.clone(),
                            b.current_phase().unwrap_or_default().to_string(),
                        ),
                    ))
                })
                .collect();
            for id in builds.builds_not_found() {
                status.insert(id.clone(), (StatusType::Fault, "NOT_FOUND".to_string()));
            }
            for shard in shards.iter_mut().filter(|s| !s.done) {
                let Some(id) = shard.build_id.clone() else {
                    continue;
                };
                let Some((state, phase)) = status.get(&id) else {
                    continue;
                };
                let failure = match state {
                    StatusType::InProgress => continue,
                    StatusType::Succeeded => match self.read_result(shard, &run.shard_key).await {
                        Ok(result) => {
                            stopper.remove(&id);
                            shard.done = true;
                            self.merge(result, shard, req.opts.namespace.clone(), merged)
                                .await?;
                            continue;
                        }
                        Err(e) => format!("succeeded without a readable result ({e})"),
                    },
                    other => format!("ended {} (phase {phase})", other.as_str()),
                };
                stopper.remove(&id);
                let link = console_link(&self.region(), &id);
                if shard.attempts >= MAX_ATTEMPTS {
                    return Err(format!(
                        "CodeBuild shard {} of {total} failed twice: build `{id}` {failure}. Logs: {link}",
                        shard.index + 1
                    ));
                }
                tracing::warn!(build = %id, shard = shard.index, %failure, logs = %link, "retrying a failed CodeBuild shard once");
                merged.retried.push(format!("`{id}` {failure}"));
                let new_id = self.start_build(run, shard, stopper).await?;
                shard.attempts += 1;
                shard.build_id = Some(new_id);
            }
        }
        Ok(())
    }
}

/// A run's name in S3 keys and idempotency tokens, and the key its results are
/// signed with.
struct RunKey {
    id: String,
    shard_key: ShardKey,
}

/// One shard's state while the builds run.
struct Shard {
    index: usize,
    plan_key: String,
    result_key: String,
    digest: String,
    build_id: Option<String>,
    attempts: u32,
    done: bool,
    /// The plan's units, to tell which returned results they ask for.
    units: Vec<WorkUnit>,
}

/// What the merged shard results add to the report.
#[derive(Default)]
struct Merged {
    shards: usize,
    keys: Vec<String>,
    usage: ShardUsage,
    unit_errors: usize,
    builds: Vec<String>,
    retried: Vec<String>,
    /// Per shard, returned results that were not stored.
    ignored: Vec<String>,
}

/// Stops the builds still running when dropped (the bot aborted the run's task) or
/// when told to (error, deadline, cancel).
struct StopOnDrop {
    codebuild: aws_sdk_codebuild::Client,
    tracked: Arc<Mutex<Tracked>>,
}

/// The builds a run has running, shared with its in-flight start requests.
#[derive(Default)]
struct Tracked {
    running: HashSet<String>,
    /// The run is over: a build that starts now is stopped by whoever started it.
    closed: bool,
}

impl Tracked {
    /// Records a started build; false when the run is already over.
    fn add(tracked: &Mutex<Tracked>, id: &str) -> bool {
        match tracked.lock() {
            Ok(mut t) if !t.closed => {
                t.running.insert(id.to_string());
                true
            }
            _ => false,
        }
    }
}

impl StopOnDrop {
    fn remove(&self, id: &str) {
        if let Ok(mut t) = self.tracked.lock() {
            t.running.remove(id);
        }
    }

    /// The running builds, taken; from now on a build that starts stops itself.
    fn take(&self) -> Vec<String> {
        self.tracked
            .lock()
            .map(|mut t| {
                t.closed = true;
                t.running.drain().collect()
            })
            .unwrap_or_default()
    }

    async fn stop_all(&self) {
        stop_builds(&self.codebuild, self.take()).await;
    }
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let ids = self.take();
        if ids.is_empty() {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                let client = self.codebuild.clone();
                rt.spawn(async move { stop_builds(&client, ids).await });
            }
            Err(_) => {
                tracing::error!(builds = ?ids, "no async runtime to stop CodeBuild builds; stop them by hand")
            }
        }
    }
}

async fn stop_builds(client: &aws_sdk_codebuild::Client, ids: Vec<String>) {
    for id in ids {
        match client.stop_build().id(&id).send().await {
            Ok(_) => tracing::info!(build = %id, "stopped CodeBuild build"),
            Err(e) => {
                tracing::warn!(build = %id, error = %DisplayErrorContext(&e), "cannot stop CodeBuild build")
            }
        }
    }
}

/// Throttling and transport problems are worth another poll; anything else (access
/// denied, a missing project) is not.
fn transient<E: ProvideErrorMetadata, R>(e: &aws_sdk_codebuild::error::SdkError<E, R>) -> bool {
    use aws_sdk_codebuild::error::SdkError;
    match e {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(_) => e
            .code()
            .is_some_and(|c| c.contains("Throttl") || c.contains("TooManyRequests")),
        _ => false,
    }
}

/// A run id as it may appear in an S3 key and an idempotency token.
fn safe_id(id: &str) -> String {
    let s: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    if s.is_empty() {
        "run".to_string()
    } else {
        s
    }
}

#[async_trait]
impl Executor for CodeBuildExecutor {
    fn name(&self) -> &'static str {
        "codebuild"
    }

    async fn run(&self, req: RunRequest<'_>) -> Report {
        let started = Instant::now();
        let (_guard, mut cancel) = self.runs.start(&req.run_id);
        let mut plan = check::plan(req.source, req.revs, req.opts).await;
        // The estimate and the budget come before any build is started.
        let preflight_client = self.cache_only_client(req.opts.namespace.clone());
        if let Some(report) = plan.preflight(&preflight_client).await {
            return report;
        }
        let units = plan.work();
        let planned = units.len();
        let missing = self.missing(units, req.opts.namespace.clone()).await;
        let mut merged = Merged::default();
        let mut notes = Vec::new();
        if !missing.is_empty() {
            let count = missing.len();
            let outcome = self.fan_out(&req, missing, &mut cancel, &mut merged).await;
            if let Err(e) = outcome {
                // Shards that finished are merged already: a re-run reuses them.
                let mut report = error_report(plan.report().clone(), e);
                report.duration_ms = started.elapsed().as_millis() as u64;
                return report;
            }
            notes.push(format!(
                "Evaluated on AWS CodeBuild (project `{}`): {count} of {planned} work units in {} shard(s); builds: {}.",
                self.cfg.project,
                merged.shards,
                merged.builds.join(", ")
            ));
            if !merged.ignored.is_empty() {
                notes.push(format!(
                    "Not stored: shard results the plan did not ask for ({}). Something \
                     other than promptgate's worker wrote them; see the bot's log.",
                    merged.ignored.join("; ")
                ));
            }
            if !merged.retried.is_empty() {
                notes.push(format!(
                    "Retried once after a failed build: {}.",
                    merged.retried.join("; ")
                ));
            }
        }
        let client = self.cache_only_client(req.opts.namespace.clone());
        client.count_as_fetched(std::mem::take(&mut merged.keys));
        let mut report = check::execute(plan, &client).await;
        let u = &merged.usage;
        report.usage.model_calls += u.chat_calls;
        report.usage.embedding_calls += u.embed_calls;
        report.usage.cache_hits += u.cache_hits;
        report.usage.input_tokens += u.input_tokens;
        report.usage.output_tokens += u.output_tokens;
        report.notes.extend(notes);
        report
    }

    async fn cancel(&self, run_id: &str) -> bool {
        self.runs.cancel(run_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buildspec_runs_only_the_worker() {
        assert!(BUILDSPEC.contains("promptgate worker"));
        assert!(BUILDSPEC.contains(ENV_PLAN) && BUILDSPEC.contains(ENV_RESULT));
        let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(BUILDSPEC).unwrap();
        assert_eq!(doc["version"], serde_yaml_ng::Value::from(0.2));
    }

    #[test]
    fn keys_and_links() {
        let mut cfg = CodeBuildConfig::new("p", "b");
        assert_eq!(
            cfg.key("7-ab", 2, "plan.json"),
            "promptgate/runs/7-ab/shard-2/plan.json"
        );
        cfg.prefix = String::new();
        assert_eq!(
            cfg.key("7-ab", 0, "result.json"),
            "runs/7-ab/shard-0/result.json"
        );
        assert_eq!(
            console_link("eu-west-1", "pg-eval:1234-abcd"),
            "https://eu-west-1.console.aws.amazon.com/codesuite/codebuild/projects/pg-eval/build/pg-eval%3A1234-abcd/log?region=eu-west-1"
        );
        assert_eq!(safe_id("acme/prompts#12 @ab"), "acme-prompts-12--ab");
        assert_eq!(safe_id(""), "run");
    }
}
