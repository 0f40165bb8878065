//! The database handle every table module shares: one sqlx `Any` pool and the backend
//! behind it, SQLite (the embedded default, one replica) or PostgreSQL (several
//! replicas sharing one database), chosen by the URL's scheme.
//!
//! The SQL is written once for both: `$N` placeholders (SQLite reads them too), times
//! computed here rather than by SQL functions, integers as 64-bit. Where the two must
//! differ (taking the write lock, claiming a queue row, the audit log's counter), the
//! [`Backend`] says how.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{Any, AnyPool, Executor, Transaction};

/// Which database a URL names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The backend of `sqlite:…`, `postgres://…` or `postgresql://…`; anything else is
    /// refused by name.
    pub fn of_url(url: &str) -> anyhow::Result<Backend> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else {
            anyhow::bail!(
                "database URL {}: expected sqlite://PATH or postgres://…",
                crate::settings::redact_url(url)
            )
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// A pool and the backend it speaks. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
}

/// Connections in the pool of a SQLite file. SQLite has a single writer, so more
/// connections only add readers (the worker's claims, `/metrics`, run pages) beside
/// the intake's inserts; a handful is enough and keeps lock contention low.
const SQLITE_FILE_POOL_MAX: u32 = 4;

/// Connections per replica on Postgres: the intake writer, the workers, the pages.
const POSTGRES_POOL_MAX: u32 = 10;

/// How long a connection waits for another's write lock before the query fails.
/// Intake inserts take well under a millisecond, so this is only reached when the
/// disk stalls; a 503 then makes the forge redeliver.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings for a SQLite file shared by concurrent requests and workers, run on every
/// new connection.
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
fn sqlite_file_pragmas() -> String {
    format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = {};",
        BUSY_TIMEOUT.as_millis()
    )
}

/// Whether a `sqlite:` URL names an in-memory database (`sqlite::memory:`,
/// `sqlite://:memory:`, or `?mode=memory`), which exists only per connection.
pub(crate) fn is_in_memory(url: &str) -> bool {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let (database, params) = rest.split_once('?').unwrap_or((rest, ""));
    database == ":memory:" || params.split('&').any(|p| p == "mode=memory")
}

/// The file a `sqlite:` URL names, when it names one.
pub(crate) fn sqlite_file(url: &str) -> anyhow::Result<Option<std::path::PathBuf>> {
    if is_in_memory(url) {
        return Ok(None);
    }
    let opts = sqlx::sqlite::SqliteConnectOptions::from_str(url)
        .with_context(|| format!("bad database URL {url}"))?;
    Ok(Some(opts.get_filename().to_path_buf()))
}

impl Db {
    /// Opens the database a URL names; a SQLite file (and its directory) is created
    /// when missing. Migrations are the caller's ([`crate::store::Store`]).
    pub async fn connect(url: &str) -> anyhow::Result<Db> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of_url(url)?;
        let shown = crate::settings::redact_url(url);
        let pool = match backend {
            Backend::Postgres => {
                let opts = AnyConnectOptions::from_str(url)
                    .with_context(|| format!("bad database URL {shown}"))?;
                AnyPoolOptions::new()
                    .max_connections(POSTGRES_POOL_MAX)
                    .connect_with(opts)
                    .await
            }
            Backend::Sqlite if is_in_memory(url) => {
                let opts = AnyConnectOptions::from_str(url)
                    .with_context(|| format!("bad database URL {shown}"))?;
                // An in-memory database lives as long as its one connection: never let
                // the pool open a second one or retire the first.
                AnyPoolOptions::new()
                    .max_connections(1)
                    .idle_timeout(None)
                    .max_lifetime(None)
                    .connect_with(opts)
                    .await
            }
            Backend::Sqlite => {
                let path = sqlite_file(url)?.context("a SQLite file URL names no file")?;
                create_sqlite_file(&path)?;
                let opts = AnyConnectOptions::from_str(url)
                    .with_context(|| format!("bad database URL {shown}"))?;
                AnyPoolOptions::new()
                    .max_connections(SQLITE_FILE_POOL_MAX)
                    .after_connect(|conn, _meta| {
                        Box::pin(async move {
                            conn.execute(sqlite_file_pragmas().as_str()).await?;
                            Ok(())
                        })
                    })
                    .connect_with(opts)
                    .await
            }
        }
        .with_context(|| format!("opening database {shown}"))?;
        Ok(Db { pool, backend })
    }

    /// Opens (creating if needed) the SQLite file at `path`.
    pub async fn open_sqlite(path: &Path) -> anyhow::Result<Db> {
        // The URL's path is percent-decoded: escape what would otherwise be read as
        // an escape, the query or a fragment.
        let escaped = path
            .display()
            .to_string()
            .replace('%', "%25")
            .replace('?', "%3F")
            .replace('#', "%23");
        Db::connect(&format!("sqlite://{escaped}")).await
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Starts a transaction that will write. SQLite takes its write lock up front
    /// (`BEGIN IMMEDIATE`): in WAL mode a deferred transaction's read-then-write
    /// upgrade fails with `SQLITE_BUSY` instead of waiting. Postgres locks rows as it
    /// goes, so a plain `BEGIN` is right there.
    pub async fn begin_write(&self) -> sqlx::Result<Transaction<'static, Any>> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }

    pub async fn close(&self) {
        self.pool.close().await
    }
}

/// Creates a SQLite file's directory and the empty file, which the `Any` driver will
/// not create itself (its URL options default to "must exist").
fn create_sqlite_file(path: &Path) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating database directory {}", dir.display()))?;
        }
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("creating database file {}", path.display()))?;
    Ok(())
}

/// Milliseconds since the Unix epoch: how leases and claims are stored and compared.
pub fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(millis)
        .unwrap_or(0)
}

/// A duration in milliseconds, saturating far below overflow when added to a time.
pub fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

/// The current UTC time as the store writes it: ISO 8601 with milliseconds and `Z`,
/// so text order is time order on both backends.
pub fn now_text() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// The current UTC calendar month, `YYYY-MM`.
pub fn this_month() -> String {
    chrono::Utc::now().format("%Y-%m").to_string()
}

/// Seconds from a stored time (see [`now_text`]) to now; `None` when it does not parse.
pub fn age_secs(stored: &str) -> Option<f64> {
    let then = chrono::DateTime::parse_from_rfc3339(stored).ok()?;
    let ms = (chrono::Utc::now() - then.with_timezone(&chrono::Utc)).num_milliseconds();
    Some(ms as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_choose_the_backend_and_others_are_refused() {
        assert_eq!(Backend::of_url("sqlite://x.db").unwrap(), Backend::Sqlite);
        assert_eq!(Backend::of_url("sqlite::memory:").unwrap(), Backend::Sqlite);
        assert_eq!(
            Backend::of_url("postgres://u:p@h/db").unwrap(),
            Backend::Postgres
        );
        assert_eq!(
            Backend::of_url("postgresql://h/db").unwrap(),
            Backend::Postgres
        );
        let err = Backend::of_url("mysql://u:secret@h/db")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("expected sqlite://PATH or postgres://"),
            "{err}"
        );
        assert!(!err.contains("secret"), "{err}");
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
    async fn a_sqlite_file_whose_path_looks_like_a_url_opens_where_it_says() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("odd ?#% name").join("cache.db");
        let db = Db::open_sqlite(&path).await.unwrap();
        sqlx::query("CREATE TABLE t (x INTEGER)")
            .execute(db.pool())
            .await
            .unwrap();
        db.close().await;
        assert!(path.is_file(), "{}", path.display());
    }

    #[test]
    fn times_are_iso_utc_with_milliseconds() {
        let t = now_text();
        assert_eq!(t.len(), "2026-12-04T19:23:33.123Z".len(), "{t}");
        assert!(t.ends_with('Z') && t.contains('T'), "{t}");
        let age = age_secs(&t).unwrap();
        assert!((0.0..5.0).contains(&age), "{age}");
        assert_eq!(age_secs("yesterday"), None);
        assert_eq!(this_month().len(), 7);
    }
}
