//! The HTTP accept loop. `axum::serve` keeps hyper's defaults: no limit on how long a
//! client may take to send its headers, and keep-alive connections that may sit idle
//! forever, so a thousand slow or silent sockets hold the service's memory and file
//! descriptors. Here every connection must deliver a request's headers within
//! [`ConnLimits::header_read`] of being ready for one (which also closes an idle
//! keep-alive connection after that long), and at most [`ConnLimits::max_connections`]
//! are open at once; further clients wait in the kernel's backlog.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// How long and how many connections the server keeps.
#[derive(Clone, Copy, Debug)]
pub struct ConnLimits {
    /// From the moment a connection may send a request (opened, or its last response
    /// written) until that request's headers are complete.
    pub header_read: Duration,
    pub max_connections: usize,
    /// After shutdown begins, how long requests in flight may take to finish.
    pub drain: Duration,
}

impl Default for ConnLimits {
    fn default() -> Self {
        Self {
            header_read: Duration::from_secs(10),
            max_connections: 1024,
            drain: Duration::from_secs(30),
        }
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets the requests
/// in flight finish (at most `limits.drain`).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()>,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read);
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = Arc::clone(&slots).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors, say: back off instead of spinning.
                    tracing::warn!("cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = TowerToHyperService::new(router.clone());
        let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, "connection closed: {e}");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "requests still in flight after {} s; stopping anyway",
            limits.drain.as_secs()
        );
    }
}
