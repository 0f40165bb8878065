//! The retry policy of forge calls, in one place: a per-attempt timeout, exponential
//! backoff with full jitter, and the forge's own wait (`Retry-After`, the rate-limit
//! reset) honoured when it asks for longer — unless it asks for longer than
//! [`ForgeRetryPolicy::max_wait`], in which case the call fails at once (still
//! retryable, so the run can be retried later). Forge clients never retry on their own;
//! they only classify errors ([`ForgeError::Retryable`]).

use std::future::Future;
use std::time::Duration;

use rand::Rng;

use super::ForgeError;
use crate::execute::retry::format_duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ForgeRetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub max_attempts: u32,
    /// The backoff before retry n (0-based) is drawn from `0..=backoff_base * 2^n`.
    pub backoff_base: Duration,
    /// The longest jittered backoff.
    pub max_backoff: Duration,
    /// The wait after a rate-limit answer that says nothing about when to come back
    /// (GitHub asks for at least a minute).
    pub rate_limit_wait: Duration,
    /// The longest wait the forge may ask for that is honoured.
    pub max_wait: Duration,
    /// The time limit of one attempt.
    pub timeout: Duration,
}

impl Default for ForgeRetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            backoff_base: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            rate_limit_wait: Duration::from_secs(60),
            max_wait: Duration::from_secs(300),
            timeout: Duration::from_secs(30),
        }
    }
}

impl ForgeRetryPolicy {
    /// Millisecond delays, for tests against a fake forge. A `Retry-After` the fake
    /// sends is still honoured.
    pub fn fast() -> Self {
        Self {
            max_attempts: 5,
            backoff_base: Duration::from_millis(2),
            max_backoff: Duration::from_millis(20),
            rate_limit_wait: Duration::from_millis(10),
            max_wait: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
        }
    }

    /// The wait before retry `retry_index` (0 for the first retry): a uniformly random
    /// duration in `0..=min(backoff_base * 2^retry_index, max_backoff)`, or the
    /// forge's `retry_after` when that is longer.
    pub fn delay(&self, retry_index: u32, retry_after: Option<Duration>) -> Duration {
        let ceiling = 2u32
            .checked_pow(retry_index)
            .and_then(|factor| self.backoff_base.checked_mul(factor))
            .map_or(self.max_backoff, |d| d.min(self.max_backoff));
        let ceiling_us = u64::try_from(ceiling.as_micros()).unwrap_or(u64::MAX);
        let jittered = Duration::from_micros(rand::rng().random_range(0..=ceiling_us));
        match retry_after {
            Some(asked) => jittered.max(asked),
            None => jittered,
        }
    }
}

/// Runs `f` until it succeeds, fails permanently, or `max_attempts` attempts have been
/// made; `what` names the call in logs (never a credential).
pub async fn with_retries<T, F, Fut>(
    policy: &ForgeRetryPolicy,
    what: &str,
    mut f: F,
) -> Result<T, ForgeError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ForgeError>>,
{
    let max_attempts = policy.max_attempts.max(1);
    let mut attempt: u32 = 0;
    loop {
        attempt += 1;
        let outcome = match tokio::time::timeout(policy.timeout, f()).await {
            Ok(result) => result,
            Err(_) => Err(ForgeError::retryable(
                None,
                format!(
                    "{what}: timed out after {}",
                    format_duration(policy.timeout)
                ),
                None,
            )),
        };
        let (status, message, retry_after) = match outcome {
            Ok(value) => return Ok(value),
            Err(ForgeError::Retryable {
                status,
                message,
                retry_after,
            }) => (status, message, retry_after),
            Err(permanent) => return Err(permanent),
        };
        if let Some(asked) = retry_after.filter(|asked| *asked > policy.max_wait) {
            return Err(ForgeError::retryable(
                status,
                format!(
                    "{message} (the forge asked to wait {}, longer than {}; not waiting)",
                    format_duration(asked),
                    format_duration(policy.max_wait)
                ),
                retry_after,
            ));
        }
        if attempt >= max_attempts {
            let plural = if attempt == 1 { "" } else { "s" };
            return Err(ForgeError::retryable(
                status,
                format!("{message} (gave up after {attempt} attempt{plural})"),
                None,
            ));
        }
        let delay = policy.delay(attempt - 1, retry_after);
        tracing::warn!(
            "{what}: attempt {attempt}/{max_attempts} failed: {message}; retrying in {}",
            format_duration(delay)
        );
        tokio::time::sleep(delay).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test]
    async fn retries_retryable_until_success() {
        let calls = AtomicU32::new(0);
        let r = with_retries(&ForgeRetryPolicy::fast(), "GET /x", || async {
            if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                Err(ForgeError::retryable(Some(502), "HTTP 502", None))
            } else {
                Ok(1)
            }
        })
        .await;
        assert_eq!(r, Ok(1));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn permanent_is_not_retried_and_attempts_are_bounded() {
        let calls = AtomicU32::new(0);
        let r: Result<(), _> = with_retries(&ForgeRetryPolicy::fast(), "POST /x", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(ForgeError::permanent(Some(422), "HTTP 422"))
        })
        .await;
        assert_eq!(r.map_err(|e| e.status()), Err(Some(422)));
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        let calls = AtomicU32::new(0);
        let r: Result<(), _> = with_retries(&ForgeRetryPolicy::fast(), "GET /x", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(ForgeError::retryable(Some(500), "HTTP 500", None))
        })
        .await;
        let e = r.err().map(|e| e.to_string());
        assert_eq!(e.as_deref(), Some("HTTP 500 (gave up after 5 attempts)"));
        assert_eq!(calls.load(Ordering::SeqCst), 5);
    }

    #[tokio::test]
    async fn a_wait_longer_than_max_wait_is_not_waited_for() {
        let calls = AtomicU32::new(0);
        let r: Result<(), _> = with_retries(&ForgeRetryPolicy::fast(), "GET /x", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(ForgeError::retryable(
                Some(429),
                "rate limited",
                Some(Duration::from_secs(3600)),
            ))
        })
        .await;
        let e = r.err();
        assert!(e.as_ref().is_some_and(ForgeError::is_retryable));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn delay_honours_retry_after_and_cap() {
        let p = ForgeRetryPolicy::default();
        for n in 0..40 {
            assert!(p.delay(n, None) <= p.max_backoff);
        }
        assert_eq!(
            ForgeRetryPolicy::fast().delay(0, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
    }
}
