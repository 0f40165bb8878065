//! The retry policy, in one place: a per-attempt timeout, exponential backoff with
//! full jitter capped at [`MAX_BACKOFF`], and a provider's `Retry-After` honoured when
//! it asks for longer. Providers never retry on their own; they only say whether an
//! error is worth retrying ([`ProviderError::Retryable`]).

use std::future::Future;
use std::time::Duration;

use rand::Rng;
use tokio::sync::Semaphore;

use super::ProviderError;

/// The longest backoff between two attempts, before a provider's `Retry-After`.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The longest `Retry-After` honoured: a server asking for an hour is not waited for.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub max_attempts: u32,
    /// The backoff before retry n (0-based) is drawn from `0..=base * 2^n`.
    pub backoff_base: Duration,
    /// The time limit of one attempt.
    pub timeout: Duration,
}

impl RetryPolicy {
    pub fn new(max_attempts: u32, backoff_base: Duration, timeout: Duration) -> Self {
        Self {
            max_attempts,
            backoff_base,
            timeout,
        }
    }
}

/// Runs `f` until it succeeds, fails with a non-retryable error, or `max_attempts`
/// attempts have been made. Each attempt is limited to `policy.timeout`; a timeout is
/// retryable. When `limiter` is given, a permit is held for each attempt only (not
/// while backing off), and the time spent waiting for it does not count against the
/// timeout. Returns the outcome and the number of retries made (attempts - 1).
pub async fn with_retries<T, F, Fut>(
    policy: &RetryPolicy,
    limiter: Option<&Semaphore>,
    mut f: F,
) -> (Result<T, ProviderError>, u32)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ProviderError>>,
{
    let max_attempts = policy.max_attempts.max(1);
    let mut attempt: u32 = 0;
    loop {
        attempt += 1;
        let outcome = {
            let _permit = match limiter {
                Some(sem) => match sem.acquire().await {
                    Ok(permit) => Some(permit),
                    Err(_) => {
                        return (
                            Err(ProviderError::Fatal(
                                "the model-call limiter was closed".to_string(),
                            )),
                            attempt - 1,
                        )
                    }
                },
                None => None,
            };
            match tokio::time::timeout(policy.timeout, f()).await {
                Ok(result) => result,
                Err(_) => Err(ProviderError::Retryable {
                    message: format!("timed out after {}", format_duration(policy.timeout)),
                    retry_after: None,
                }),
            }
        };
        match outcome {
            Ok(value) => return (Ok(value), attempt - 1),
            Err(
                ProviderError::Retryable {
                    message,
                    retry_after,
                }
                | ProviderError::Throttled {
                    message,
                    retry_after,
                },
            ) => {
                if attempt >= max_attempts {
                    let plural = if attempt == 1 { "" } else { "s" };
                    return (
                        Err(ProviderError::Retryable {
                            message: format!("{message} (gave up after {attempt} attempt{plural})"),
                            retry_after: None,
                        }),
                        attempt - 1,
                    );
                }
                let delay = backoff_delay(policy.backoff_base, attempt - 1, retry_after);
                tracing::warn!(
                    "attempt {attempt}/{max_attempts} failed: {message}; retrying in {}",
                    format_duration(delay)
                );
                tokio::time::sleep(delay).await;
            }
            Err(other) => return (Err(other), attempt - 1),
        }
    }
}

/// The wait before retry `retry_index` (0 for the first retry): a uniformly random
/// duration in `0..=min(base * 2^retry_index, MAX_BACKOFF)` ("full jitter"), or the
/// provider's `retry_after` (capped at [`MAX_RETRY_AFTER`]) when that is longer.
pub fn backoff_delay(base: Duration, retry_index: u32, retry_after: Option<Duration>) -> Duration {
    let ceiling = 2u32
        .checked_pow(retry_index)
        .and_then(|factor| base.checked_mul(factor))
        .map_or(MAX_BACKOFF, |d| d.min(MAX_BACKOFF));
    let ceiling_us = u64::try_from(ceiling.as_micros()).unwrap_or(u64::MAX);
    let jittered = Duration::from_micros(rand::rng().random_range(0..=ceiling_us));
    match retry_after {
        Some(asked) => jittered.max(asked.min(MAX_RETRY_AFTER)),
        None => jittered,
    }
}

/// `60s` for whole seconds, `250ms` otherwise.
pub fn format_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn policy(max_attempts: u32) -> RetryPolicy {
        RetryPolicy::new(
            max_attempts,
            Duration::from_millis(1),
            Duration::from_millis(200),
        )
    }

    #[test]
    fn backoff_is_capped_and_honours_retry_after() {
        for n in 0..40 {
            let d = backoff_delay(Duration::from_secs(1), n, None);
            assert!(d <= MAX_BACKOFF, "{d:?}");
            assert!(d <= Duration::from_secs(1) * 2u32.saturating_pow(n));
        }
        let d = backoff_delay(Duration::from_millis(1), 0, Some(Duration::from_secs(2)));
        assert_eq!(d, Duration::from_secs(2));
        let d = backoff_delay(Duration::from_millis(1), 0, Some(Duration::from_secs(9999)));
        assert_eq!(d, MAX_RETRY_AFTER);
    }

    #[tokio::test]
    async fn retries_until_success_and_counts() {
        let calls = AtomicU32::new(0);
        let (r, retries) = with_retries(&policy(5), None, || async {
            if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                Err(ProviderError::Retryable {
                    message: "busy".into(),
                    retry_after: None,
                })
            } else {
                Ok(7)
            }
        })
        .await;
        assert_eq!(r.unwrap(), 7);
        assert_eq!(retries, 2);
    }

    #[tokio::test]
    async fn gives_up_and_says_how_many_attempts() {
        let (r, retries) = with_retries(&policy(3), None, || async {
            Err::<(), _>(ProviderError::Retryable {
                message: "HTTP 500".into(),
                retry_after: None,
            })
        })
        .await;
        let e = r.unwrap_err();
        assert!(e.is_retryable());
        assert_eq!(e.to_string(), "HTTP 500 (gave up after 3 attempts)");
        assert_eq!(retries, 2);
    }

    #[tokio::test]
    async fn fatal_is_not_retried() {
        let calls = AtomicU32::new(0);
        let (r, retries) = with_retries(&policy(5), None, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(ProviderError::Fatal("HTTP 400".into()))
        })
        .await;
        assert_eq!(r.unwrap_err().to_string(), "HTTP 400");
        assert_eq!(retries, 0);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_slow_attempt_times_out_and_is_retried() {
        let calls = AtomicU32::new(0);
        let (r, retries) = with_retries(
            &RetryPolicy::new(2, Duration::from_millis(1), Duration::from_millis(50)),
            None,
            || async {
                calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(5)).await;
                Ok(())
            },
        )
        .await;
        assert_eq!(
            r.unwrap_err().to_string(),
            "timed out after 50ms (gave up after 2 attempts)"
        );
        assert_eq!(retries, 1);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }
}
