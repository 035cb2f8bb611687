//! The fleet observer: one tracked task that reads the event bus for the whole life of
//! the server and keeps what the dashboard and `/metrics` need and the store does not
//! answer cheaply: event counters (commands, model calls, tool calls, tokens) and a
//! short timeline per agent (one [`Mark`] per event, the last [`MARKS_PER_AGENT`]).
//!
//! It never reads the store and never blocks an agent: the bus is a broadcast channel,
//! and if the observer falls behind it counts the events it missed.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::agent::lock;
use crate::failure::FailureKind;
use crate::fleet::bus::FleetEvent;
use crate::store::event::Event;

/// Marks kept per agent for the timeline.
pub const MARKS_PER_AGENT: usize = 400;

/// Counters since the process started.
#[derive(Debug, Default)]
pub struct Counters {
    pub commands: AtomicU64,
    pub commands_done: AtomicU64,
    pub commands_failed: AtomicU64,
    pub commands_cancelled: AtomicU64,
    pub model_calls: AtomicU64,
    pub model_retries: AtomicU64,
    pub tool_calls: AtomicU64,
    pub tool_errors: AtomicU64,
    pub input_tokens: AtomicU64,
    pub output_tokens: AtomicU64,
    /// Events the observer missed because it fell behind the bus.
    pub missed_events: AtomicU64,
    /// Failed commands by kind of failure (`_OTHER` for one recorded without a kind).
    failures: Mutex<BTreeMap<FailureKind, u64>>,
}

impl Counters {
    /// Failed commands by kind, in a stable order.
    pub fn failures(&self) -> Vec<(FailureKind, u64)> {
        lock(&self.failures).iter().map(|(k, n)| (*k, *n)).collect()
    }
}

/// One event on an agent's timeline: `[at_ms, kind, ok, label]` on the wire.
#[derive(Debug, Clone, Serialize)]
pub struct Mark(pub i64, pub &'static str, pub bool, pub String);

impl Mark {
    /// The mark of an event; `ok` is false for failures (a tool error, a failed or
    /// escalated command, a retry, a failed checkpoint).
    pub fn of(at_ms: i64, event: &Event) -> Self {
        use crate::agent::output::CommandStatus;
        let (ok, label) = match event {
            Event::Started { index, .. } | Event::Resumed { index, .. } => {
                (true, format!("#{index}"))
            }
            Event::ToolCall { name, .. } => (true, name.clone()),
            Event::ToolResult { name, is_error, .. } => (!is_error, name.clone()),
            Event::Finished { status, .. } => (
                *status == CommandStatus::Done,
                format!("{status:?}").to_lowercase(),
            ),
            Event::Model { usage, .. } => (
                true,
                format!("{}→{}", usage.input_tokens, usage.output_tokens),
            ),
            Event::Retry { .. }
            | Event::Evicted { .. }
            | Event::Escalated { .. }
            | Event::CheckpointFailed { .. } => (false, String::new()),
            _ => (true, String::new()),
        };
        Self(at_ms, event.kind(), ok, label)
    }
}

/// What the observer has seen.
#[derive(Debug, Default)]
pub struct Seen {
    pub counters: Counters,
    /// Agent id → its latest marks.
    marks: Mutex<HashMap<String, VecDeque<Mark>>>,
}

impl Seen {
    /// Count one event and add its mark.
    fn take(&self, e: &FleetEvent) {
        let c = &self.counters;
        let one = |n: &AtomicU64| n.fetch_add(1, Ordering::Relaxed);
        match &*e.event {
            Event::Command { .. } => {
                one(&c.commands);
            }
            Event::Model { usage, .. } => {
                one(&c.model_calls);
                c.input_tokens
                    .fetch_add(usage.input_tokens, Ordering::Relaxed);
                c.output_tokens
                    .fetch_add(usage.output_tokens, Ordering::Relaxed);
            }
            // A CLI's own count beyond what its turns showed (no model call of its own).
            Event::Charged { usage, .. } => {
                c.input_tokens
                    .fetch_add(usage.input_tokens, Ordering::Relaxed);
                c.output_tokens
                    .fetch_add(usage.output_tokens, Ordering::Relaxed);
            }
            Event::Retry { .. } => {
                one(&c.model_retries);
            }
            Event::ToolCall { .. } => {
                one(&c.tool_calls);
            }
            Event::ToolResult { is_error: true, .. } => {
                one(&c.tool_errors);
            }
            Event::Finished {
                status, failure, ..
            } => {
                use crate::agent::output::CommandStatus as S;
                one(match status {
                    S::Done => &c.commands_done,
                    S::Failed => &c.commands_failed,
                    _ => &c.commands_cancelled,
                });
                if *status == S::Failed {
                    let kind = failure.unwrap_or(FailureKind::Other);
                    *lock(&c.failures).entry(kind).or_default() += 1;
                }
            }
            _ => {}
        }
        let mut marks = lock(&self.marks);
        let lane = marks.entry(e.agent_id.to_string()).or_default();
        if lane.len() == MARKS_PER_AGENT {
            lane.pop_front();
        }
        lane.push_back(Mark::of(e.at_ms, &e.event));
    }

    /// The marks of these agents (by id), for the timeline.
    pub fn marks(&self, ids: &[&str]) -> BTreeMap<String, Vec<Mark>> {
        let marks = lock(&self.marks);
        ids.iter()
            .filter_map(|id| {
                marks
                    .get(*id)
                    .map(|m| (id.to_string(), m.iter().cloned().collect()))
            })
            .collect()
    }

    /// Drop the lanes of agents that are gone.
    pub fn retain(&self, live: impl Fn(&str) -> bool) {
        lock(&self.marks).retain(|id, _| live(id));
    }

    pub fn get(&self, n: &AtomicU64) -> u64 {
        n.load(Ordering::Relaxed)
    }
}

/// Read the bus (`rx`, subscribed before any agent starts) until `cancel` fires.
pub async fn run(
    seen: std::sync::Arc<Seen>,
    mut rx: broadcast::Receiver<FleetEvent>,
    cancel: CancellationToken,
) {
    loop {
        let next = tokio::select! {
            () = cancel.cancelled() => return,
            next = rx.recv() => next,
        };
        match next {
            Ok(e) => seen.take(&e),
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(
                    missed = n,
                    "the dashboard observer fell behind the event bus"
                );
                seen.counters.missed_events.fetch_add(n, Ordering::Relaxed);
            }
            Err(RecvError::Closed) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::agent::output::CommandStatus;

    fn finished(status: CommandStatus, failure: Option<FailureKind>) -> FleetEvent {
        FleetEvent {
            agent_id: Arc::from("id"),
            name: Arc::from("a"),
            seq: 1,
            at_ms: 0,
            event: Arc::new(Event::Finished {
                index: 1,
                status,
                error: failure.map(|k| k.as_str().to_string()),
                failure,
            }),
        }
    }

    #[test]
    fn failed_commands_are_counted_by_kind() {
        let seen = Seen::default();
        seen.take(&finished(CommandStatus::Failed, Some(FailureKind::Budget)));
        seen.take(&finished(CommandStatus::Failed, Some(FailureKind::Budget)));
        seen.take(&finished(CommandStatus::Failed, Some(FailureKind::Stalled)));
        // Written before failures had kinds (or by a restore that gives none).
        seen.take(&finished(CommandStatus::Failed, None));
        // A dependency's failure cancels its dependent: not a failed command.
        seen.take(&finished(
            CommandStatus::Cancelled,
            Some(FailureKind::Dependency),
        ));
        seen.take(&finished(CommandStatus::Done, None));
        assert_eq!(
            seen.counters.failures(),
            vec![
                (FailureKind::Budget, 2),
                (FailureKind::Stalled, 1),
                (FailureKind::Other, 1)
            ]
        );
        assert_eq!(seen.get(&seen.counters.commands_failed), 4);
        assert_eq!(seen.get(&seen.counters.commands_cancelled), 1);
    }
}
