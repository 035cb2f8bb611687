//! Bounded, cancellable retries around [`Provider::complete`].
//!
//! Each attempt has a deadline (`request_timeout`); a timed-out attempt is retried at
//! most `timeout_retries` times. `Retryable` errors (429, 529, 5xx, connection trouble,
//! timeouts) are tried again after an
//! exponential backoff with jitter, or after the server's `retry-after` when it gave one
//! (capped, so a confused server cannot park an agent for hours). `Fatal` errors and
//! cancellation end the call at once — cancellation even mid-request or mid-sleep.

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::circuit::{Gate, Outcome};
use super::{Provider, ProviderError};
use crate::model::{ModelRequest, ModelResponse};

/// How hard to try. Config: `[retry] max_retries, initial_backoff_ms, max_backoff_ms,
/// request_timeout_s, timeout_retries`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (so at most `max_retries + 1` calls).
    pub max_retries: u32,
    /// Wait before the first retry; doubles each retry.
    pub initial_backoff: Duration,
    /// Longest computed backoff.
    pub max_backoff: Duration,
    /// Deadline of one attempt, from sending the request to the end of the answer.
    pub request_timeout: Duration,
    /// How many attempts that ran into `request_timeout` are retried (within
    /// `max_retries`): a provider that hangs does not hold an agent for
    /// `max_retries` deadlines.
    pub timeout_retries: u32,
}

/// Default `request_timeout`: long non-streaming answers are slow.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(600);

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 5,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            timeout_retries: 1,
        }
    }
}

/// A server's `retry-after` is honoured up to `max(max_backoff, this)`.
pub const MIN_RETRY_AFTER_CAP: Duration = Duration::from_secs(60);

impl RetryPolicy {
    /// How long to wait before retry number `retry` (1-based) after `error`.
    pub fn delay(&self, retry: u32, error: &ProviderError) -> Duration {
        if let ProviderError::Retryable {
            retry_after: Some(wait),
            ..
        } = error
        {
            return (*wait).min(self.max_backoff.max(MIN_RETRY_AFTER_CAP));
        }
        let exponent = retry.saturating_sub(1).min(31);
        let backoff = self
            .initial_backoff
            .saturating_mul(1u32 << exponent)
            .min(self.max_backoff);
        // "Equal jitter": somewhere in [backoff/2, backoff], so a fleet of agents that hit
        // the same rate limit together does not retry together.
        backoff.mul_f64(0.5 + 0.5 * random_unit())
    }
}

/// Why [`complete_with_retry`] gave up.
#[derive(Debug, thiserror::Error)]
pub enum RetryError {
    /// The cancellation token fired.
    #[error("cancelled")]
    Cancelled,
    /// A fatal error, or retries ran out. When more than one attempt was made the
    /// message ends with how many, e.g. `… (gave up after 6 attempts)`.
    #[error("{0}")]
    Failed(ProviderError),
}

/// Call `provider.complete`, retrying `Retryable` errors per `policy`.
///
/// `on_retry(retry, &error, wait)` runs before each wait; `retry` counts from 1 up to
/// `policy.max_retries`, so a caller can show "retrying after HTTP 429 (2/5) in 4s".
/// The fleet always calls through a gate; tests call this gate-less form.
#[cfg(test)]
pub async fn complete_with_retry(
    provider: &dyn Provider,
    request: &ModelRequest<'_>,
    policy: &RetryPolicy,
    cancel: &CancellationToken,
    on_retry: &mut (dyn FnMut(u32, &ProviderError, Duration) + Send),
) -> Result<ModelResponse, RetryError> {
    complete_through_gate(
        provider,
        None,
        request,
        policy,
        cancel,
        on_retry,
        &mut |_| {},
    )
    .await
}

/// [`complete_with_retry`] through a provider's [`Gate`]: every attempt first passes
/// the gate (in-flight cap, circuit breaker) and reports its outcome to it. Time spent
/// waiting at the gate is not an attempt; `on_wait` says why the call is held.
pub async fn complete_through_gate(
    provider: &dyn Provider,
    gate: Option<&Arc<Gate>>,
    request: &ModelRequest<'_>,
    policy: &RetryPolicy,
    cancel: &CancellationToken,
    on_retry: &mut (dyn FnMut(u32, &ProviderError, Duration) + Send),
    on_wait: &mut (dyn FnMut(String) + Send),
) -> Result<ModelResponse, RetryError> {
    let mut attempt: u32 = 0;
    let mut timeouts: u32 = 0;
    loop {
        attempt += 1;
        let pass = match gate {
            None => None,
            Some(gate) => tokio::select! {
                biased;
                () = cancel.cancelled() => return Err(RetryError::Cancelled),
                pass = gate.pass(&mut *on_wait) => Some(pass),
            },
        };
        let started = std::time::Instant::now();
        let result = tokio::select! {
            biased;
            () = cancel.cancelled() => return Err(RetryError::Cancelled),
            result = tokio::time::timeout(policy.request_timeout, provider.complete(request)) => {
                result.unwrap_or_else(|_| {
                    timeouts += 1;
                    Err(ProviderError::Retryable {
                        status: None,
                        retry_after: None,
                        message: format!(
                            "the model call timed out: no complete answer within {}s ([retry] request_timeout_s)",
                            policy.request_timeout.as_secs_f64()
                        ),
                    })
                })
            }
        };
        if let Some(gate) = gate {
            gate.calls.observe(started.elapsed(), result.as_ref().err());
        }
        if let Some(pass) = pass {
            pass.finish(match &result {
                Err(ProviderError::Retryable { .. }) => Outcome::Failed,
                _ => Outcome::Answered,
            });
        }
        let error = match result {
            Ok(response) => return Ok(response),
            Err(error @ ProviderError::Fatal { .. }) => {
                return Err(RetryError::Failed(with_note(
                    error,
                    attempt,
                    format!("failed at attempt {attempt}"),
                )));
            }
            Err(error) if attempt > policy.max_retries || timeouts > policy.timeout_retries => {
                return Err(RetryError::Failed(with_note(
                    error,
                    attempt,
                    format!("gave up after {attempt} attempts"),
                )));
            }
            Err(error) => error,
        };
        let wait = policy.delay(attempt, &error);
        tracing::warn!(
            retry = attempt,
            max_retries = policy.max_retries,
            wait_ms = wait.as_millis() as u64,
            error = %error,
            "model call failed; retrying"
        );
        on_retry(attempt, &error, wait);
        tokio::select! {
            biased;
            () = cancel.cancelled() => return Err(RetryError::Cancelled),
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// Append `(note)` to the message when there was more than one attempt.
fn with_note(error: ProviderError, attempts: u32, note: String) -> ProviderError {
    if attempts <= 1 {
        return error;
    }
    match error {
        ProviderError::Retryable {
            status,
            retry_after,
            message,
        } => ProviderError::Retryable {
            status,
            retry_after,
            message: format!("{message} ({note})"),
        },
        ProviderError::Fatal { status, message } => ProviderError::Fatal {
            status,
            message: format!("{message} ({note})"),
        },
    }
}

/// A number in [0, 1) that differs per call; good enough for jitter, no extra crate.
fn random_unit() -> f64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU32, Ordering};

    use tokio::time::Instant;

    use super::*;
    use crate::model::{Message, StopReason, Usage};
    use crate::provider::BoxFuture;

    /// Answers from a script; once it runs out, every call hangs forever.
    struct Scripted {
        script: Mutex<VecDeque<Result<ModelResponse, ProviderError>>>,
        calls: AtomicU32,
    }

    impl Scripted {
        fn new(script: Vec<Result<ModelResponse, ProviderError>>) -> Self {
            Self {
                script: Mutex::new(script.into()),
                calls: AtomicU32::new(0),
            }
        }
        fn calls(&self) -> u32 {
            self.calls.load(Ordering::SeqCst)
        }
    }

    impl Provider for Scripted {
        fn complete<'a>(
            &'a self,
            _request: &'a ModelRequest<'a>,
        ) -> BoxFuture<'a, Result<ModelResponse, ProviderError>> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let next = self.script.lock().unwrap().pop_front();
            Box::pin(async move {
                match next {
                    Some(result) => result,
                    None => std::future::pending().await,
                }
            })
        }
    }

    fn ok() -> Result<ModelResponse, ProviderError> {
        Ok(ModelResponse {
            message: Message::user_text("done"),
            stop_reason: StopReason::EndTurn,
            usage: Usage::default(),
        })
    }

    fn busy(status: u16, retry_after: Option<Duration>) -> Result<ModelResponse, ProviderError> {
        Err(ProviderError::Retryable {
            status: Some(status),
            retry_after,
            message: format!("test: HTTP {status}: overloaded"),
        })
    }

    fn policy(max_retries: u32) -> RetryPolicy {
        RetryPolicy {
            max_retries,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            ..RetryPolicy::default()
        }
    }

    async fn run(
        provider: &Scripted,
        policy: &RetryPolicy,
        cancel: &CancellationToken,
    ) -> (
        Result<ModelResponse, RetryError>,
        Vec<(u32, Option<u16>, Duration)>,
    ) {
        let request = ModelRequest {
            model: "m",
            system: "",
            messages: &[],
            tools: &[],
            max_tokens: 10,
        };
        let mut seen = Vec::new();
        let mut on_retry = |retry: u32, error: &ProviderError, wait: Duration| {
            let status = match error {
                ProviderError::Retryable { status, .. } | ProviderError::Fatal { status, .. } => {
                    *status
                }
            };
            seen.push((retry, status, wait));
        };
        let result = complete_with_retry(provider, &request, policy, cancel, &mut on_retry).await;
        (result, seen)
    }

    #[tokio::test(start_paused = true)]
    async fn retries_then_succeeds() {
        let provider = Scripted::new(vec![busy(529, None), busy(429, None), ok()]);
        let start = Instant::now();
        let (result, seen) = run(&provider, &policy(5), &CancellationToken::new()).await;
        assert!(result.is_ok());
        assert_eq!(provider.calls(), 3);
        assert_eq!(seen.len(), 2);
        assert_eq!((seen[0].0, seen[0].1), (1, Some(529)));
        assert_eq!((seen[1].0, seen[1].1), (2, Some(429)));
        // Backoff with jitter: first in [0.5s, 1s], second in [1s, 2s].
        assert!(seen[0].2 >= Duration::from_millis(500) && seen[0].2 <= Duration::from_secs(1));
        assert!(seen[1].2 >= Duration::from_secs(1) && seen[1].2 <= Duration::from_secs(2));
        // Paused time moves in whole milliseconds.
        let slept = seen[0].2 + seen[1].2;
        assert!(start.elapsed() >= slept && start.elapsed() <= slept + Duration::from_millis(3));
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_max_retries_with_the_provider_message() {
        let provider = Scripted::new((0..10).map(|_| busy(503, None)).collect());
        let (result, seen) = run(&provider, &policy(2), &CancellationToken::new()).await;
        let Err(RetryError::Failed(error)) = result else {
            panic!("expected Failed, got {result:?}");
        };
        assert_eq!(provider.calls(), 3);
        assert_eq!(seen.len(), 2);
        let text = error.to_string();
        assert!(text.contains("HTTP 503: overloaded"), "{text}");
        assert!(text.contains("gave up after 3 attempts"), "{text}");
    }

    #[tokio::test(start_paused = true)]
    async fn fatal_errors_are_not_retried() {
        let fatal = Err(ProviderError::Fatal {
            status: Some(400),
            message: "test: HTTP 400: bad request".into(),
        });
        let provider = Scripted::new(vec![fatal, ok()]);
        let (result, seen) = run(&provider, &policy(5), &CancellationToken::new()).await;
        let Err(RetryError::Failed(error)) = result else {
            panic!("expected Failed, got {result:?}");
        };
        assert_eq!(error.to_string(), "test: HTTP 400: bad request");
        assert_eq!(provider.calls(), 1);
        assert!(seen.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn honours_retry_after_and_caps_it() {
        let provider = Scripted::new(vec![
            busy(429, Some(Duration::from_secs(7))),
            busy(429, Some(Duration::from_secs(3600))),
            ok(),
        ]);
        let start = Instant::now();
        let (result, seen) = run(&provider, &policy(5), &CancellationToken::new()).await;
        assert!(result.is_ok());
        assert_eq!(seen[0].2, Duration::from_secs(7));
        assert_eq!(seen[1].2, MIN_RETRY_AFTER_CAP);
        assert_eq!(start.elapsed(), Duration::from_secs(67));
    }

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let policy = policy(20);
        let error = busy(500, None).unwrap_err();
        for (retry, full) in [(1, 1), (2, 2), (3, 4), (5, 16), (6, 30), (20, 30)] {
            let full = Duration::from_secs(full);
            for _ in 0..20 {
                let wait = policy.delay(retry, &error);
                assert!(wait >= full / 2 && wait <= full, "retry {retry}: {wait:?}");
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn cancel_stops_a_sleep_promptly() {
        let provider = Scripted::new(vec![busy(429, Some(Duration::from_secs(50))), ok()]);
        let cancel = CancellationToken::new();
        let canceller = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            canceller.cancel();
        });
        let start = Instant::now();
        let (result, seen) = run(&provider, &policy(5), &cancel).await;
        assert!(matches!(result, Err(RetryError::Cancelled)), "{result:?}");
        assert_eq!(seen.len(), 1);
        assert_eq!(start.elapsed(), Duration::from_secs(2));
        assert_eq!(provider.calls(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_call_times_out_and_is_retried_a_bounded_number_of_times() {
        let provider = Scripted::new(vec![]);
        let policy = RetryPolicy {
            request_timeout: Duration::from_secs(10),
            timeout_retries: 2,
            ..policy(5)
        };
        let start = Instant::now();
        let (result, seen) = run(&provider, &policy, &CancellationToken::new()).await;
        let Err(RetryError::Failed(error)) = result else {
            panic!("expected Failed, got {result:?}");
        };
        let text = error.to_string();
        assert!(text.contains("timed out") && text.contains("10s"), "{text}");
        assert!(text.contains("gave up after 3 attempts"), "{text}");
        assert_eq!(provider.calls(), 3);
        assert_eq!(seen.len(), 2);
        let slept: Duration = seen.iter().map(|s| s.2).sum();
        assert!(start.elapsed() <= Duration::from_secs(30) + slept + Duration::from_millis(5));
    }

    #[tokio::test(start_paused = true)]
    async fn cancel_stops_a_hanging_request() {
        let provider = Scripted::new(vec![]);
        let cancel = CancellationToken::new();
        let canceller = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            canceller.cancel();
        });
        let (result, _) = run(&provider, &policy(5), &cancel).await;
        assert!(matches!(result, Err(RetryError::Cancelled)), "{result:?}");
        assert_eq!(provider.calls(), 1);
    }
}
