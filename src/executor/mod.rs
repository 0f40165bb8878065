//! Executors: where a run's model calls happen. `local` runs them in this process
//! (the embedded default); `codebuild` plans the run here, fans the work out to AWS
//! CodeBuild in shards, merges the shard results into the result cache, and computes
//! the report from that cache. Either way the report comes from
//! [`crate::check::execute`], so the pipeline does not know which one ran.

pub mod codebuild;
pub mod local;
pub mod shard;
pub mod worker;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::watch;

use crate::check::{CheckOptions, Revisions};
use crate::report::Report;
use crate::settings::Settings;
use crate::source::Source;
use crate::store::Store;

pub use codebuild::{CodeBuildConfig, CodeBuildExecutor};
pub use local::LocalExecutor;

/// One run, as the bot (or the CLI) asks for it.
pub struct RunRequest<'a> {
    /// Unique per run (the bot's run id): names the run's S3 prefix and is what
    /// [`Executor::cancel`] takes.
    pub run_id: String,
    /// The commit builds check out (`sourceVersion`); never a branch name, so what a
    /// build sees cannot move under it.
    pub head_sha: String,
    pub source: &'a dyn Source,
    pub revs: &'a Revisions,
    pub opts: &'a CheckOptions,
}

#[async_trait]
pub trait Executor: Send + Sync {
    /// `local` or `codebuild`, for logs and the report's notes.
    fn name(&self) -> &'static str;

    /// Evaluates the change and returns its report. Never fails: problems end up in
    /// the report with verdict `error`.
    async fn run(&self, req: RunRequest<'_>) -> Report;

    /// Stops the run `run_id` if it is in progress here (`/promptgate cancel`, a
    /// superseding push): its `run` returns soon with a `cancelled` error, and the
    /// CodeBuild executor stops the run's builds. Returns whether the run was found.
    /// Dropping the `run` future (aborting the task) also stops the builds.
    async fn cancel(&self, run_id: &str) -> bool;
}

/// Builds the executor `PROMPTGATE_EXECUTOR` names. The CodeBuild one loads the AWS
/// configuration (credential, region and endpoint chains) once, here.
pub async fn from_settings(settings: &Settings, store: Store) -> anyhow::Result<Arc<dyn Executor>> {
    Ok(match settings.executor {
        crate::settings::Executor::Local => {
            Arc::new(LocalExecutor::new(store, settings.max_concurrency))
        }
        crate::settings::Executor::Codebuild => {
            let cfg = CodeBuildConfig::from_settings(settings)?;
            Arc::new(CodeBuildExecutor::from_env(cfg, store).await)
        }
    })
}

/// The runs in progress, by run id, each with a flag `cancel` raises.
#[derive(Default)]
pub(crate) struct Runs {
    map: Mutex<HashMap<String, watch::Sender<bool>>>,
}

impl Runs {
    /// Registers a run; the receiver turns `true` on cancel. The entry goes when the
    /// returned guard is dropped.
    pub(crate) fn start(&self, run_id: &str) -> (RunGuard<'_>, watch::Receiver<bool>) {
        let (tx, rx) = watch::channel(false);
        if let Ok(mut map) = self.map.lock() {
            map.insert(run_id.to_string(), tx);
        }
        (
            RunGuard {
                runs: self,
                run_id: run_id.to_string(),
            },
            rx,
        )
    }

    pub(crate) fn cancel(&self, run_id: &str) -> bool {
        match self.map.lock() {
            Ok(map) => match map.get(run_id) {
                Some(tx) => {
                    tx.send_replace(true);
                    true
                }
                None => false,
            },
            Err(_) => false,
        }
    }
}

pub(crate) struct RunGuard<'a> {
    runs: &'a Runs,
    run_id: String,
}

impl Drop for RunGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut map) = self.runs.map.lock() {
            map.remove(&self.run_id);
        }
    }
}

/// Resolves when the flag turns `true` (never, if the sender is gone without it).
pub(crate) async fn cancelled(rx: &mut watch::Receiver<bool>) {
    if rx.wait_for(|c| *c).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// The report of a run that ended before its evaluation: the error, verdict `error`.
pub(crate) fn error_report(mut report: Report, error: String) -> Report {
    report.errors.push(error);
    crate::check::finish_verdict(&mut report);
    report
}
