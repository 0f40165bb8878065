//! The result cache: every model answer, embedding and judge verdict stored under its
//! content key, so a re-run makes no model call and base results are reused across PRs.
//!
//! SQLite (sqlx) is the embedded default; the schema lives in `migrations/` so the bot's
//! database carries the same table.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

pub mod queue;
pub mod runs;
pub mod spend;
pub mod tickets;

/// Kinds of cached result, stored beside the value for inspection and clean-up.
pub const KIND_CHAT: &str = "chat";
pub const KIND_EMBEDDING: &str = "embedding";
pub const KIND_GUARDRAIL: &str = "guardrail";

#[derive(Clone, Debug)]
pub struct Store {
    pool: SqlitePool,
}

/// Connections in the pool of a file database. SQLite has a single writer, so more
/// connections only add readers (the worker's claims, `/metrics`, run pages) beside
/// the intake's inserts; a handful is enough and keeps lock contention low.
const FILE_POOL_MAX: u32 = 4;

/// How long a connection waits for another's write lock before the query fails.
/// Intake inserts take well under a millisecond, so this is only reached when the
/// disk stalls; a 503 then makes the forge redeliver.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings for a file database shared by concurrent requests and workers.
///
/// WAL lets readers run beside the one writer instead of blocking on it. With WAL,
/// `synchronous=NORMAL` syncs the log at checkpoints rather than at every commit: a
/// committed transaction survives a crash of the process (it is in the OS's page
/// cache), and only a power loss or OS crash can lose the last few commits — never
/// corrupt the database. That is the trade the intake wants: a 202 is cheap, and a
/// forge redelivers what the bot lost in the rare power cut.
///
/// `wal_autocheckpoint` stays at SQLite's 1000 pages: with 23 KB deliveries, 10,000
/// pages raised intake throughput by a few percent but made each checkpoint (which
/// runs on the committing connection, so in the intake writer's path) ~10× longer,
/// raising p99 from ~15 to ~80 ms under load. Larger pages (16/64 KB) did not help.
fn file_options(opts: SqliteConnectOptions) -> SqliteConnectOptions {
    opts.create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(BUSY_TIMEOUT)
}

/// Whether a `sqlite:` URL names an in-memory database (`sqlite::memory:`,
/// `sqlite://:memory:`, or `?mode=memory`), which exists only per connection.
fn is_in_memory(url: &str) -> bool {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let (database, params) = rest.split_once('?').unwrap_or((rest, ""));
    database == ":memory:" || params.split('&').any(|p| p == "mode=memory")
}

impl Store {
    /// Opens (creating if needed) a SQLite database at `path` and applies migrations.
    pub async fn open_sqlite(path: &Path) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating cache directory {}", dir.display()))?;
            }
        }
        let opts = file_options(SqliteConnectOptions::new().filename(path));
        let pool = SqlitePoolOptions::new()
            .max_connections(FILE_POOL_MAX)
            .connect_with(opts)
            .await
            .with_context(|| format!("opening cache database {}", path.display()))?;
        Self::migrate(pool).await
    }

    /// Opens a `sqlite://…` URL (`sqlite::memory:` gives a private in-memory cache).
    ///
    /// A file database gets WAL, `synchronous=NORMAL` and a small pool (see
    /// [`file_options`]), so webhook intake and workers do not queue behind one
    /// connection.
    pub async fn open_url(url: &str) -> anyhow::Result<Self> {
        let opts = SqliteConnectOptions::from_str(url)
            .with_context(|| format!("bad database URL {url}"))?;
        let pool = if is_in_memory(url) {
            // An in-memory database lives as long as its one connection: never let the
            // pool open a second one or retire the first.
            SqlitePoolOptions::new()
                .max_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .connect_with(opts.create_if_missing(true))
                .await
        } else {
            SqlitePoolOptions::new()
                .max_connections(FILE_POOL_MAX)
                .connect_with(file_options(opts))
                .await
        }
        .with_context(|| format!("opening database {url}"))?;
        Self::migrate(pool).await
    }

    async fn migrate(pool: SqlitePool) -> anyhow::Result<Self> {
        sqlx::migrate!("./migrations")
            .run(&pool)
            .await
            .context("applying database migrations")?;
        Ok(Self { pool })
    }

    pub async fn get(&self, key: &str) -> anyhow::Result<Option<serde_json::Value>> {
        let row = sqlx::query("SELECT value FROM results WHERE key = ?1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .context("reading the result cache")?;
        match row {
            None => Ok(None),
            Some(row) => {
                let text: String = row.try_get("value")?;
                Ok(Some(serde_json::from_str(&text).with_context(|| {
                    format!("cache entry {key} is not valid JSON")
                })?))
            }
        }
    }

    pub async fn put(
        &self,
        key: &str,
        kind: &'static str,
        value: &serde_json::Value,
    ) -> anyhow::Result<()> {
        self.put_many(&[(key.to_string(), kind, value.clone())])
            .await
    }

    /// Looks up many keys in a few queries; absent keys are simply not in the map.
    pub async fn get_many(
        &self,
        keys: &[String],
    ) -> anyhow::Result<std::collections::HashMap<String, serde_json::Value>> {
        let mut found = std::collections::HashMap::new();
        // SQLite allows 32,766 bound parameters; stay far below.
        for chunk in keys.chunks(500) {
            let marks = vec!["?"; chunk.len()].join(",");
            let sql = format!("SELECT key, value FROM results WHERE key IN ({marks})");
            let mut q = sqlx::query(&sql);
            for k in chunk {
                q = q.bind(k);
            }
            for row in q
                .fetch_all(&self.pool)
                .await
                .context("reading the result cache")?
            {
                let key: String = row.try_get("key")?;
                let text: String = row.try_get("value")?;
                match serde_json::from_str(&text) {
                    Ok(v) => {
                        found.insert(key, v);
                    }
                    Err(e) => {
                        tracing::warn!("cache entry {key} is not valid JSON ({e}); ignoring it")
                    }
                }
            }
        }
        Ok(found)
    }

    /// Writes many entries in one transaction.
    pub async fn put_many(
        &self,
        entries: &[(String, &'static str, serde_json::Value)],
    ) -> anyhow::Result<()> {
        let mut tx = self
            .pool
            .begin()
            .await
            .context("writing the result cache")?;
        for (key, kind, value) in entries {
            sqlx::query(
                "INSERT INTO results (key, kind, value) VALUES (?1, ?2, ?3) \
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value, kind = excluded.kind",
            )
            .bind(key)
            .bind(*kind)
            .bind(value.to_string())
            .execute(&mut *tx)
            .await
            .context("writing the result cache")?;
        }
        tx.commit().await.context("writing the result cache")?;
        Ok(())
    }

    pub async fn len(&self) -> anyhow::Result<u64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM results")
            .fetch_one(&self.pool)
            .await?;
        let n: i64 = row.try_get("n")?;
        Ok(n as u64)
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// The `runs` table of this database.
    pub fn runs(&self) -> runs::Runs {
        runs::Runs::new(self.pool.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn put_then_get() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("c/cache.db"))
            .await
            .unwrap();
        assert_eq!(store.get("k").await.unwrap(), None);
        store
            .put("k", KIND_CHAT, &serde_json::json!({"text": "hi"}))
            .await
            .unwrap();
        assert_eq!(store.get("k").await.unwrap().unwrap()["text"], "hi");
        assert_eq!(store.len().await.unwrap(), 1);
        store
            .put_many(&[
                ("a".into(), KIND_CHAT, serde_json::json!(1)),
                ("b".into(), KIND_CHAT, serde_json::json!(2)),
            ])
            .await
            .unwrap();
        let many = store
            .get_many(&["a".into(), "k".into(), "zz".into()])
            .await
            .unwrap();
        assert_eq!(many.len(), 2);
        assert_eq!(many["a"], serde_json::json!(1));
        assert!(!many.contains_key("zz"));
        store
            .put("a", KIND_CHAT, &serde_json::json!(3))
            .await
            .unwrap();
        assert_eq!(store.get("a").await.unwrap(), Some(serde_json::json!(3)));
        assert_eq!(store.len().await.unwrap(), 3);
        // Reopening keeps the entry: the cache outlives the process.
        drop(store);
        let store = Store::open_sqlite(&dir.path().join("c/cache.db"))
            .await
            .unwrap();
        assert_eq!(store.len().await.unwrap(), 3);
    }

    #[test]
    fn recognises_in_memory_urls() {
        assert!(is_in_memory("sqlite::memory:"));
        assert!(is_in_memory("sqlite://:memory:"));
        assert!(is_in_memory("sqlite://shared?mode=memory&cache=shared"));
        assert!(!is_in_memory("sqlite://promptgate.db"));
        assert!(!is_in_memory(
            "sqlite:///var/lib/promptgate/db.sqlite?mode=rwc"
        ));
    }

    #[tokio::test]
    async fn file_url_uses_wal_and_normal_sync() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("bot.db").display());
        let store = Store::open_url(&url).await.unwrap();
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(mode.to_ascii_lowercase(), "wal");
        // 1 = NORMAL.
        let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(sync, 1);
        // Concurrent writers all get through (the busy timeout absorbs contention).
        let writes = (0..64).map(|i| {
            let store = store.clone();
            async move {
                store
                    .put(&format!("k{i}"), KIND_CHAT, &serde_json::json!(i))
                    .await
            }
        });
        for r in futures::future::join_all(writes).await {
            r.unwrap();
        }
        assert_eq!(store.len().await.unwrap(), 64);
    }

    #[tokio::test]
    async fn in_memory_url_keeps_one_database() {
        let store = Store::open_url("sqlite::memory:").await.unwrap();
        let (a, b) = (store.clone(), store.clone());
        let (one, two) = (serde_json::json!(1), serde_json::json!(2));
        let (ra, rb) = tokio::join!(a.put("a", KIND_CHAT, &one), b.put("b", KIND_CHAT, &two));
        ra.unwrap();
        rb.unwrap();
        assert_eq!(store.len().await.unwrap(), 2);
        // Another in-memory store is a different database.
        let other = Store::open_url("sqlite::memory:").await.unwrap();
        assert_eq!(other.len().await.unwrap(), 0);
    }
}
