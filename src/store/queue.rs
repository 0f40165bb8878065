//! The durable webhook queue: the `deliveries` table.
//!
//! The HTTP handler inserts a verified delivery (unique on `(forge, delivery_id)`, so a
//! redelivery is a no-op) before answering; workers claim rows with a lease, so a
//! crash returns the work to the queue when the lease runs out.
//!
//! Claiming is one statement (`UPDATE … WHERE id = (SELECT … LIMIT 1) RETURNING …`),
//! atomic in SQLite, whose single writer serialises concurrent claims. The Postgres
//! backend uses the same shape with a row lock that skips rows other replicas hold, so
//! several replicas can claim concurrently without blocking or double-claiming:
//!
//! ```sql
//! UPDATE deliveries SET status = 'running', lease_owner = $1, lease_until = $2,
//!        attempts = attempts + 1
//!  WHERE id = (SELECT id FROM deliveries
//!               WHERE (status = 'queued' AND COALESCE(lease_until, 0) <= $3)
//!                  OR (status = 'running' AND lease_until < $3)
//!               ORDER BY id LIMIT 1
//!               FOR UPDATE SKIP LOCKED)
//! RETURNING id, forge, delivery_id, event, body, attempts;
//! ```
//!
//! Intake inserts go through one writer task (group commit): a lone delivery commits at
//! once, but under load the deliveries that arrived while the previous commit ran share
//! the next transaction, so the per-commit cost (WAL frame header, lock, fsync-free but
//! not free) is paid once per batch instead of once per delivery.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Context};
use sqlx::{AnyPool, Row};

use super::db::{age_secs, millis as ms, now_text, unix_ms as now_ms, Backend, Db};
use tokio::sync::{mpsc, oneshot};

/// After this many attempts a delivery is marked failed instead of retried.
pub const MAX_ATTEMPTS: i64 = 5;

/// Claims after which a delivery whose lease keeps expiring (its worker died each
/// time) is quarantined as failed instead of claimed again.
pub const MAX_CLAIMS_WITHOUT_FINISHING: i64 = 3;

/// How `last_error` of a quarantined delivery starts.
pub const QUARANTINED: &str = "quarantined";

/// Most deliveries in one intake transaction: bounds how long the last of a batch
/// waits for the ones before it.
const BATCH_MAX_ITEMS: usize = 256;

/// Stop adding deliveries to a batch once their bodies reach this size, so one commit
/// does not write hundreds of MB of WAL while the next requests wait.
const BATCH_MAX_BYTES: usize = 4 << 20;

/// Deliveries waiting for the writer; beyond this, handlers wait to hand theirs over
/// (back-pressure instead of unbounded memory).
const INTAKE_CHANNEL: usize = 4 * BATCH_MAX_ITEMS;

const INSERT_DELIVERY: &str = "INSERT INTO deliveries (forge, delivery_id, event, body) \
     VALUES ($1, $2, $3, $4) ON CONFLICT (forge, delivery_id) DO NOTHING RETURNING id";

#[derive(Clone, Debug)]
pub struct Queue {
    db: Db,
    retry_backoff: Duration,
    intake: Arc<Intake>,
    /// Deliveries this process quarantined, for the worker to announce on the PR.
    quarantined_now: Arc<Mutex<Vec<Delivery>>>,
}

/// The handle on the intake writer task, shared by a queue's clones.
#[derive(Debug, Default)]
struct Intake {
    /// Started by the first `enqueue` (which runs inside the runtime the writer needs),
    /// and again if the old one has stopped (its runtime was shut down).
    sender: Mutex<Option<mpsc::Sender<Job>>>,
    /// Transactions the writer has run. The writer holds this, not `Intake`, so that
    /// dropping the last `Queue` closes the channel and ends the writer.
    batches: Arc<AtomicU64>,
}

/// One delivery handed to the writer, with where to send its outcome.
struct Job {
    forge: String,
    delivery_id: String,
    event: String,
    body: Vec<u8>,
    /// The error as text: one failed transaction answers every waiter in it.
    reply: oneshot::Sender<Result<Enqueued, String>>,
}

/// Which deliveries a worker takes. Every worker takes any delivery; a commands-lane
/// worker takes only comments, so a `cancel`, an `approve` or a `help` is answered
/// within seconds while every other worker is busy evaluating.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Lane {
    #[default]
    Any,
    Commands,
}

impl Lane {
    /// The SQL condition on `event` for this lane (constants only, no input).
    fn condition(self) -> String {
        match self {
            Lane::Any => "1 = 1".to_string(),
            Lane::Commands => format!(
                "event IN ({})",
                crate::webhook::COMMENT_EVENTS
                    .iter()
                    .map(|e| format!("'{e}'"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Enqueued {
    /// Stored; the row id.
    New(i64),
    /// The same `(forge, delivery_id)` was already stored: nothing done.
    Duplicate,
}

/// A claimed delivery.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub id: i64,
    pub forge: String,
    pub delivery_id: String,
    pub event: String,
    pub body: Vec<u8>,
    /// Attempts so far, this one included.
    pub attempts: i64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueCounts {
    pub queued: u64,
    pub running: u64,
    pub done: u64,
    pub failed: u64,
}

fn delivery_from_row(row: &sqlx::any::AnyRow) -> anyhow::Result<Delivery> {
    Ok(Delivery {
        id: row.try_get("id")?,
        forge: row.try_get("forge")?,
        delivery_id: row.try_get("delivery_id")?,
        event: row.try_get("event")?,
        body: row.try_get("body")?,
        attempts: row.try_get("attempts")?,
    })
}

/// What the claim's row choice adds: on Postgres, lock the chosen row and skip rows
/// other replicas' claims hold, so concurrent claims neither block nor take the same
/// delivery. SQLite's single writer serialises claims already.
fn claim_lock(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "",
        Backend::Postgres => " FOR UPDATE SKIP LOCKED",
    }
}

impl Queue {
    pub fn new(db: Db) -> Self {
        Self {
            db,
            retry_backoff: Duration::from_secs(10),
            intake: Arc::default(),
            quarantined_now: Arc::default(),
        }
    }

    /// The deliveries quarantined by this process's claims since the last call, so the
    /// worker can show an error status where the author looks (the log and metric
    /// alone leave the PR pending forever).
    pub fn take_quarantined(&self) -> Vec<Delivery> {
        self.quarantined_now
            .lock()
            .map(|mut q| std::mem::take(&mut *q))
            .unwrap_or_default()
    }

    /// Intake transactions run so far (each stores one batch of deliveries).
    pub fn batches(&self) -> u64 {
        self.intake.batches.load(Ordering::Relaxed)
    }

    /// The channel to the running writer, starting one if there is none.
    fn writer(&self) -> anyhow::Result<mpsc::Sender<Job>> {
        let mut slot = self
            .intake
            .sender
            .lock()
            .map_err(|_| anyhow!("the intake writer handle is poisoned"))?;
        if let Some(tx) = slot.as_ref().filter(|tx| !tx.is_closed()) {
            return Ok(tx.clone());
        }
        let runtime = tokio::runtime::Handle::try_current()
            .context("the intake writer needs a Tokio runtime")?;
        let (tx, rx) = mpsc::channel(INTAKE_CHANNEL);
        runtime.spawn(write_batches(
            self.db.clone(),
            rx,
            self.intake.batches.clone(),
        ));
        *slot = Some(tx.clone());
        Ok(tx)
    }

    /// Delay before a failed delivery is retried, times the attempts made so far
    /// (default 10 s).
    pub fn with_retry_backoff(mut self, backoff: Duration) -> Self {
        self.retry_backoff = backoff;
        self
    }

    pub fn pool(&self) -> &AnyPool {
        self.db.pool()
    }

    /// Stores a verified delivery, durably, unless the same one is already stored.
    ///
    /// Returns once the transaction holding it has committed (so a 202 sent after it
    /// never acknowledges a delivery that could still be lost to a crash of the
    /// process), or with an error if that transaction failed or the writer stopped.
    pub async fn enqueue(
        &self,
        forge: &str,
        delivery_id: &str,
        event: &str,
        body: &[u8],
    ) -> anyhow::Result<Enqueued> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            forge: forge.to_string(),
            delivery_id: delivery_id.to_string(),
            event: event.to_string(),
            body: body.to_vec(),
            reply,
        };
        // A writer can stop (its runtime shutting down) between the check in `writer`
        // and the send. A refused send hands the job back untouched, so it goes to a
        // new writer. A writer that stops with the job in its hands fails it instead:
        // whether it committed is unknown, and the forge redelivers.
        if let Err(mpsc::error::SendError(job)) = self.writer()?.send(job).await {
            self.writer()?
                .send(job)
                .await
                .map_err(|_| anyhow!("storing the webhook delivery: the intake writer stopped"))?;
        }
        match answer.await {
            Ok(Ok(enqueued)) => Ok(enqueued),
            Ok(Err(e)) => Err(anyhow!("storing the webhook delivery: {e}")),
            Err(_) => Err(anyhow!(
                "storing the webhook delivery: the intake writer stopped"
            )),
        }
    }

    /// Takes the oldest claimable delivery — queued (and past its retry delay), or
    /// running with an expired lease (its worker died) — and leases it to `owner`.
    pub async fn claim(&self, owner: &str, lease: Duration) -> anyhow::Result<Option<Delivery>> {
        self.claim_in(Lane::Any, owner, lease).await
    }

    /// [`claim`](Self::claim), limited to the deliveries of `lane`.
    pub async fn claim_in(
        &self,
        lane: Lane,
        owner: &str,
        lease: Duration,
    ) -> anyhow::Result<Option<Delivery>> {
        let now = now_ms();
        // A delivery whose worker keeps dying (a memory bomb kills the process, and the
        // next claim kills it again) is quarantined: attempts are counted when claimed,
        // so a crash counts even though it never reached `fail`.
        let quarantined = sqlx::query(&format!(
            "UPDATE deliveries SET status = 'failed', lease_owner = NULL, lease_until = NULL, \
             last_error = '{QUARANTINED}: claimed ' || attempts || ' times without finishing (the worker stopped each time, e.g. killed for memory)' \
                          || COALESCE('; before: ' || last_error, ''), \
             updated_at = $3 \
             WHERE status = 'running' AND lease_until < $1 AND attempts >= $2 \
             RETURNING id, forge, delivery_id, event, body, attempts"
        ))
        .bind(now)
        .bind(MAX_CLAIMS_WITHOUT_FINISHING)
        .bind(now_text())
        .fetch_all(self.db.pool())
        .await
        .context("quarantining dead deliveries")?;
        for row in quarantined {
            let d = delivery_from_row(&row)?;
            tracing::error!(id = d.id, forge = %d.forge, delivery = %d.delivery_id, "delivery quarantined: its worker stopped {MAX_CLAIMS_WITHOUT_FINISHING} times while handling it");
            if let Ok(mut q) = self.quarantined_now.lock() {
                q.push(d);
            }
        }

        let row = sqlx::query(&format!(
            "UPDATE deliveries SET status = 'running', lease_owner = $1, lease_until = $2, \
             attempts = attempts + 1, updated_at = $5 \
             WHERE id = (SELECT id FROM deliveries \
                         WHERE ((status = 'queued' AND COALESCE(lease_until, 0) <= $3) \
                            OR (status = 'running' AND lease_until < $3 AND attempts < $4)) \
                           AND {lane} \
                         ORDER BY id LIMIT 1{lock}) \
             RETURNING id, forge, delivery_id, event, body, attempts",
            lane = lane.condition(),
            lock = claim_lock(self.db.backend()),
        ))
        .bind(owner)
        .bind(now.saturating_add(ms(lease)))
        .bind(now)
        // A dead delivery that turned up after the quarantine above (a concurrent
        // insert, another replica's crash) waits for the next claim's quarantine.
        .bind(MAX_CLAIMS_WITHOUT_FINISHING)
        .bind(now_text())
        .fetch_optional(self.db.pool())
        .await
        .context("claiming a webhook delivery")?;
        row.map(|row| delivery_from_row(&row)).transpose()
    }

    /// Extends the lease of a delivery `owner` still holds; false when it lost it.
    pub async fn extend(&self, id: i64, owner: &str, lease: Duration) -> anyhow::Result<bool> {
        let done = sqlx::query(
            "UPDATE deliveries SET lease_until = $1 \
             WHERE id = $2 AND lease_owner = $3 AND status = 'running'",
        )
        .bind(now_ms().saturating_add(ms(lease)))
        .bind(id)
        .bind(owner)
        .execute(self.db.pool())
        .await
        .context("extending a delivery lease")?;
        Ok(done.rows_affected() == 1)
    }

    /// Marks a delivery processed.
    pub async fn complete(&self, id: i64) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE deliveries SET status = 'done', lease_owner = NULL, lease_until = NULL, \
             updated_at = $2 WHERE id = $1",
        )
        .bind(id)
        .bind(now_text())
        .execute(self.db.pool())
        .await
        .context("completing a webhook delivery")?;
        Ok(())
    }

    /// Records a failure. With `retry`, the delivery goes back to the queue (after a
    /// backoff) unless it has had [`MAX_ATTEMPTS`]; otherwise it is marked failed.
    pub async fn fail(&self, id: i64, error: &str, retry: bool) -> anyhow::Result<()> {
        let error: String = error.chars().take(4000).collect();
        sqlx::query(
            "UPDATE deliveries SET \
               status = CASE WHEN $1 AND attempts < $2 THEN 'queued' ELSE 'failed' END, \
               lease_until = CASE WHEN $1 AND attempts < $2 THEN $3 + $4 * attempts ELSE NULL END, \
               lease_owner = NULL, last_error = $5, updated_at = $7 \
             WHERE id = $6",
        )
        .bind(retry)
        .bind(MAX_ATTEMPTS)
        .bind(now_ms())
        .bind(ms(self.retry_backoff))
        .bind(error)
        .bind(id)
        .bind(now_text())
        .execute(self.db.pool())
        .await
        .context("recording a failed webhook delivery")?;
        Ok(())
    }

    /// Marks done, with `reason`, the deliveries still queued (not started) whose
    /// delivery id starts with `prefix`; returns how many. `cancel` uses it for the
    /// runs a PR's commands queued.
    pub async fn discard_queued(&self, prefix: &str, reason: &str) -> anyhow::Result<u64> {
        let done = sqlx::query(
            "UPDATE deliveries SET status = 'done', lease_owner = NULL, lease_until = NULL, \
             last_error = $1, updated_at = $3 \
             WHERE status = 'queued' AND substr(delivery_id, 1, length($2)) = $2",
        )
        .bind(reason)
        .bind(prefix)
        .bind(now_text())
        .execute(self.db.pool())
        .await
        .context("discarding queued deliveries")?;
        Ok(done.rows_affected())
    }

    /// Returns every lease `owner` holds to the queue (graceful shutdown). The attempt
    /// is not counted against the delivery. Returns how many were released.
    pub async fn release(&self, owner: &str) -> anyhow::Result<u64> {
        let done = sqlx::query(
            "UPDATE deliveries SET status = 'queued', lease_owner = NULL, lease_until = NULL, \
             attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END, updated_at = $2 \
             WHERE status = 'running' AND lease_owner = $1",
        )
        .bind(owner)
        .bind(now_text())
        .execute(self.db.pool())
        .await
        .context("releasing delivery leases")?;
        Ok(done.rows_affected())
    }

    /// At start-up: returns to the queue, at once, the leases an earlier incarnation of
    /// this replica held (owners starting with `replica`, but not with `instance`, this
    /// process's own prefix), instead of waiting for them to expire. The attempt stays
    /// counted: a delivery that crashed the process every time is still quarantined.
    /// Other replicas' leases are left alone; they still wait for the lease.
    pub async fn reclaim_own(&self, replica: &str, instance: &str) -> anyhow::Result<u64> {
        let done = sqlx::query(
            "UPDATE deliveries SET status = 'queued', lease_owner = NULL, lease_until = NULL, \
             updated_at = $3 \
             WHERE status = 'running' AND substr(lease_owner, 1, length($1)) = $1 \
               AND substr(lease_owner, 1, length($2)) != $2",
        )
        .bind(replica)
        .bind(instance)
        .bind(now_text())
        .execute(self.db.pool())
        .await
        .context("reclaiming this replica's leases")?;
        Ok(done.rows_affected())
    }

    /// Deliveries not yet processed (queued or running).
    pub async fn depth(&self) -> anyhow::Result<u64> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM deliveries WHERE status IN ('queued', 'running')",
        )
        .fetch_one(self.db.pool())
        .await
        .context("measuring the queue")?;
        let n: i64 = row.try_get("n")?;
        Ok(n.max(0) as u64)
    }

    /// Deliveries quarantined because their worker kept dying.
    pub async fn quarantined(&self) -> anyhow::Result<u64> {
        let row = sqlx::query(&format!(
            "SELECT COUNT(*) AS n FROM deliveries WHERE status = 'failed' AND last_error LIKE '{QUARANTINED}:%'"
        ))
        .fetch_one(self.db.pool())
        .await
        .context("counting quarantined deliveries")?;
        let n: i64 = row.try_get("n")?;
        Ok(n.max(0) as u64)
    }

    /// Seconds the oldest queued delivery has waited since it was received (0 when
    /// nothing waits): the number to alert on when workers stop taking work.
    pub async fn oldest_queued_age_secs(&self) -> anyhow::Result<f64> {
        let oldest: Option<String> =
            sqlx::query_scalar("SELECT MIN(received_at) FROM deliveries WHERE status = 'queued'")
                .fetch_one(self.db.pool())
                .await
                .context("measuring the oldest queued delivery")?;
        Ok(oldest.as_deref().and_then(age_secs).unwrap_or(0.0).max(0.0))
    }

    /// Rows per status.
    pub async fn counts(&self) -> anyhow::Result<QueueCounts> {
        let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM deliveries GROUP BY status")
            .fetch_all(self.db.pool())
            .await
            .context("counting deliveries")?;
        let mut c = QueueCounts::default();
        for row in rows {
            let status: String = row.try_get("status")?;
            let n: i64 = row.try_get("n")?;
            let n = n.max(0) as u64;
            match status.as_str() {
                "queued" => c.queued = n,
                "running" => c.running = n,
                "done" => c.done = n,
                "failed" => c.failed = n,
                _ => {}
            }
        }
        Ok(c)
    }

    /// The last error recorded for a delivery row.
    pub async fn last_error(&self, id: i64) -> anyhow::Result<Option<String>> {
        let row = sqlx::query("SELECT last_error FROM deliveries WHERE id = $1")
            .bind(id)
            .fetch_optional(self.db.pool())
            .await
            .context("reading a delivery")?;
        match row {
            Some(row) => Ok(row.try_get("last_error")?),
            None => Ok(None),
        }
    }
}

/// The intake writer: takes the next delivery, adds whatever else is already waiting
/// (no timer, so a lone delivery is not delayed), stores them in one transaction and
/// answers each. Ends when every `Queue` is gone.
async fn write_batches(db: Db, mut rx: mpsc::Receiver<Job>, batches: Arc<AtomicU64>) {
    while let Some(first) = rx.recv().await {
        let mut bytes = first.body.len();
        let mut jobs = vec![first];
        while jobs.len() < BATCH_MAX_ITEMS && bytes < BATCH_MAX_BYTES {
            let Ok(job) = rx.try_recv() else { break };
            bytes += job.body.len();
            jobs.push(job);
        }
        batches.fetch_add(1, Ordering::Relaxed);
        match insert_batch(&db, &jobs).await {
            Ok(outcomes) => {
                for (job, outcome) in jobs.into_iter().zip(outcomes) {
                    // The handler may have gone (client hung up): the row stays stored
                    // and a redelivery will be a duplicate.
                    let _ = job.reply.send(Ok(outcome));
                }
            }
            Err(e) => {
                let error = format!("{e:#}");
                for job in jobs {
                    let _ = job.reply.send(Err(error.clone()));
                }
            }
        }
    }
}

/// Inserts a batch in one transaction; all or nothing. On SQLite the transaction takes
/// the write lock up front (waiting out the busy timeout, see [`Db::begin_write`]),
/// rather than failing on a lock upgrade midway. A repeated id later in the batch
/// conflicts with the row its first occurrence just inserted, so it is answered
/// `Duplicate`; on Postgres a replica inserting the same id at once waits for this
/// transaction and then finds the conflict too.
async fn insert_batch(db: &Db, jobs: &[Job]) -> anyhow::Result<Vec<Enqueued>> {
    let mut tx = db
        .begin_write()
        .await
        .context("starting the intake transaction")?;
    let mut outcomes = Vec::with_capacity(jobs.len());
    for job in jobs {
        // The same SQL text each time: sqlx reuses the connection's prepared statement.
        let id: Option<i64> = sqlx::query_scalar(INSERT_DELIVERY)
            .bind(&job.forge)
            .bind(&job.delivery_id)
            .bind(&job.event)
            .bind(&job.body)
            .fetch_optional(&mut *tx)
            .await
            .context("inserting a webhook delivery")?;
        outcomes.push(id.map_or(Enqueued::Duplicate, Enqueued::New));
    }
    tx.commit()
        .await
        .context("committing the intake transaction")?;
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::{self, TestStore};

    fn queue_on(t: &TestStore) -> Queue {
        Queue::new(t.store.db()).with_retry_backoff(Duration::ZERO)
    }

    /// A queue per backend (SQLite, then Postgres): each test below runs on both.
    async fn queues() -> Vec<(TestStore, Queue)> {
        let mut out = Vec::new();
        for t in testing::each_backend().await {
            let q = queue_on(&t);
            println!("backend: {}", t.backend().as_str());
            out.push((t, q));
        }
        out
    }

    async fn sqlite_queue() -> (TestStore, Queue) {
        let t = testing::sqlite().await;
        let q = queue_on(&t);
        (t, q)
    }

    const LEASE: Duration = Duration::from_secs(300);

    /// Issue 10 item 6: a delivery whose worker dies every time (no `fail`, no
    /// `complete`, the lease just runs out) is claimed three times, then quarantined.
    #[tokio::test]
    async fn a_delivery_whose_worker_keeps_dying_is_quarantined() {
        for (_d, q) in queues().await {
            let Enqueued::New(id) = q
                .enqueue("github", "bomb", "pull_request", b"{}")
                .await
                .unwrap()
            else {
                panic!("not new")
            };
            let instant = Duration::from_millis(1);
            for attempt in 1..=MAX_CLAIMS_WITHOUT_FINISHING {
                let d = q.claim("dies", instant).await.unwrap().unwrap();
                assert_eq!((d.id, d.attempts), (id, attempt));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            assert!(q.claim("dies", instant).await.unwrap().is_none());
            let error = q.last_error(id).await.unwrap().unwrap();
            assert!(error.starts_with("quarantined: claimed 3 times"), "{error}");
            assert_eq!(q.quarantined().await.unwrap(), 1);
            assert_eq!(q.counts().await.unwrap().failed, 1);
        }
    }

    #[tokio::test]
    async fn the_oldest_queued_delivery_has_an_age_and_a_lane_takes_only_comments() {
        for (_d, q) in queues().await {
            assert_eq!(q.oldest_queued_age_secs().await.unwrap(), 0.0);
            q.enqueue("github", "pr", "pull_request", b"{}")
                .await
                .unwrap();
            q.enqueue("github", "c", "issue_comment", b"{}")
                .await
                .unwrap();
            let two_minutes_ago = (chrono::Utc::now() - chrono::Duration::seconds(120))
                .format("%Y-%m-%dT%H:%M:%S%.3fZ")
                .to_string();
            sqlx::query("UPDATE deliveries SET received_at = $1 WHERE delivery_id = 'pr'")
                .bind(two_minutes_ago)
                .execute(q.pool())
                .await
                .unwrap();
            let age = q.oldest_queued_age_secs().await.unwrap();
            assert!((119.0..130.0).contains(&age), "{age}");
            // The older pull_request waits; the commands lane takes the comment.
            let d = q
                .claim_in(Lane::Commands, "cmd", LEASE)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(d.event, "issue_comment");
            assert!(q
                .claim_in(Lane::Commands, "cmd", LEASE)
                .await
                .unwrap()
                .is_none());
            assert_eq!(
                q.claim("any", LEASE).await.unwrap().unwrap().event,
                "pull_request"
            );
            assert_eq!(q.oldest_queued_age_secs().await.unwrap(), 0.0);
        }
    }

    #[tokio::test]
    async fn claim_complete_and_duplicate() {
        for (_d, q) in queues().await {
            let Enqueued::New(id) = q.enqueue("github", "d1", "ping", b"{}").await.unwrap() else {
                panic!("not new")
            };
            assert_eq!(
                q.enqueue("github", "d1", "ping", b"{}").await.unwrap(),
                Enqueued::Duplicate
            );
            // Same id from another forge is a different delivery.
            assert!(matches!(
                q.enqueue("gitlab", "d1", "Note Hook", b"{}").await.unwrap(),
                Enqueued::New(_)
            ));
            assert_eq!(q.depth().await.unwrap(), 2);
            let d = q.claim("w1", LEASE).await.unwrap().unwrap();
            assert_eq!((d.id, d.attempts, d.event.as_str()), (id, 1, "ping"));
            assert_eq!(d.body, b"{}");
            let d2 = q.claim("w2", LEASE).await.unwrap().unwrap();
            assert_eq!(d2.forge, "gitlab");
            assert!(q.claim("w3", LEASE).await.unwrap().is_none());
            q.complete(d.id).await.unwrap();
            q.complete(d2.id).await.unwrap();
            assert_eq!(q.depth().await.unwrap(), 0);
            assert!(q.claim("w1", LEASE).await.unwrap().is_none());
            assert_eq!(q.counts().await.unwrap().done, 2);
        }
    }

    #[tokio::test]
    async fn expired_lease_is_reclaimed_after_a_crash() {
        for (_d, q) in queues().await {
            q.enqueue("github", "d1", "ping", b"{}").await.unwrap();
            // The worker "crashes" holding a lease that has already run out.
            let first = q.claim("dead", Duration::ZERO).await.unwrap().unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
            let again = q.claim("alive", LEASE).await.unwrap().unwrap();
            assert_eq!(again.id, first.id);
            assert_eq!(again.attempts, 2);
            // The dead worker has lost the lease.
            assert!(!q.extend(first.id, "dead", LEASE).await.unwrap());
            assert!(q.extend(first.id, "alive", LEASE).await.unwrap());
            // A live lease is not taken.
            assert!(q.claim("other", LEASE).await.unwrap().is_none());
        }
    }

    #[tokio::test]
    async fn release_returns_leases_without_counting_an_attempt() {
        for (_d, q) in queues().await {
            q.enqueue("github", "d1", "ping", b"{}").await.unwrap();
            q.enqueue("github", "d2", "ping", b"{}").await.unwrap();
            q.claim("w1", LEASE).await.unwrap().unwrap();
            q.claim("w2", LEASE).await.unwrap().unwrap();
            assert_eq!(q.release("w1").await.unwrap(), 1);
            let d = q.claim("w3", LEASE).await.unwrap().unwrap();
            assert_eq!((d.delivery_id.as_str(), d.attempts), ("d1", 1));
            assert_eq!(q.release("nobody").await.unwrap(), 0);
        }
    }

    #[tokio::test]
    async fn a_restarted_replica_reclaims_its_own_leases_at_once() {
        for (_d, q) in queues().await {
            for id in ["a", "b", "c"] {
                q.enqueue("github", id, "ping", b"{}").await.unwrap();
            }
            // The old incarnation of replica "pod-0" and another replica hold leases.
            let a = q.claim("pod-0~111-0", LEASE).await.unwrap().unwrap();
            q.claim("pod-1~222-0", LEASE).await.unwrap().unwrap();
            q.claim("pod-0~333-1", LEASE).await.unwrap().unwrap();
            // pod-0 restarts as instance 333 (its own live lease stays).
            assert_eq!(q.reclaim_own("pod-0~", "pod-0~333-").await.unwrap(), 1);
            let again = q.claim("pod-0~333-0", LEASE).await.unwrap().unwrap();
            assert_eq!((again.id, again.attempts), (a.id, 2));
            assert!(q.claim("pod-0~333-0", LEASE).await.unwrap().is_none());
        }
    }

    #[tokio::test]
    async fn failures_retry_then_give_up() {
        for (_d, q) in queues().await {
            q.enqueue("github", "d1", "ping", b"{}").await.unwrap();
            for attempt in 1..=MAX_ATTEMPTS {
                let d = q.claim("w", LEASE).await.unwrap().unwrap();
                assert_eq!(d.attempts, attempt);
                q.fail(d.id, "boom", true).await.unwrap();
            }
            assert!(q.claim("w", LEASE).await.unwrap().is_none());
            let c = q.counts().await.unwrap();
            assert_eq!((c.failed, c.queued), (1, 0));

            q.enqueue("github", "d2", "ping", b"{}").await.unwrap();
            let d = q.claim("w", LEASE).await.unwrap().unwrap();
            q.fail(d.id, "bad payload", false).await.unwrap();
            assert_eq!(q.counts().await.unwrap().failed, 2);
            assert_eq!(
                q.last_error(d.id).await.unwrap().as_deref(),
                Some("bad payload")
            );
            assert_eq!(q.depth().await.unwrap(), 0);
        }
    }

    #[tokio::test]
    async fn retry_backoff_delays_the_next_claim() {
        for (_d, q) in queues().await {
            let q = q.with_retry_backoff(Duration::from_secs(60));
            q.enqueue("github", "d1", "ping", b"{}").await.unwrap();
            let d = q.claim("w", LEASE).await.unwrap().unwrap();
            q.fail(d.id, "transient", true).await.unwrap();
            assert!(q.claim("w", LEASE).await.unwrap().is_none());
            assert_eq!(q.depth().await.unwrap(), 1);
        }
    }

    #[tokio::test]
    async fn concurrent_enqueues_are_batched_and_deduplicated() {
        for (_d, q) in queues().await {
            let before = q.batches();
            // 200 deliveries, the last 50 repeating ids of the first 50, all in flight at once.
            let sends = (0..200).map(|i| {
                let q = q.clone();
                async move {
                    q.enqueue("github", &format!("d{}", i % 150), "ping", b"{}")
                        .await
                }
            });
            let outcomes: Vec<Enqueued> = futures::future::join_all(sends)
                .await
                .into_iter()
                .map(|r| r.unwrap())
                .collect();
            // Handed over in order, so the first occurrence is the new one, even when its
            // repeat shares its transaction.
            let mut ids = std::collections::HashSet::new();
            for (i, outcome) in outcomes.iter().enumerate() {
                match outcome {
                    Enqueued::New(id) if i < 150 => assert!(ids.insert(*id)),
                    Enqueued::Duplicate if i >= 150 => {}
                    other => panic!("delivery {i}: {other:?}"),
                }
            }
            let (rows, distinct): (i64, i64) =
                sqlx::query_as("SELECT COUNT(*), COUNT(DISTINCT delivery_id) FROM deliveries")
                    .fetch_one(q.pool())
                    .await
                    .unwrap();
            assert_eq!((rows, distinct), (150, 150));
            let row_of_d7: i64 =
                sqlx::query_scalar("SELECT id FROM deliveries WHERE delivery_id = 'd7'")
                    .fetch_one(q.pool())
                    .await
                    .unwrap();
            assert_eq!(outcomes[7], Enqueued::New(row_of_d7));
            // Far fewer transactions than deliveries (one, when all were queued before the
            // writer first ran).
            let batches = q.batches() - before;
            assert!((1..=10).contains(&batches), "{batches} transactions");
            // A lone delivery afterwards commits on its own, at once.
            assert!(matches!(
                q.enqueue("github", "late", "ping", b"{}").await.unwrap(),
                Enqueued::New(_)
            ));
            assert_eq!(q.batches() - before, batches + 1);
        }
    }

    #[tokio::test]
    async fn a_failed_transaction_fails_every_delivery_in_it() {
        for (_d, q) in queues().await {
            let poison: &[&str] = match q.db.backend() {
                Backend::Sqlite => &["CREATE TRIGGER poison BEFORE INSERT ON deliveries \
                     WHEN NEW.delivery_id = 'poison' BEGIN SELECT RAISE(ABORT, 'poisoned'); END"],
                Backend::Postgres => &[
                    "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ \
                     BEGIN IF NEW.delivery_id = 'poison' THEN RAISE EXCEPTION 'poisoned'; END IF; \
                     RETURN NEW; END $$",
                    "CREATE TRIGGER poison BEFORE INSERT ON deliveries \
                     FOR EACH ROW EXECUTE FUNCTION poison()",
                ],
            };
            for sql in poison {
                sqlx::query(sql).execute(q.pool()).await.unwrap();
            }
            let before = q.batches();
            let sends = ["a", "b", "poison", "c"].map(|id| {
                let q = q.clone();
                async move { q.enqueue("github", id, "ping", b"{}").await }
            });
            let outcomes = futures::future::join_all(sends).await;
            assert_eq!(q.batches() - before, 1, "not one transaction");
            for outcome in outcomes {
                let e = outcome.unwrap_err();
                assert!(format!("{e:#}").contains("poisoned"), "{e:#}");
            }
            // Nothing of the batch was stored, and the writer carries on.
            assert_eq!(q.depth().await.unwrap(), 0);
            assert!(matches!(
                q.enqueue("github", "a", "ping", b"{}").await.unwrap(),
                Enqueued::New(_)
            ));
        }
    }

    #[test]
    fn a_stopped_writer_fails_its_waiters_and_is_replaced() {
        let main = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        // Pool connections dropped here return to the pool through a spawned task.
        let _context = main.enter();
        let (_d, q) = main.block_on(sqlite_queue());
        // The writer starts on the runtime of the first enqueue.
        let other = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        other
            .block_on(q.enqueue("github", "d1", "ping", b"{}"))
            .unwrap();
        // Hold the write lock so the writer's next transaction waits in BEGIN.
        let mut lock = main.block_on(q.pool().acquire()).unwrap();
        main.block_on(sqlx::query("BEGIN IMMEDIATE").execute(&mut *lock))
            .unwrap();
        let waiting = {
            let q = q.clone();
            main.spawn(async move { q.enqueue("github", "d2", "ping", b"{}").await })
        };
        std::thread::sleep(Duration::from_millis(200));
        // The writer's runtime goes away with the delivery in its hands.
        other.shutdown_background();
        let outcome = main
            .block_on(async { tokio::time::timeout(Duration::from_secs(5), waiting).await })
            .expect("the waiter hung")
            .unwrap();
        assert!(format!("{:#}", outcome.unwrap_err()).contains("writer stopped"));
        main.block_on(sqlx::query("ROLLBACK").execute(&mut *lock))
            .unwrap();
        drop(lock);
        // The next delivery starts a new writer.
        let again = main
            .block_on(async {
                let next = q.enqueue("github", "d3", "ping", b"{}");
                tokio::time::timeout(Duration::from_secs(15), next).await
            })
            .expect("the new writer hung");
        // What is under test is that a new writer takes the job and answers. Its insert
        // may still fail here: the dead writer's connection can win the write lock at
        // the ROLLBACK above and never release it, since the runtime that would return
        // it to the pool is gone (a test artefact: in the service that runtime is the
        // process). Either way the answer is the new writer's, not "writer stopped".
        match again {
            Ok(enqueued) => assert!(matches!(enqueued, Enqueued::New(_))),
            Err(e) => {
                let text = format!("{e:#}");
                assert!(!text.contains("writer stopped"), "{text}");
                assert!(text.contains("intake transaction"), "{text}");
            }
        }
    }
}
