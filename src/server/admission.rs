//! Admission to webhook intake: a bound on the bytes of request bodies being read at
//! once, and a deadline for reading one. Unsigned bodies are read before they can be
//! verified, so without these 32 concurrent 25 MB bodies took 443 MB, and a slow
//! sender held its connection (and its buffer) for as long as it liked.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use super::MAX_BODY_BYTES;

/// Bytes of webhook bodies read at once, across all connections (four maximal GitHub
/// payloads). A real delivery is a few KB to a few hundred KB.
pub const MAX_BODIES_IN_FLIGHT_BYTES: usize = 4 * MAX_BODY_BYTES;

/// How long a delivery may wait for room in the budget before it is refused with 503
/// (the forge can redeliver; GitLab retries by itself).
pub const ADMISSION_WAIT: Duration = Duration::from_secs(10);

/// How long reading and storing one delivery may take, headers to response. A slow
/// body is cut off with 408.
pub const INTAKE_DEADLINE: Duration = Duration::from_secs(30);

/// The unit the budget counts in.
const CHUNK: usize = 64 * 1024;

/// The shared budget of body bytes in flight, and the waits around it.
#[derive(Clone, Debug)]
pub struct Admission {
    permits: Arc<Semaphore>,
    /// See [`ADMISSION_WAIT`].
    pub wait: Duration,
    /// See [`INTAKE_DEADLINE`].
    pub deadline: Duration,
}

impl Default for Admission {
    fn default() -> Self {
        Self::new(MAX_BODIES_IN_FLIGHT_BYTES, ADMISSION_WAIT, INTAKE_DEADLINE)
    }
}

impl Admission {
    pub fn new(bytes: usize, wait: Duration, deadline: Duration) -> Self {
        Self {
            permits: Arc::new(Semaphore::new((bytes / CHUNK).max(1))),
            wait,
            deadline,
        }
    }

    /// Chunks a request must hold: its declared length, or the most a body may be when
    /// it declares none (chunked encoding).
    fn chunks_for(&self, declared: Option<usize>) -> u32 {
        let bytes = declared.unwrap_or(MAX_BODY_BYTES).min(MAX_BODY_BYTES);
        u32::try_from(bytes.div_ceil(CHUNK).max(1)).unwrap_or(u32::MAX)
    }
}

/// Middleware: holds budget for the request's body while the handler reads it.
pub async fn admit(State(budget): State<Admission>, req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES) {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            "webhook bodies are limited to 25 MiB\n",
        )
            .into_response();
    }
    let wanted = budget.chunks_for(declared);
    let acquire = budget.permits.clone().acquire_many_owned(wanted);
    let permit = match tokio::time::timeout(budget.wait, acquire).await {
        Ok(Ok(permit)) => permit,
        Ok(Err(_)) | Err(_) => {
            tracing::warn!(
                bytes = declared,
                "webhook intake is at its body budget; delivery refused with 503"
            );
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "5")],
                "too many webhook bodies are being read; retry shortly\n",
            )
                .into_response();
        }
    };
    let response = next.run(req).await;
    drop(permit);
    response
}
