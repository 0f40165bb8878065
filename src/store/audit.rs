//! The `audit_log` table's SQL: the append transaction (with the log's write lock),
//! the last entry, the id counter, the insert, and every row in id order. The chain's
//! rules (hashing, what is broken) live in [`crate::audit`].

use anyhow::Context;
use futures::stream::BoxStream;
use futures::TryStreamExt;
use sqlx::{Any, Transaction};

use super::{Backend, Db};

/// One `audit_log` row as stored.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct AuditRow {
    pub id: i64,
    pub at: String,
    pub kind: String,
    pub actor_id: Option<i64>,
    pub actor_login: String,
    pub forge: String,
    pub repo: String,
    pub pr: Option<i64>,
    pub sha: Option<String>,
    pub verdict: Option<String>,
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
}

/// The advisory lock key Postgres appenders serialise on (any constant will do; this
/// one is "pgaudit" in ASCII).
const APPEND_LOCK: i64 = 0x70_67_61_75_64_69_74;

const SELECT_ALL: &str = "SELECT id, at, kind, actor_id, actor_login, forge, repo, pr, sha, \
                          verdict, detail, prev_hash, hash FROM audit_log ORDER BY id";

/// A transaction holding the log's write lock: SQLite's (`BEGIN IMMEDIATE`, see
/// [`Db::begin_write`]) or, on Postgres, a transaction-scoped advisory lock, so two
/// appenders (tasks, processes, replicas) never both link to the same predecessor.
pub async fn begin_append(db: &Db) -> anyhow::Result<Transaction<'static, Any>> {
    let mut tx = db
        .begin_write()
        .await
        .context("audit log: starting the append transaction")?;
    if db.backend() == Backend::Postgres {
        // Wrapped: the `Any` driver cannot decode a `void` column.
        sqlx::query("SELECT COUNT(*) FROM (SELECT pg_advisory_xact_lock($1)) AS locked")
            .bind(APPEND_LOCK)
            .execute(&mut *tx)
            .await
            .context("audit log: taking the append lock")?;
    }
    Ok(tx)
}

/// The id and hash of the newest entry.
pub async fn last_entry(
    tx: &mut Transaction<'static, Any>,
) -> anyhow::Result<Option<(i64, String)>> {
    sqlx::query_as("SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1")
        .fetch_optional(&mut **tx)
        .await
        .context("audit log: reading the last entry")
}

/// The id counter of `audit_log`: the highest id ever inserted, even if that row is
/// gone. SQLite's AUTOINCREMENT keeps it in `sqlite_sequence` (in the transaction); on
/// Postgres it is the id sequence, which [`insert`] advances. `None` before the first
/// append.
pub async fn id_counter(
    backend: Backend,
    conn: &mut sqlx::AnyConnection,
) -> anyhow::Result<Option<i64>> {
    let sql = match backend {
        Backend::Sqlite => "SELECT seq FROM sqlite_sequence WHERE name = 'audit_log'",
        Backend::Postgres => {
            "SELECT pg_sequence_last_value(pg_get_serial_sequence('audit_log', 'id')::regclass)"
        }
    };
    let found: Option<Option<i64>> = sqlx::query_scalar(sql)
        .fetch_optional(conn)
        .await
        .context("audit log: reading the id counter")?;
    Ok(found.flatten())
}

/// [`id_counter`] on a pooled connection.
pub async fn stored_id_counter(db: &Db) -> anyhow::Result<Option<i64>> {
    let mut conn = db
        .pool()
        .acquire()
        .await
        .context("audit log: reading the id counter")?;
    id_counter(db.backend(), &mut conn).await
}

/// Inserts `row` (its id chosen by the caller) in the append transaction.
pub async fn insert(
    backend: Backend,
    tx: &mut Transaction<'static, Any>,
    row: &AuditRow,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO audit_log (id, at, kind, actor_id, actor_login, forge, repo, pr, sha, \
         verdict, detail, prev_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(row.id)
    .bind(&row.at)
    .bind(&row.kind)
    .bind(row.actor_id)
    .bind(&row.actor_login)
    .bind(&row.forge)
    .bind(&row.repo)
    .bind(row.pr)
    .bind(&row.sha)
    .bind(&row.verdict)
    .bind(&row.detail)
    .bind(&row.prev_hash)
    .bind(&row.hash)
    .execute(&mut **tx)
    .await
    .context("audit log: inserting the entry")?;
    if backend == Backend::Postgres {
        // Explicit ids do not move the sequence; move it, so that the counter says how
        // far the log got even after its tail is deleted.
        sqlx::query("SELECT setval(pg_get_serial_sequence('audit_log', 'id'), $1)")
            .bind(row.id)
            .execute(&mut **tx)
            .await
            .context("audit log: advancing the id counter")?;
    }
    Ok(())
}

/// Every row, oldest first.
pub fn all(db: &Db) -> BoxStream<'_, anyhow::Result<AuditRow>> {
    Box::pin(
        sqlx::query_as::<_, AuditRow>(SELECT_ALL)
            .fetch(db.pool())
            .map_err(|e| anyhow::Error::new(e).context("audit log: reading entries")),
    )
}
