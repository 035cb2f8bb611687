//! Agents of a fleet of several nodes (see `crate::cluster`): which node runs an agent,
//! and mirrors — the handle a node keeps of an agent another node runs. A mirror has no
//! worker and writes nothing: its state and outputs are rebuilt from the shared log
//! whenever the owner appends to it, so every read (status, output, list, wait, the
//! dashboard) answers on any node, and a wait wakes when the mirror changes.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::output::CommandRecord;
use super::state::AgentState;
use super::{AgentHandle, AgentSettings, Initial, lock};
use crate::fleet::Fleet;

impl AgentHandle {
    /// A mirror of an agent `node` runs, as its log shows it.
    pub(crate) fn new_mirror(
        id: String,
        settings: AgentSettings,
        parent: &CancellationToken,
        fleet: Arc<Fleet>,
        initial: Initial,
        node: &str,
    ) -> Arc<Self> {
        let handle = Self::build(id, settings, parent, fleet, initial, true);
        handle.set_node(node);
        handle
    }

    /// Another node runs it: this handle only mirrors its log.
    pub fn is_mirror(&self) -> bool {
        self.mirror
    }

    /// The node that runs it, in a fleet of several nodes.
    pub fn node(&self) -> Option<Arc<str>> {
        lock(&self.node).clone()
    }

    pub(crate) fn set_node(&self, node: &str) {
        let mut held = lock(&self.node);
        if held.as_deref() != Some(node) {
            *held = Some(node.into());
        }
    }

    /// Show the state and outputs its log has now (a mirror only). Waits and the
    /// fleet's totals see the change like any other.
    pub(crate) fn refresh_mirror(
        &self,
        state: AgentState,
        outputs: Vec<CommandRecord>,
        next_seq: u64,
    ) {
        if !self.mirror {
            return;
        }
        self.next_seq
            .store(next_seq, std::sync::atomic::Ordering::Relaxed);
        let last = state.last_activity_at;
        *lock(&self.outputs) = outputs;
        {
            let mut inbox = lock(&self.inbox);
            inbox.asked = state.question.clone();
            inbox.paused = state.paused;
        }
        self.update(|s| {
            let deleted = s.deleted;
            *s = state;
            s.deleted = deleted;
        });
        self.state.send_modify(|s| s.last_activity_at = last);
    }

    /// Say why nothing moves (a mirror only): its node stopped heartbeating.
    pub(crate) fn note_orphaned(&self, why: &str) {
        if !self.mirror || self.peek(|s| s.settled()) {
            return;
        }
        if self.peek(|s| s.activity.as_ref().is_some_and(|a| a.label == why)) {
            return;
        }
        self.update(|s| s.activity = Some(super::state::Activity::now(why)));
    }

    /// Cancel its worker and wait (bounded) until it has exited, without retiring the
    /// handle (its lease went to another node; a mirror takes its place first).
    pub(crate) async fn stop_worker(&self, grace: std::time::Duration) -> bool {
        self.cancel.cancel();
        tokio::time::timeout(grace, self.finished.cancelled())
            .await
            .is_ok()
    }

    /// Stop showing it (deleted on its node, or this node runs it now).
    pub(crate) fn retire_mirror(&self) {
        if self.mirror {
            self.cancel.cancel();
            self.update(|s| s.deleted = true);
        }
    }
}
