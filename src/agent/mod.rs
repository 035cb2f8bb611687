//! One agent: a handle the registry holds, and the worker task behind it.
//!
//! The handle is how everyone else talks to an agent: commands go into its inbox,
//! its state is read from a `watch` channel, its outputs from a short-lived lock.
//! Nobody reaches into the worker; the worker alone owns the conversation.

pub mod asking;
pub mod cancel;
pub mod conversation;
mod mirror;
pub mod output;
mod pause;
pub mod state;
mod waiting;
pub mod worker;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub(crate) use crate::sync::lock;
use std::time::SystemTime;

use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::config::ResolvedModel;
use crate::fleet::Fleet;
use crate::fleet::budget::Caps;
use crate::fleet::bus::FleetEvent;
use crate::provider::retry::RetryPolicy;
use crate::store::event::Event;
use crate::store::{Ack, Store};
use output::{CommandRecord, CommandStatus};
use state::AgentState;

/// Everything fixed when an agent is created: its spec resolved for running
/// (`Registry::resolve` builds it; [`AgentSettings::stored`] gives the spec back).
#[derive(Clone)]
pub struct AgentSettings {
    pub name: String,
    pub role: Option<String>,
    pub model: ResolvedModel,
    /// The full system prompt: worker prompt + role + orchestrator's extra instructions.
    pub system_prompt: String,
    /// The orchestrator's extra instructions (`system_prompt` of `create_agent`).
    pub extra_prompt: Option<String>,
    /// The sub-agent tools it may call.
    pub tools: Vec<crate::tools::Tool>,
    /// Their specs as sent to the model; shared by every agent with the same tools.
    pub tool_specs: Arc<[crate::model::ToolSpec]>,
    /// Canonical absolute work directory.
    pub workdir: PathBuf,
    /// Model calls allowed per command.
    pub max_steps: u32,
    pub max_output_tokens: u32,
    pub retry: RetryPolicy,
    /// This agent's own spend caps, over all its commands.
    pub caps: Caps,
    /// Agents whose work must be done before its task starts.
    pub depends_on: Vec<String>,
    /// Times a failed command is started again before it is escalated.
    pub retries: u32,
    /// What its `run_command` may change.
    pub sandbox: crate::sandbox::Sandbox,
    /// Its git worktree (`isolation: "worktree"`); `workdir` lies in it.
    pub worktree: Option<crate::worktree::Worktree>,
}

impl AgentSettings {
    /// Whether it can change files: a file-writing tool, or `run_command` outside a
    /// read-only sandbox.
    pub fn can_write(&self) -> bool {
        self.tools.iter().any(|t| t.writes(self.sandbox))
    }

    /// The git directory a confined command must still see for git to work in the
    /// agent's worktree: its node's clone of the remote, which lies in flotilla's
    /// (hidden) data directory.
    pub fn git_dir_to_show(&self) -> Option<std::path::PathBuf> {
        crate::worktree::git_dir_of(self.remote_worktree()?)
    }

    /// Its worktree, when it goes through a git remote (any node of a fleet can run
    /// it; its work is pushed).
    pub fn remote_worktree(&self) -> Option<&crate::worktree::Worktree> {
        self.worktree.as_ref().filter(|w| w.remote.is_some())
    }

    /// Why it cannot work at all right now: its worktree is gone.
    pub fn workspace_missing(&self) -> Option<String> {
        self.worktree
            .as_ref()
            .filter(|wt| !wt.path.is_dir())
            .map(crate::worktree::gone)
    }
}

/// The task of an agent waiting for its dependencies, held until they are done.
#[derive(Debug, Clone)]
pub struct Deferred {
    pub task: String,
    pub output_schema: Option<serde_json::Value>,
}

/// How an agent starts: fresh, or as its log left it.
pub struct Initial {
    /// Its task, when it waits for dependencies.
    pub deferred: Option<Deferred>,
    pub state: Option<AgentState>,
    pub outputs: Vec<CommandRecord>,
    pub queue: VecDeque<QueuedCommand>,
    /// Held by `pause_agents` when the log ends.
    pub paused: bool,
    /// The sequence number of its next event.
    pub next_seq: u64,
    /// The question its command in progress asked (after a restart).
    pub asked: Option<asking::Question>,
    /// An answer journaled before the restart that its worker had not taken yet.
    pub answer: Option<asking::Answer>,
}

impl Default for Initial {
    fn default() -> Self {
        Self {
            deferred: None,
            state: None,
            outputs: Vec::new(),
            queue: VecDeque::new(),
            paused: false,
            next_seq: 1,
            asked: None,
            answer: None,
        }
    }
}

/// A command accepted by [`AgentHandle::enqueue`].
pub struct Enqueued {
    /// Its 1-based index.
    pub index: u32,
    /// How many commands run before it starts: 0 when the agent is free (or with
    /// `interrupt`). Computed under the inbox lock, so it does not depend on how fast
    /// the worker picks the command up.
    pub waiting: u32,
    /// Resolves once its record is on disk.
    pub ack: Option<Ack>,
}

/// A command waiting in the inbox.
#[derive(Debug)]
pub struct QueuedCommand {
    /// 1-based index into the agent's outputs.
    pub index: u32,
    pub task: String,
    /// Its place in line for a run slot (see [`crate::fleet::slots`]).
    pub ticket: u64,
    /// The final answer must be JSON valid against this schema.
    pub output_schema: Option<serde_json::Value>,
}

#[derive(Default)]
struct Inbox {
    queue: VecDeque<QueuedCommand>,
    /// Cancels the command the worker is running now, if any.
    current: Option<CancellationToken>,
    /// Held by `pause_agents`: the worker takes no new step or command.
    paused: bool,
    /// The question its running command asked, until the command goes on.
    asked: Option<asking::Question>,
    /// The answer to that question, until the worker takes it.
    answer: Option<asking::Answer>,
}

/// The registry's handle on one agent.
pub struct AgentHandle {
    pub id: String,
    pub settings: AgentSettings,
    state: watch::Sender<AgentState>,
    inbox: Mutex<Inbox>,
    wake: Notify,
    /// Wakes a worker waiting for an answer.
    answered: Notify,
    outputs: Mutex<Vec<CommandRecord>>,
    /// Cancels everything the agent does (delete, shutdown).
    cancel: CancellationToken,
    /// Fired by the worker as it exits, whatever the reason.
    finished: CancellationToken,
    /// What every agent shares: store, event bus, budget, run slots, provider gates.
    pub fleet: Arc<Fleet>,
    next_seq: AtomicU64,
    /// A budget note (80 % of one of its caps) not yet shown to the orchestrator.
    note: Mutex<Option<String>>,
    /// Its task while it waits for its dependencies.
    deferred: Mutex<Option<Deferred>>,
    /// In a fleet of several nodes, the node that runs it (`None`: a one-node fleet).
    node: Mutex<Option<Arc<str>>>,
    /// Another node runs it: this handle mirrors its log (no worker; see [`mirror`]).
    mirror: bool,
}

impl AgentHandle {
    pub fn new(
        id: String,
        settings: AgentSettings,
        parent: &CancellationToken,
        fleet: Arc<Fleet>,
        initial: Initial,
    ) -> Arc<Self> {
        Self::build(id, settings, parent, fleet, initial, false)
    }

    fn build(
        id: String,
        settings: AgentSettings,
        parent: &CancellationToken,
        fleet: Arc<Fleet>,
        initial: Initial,
        mirror: bool,
    ) -> Arc<Self> {
        let priced = settings.model.priced();
        let mut state = initial.state.unwrap_or_else(|| AgentState::new(priced));
        state.paused = initial.paused;
        fleet.totals.add(&settings.name, state.counted());
        Arc::new(Self {
            id,
            settings,
            state: watch::Sender::new(state),
            inbox: Mutex::new(Inbox {
                queue: initial.queue,
                current: None,
                paused: initial.paused,
                asked: initial.asked,
                answer: initial.answer,
            }),
            wake: Notify::new(),
            answered: Notify::new(),
            outputs: Mutex::new(initial.outputs),
            cancel: parent.child_token(),
            finished: CancellationToken::new(),
            fleet,
            next_seq: AtomicU64::new(initial.next_seq),
            note: Mutex::new(None),
            deferred: Mutex::new(initial.deferred),
            node: Mutex::new(None),
            mirror,
        })
    }

    /// Append to this agent's event log and publish it on the fleet's bus; durable
    /// events return an [`Ack`].
    pub fn record(&self, event: Event) -> Option<Ack> {
        if self.mirror {
            // Another node runs it: only that node writes its log.
            tracing::error!(agent = %self.name(), kind = event.kind(), "refused to write for an agent another node runs");
            let (tx, rx) = tokio::sync::oneshot::channel();
            let _ = tx.send(Err(format!(
                "agent `{}` runs on another node; this node cannot change it",
                self.name()
            )));
            return event.is_durable().then_some(rx);
        }
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        if self.fleet.bus.has_listeners() {
            self.fleet.bus.publish(FleetEvent {
                agent_id: self.id.as_str().into(),
                name: self.name().into(),
                seq,
                at_ms: crate::store::now_ms(),
                event: Arc::new(event.clone()),
            });
        }
        self.fleet.store.append(&self.id, seq, event)
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.fleet.store
    }

    /// Set the budget note shown once to the orchestrator.
    pub(crate) fn set_note(&self, note: String) {
        *lock(&self.note) = Some(note);
    }

    /// The budget note, once: the first reader gets it.
    pub fn take_note(&self) -> Option<String> {
        lock(&self.note).take()
    }

    pub fn name(&self) -> &str {
        &self.settings.name
    }

    /// A snapshot of the agent's state.
    pub fn state(&self) -> AgentState {
        self.state.borrow().clone()
    }

    /// Look at the state in place, without copying it (no await inside `f`).
    pub fn peek<R>(&self, f: impl FnOnce(&AgentState) -> R) -> R {
        f(&self.state.borrow())
    }

    pub(crate) fn update(&self, f: impl FnOnce(&mut AgentState)) {
        let mut settle_changed = false;
        let mut counted = None;
        self.state.send_modify(|s| {
            let before = (s.settled(), s.counted());
            f(s);
            s.last_activity_at = SystemTime::now();
            let after = s.counted();
            settle_changed = before.0 != s.settled();
            if before.1 != after {
                counted = Some((before.1, after));
            }
        });
        if let Some((before, after)) = counted {
            self.fleet
                .totals
                .apply(&self.settings.name, Some(before), Some(after));
        }
        if settle_changed {
            self.fleet.notify_settle();
        }
    }

    /// Queue a command; with `interrupt`, cancel the running one and go first.
    /// Refused once the agent is being deleted or the server is stopping.
    pub fn enqueue(
        &self,
        task: String,
        interrupt: bool,
        output_schema: Option<serde_json::Value>,
    ) -> Result<Enqueued, String> {
        let mut inbox = lock(&self.inbox);
        if self.cancel.is_cancelled() {
            return Err(format!(
                "agent `{}` is being deleted (or the server is stopping); create a new agent instead",
                self.name()
            ));
        }
        let mut index = 0;
        self.update(|s| {
            s.commands += 1;
            s.pending += 1;
            index = s.commands;
        });
        let ack = self.record(Event::Command {
            index,
            task: task.clone(),
            interrupt,
            output_schema: output_schema.clone(),
        });
        let mut record = CommandRecord::queued(task.clone());
        record.output_schema.clone_from(&output_schema);
        lock(&self.outputs).push(record);
        let cmd = QueuedCommand {
            index,
            task,
            ticket: self.fleet.slots.ticket(),
            output_schema,
        };
        if interrupt {
            inbox.queue.push_front(cmd);
            if let Some(current) = &inbox.current {
                current.cancel();
            }
        } else {
            inbox.queue.push_back(cmd);
        }
        let ahead = inbox.queue.len() as u32 - 1;
        let waiting = if interrupt || (inbox.current.is_none() && ahead == 0) {
            0
        } else {
            ahead + u32::from(inbox.current.is_some())
        };
        drop(inbox);
        self.wake.notify_one();
        Ok(Enqueued {
            index,
            waiting,
            ack,
        })
    }

    /// The next command, the token that cancels it and its trace span; waits until
    /// there is one (and the agent is not paused).
    async fn next_command(
        &self,
    ) -> (
        QueuedCommand,
        CancellationToken,
        crate::telemetry::CommandSpan,
    ) {
        loop {
            {
                let mut inbox = lock(&self.inbox);
                if inbox.paused {
                    // Held while idle: pause_agents has set the status already.
                } else if let Some(cmd) = inbox.queue.pop_front() {
                    let token = self.cancel.child_token();
                    inbox.current = Some(token.clone());
                    let trace =
                        crate::telemetry::command_span(self.name(), &self.id, cmd.index, &cmd.task);
                    self.record(Event::Started {
                        index: cmd.index,
                        trace_id: trace.trace_id(),
                    });
                    return (cmd, token, trace);
                }
            }
            self.wake.notified().await;
        }
    }

    /// Cancel the command running now, if any (the dashboard's "interrupt"): it ends
    /// `cancelled` and the agent goes on with its queue. Returns whether one ran.
    pub fn interrupt_current(&self) -> bool {
        let inbox = lock(&self.inbox);
        inbox.current.as_ref().inspect(|t| t.cancel()).is_some()
    }

    /// The sequence number of its latest event (0 when it has none).
    pub fn last_seq(&self) -> u64 {
        self.next_seq.load(Ordering::Relaxed).saturating_sub(1)
    }

    fn finish_command(&self) {
        lock(&self.inbox).current = None;
    }

    /// A turn token for resuming a command after a restart (not from the inbox).
    pub(crate) fn resume_token(&self) -> CancellationToken {
        let token = self.cancel.child_token();
        lock(&self.inbox).current = Some(token.clone());
        token
    }

    /// Read the outputs under a short lock.
    pub fn with_outputs<R>(&self, f: impl FnOnce(&[CommandRecord]) -> R) -> R {
        f(&lock(&self.outputs))
    }

    pub(crate) fn with_record(&self, index: u32, f: impl FnOnce(&mut CommandRecord)) {
        let mut outputs = lock(&self.outputs);
        if let Some(r) = (index as usize)
            .checked_sub(1)
            .and_then(|i| outputs.get_mut(i))
        {
            f(r);
        }
    }

    /// Cancel all work, then wait (bounded) until the worker has exited, which means
    /// every model call is dropped and every child process group is killed.
    pub async fn shutdown(&self, grace: std::time::Duration) -> bool {
        self.cancel.cancel();
        let done = tokio::time::timeout(grace, self.finished.cancelled())
            .await
            .is_ok();
        self.update(|s| {
            s.deleted = true;
            s.activity = None;
            s.pending = 0;
        });
        // Commands that never started will never run.
        let mut outputs = lock(&self.outputs);
        for r in outputs.iter_mut() {
            if matches!(r.status, CommandStatus::Queued | CommandStatus::Running) {
                r.status = CommandStatus::Cancelled;
                r.error = Some("the agent was deleted".into());
            }
        }
        done
    }
}
