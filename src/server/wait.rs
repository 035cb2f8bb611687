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

/// One progress report: how many settled of how many, and what is going on.
pub struct Progress {
    pub settled: usize,
    pub total: usize,
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
    let deadline = Instant::now() + timeout;
    let mut heartbeat = tokio::time::interval_at(Instant::now() + HEARTBEAT, HEARTBEAT);
    let mut last_settled = None;
    loop {
        fleet.borrow_and_update();
        let settled = agents.iter().filter(|a| a.state().settled()).count();
        let done = match until {
            Until::All => settled == agents.len(),
            Until::Any => settled > 0 || agents.is_empty(),
        };
        if done {
            return Some(false);
        }
        if last_settled.is_some_and(|n| n != settled) {
            progress(report(agents, settled)).await;
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
            _ = heartbeat.tick() => progress(report(agents, settled)).await,
        }
    }
}

fn report(agents: &[Arc<AgentHandle>], settled: usize) -> Progress {
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
        settled,
        total: agents.len(),
        message,
    }
}
