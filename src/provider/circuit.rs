//! One gate per provider, shared by every agent that uses it:
//!
//! - a cap on model calls in flight (`max_concurrent_requests`), so a rate-limited
//!   account is not hammered;
//! - a circuit breaker. After `circuit_failures` consecutive failed calls across the
//!   fleet (rate limits, overload, 5xx, connection trouble) the circuit opens for
//!   `circuit_open_s`: calls wait instead of each agent retrying on its own. Then one
//!   probe call goes through; its success closes the circuit, its failure opens it
//!   again. A long outage costs one request per interval, not agents × retries.
//!
//! Answers that show the provider is up — success, or a request it refused (400, 401,
//! …) — count as success for the circuit.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::sync::lock;

/// `[limits] circuit_failures`, `circuit_open_s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitPolicy {
    pub failures: u32,
    pub open_for: Duration,
}

impl Default for CircuitPolicy {
    fn default() -> Self {
        Self {
            failures: 5,
            open_for: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// The interval has passed; one probe call decides.
    HalfOpen {
        probing: bool,
    },
}

/// How a call went, for the circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The provider answered (a success, or a refusal such as 400 or 401).
    Answered,
    /// Rate limit, overload, 5xx, connection trouble, timeout.
    Failed,
}

pub struct Gate {
    name: String,
    /// Latency and failures of the calls through this gate (`/metrics`).
    pub calls: super::calls::CallStats,
    policy: CircuitPolicy,
    permits: Option<Arc<Semaphore>>,
    state: Mutex<State>,
    changed: Notify,
}

/// Leave to make one call: holds the in-flight permit; a probe that is dropped
/// without an outcome (cancelled) lets the next caller probe.
pub struct Pass {
    gate: Arc<Gate>,
    probe: bool,
    done: bool,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Pass {
    /// Report how the call went.
    pub fn finish(mut self, outcome: Outcome) {
        self.done = true;
        self.gate.record(self.probe, outcome);
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        if !self.done && self.probe {
            let mut state = lock(&self.gate.state);
            if *state == (State::HalfOpen { probing: true }) {
                *state = State::HalfOpen { probing: false };
            }
            drop(state);
            self.gate.changed.notify_waiters();
        }
    }
}

/// What a caller must do before it may call.
enum Admit {
    Go { probe: bool },
    WaitUntil(Instant),
    WaitForProbe,
}

impl Gate {
    pub fn new(name: &str, max_in_flight: Option<usize>, policy: CircuitPolicy) -> Self {
        Self {
            name: name.to_string(),
            calls: Default::default(),
            policy,
            permits: max_in_flight.map(|n| Arc::new(Semaphore::new(n.max(1)))),
            state: Mutex::new(State::Closed { failures: 0 }),
            changed: Notify::new(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether calls are being held now.
    pub fn is_open(&self) -> bool {
        !matches!(*lock(&self.state), State::Closed { .. })
    }

    /// Wait until a call may go. `on_wait(reason)` is called when the caller has to
    /// wait (and again every few seconds while it does), e.g. to show
    /// `waiting: anthropic unavailable (12s)`. Cancel-safe.
    pub async fn pass(self: &Arc<Self>, mut on_wait: impl FnMut(String) + Send) -> Pass {
        let started = Instant::now();
        let probe = loop {
            // Register interest before looking, so a change between the look and the
            // wait is not missed.
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let admit = self.admit();
            let until = match admit {
                Admit::Go { probe } => break probe,
                Admit::WaitUntil(until) => until,
                Admit::WaitForProbe => Instant::now() + Duration::from_secs(5),
            };
            on_wait(format!(
                "waiting: {} unavailable ({}s)",
                self.name,
                started.elapsed().as_secs()
            ));
            // Wake at the deadline or on any change; re-report at least every 5 s.
            let until = until.min(Instant::now() + Duration::from_secs(5));
            tokio::select! {
                _ = &mut changed => {}
                _ = tokio::time::sleep_until(until) => {}
            }
        };
        let mut pass = Pass {
            gate: self.clone(),
            probe,
            done: false,
            _permit: None,
        };
        if let Some(permits) = &self.permits {
            if permits.available_permits() == 0 {
                on_wait(format!(
                    "waiting: {} max_concurrent_requests reached",
                    self.name
                ));
            }
            // The semaphore is never closed.
            pass._permit = permits.clone().acquire_owned().await.ok();
        }
        pass
    }

    fn admit(&self) -> Admit {
        let mut state = lock(&self.state);
        match *state {
            State::Closed { .. } => Admit::Go { probe: false },
            State::Open { until } if Instant::now() < until => Admit::WaitUntil(until),
            State::Open { .. } | State::HalfOpen { probing: false } => {
                *state = State::HalfOpen { probing: true };
                Admit::Go { probe: true }
            }
            State::HalfOpen { probing: true } => Admit::WaitForProbe,
        }
    }

    fn record(&self, probe: bool, outcome: Outcome) {
        let mut state = lock(&self.state);
        let before = *state;
        *state = match (outcome, before) {
            (Outcome::Answered, _) => State::Closed { failures: 0 },
            (Outcome::Failed, State::Closed { failures }) => {
                let failures = failures + 1;
                if failures >= self.policy.failures {
                    State::Open {
                        until: Instant::now() + self.policy.open_for,
                    }
                } else {
                    State::Closed { failures }
                }
            }
            (Outcome::Failed, _) if probe => State::Open {
                until: Instant::now() + self.policy.open_for,
            },
            // A call admitted before the circuit opened failed too: it stays open.
            (Outcome::Failed, other) => other,
        };
        let after = *state;
        drop(state);
        match (before, after) {
            (State::Closed { .. }, State::Open { .. }) => tracing::warn!(
                provider = %self.name,
                open_s = self.policy.open_for.as_secs(),
                "circuit opened after {} consecutive failed calls; holding calls",
                self.policy.failures
            ),
            (State::HalfOpen { .. }, State::Open { .. }) => {
                tracing::warn!(provider = %self.name, "probe call failed; circuit stays open")
            }
            (State::HalfOpen { .. } | State::Open { .. }, State::Closed { .. }) => {
                tracing::info!(provider = %self.name, "provider answered; circuit closed")
            }
            _ => {}
        }
        self.changed.notify_waiters();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn gate(failures: u32, open_ms: u64) -> Arc<Gate> {
        Arc::new(Gate::new(
            "p",
            None,
            CircuitPolicy {
                failures,
                open_for: Duration::from_millis(open_ms),
            },
        ))
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_consecutive_failures_and_one_probe_closes_it() {
        let g = gate(2, 1000);
        g.pass(|_| {}).await.finish(Outcome::Failed);
        assert!(!g.is_open());
        g.pass(|_| {}).await.finish(Outcome::Failed);
        assert!(g.is_open());

        // Three callers arrive while it is open: exactly one probes after 1 s.
        let started = Instant::now();
        let waits = Arc::new(Mutex::new(Vec::new()));
        let probe = {
            let waits = waits.clone();
            g.pass(move |w| waits.lock().unwrap().push(w)).await
        };
        assert!(started.elapsed() >= Duration::from_millis(1000));
        assert!(probe.probe);
        assert!(waits.lock().unwrap()[0].starts_with("waiting: p unavailable"));
        let other = {
            let g = g.clone();
            tokio::spawn(async move { g.pass(|_| {}).await.probe })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!other.is_finished(), "held while the probe is out");
        probe.finish(Outcome::Answered);
        assert!(!other.await.unwrap(), "closed: an ordinary call");
        assert!(!g.is_open());
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_reopens_and_a_dropped_probe_lets_another_probe() {
        let g = gate(1, 500);
        g.pass(|_| {}).await.finish(Outcome::Failed);
        let probe = g.pass(|_| {}).await;
        assert!(probe.probe);
        probe.finish(Outcome::Failed);
        assert!(g.is_open());
        let probe = g.pass(|_| {}).await;
        drop(probe);
        let next = g.pass(|_| {}).await;
        assert!(next.probe, "a cancelled probe hands the probe on");
    }

    #[tokio::test]
    async fn max_in_flight_caps_concurrent_calls() {
        let g = Arc::new(Gate::new("p", Some(2), CircuitPolicy::default()));
        let a = g.pass(|_| {}).await;
        let _b = g.pass(|_| {}).await;
        let third = tokio::time::timeout(Duration::from_millis(20), g.pass(|_| {})).await;
        assert!(third.is_err());
        a.finish(Outcome::Answered);
        let c = tokio::time::timeout(Duration::from_millis(200), g.pass(|_| {})).await;
        assert!(c.is_ok());
    }
}
