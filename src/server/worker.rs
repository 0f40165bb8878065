//! Workers: claim deliveries from the durable queue with a lease, turn them into
//! events, drop what the bot does not serve, and hand the rest to an [`EventHandler`].
//!
//! A handler error sends the delivery back to the queue (retried with a backoff, at
//! most [`MAX_ATTEMPTS`](crate::store::queue::MAX_ATTEMPTS) times); a body that does
//! not parse fails it at once. While a handler runs, the lease is extended, so only a
//! dead process lets another worker take the delivery over.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::FutureExt;
use tokio::sync::{watch, Notify};

use crate::event::{Event, ForgeKind, RUN_COMMAND_EVENT};
use crate::report::markdown::COMMENT_MARKER;
use crate::settings::RepoAllowlist;
use crate::store::queue::{Delivery, Lane, Queue};
use crate::webhook;

/// What the bot does with an event. Implemented by the run pipeline; the default
/// [`LoggingHandler`] only logs.
///
/// `delivery_id` is the forge's delivery id (stable across redeliveries). An `Err`
/// means "try again later": the delivery is retried. Report problems that a retry
/// cannot fix to the user and return `Ok`.
#[async_trait]
pub trait EventHandler: Send + Sync {
    async fn handle(&self, delivery_id: &str, event: Event) -> anyhow::Result<()>;

    /// The delivery was set aside: its worker stopped each of the times it handled it
    /// (killed for memory, say). Tell the author where they look; by default nothing.
    async fn quarantined(&self, _delivery_id: &str, _event: Event) -> anyhow::Result<()> {
        Ok(())
    }
}

/// Logs each event and does nothing else.
#[derive(Clone, Copy, Debug, Default)]
pub struct LoggingHandler;

#[async_trait]
impl EventHandler for LoggingHandler {
    async fn handle(&self, delivery_id: &str, event: Event) -> anyhow::Result<()> {
        let repo = event.repo().map(|r| r.full_name.as_str()).unwrap_or("-");
        tracing::info!(
            delivery_id,
            kind = event.kind(),
            repo,
            "event received; no handler acts on it yet"
        );
        Ok(())
    }
}

#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Lease owner name, unique per worker (e.g. `host-pid-rand-3`).
    pub owner: String,
    /// How long a claim is valid without being extended.
    pub lease: Duration,
    /// How often to look at the queue when nobody wakes the worker.
    pub poll_interval: Duration,
    /// After shutdown is signalled, how long a running handler may still take before it
    /// is abandoned and its delivery returned to the queue.
    pub shutdown_grace: Duration,
    /// Repositories outside this list are ignored.
    pub allowlist: RepoAllowlist,
    /// Notified by the intake after each new delivery.
    pub wake: Option<Arc<Notify>>,
    /// Which deliveries this worker takes.
    pub lane: Lane,
}

impl WorkerConfig {
    pub fn new(owner: impl Into<String>, allowlist: RepoAllowlist) -> Self {
        Self {
            owner: owner.into(),
            lease: Duration::from_secs(300),
            poll_interval: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(20),
            allowlist,
            wake: None,
            lane: Lane::Any,
        }
    }
}

/// What became of one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Handled,
    /// Completed without calling the handler; the reason was logged.
    Skipped(String),
    /// The body did not parse; marked failed.
    Unparseable(String),
    /// The handler failed; back to the queue (or failed after too many attempts).
    HandlerFailed(String),
    /// Shutdown came first; the lease was released.
    Abandoned,
}

/// Claims and processes deliveries until `shutdown` turns true (or its sender is
/// dropped), then releases any lease it still holds.
pub async fn run_worker(
    queue: Queue,
    handler: Arc<dyn EventHandler>,
    config: WorkerConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    tracing::debug!(owner = %config.owner, "worker started");
    loop {
        if *shutdown.borrow() {
            break;
        }
        let claimed = queue
            .claim_in(config.lane, &config.owner, config.lease)
            .await;
        for delivery in queue.take_quarantined() {
            announce_quarantine(handler.as_ref(), &config, &delivery).await;
        }
        match claimed {
            Ok(Some(delivery)) => {
                let outcome = process(
                    &queue,
                    handler.as_ref(),
                    &config,
                    delivery,
                    shutdown.clone(),
                )
                .await;
                if outcome == Outcome::Abandoned {
                    break;
                }
            }
            Ok(None) => {
                let wake = config.wake.clone();
                tokio::select! {
                    _ = async move {
                        match wake {
                            Some(w) => w.notified().await,
                            None => std::future::pending().await,
                        }
                    } => {}
                    _ = tokio::time::sleep(config.poll_interval) => {}
                    _ = shutdown.changed() => {}
                }
            }
            Err(e) => {
                tracing::error!(owner = %config.owner, "cannot read the delivery queue: {e:#}");
                tokio::select! {
                    _ = tokio::time::sleep(config.poll_interval.max(Duration::from_millis(200))) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
    }
    match queue.release(&config.owner).await {
        Ok(0) => {}
        Ok(n) => {
            tracing::info!(owner = %config.owner, released = n, "returned leases to the queue")
        }
        Err(e) => tracing::error!(owner = %config.owner, "cannot release leases: {e:#}"),
    }
    tracing::debug!(owner = %config.owner, "worker stopped");
}

/// The event a stored delivery holds: a forge's webhook, or a run the bot queued.
fn parse_delivery(delivery: &Delivery) -> anyhow::Result<Event> {
    if delivery.event == RUN_COMMAND_EVENT {
        return serde_json::from_slice(&delivery.body)
            .map(Event::RunCommand)
            .map_err(|e| anyhow::anyhow!("a queued run does not parse: {e}"));
    }
    delivery
        .forge
        .parse::<ForgeKind>()
        .and_then(|forge| webhook::parse(forge, &delivery.event, &delivery.body))
}

/// Hands a quarantined delivery's event to the handler's `quarantined`, unless the
/// event would have been skipped anyway. Failures are logged: the delivery stays
/// quarantined (and counted in the metric) either way.
async fn announce_quarantine(handler: &dyn EventHandler, config: &WorkerConfig, d: &Delivery) {
    let event = match parse_delivery(d) {
        Ok(event) if skip_reason(&event, &config.allowlist).is_none() => event,
        _ => return,
    };
    if let Err(e) = handler.quarantined(&d.delivery_id, event).await {
        tracing::error!(delivery = %d.delivery_id, "cannot report the quarantined delivery: {e:#}");
    }
}

/// Why an event is not handed to the handler, if it is not.
pub fn skip_reason(event: &Event, allowlist: &RepoAllowlist) -> Option<String> {
    if let Event::Ignored(reason) = event {
        return Some(reason.clone());
    }
    if let Some(repo) = event.repo() {
        if !allowlist.allows(&repo.full_name) {
            return Some(format!(
                "{} is not in PROMPTGATE_REPO_ALLOWLIST",
                repo.full_name
            ));
        }
    }
    if let Event::Comment(c) = event {
        if c.author_is_bot {
            return Some(format!("comment by bot account {}", c.author.login));
        }
        if c.body.contains(COMMENT_MARKER) {
            return Some("the bot's own comment".to_string());
        }
    }
    None
}

/// Processes one claimed delivery and records the result in the queue.
pub async fn process(
    queue: &Queue,
    handler: &dyn EventHandler,
    config: &WorkerConfig,
    delivery: Delivery,
    shutdown: watch::Receiver<bool>,
) -> Outcome {
    let id = delivery.id;
    let span = tracing::info_span!(
        "delivery",
        forge = %delivery.forge,
        delivery_id = %delivery.delivery_id,
        event = %delivery.event,
        attempt = delivery.attempts
    );

    let event = match parse_delivery(&delivery) {
        Ok(e) => e,
        Err(e) => {
            let msg = format!("{e:#}");
            tracing::warn!(parent: &span, "delivery does not parse: {msg}");
            record(queue.fail(id, &msg, false).await);
            return Outcome::Unparseable(msg);
        }
    };
    if let Some(reason) = skip_reason(&event, &config.allowlist) {
        tracing::debug!(parent: &span, "ignored: {reason}");
        record(queue.complete(id).await);
        return Outcome::Skipped(reason);
    }

    let kind = event.kind();
    let fut = AssertUnwindSafe(handler.handle(&delivery.delivery_id, event)).catch_unwind();
    tokio::pin!(fut);
    let beat_every = (config.lease / 3).max(Duration::from_millis(50));
    let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + beat_every, beat_every);
    let grace = config.shutdown_grace;
    let mut shutdown = shutdown;
    let stop = async move {
        // An Err means the sender is gone: the service is stopping.
        let _ = shutdown.wait_for(|stop| *stop).await;
        tokio::time::sleep(grace).await;
    };
    tokio::pin!(stop);
    let result = loop {
        tokio::select! {
            r = &mut fut => break Some(r),
            _ = beat.tick() => {
                match queue.extend(id, &config.owner, config.lease).await {
                    Ok(true) => {}
                    Ok(false) => tracing::warn!(parent: &span, "lost the lease; another worker may take this delivery"),
                    Err(e) => tracing::warn!(parent: &span, "cannot extend the lease: {e:#}"),
                }
            }
            _ = &mut stop => break None,
        }
    };
    match result {
        Some(Ok(Ok(()))) => {
            tracing::info!(parent: &span, kind, "handled");
            record(queue.complete(id).await);
            Outcome::Handled
        }
        Some(Ok(Err(e))) => {
            let msg = format!("{e:#}");
            let retry = is_transient(&e);
            if retry {
                tracing::error!(parent: &span, kind, "handler failed (will retry): {msg}");
            } else {
                tracing::error!(parent: &span, kind, "handler failed for good (a retry would fail the same way): {msg}");
            }
            record(queue.fail(id, &msg, retry).await);
            Outcome::HandlerFailed(msg)
        }
        Some(Err(panic)) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "handler panicked".to_string());
            // A panic is a bug: the same delivery would panic again, so it is recorded
            // once as failed (and counted in /metrics) instead of retried.
            tracing::error!(parent: &span, kind, "handler panicked (not retried): {msg}");
            record(queue.fail(id, &format!("panic: {msg}"), false).await);
            Outcome::HandlerFailed(msg)
        }
        None => {
            tracing::warn!(parent: &span, kind, "shutting down: returning the delivery to the queue");
            record(queue.release(&config.owner).await.map(|_| ()));
            Outcome::Abandoned
        }
    }
}

/// Whether a handler's error is worth a retry (issue 12: retry by class). A forge error
/// says so itself (5xx, 429, rate limits and network errors are retryable; 404, 422 or
/// a refused permission are not); a database error is (the store may be briefly
/// unavailable). Anything the chain does not name is retried too: being wrong that way
/// costs a few retries, the other way would lose an evaluation.
fn is_transient(e: &anyhow::Error) -> bool {
    for cause in e.chain() {
        if let Some(f) = cause.downcast_ref::<crate::forge::ForgeError>() {
            return f.is_retryable();
        }
        if cause.downcast_ref::<sqlx::Error>().is_some() {
            return true;
        }
    }
    true
}

fn record(r: anyhow::Result<()>) {
    if let Err(e) = r {
        tracing::error!("cannot update the delivery queue: {e:#}");
    }
}
