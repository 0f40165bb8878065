//! `promptgate worker`: what runs inside a CodeBuild build. It reads its shard plan,
//! runs every unit through the same evaluation code as `check` (with a private,
//! in-memory result cache seeded from the plan), and writes the shard result: every
//! result it fetched, by content key, plus usage counters and unit errors.
//!
//! The plan is self-contained (rendered requests, model specs, case data), so the
//! worker never reads the checked-out repository: the PR's files are data, never code
//! or configuration, inside a build that holds the build role's permissions.

use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::check::WorkUnit;
use crate::execute::{ClientOptions, ModelClient};
use crate::store::{Store, KIND_CHAT, KIND_EMBEDDING, KIND_GUARDRAIL};

/// Version of the plan and result documents; a worker refuses another.
pub const FORMAT_VERSION: u32 = 1;

/// One shard's work, as the bot writes it to `…/shard-<i>/plan.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ShardPlan {
    pub version: u32,
    pub run_id: String,
    pub shard: usize,
    pub head_sha: String,
    /// Model requests in flight in the build.
    pub max_in_flight: usize,
    /// The bot's cache namespace (the repository), so the results the build stamps
    /// and the seed it reads belong to the same one.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Results the bot already holds that these units start from (cached
    /// generations whose judge or embedding is missing): reused, not fetched again.
    #[serde(default)]
    pub seed: Vec<CacheEntry>,
    pub units: Vec<WorkUnit>,
}

/// One result-cache entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CacheEntry {
    pub key: String,
    pub kind: String,
    pub value: Value,
}

impl CacheEntry {
    /// The store's kind constant for this entry, `None` for a kind this version does
    /// not know (such an entry is not written to the cache).
    pub fn store_kind(&self) -> Option<&'static str> {
        [KIND_CHAT, KIND_EMBEDDING, KIND_GUARDRAIL]
            .into_iter()
            .find(|k| *k == self.kind)
    }
}

/// What a shard sends back, as `…/shard-<i>/result.json`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ShardResult {
    pub version: u32,
    pub run_id: String,
    pub shard: usize,
    /// SHA-256 of the plan document this result answers, so a stale result from an
    /// earlier attempt is never merged.
    pub plan_sha256: String,
    pub entries: Vec<CacheEntry>,
    pub usage: ShardUsage,
    /// Unit errors (a model that kept failing, an unparseable judge answer). The
    /// report shows them again when it is computed, so they are for logs.
    pub errors: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardUsage {
    pub chat_calls: u64,
    pub embed_calls: u64,
    pub guardrail_calls: u64,
    pub cache_hits: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub retries: u64,
}

impl ShardUsage {
    pub fn add(&mut self, o: &ShardUsage) {
        self.chat_calls += o.chat_calls;
        self.embed_calls += o.embed_calls;
        self.guardrail_calls += o.guardrail_calls;
        self.cache_hits += o.cache_hits;
        self.input_tokens += o.input_tokens;
        self.output_tokens += o.output_tokens;
        self.retries += o.retries;
    }
}

/// The environment variable that hands a build its run's shard key (hex). The key
/// travels only in the StartBuild environment override, never in S3.
pub const ENV_SHARD_KEY: &str = "PROMPTGATE_SHARD_KEY";

/// Authenticates shard results: the worker signs the exact bytes of its result with
/// HMAC-SHA256 under this key and writes the signature next to it (`<result>.sig`);
/// the bot checks it over the raw bytes before parsing. Someone who can write to the
/// bucket but does not hold the run's key cannot change a verdict.
#[derive(Clone)]
pub struct ShardKey([u8; 32]);

impl std::fmt::Debug for ShardKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ShardKey(<redacted>)")
    }
}

impl ShardKey {
    /// A fresh key: the bot draws one per run.
    pub fn random() -> Self {
        Self(rand::random())
    }

    pub fn from_hex(s: &str) -> anyhow::Result<Self> {
        let bytes = hex::decode(s.trim())
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| anyhow!("{ENV_SHARD_KEY} is not 64 hex digits"))?;
        Ok(Self(bytes))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The hex signature of a result document's bytes.
    pub fn sign(&self, bytes: &[u8]) -> String {
        hex::encode(crate::webhook::verify::hmac_sha256(&self.0, bytes))
    }

    /// Whether `signature` (hex, as [`ShardKey::sign`] writes it) signs `bytes`; in
    /// constant time.
    pub fn verify(&self, bytes: &[u8], signature: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        let Ok(given) = hex::decode(signature.trim_ascii()) else {
            return false;
        };
        let want = crate::webhook::verify::hmac_sha256(&self.0, bytes);
        !want.is_empty() && bool::from(want.ct_eq(&given))
    }
}

/// Where the signature of the result document at `result` is written.
pub fn signature_location(result: &str) -> String {
    format!("{result}.sig")
}

/// Hex SHA-256 of a plan document's bytes.
pub fn plan_digest(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

/// Runs a shard plan. `opts` gives the client's timeouts and retries (its
/// `max_in_flight` is replaced by the plan's); the cache is private and in memory.
pub async fn run_plan(
    plan: &ShardPlan,
    plan_sha256: &str,
    opts: ClientOptions,
) -> anyhow::Result<ShardResult> {
    if plan.version != FORMAT_VERSION {
        bail!(
            "shard plan version {} is not supported by this worker (expected {FORMAT_VERSION}); \
             rebuild the CodeBuild image from the bot's version",
            plan.version
        );
    }
    // Recordings are the bot's to replay (from the base revision); a plan that asks a
    // build to answer from files would let whoever wrote them choose the answers.
    if let Some(label) = plan.units.iter().find_map(|u| {
        u.models()
            .iter()
            .any(|m| m.provider == crate::config::ProviderKind::Replay)
            .then(|| u.label())
    }) {
        bail!(
            "shard plan unit {label} names `provider: replay`; a CodeBuild worker calls live \
             models only (replay runs in the bot)"
        );
    }
    let store = Store::open_url("sqlite::memory:")
        .await
        .context("opening the worker's in-memory cache")?;
    let seed: Vec<(String, &'static str, Value)> = plan
        .seed
        .iter()
        .filter_map(|e| Some((e.key.clone(), e.store_kind()?, e.value.clone())))
        .collect();
    if !seed.is_empty() {
        store.put_many(&seed).await.context("seeding the cache")?;
    }
    let max = plan.max_in_flight.max(1);
    let client = ModelClient::new(
        store,
        ClientOptions {
            max_in_flight: max,
            namespace: plan.namespace.clone(),
            ..opts
        },
    )
    .with_fetch_log();
    // The client's limit bounds the calls in flight; every unit waits on it.
    let outcomes = futures::future::join_all(
        plan.units
            .iter()
            .map(|u| async { (u.label(), u.run(&client).await) }),
    )
    .await;
    let errors = outcomes
        .into_iter()
        .flat_map(|(label, o)| o.errors.into_iter().map(move |e| format!("{label}: {e}")))
        .collect();
    let u = client.usage();
    Ok(ShardResult {
        version: FORMAT_VERSION,
        run_id: plan.run_id.clone(),
        shard: plan.shard,
        plan_sha256: plan_sha256.to_string(),
        entries: client
            .take_fetched()
            .into_iter()
            .map(|(key, kind, value)| CacheEntry {
                key,
                kind: kind.to_string(),
                value,
            })
            .collect(),
        usage: ShardUsage {
            chat_calls: u.chat_calls,
            embed_calls: u.embed_calls,
            guardrail_calls: u.guardrail_calls,
            cache_hits: u.cache_hits,
            input_tokens: u.input_tokens,
            output_tokens: u.output_tokens,
            retries: u.retries,
        },
        errors,
    })
}

/// Where a document lives: `s3://bucket/key`, or a local file (for a dry run).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    S3 { bucket: String, key: String },
    File(std::path::PathBuf),
}

impl Location {
    pub fn parse(s: &str) -> anyhow::Result<Self> {
        match s.strip_prefix("s3://") {
            Some(rest) => match rest.split_once('/') {
                Some((bucket, key)) if !bucket.is_empty() && !key.is_empty() => Ok(Self::S3 {
                    bucket: bucket.to_string(),
                    key: key.to_string(),
                }),
                _ => Err(anyhow!("{s}: expected s3://BUCKET/KEY")),
            },
            None if s.is_empty() => Err(anyhow!("empty location")),
            None => Ok(Self::File(s.into())),
        }
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::S3 { bucket, key } => write!(f, "s3://{bucket}/{key}"),
            Location::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// Reads an S3 object's bytes.
pub async fn s3_get(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> anyhow::Result<Vec<u8>> {
    let out = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| {
            anyhow!(
                "{}",
                aws_smithy_types::error::display::DisplayErrorContext(e)
            )
        })
        .with_context(|| format!("reading s3://{bucket}/{key}"))?;
    let body = out
        .body
        .collect()
        .await
        .with_context(|| format!("reading s3://{bucket}/{key}"))?;
    Ok(body.into_bytes().to_vec())
}

/// Writes an S3 object (JSON).
pub async fn s3_put(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    bytes: Vec<u8>,
) -> anyhow::Result<()> {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .content_type("application/json")
        .body(bytes.into())
        .send()
        .await
        .map_err(|e| {
            anyhow!(
                "{}",
                aws_smithy_types::error::display::DisplayErrorContext(e)
            )
        })
        .with_context(|| format!("writing s3://{bucket}/{key}"))?;
    Ok(())
}

async fn read(loc: &Location, s3: Option<&aws_sdk_s3::Client>) -> anyhow::Result<Vec<u8>> {
    match (loc, s3) {
        (Location::S3 { bucket, key }, Some(s3)) => s3_get(s3, bucket, key).await,
        (Location::File(p), _) => {
            std::fs::read(p).with_context(|| format!("reading {}", p.display()))
        }
        (Location::S3 { .. }, None) => Err(anyhow!("{loc}: no S3 client")),
    }
}

async fn write(
    loc: &Location,
    s3: Option<&aws_sdk_s3::Client>,
    bytes: Vec<u8>,
) -> anyhow::Result<()> {
    match (loc, s3) {
        (Location::S3 { bucket, key }, Some(s3)) => s3_put(s3, bucket, key, bytes).await,
        (Location::File(p), _) => {
            std::fs::write(p, bytes).with_context(|| format!("writing {}", p.display()))
        }
        (Location::S3 { .. }, None) => Err(anyhow!("{loc}: no S3 client")),
    }
}

/// The subcommand: plan in, result out (and, with a key, its signature next to it). An
/// error here (plan unreadable, result unwritable) fails the build, so the bot retries
/// the shard; unit errors do not.
pub async fn run_cli(
    plan: &str,
    out: &str,
    opts: ClientOptions,
    key: Option<&ShardKey>,
) -> anyhow::Result<ShardResult> {
    let (plan_loc, out_loc) = (Location::parse(plan)?, Location::parse(out)?);
    let s3 = if matches!(plan_loc, Location::S3 { .. }) || matches!(out_loc, Location::S3 { .. }) {
        Some(super::codebuild::s3_client(
            &super::codebuild::load_aws_config().await,
        ))
    } else {
        None
    };
    let bytes = read(&plan_loc, s3.as_ref()).await?;
    let shard: ShardPlan = serde_json::from_slice(&bytes)
        .with_context(|| format!("{plan_loc}: not a promptgate shard plan"))?;
    tracing::info!(
        run = %shard.run_id,
        shard = shard.shard,
        units = shard.units.len(),
        "running shard"
    );
    let result = run_plan(&shard, &plan_digest(&bytes), opts).await?;
    let body = serde_json::to_vec(&result).context("encoding the shard result")?;
    let signature = key.map(|k| k.sign(&body));
    write(&out_loc, s3.as_ref(), body).await?;
    if let Some(signature) = signature {
        let sig_loc = Location::parse(&signature_location(out))?;
        write(&sig_loc, s3.as_ref(), signature.into_bytes()).await?;
    }
    Ok(result)
}

/// Client options for the worker: the defaults, with a longer per-call timeout
/// because a build has no one waiting on a terminal.
pub fn worker_client_options() -> ClientOptions {
    ClientOptions {
        timeout: Duration::from_secs(120),
        ..ClientOptions::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_keys_sign_the_exact_bytes() {
        let key = ShardKey::random();
        let sig = key.sign(b"{\"entries\":[]}");
        assert!(key.verify(b"{\"entries\":[]}", sig.as_bytes()));
        assert!(!key.verify(b"{\"entries\":[1]}", sig.as_bytes()));
        assert!(!ShardKey::random().verify(b"{\"entries\":[]}", sig.as_bytes()));
        assert!(!key.verify(b"{\"entries\":[]}", b"not hex"));
        let again = ShardKey::from_hex(&key.to_hex()).unwrap();
        assert!(again.verify(b"{\"entries\":[]}", sig.as_bytes()));
        // The signature is HMAC-SHA256 under the 32-byte key itself.
        use hmac::Mac;
        let mut reference = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key.0).unwrap();
        reference.update(b"x");
        assert_eq!(
            key.sign(b"x"),
            hex::encode(reference.finalize().into_bytes())
        );
        assert!(ShardKey::from_hex("abcd").is_err());
        assert_eq!(
            signature_location("s3://b/k/result.json"),
            "s3://b/k/result.json.sig"
        );
    }

    #[test]
    fn locations() {
        assert_eq!(
            Location::parse("s3://b/p/runs/1/shard-0/plan.json").unwrap(),
            Location::S3 {
                bucket: "b".into(),
                key: "p/runs/1/shard-0/plan.json".into()
            }
        );
        assert!(Location::parse("s3://bucket-only").is_err());
        assert!(Location::parse("s3:///key").is_err());
        assert_eq!(
            Location::parse("/tmp/plan.json").unwrap(),
            Location::File("/tmp/plan.json".into())
        );
    }

    #[test]
    fn unknown_kinds_are_not_cached() {
        let e = |kind: &str| CacheEntry {
            key: "k".into(),
            kind: kind.into(),
            value: Value::Null,
        };
        assert_eq!(e("chat").store_kind(), Some(KIND_CHAT));
        assert_eq!(e("embedding").store_kind(), Some(KIND_EMBEDDING));
        assert_eq!(e("nonsense").store_kind(), None);
    }
}
