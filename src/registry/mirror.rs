//! The registry's side of a fleet of several nodes (`crate::cluster` drives it):
//! mirrors of the agents other nodes run, taking an agent over when its node's lease
//! expired, and letting one go when this node lost its lease.
//!
//! A mirror is built from the agent's whole log with the same replay a restart uses,
//! so what any node shows is what the owner would show after a restart. It never
//! writes: no budget charge, no closing of cut-off tool calls (the owner does that
//! when it resumes).

use std::sync::Arc;

use super::Registry;
use super::replay::replay;
use super::restore::{RestoreReport, restored_cost, restored_state};
use crate::agent::output::CommandRecord;
use crate::agent::state::AgentState;
use crate::agent::{AgentHandle, AgentSettings, Initial};
use crate::store::AgentLog;
use crate::store::event::Event;

/// How long a worker that lost its lease gets to stop before it is left behind.
const DEMOTE_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

impl Registry {
    /// Show an agent that `node` runs, or refresh what is shown, from its whole log.
    /// An agent this node runs is left alone.
    pub fn mirror(&self, log: AgentLog, node: &str) {
        let existing = self.agents.get(&log.agent_id).map(|e| e.value().clone());
        match existing {
            Some(h) if !h.is_mirror() => {}
            Some(h) => {
                let Some((settings, initial)) = self.mirror_parts(log) else {
                    return;
                };
                if settings.workdir != h.settings.workdir {
                    // Another node rebuilt its worktree: a mirror with its new settings
                    // takes the old one's place (a wait on it follows).
                    let handle = AgentHandle::new_mirror(
                        h.id.clone(),
                        settings,
                        self.cancel_token(),
                        self.fleet().clone(),
                        initial,
                        node,
                    );
                    self.untrack_writer(&h.settings);
                    self.register(&handle);
                    h.retire_mirror();
                    self.fleet().notify_settle();
                    return;
                }
                h.set_node(node);
                if let Some(state) = initial.state {
                    h.refresh_mirror(state, initial.outputs, initial.next_seq);
                }
            }
            None => {
                let id = log.agent_id.clone();
                let Some((settings, initial)) = self.mirror_parts(log) else {
                    return;
                };
                let handle = AgentHandle::new_mirror(
                    id,
                    settings,
                    self.cancel_token(),
                    self.fleet().clone(),
                    initial,
                    node,
                );
                self.register(&handle);
                self.fleet().notify_settle();
            }
        }
    }

    /// Stop showing an agent another node ran (it was deleted there).
    pub fn unmirror(&self, agent_id: &str) {
        let Some(handle) = self.agents.get(agent_id).map(|e| e.value().clone()) else {
            return;
        };
        if !handle.is_mirror() {
            return;
        }
        self.unregister(&handle);
        handle.retire_mirror();
        self.fleet().notify_settle();
    }

    /// Run an agent whose node's lease expired: replace its mirror with a live agent
    /// rebuilt from its log, resuming its command in progress as after a restart. The
    /// live agent is in place before the mirror is retired, so a wait on it follows it.
    pub fn take_over(
        &self,
        log: AgentLog,
        node: &str,
        moved: Option<crate::worktree::Worktree>,
    ) -> RestoreReport {
        let mut report = RestoreReport::default();
        let id = log.agent_id.clone();
        let Some(mut restored) = replay(log) else {
            return report;
        };
        let old = self.agents.get(&id).map(|e| e.value().clone());
        if old.as_ref().is_some_and(|o| !o.is_mirror()) {
            return report;
        }
        // Its worktree, made on this node from the remote: it works there now.
        if let Some(wt) = &moved {
            restored.settings.workdir = super::create::within(&wt.path, &wt.prefix);
            restored.settings.worktree = Some(wt.clone());
        }
        let (handle, start) = self.revive(restored, true, &mut report);
        handle.set_node(node);
        if let Some(worktree) = moved {
            handle.record(Event::Relocated {
                node: node.to_string(),
                worktree,
            });
        }
        if let Some(old) = &old {
            self.untrack_writer(&old.settings);
        }
        self.adopt(handle, start);
        if let Some(old) = old {
            old.retire_mirror();
        }
        report.agents += 1;
        report
    }

    /// This node lost an agent's lease (another node runs it now): stop its worker at
    /// once, then show it as a mirror of `log` (`owner` runs it). The mirror is in
    /// place before the stopped agent is retired, so a wait on it follows it.
    pub async fn demote(&self, agent_id: &str, log: Option<AgentLog>, owner: &str) {
        let Some(handle) = self.agents.get(agent_id).map(|e| e.value().clone()) else {
            return;
        };
        if handle.is_mirror() {
            return;
        }
        if !handle.stop_worker(DEMOTE_GRACE).await {
            tracing::warn!(agent = %handle.name(), "worker did not stop within {DEMOTE_GRACE:?} after its lease was lost");
        }
        tracing::warn!(agent = %handle.name(), "lease lost to another node: this node stopped the agent");
        self.untrack_writer(&handle.settings);
        self.agents.remove(agent_id);
        if let Some(log) = log {
            self.mirror(log, owner);
        }
        handle.shutdown(std::time::Duration::ZERO).await;
    }

    /// Agents this node runs (not mirrors).
    pub fn local_agents(&self) -> Vec<Arc<AgentHandle>> {
        self.agents
            .iter()
            .filter(|e| !e.value().is_mirror())
            .map(|e| e.value().clone())
            .collect()
    }

    /// The settings and the state an agent's log shows, for a mirror.
    fn mirror_parts(&self, log: AgentLog) -> Option<(AgentSettings, Initial)> {
        let mut r = replay(log)?;
        let model = self
            .restored_model_quietly(&r.settings)
            .unwrap_or_else(|(model, _)| model);
        let settings = self.resolve(r.settings.clone(), model);
        let cost_usd = restored_cost(&settings, &r);
        let queue = std::mem::take(&mut r.queued);
        let mut state: AgentState = restored_state(&mut r, queue.len() as u32, cost_usd);
        // Held in the middle of a command: its node parks it at its next step, which
        // writes nothing; show it held at once (as its own node does within a step).
        if r.paused && state.status == crate::agent::state::AgentStatus::Running {
            state.before_pause = Some(state.status);
            state.status = crate::agent::state::AgentStatus::Paused;
        }
        let outputs: Vec<CommandRecord> = std::mem::take(&mut r.outputs);
        Some((
            settings,
            Initial {
                state: Some(state),
                outputs,
                queue,
                paused: r.paused,
                next_seq: r.next_seq,
                deferred: r.deferred.take(),
                asked: r.question.clone(),
                answer: None,
            },
        ))
    }
}
