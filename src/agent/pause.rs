//! Pause and resume (`pause_agents`, `resume_agents`): the human's emergency brake
//! that loses nothing.
//!
//! A paused agent finishes the model call or tool it is in, then holds before its
//! next step (or before its next command, when idle); it gives its run slot back while
//! it holds. Queued commands stay queued. Both moves are journaled durably, so a pause
//! survives a restart; on resume the agent continues exactly where it stopped.

use tokio_util::sync::CancellationToken;

use super::state::{Activity, AgentStatus};
use super::{AgentHandle, lock};
use crate::store::Ack;
use crate::store::event::Event;

impl AgentHandle {
    /// Hold the agent. `None` when it was already paused (or is being deleted);
    /// otherwise resolves once the pause is on disk.
    pub fn pause(&self) -> Option<Option<Ack>> {
        let mut inbox = lock(&self.inbox);
        if inbox.paused || self.cancel.is_cancelled() {
            return None;
        }
        inbox.paused = true;
        // No command in hand: the worker is idle and will not take one; say so now.
        // A running agent turns `paused` itself when it reaches its next step. The state
        // changes before the event is published, so whoever reads the event (the
        // dashboard's feed) reads the agent as the event says it is.
        let idle = inbox.current.is_none();
        self.update(|s| {
            s.paused = true;
            if idle {
                s.before_pause = Some(s.status);
                s.status = AgentStatus::Paused;
                s.activity = None;
            }
        });
        let ack = self.record(Event::Paused);
        drop(inbox);
        self.wake.notify_one();
        Some(ack)
    }

    /// Let a paused agent go on. `None` when it was not paused.
    pub fn resume(&self) -> Option<Option<Ack>> {
        let mut inbox = lock(&self.inbox);
        if !inbox.paused || self.cancel.is_cancelled() {
            return None;
        }
        inbox.paused = false;
        let idle = inbox.current.is_none();
        self.update(|s| {
            s.paused = false;
            if idle && s.status == AgentStatus::Paused {
                s.status = s.before_pause.take().unwrap_or(AgentStatus::Idle);
            }
        });
        let ack = self.record(Event::Unpaused);
        drop(inbox);
        self.wake.notify_one();
        Some(ack)
    }

    pub fn is_paused(&self) -> bool {
        lock(&self.inbox).paused
    }

    /// For the worker, between steps: hold while paused. Returns whether it held
    /// (the caller then takes a run slot again), or `Err` when `turn` is cancelled.
    pub(crate) async fn hold_while_paused(&self, turn: &CancellationToken) -> Result<bool, ()> {
        let mut held = false;
        loop {
            if !self.is_paused() {
                return Ok(held);
            }
            if !held {
                held = true;
                self.update(|s| {
                    s.before_pause = Some(s.status);
                    s.status = AgentStatus::Paused;
                    s.activity = Some(Activity::now("paused: resume_agents lets it go on"));
                });
            }
            tokio::select! {
                _ = turn.cancelled() => return Err(()),
                _ = self.wake.notified() => {}
            }
        }
    }
}
