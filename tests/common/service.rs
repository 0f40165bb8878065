//! The real service (router + queue + workers) on a loopback port over a SQLite file
//! (or a Postgres database, [`Postgres`]), with signed deliveries posted to it the way a
//! forge does. A test can stop it and start another on the same database (a restart).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use promptgate::server::worker::EventHandler;
use promptgate::server::{self, AppState, ServeOptions};
use promptgate::settings::Settings;
use promptgate::webhook::verify::github_signature;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub fn settings(pairs: &[(&str, &str)]) -> Settings {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Settings::load(None, move |k| map.get(k).cloned()).expect("settings")
}

pub fn test_options() -> ServeOptions {
    ServeOptions {
        workers: 2,
        lease: Duration::from_secs(30),
        poll_interval: Duration::from_millis(50),
        shutdown_grace: Duration::from_millis(100),
        retry_backoff: Duration::ZERO,
        conn: server::listen::ConnLimits {
            header_read: Duration::from_millis(500),
            drain: Duration::from_secs(2),
            ..server::listen::ConnLimits::default()
        },
    }
}

/// A client that opens a connection per request. The test server closes connections
/// idle for 500 ms, and a pooled one reused at that moment would fail a request for a
/// reason that is not the test's.
pub fn no_reuse_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("http client")
}

pub fn db_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("promptgate.db")
}

/// Where a test service keeps its state: a SQLite file's path, or [`Postgres`].
pub trait Database {
    fn url(&self) -> String;
}

impl Database for Path {
    fn url(&self) -> String {
        format!("sqlite://{}", self.display())
    }
}

impl Database for PathBuf {
    fn url(&self) -> String {
        self.as_path().url()
    }
}

/// A new database on the test Postgres server (`PROMPTGATE_TEST_POSTGRES_URL`).
pub struct Postgres(pub String);

impl Postgres {
    pub async fn new() -> Postgres {
        Postgres(
            promptgate::store::testing::new_postgres_database()
                .await
                .expect("a test Postgres database"),
        )
    }
}

impl Database for Postgres {
    fn url(&self) -> String {
        self.0.clone()
    }
}

pub struct Service {
    pub url: String,
    pub state: AppState,
    pub http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Service {
    /// Opens the database at `db` and serves with `make_handler(&state)` as the worker's
    /// handler.
    pub async fn start<F>(
        settings: Settings,
        db: &(impl Database + ?Sized),
        make_handler: F,
    ) -> Self
    where
        F: FnOnce(&AppState) -> Arc<dyn EventHandler>,
    {
        Service::start_with(settings, db, test_options(), make_handler).await
    }

    /// [`start`](Self::start) with serve options of the test's own (say one worker).
    pub async fn start_with<F>(
        settings: Settings,
        db: &(impl Database + ?Sized),
        options: ServeOptions,
        make_handler: F,
    ) -> Self
    where
        F: FnOnce(&AppState) -> Arc<dyn EventHandler>,
    {
        Service::start_named(settings, db, options, None, make_handler).await
    }

    /// [`start_with`](Self::start_with) as a replica on host `host` (else this
    /// machine's name, which every service of the test process shares, as a restarted
    /// process would).
    pub async fn start_named<F>(
        settings: Settings,
        db: &(impl Database + ?Sized),
        options: ServeOptions,
        host: Option<&str>,
        make_handler: F,
    ) -> Self
    where
        F: FnOnce(&AppState) -> Arc<dyn EventHandler>,
    {
        let store = server::open_store(&db.url()).await.expect("database");
        let mut state = AppState::new(Arc::new(settings), store).expect("state");
        if let Some(host) = host {
            state.identity = server::Identity::on_host(host);
        }
        let handler = make_handler(&state);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server::run(
            state.clone(),
            listener,
            handler,
            options,
            async move {
                let _ = rx.await;
            },
        ));
        Service {
            url,
            state,
            http: no_reuse_client(),
            stop: Some(tx),
            task,
        }
    }

    pub async fn post(
        &self,
        path: &str,
        headers: &[(String, String)],
        body: Vec<u8>,
    ) -> reqwest::Response {
        let mut req = self.http.post(format!("{}{path}", self.url)).body(body);
        for (k, v) in headers {
            req = req.header(k.as_str(), v.as_str());
        }
        req.send().await.expect("request")
    }

    /// A GitHub delivery signed with `secret`; the response status.
    pub async fn github(&self, event: &str, delivery: &str, secret: &str, body: &[u8]) -> u16 {
        let headers = vec![
            ("x-github-event".to_string(), event.to_string()),
            ("x-github-delivery".to_string(), delivery.to_string()),
            (
                "x-hub-signature-256".to_string(),
                github_signature(secret, body),
            ),
            ("content-type".to_string(), "application/json".to_string()),
        ];
        self.post("/webhooks/github", &headers, body.to_vec())
            .await
            .status()
            .as_u16()
    }

    /// A GitLab delivery with `token`; the response status.
    pub async fn gitlab(&self, event: &str, uuid: &str, token: &str, body: &[u8]) -> u16 {
        let headers = vec![
            ("x-gitlab-event".to_string(), event.to_string()),
            ("x-gitlab-event-uuid".to_string(), uuid.to_string()),
            ("x-gitlab-token".to_string(), token.to_string()),
            ("content-type".to_string(), "application/json".to_string()),
        ];
        self.post("/webhooks/gitlab", &headers, body.to_vec())
            .await
            .status()
            .as_u16()
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let r = self
            .http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .expect("request");
        (r.status().as_u16(), r.text().await.unwrap_or_default())
    }

    /// One text value from the database.
    pub async fn text(&self, sql: &str) -> String {
        sqlx::query_scalar(sql)
            .fetch_one(self.state.store.pool())
            .await
            .unwrap()
    }

    /// A GET with one extra request header.
    pub async fn get_with(&self, path: &str, name: &str, value: &str) -> (u16, String) {
        let r = self
            .http
            .get(format!("{}{path}", self.url))
            .header(name, value)
            .send()
            .await
            .expect("request");
        (r.status().as_u16(), r.text().await.unwrap_or_default())
    }

    /// One number from the database.
    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(self.state.store.pool())
            .await
            .unwrap()
    }

    /// Waits until every stored delivery is done or failed.
    pub async fn drained(&self) {
        wait_until(|| async { self.state.queue.depth().await.unwrap() == 0 }).await;
    }

    /// Stops the service the way `kill -9` would for its database: no graceful drain,
    /// no lease released, the evaluations dropped where they stand.
    pub async fn crash(self) {
        self.task.abort();
        let _ = self.task.await;
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the server stops")
            .expect("server task")
            .expect("server result");
    }
}

/// Polls `cond` every 20 ms for up to 20 s.
pub async fn wait_until<F, Fut>(mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..1000 {
        if cond().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("condition not reached within 20 s");
}

impl Service {
    /// Deliveries stored.
    pub async fn rows(&self) -> i64 {
        self.count("SELECT COUNT(*) FROM deliveries").await
    }

    /// Delivery ids stored, in arrival order.
    pub async fn delivery_ids(&self) -> Vec<String> {
        sqlx::query_scalar("SELECT delivery_id FROM deliveries ORDER BY id")
            .fetch_all(self.state.store.pool())
            .await
            .unwrap()
    }
}

impl Service {
    /// The service with the real run pipeline (`promptgate::bot::Bot`) talking to
    /// `forge` as the `kind` forge; links point at `http://bot.example`.
    pub async fn with_bot(
        settings: Settings,
        db: &(impl Database + ?Sized),
        kind: promptgate::event::ForgeKind,
        forge: Arc<dyn promptgate::forge::Forge>,
    ) -> Self {
        Service::bot_with(settings, db, test_options(), kind, forge).await
    }

    /// [`with_bot`](Self::with_bot) with serve options of the test's own.
    pub async fn bot_with(
        settings: Settings,
        db: &(impl Database + ?Sized),
        options: ServeOptions,
        kind: promptgate::event::ForgeKind,
        forge: Arc<dyn promptgate::forge::Forge>,
    ) -> Self {
        Service::bot_named(settings, db, options, None, kind, forge).await
    }

    /// [`bot_with`](Self::bot_with) as a replica on host `host`.
    pub async fn bot_named(
        settings: Settings,
        db: &(impl Database + ?Sized),
        options: ServeOptions,
        host: Option<&str>,
        kind: promptgate::event::ForgeKind,
        forge: Arc<dyn promptgate::forge::Forge>,
    ) -> Self {
        Service::start_named(settings, db, options, host, move |state| {
            let mut forges = HashMap::new();
            forges.insert(kind, forge);
            Arc::new(promptgate::bot::Bot::new(
                forges,
                state,
                "http://bot.example".into(),
                4,
            )) as Arc<dyn EventHandler>
        })
        .await
    }
}
