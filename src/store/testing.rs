//! Test support: the same store tests run on both backends. SQLite is a file in a temp
//! directory; Postgres is a fresh database on the server `PROMPTGATE_TEST_POSTGRES_URL`
//! names (`bash scripts/test.sh` installs Debian's `postgresql` and starts a throwaway
//! cluster on loopback). Without that variable the Postgres half fails, naming the
//! install, rather than passing by skipping.

use anyhow::Context;
use sqlx::Connection;

use super::{Backend, Store};

/// The variable naming the test Postgres server (a superuser URL to its `postgres`
/// database, e.g. `postgres://postgres@127.0.0.1:55432/postgres`).
pub const POSTGRES_URL_VAR: &str = "PROMPTGATE_TEST_POSTGRES_URL";

/// A store for one test; the temp directory (SQLite) lives as long as it does.
pub struct TestStore {
    pub store: Store,
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

impl TestStore {
    pub fn backend(&self) -> Backend {
        self.store.db().backend()
    }
}

/// A migrated SQLite file in a new temp directory.
pub async fn sqlite() -> TestStore {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let url = format!("sqlite://{}", dir.path().join("test.db").display());
    opened(url, Some(dir)).await
}

async fn opened(url: String, dir: Option<tempfile::TempDir>) -> TestStore {
    let store = Store::open_url(&url)
        .await
        .unwrap_or_else(|e| panic!("opening {url}: {e:#}"));
    TestStore {
        store,
        url,
        _dir: dir,
    }
}

/// The test server's URL, or a panic saying how to get one.
pub fn postgres_server_url() -> String {
    std::env::var(POSTGRES_URL_VAR).unwrap_or_else(|_| {
        panic!(
            "{POSTGRES_URL_VAR} is not set: these tests need a PostgreSQL server. Run them with \
             `bash scripts/test.sh`, which installs Debian's postgresql package and starts a \
             throwaway cluster on loopback, or point {POSTGRES_URL_VAR} at a server of your own"
        )
    })
}

/// A new, empty database on the test server: its URL.
pub async fn new_postgres_database() -> anyhow::Result<String> {
    let server = postgres_server_url();
    let name = format!("pg_test_{}", crate::server::links::new_public_id());
    let mut admin = sqlx::PgConnection::connect(&server)
        .await
        .with_context(|| format!("connecting to {}", crate::settings::redact_url(&server)))?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .context("creating a test database")?;
    admin.close().await.ok();
    Ok(with_database(&server, &name))
}

/// `url` with its database name replaced.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let root = match base[after_scheme..].find('/') {
        Some(i) => &base[..after_scheme + i],
        None => base,
    };
    match query {
        Some(q) => format!("{root}/{name}?{q}"),
        None => format!("{root}/{name}"),
    }
}

/// A migrated store on a new database of the test server.
pub async fn postgres() -> TestStore {
    let url = new_postgres_database()
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    opened(url, None).await
}

/// One store per backend, SQLite first.
pub async fn each_backend() -> Vec<TestStore> {
    vec![sqlite().await, postgres().await]
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn replaces_the_database_name() {
        assert_eq!(
            with_database("postgres://u@127.0.0.1:5/postgres", "t1"),
            "postgres://u@127.0.0.1:5/t1"
        );
        assert_eq!(
            with_database("postgres://u@h:5/postgres?sslmode=disable", "t1"),
            "postgres://u@h:5/t1?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "t1"), "postgres://h/t1");
    }
}
