//! `wait_for_agents`: how the orchestrator sleeps. One call blocks until all (or
//! any) of the named agents have settled or the timeout passes, sending MCP progress
//! notifications while it waits so clients that reset their timeout on progress keep
//! the call alive.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::agent::AgentHandle;

/// How often a waiting call reports progress even when nothing settled.
pub const HEARTBEAT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    All,
    Any,
}

/// One progress report. MCP requires `progress` to increase with every
/// notification, so it counts seconds waited (out of the timeout); how many agents
/// have settled is in the message.
pub struct Progress {
    pub elapsed_s: f64,
    pub timeout_s: f64,
    pub message: String,
}

/// Wait for `agents` until the condition holds (returns false) or `timeout` passes
/// (returns true). `fleet` wakes on any settle change; `progress` is called on each
/// change and every [`HEARTBEAT`]. Returns `None` if `cancel` fires first.
pub async fn wait(
    agents: &[Arc<AgentHandle>],
    until: Until,
    timeout: Duration,
    mut fleet: tokio::sync::watch::Receiver<u64>,
    cancel: &CancellationToken,
    mut progress: impl FnMut(Progress) -> crate::provider::BoxFuture<'static, ()> + Send,
) -> Option<bool> {
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
        let settled = agents.iter().filter(|a| a.peek(|s| s.settled())).count();
        let done = match until {
            Until::All => settled == agents.len(),
            Until::Any => settled > 0 || agents.is_empty(),
        };
        if done {
            return Some(false);
        }
        if last_settled.is_some_and(|n| n != settled) {
            send(report(agents, settled, started, timeout)).await;
        }
        last_settled = Some(settled);
        tokio::select! {
            _ = cancel.cancelled() => return None,
            _ = tokio::time::sleep_until(deadline) => return Some(true),
            changed = fleet.changed() => {
                if changed.is_err() {
                    // The registry is gone (shutdown); nothing will change any more.
                    return Some(true);
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
