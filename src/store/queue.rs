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

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use sqlx::{Row, SqlitePool};

/// After this many attempts a delivery is marked failed instead of retried.
pub const MAX_ATTEMPTS: i64 = 5;

const NOW_TEXT: &str = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')";

#[derive(Clone, Debug)]
pub struct Queue {
    pool: SqlitePool,
    retry_backoff: Duration,
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

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

impl Queue {
    pub fn new(pool: SqlitePool) -> Self {
        Self {
            pool,
            retry_backoff: Duration::from_secs(10),
        }
    }

    /// Delay before a failed delivery is retried, times the attempts made so far
    /// (default 10 s).
    pub fn with_retry_backoff(mut self, backoff: Duration) -> Self {
        self.retry_backoff = backoff;
        self
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Stores a verified delivery, durably, unless the same one is already stored.
    pub async fn enqueue(
        &self,
        forge: &str,
        delivery_id: &str,
        event: &str,
        body: &[u8],
    ) -> anyhow::Result<Enqueued> {
        let row = sqlx::query(
            "INSERT INTO deliveries (forge, delivery_id, event, body) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (forge, delivery_id) DO NOTHING RETURNING id",
        )
        .bind(forge)
        .bind(delivery_id)
        .bind(event)
        .bind(body)
        .fetch_optional(&self.pool)
        .await
        .context("storing the webhook delivery")?;
        match row {
            Some(row) => Ok(Enqueued::New(row.try_get("id")?)),
            None => Ok(Enqueued::Duplicate),
        }
    }

    /// Takes the oldest claimable delivery — queued (and past its retry delay), or
    /// running with an expired lease (its worker died) — and leases it to `owner`.
    pub async fn claim(&self, owner: &str, lease: Duration) -> anyhow::Result<Option<Delivery>> {
        let now = now_ms();
        // A delivery whose worker keeps dying must not be re-claimed forever.
        sqlx::query(&format!(
            "UPDATE deliveries SET status = 'failed', lease_owner = NULL, lease_until = NULL, \
             last_error = COALESCE(last_error || '; ', '') || 'lease expired after ' || attempts || ' attempts', \
             updated_at = {NOW_TEXT} \
             WHERE status = 'running' AND lease_until < ?1 AND attempts >= ?2"
        ))
        .bind(now)
        .bind(MAX_ATTEMPTS)
        .execute(&self.pool)
        .await
        .context("expiring dead deliveries")?;

        let row = sqlx::query(&format!(
            "UPDATE deliveries SET status = 'running', lease_owner = ?1, lease_until = ?2, \
             attempts = attempts + 1, updated_at = {NOW_TEXT} \
             WHERE id = (SELECT id FROM deliveries \
                         WHERE (status = 'queued' AND COALESCE(lease_until, 0) <= ?3) \
                            OR (status = 'running' AND lease_until < ?3) \
                         ORDER BY id LIMIT 1) \
             RETURNING id, forge, delivery_id, event, body, attempts"
        ))
        .bind(owner)
        .bind(now.saturating_add(ms(lease)))
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .context("claiming a webhook delivery")?;
        let Some(row) = row else {
            return Ok(None);
        };
        Ok(Some(Delivery {
            id: row.try_get("id")?,
            forge: row.try_get("forge")?,
            delivery_id: row.try_get("delivery_id")?,
            event: row.try_get("event")?,
            body: row.try_get("body")?,
            attempts: row.try_get("attempts")?,
        }))
    }

    /// Extends the lease of a delivery `owner` still holds; false when it lost it.
    pub async fn extend(&self, id: i64, owner: &str, lease: Duration) -> anyhow::Result<bool> {
        let done = sqlx::query(
            "UPDATE deliveries SET lease_until = ?1 \
             WHERE id = ?2 AND lease_owner = ?3 AND status = 'running'",
        )
        .bind(now_ms().saturating_add(ms(lease)))
        .bind(id)
        .bind(owner)
        .execute(&self.pool)
        .await
        .context("extending a delivery lease")?;
        Ok(done.rows_affected() == 1)
    }

    /// Marks a delivery processed.
    pub async fn complete(&self, id: i64) -> anyhow::Result<()> {
        sqlx::query(&format!(
            "UPDATE deliveries SET status = 'done', lease_owner = NULL, lease_until = NULL, \
             updated_at = {NOW_TEXT} WHERE id = ?1"
        ))
        .bind(id)
        .execute(&self.pool)
        .await
        .context("completing a webhook delivery")?;
        Ok(())
    }

    /// Records a failure. With `retry`, the delivery goes back to the queue (after a
    /// backoff) unless it has had [`MAX_ATTEMPTS`]; otherwise it is marked failed.
    pub async fn fail(&self, id: i64, error: &str, retry: bool) -> anyhow::Result<()> {
        let error: String = error.chars().take(4000).collect();
        sqlx::query(&format!(
            "UPDATE deliveries SET \
               status = CASE WHEN ?1 AND attempts < ?2 THEN 'queued' ELSE 'failed' END, \
               lease_until = CASE WHEN ?1 AND attempts < ?2 THEN ?3 + ?4 * attempts ELSE NULL END, \
               lease_owner = NULL, last_error = ?5, updated_at = {NOW_TEXT} \
             WHERE id = ?6"
        ))
        .bind(retry)
        .bind(MAX_ATTEMPTS)
        .bind(now_ms())
        .bind(ms(self.retry_backoff))
        .bind(error)
        .bind(id)
        .execute(&self.pool)
        .await
        .context("recording a failed webhook delivery")?;
        Ok(())
    }

    /// Returns every lease `owner` holds to the queue (graceful shutdown). The attempt
    /// is not counted against the delivery. Returns how many were released.
    pub async fn release(&self, owner: &str) -> anyhow::Result<u64> {
        let done = sqlx::query(&format!(
            "UPDATE deliveries SET status = 'queued', lease_owner = NULL, lease_until = NULL, \
             attempts = MAX(attempts - 1, 0), updated_at = {NOW_TEXT} \
             WHERE status = 'running' AND lease_owner = ?1"
        ))
        .bind(owner)
        .execute(&self.pool)
        .await
        .context("releasing delivery leases")?;
        Ok(done.rows_affected())
    }

    /// Deliveries not yet processed (queued or running).
    pub async fn depth(&self) -> anyhow::Result<u64> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM deliveries WHERE status IN ('queued', 'running')",
        )
        .fetch_one(&self.pool)
        .await
        .context("measuring the queue")?;
        let n: i64 = row.try_get("n")?;
        Ok(n.max(0) as u64)
    }

    /// Rows per status.
    pub async fn counts(&self) -> anyhow::Result<QueueCounts> {
        let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM deliveries GROUP BY status")
            .fetch_all(&self.pool)
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
        let row = sqlx::query("SELECT last_error FROM deliveries WHERE id = ?1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .context("reading a delivery")?;
        match row {
            Some(row) => Ok(row.try_get("last_error")?),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    async fn queue() -> (tempfile::TempDir, Queue) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("q.db").display());
        let store = Store::open_url(&url).await.unwrap();
        (
            dir,
            Queue::new(store.pool().clone()).with_retry_backoff(Duration::ZERO),
        )
    }

    const LEASE: Duration = Duration::from_secs(300);

    #[tokio::test]
    async fn claim_complete_and_duplicate() {
        let (_d, q) = queue().await;
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

    #[tokio::test]
    async fn expired_lease_is_reclaimed_after_a_crash() {
        let (_d, q) = queue().await;
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

    #[tokio::test]
    async fn release_returns_leases_without_counting_an_attempt() {
        let (_d, q) = queue().await;
        q.enqueue("github", "d1", "ping", b"{}").await.unwrap();
        q.enqueue("github", "d2", "ping", b"{}").await.unwrap();
        q.claim("w1", LEASE).await.unwrap().unwrap();
        q.claim("w2", LEASE).await.unwrap().unwrap();
        assert_eq!(q.release("w1").await.unwrap(), 1);
        let d = q.claim("w3", LEASE).await.unwrap().unwrap();
        assert_eq!((d.delivery_id.as_str(), d.attempts), ("d1", 1));
        assert_eq!(q.release("nobody").await.unwrap(), 0);
    }

    #[tokio::test]
    async fn failures_retry_then_give_up() {
        let (_d, q) = queue().await;
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

    #[tokio::test]
    async fn retry_backoff_delays_the_next_claim() {
        let (_d, q) = queue().await;
        let q = q.with_retry_backoff(Duration::from_secs(60));
        q.enqueue("github", "d1", "ping", b"{}").await.unwrap();
        let d = q.claim("w", LEASE).await.unwrap().unwrap();
        q.fail(d.id, "transient", true).await.unwrap();
        assert!(q.claim("w", LEASE).await.unwrap().is_none());
        assert_eq!(q.depth().await.unwrap(), 1);
    }
}
