//! `promptgate serve` (SPEC §8): the HTTP endpoints and the workers.
//!
//! * `POST /webhooks/github`, `POST /webhooks/gitlab`: read the raw body (at most
//!   25 MiB), verify the signature over those bytes, store the delivery in the
//!   `deliveries` table (unique on the delivery id), answer 202 — or 200 for a
//!   redelivery, 401 for a bad or missing signature (nothing stored), 404 for a forge
//!   without a configured secret. Parsing and all work happen later, in a worker.
//! * `GET /healthz`, `GET /metrics` (Prometheus text), `GET /runs` (recent runs),
//!   `GET /runs/{id}` (the report as HTML), `GET /runs/{id}.json` (the stored report).

pub mod admission;
pub mod links;
pub mod listen;
pub mod metrics;
pub mod probe;
pub mod run_view;
pub mod runs;
pub mod word_diff;
pub mod worker;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};

use crate::event::{ForgeKind, INTERNAL_PREFIX};
use crate::settings::Settings;
use crate::store::queue::{Enqueued, Lane, Queue};
use crate::store::Store;
use crate::webhook::verify::{self, VerifyError};

pub use metrics::Metrics;
pub use worker::{EventHandler, LoggingHandler};

/// GitHub caps webhook payloads at 25 MB; anything larger is refused with 413.
pub const MAX_BODY_BYTES: usize = 25 * 1024 * 1024;

/// Longest accepted delivery id or event name (they are stored and logged).
const MAX_HEADER_VALUE: usize = 200;

/// Shared by the HTTP handlers (and handed to the run pipeline for metrics and links).
#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub store: Store,
    pub queue: Queue,
    pub metrics: Arc<Metrics>,
    /// Wakes an idle worker when a delivery was stored.
    pub wake: Arc<Notify>,
    pages: Arc<minijinja::Environment<'static>>,
    /// Bytes of webhook bodies being read at once, and how long one may take (see
    /// [`admission`]).
    pub admission: admission::Admission,
    /// Signs and checks the run links the bot posts.
    pub links: links::LinkSigner,
    /// Delivery workers running now; readiness needs at least one.
    pub workers_alive: Arc<std::sync::atomic::AtomicUsize>,
    /// Who this service is, for delivery leases and run claims.
    pub identity: Identity,
}

impl AppState {
    pub fn new(settings: Arc<Settings>, store: Store) -> anyhow::Result<Self> {
        let links = links::LinkSigner::from_settings(&settings);
        Ok(Self {
            queue: Queue::new(store.db()),
            settings,
            store,
            metrics: Arc::new(Metrics::new()),
            wake: Arc::new(Notify::new()),
            pages: Arc::new(runs::environment()?),
            admission: admission::Admission::default(),
            links,
            workers_alive: Arc::default(),
            identity: Identity::new(),
        })
    }
}

/// The HTTP routes.
pub fn router(state: AppState) -> Router {
    // Webhook intake reads unsigned bodies: bound the bytes in flight and the time one
    // delivery may take.
    let intake = Router::new()
        .route("/webhooks/github", post(github_webhook))
        .route("/webhooks/gitlab", post(gitlab_webhook))
        .layer(axum::middleware::from_fn_with_state(
            state.admission.clone(),
            admission::admit,
        ))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            state.admission.deadline,
        ));
    Router::new()
        .merge(intake)
        .route("/livez", get(livez))
        .route("/readyz", get(healthz))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .route("/runs", get(runs_index))
        .route("/runs/{id}", get(run_page))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Tuning of [`run`]; the defaults suit production.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub workers: usize,
    pub lease: Duration,
    pub poll_interval: Duration,
    pub shutdown_grace: Duration,
    pub retry_backoff: Duration,
    /// Header read timeout (also the keep-alive idle timeout) and connection cap.
    pub conn: listen::ConnLimits,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            workers: 4,
            lease: Duration::from_secs(300),
            poll_interval: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(20),
            retry_backoff: Duration::from_secs(10),
            conn: listen::ConnLimits::default(),
        }
    }
}

/// Who this service is, for leases and run claims: `replica` (`{host}~`) survives a
/// restart (the host name: a pod's, a container's, a machine's), `instance`
/// (`{host}~{pid}-{random}`, new for every start) does not, so a restarted replica can
/// take back at once what its crashed incarnation held. Lease owners are
/// `{instance}-{worker}`, run claims `{instance}#{random}`.
#[derive(Clone, Debug)]
pub struct Identity {
    pub replica: String,
    pub instance: String,
}

impl Identity {
    pub fn new() -> Identity {
        Identity::on_host(&replica_name())
    }

    /// A new instance of the replica named `host`.
    pub fn on_host(host: &str) -> Identity {
        let replica = format!("{}~", host.replace('~', "-"));
        let instance = format!(
            "{replica}{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        );
        Identity { replica, instance }
    }
}

impl Default for Identity {
    fn default() -> Self {
        Identity::new()
    }
}

/// This replica's stable name: `HOSTNAME`, else `/etc/hostname`, else `promptgate`.
/// Two processes sharing one database must not share it (a restarted one takes back
/// the other's leases); pods and containers have names of their own.
fn replica_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().replace('~', "-"))
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "promptgate".to_string())
}

/// Opens the database named by `PROMPTGATE_DATABASE_URL` and applies migrations.
pub async fn open_store(database_url: &str) -> anyhow::Result<Store> {
    crate::store::Backend::of_url(database_url).context("PROMPTGATE_DATABASE_URL")?;
    Store::open_url(database_url).await
}

/// Runs the service with the settings' database and address, the [`LoggingHandler`],
/// until ctrl-c or SIGTERM.
pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    serve_with(settings, |_| async {
        Ok(Arc::new(LoggingHandler) as Arc<dyn EventHandler>)
    })
    .await
}

/// [`serve`] with the event handler `make_handler` builds from the shared state (its
/// store, settings and [`Metrics`]), e.g. the run pipeline. It may await (the
/// CodeBuild executor loads the AWS configuration).
pub async fn serve_with<F, Fut>(settings: Settings, make_handler: F) -> anyhow::Result<()>
where
    F: FnOnce(AppState) -> Fut,
    Fut: Future<Output = anyhow::Result<Arc<dyn EventHandler>>>,
{
    settings.validate()?;
    let addr = settings.listen_addr()?;
    let store = open_store(&settings.database_url).await?;
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("PROMPTGATE_LISTEN: cannot bind {addr}"))?;
    let state = AppState::new(Arc::new(settings), store)?;
    let handler = make_handler(state.clone()).await?;
    run(
        state,
        listener,
        handler,
        ServeOptions::default(),
        shutdown_signal(),
    )
    .await
}

/// Serves `state` on `listener` with `opts.workers` workers until `shutdown` resolves;
/// then stops accepting requests, lets in-flight requests finish, stops the workers
/// (a running handler gets `opts.shutdown_grace`) and returns their leases.
pub async fn run(
    state: AppState,
    listener: TcpListener,
    handler: Arc<dyn EventHandler>,
    opts: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    match listener.local_addr() {
        Ok(addr) => tracing::info!(settings = ?state.settings, "promptgate listening on {addr}"),
        Err(e) => tracing::warn!("cannot read the listening address: {e}"),
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let Identity { replica, instance } = state.identity.clone();
    let worker_queue = state.queue.clone().with_retry_backoff(opts.retry_backoff);
    match worker_queue
        .reclaim_own(&replica, &format!("{instance}-"))
        .await
    {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            reclaimed = n,
            "returned the leases of this replica's previous run to the queue"
        ),
        Err(e) => tracing::warn!("cannot reclaim this replica's old leases: {e:#}"),
    }
    let mut workers = tokio::task::JoinSet::new();
    let mut owners = Vec::new();
    // `opts.workers` take anything; one more takes only comments, so commands are
    // answered while every other worker evaluates.
    let lanes = (0..opts.workers.max(1))
        .map(|i| (i.to_string(), Lane::Any))
        .chain([("commands".to_string(), Lane::Commands)]);
    for (name, lane) in lanes {
        let mut config = worker::WorkerConfig::new(
            format!("{instance}-{name}"),
            state.settings.repo_allowlist.clone(),
        );
        config.lane = lane;
        config.lease = opts.lease;
        config.poll_interval = opts.poll_interval;
        config.shutdown_grace = opts.shutdown_grace;
        config.wake = Some(state.wake.clone());
        owners.push(config.owner.clone());
        let alive = WorkerAlive::new(state.workers_alive.clone());
        let run = worker::run_worker(
            worker_queue.clone(),
            handler.clone(),
            config,
            stop_rx.clone(),
        );
        workers.spawn(async move {
            let _alive = alive;
            run.await;
        });
    }

    let notify_stop = stop_tx.clone();
    listen::serve(listener, router(state.clone()), opts.conn, async move {
        shutdown.await;
        tracing::info!("shutting down: no new requests or deliveries are taken");
        let _ = notify_stop.send(true);
    })
    .await;
    let _ = stop_tx.send(true);
    while let Some(joined) = workers.join_next().await {
        if let Err(e) = joined {
            tracing::error!("a worker stopped abnormally: {e}");
        }
    }
    // Workers release their own leases; this is the safety net if one died.
    for owner in &owners {
        if let Err(e) = worker_queue.release(owner).await {
            tracing::error!("cannot release leases of {owner}: {e:#}");
        }
    }
    tracing::info!("stopped");
    Ok(())
}

/// Counts a worker task as running until it ends, by return or by panic.
struct WorkerAlive(Arc<std::sync::atomic::AtomicUsize>);

impl WorkerAlive {
    fn new(count: Arc<std::sync::atomic::AtomicUsize>) -> Self {
        count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self(count)
    }
}

impl Drop for WorkerAlive {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Resolves on ctrl-c or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!("cannot listen for ctrl-c: {e}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn plain(status: StatusCode, msg: &'static str) -> Response {
    (status, msg).into_response()
}

async fn github_webhook(State(st): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    intake(&st, ForgeKind::Github, &headers, body).await
}

async fn gitlab_webhook(State(st): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    intake(&st, ForgeKind::Gitlab, &headers, body).await
}

/// Verify, then store, then acknowledge.
async fn intake(st: &AppState, forge: ForgeKind, headers: &HeaderMap, body: Bytes) -> Response {
    let secrets = match forge {
        ForgeKind::Github => &st.settings.github_webhook_secret,
        ForgeKind::Gitlab => &st.settings.gitlab_webhook_secret,
    };
    if secrets.is_empty() {
        return plain(
            StatusCode::NOT_FOUND,
            "webhooks from this forge are not served here (no webhook secret configured)\n",
        );
    }
    st.metrics.record_received(forge);

    let verified = match forge {
        ForgeKind::Github => verify::verify_github(
            secrets,
            header(headers, verify::GITHUB_SIGNATURE_HEADER),
            &body,
        ),
        ForgeKind::Gitlab => {
            verify::verify_gitlab(secrets, header(headers, verify::GITLAB_TOKEN_HEADER))
        }
    };
    if let Err(e) = verified {
        st.metrics.record_rejected(forge);
        // Never log the header value: on GitLab it *is* the secret.
        tracing::warn!(%forge, reason = %e, bytes = body.len(), "webhook rejected");
        let msg = match e {
            VerifyError::Missing => "missing webhook signature\n",
            _ => "webhook signature does not verify\n",
        };
        return plain(StatusCode::UNAUTHORIZED, msg);
    }

    let (event_header, ids): (&str, &[&str]) = match forge {
        ForgeKind::Github => ("x-github-event", &["x-github-delivery"]),
        ForgeKind::Gitlab => (
            "x-gitlab-event",
            &["idempotency-key", "x-gitlab-event-uuid"],
        ),
    };
    let Some(event) = header(headers, event_header)
        .map(str::trim)
        .filter(|e| !e.is_empty())
    else {
        return plain(StatusCode::BAD_REQUEST, "missing event header\n");
    };
    let delivery_id = match ids
        .iter()
        .find_map(|h| header(headers, h).map(str::trim).filter(|v| !v.is_empty()))
    {
        Some(id) => id.to_string(),
        None if forge == ForgeKind::Gitlab => {
            // Old GitLab sends neither header: the body identifies the event.
            format!("sha256:{}", hex::encode(Sha256::digest(&body)))
        }
        None => {
            return plain(
                StatusCode::BAD_REQUEST,
                "missing X-GitHub-Delivery header\n",
            )
        }
    };
    if event.len() > MAX_HEADER_VALUE || delivery_id.len() > MAX_HEADER_VALUE {
        return plain(
            StatusCode::BAD_REQUEST,
            "event or delivery id header too long\n",
        );
    }
    if event.starts_with(INTERNAL_PREFIX) || delivery_id.starts_with(INTERNAL_PREFIX) {
        return plain(
            StatusCode::BAD_REQUEST,
            "event names and delivery ids starting with \"promptgate:\" are the bot's own\n",
        );
    }
    if forge == ForgeKind::Github
        && header(headers, "content-type")
            .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"))
    {
        return plain(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "configure the webhook with content type application/json\n",
        );
    }

    match st
        .queue
        .enqueue(forge.as_str(), &delivery_id, event, &body)
        .await
    {
        Ok(Enqueued::New(id)) => {
            st.wake.notify_one();
            tracing::info!(%forge, delivery_id, event, row = id, "delivery queued");
            (
                StatusCode::ACCEPTED,
                Json(serde_json::json!({"status": "queued", "delivery": delivery_id})),
            )
                .into_response()
        }
        Ok(Enqueued::Duplicate) => {
            st.metrics.record_deduped(forge);
            tracing::info!(%forge, delivery_id, event, "redelivery ignored");
            (
                StatusCode::OK,
                Json(serde_json::json!({"status": "duplicate", "delivery": delivery_id})),
            )
                .into_response()
        }
        Err(e) => {
            tracing::error!(%forge, delivery_id, "cannot store the delivery: {e:#}");
            plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "cannot record the delivery right now; retry\n",
            )
        }
    }
}

/// The process answers: nothing else is checked, so a slow database does not get the
/// bot restarted.
async fn livez() -> Response {
    plain(StatusCode::OK, "ok\n")
}

/// Readiness (`/readyz`, and `/healthz` as SPEC §8 names it too): the database answers
/// and a delivery worker is running.
async fn healthz(State(st): State<AppState>) -> Response {
    use std::sync::atomic::Ordering;
    if st.workers_alive.load(Ordering::Relaxed) == 0 {
        return plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "no delivery worker is running\n",
        );
    }
    match st.store.ping().await {
        Ok(_) => plain(StatusCode::OK, "ok\n"),
        Err(e) => {
            tracing::error!("health check: database unavailable: {e:#}");
            plain(StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n")
        }
    }
}

async fn metrics_text(State(st): State<AppState>) -> Response {
    let gauges = async {
        let counts = st.queue.counts().await?;
        Ok::<_, anyhow::Error>(metrics::QueueGauges {
            depth: counts.queued + counts.running,
            quarantined: st.queue.quarantined().await?,
            failed: counts.failed,
            oldest_queued_age_secs: st.queue.oldest_queued_age_secs().await?,
        })
    };
    let queue = match gauges.await {
        Ok(q) => Some(q),
        Err(e) => {
            tracing::error!("metrics: {e:#}");
            None
        }
    };
    let mut text = st.metrics.render(queue);
    match crate::store::spend::SpendLog::new(st.store.db())
        .this_month()
        .await
    {
        Ok(rows) => text.push_str(&metrics::spend_lines(&rows)),
        Err(e) => tracing::error!("metrics: {e:#}"),
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// Who may read reports: the holder of this run's signed link (`link` is the run's
/// page id and the link's query), a web user (basic auth), or the user an
/// authenticating proxy names. The index has no link that signs it (`link` is `None`).
fn may_read(
    st: &AppState,
    headers: &HeaderMap,
    link: Option<(&str, &run_view::PageQuery)>,
) -> bool {
    let signed = link.is_some_and(|(id, q)| match (q.exp, q.sig.as_deref()) {
        (Some(exp), Some(sig)) => st.links.verify(id, exp, sig, std::time::SystemTime::now()),
        _ => false,
    });
    let proxied = st
        .settings
        .web_auth_header
        .as_deref()
        .and_then(|h| header(headers, h))
        .is_some_and(|user| !user.trim().is_empty());
    signed || proxied || links::basic_auth_ok(&st.settings, header(headers, "authorization"))
}

/// 401, with a basic-auth challenge when there are web users to sign in as.
fn unauthorized(st: &AppState, msg: &'static str) -> Response {
    let mut r = plain(StatusCode::UNAUTHORIZED, msg);
    if !st.settings.web_users.is_empty() {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            axum::http::HeaderValue::from_static("Basic realm=\"promptgate\""),
        );
    }
    r
}

/// Reports are private data: no cache keeps them, no Referer carries a signed link to
/// the sites a page links to, and an HTML page runs only its own script.
fn private(mut r: Response, csp: Option<&str>) -> Response {
    use axum::http::HeaderValue;
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Some(v) = csp.and_then(|c| HeaderValue::from_str(c).ok()) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    r
}

/// `GET /runs/{id}` (the page, filtered by the query) and `GET /runs/{id}.json` (the
/// stored report, byte for byte); the run's signed link opens both.
async fn run_page(
    State(st): State<AppState>,
    Path(id): Path<String>,
    axum::extract::Query(query): axum::extract::Query<run_view::PageQuery>,
    headers: HeaderMap,
) -> Response {
    let (id, json) = match id.strip_suffix(".json") {
        Some(id) => (id, true),
        None => (id.as_str(), false),
    };
    // Public ids are 32 hex characters; anything else (a row number) is no run.
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return private(plain(StatusCode::NOT_FOUND, "no such run\n"), None);
    }
    if !may_read(&st, &headers, Some((id, &query))) {
        return private(
            unauthorized(
                &st,
                "this run page needs the signed link the bot posted, or a sign-in\n",
            ),
            None,
        );
    }
    let csp = runs::content_security_policy();
    let response = match st.store.runs().by_public_id(id).await {
        Ok(None) => plain(StatusCode::NOT_FOUND, "no such run\n"),
        Ok(Some(run)) if json => match run.report_json {
            Some(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
            None => plain(StatusCode::NOT_FOUND, "this run has no report yet\n"),
        },
        Ok(Some(run)) => match runs::render(&st.pages, &st.settings, &run, id, &query) {
            Ok(html) => Html(html).into_response(),
            Err(e) => {
                tracing::error!(run = id, "{e:#}");
                plain(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "cannot render this run\n",
                )
            }
        },
        Err(e) => {
            tracing::error!(run = id, "{e:#}");
            plain(StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n")
        }
    };
    private(response, Some(&csp))
}

/// `GET /runs`: recent runs, newest first, `?repo=owner/name&pr=N&page=P&per_page=K`.
/// No link signs it: a web user or the proxy's user only.
async fn runs_index(
    State(st): State<AppState>,
    axum::extract::Query(query): axum::extract::Query<runs::IndexQuery>,
    headers: HeaderMap,
) -> Response {
    if !may_read(&st, &headers, None) {
        return private(unauthorized(&st, "the run index needs a sign-in\n"), None);
    }
    let (page, per_page) = query.page();
    let offset = (page - 1).saturating_mul(u64::from(per_page));
    // One more than a page: whether there is a next one.
    let response = match st
        .store
        .runs()
        .recent(&query.filter(), per_page + 1, offset)
        .await
    {
        Ok(list) => match runs::render_index(&st.pages, &st.settings, &query, list) {
            Ok(html) => Html(html).into_response(),
            Err(e) => {
                tracing::error!("{e:#}");
                plain(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "cannot render the runs\n",
                )
            }
        },
        Err(e) => {
            tracing::error!("{e:#}");
            plain(StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n")
        }
    };
    private(response, Some(&runs::content_security_policy()))
}
