//! The one way a test waits for state it can only see by looking again (a tool's
//! answer, a file, `/proc`, a log line): [`eventually`] re-checks a condition until it
//! holds, with a generous deadline and a panic that says what never became true.
//!
//! What can be awaited directly is awaited instead: the mock model's requests
//! ([`super::MockModel::wait_until`]), progress notifications
//! ([`super::Recorder::progress_arrived`]), a child's exit.

use std::fmt::Display;
use std::time::{Duration, Instant};

/// How long [`eventually`] keeps looking: generous, for a loaded CI machine.
pub const EVENTUALLY: Duration = Duration::from_secs(60);

/// What a check answers. It holds with `true`, `Some(value)` or `Ok(value)`; it does
/// not hold yet with `false`, `None` or `Err(seen)`, where `seen` says what it saw
/// (shown if it never holds).
pub trait Check {
    type Output;
    fn outcome(self) -> Result<Self::Output, String>;
}

impl Check for bool {
    type Output = ();
    fn outcome(self) -> Result<(), String> {
        if self { Ok(()) } else { Err(String::new()) }
    }
}

impl<T> Check for Option<T> {
    type Output = T;
    fn outcome(self) -> Result<T, String> {
        self.ok_or_else(String::new)
    }
}

impl<T, E: Display> Check for Result<T, E> {
    type Output = T;
    fn outcome(self) -> Result<T, String> {
        self.map_err(|e| e.to_string())
    }
}

/// Re-checks `check` until it holds and returns what it held with; panics after
/// [`EVENTUALLY`] saying that `what` never became true, and what the last check saw.
pub async fn eventually<C: Check>(what: &str, check: impl AsyncFnMut() -> C) -> C::Output {
    match poll(EVENTUALLY, check).await {
        Ok(value) => value,
        Err(seen) if seen.is_empty() => panic!("{what}: never became true within {EVENTUALLY:?}"),
        Err(seen) => panic!("{what}: never became true within {EVENTUALLY:?}; last seen: {seen}"),
    }
}

/// Re-checks `check` until it holds or `limit` passes: what it held with, or what the
/// last check saw. The loop behind [`eventually`], for the few waits whose time limit
/// is itself what a test asserts, or that say more than [`eventually`] when they fail.
pub async fn poll<C: Check>(
    limit: Duration,
    mut check: impl AsyncFnMut() -> C,
) -> Result<C::Output, String> {
    let deadline = Instant::now() + limit;
    let mut pause = Duration::from_millis(10);
    loop {
        let seen = match check().await.outcome() {
            Ok(value) => return Ok(value),
            Err(seen) => seen,
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(seen);
        }
        tokio::time::sleep(pause.min(left)).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}
