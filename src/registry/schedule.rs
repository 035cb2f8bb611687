//! The dependency scheduler: agents created with `depends_on` wait until every
//! dependency's latest command has ended `done`, then get their task followed by
//! their dependencies' answers (redacted, sanitised, capped, fenced as untrusted
//! data). A dependency that fails for good, is cancelled or deleted cancels its
//! dependents — transitively, before they start.
//!
//! One tracked task runs the scheduler: it wakes whenever an agent settles or gets
//! work (the fleet's settle signal) and looks at the waiting agents only.

use std::sync::Arc;

use crate::agent::output::CommandStatus;
use crate::agent::state::AgentStatus;
use crate::agent::{AgentHandle, lock};
use crate::failure::{DependencyFate, Failure};
use crate::plan::handoff::{self, DepAnswer};
use crate::store::event::Event;

use super::Registry;

/// Where a waiting agent stands.
enum Readiness {
    /// Every dependency is done: their answers, in `depends_on` order.
    Ready(Vec<(String, Arc<AgentHandle>)>),
    /// A dependency failed for good (the failure names it).
    Blocked(Failure),
    /// Still waiting on these.
    Waiting(Vec<String>),
}

impl Registry {
    /// Put an agent in the scheduler's list.
    pub(super) fn wait_for_dependencies(&self, handle: &AgentHandle) {
        lock(&self.waiting).push(handle.id.clone());
    }

    /// Start the scheduler task (tracked; ends with the registry's shutdown).
    pub fn start_scheduler(self: &Arc<Self>) {
        let registry = Arc::downgrade(self);
        let mut settle = self.fleet.watch_settle();
        let cancel = self.cancel.clone();
        self.tracker.spawn(async move {
            loop {
                match registry.upgrade() {
                    Some(r) => r.schedule(),
                    None => return,
                }
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    changed = settle.changed() => if changed.is_err() { return },
                }
            }
        });
    }

    /// One pass over the waiting agents, repeated while it changes something (a
    /// cancellation can unblock — or block — agents further down the plan).
    pub fn schedule(&self) {
        loop {
            let waiting: Vec<String> = lock(&self.waiting).clone();
            if waiting.is_empty() {
                return;
            }
            let mut done: Vec<String> = Vec::new();
            for id in &waiting {
                let Some(agent) = self.agents.get(id).map(|e| e.value().clone()) else {
                    done.push(id.clone());
                    continue;
                };
                if agent.deferred().is_none() {
                    done.push(id.clone());
                    continue;
                }
                match self.readiness(&agent) {
                    Readiness::Waiting(names) => agent.set_waiting_on(names),
                    Readiness::Blocked(why) => {
                        tracing::info!(agent = %agent.name(), "{why}");
                        agent.cancel_deferred(&why);
                        done.push(id.clone());
                    }
                    Readiness::Ready(deps) => {
                        self.start(&agent, &deps);
                        done.push(id.clone());
                    }
                }
            }
            if done.is_empty() {
                return;
            }
            lock(&self.waiting).retain(|id| !done.contains(id));
        }
    }

    fn readiness(&self, agent: &AgentHandle) -> Readiness {
        let mut ready = Vec::new();
        let mut pending = Vec::new();
        for dep in &agent.settings.depends_on {
            let Ok(h) = self.get(dep) else {
                return Readiness::Blocked(Failure::Dependency {
                    name: dep.clone(),
                    fate: DependencyFate::Deleted,
                });
            };
            let (status, settled, error) =
                h.peek(|s| (s.status, s.settled(), s.last_error.clone()));
            let latest = h.with_outputs(|o| o.last().map(|r| r.status));
            match (status, latest) {
                (AgentStatus::Failed, _) | (AgentStatus::Cancelled, _) if settled => {
                    let fate = if status == AgentStatus::Failed {
                        DependencyFate::Failed(error)
                    } else {
                        DependencyFate::Cancelled(error)
                    };
                    return Readiness::Blocked(Failure::Dependency {
                        name: dep.clone(),
                        fate,
                    });
                }
                (AgentStatus::Idle, Some(CommandStatus::Done)) if settled => {
                    ready.push((dep.clone(), h));
                }
                _ => pending.push(dep.clone()),
            }
        }
        if pending.is_empty() {
            Readiness::Ready(ready)
        } else {
            Readiness::Waiting(pending)
        }
    }

    /// Hand the dependencies' answers over and start the held task.
    fn start(&self, agent: &AgentHandle, deps: &[(String, Arc<AgentHandle>)]) {
        // Taken first, so two passes can never start it twice.
        let Some(deferred) = agent.take_deferred() else {
            return;
        };
        let max = self.fleet.handoff_max_chars;
        let answers: Vec<DepAnswer> = deps
            .iter()
            .map(|(name, h)| {
                let raw = h.with_outputs(|o| {
                    o.last().map_or(String::new(), |r| match &r.output_json {
                        Some(v) => serde_json::to_string_pretty(v).unwrap_or_default(),
                        None => r.text.clone(),
                    })
                });
                let answer = DepAnswer::prepare(name, &raw, &self.fleet.redactor, max);
                if !answer.flags.is_empty() {
                    agent.record(Event::HandoffFlagged {
                        dependency: name.clone(),
                        flags: answer.flags.clone(),
                    });
                }
                answer
            })
            .collect();
        let task = handoff::compose(&deferred.task, &answers);
        match agent.start_deferred(task, deferred.output_schema) {
            Ok(_) => tracing::info!(agent = %agent.name(), "dependencies done; task started"),
            Err(e) => tracing::warn!(agent = %agent.name(), "could not start its task: {e}"),
        }
    }
}
