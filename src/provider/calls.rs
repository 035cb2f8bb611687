//! Model-call statistics per provider gate, for `/metrics`: how long each attempt
//! took (a fixed-bucket histogram) and how the failed ones failed. Recorded by
//! [`crate::provider::retry::complete_through_gate`] around every attempt; lock-free
//! on the success path.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::ProviderError;
use crate::sync::lock;

/// Upper bounds of the latency buckets, in seconds (`+Inf` is implied).
pub const BUCKETS_S: [f64; 11] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];

/// What a failed model call was, for the `kind` label.
pub fn error_kind(error: &ProviderError) -> (&'static str, bool) {
    match error {
        ProviderError::Retryable { status, .. } => (
            match status {
                Some(429) => "rate_limited",
                Some(529) => "overloaded",
                Some(s) if *s >= 500 => "server_error",
                Some(_) => "http_error",
                None => "connection_or_timeout",
            },
            true,
        ),
        ProviderError::Fatal { status, .. } => (
            match status {
                Some(401 | 403) => "auth",
                Some(400 | 404 | 413 | 422) => "bad_request",
                Some(_) => "http_error",
                None => "bad_answer",
            },
            false,
        ),
    }
}

/// Counts for one gate.
#[derive(Debug, Default)]
pub struct CallStats {
    /// Non-cumulative counts per bucket; the last one is `+Inf`.
    buckets: [AtomicU64; BUCKETS_S.len() + 1],
    sum_us: AtomicU64,
    /// (kind, retryable) → count.
    errors: Mutex<BTreeMap<(&'static str, bool), u64>>,
}

/// A copy of the counts, cumulative buckets as Prometheus wants them.
#[derive(Debug, Clone, Default)]
pub struct CallSnapshot {
    pub cumulative: Vec<u64>,
    pub sum_s: f64,
    pub count: u64,
    pub errors: BTreeMap<(&'static str, bool), u64>,
}

impl CallStats {
    /// One attempt that took `elapsed` and ended with `error` (or an answer).
    pub fn observe(&self, elapsed: Duration, error: Option<&ProviderError>) {
        let secs = elapsed.as_secs_f64();
        let i = BUCKETS_S
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS_S.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
        if let Some(e) = error {
            *lock(&self.errors).entry(error_kind(e)).or_insert(0) += 1;
        }
    }

    pub fn snapshot(&self) -> CallSnapshot {
        let mut total = 0;
        let cumulative = self
            .buckets
            .iter()
            .map(|b| {
                total += b.load(Ordering::Relaxed);
                total
            })
            .collect();
        CallSnapshot {
            cumulative,
            sum_s: self.sum_us.load(Ordering::Relaxed) as f64 / 1e6,
            count: total,
            errors: lock(&self.errors).clone(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_errors_classified() {
        let s = CallStats::default();
        s.observe(Duration::from_millis(30), None);
        s.observe(Duration::from_millis(700), None);
        let rate = ProviderError::Retryable {
            status: Some(429),
            retry_after: None,
            message: String::new(),
        };
        s.observe(Duration::from_secs(500), Some(&rate));
        let snap = s.snapshot();
        assert_eq!(snap.count, 3);
        assert_eq!(snap.cumulative[0], 1);
        assert_eq!(snap.cumulative[4], 2, "0.7 s falls in the 1 s bucket");
        assert_eq!(*snap.cumulative.last().unwrap(), 3);
        assert_eq!(snap.errors[&("rate_limited", true)], 1);
        assert!((snap.sum_s - 500.73).abs() < 1e-6);
    }
}
