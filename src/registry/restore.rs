//! Bringing the fleet back after a restart: replay each agent's log into a live
//! agent, fill in tool calls the crash cut short, and either resume the command that
//! was running or (with `--no-resume`) mark it failed. An agent's settings come from
//! its stored spec through [`Registry::resolve`], as at its creation.

use std::sync::Arc;

use super::Registry;
use super::replay::{Restored, replay};
use crate::agent::conversation::{Conversation, INTERRUPTED_TOOL};
use crate::agent::output::CommandStatus;
use crate::agent::state::{AgentState, AgentStatus};
use crate::agent::{AgentHandle, Initial, worker};
use crate::config::ResolvedModel;
use crate::provider::Unavailable;
use crate::store::AgentLog;
use crate::store::event::{Event, StoredSettings};

const NO_RESUME: &str = "the server stopped while this command was running, and was restarted with --no-resume; command the agent again to continue";
const NOT_STARTED: &str =
    "not started: the server restarted with --no-resume; command the agent again";

/// What came back.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RestoreReport {
    pub agents: usize,
    /// Commands picked up where they stopped.
    pub resumed: usize,
    /// Commands marked failed (`--no-resume`).
    pub not_resumed: usize,
    /// Commands the orchestrator had interrupted: marked cancelled, not resumed.
    pub cancelled: usize,
}

impl Registry {
    /// Restore every agent from the store's logs and start their workers.
    pub fn restore(&self, logs: Vec<AgentLog>, resume: bool) -> RestoreReport {
        let mut report = RestoreReport::default();
        for log in logs {
            let id = log.agent_id.clone();
            let Some(restored) = replay(log) else {
                // Left by a command that raced a delete: nothing to restore.
                tracing::warn!(agent_id = %id, "stored records without a creation record; removed");
                self.store().forget(&id);
                continue;
            };
            let (handle, start) = self.revive(restored, resume, &mut report);
            self.adopt(handle, start);
            report.agents += 1;
        }
        report
    }

    /// One agent as its log left it, ready to adopt: its settings resolved from its
    /// stored spec, its state, its interrupted tool calls closed, and its command in
    /// progress resumed, cancelled or failed.
    pub(super) fn revive(
        &self,
        mut r: Restored,
        resume: bool,
        report: &mut RestoreReport,
    ) -> (Arc<AgentHandle>, worker::Start) {
        let model = self.restored_model(&r.settings);
        let settings = self.resolve(r.settings.clone(), model);
        if let Some(missing) = settings.workspace_missing() {
            tracing::warn!(agent = %settings.name, "{missing}");
        }
        // Without --no-resume, queued commands run as before; with it, nothing runs by
        // itself after the restart.
        let mut queued = std::mem::take(&mut r.queued);
        // Restored in creation order, so tickets keep the fleet's first-come order.
        for cmd in &mut queued {
            cmd.ticket = self.fleet().slots.ticket();
        }
        let (queue, dropped) = if resume {
            (queued, Default::default())
        } else {
            (Default::default(), queued)
        };
        let cost_usd = restored_cost(&settings, &r);
        let state = restored_state(&mut r, queue.len() as u32, cost_usd);
        // Its spend counts against the fleet's budget as before the restart (a shared
        // store counts the fleet's spend itself: nothing to add).
        if self.store().shared().is_none() {
            self.fleet().budget.charge(
                state.cost_usd,
                state.tokens.input_tokens + state.tokens.output_tokens,
            );
        }
        let interrupted = std::mem::take(&mut r.interrupted_tools);
        let handle = AgentHandle::new(
            r.agent_id.clone(),
            settings,
            self.cancel_token(),
            self.fleet().clone(),
            Initial {
                state: Some(state),
                outputs: std::mem::take(&mut r.outputs),
                queue,
                paused: r.paused,
                next_seq: r.next_seq,
                deferred: r.deferred.take(),
                asked: r.question.clone(),
                answer: r.answer.take(),
            },
        );
        let conversation =
            close_interrupted_tools(&handle, std::mem::take(&mut r.conversation), interrupted);
        let mut start = worker::Start {
            conversation,
            resume: None,
            session: r.session.take(),
        };
        start.resume = self.settle_in_progress(&handle, &mut r, resume, report);
        for cmd in &dropped {
            end_command(
                &handle,
                cmd.index,
                CommandStatus::Cancelled,
                Some(NOT_STARTED),
            );
        }
        (handle, start)
    }

    /// The model of a restored agent, resolved with this process's keys; one that can
    /// no longer be used fails its calls with a message saying why.
    fn restored_model(&self, spec: &StoredSettings) -> ResolvedModel {
        self.restored_model_quietly(spec)
            .unwrap_or_else(|(model, message)| {
                tracing::warn!(agent = %spec.name, "{message}");
                model
            })
    }

    /// [`Registry::restored_model`] without the warning: `Err` holds the stand-in that
    /// fails every call, and why.
    pub(super) fn restored_model_quietly(
        &self,
        spec: &StoredSettings,
    ) -> Result<ResolvedModel, (ResolvedModel, String)> {
        self.models().resolve(Some(&spec.model)).map_err(|e| {
            let message = format!(
                "model `{}` cannot be used after the restart: {e}",
                spec.model
            );
            (
                ResolvedModel {
                    id: spec.model.clone(),
                    model: spec
                        .model
                        .split_once(':')
                        .map_or(spec.model.clone(), |(_, m)| m.to_string()),
                    runtime: crate::config::Runtime::Api(Arc::new(Unavailable(message.clone()))),
                    price: None,
                },
                message,
            )
        })
    }

    /// The command that was running when the log ends: cancelled when the
    /// orchestrator had interrupted it, resumed (returned), or failed with
    /// `--no-resume`.
    fn settle_in_progress(
        &self,
        handle: &AgentHandle,
        r: &mut Restored,
        resume: bool,
        report: &mut RestoreReport,
    ) -> Option<worker::Resume> {
        let index = r.in_progress?;
        if r.in_progress_interrupted {
            // The orchestrator's interrupt was acknowledged: honour it.
            end_command(handle, index, CommandStatus::Cancelled, None);
            handle.close_question();
            handle.update(|s| set_status(s, AgentStatus::Cancelled));
            report.cancelled += 1;
            None
        } else if resume {
            report.resumed += 1;
            let (task, output_schema) = handle
                .with_outputs(|o| {
                    o.get(index as usize - 1)
                        .map(|rec| (rec.task.clone(), rec.output_schema.clone()))
                })
                .unwrap_or_default();
            Some(worker::Resume {
                index,
                token: handle.resume_token(),
                steps: r.in_progress_steps,
                ticket: self.fleet().slots.ticket(),
                task,
                output_schema,
                base: r.in_progress_base.take(),
                attempt: r.attempt,
            })
        } else {
            end_command(handle, index, CommandStatus::Failed, Some(NO_RESUME));
            handle.close_question();
            handle.update(|s| {
                set_status(s, AgentStatus::Failed);
                s.last_error = Some(NO_RESUME.into());
            });
            report.not_resumed += 1;
            None
        }
    }
}

/// What a restored agent has spent: its model calls at today's price, plus what CLI
/// sessions charged as they went.
pub(super) fn restored_cost(settings: &crate::agent::AgentSettings, r: &Restored) -> Option<f64> {
    let priced = settings
        .model
        .price
        .map(|p| r.usages.iter().map(|u| p.cost(*u)).sum::<f64>());
    match (priced, r.charged_usd) {
        (priced, Some(charged)) => Some(priced.unwrap_or(0.0) + charged),
        (priced, None) => priced.or(settings.model.priced().then_some(0.0)),
    }
}

/// The state a restored agent shows: its counters as the log left them, `pending`
/// commands still queued, and `paused` at once when it was held while idle.
pub(super) fn restored_state(r: &mut Restored, pending: u32, cost_usd: Option<f64>) -> AgentState {
    // An idle agent held at the restart shows `paused` at once; one with a command in
    // progress turns `paused` at its next step.
    let held_idle = r.paused && r.in_progress.is_none();
    AgentState {
        status: if held_idle {
            AgentStatus::Paused
        } else {
            r.status
        },
        commands: r.outputs.len() as u32,
        pending,
        steps: r.steps,
        tool_calls: r.tool_calls,
        activity: None,
        last_activity_at: r.last_activity_at,
        tokens: r.tokens,
        context_tokens: r.context_tokens,
        cost_usd,
        last_error: r.last_error.take(),
        paused: r.paused,
        waiting_on: if r.deferred.is_some() {
            r.settings.depends_on.clone()
        } else {
            Vec::new()
        },
        attempt: r.attempt,
        before_pause: held_idle.then_some(r.status),
        deleted: false,
        // Answered before the restart: it goes on at once.
        question: r.question.clone().filter(|_| r.answer.is_none()),
    }
}

/// Give every tool call the crash cut short a result saying so, in the log and in
/// the conversation (a model refuses a tool call without a result).
fn close_interrupted_tools(
    handle: &AgentHandle,
    mut conversation: Conversation,
    interrupted: Vec<(String, String)>,
) -> Conversation {
    for (id, name) in interrupted {
        handle.record(Event::ToolResult {
            id: id.clone(),
            name,
            content: INTERRUPTED_TOOL.into(),
            is_error: true,
            files_read: Vec::new(),
            files_written: Vec::new(),
        });
        conversation.push_tool_result(id, INTERRUPTED_TOOL.into(), true);
    }
    conversation
}

/// Set the status a command's end leaves, behind a pause if the agent is held.
fn set_status(s: &mut AgentState, status: AgentStatus) {
    if s.paused {
        s.before_pause = Some(status);
        s.status = AgentStatus::Paused;
    } else {
        s.status = status;
    }
}

/// Record that a command ended at restore time, in the log and in its output.
fn end_command(handle: &AgentHandle, index: u32, status: CommandStatus, error: Option<&str>) {
    let error = error.map(str::to_string);
    handle.record(Event::Finished {
        index,
        status,
        error: error.clone(),
        failure: None,
    });
    handle.with_record(index, |r| {
        r.status = status;
        r.error = error;
    });
}
