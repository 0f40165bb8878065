//! The result cache: every model answer, embedding and judge verdict stored under its
//! content key, so a re-run makes no model call and base results are reused across PRs.
//!
//! SQLite (sqlx) is the embedded default and PostgreSQL the one several replicas share
//! ([`db`]); the schemas live in `migrations/` so the bot's database carries the same
//! table.

use std::path::Path;

use anyhow::Context;
use sqlx::{AnyPool, Row};

pub mod audit;
pub mod db;
pub mod queue;
pub mod runs;
pub mod spend;
#[doc(hidden)]
pub mod testing;
pub mod tickets;

pub use db::{Backend, Db};

/// Kinds of cached result, stored beside the value for inspection and clean-up.
pub const KIND_CHAT: &str = "chat";
pub const KIND_EMBEDDING: &str = "embedding";
pub const KIND_GUARDRAIL: &str = "guardrail";

#[derive(Clone, Debug)]
pub struct Store {
    db: Db,
}

impl Store {
    /// Opens (creating if needed) a SQLite database at `path` and applies migrations.
    pub async fn open_sqlite(path: &Path) -> anyhow::Result<Self> {
        Self::migrate(Db::open_sqlite(path).await?).await
    }

    /// Opens a `sqlite://…` or `postgres://…` URL (`sqlite::memory:` gives a private
    /// in-memory cache) and applies that backend's migrations.
    ///
    /// A SQLite file gets WAL, `synchronous=NORMAL` and a small pool (see
    /// [`db`]), so webhook intake and workers do not queue behind one connection.
    pub async fn open_url(url: &str) -> anyhow::Result<Self> {
        Self::migrate(Db::connect(url).await?).await
    }

    /// The two schemas live side by side (`migrations/sqlite`, `migrations/postgres`)
    /// with the same versions; `tests/store_backends.rs` keeps their tables and
    /// columns equal.
    async fn migrate(db: Db) -> anyhow::Result<Self> {
        let migrator = match db.backend() {
            Backend::Sqlite => sqlx::migrate!("./migrations/sqlite"),
            Backend::Postgres => sqlx::migrate!("./migrations/postgres"),
        };
        migrator
            .run(db.pool())
            .await
            .context("applying database migrations")?;
        Ok(Self { db })
    }

    pub async fn get(&self, key: &str) -> anyhow::Result<Option<serde_json::Value>> {
        let row = sqlx::query("SELECT value FROM results WHERE key = $1")
            .bind(key)
            .fetch_optional(self.db.pool())
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
        // SQLite allows 32,766 bound parameters, Postgres 65,535; stay far below.
        for chunk in keys.chunks(500) {
            let marks = (1..=chunk.len())
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(",");
            let sql = format!("SELECT key, value FROM results WHERE key IN ({marks})");
            let mut q = sqlx::query(&sql);
            for k in chunk {
                q = q.bind(k);
            }
            for row in q
                .fetch_all(self.db.pool())
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
            .db
            .pool()
            .begin()
            .await
            .context("writing the result cache")?;
        for (key, kind, value) in entries {
            sqlx::query(
                "INSERT INTO results (key, kind, value) VALUES ($1, $2, $3) \
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
            .fetch_one(self.db.pool())
            .await?;
        let n: i64 = row.try_get("n")?;
        Ok(n as u64)
    }

    /// One round trip to the database: what `/healthz` and `/readyz` ask.
    pub async fn ping(&self) -> anyhow::Result<()> {
        sqlx::query("SELECT 1")
            .execute(self.db.pool())
            .await
            .context("the database does not answer")?;
        Ok(())
    }

    pub fn pool(&self) -> &AnyPool {
        self.db.pool()
    }

    /// The database handle the table modules take.
    pub fn db(&self) -> Db {
        self.db.clone()
    }

    /// The `runs` table of this database.
    pub fn runs(&self) -> runs::Runs {
        runs::Runs::new(self.db())
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
