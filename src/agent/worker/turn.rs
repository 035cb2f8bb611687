//! One command, start to end: take a run slot, then alternate model steps and tool
//! calls until the model gives its final answer, holding between steps while the
//! agent is paused (and giving its run slot back meanwhile).

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Stop;
use crate::agent::AgentHandle;
use crate::agent::conversation::Conversation;
use crate::agent::state::{Activity, AgentStatus};
use crate::failure::Failure;
use crate::fleet::slots::SlotGuard;
use crate::model::Role;
use crate::plan::checkpoint::Checkpoint;
use crate::provider::Provider;
use crate::store::event::Event;
use crate::telemetry::{CommandSpan, ToolSpan};

pub(super) struct Turn<'a> {
    pub(super) agent: &'a AgentHandle,
    /// The model API it calls.
    pub(super) provider: &'a dyn Provider,
    pub(super) conversation: &'a mut Conversation,
    pub(super) index: u32,
    pub(super) token: &'a CancellationToken,
    /// Model calls made for this command so far.
    pub(super) steps: u32,
    ticket: u64,
    pub(super) slot: Option<SlotGuard>,
    /// The last model reply was cut off by the output limit: the next continues it.
    pub(super) continues: bool,
    /// The command's output_schema, compiled.
    checkpoint: Option<Checkpoint>,
    /// Why the last answer did not validate, for the error if it never does.
    missed: Option<String>,
    /// The command's trace span, parent of the model and tool call spans.
    pub(super) trace: &'a CommandSpan,
    /// The span of the tool call under way, ended by its answer.
    pub(super) tool_span: Option<ToolSpan>,
    /// A worktree agent with a git remote: the tree of its work last pushed in
    /// progress (see `push.rs`).
    pub(super) pushed_tree: Option<String>,
}

impl<'a> Turn<'a> {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        agent: &'a AgentHandle,
        provider: &'a dyn Provider,
        conversation: &'a mut Conversation,
        index: u32,
        token: &'a CancellationToken,
        steps: u32,
        ticket: u64,
        checkpoint: Option<Checkpoint>,
    ) -> Self {
        Self {
            agent,
            provider,
            conversation,
            index,
            token,
            steps,
            ticket,
            slot: None,
            continues: false,
            checkpoint,
            missed: None,
            trace: CommandSpan::off(),
            tool_span: None,
            pushed_tree: None,
        }
    }

    /// Trace its model and tool calls under `trace`.
    pub(super) fn traced(mut self, trace: &'a CommandSpan) -> Self {
        self.trace = trace;
        self
    }

    pub(super) async fn run(mut self) -> Result<(), Stop> {
        // Resumed while waiting on a question: it waits without a run slot.
        if self.agent.open_question().is_none() {
            self.between_steps().await?;
        }
        loop {
            // Tool calls still unanswered (a fresh model answer, or one found on resume).
            let calls = self.conversation.unanswered_tool_calls();
            if !calls.is_empty() {
                for (id, name, input) in calls {
                    self.tool_call(id, name, input).await?;
                }
                if self.token.is_cancelled() {
                    return Err(Stop::Cancelled);
                }
                continue;
            }
            // The model's last word had no tool calls: that is its final answer —
            // once it satisfies the command's output_schema, if it has one.
            if self
                .conversation
                .messages()
                .last()
                .is_some_and(|m| m.role == Role::Assistant)
                && self.checked()
            {
                return Ok(());
            }
            let max_steps = self.agent.settings.max_steps;
            if self.steps >= max_steps {
                return Err(Stop::Failed(match self.missed.take() {
                    Some(last) => Failure::OutputSchema { max_steps, last },
                    None => Failure::MaxSteps { max_steps },
                }));
            }
            self.between_steps().await?;
            self.model_step().await?;
        }
    }

    /// Before each step: hold while paused (without a run slot), then make sure the
    /// agent holds a run slot and shows `running`.
    pub(super) async fn between_steps(&mut self) -> Result<(), Stop> {
        seated(self.agent, self.token, self.ticket, &mut self.slot).await
    }

    /// Whether the final answer passes the output_schema (true without one). A miss
    /// is journaled and told to the model, which answers again.
    fn checked(&mut self) -> bool {
        let Some(checkpoint) = &self.checkpoint else {
            return true;
        };
        let answer = self
            .conversation
            .messages()
            .last()
            .map(|m| m.text())
            .unwrap_or_default();
        let answer = self
            .agent
            .with_outputs(|o| o.get(self.index as usize - 1).map(|r| r.text.clone()))
            .filter(|t| !t.is_empty())
            .unwrap_or(answer);
        match check_answer(
            self.agent,
            self.index,
            checkpoint,
            self.conversation,
            &answer,
        ) {
            None => true,
            Some((_, error)) => {
                self.missed = Some(error);
                false
            }
        }
    }

    /// Journal unless the whole agent is stopping (see the worker's module docs).
    pub(super) fn journal(&self, event: crate::store::event::Event) {
        if !self.agent.cancel.is_cancelled() {
            self.agent.record(event);
        }
    }

    /// Await `work`, or fail the command as stalled when it makes no progress for the
    /// fleet's stall timeout. `waiting_on` says what it was waiting for.
    pub(super) async fn within_stall<T>(
        &self,
        work: impl Future<Output = T>,
        waiting_on: &str,
    ) -> Result<T, Stop> {
        let limit = self.agent.fleet.stall_timeout;
        tokio::select! {
            out = work => Ok(out),
            _ = tokio::time::sleep(limit) => Err(Stop::Failed(stalled(limit, waiting_on))),
        }
    }
}

/// Check command `index`'s final `answer` against its output_schema, for any runtime:
/// a pass is journaled and becomes the command's `output_json`; a miss is journaled and
/// told to the model (an instruction in `conversation`). `None` on a pass, else what the
/// model was told and why it missed.
pub(super) fn check_answer(
    agent: &AgentHandle,
    index: u32,
    checkpoint: &Checkpoint,
    conversation: &mut Conversation,
    answer: &str,
) -> Option<(String, String)> {
    let journal = |event: Event| {
        if !agent.cancel.is_cancelled() {
            agent.record(event);
        }
    };
    match checkpoint.check(answer) {
        Ok(value) => {
            journal(Event::CheckpointPassed {
                index,
                value: value.clone(),
            });
            agent.with_record(index, |r| r.output_json = Some(value));
            None
        }
        Err(failure) => {
            let message = failure.to_model_message();
            let error = failure.to_string();
            tracing::info!(agent = %agent.name(), "answer did not validate: {error}");
            journal(Event::CheckpointFailed {
                index,
                error: error.clone(),
                message: message.clone(),
            });
            conversation.push_instruction(message.clone());
            Some((message, error))
        }
    }
}

/// Before each step of any runtime: hold while `agent` is paused (giving `slot` back
/// meanwhile), then make sure it holds a run slot and shows `running`.
pub(super) async fn seated(
    agent: &AgentHandle,
    token: &CancellationToken,
    ticket: u64,
    slot: &mut Option<SlotGuard>,
) -> Result<(), Stop> {
    if agent.is_paused() {
        *slot = None;
        agent
            .hold_while_paused(token)
            .await
            .map_err(|()| Stop::Cancelled)?;
    }
    if slot.is_none() {
        *slot = Some(take_slot(agent, token, ticket).await?);
    }
    if let (Some(fleet), Some(held)) = (agent.fleet.fleet_slots.get(), slot.as_ref())
        && !held.has_fleet_slot()
        && let Some(held) = slot.take()
    {
        *slot = Some(held.with_fleet_slot(take_fleet_slot(agent, fleet.as_ref(), token).await?));
    }
    agent.update(|s| {
        if s.status != AgentStatus::Running {
            s.status = AgentStatus::Running;
            s.activity = Some(Activity::now("starting"));
        }
    });
    Ok(())
}

/// A run slot, waiting in line (status `queued`) when all are taken.
async fn take_slot(
    agent: &AgentHandle,
    token: &CancellationToken,
    ticket: u64,
) -> Result<SlotGuard, Stop> {
    let slots = &agent.fleet.slots;
    if let Some(slot) = slots.try_acquire() {
        return Ok(slot);
    }
    let label = format!(
        "waiting for a run slot ({} agents running, max_running {})",
        slots.running(),
        slots.max()
    );
    queued(agent, token, label, slots.acquire(ticket)).await
}

/// Show `agent` `queued` with `label` while it waits for `slot` (cancel-safe).
async fn queued<T>(
    agent: &AgentHandle,
    token: &CancellationToken,
    label: String,
    slot: impl std::future::Future<Output = T>,
) -> Result<T, Stop> {
    agent.update(|s| {
        s.status = AgentStatus::Queued;
        s.activity = Some(Activity::now(label));
    });
    tokio::select! {
        biased;
        _ = token.cancelled() => Err(Stop::Cancelled),
        slot = slot => Ok(slot),
    }
}

/// A slot of the whole fleet (`[cluster] max_running`), after this node's own:
/// waiting in line (status `queued`) while the fleet is full.
async fn take_fleet_slot(
    agent: &AgentHandle,
    fleet: &dyn crate::fleet::slots::FleetSlots,
    token: &CancellationToken,
) -> Result<crate::fleet::slots::FleetSlot, Stop> {
    let now = tokio::select! {
        biased;
        _ = token.cancelled() => return Err(Stop::Cancelled),
        now = fleet.try_take(&agent.id) => now,
    };
    if let Some(slot) = now {
        return Ok(slot);
    }
    let label = format!(
        "waiting for a run slot of the fleet ([cluster] max_running {} across its nodes)",
        fleet.max()
    );
    queued(agent, token, label, fleet.take(&agent.id)).await
}

/// A command stalled for `limit` waiting on `waiting_on`.
pub(super) fn stalled(limit: Duration, waiting_on: &str) -> Failure {
    Failure::Stalled {
        limit_s: limit.as_secs(),
        waiting_on: waiting_on.to_string(),
    }
}
