//! `wait_for_agents`: how the orchestrator sleeps. One call blocks until all (or
//! any) of the named agents have settled or the timeout passes, sending MCP progress
//! notifications while it waits so clients that reset their timeout on progress keep
//! the call alive. An agent that asks a question (`needs_input`) ends the wait
//! whatever `until` says: nothing that waits on it moves until the orchestrator
//! answers.
//!
//! At shutdown (SIGTERM/SIGINT) a wait in flight does not vanish with its connection:
//! the server cancels its `stopping` token first, every wait answers at once as timed
//! out (with a note saying the server is restarting), and only then are the sessions
//! closed.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::agent::AgentHandle;
use crate::agent::state::AgentStatus;

/// How often a waiting call reports progress even when nothing settled.
pub const HEARTBEAT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    All,
    Any,
}

/// How a wait ended (when the client did not cancel it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The condition holds.
    Settled,
    /// The timeout passed.
    TimedOut,
    /// The server is shutting down: answered as timed out, with a note.
    Stopping,
}

impl Outcome {
    pub fn timed_out(self) -> bool {
        self != Outcome::Settled
    }

    /// What the orchestrator should know about how the wait ended.
    pub fn note(self) -> Option<String> {
        (self == Outcome::Stopping).then(|| {
            "the flotilla server is shutting down (restarting); the agents keep their state: call wait_for_agents again once it is back".to_string()
        })
    }
}

/// One progress report. MCP requires `progress` to increase with every
/// notification, so it counts seconds waited (out of the timeout); how many agents
/// have settled is in the message.
pub struct Progress {
    pub elapsed_s: f64,
    pub timeout_s: f64,
    pub message: String,
}

/// What ends a wait early: the client's cancellation, or the server stopping.
pub struct Stops<'a> {
    pub client: &'a CancellationToken,
    pub server: &'a CancellationToken,
}

/// Wait for `agents` (replaced by `replaced` when their handle changes) until the condition holds, `timeout` passes or the server stops.
/// `fleet` wakes on any settle change; `progress` is called on each change and every
/// [`HEARTBEAT`]. Returns `None` if the client cancels first.
pub async fn wait(
    agents: &mut [Arc<AgentHandle>],
    replaced: impl Fn(&Arc<AgentHandle>) -> Option<Arc<AgentHandle>>,
    until: Until,
    timeout: Duration,
    mut fleet: tokio::sync::watch::Receiver<u64>,
    stops: Stops<'_>,
    mut progress: impl FnMut(Progress) -> crate::provider::BoxFuture<'static, ()> + Send,
) -> Option<Outcome> {
    let started = Instant::now();
    let deadline = started + timeout;
    let mut heartbeat = tokio::time::interval_at(Instant::now() + HEARTBEAT, HEARTBEAT);
    let mut last_settled = None;
    let mut last_progress = 0.0_f64;
    let mut send = async |report: Progress| {
        let mut report = report;
        report.elapsed_s = report.elapsed_s.max(last_progress + 0.001);
        last_progress = report.elapsed_s;
        progress(report).await;
    };
    loop {
        fleet.borrow_and_update();
        // In a fleet of several nodes an agent's handle is replaced when it changes
        // node (a mirror taken over here, a lost lease shown as a mirror): follow it.
        for a in agents.iter_mut() {
            if a.peek(|s| s.deleted)
                && let Some(now) = replaced(a)
            {
                *a = now;
            }
        }
        let settled = agents.iter().filter(|a| a.peek(|s| s.settled())).count();
        let asking = agents
            .iter()
            .any(|a| a.peek(|s| s.status == AgentStatus::NeedsInput));
        let done = asking
            || match until {
                Until::All => settled == agents.len(),
                Until::Any => settled > 0 || agents.is_empty(),
            };
        if done {
            return Some(Outcome::Settled);
        }
        if stops.server.is_cancelled() {
            return Some(Outcome::Stopping);
        }
        if last_settled.is_some_and(|n| n != settled) {
            send(report(agents, settled, started, timeout)).await;
        }
        last_settled = Some(settled);
        tokio::select! {
            // The server stopping wins over the session ending with it: the wait
            // answers rather than vanishing.
            biased;
            _ = stops.server.cancelled() => return Some(Outcome::Stopping),
            _ = stops.client.cancelled() => return None,
            _ = tokio::time::sleep_until(deadline) => return Some(Outcome::TimedOut),
            changed = fleet.changed() => {
                if changed.is_err() {
                    // The registry is gone (shutdown); nothing will change any more.
                    return Some(Outcome::Stopping);
                }
            }
            _ = heartbeat.tick() => send(report(agents, settled, started, timeout)).await,
        }
    }
}

fn report(
    agents: &[Arc<AgentHandle>],
    settled: usize,
    started: Instant,
    timeout: Duration,
) -> Progress {
    let busy: Vec<String> = agents
        .iter()
        .filter_map(|a| {
            let s = a.state();
            (!s.settled()).then(|| match s.activity_text() {
                Some(act) => format!("{}: {act}", a.name()),
                None => format!("{}: queued", a.name()),
            })
        })
        .take(3)
        .collect();
    let mut message = format!("{settled}/{} settled", agents.len());
    if !busy.is_empty() {
        message.push_str("; ");
        message.push_str(&busy.join("; "));
    }
    Progress {
        elapsed_s: (started.elapsed().as_secs_f64() * 1000.0).ceil() / 1000.0,
        timeout_s: timeout.as_secs_f64(),
        message,
    }
}
