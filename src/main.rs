//! The `promptgate` command line (SPEC §4).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

use promptgate::audit;
use promptgate::check::{self, CheckOptions, Revisions};
use promptgate::execute::{ClientOptions, Mode, ModelClient};
use promptgate::report::markdown::{render_comment, RenderOptions};
use promptgate::report::{Tier, Verdict};
use promptgate::source::{GitSource, Rev, Source};
use promptgate::store::Store;

#[derive(Parser)]
#[command(
    name = "promptgate",
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("PROMPTGATE_COMMIT"), ")"),
    about = "Diff-scoped evaluation gate for LLM prompt, model and guardrail changes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Markdown,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum TierArg {
    Pr,
    Release,
}

#[derive(Subcommand)]
enum Command {
    /// Evaluate the change from --base to --head and print the PR comment or the report.
    Check(Box<CheckArgs>),
    /// Evaluate every suite at a revision (default: the default branch) into the result
    /// cache, so a later `check` only evaluates what its change affects.
    Baseline(Box<BaselineArgs>),
    /// Replay sampled production requests (Bedrock invocation logs) against a suite's
    /// head model and compare the answers with production's.
    Shadow(Box<ShadowArgs>),
    /// Check the config, datasets, manifests and templates; report every problem.
    Validate {
        #[arg(long, default_value = ".")]
        repo: PathBuf,
        /// Validate this revision instead of the work tree.
        #[arg(long)]
        rev: Option<String>,
    },
    /// Run the webhook service.
    #[command(after_long_help = promptgate::settings::reference_text())]
    Serve {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Run one CodeBuild shard: read its plan, make its model calls, write the result
    /// (what the bot's buildspec runs; `s3://BUCKET/KEY` or a local file).
    Worker {
        #[arg(long, env = "PROMPTGATE_PLAN")]
        plan: String,
        #[arg(long, env = "PROMPTGATE_RESULT")]
        out: String,
    },
    /// Ask a running service's readiness endpoint (the image's HEALTHCHECK): exit 0
    /// when it answers 2xx, 1 otherwise.
    Healthcheck {
        /// The URL to ask (default: /readyz on the PROMPTGATE_LISTEN address, a
        /// wildcard bind asked on loopback).
        #[arg(long)]
        url: Option<String>,
        /// Seconds to wait for the answer.
        #[arg(long, default_value_t = 4)]
        timeout: u64,
    },
    /// Check or export the tamper-evident audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Translate another tool's config into promptgate files.
    Import {
        #[command(subcommand)]
        command: ImportCommand,
    },
}

#[derive(Subcommand)]
enum ImportCommand {
    /// Write `.promptgate.yml`, templates, manifests and a dataset from a promptfoo
    /// config, and list every construct that could not be translated.
    Promptfoo {
        /// The promptfoo config (`promptfooconfig.yaml`).
        config: PathBuf,
        /// The repository to write into (default: the current directory).
        #[arg(long, default_value = ".")]
        out: PathBuf,
        /// Overwrite files that exist.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Recompute the hash chain: exit 0 when it holds, 1 naming the first broken entry.
    Verify {
        /// Database URL (default: the PROMPTGATE_DATABASE_URL setting).
        #[arg(long, value_name = "URL")]
        database: Option<String>,
    },
    /// Write every entry as JSON Lines, oldest first.
    Export {
        /// Database URL (default: the PROMPTGATE_DATABASE_URL setting).
        #[arg(long, value_name = "URL")]
        database: Option<String>,
        /// Write here instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
struct CheckArgs {
    #[arg(long, default_value = ".")]
    repo: PathBuf,
    /// Base revision (default: the merge base of HEAD with the default branch).
    #[arg(long)]
    base: Option<String>,
    /// Head revision (default: the work tree, uncommitted changes included).
    #[arg(long)]
    head: Option<String>,
    /// Only this suite (repeatable).
    #[arg(long = "suite", value_name = "NAME")]
    suites: Vec<String>,
    /// Evaluate every case, not only the affected ones.
    #[arg(long)]
    full: bool,
    /// Also run the load tests of the suites that have one (the release tier always
    /// does); with --suite, only theirs.
    #[arg(long)]
    load: bool,
    /// Print what the run would call and cost, and call nothing.
    #[arg(long)]
    estimate: bool,
    #[arg(long, value_enum, default_value = "markdown")]
    format: Format,
    /// Write the output here instead of stdout.
    #[arg(long)]
    out: Option<PathBuf>,
    /// `release` runs every case with the release judge and samples.
    #[arg(long, value_enum, default_value = "pr")]
    tier: TierArg,
    #[command(flatten)]
    run: RunArgs,
    /// Folder of comment templates that override the built-in ones.
    #[arg(long, env = "PROMPTGATE_TEMPLATES")]
    templates: Option<PathBuf>,
}

/// How the CLI reaches models and the result cache (`check` and `baseline`).
#[derive(clap::Args)]
struct RunArgs {
    /// Store every model response fetched under the recordings folder.
    #[arg(long, conflicts_with = "replay")]
    record: bool,
    /// Answer every model call from the recordings folder; no network.
    #[arg(long)]
    replay: bool,
    /// Recordings folder (default: .promptgate/recordings in the repository).
    #[arg(long)]
    recordings: Option<PathBuf>,
    /// Also allow calls to model endpoints matching this base-URL glob (repeatable);
    /// by default only what PROMPTGATE_MODEL_ENDPOINTS, else the base's manifests, name.
    #[arg(long = "allow-endpoint", value_name = "GLOB")]
    allow_endpoints: Vec<String>,
    /// Also allow sending the key in ENV to endpoints matching GLOB (repeatable).
    #[arg(long = "allow-key", value_name = "ENV=GLOB")]
    allow_keys: Vec<String>,
    /// Result cache (default: promptgate/cache.db inside the repository's .git folder).
    #[arg(long, env = "PROMPTGATE_CACHE")]
    cache: Option<PathBuf>,
    /// Model calls in flight.
    #[arg(long, env = "PROMPTGATE_MAX_CONCURRENCY", default_value_t = 8)]
    max_concurrency: usize,
    /// Per-call timeout in seconds.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
}

#[derive(clap::Args)]
struct ShadowArgs {
    #[arg(long = "suite", value_name = "NAME")]
    suite: String,
    #[arg(long, default_value = ".")]
    repo: PathBuf,
    /// Base revision: what production runs (default: the merge base of HEAD with the
    /// default branch).
    #[arg(long)]
    base: Option<String>,
    /// Head revision (default: the work tree).
    #[arg(long)]
    head: Option<String>,
    /// Where the logs are: s3://bucket/prefix/ or a local directory (default: the
    /// suite's `shadow.logs`).
    #[arg(long, value_name = "S3URL|DIR")]
    logs: Option<String>,
    /// Only records this recent (default: the suite's `shadow.since`).
    #[arg(long)]
    since: Option<String>,
    /// Requests replayed at most (default: the suite's `shadow.sample`).
    #[arg(long)]
    sample: Option<usize>,
    #[arg(long, value_enum, default_value = "markdown")]
    format: Format,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(clap::Args)]
struct BaselineArgs {
    #[arg(long, default_value = ".")]
    repo: PathBuf,
    /// The revision to cache (default: the tip of the default branch).
    #[arg(long)]
    rev: Option<String>,
    /// Only this suite (repeatable).
    #[arg(long = "suite", value_name = "NAME")]
    suites: Vec<String>,
    /// `json` prints the report of the baseline run.
    #[arg(long, value_enum, default_value = "markdown")]
    format: Format,
    #[command(flatten)]
    run: RunArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `serve` sets up its own (structured) logging in `run_serve`.
    if !matches!(cli.command, Command::Serve { .. }) {
        tracing_subscriber::fmt()
            .with_env_filter(log_filter("warn"))
            .with_writer(std::io::stderr)
            .init();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("promptgate: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let code = runtime.block_on(async {
        match cli.command {
            Command::Check(args) => run_check(*args).await,
            Command::Baseline(args) => run_baseline(*args).await,
            Command::Shadow(args) => run_shadow(*args).await,
            Command::Validate { repo, rev } => run_validate(repo, rev).await,
            Command::Serve { config } => run_serve(config).await,
            Command::Import {
                command: ImportCommand::Promptfoo { config, out, force },
            } => run_import_promptfoo(&config, &out, force),
            Command::Audit { command } => match command {
                AuditCommand::Verify { database } => {
                    audit::cli::verify_command(database.as_deref(), &mut std::io::stdout()).await
                }
                AuditCommand::Export { database, out } => {
                    audit::cli::export_command(
                        database.as_deref(),
                        out.as_deref(),
                        &mut std::io::stdout().lock(),
                    )
                    .await
                }
            },
            Command::Worker { plan, out } => run_worker(&plan, &out).await,
            Command::Healthcheck { url, timeout } => {
                let url = match url {
                    Some(url) => url,
                    None => promptgate::server::probe::default_url(
                        &promptgate::settings::Settings::from_env(None)?,
                    )?,
                };
                promptgate::server::probe::healthcheck(
                    &url,
                    std::time::Duration::from_secs(timeout),
                    &mut std::io::stdout(),
                )
                .await
            }
        }
    });
    match code {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("promptgate: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// With `--replay`, the recordings are the models' answers: when the compared range
/// changes them, the change under test chose its own answers. Says so (in the comment
/// and the JSON `notes`), naming how many and a few of them.
async fn replayed_recordings_changed(
    source: &GitSource,
    revs: &Revisions,
    recordings: &std::path::Path,
) -> anyhow::Result<Option<String>> {
    let Ok(folder) = recordings.strip_prefix(source.root()) else {
        return Ok(None);
    };
    let folder = format!("{}/", folder.to_string_lossy().trim_end_matches('/'));
    let changed: Vec<String> = source
        .changed_paths(&revs.base, &revs.head)
        .await?
        .into_iter()
        .filter(|p| p.starts_with(&folder))
        .collect();
    if changed.is_empty() {
        return Ok(None);
    }
    let shown: Vec<&str> = changed.iter().take(3).map(String::as_str).collect();
    Ok(Some(format!(
        "Warning: {} recording(s) under `{folder}` changed between base and head ({}{}). With --replay the verdict rests on answers this change wrote itself; re-run against a real model (or `--record`) before trusting it.",
        changed.len(),
        shown.join(", "),
        if changed.len() > shown.len() { ", …" } else { "" }
    )))
}

/// Where the log level comes from: `PROMPTGATE_LOG`, else `RUST_LOG` (what operators
/// of any Rust service try first), else `default`. The AWS SDK's signing and transport
/// targets are capped at `debug` whatever is asked: at `trace` they print canonical
/// requests and `Authorization` headers, which carry the access key id.
fn log_filter(default: &str) -> tracing_subscriber::EnvFilter {
    let asked = ["PROMPTGATE_LOG", "RUST_LOG"]
        .iter()
        .find_map(|var| std::env::var(var).ok().filter(|v| !v.trim().is_empty()))
        .unwrap_or_else(|| default.to_string());
    let directives = format!("{asked},{AWS_LOG_CAP}");
    tracing_subscriber::EnvFilter::try_new(&directives).unwrap_or_else(|e| {
        eprintln!("promptgate: ignoring the log filter {asked:?} ({e}); using {default:?}");
        tracing_subscriber::EnvFilter::new(format!("{default},{AWS_LOG_CAP}"))
    })
}

/// Log targets that would print AWS credentials at `trace`.
const AWS_LOG_CAP: &str = "aws_sigv4=debug,aws_smithy_runtime=debug,aws_smithy_runtime_api=debug,aws_smithy_http_client=debug,aws_config=debug";

/// `promptgate serve`: settings from the environment (and `--config`), JSON logs when
/// stderr is not a terminal, then the webhook service until ctrl-c or SIGTERM.
async fn run_serve(config: Option<PathBuf>) -> anyhow::Result<u8> {
    let filter = log_filter("info");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::io::stderr().is_terminal() {
        builder.init();
    } else {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init();
    }
    let settings = match promptgate::settings::Settings::from_env(config.as_deref())
        .and_then(|s| s.validate().map(|()| s))
    {
        Ok(s) => s,
        Err(e) => {
            for line in format!("{e:#}").lines() {
                eprintln!("promptgate: error: {line}");
            }
            return Ok(2);
        }
    };
    let forges = promptgate::bot::build_forges(&settings)?;
    let (public_url, max) = (settings.public_url(), settings.max_concurrency);
    promptgate::server::serve_with(settings, move |state| async move {
        let executor =
            promptgate::executor::from_settings(&state.settings, state.store.clone()).await?;
        tracing::info!(
            executor = executor.name(),
            "evaluations run on this executor"
        );
        let bot = promptgate::bot::Bot::new(forges, &state, public_url, max)
            .with_executor(executor)
            .with_endpoint_rules(state.settings.endpoint_rules());
        Ok(std::sync::Arc::new(bot)
            as std::sync::Arc<
                dyn promptgate::server::worker::EventHandler,
            >)
    })
    .await?;
    Ok(0)
}

/// `promptgate worker`: exit 0 once the result is written, even when some units
/// errored (the report shows those); 2 when the plan or the result cannot be handled,
/// which fails the build so the bot retries the shard.
async fn run_worker(plan: &str, out: &str) -> anyhow::Result<u8> {
    use promptgate::executor::worker::{self, ShardKey, ENV_SHARD_KEY};
    let opts = worker::worker_client_options();
    // The bot always hands its builds a key; without one (a dry run from files) the
    // result is written unsigned, and a bot would refuse it.
    let key = match std::env::var(ENV_SHARD_KEY) {
        Ok(hex) => Some(ShardKey::from_hex(&hex)?),
        Err(_) => None,
    };
    let result = worker::run_cli(plan, out, opts, key.as_ref()).await?;
    eprintln!(
        "promptgate: shard {} done: {} results, {} model calls, {} unit errors",
        result.shard,
        result.entries.len(),
        result.usage.chat_calls + result.usage.embed_calls + result.usage.guardrail_calls,
        result.errors.len()
    );
    for e in result.errors.iter().take(20) {
        eprintln!("promptgate: unit error: {e}");
    }
    Ok(0)
}

async fn run_validate(repo: PathBuf, rev: Option<String>) -> anyhow::Result<u8> {
    let source = GitSource::open(&repo).await?;
    let rev = match rev {
        Some(r) => Rev::Commit(source.resolve(&r).await?),
        None => Rev::WorkTree,
    };
    let diags = promptgate::validate::validate(&source, &rev, &CheckOptions::default()).await;
    if diags.is_empty() {
        println!("promptgate: configuration is valid");
        Ok(0)
    } else {
        for d in &diags.0 {
            println!("{d}");
        }
        eprintln!("promptgate: {} problem(s) found", diags.0.len());
        Ok(2)
    }
}

/// `promptgate shadow`: the suite's shadow replay alone, printed as its comment section
/// or as the report's `shadow` object. Exit status as `check`'s.
async fn run_shadow(args: ShadowArgs) -> anyhow::Result<u8> {
    let source = GitSource::open(&args.repo).await?;
    let revs = cli_revisions(&source, args.base.as_deref(), args.head.as_deref()).await?;
    let (client, _) = cli_client(&source, &args.run).await?;
    let opts = CheckOptions {
        endpoints: args.run.endpoint_rules(),
        ..CheckOptions::default()
    };
    let overrides = check::ShadowOverrides {
        logs: args.logs,
        since: args.since,
        sample: args.sample,
    };
    let result =
        match check::shadow_only(&source, &revs, &args.suite, &overrides, &opts, &client).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("promptgate: error: {e}");
                return Ok(Verdict::Error.exit_code() as u8);
            }
        };
    let verdict = match (&result.error, result.pass) {
        (Some(_), _) => Verdict::Error,
        (None, true) => Verdict::Pass,
        (None, false) => Verdict::Fail,
    };
    let text = match args.format {
        Format::Json => serde_json::to_string_pretty(&result).context("encoding the report")?,
        Format::Markdown => {
            let mut suite = promptgate::report::SuiteReport::empty(&args.suite, verdict);
            suite.shadow = Some(result);
            let mut report = promptgate::report::Report::new(
                revs.base_label.clone(),
                revs.head_label.clone(),
                Tier::Pr,
            );
            report.verdict = verdict;
            report.suites.push(suite);
            render_comment(&report, &RenderOptions::default())
                .map_err(|e| anyhow::anyhow!("the comment template does not render: {e}"))?
        }
    };
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    if !text.ends_with('\n') {
        out.write_all(b"\n")?;
    }
    Ok(verdict.exit_code() as u8)
}

/// The CLI's range: `--base` (default: the merge base with the default branch) to
/// `--head` (default: the work tree, labelled `+dirty` when it has changes).
async fn cli_revisions(
    source: &GitSource,
    base: Option<&str>,
    head: Option<&str>,
) -> anyhow::Result<Revisions> {
    let base_sha = match base {
        Some(b) => source.resolve(b).await?,
        None => source.default_base().await?,
    };
    let (head, head_label) = match head {
        Some(h) => {
            let sha = source.resolve(h).await?;
            (Rev::Commit(sha.clone()), sha)
        }
        None => {
            let sha = source.resolve("HEAD").await?;
            let label = if source.is_dirty().await? {
                format!("{sha}+dirty")
            } else {
                sha
            };
            (Rev::WorkTree, label)
        }
    };
    Ok(Revisions {
        base: Rev::Commit(base_sha.clone()),
        head,
        policy: None,
        base_label: base_sha,
        head_label,
    })
}

async fn run_check(args: CheckArgs) -> anyhow::Result<u8> {
    let source = GitSource::open(&args.repo).await?;
    let revs = cli_revisions(&source, args.base.as_deref(), args.head.as_deref()).await?;
    // A default base equal to the head compares a commit with itself and would pass
    // with every suite skipped; only uncommitted work on top of it is worth comparing.
    if args.base.is_none() {
        let base_sha = &revs.base_label;
        let head_sha = revs.head_label.trim_end_matches("+dirty");
        let dirty_work_tree = revs.head == Rev::WorkTree && revs.head_label.ends_with("+dirty");
        if head_sha == base_sha && !dirty_work_tree {
            anyhow::bail!(
                "the default base is the head itself ({}): HEAD is the tip of the default \
                 branch, so there is nothing to compare; pass --base (for example \
                 --base HEAD~1) or check out the branch under test",
                &base_sha[..base_sha.len().min(12)]
            );
        }
    }
    let (client, recordings) = cli_client(&source, &args.run).await?;
    let opts = CheckOptions {
        suites: args.suites,
        full: args.full,
        tier: match args.tier {
            TierArg::Pr => Tier::Pr,
            TierArg::Release => Tier::Release,
        },
        endpoints: args.run.endpoint_rules(),
        // The CLI's cache lives in the repository's own .git folder.
        namespace: None,
        load: args.load,
        estimate_only: args.estimate,
        budget: None,
    };

    let progress = std::io::stderr().is_terminal().then(|| {
        let client = Arc::clone(&client);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let u = client.usage();
                eprint!(
                    "\rpromptgate: {} model requests done ({} calls, {} cached)   ",
                    client.done(),
                    u.chat_calls + u.embed_calls,
                    u.cache_hits
                );
            }
        })
    });
    let mut report = check::run(&source, &revs, &opts, &client).await;
    if args.run.replay {
        if let Some(note) = replayed_recordings_changed(&source, &revs, &recordings).await? {
            report.notes.push(note);
        }
    }
    if let Some(p) = progress {
        p.abort();
        eprint!("\r\x1b[2K");
    }

    let text = match args.format {
        Format::Json => serde_json::to_string_pretty(&report).context("encoding the report")?,
        Format::Markdown if args.estimate => check::estimate_summary(&report),
        Format::Markdown => {
            let opts = RenderOptions {
                templates_dir: args.templates,
                ..RenderOptions::default()
            };
            match render_comment(&report, &opts) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("promptgate: error: the comment template does not render: {e}");
                    return Ok(Verdict::Error.exit_code() as u8);
                }
            }
        }
    };
    match &args.out {
        Some(path) => std::fs::write(path, text.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?,
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())?;
            if !text.ends_with('\n') {
                out.write_all(b"\n")?;
            }
        }
    }
    for e in &report.errors {
        eprintln!("promptgate: error: {e}");
    }
    Ok(report.verdict.exit_code() as u8)
}

/// The model client of a CLI run: the result cache (in the repository's .git folder by
/// default), live, recording or replaying, and its limits. Also the recordings folder.
async fn cli_client(
    source: &GitSource,
    args: &RunArgs,
) -> anyhow::Result<(Arc<ModelClient>, PathBuf)> {
    let cache_path = match args.cache.clone() {
        Some(p) => p,
        None => source.git_dir().await?.join("promptgate").join("cache.db"),
    };
    let store = Store::open_sqlite(&cache_path).await?;
    let recordings = args
        .recordings
        .clone()
        .unwrap_or_else(|| source.root().join(".promptgate").join("recordings"));
    let mode = if args.replay {
        Mode::Replay(recordings.clone())
    } else if args.record {
        Mode::Record(recordings.clone())
    } else {
        Mode::Live
    };
    let client = Arc::new(ModelClient::new(
        store,
        ClientOptions {
            max_in_flight: args.max_concurrency.max(1),
            timeout: Duration::from_secs(args.timeout.max(1)),
            mode,
            recordings_dir: Some(recordings.clone()),
            ..ClientOptions::default()
        },
    ));
    Ok((client, recordings))
}

impl RunArgs {
    fn endpoint_rules(&self) -> promptgate::plan::endpoints::EndpointRules {
        promptgate::plan::endpoints::EndpointRules {
            extra_endpoints: self.allow_endpoints.clone(),
            extra_keys: self.allow_keys.clone(),
            ..promptgate::plan::endpoints::EndpointRules::from_env()
        }
    }
}

/// `promptgate baseline`: what the bot does on a push to the default branch, for CI
/// systems without the bot. Exit 0 once every result is cached (whatever the gates say
/// about the default branch: that is for PRs to compare against), 2 on an error.
/// `promptgate import promptfoo`: exit 0 when everything was translated, 1 when some
/// constructs were not (they are listed), 2 when nothing could be written.
fn run_import_promptfoo(
    config: &std::path::Path,
    out: &std::path::Path,
    force: bool,
) -> anyhow::Result<u8> {
    let text = std::fs::read_to_string(config)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", config.display()))?;
    let dir = config
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    let read = |rel: &str| {
        std::fs::read_to_string(dir.join(rel))
            .map_err(|e| format!("{}: file://{rel}: {e}", config.display()))
    };
    let imported = match promptgate::import::promptfoo::translate(&text, &read) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("promptgate: error: {}: {e}", config.display());
            return Ok(2);
        }
    };
    let written = promptgate::import::write(out, &imported, force)?;
    for path in &written {
        println!("wrote {}", path.display());
    }
    for u in &imported.untranslated {
        println!("not translated: {}: {u}", config.display());
    }
    Ok(u8::from(!imported.untranslated.is_empty()))
}

async fn run_baseline(args: BaselineArgs) -> anyhow::Result<u8> {
    let source = GitSource::open(&args.repo).await?;
    let sha = match &args.rev {
        Some(r) => source.resolve(r).await?,
        None => source.default_tip().await?,
    };
    let (client, _) = cli_client(&source, &args.run).await?;
    let opts = CheckOptions {
        suites: args.suites,
        full: true,
        tier: Tier::Pr,
        endpoints: args.run.endpoint_rules(),
        namespace: None,
        load: false,
        estimate_only: false,
        budget: None,
    };
    let report = check::baseline(&source, Rev::Commit(sha.clone()), &sha, &opts, &client).await;
    let text = match args.format {
        Format::Json => serde_json::to_string_pretty(&report).context("encoding the report")?,
        Format::Markdown => check::baseline_summary(&report),
    };
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    if !text.ends_with('\n') {
        out.write_all(b"\n")?;
    }
    for e in report
        .errors
        .iter()
        .chain(report.suites.iter().flat_map(|s| &s.errors))
    {
        eprintln!("promptgate: error: {e}");
    }
    Ok(if report.verdict == Verdict::Error {
        2
    } else {
        0
    })
}
