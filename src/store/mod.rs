//! The result cache: every model answer, embedding and judge verdict stored under its
//! content key, so a re-run makes no model call and base results are reused across PRs.
//!
//! SQLite (sqlx) is the embedded default; the schema lives in `migrations/` so the bot's
//! database carries the same table.

use std::path::Path;
use std::str::FromStr;

use anyhow::Context;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{Row, SqlitePool};

pub mod queue;
pub mod runs;

/// Kinds of cached result, stored beside the value for inspection and clean-up.
pub const KIND_CHAT: &str = "chat";
pub const KIND_EMBEDDING: &str = "embedding";
pub const KIND_GUARDRAIL: &str = "guardrail";

#[derive(Clone, Debug)]
pub struct Store {
    pool: SqlitePool,
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
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(std::time::Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await
            .with_context(|| format!("opening cache database {}", path.display()))?;
        Self::migrate(pool).await
    }

    /// Opens a `sqlite://…` URL (`sqlite::memory:` gives a private in-memory cache).
    pub async fn open_url(url: &str) -> anyhow::Result<Self> {
        let opts = SqliteConnectOptions::from_str(url)
            .with_context(|| format!("bad database URL {url}"))?
            .create_if_missing(true);
        // One connection: an in-memory database exists per connection.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts)
            .await
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
}
