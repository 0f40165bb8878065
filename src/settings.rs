//! Server configuration (SPEC §9): `PROMPTGATE_*` environment variables, optionally
//! under a TOML file (`--config FILE`) whose keys are the same names in lower case
//! without the prefix. The environment wins over the file.
//!
//! Credentials are held in [`Secret`], whose `Debug` never shows the value, so a
//! `Settings` can be logged as a whole.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;

use anyhow::{anyhow, bail, Context};
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

/// Prefix of every environment variable.
pub const ENV_PREFIX: &str = "PROMPTGATE_";

/// Every setting, by its key (lower case, no prefix). Order is the SPEC's.
pub const KEYS: &[&str] = &[
    "listen",
    "database_url",
    "public_url",
    "github_api_url",
    "github_token",
    "github_app_id",
    "github_private_key",
    "github_webhook_secret",
    "gitlab_url",
    "gitlab_token",
    "gitlab_webhook_secret",
    "repo_allowlist",
    "model_endpoints",
    "model_keys",
    "web_secret",
    "web_users",
    "web_auth_header",
    "executor",
    "codebuild_project",
    "max_concurrency",
    "codebuild_bucket",
    "codebuild_prefix",
    "max_shards",
    "min_cases_per_shard",
    "codebuild_deadline_secs",
];

/// One row of the settings reference (README → docs/settings.md, `serve --help`).
pub struct SettingDoc {
    /// The TOML key; the environment name is [`env_name`] of it.
    pub key: &'static str,
    pub default: &'static str,
    pub meaning: &'static str,
}

/// Every setting of [`KEYS`], in the same order, with its default and meaning. A test
/// keeps the two lists equal and docs/settings.md equal to [`reference_markdown`].
pub const SETTINGS: &[SettingDoc] = &[
    SettingDoc { key: "listen", default: "127.0.0.1:8080", meaning: "HOST:PORT the service listens on (the image sets 0.0.0.0:8080)" },
    SettingDoc { key: "database_url", default: "sqlite://promptgate.db", meaning: "the store: sqlite://PATH (one replica) or postgres://USER:PASSWORD@HOST/DB (several replicas share it)" },
    SettingDoc { key: "public_url", default: "the listen address", meaning: "base URL of run-page links in statuses and comments" },
    SettingDoc { key: "github_api_url", default: "https://api.github.com", meaning: "GitHub REST root (GitHub Enterprise: https://HOST/api/v3)" },
    SettingDoc { key: "github_token", default: "unset", meaning: "a token for GitHub (or use the App settings below)" },
    SettingDoc { key: "github_app_id", default: "unset", meaning: "GitHub App id; with github_private_key, the bot acts as the App" },
    SettingDoc { key: "github_private_key", default: "unset", meaning: "the App's private key: PEM text or a path to a PEM file" },
    SettingDoc { key: "github_webhook_secret", default: "unset (GitHub not served)", meaning: "HMAC secrets of GitHub deliveries, comma-separated for rotation; at least 16 characters" },
    SettingDoc { key: "gitlab_url", default: "https://gitlab.com", meaning: "GitLab root URL" },
    SettingDoc { key: "gitlab_token", default: "unset", meaning: "a GitLab token (api scope)" },
    SettingDoc { key: "gitlab_webhook_secret", default: "unset (GitLab not served)", meaning: "accepted X-Gitlab-Token values, comma-separated; at least 16 characters" },
    SettingDoc { key: "repo_allowlist", default: "*", meaning: "globs over owner/name (GitLab: the full path); other repositories are ignored" },
    SettingDoc { key: "model_endpoints", default: "what the base branch names", meaning: "globs of model base URLs a run may call" },
    SettingDoc { key: "model_keys", default: "what the base branch names", meaning: "ENV=endpoint-glob pairs: which key may go to which endpoint" },
    SettingDoc { key: "web_secret", default: "derived from the first webhook secret", meaning: "the key run-page links are signed with" },
    SettingDoc { key: "web_users", default: "none", meaning: "user:BCRYPT-HASH, user:sha256:HEX or user:password entries that may read run pages (HTTP basic auth)" },
    SettingDoc { key: "web_auth_header", default: "unset", meaning: "header an authenticating proxy sets to the signed-in user (e.g. X-Forwarded-User)" },
    SettingDoc { key: "executor", default: "local", meaning: "where model calls run: local, or codebuild (shards on AWS CodeBuild)" },
    SettingDoc { key: "codebuild_project", default: "unset", meaning: "the CodeBuild project (executor codebuild)" },
    SettingDoc { key: "max_concurrency", default: "8", meaning: "model calls in flight per run (local executor and each shard)" },
    SettingDoc { key: "codebuild_bucket", default: "unset", meaning: "S3 bucket for shard plans and results (executor codebuild)" },
    SettingDoc { key: "codebuild_prefix", default: "promptgate", meaning: "key prefix in that bucket; runs live under PREFIX/runs/RUN-ID/" },
    SettingDoc { key: "max_shards", default: "20", meaning: "most CodeBuild builds one run starts" },
    SettingDoc { key: "min_cases_per_shard", default: "200", meaning: "fewest cases a shard is given before another build is started" },
    SettingDoc { key: "codebuild_deadline_secs", default: "3600", meaning: "a whole CodeBuild run, first StartBuild to last result; then its builds are stopped and the run is an error" },
];

/// The settings reference as a markdown table: setting, environment name, TOML name,
/// default, meaning.
pub fn reference_markdown() -> String {
    let mut out =
        String::from("| environment | TOML key | default | meaning |\n|---|---|---|---|\n");
    for s in SETTINGS {
        out.push_str(&format!(
            "| `{}` | `{}` | {} | {} |\n",
            env_name(s.key),
            s.key,
            s.default,
            s.meaning
        ));
    }
    out
}

/// The settings for `serve --help`: one line each.
pub fn reference_text() -> String {
    let mut out = String::from("Settings (environment, or the same key without the prefix in the --config TOML file; the environment wins; NAME_FILE=PATH reads NAME from a file):\n");
    for s in SETTINGS {
        out.push_str(&format!(
            "  {:<36} {} (default: {})\n",
            env_name(s.key),
            s.meaning,
            s.default
        ));
    }
    out
}

/// Defaults of the CodeBuild executor's shard sizing, from the makespan simulation in
/// `src/executor/shard.rs` (README, "CodeBuild executor").
pub const DEFAULT_MAX_SHARDS: usize = 20;
pub const DEFAULT_MIN_CASES_PER_SHARD: usize = 200;
/// A whole CodeBuild run, from the first StartBuild to the last result.
pub const DEFAULT_CODEBUILD_DEADLINE_SECS: u64 = 3600;

/// A credential. `Debug` and `Display` print `<redacted>`; read it with [`Secret::expose`].
/// The shortest webhook secret `serve` accepts. An HMAC key (or GitLab token) of a
/// few characters falls to an offline guess from a single captured delivery.
pub const MIN_WEBHOOK_SECRET_CHARS: usize = 16;

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret value. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Executor {
    Local,
    Codebuild,
}

impl Executor {
    pub fn as_str(self) -> &'static str {
        match self {
            Executor::Local => "local",
            Executor::Codebuild => "codebuild",
        }
    }
}

/// `PROMPTGATE_REPO_ALLOWLIST`: globs over `owner/name` (GitLab: the full
/// `group/subgroup/project` path), matched case-insensitively. `*` matches across `/`.
#[derive(Clone)]
pub struct RepoAllowlist {
    patterns: Vec<String>,
    set: GlobSet,
}

impl RepoAllowlist {
    pub fn new(patterns: &[String]) -> anyhow::Result<Self> {
        let mut b = GlobSetBuilder::new();
        for p in patterns {
            let glob = GlobBuilder::new(p)
                .case_insensitive(true)
                .literal_separator(false)
                .build()
                .with_context(|| format!("PROMPTGATE_REPO_ALLOWLIST: bad glob {p:?}"))?;
            b.add(glob);
        }
        let set = b
            .build()
            .context("PROMPTGATE_REPO_ALLOWLIST: cannot build the glob set")?;
        Ok(Self {
            patterns: patterns.to_vec(),
            set,
        })
    }

    /// Everything allowed (`*`).
    pub fn any() -> Self {
        Self {
            patterns: vec!["*".to_string()],
            set: GlobSet::empty(),
        }
    }

    pub fn allows(&self, full_name: &str) -> bool {
        if self.patterns.len() == 1 && self.patterns[0] == "*" {
            return true;
        }
        self.set.is_match(full_name)
    }

    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }
}

impl fmt::Debug for RepoAllowlist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.patterns).finish()
    }
}

/// The service configuration. `Debug` is safe to log: every credential is a [`Secret`]
/// and the database URL's password is masked.
#[derive(Clone)]
pub struct Settings {
    pub listen: String,
    pub database_url: String,
    pub public_url: Option<String>,
    pub github_api_url: String,
    pub github_token: Option<Secret>,
    pub github_app_id: Option<u64>,
    /// PEM text of the App's private key, or a path to a PEM file (see
    /// [`Settings::github_private_key_pem`]).
    pub github_private_key: Option<Secret>,
    /// Accepted HMAC secrets, for rotation; empty means GitHub webhooks are not served.
    pub github_webhook_secret: Vec<Secret>,
    pub gitlab_url: String,
    pub gitlab_token: Option<Secret>,
    /// Accepted `X-Gitlab-Token` values; empty means GitLab webhooks are not served.
    pub gitlab_webhook_secret: Vec<Secret>,
    pub repo_allowlist: RepoAllowlist,
    /// `PROMPTGATE_MODEL_ENDPOINTS`: globs of the model base URLs a run may call;
    /// unset, the base branch's manifests decide.
    pub model_endpoints: Option<Vec<String>>,
    /// `PROMPTGATE_MODEL_KEYS`: `ENV=endpoint-glob` pairs; unset, the base branch's
    /// manifests decide.
    pub model_keys: Option<Vec<String>>,
    /// `PROMPTGATE_WEB_SECRET`: the key run links are signed with (else derived from
    /// the first webhook secret).
    pub web_secret: Option<Secret>,
    /// `PROMPTGATE_WEB_USERS`: `user:password` or `user:sha256:<hex>` entries that may
    /// read run pages with HTTP basic auth.
    pub web_users: Vec<Secret>,
    /// `PROMPTGATE_WEB_AUTH_HEADER`: the header an authenticating proxy in front of the
    /// bot sets to the signed-in user (e.g. `X-Forwarded-User`).
    pub web_auth_header: Option<String>,
    pub executor: Executor,
    pub codebuild_project: Option<String>,
    pub max_concurrency: usize,
    /// S3 bucket for shard plans and results (CodeBuild executor).
    pub codebuild_bucket: Option<String>,
    /// Key prefix in that bucket; runs live under `<prefix>/runs/<run-id>/`.
    pub codebuild_prefix: String,
    pub max_shards: usize,
    pub min_cases_per_shard: usize,
    pub codebuild_deadline_secs: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".to_string(),
            database_url: "sqlite://promptgate.db".to_string(),
            public_url: None,
            github_api_url: "https://api.github.com".to_string(),
            github_token: None,
            github_app_id: None,
            github_private_key: None,
            github_webhook_secret: Vec::new(),
            gitlab_url: "https://gitlab.com".to_string(),
            gitlab_token: None,
            gitlab_webhook_secret: Vec::new(),
            repo_allowlist: RepoAllowlist::any(),
            model_endpoints: None,
            model_keys: None,
            web_secret: None,
            web_users: Vec::new(),
            web_auth_header: None,
            executor: Executor::Local,
            codebuild_project: None,
            max_concurrency: 8,
            codebuild_bucket: None,
            codebuild_prefix: "promptgate".to_string(),
            max_shards: DEFAULT_MAX_SHARDS,
            min_cases_per_shard: DEFAULT_MIN_CASES_PER_SHARD,
            codebuild_deadline_secs: DEFAULT_CODEBUILD_DEADLINE_SECS,
        }
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("listen", &self.listen)
            .field("database_url", &redact_url(&self.database_url))
            .field("public_url", &self.public_url)
            .field("github_api_url", &self.github_api_url)
            .field("github_token", &self.github_token)
            .field("github_app_id", &self.github_app_id)
            .field("github_private_key", &self.github_private_key)
            .field("github_webhook_secret", &self.github_webhook_secret)
            .field("gitlab_url", &self.gitlab_url)
            .field("gitlab_token", &self.gitlab_token)
            .field("gitlab_webhook_secret", &self.gitlab_webhook_secret)
            .field("repo_allowlist", &self.repo_allowlist)
            .field("model_endpoints", &self.model_endpoints)
            .field("model_keys", &self.model_keys)
            .field("web_secret", &self.web_secret)
            .field("web_users", &self.web_users)
            .field("web_auth_header", &self.web_auth_header)
            .field("executor", &self.executor)
            .field("codebuild_project", &self.codebuild_project)
            .field("max_concurrency", &self.max_concurrency)
            .field("codebuild_bucket", &self.codebuild_bucket)
            .field("codebuild_prefix", &self.codebuild_prefix)
            .field("max_shards", &self.max_shards)
            .field("min_cases_per_shard", &self.min_cases_per_shard)
            .field("codebuild_deadline_secs", &self.codebuild_deadline_secs)
            .finish()
    }
}

/// A raw value and where it came from, for error messages.
struct Raw {
    value: String,
    origin: String,
}

impl Settings {
    /// Reads the optional TOML file, then the environment (through `env`, so tests need
    /// not touch the process environment). Unknown file keys, values of the wrong type
    /// and bad values are errors naming the setting. Use [`Settings::validate`] before
    /// serving.
    pub fn load(
        config_file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Self> {
        let mut raw: std::collections::BTreeMap<&'static str, Raw> = Default::default();
        if let Some(path) = config_file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the config file {}", path.display()))?;
            let table: toml::Table = text
                .parse()
                .with_context(|| format!("{}: not valid TOML", path.display()))?;
            for (key, value) in table {
                let Some(known) = KEYS.iter().find(|k| **k == key) else {
                    bail!(
                        "{}: unknown setting `{key}` (known: {})",
                        path.display(),
                        KEYS.join(", ")
                    );
                };
                let value = match value {
                    toml::Value::String(s) => s,
                    toml::Value::Integer(i) => i.to_string(),
                    toml::Value::Array(items) => {
                        let mut parts = Vec::new();
                        for item in items {
                            match item {
                                toml::Value::String(s) => parts.push(s),
                                other => bail!(
                                    "{}: `{key}` must be a string or a list of strings, not {}",
                                    path.display(),
                                    other.type_str()
                                ),
                            }
                        }
                        parts.join(",")
                    }
                    other => bail!(
                        "{}: `{key}` must be a string, not {}",
                        path.display(),
                        other.type_str()
                    ),
                };
                raw.insert(
                    known,
                    Raw {
                        value,
                        origin: format!("`{key}` in {}", path.display()),
                    },
                );
            }
        }
        for key in KEYS {
            let var = env_name(key);
            let direct = env(&var).filter(|v| !v.trim().is_empty());
            // An empty variable counts as unset, like most twelve-factor services.
            let file_var = format!("{var}{FILE_SUFFIX}");
            let from_file = env(&file_var).filter(|v| !v.trim().is_empty());
            match (direct, from_file) {
                (Some(_), Some(_)) => bail!(
                    "{var} and {file_var} are both set; keep one (the file is for secrets \
                     mounted by Docker or Kubernetes)"
                ),
                (Some(value), None) => {
                    raw.insert(key, Raw { value, origin: var });
                }
                (None, Some(path)) => {
                    let path = path.trim();
                    let value = std::fs::read_to_string(path)
                        .with_context(|| format!("{file_var}: reading {path}"))?;
                    if value.trim().is_empty() {
                        bail!("{file_var}: {path} is empty");
                    }
                    raw.insert(
                        key,
                        Raw {
                            value,
                            origin: format!("{file_var} ({path})"),
                        },
                    );
                }
                (None, None) => {}
            }
        }

        let mut s = Settings::default();
        let take = |raw: &mut std::collections::BTreeMap<&'static str, Raw>, key: &str| {
            raw.remove(key).map(|r| Raw {
                value: r.value.trim().to_string(),
                origin: r.origin,
            })
        };
        if let Some(r) = take(&mut raw, "listen") {
            s.listen = r.value;
        }
        if let Some(r) = take(&mut raw, "database_url") {
            s.database_url = r.value;
        }
        if let Some(r) = take(&mut raw, "public_url") {
            s.public_url = Some(r.value.trim_end_matches('/').to_string());
        }
        if let Some(r) = take(&mut raw, "github_api_url") {
            s.github_api_url = r.value.trim_end_matches('/').to_string();
        }
        s.github_token = take(&mut raw, "github_token").map(|r| Secret(r.value));
        if let Some(r) = take(&mut raw, "github_app_id") {
            s.github_app_id = Some(
                r.value
                    .parse()
                    .map_err(|_| anyhow!("{}: not a GitHub App id: {:?}", r.origin, r.value))?,
            );
        }
        // Keep the PEM's newlines: no trimming beyond what `take` did at the ends.
        s.github_private_key = take(&mut raw, "github_private_key").map(|r| Secret(r.value));
        s.github_webhook_secret = take(&mut raw, "github_webhook_secret")
            .map(|r| split_list(&r.value).into_iter().map(Secret).collect())
            .unwrap_or_default();
        if let Some(r) = take(&mut raw, "gitlab_url") {
            s.gitlab_url = r.value.trim_end_matches('/').to_string();
        }
        s.gitlab_token = take(&mut raw, "gitlab_token").map(|r| Secret(r.value));
        s.gitlab_webhook_secret = take(&mut raw, "gitlab_webhook_secret")
            .map(|r| split_list(&r.value).into_iter().map(Secret).collect())
            .unwrap_or_default();
        if let Some(r) = take(&mut raw, "repo_allowlist") {
            let globs = split_list(&r.value);
            if globs.is_empty() {
                bail!(
                    "{}: empty allowlist (use `*` to serve every repository)",
                    r.origin
                );
            }
            s.repo_allowlist =
                RepoAllowlist::new(&globs).with_context(|| format!("from {}", r.origin))?;
        }
        s.model_endpoints = take(&mut raw, "model_endpoints").map(|r| split_list(&r.value));
        s.model_keys = take(&mut raw, "model_keys").map(|r| split_list(&r.value));
        s.web_secret = take(&mut raw, "web_secret").map(|r| Secret(r.value));
        s.web_users = take(&mut raw, "web_users")
            .map(|r| split_list(&r.value).into_iter().map(Secret).collect())
            .unwrap_or_default();
        s.web_auth_header = take(&mut raw, "web_auth_header")
            .map(|r| r.value.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty());
        if let Some(r) = take(&mut raw, "executor") {
            s.executor = match r.value.to_ascii_lowercase().as_str() {
                "local" => Executor::Local,
                "codebuild" => Executor::Codebuild,
                _ => bail!(
                    "{}: unknown executor {:?} (expected `local` or `codebuild`)",
                    r.origin,
                    r.value
                ),
            };
        }
        s.codebuild_project = take(&mut raw, "codebuild_project").map(|r| r.value);
        if let Some(r) = take(&mut raw, "max_concurrency") {
            s.max_concurrency = positive(&r)?;
        }
        s.codebuild_bucket = take(&mut raw, "codebuild_bucket").map(|r| r.value);
        if let Some(r) = take(&mut raw, "codebuild_prefix") {
            s.codebuild_prefix = r.value.trim_matches('/').to_string();
        }
        if let Some(r) = take(&mut raw, "max_shards") {
            s.max_shards = positive(&r)?;
        }
        if let Some(r) = take(&mut raw, "min_cases_per_shard") {
            s.min_cases_per_shard = positive(&r)?;
        }
        if let Some(r) = take(&mut raw, "codebuild_deadline_secs") {
            s.codebuild_deadline_secs = positive(&r)? as u64;
        }
        Ok(s)
    }

    /// Reads the real process environment (plus the optional file).
    pub fn from_env(config_file: Option<&Path>) -> anyhow::Result<Self> {
        Self::load(config_file, |k| std::env::var(k).ok())
    }

    /// Checks what `load` cannot check alone: a configured forge has its webhook secret,
    /// at least one forge is configured, the addresses parse. Reports every problem, one
    /// per line.
    pub fn validate(&self) -> anyhow::Result<()> {
        let mut problems: Vec<String> = Vec::new();
        let github = self.github_configured();
        let gitlab = self.gitlab_configured();
        if github && self.github_webhook_secret.is_empty() {
            problems.push(
                "PROMPTGATE_GITHUB_WEBHOOK_SECRET is not set: refusing to accept unsigned GitHub webhooks"
                    .to_string(),
            );
        }
        if self.github_app_id.is_some() && self.github_private_key.is_none() {
            problems.push(
                "PROMPTGATE_GITHUB_PRIVATE_KEY is not set: PROMPTGATE_GITHUB_APP_ID needs the App's private key"
                    .to_string(),
            );
        }
        if self.github_private_key.is_some() && self.github_app_id.is_none() {
            problems.push(
                "PROMPTGATE_GITHUB_APP_ID is not set: PROMPTGATE_GITHUB_PRIVATE_KEY needs the App id"
                    .to_string(),
            );
        }
        for (var, secrets) in [
            (
                "PROMPTGATE_GITHUB_WEBHOOK_SECRET",
                &self.github_webhook_secret,
            ),
            (
                "PROMPTGATE_GITLAB_WEBHOOK_SECRET",
                &self.gitlab_webhook_secret,
            ),
        ] {
            for (i, secret) in secrets.iter().enumerate() {
                let len = secret.expose().chars().count();
                if len < MIN_WEBHOOK_SECRET_CHARS {
                    problems.push(format!(
                        "{var}: secret #{} is {len} characters; at least {MIN_WEBHOOK_SECRET_CHARS} are required, since a short secret can be guessed offline from one signed delivery (generate one with `openssl rand -hex 32`)",
                        i + 1
                    ));
                }
            }
        }
        if gitlab && self.gitlab_webhook_secret.is_empty() {
            problems.push(
                "PROMPTGATE_GITLAB_WEBHOOK_SECRET is not set: refusing to accept unauthenticated GitLab webhooks"
                    .to_string(),
            );
        }
        if !github && !gitlab {
            problems.push(
                "no forge is configured: set PROMPTGATE_GITHUB_TOKEN (or PROMPTGATE_GITHUB_APP_ID \
                 and PROMPTGATE_GITHUB_PRIVATE_KEY) with PROMPTGATE_GITHUB_WEBHOOK_SECRET, and/or \
                 PROMPTGATE_GITLAB_TOKEN with PROMPTGATE_GITLAB_WEBHOOK_SECRET"
                    .to_string(),
            );
        }
        if let Err(e) = self.listen_addr() {
            problems.push(format!("{e:#}"));
        }
        let db = self.database_url.as_str();
        if !(db.starts_with("sqlite:")
            || db.starts_with("postgres://")
            || db.starts_with("postgresql://"))
        {
            problems.push(format!(
                "PROMPTGATE_DATABASE_URL: expected sqlite://PATH or postgres://…, got {:?}",
                redact_url(db)
            ));
        }
        for (var, url) in [
            ("PROMPTGATE_GITHUB_API_URL", &self.github_api_url),
            ("PROMPTGATE_GITLAB_URL", &self.gitlab_url),
        ] {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                problems.push(format!("{var}: expected an http(s) URL, got {url:?}"));
            }
        }
        if let Some(url) = &self.public_url {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                problems.push(format!(
                    "PROMPTGATE_PUBLIC_URL: expected an http(s) URL, got {url:?}"
                ));
            }
        }
        if self.executor == Executor::Codebuild && self.codebuild_project.is_none() {
            problems.push(
                "PROMPTGATE_CODEBUILD_PROJECT is not set: PROMPTGATE_EXECUTOR=codebuild needs a project"
                    .to_string(),
            );
        }
        if self.executor == Executor::Codebuild && self.codebuild_bucket.is_none() {
            problems.push(
                "PROMPTGATE_CODEBUILD_BUCKET is not set: PROMPTGATE_EXECUTOR=codebuild needs an S3 bucket for shard plans and results"
                    .to_string(),
            );
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(anyhow!(problems.join("\n")))
        }
    }

    /// GitHub is configured when a token or an App id is set.
    pub fn github_configured(&self) -> bool {
        self.github_token.is_some() || self.github_app_id.is_some()
    }

    /// GitLab is configured when a token is set.
    pub fn gitlab_configured(&self) -> bool {
        self.gitlab_token.is_some()
    }

    /// The operator's endpoint and key allowlists, for the run pipeline.
    pub fn endpoint_rules(&self) -> crate::plan::endpoints::EndpointRules {
        crate::plan::endpoints::EndpointRules {
            endpoints: self.model_endpoints.clone(),
            keys: self.model_keys.clone(),
            ..Default::default()
        }
    }

    pub fn listen_addr(&self) -> anyhow::Result<SocketAddr> {
        self.listen.parse().map_err(|_| {
            anyhow!(
                "PROMPTGATE_LISTEN: expected HOST:PORT such as 127.0.0.1:8080, got {:?}",
                self.listen
            )
        })
    }

    /// Base URL for links to `/runs/{id}`: `PROMPTGATE_PUBLIC_URL`, else the listen address.
    pub fn public_url(&self) -> String {
        match &self.public_url {
            Some(u) => u.clone(),
            None => format!("http://{}", self.listen),
        }
    }

    /// Link to the page of one run.
    pub fn run_url(&self, run_id: i64) -> String {
        format!("{}/runs/{run_id}", self.public_url())
    }

    pub fn allows_repo(&self, full_name: &str) -> bool {
        self.repo_allowlist.allows(full_name)
    }

    /// The App's private key as PEM: the setting itself when it holds PEM text, else
    /// the contents of the file it names.
    pub fn github_private_key_pem(&self) -> anyhow::Result<Option<Secret>> {
        let Some(key) = &self.github_private_key else {
            return Ok(None);
        };
        let v = key.expose();
        if v.contains("-----BEGIN") {
            return Ok(Some(key.clone()));
        }
        let text = std::fs::read_to_string(v).map_err(|e| {
            // The value is not PEM, so it is a path; still, name only the setting.
            anyhow!("PROMPTGATE_GITHUB_PRIVATE_KEY: not PEM text and not a readable file ({e})")
        })?;
        Ok(Some(Secret(text)))
    }
}

/// A positive whole number, or an error naming where the value came from.
fn positive(r: &Raw) -> anyhow::Result<usize> {
    match r.value.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => bail!(
            "{}: expected a positive whole number, got {:?}",
            r.origin,
            r.value
        ),
    }
}

/// `PROMPTGATE_X_FILE=/run/secrets/x` reads setting `x` from that file (Docker and
/// Kubernetes mount secrets as files, so they stay out of `docker inspect` and `ps e`).
pub const FILE_SUFFIX: &str = "_FILE";

/// `github_webhook_secret` → `PROMPTGATE_GITHUB_WEBHOOK_SECRET`.
pub fn env_name(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.to_ascii_uppercase())
}

/// Comma-separated entries, trimmed, empty ones dropped.
pub(crate) fn split_list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// A database URL without its password, for messages.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:<redacted>@{host}")
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn defaults() {
        let s = Settings::load(None, env(&[])).unwrap();
        assert_eq!(s.listen, "127.0.0.1:8080");
        assert_eq!(s.database_url, "sqlite://promptgate.db");
        assert_eq!(s.github_api_url, "https://api.github.com");
        assert_eq!(s.gitlab_url, "https://gitlab.com");
        assert_eq!(s.max_concurrency, 8);
        assert_eq!(s.executor, Executor::Local);
        assert_eq!(s.public_url(), "http://127.0.0.1:8080");
        assert!(s.allows_repo("anyone/anything"));
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("no forge is configured"), "{err}");
    }

    #[test]
    fn a_setting_is_read_from_its_file_variable() {
        let dir = tempfile::tempdir().unwrap();
        let hook = dir.path().join("hook");
        std::fs::write(&hook, "0123456789abcdef-from-file\n").unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "ghp_from_file\n").unwrap();
        let hook_path = hook.display().to_string();
        let token_path = token.display().to_string();
        let s = Settings::load(
            None,
            env(&[
                ("PROMPTGATE_GITHUB_WEBHOOK_SECRET_FILE", &hook_path),
                ("PROMPTGATE_GITHUB_TOKEN_FILE", &token_path),
            ]),
        )
        .unwrap();
        assert_eq!(
            s.github_webhook_secret
                .iter()
                .map(|x| x.0.as_str())
                .collect::<Vec<_>>(),
            ["0123456789abcdef-from-file"]
        );
        assert_eq!(
            s.github_token.as_ref().map(|t| t.0.as_str()),
            Some("ghp_from_file")
        );
        s.validate().unwrap();

        let both = Settings::load(
            None,
            env(&[
                ("PROMPTGATE_GITHUB_TOKEN", "t"),
                ("PROMPTGATE_GITHUB_TOKEN_FILE", &token_path),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            both.contains("PROMPTGATE_GITHUB_TOKEN and PROMPTGATE_GITHUB_TOKEN_FILE"),
            "{both}"
        );
        let missing = format!(
            "{:#}",
            Settings::load(
                None,
                env(&[("PROMPTGATE_GITLAB_TOKEN_FILE", "/nonexistent/token")]),
            )
            .unwrap_err()
        );
        assert!(
            missing.contains("PROMPTGATE_GITLAB_TOKEN_FILE: reading /nonexistent/token"),
            "{missing}"
        );
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let empty_path = empty.display().to_string();
        let err = Settings::load(None, env(&[("PROMPTGATE_WEB_SECRET_FILE", &empty_path)]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("is empty"), "{err}");
    }

    #[test]
    fn the_reference_lists_every_setting_and_docs_settings_md_is_current() {
        let documented: Vec<&str> = SETTINGS.iter().map(|s| s.key).collect();
        assert_eq!(documented, KEYS);
        let page =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/settings.md"))
                .expect("docs/settings.md");
        assert!(
            page.contains(&reference_markdown()),
            "docs/settings.md is out of date; paste this table:\n{}",
            reference_markdown()
        );
        let d = Settings::default();
        let defaults = [
            ("listen", d.listen.clone()),
            ("database_url", d.database_url.clone()),
            ("github_api_url", d.github_api_url.clone()),
            ("gitlab_url", d.gitlab_url.clone()),
            ("executor", d.executor.as_str().to_string()),
            ("max_concurrency", d.max_concurrency.to_string()),
            ("codebuild_prefix", d.codebuild_prefix.clone()),
            ("max_shards", d.max_shards.to_string()),
            ("min_cases_per_shard", d.min_cases_per_shard.to_string()),
            (
                "codebuild_deadline_secs",
                d.codebuild_deadline_secs.to_string(),
            ),
        ];
        for (key, value) in defaults {
            let doc = SETTINGS.iter().find(|s| s.key == key).unwrap();
            assert_eq!(doc.default, value, "{key}");
        }
    }

    #[test]
    fn env_overrides_file_and_lists_split() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("promptgate.toml");
        std::fs::write(
            &path,
            "github_token = \"file-token\"\ngithub_webhook_secret = \"secret-a-0123456789, secret-b-0123456789\"\nmax_concurrency = 3\n\
             repo_allowlist = [\"acme/*\", \"other/one\"]\n",
        )
        .unwrap();
        let s = Settings::load(
            Some(&path),
            env(&[("PROMPTGATE_GITHUB_TOKEN", "env-token")]),
        )
        .unwrap();
        assert_eq!(s.github_token.as_ref().unwrap().expose(), "env-token");
        let secrets: Vec<&str> = s.github_webhook_secret.iter().map(|s| s.expose()).collect();
        assert_eq!(secrets, ["secret-a-0123456789", "secret-b-0123456789"]);
        assert_eq!(s.max_concurrency, 3);
        assert!(s.allows_repo("Acme/Prompts"));
        assert!(s.allows_repo("other/one"));
        assert!(!s.allows_repo("other/two"));
        s.validate().unwrap();
    }

    #[test]
    fn unknown_key_and_bad_values_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "github_tokn = \"x\"\n").unwrap();
        let err = Settings::load(Some(&path), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("github_tokn"), "{err}");

        let err = Settings::load(None, env(&[("PROMPTGATE_EXECUTOR", "lambda")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("PROMPTGATE_EXECUTOR") && err.contains("lambda"),
            "{err}"
        );
        let err = Settings::load(None, env(&[("PROMPTGATE_MAX_CONCURRENCY", "0")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("PROMPTGATE_MAX_CONCURRENCY"), "{err}");
    }

    #[test]
    fn forge_without_secret_is_refused() {
        let s = Settings::load(None, env(&[("PROMPTGATE_GITLAB_TOKEN", "glpat-x")])).unwrap();
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("PROMPTGATE_GITLAB_WEBHOOK_SECRET"), "{err}");
        let s = Settings::load(None, env(&[("PROMPTGATE_GITHUB_APP_ID", "12")])).unwrap();
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("PROMPTGATE_GITHUB_WEBHOOK_SECRET"), "{err}");
        assert!(err.contains("PROMPTGATE_GITHUB_PRIVATE_KEY"), "{err}");
    }

    #[test]
    fn short_webhook_secrets_are_refused() {
        let s = Settings::load(
            None,
            env(&[
                ("PROMPTGATE_GITHUB_TOKEN", "t"),
                ("PROMPTGATE_GITHUB_WEBHOOK_SECRET", "0123456789abcdef,qzx5w"),
                ("PROMPTGATE_GITLAB_TOKEN", "t"),
                ("PROMPTGATE_GITLAB_WEBHOOK_SECRET", "0123456789abcde"),
            ]),
        )
        .unwrap();
        let err = s.validate().unwrap_err().to_string();
        assert!(
            err.contains("PROMPTGATE_GITHUB_WEBHOOK_SECRET: secret #2 is 5 characters"),
            "{err}"
        );
        assert!(
            err.contains("PROMPTGATE_GITLAB_WEBHOOK_SECRET: secret #1 is 15 characters"),
            "{err}"
        );
        assert!(!err.contains("qzx5w") && !err.contains("abcde\""), "{err}");
        assert!(!err.contains("GITHUB_WEBHOOK_SECRET: secret #1"), "{err}");
    }

    #[test]
    fn debug_hides_credentials() {
        let s = Settings::load(
            None,
            env(&[
                ("PROMPTGATE_GITHUB_TOKEN", "ghp_supersecret"),
                ("PROMPTGATE_GITHUB_PRIVATE_KEY", "-----BEGIN KEY-----xyz"),
                ("PROMPTGATE_GITHUB_WEBHOOK_SECRET", "hook1,hook2"),
                ("PROMPTGATE_GITLAB_TOKEN", "glpat-secret"),
                ("PROMPTGATE_GITLAB_WEBHOOK_SECRET", "gltoken"),
            ]),
        )
        .unwrap();
        let d = format!("{s:?} {s:#?}");
        for secret in [
            "ghp_supersecret",
            "BEGIN KEY",
            "hook1",
            "hook2",
            "glpat",
            "gltoken",
        ] {
            assert!(!d.contains(secret), "{secret} leaked in {d}");
        }
        assert!(d.contains("<redacted>"));
    }

    #[test]
    fn codebuild_settings() {
        let forge = [
            ("PROMPTGATE_GITHUB_TOKEN", "t"),
            ("PROMPTGATE_GITHUB_WEBHOOK_SECRET", "s-0123456789abcdef"),
            ("PROMPTGATE_EXECUTOR", "codebuild"),
        ];
        let s = Settings::load(None, env(&forge)).unwrap();
        assert_eq!(s.codebuild_prefix, "promptgate");
        assert_eq!(s.max_shards, DEFAULT_MAX_SHARDS);
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("PROMPTGATE_CODEBUILD_PROJECT"), "{err}");
        assert!(err.contains("PROMPTGATE_CODEBUILD_BUCKET"), "{err}");

        let mut all = forge.to_vec();
        all.extend([
            ("PROMPTGATE_CODEBUILD_PROJECT", "pg-eval"),
            ("PROMPTGATE_CODEBUILD_BUCKET", "pg-bucket"),
            ("PROMPTGATE_CODEBUILD_PREFIX", "/evals/"),
            ("PROMPTGATE_MAX_SHARDS", "7"),
            ("PROMPTGATE_MIN_CASES_PER_SHARD", "50"),
            ("PROMPTGATE_CODEBUILD_DEADLINE_SECS", "900"),
        ]);
        let s = Settings::load(None, env(&all)).unwrap();
        s.validate().unwrap();
        assert_eq!(s.codebuild_prefix, "evals");
        assert_eq!((s.max_shards, s.min_cases_per_shard), (7, 50));
        assert_eq!(s.codebuild_deadline_secs, 900);

        let err = Settings::load(None, env(&[("PROMPTGATE_MAX_SHARDS", "0")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("PROMPTGATE_MAX_SHARDS"), "{err}");
    }

    #[test]
    fn redacts_database_password() {
        assert_eq!(
            redact_url("postgres://bot:hunter2@db:5432/pg"),
            "postgres://bot:<redacted>@db:5432/pg"
        );
    }
}
