//! The local executor: today's in-process path, `check::run` with a live
//! `ModelClient` over the bot's result cache.

use async_trait::async_trait;

use super::{cancelled, error_report, Executor, RunRequest, Runs};
use crate::check;
use crate::execute::{ClientOptions, ModelClient};
use crate::report::Report;
use crate::store::Store;

pub struct LocalExecutor {
    store: Store,
    client_opts: ClientOptions,
    runs: Runs,
}

impl LocalExecutor {
    pub fn new(store: Store, max_concurrency: usize) -> Self {
        Self::with_options(
            store,
            ClientOptions {
                max_in_flight: max_concurrency.max(1),
                ..ClientOptions::default()
            },
        )
    }

    pub fn with_options(store: Store, client_opts: ClientOptions) -> Self {
        Self {
            store,
            client_opts,
            runs: Runs::default(),
        }
    }
}

#[async_trait]
impl Executor for LocalExecutor {
    fn name(&self) -> &'static str {
        "local"
    }

    async fn run(&self, req: RunRequest<'_>) -> Report {
        let (_guard, mut cancel) = self.runs.start(&req.run_id);
        // The bot's runs: each answer is durable as soon as it arrives, so a crash
        // repeats only the calls in flight.
        let client = ModelClient::new(
            self.store.clone(),
            ClientOptions {
                namespace: req.opts.namespace.clone(),
                ..self.client_opts.clone()
            },
        )
        .write_through();
        let plan = check::plan(req.source, req.revs, req.opts).await;
        let planned = plan.report().clone();
        tokio::select! {
            report = check::execute(plan, &client) => report,
            () = cancelled(&mut cancel) => {
                // Results fetched so far stay cached for the next run.
                client.flush().await;
                error_report(planned, format!("run {} was cancelled", req.run_id))
            }
        }
    }

    async fn cancel(&self, run_id: &str) -> bool {
        self.runs.cancel(run_id)
    }
}
