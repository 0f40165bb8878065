//! Webhook intake: how fast the real router acknowledges signed GitHub deliveries when
//! each one is durably inserted into a SQLite file (WAL) before the 202, compared with
//! a bare axum handler that only reads the body and answers 202, measured in the same
//! run on loopback.
//!
//! Targets, in the same process on separate runtimes (2 threads each):
//! * `bare`: `POST /` reads the body, answers 202.
//! * `durable`: `server::router(AppState)` as `serve` builds it — GitHub secret set,
//!   a temp-dir SQLite file database, HMAC-SHA256 verification, insert under
//!   UNIQUE(forge, delivery_id) — with NO worker, so it measures intake alone.
//! * `durable+workers`: the same through `server::run` with its 4 default workers and
//!   a no-op handler, so claims and completions compete with the inserts for the one
//!   SQLite writer, as in production.
//! * `store only`: `Queue::enqueue` called directly (no HTTP, no verification), closed
//!   loop only: the ceiling the durable write itself sets.
//! * With `PROMPTGATE_TEST_POSTGRES_URL` set (a Postgres server; `scripts/test.sh`
//!   starts one the same way): `pg durable` (one replica, no worker) and
//!   `pg 3 replicas+workers` (three services, each with its own pool and 4 workers, on
//!   one new database; requests go round-robin, so a redelivery usually reaches
//!   another replica than the first send and is deduplicated by the database).
//!
//! Every request is a real `pull_request` delivery body
//! (`tests/fixtures/github/webhook.pull_request.opened.cogni.raw-body.json`, 23 KB),
//! signed as GitHub signs it, with a unique `X-GitHub-Delivery`; every 10th request
//! re-sends the id of an earlier one (a redelivery: 200, nothing stored).
//!
//! Loads: (a) open loop at BENCH_RATE req/s for BENCH_OPEN_SECS s; latency is measured
//! from the *scheduled* send time, so a stalled server cannot hide its queueing
//! (no coordinated omission). (b) closed loop, BENCH_CONC connections sending
//! back-to-back for BENCH_CLOSED_SECS s: maximum throughput. Percentiles by sorting.
//! Logs go through a JSON subscriber at `info` into a sink, so their cost is counted.
//!
//! `cargo bench --bench intake` (env: BENCH_RATE, BENCH_OPEN_SECS, BENCH_CONC,
//! BENCH_CLOSED_SECS). It asserts nothing: errors are counted and printed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use async_trait::async_trait;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use promptgate::event::Event;
use promptgate::server::{self, AppState, EventHandler, ServeOptions};
use promptgate::settings::Settings;
use promptgate::store::queue::Queue;
use promptgate::store::Store;
use promptgate::webhook::verify::github_signature;
use tokio::runtime::Runtime;
use tokio::sync::oneshot;

const SECRET: &str = "bench-webhook-secret";
const FIXTURE: &str = "tests/fixtures/github/webhook.pull_request.opened.cogni.raw-body.json";
/// One request in this many is a redelivery of an earlier id.
const REDELIVERY_EVERY: u64 = 10;
const WARMUP: u64 = 200;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Does nothing with an event: the worker still claims and completes each delivery.
struct Noop;

#[async_trait]
impl EventHandler for Noop {
    async fn handle(&self, _delivery_id: &str, _event: Event) -> anyhow::Result<()> {
        Ok(())
    }
}

/// A server under test.
struct Target {
    name: &'static str,
    /// The replicas' intake URLs; requests go round-robin.
    urls: Vec<String>,
    /// The durable targets' store, to count what was stored.
    store: Option<Store>,
    /// The durable targets' queues (one per replica), to count intake transactions.
    queues: Vec<Queue>,
    /// Ids handed out to this target; redeliveries pick from below it.
    next_id: AtomicU64,
    /// Unique ids sent (first sends).
    unique_sent: AtomicU64,
    stops: Vec<oneshot::Sender<()>>,
    _dir: Option<tempfile::TempDir>,
}

impl Target {
    /// The delivery id for the next request: new, or every 10th an earlier one.
    fn delivery_id(&self, seq: u64) -> String {
        let id = if seq % REDELIVERY_EVERY == REDELIVERY_EVERY - 1 {
            // An id sent a few requests ago (it has normally been stored by now).
            self.next_id.load(Ordering::Relaxed).saturating_sub(5)
        } else {
            self.unique_sent.fetch_add(1, Ordering::Relaxed);
            self.next_id.fetch_add(1, Ordering::Relaxed)
        };
        format!("bench-{}-{id:08}", self.name)
    }
}

async fn start_bare() -> anyhow::Result<(SocketAddr, oneshot::Sender<()>)> {
    let app = Router::new().route("/", post(|_body: Bytes| async { StatusCode::ACCEPTED }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await;
    });
    Ok((addr, tx))
}

/// A durable service on `url` (a new SQLite file in `dir` when `url` is `None`).
async fn start_durable(
    workers: bool,
    url: Option<String>,
) -> anyhow::Result<(
    SocketAddr,
    oneshot::Sender<()>,
    Store,
    Queue,
    Option<tempfile::TempDir>,
)> {
    let (url, dir) = match url {
        Some(url) => (url, None),
        None => {
            let dir = tempfile::tempdir()?;
            let url = format!("sqlite://{}", dir.path().join("promptgate.db").display());
            (url, Some(dir))
        }
    };
    let vars: HashMap<&str, String> = [
        ("PROMPTGATE_GITHUB_TOKEN", "ghp_bench_token".to_string()),
        ("PROMPTGATE_GITHUB_WEBHOOK_SECRET", SECRET.to_string()),
        ("PROMPTGATE_DATABASE_URL", url.clone()),
    ]
    .into_iter()
    .collect();
    let settings = Settings::load(None, |k| vars.get(k).cloned())?;
    let store = server::open_store(&url).await?;
    let state = AppState::new(Arc::new(settings), store.clone())?;
    let queue = state.queue.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (tx, rx) = oneshot::channel::<()>();
    let shutdown = async {
        let _ = rx.await;
    };
    if workers {
        tokio::spawn(async move {
            let opts = ServeOptions {
                shutdown_grace: Duration::from_secs(1),
                ..ServeOptions::default()
            };
            if let Err(e) = server::run(state, listener, Arc::new(Noop), opts, shutdown).await {
                eprintln!("durable+workers server: {e:#}");
            }
        });
    } else {
        let app = server::router(state);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await;
        });
    }
    Ok((addr, tx, store, queue, dir))
}

/// `replicas` durable services (with workers or not) on one database: a new SQLite
/// file, or with `postgres` a new database on the test Postgres server.
async fn durable_target(
    name: &'static str,
    workers: bool,
    replicas: usize,
    postgres: bool,
) -> anyhow::Result<Target> {
    let url = if postgres {
        Some(promptgate::store::testing::new_postgres_database().await?)
    } else {
        None
    };
    let mut target = Target {
        name,
        urls: Vec::new(),
        store: None,
        queues: Vec::new(),
        next_id: AtomicU64::new(0),
        unique_sent: AtomicU64::new(0),
        stops: Vec::new(),
        _dir: None,
    };
    for _ in 0..replicas {
        let (addr, stop, store, queue, dir) = start_durable(workers, url.clone()).await?;
        target.urls.push(format!("http://{addr}/webhooks/github"));
        target.store.get_or_insert(store);
        target.queues.push(queue);
        target.stops.push(stop);
        if dir.is_some() {
            target._dir = dir;
        }
    }
    Ok(target)
}

/// One request's result: latency and status (None: transport error).
type Sample = (Duration, Option<u16>);

/// A delivery as the forge sends it: the body and its signature. The signature covers
/// only the body (the delivery id is a header), so it is computed once, as the forge's
/// CPU would, rather than by the load generator on the cores the server needs.
#[derive(Clone)]
struct Payload {
    body: Bytes,
    signature: String,
}

async fn send(
    client: &reqwest::Client,
    target: &Target,
    payload: &Payload,
    seq: u64,
    since: Instant,
) -> Sample {
    let delivery = target.delivery_id(seq);
    let url = &target.urls[seq as usize % target.urls.len()];
    let res = client
        .post(url)
        .header("content-type", "application/json")
        .header("user-agent", "GitHub-Hookshot/bench")
        .header("x-github-event", "pull_request")
        .header("x-github-delivery", delivery)
        .header("x-hub-signature-256", &payload.signature)
        .body(payload.body.clone())
        .send()
        .await;
    let status = match res {
        Ok(r) => {
            let s = r.status().as_u16();
            // Read the (small) answer, as a forge does, so the connection is reusable.
            match r.bytes().await {
                Ok(_) => Some(s),
                Err(_) => None,
            }
        }
        Err(_) => None,
    };
    (since.elapsed(), status)
}

struct Stats {
    sent: usize,
    accepted: usize,
    duplicate: usize,
    errors: usize,
    rate: f64,
    p50: f64,
    p99: f64,
    max: f64,
}

fn stats(mut samples: Vec<Sample>, wall: Duration) -> Stats {
    let sent = samples.len();
    let accepted = samples.iter().filter(|s| s.1 == Some(202)).count();
    let duplicate = samples.iter().filter(|s| s.1 == Some(200)).count();
    samples.sort_by_key(|s| s.0);
    let ms = |q: f64| -> f64 {
        if samples.is_empty() {
            return f64::NAN;
        }
        let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[i].0.as_secs_f64() * 1e3
    };
    Stats {
        sent,
        accepted,
        duplicate,
        errors: sent - accepted - duplicate,
        rate: (accepted + duplicate) as f64 / wall.as_secs_f64(),
        p50: ms(0.50),
        p99: ms(0.99),
        max: ms(1.0),
    }
}

/// Fixed arrival rate; each request's latency counts from when it was due.
async fn open_loop(
    client: &reqwest::Client,
    target: &Arc<Target>,
    payload: &Payload,
    rate: u64,
    secs: u64,
) -> Stats {
    let n = rate * secs;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let due = start + interval.mul_f64(i as f64);
        tokio::time::sleep_until(due.into()).await;
        let (client, target, payload) = (client.clone(), target.clone(), payload.clone());
        tasks.spawn(async move { send(&client, &target, &payload, i, due).await });
    }
    let mut samples = Vec::with_capacity(n as usize);
    while let Some(r) = tasks.join_next().await {
        samples.push(r.unwrap_or((Duration::MAX, None)));
    }
    stats(samples, start.elapsed())
}

/// `conc` connections, each sending its next request when the last is answered.
async fn closed_loop(
    client: &reqwest::Client,
    target: &Arc<Target>,
    payload: &Payload,
    conc: u64,
    secs: u64,
) -> Stats {
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    let seq = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..conc {
        let (client, target, payload, seq) =
            (client.clone(), target.clone(), payload.clone(), seq.clone());
        tasks.spawn(async move {
            let mut samples = Vec::new();
            while Instant::now() < end {
                let i = seq.fetch_add(1, Ordering::Relaxed);
                samples.push(send(&client, &target, &payload, i, Instant::now()).await);
            }
            samples
        });
    }
    let mut samples = Vec::new();
    while let Some(r) = tasks.join_next().await {
        samples.extend(r.unwrap_or_default());
    }
    stats(samples, start.elapsed())
}

/// The durable write alone, without HTTP or verification: `conc` tasks calling
/// `Queue::enqueue` back-to-back on a fresh file database, for the ceiling SQLite sets.
async fn store_only(body: &Bytes, conc: u64, secs: u64) -> anyhow::Result<(Stats, u64)> {
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("promptgate.db").display());
    let queue = Queue::new(server::open_store(&url).await?.db());
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..conc {
        let (queue, body, next) = (queue.clone(), body.clone(), next.clone());
        tasks.spawn(async move {
            let mut samples = Vec::new();
            while Instant::now() < end {
                let id = format!("store-{:08}", next.fetch_add(1, Ordering::Relaxed));
                let t = Instant::now();
                let status = match queue.enqueue("github", &id, "pull_request", &body).await {
                    Ok(_) => Some(202),
                    Err(_) => None,
                };
                samples.push((t.elapsed(), status));
            }
            samples
        });
    }
    let mut samples = Vec::new();
    while let Some(r) = tasks.join_next().await {
        samples.extend(r.unwrap_or_default());
    }
    Ok((stats(samples, start.elapsed()), queue.batches()))
}

fn row(name: &str, load: &str, s: &Stats) {
    println!(
        "{name:<16} {load:<13} {:>6} {:>6} {:>5} {:>4} {:>8.0} {:>7.2} {:>7.2} {:>7.1}",
        s.sent, s.accepted, s.duplicate, s.errors, s.rate, s.p50, s.p99, s.max
    );
}

fn main() -> anyhow::Result<()> {
    let rate = env_or("BENCH_RATE", 500);
    let open_secs = env_or("BENCH_OPEN_SECS", 10);
    let conc = env_or("BENCH_CONC", 32);
    let closed_secs = env_or("BENCH_CLOSED_SECS", 5);

    // As `serve` logs in production (JSON, info), but into a sink.
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .with_writer(std::io::sink)
        .init();

    let body = Bytes::from(
        std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(FIXTURE))
            .with_context(|| format!("reading {FIXTURE}"))?,
    );
    let payload = Payload {
        signature: github_signature(SECRET, &body),
        body: body.clone(),
    };
    // Servers and load generator on separate runtimes, so the generator's tasks do not
    // queue in front of the handlers (they still share the machine's cores).
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("server")
        .enable_all()
        .build()?;
    let client_rt: Runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("loadgen")
        .enable_all()
        .build()?;

    let mut targets = Vec::new();
    {
        let _guard = server_rt.enter();
        let (addr, stop) = server_rt.block_on(start_bare())?;
        targets.push(Target {
            name: "bare",
            urls: vec![format!("http://{addr}/")],
            store: None,
            queues: Vec::new(),
            next_id: AtomicU64::new(0),
            unique_sent: AtomicU64::new(0),
            stops: vec![stop],
            _dir: None,
        });
        for (name, workers) in [("durable", false), ("durable+workers", true)] {
            targets.push(server_rt.block_on(durable_target(name, workers, 1, false))?);
        }
        if std::env::var_os(promptgate::store::testing::POSTGRES_URL_VAR).is_some() {
            targets.push(server_rt.block_on(durable_target("pg durable", false, 1, true))?);
            targets.push(server_rt.block_on(durable_target(
                "pg 3 replicas+workers",
                true,
                3,
                true,
            ))?);
        }
    }
    let targets: Vec<Arc<Target>> = targets.into_iter().map(Arc::new).collect();

    println!(
        "intake: {} B signed pull_request deliveries, 1 in {REDELIVERY_EVERY} a redelivery; \
         open loop {rate} req/s x {open_secs} s, closed loop {conc} connections x {closed_secs} s",
        body.len()
    );
    println!(
        "{:<22} {:<13} {:>6} {:>6} {:>5} {:>4} {:>8} {:>7} {:>7} {:>7}",
        "target", "load", "sent", "202", "200", "err", "req/s", "p50 ms", "p99 ms", "max ms"
    );
    let mut results: Vec<(&'static str, Stats, Stats)> = Vec::new();
    client_rt.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(256)
            .build()?;
        for target in &targets {
            // Warm-up: connections, the page cache, the allocator.
            for i in 0..WARMUP {
                send(&client, target, &payload, i, Instant::now()).await;
            }
            let open = open_loop(&client, target, &payload, rate, open_secs).await;
            row(target.name, &format!("open {rate}/s"), &open);
            let closed = closed_loop(&client, target, &payload, conc, closed_secs).await;
            row(target.name, &format!("closed c={conc}"), &closed);
            results.push((target.name, open, closed));
        }
        anyhow::Ok(())
    })?;

    let (store, store_batches) = server_rt.block_on(store_only(&body, conc, closed_secs))?;
    row("store only", &format!("closed c={conc}"), &store);
    println!(
        "store only: {} deliveries in {store_batches} transactions ({:.1} per commit), \
         {:.1} MB/s of bodies",
        store.accepted,
        store.accepted as f64 / store_batches.max(1) as f64,
        store.rate * body.len() as f64 / 1e6
    );

    let bare = results.iter().find(|r| r.0 == "bare");
    for (name, open, closed) in results.iter().filter(|r| r.0 != "bare") {
        if let Some((_, bare_open, bare_closed)) = bare {
            println!(
                "{name}: throughput durable/bare = {:.2} (closed loop); p99 at {rate} req/s = \
                 {:.2} ms vs bare {:.2} ms ({:.1}x)",
                closed.rate / bare_closed.rate,
                open.p99,
                bare_open.p99,
                open.p99 / bare_open.p99
            );
        }
    }
    for target in &targets {
        let Some(store) = &target.store else { continue };
        let (rows, distinct): (i64, i64) = server_rt.block_on(
            sqlx::query_as("SELECT COUNT(*), COUNT(DISTINCT delivery_id) FROM deliveries")
                .fetch_one(store.pool()),
        )?;
        let sent = target.unique_sent.load(Ordering::Relaxed);
        let batches: u64 = target.queues.iter().map(Queue::batches).sum();
        println!(
            "{}: stored {rows} deliveries ({distinct} distinct ids) in {batches} transactions \
             for {sent} unique ids sent: {}",
            target.name,
            if rows as u64 == sent && distinct == rows {
                "nothing lost"
            } else {
                "MISMATCH"
            }
        );
    }
    for target in targets {
        if let Some(t) = Arc::into_inner(target) {
            for stop in t.stops {
                let _ = stop.send(());
            }
        }
    }
    server_rt.shutdown_timeout(Duration::from_secs(3));
    Ok(())
}
