//! Rebuild an agent from its event log: settings, conversation, counters, outputs,
//! queue, and whether a command was in progress when the process died.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::event::{Event, StoredSettings, is_cut_off};
use super::{AgentLog, StoredEvent};
use crate::agent::conversation::{Conversation, retry_instruction};
use crate::agent::output::{CommandRecord, CommandStatus};
use crate::agent::state::AgentStatus;
use crate::agent::{Deferred, QueuedCommand};
use crate::model::Usage;

/// An agent as its log left it.
#[derive(Debug)]
pub struct Restored {
    pub agent_id: String,
    pub settings: StoredSettings,
    pub created_at: SystemTime,
    pub conversation: Conversation,
    pub status: AgentStatus,
    pub last_error: Option<String>,
    pub steps: u64,
    pub tool_calls: u64,
    pub tokens: Usage,
    /// Usage of each model call, for costing at today's price.
    pub usages: Vec<Usage>,
    pub context_tokens: u64,
    pub last_activity_at: SystemTime,
    pub outputs: Vec<CommandRecord>,
    /// Commands given but not started, in the order they will run.
    pub queued: VecDeque<QueuedCommand>,
    /// The command that was running when the log ends, if any.
    pub in_progress: Option<u32>,
    /// Model calls that command had made (they count against its `max_steps`).
    pub in_progress_steps: u32,
    /// The orchestrator interrupted that command (an acknowledged `interrupt`
    /// command came after it started): it must not be resumed.
    pub in_progress_interrupted: bool,
    /// Tool calls that started but never finished (in the in-progress command).
    pub interrupted_tools: Vec<(String, String)>,
    /// The next sequence number to append.
    pub next_seq: u64,
    /// Held by `pause_agents` when the log ends.
    pub paused: bool,
    /// Its task, while it still waits for its dependencies.
    pub deferred: Option<Deferred>,
    /// Attempt of the in-progress (or last) command.
    pub attempt: u32,
    /// The conversation before the in-progress command's instruction (agents with
    /// `retries`), to start a failed attempt over from.
    pub in_progress_base: Option<Conversation>,
}

fn time(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

/// Replay a log. `None` when it has no `created` event (nothing to restore).
pub fn replay(log: AgentLog) -> Option<Restored> {
    let mut events = log.events.into_iter();
    let first = events.next()?;
    let StoredEvent {
        seq,
        at_ms,
        event: Event::Created { settings },
    } = first
    else {
        return None;
    };
    let mut r = Restored {
        agent_id: log.agent_id,
        settings: *settings,
        created_at: time(at_ms),
        conversation: Conversation::default(),
        status: AgentStatus::Idle,
        last_error: None,
        steps: 0,
        tool_calls: 0,
        tokens: Usage::default(),
        usages: Vec::new(),
        context_tokens: 0,
        last_activity_at: time(at_ms),
        outputs: Vec::new(),
        queued: VecDeque::new(),
        in_progress: None,
        in_progress_steps: 0,
        in_progress_interrupted: false,
        interrupted_tools: Vec::new(),
        next_seq: seq + 1,
        paused: false,
        deferred: None,
        attempt: 1,
        in_progress_base: None,
    };
    if let Some(task) = r.settings.deferred_task.clone() {
        r.deferred = Some(Deferred {
            task,
            output_schema: r.settings.deferred_schema.clone(),
        });
        r.status = AgentStatus::Waiting;
    }
    let retries = r.settings.retries;
    // The command its held task became, if any.
    let mut deferred_index = None;
    let mut started_tools: Vec<(String, String)> = Vec::new();
    // The last model reply was cut off: the next one continues its answer.
    let mut continues = false;
    for StoredEvent { seq, at_ms, event } in events {
        r.next_seq = seq + 1;
        r.last_activity_at = time(at_ms);
        let current = r.in_progress;
        match event {
            Event::Created { .. } => {}
            Event::Command {
                index,
                task,
                interrupt,
                output_schema,
            } => {
                // Its held task became (or was cancelled as) a command: no longer waiting.
                if r.deferred.take().is_some() && r.status == AgentStatus::Waiting {
                    r.status = AgentStatus::Idle;
                    deferred_index = Some(index);
                }
                if interrupt && r.in_progress.is_some() {
                    r.in_progress_interrupted = true;
                }
                let mut record = CommandRecord::queued(task.clone());
                record.queued_at = time(at_ms);
                record.output_schema.clone_from(&output_schema);
                r.outputs.push(record);
                let cmd = QueuedCommand {
                    index,
                    task,
                    ticket: 0,
                    output_schema,
                };
                if interrupt {
                    r.queued.push_front(cmd);
                } else {
                    r.queued.push_back(cmd);
                }
            }
            Event::Started { index, .. } => {
                if let Some(cmd) = r
                    .queued
                    .iter()
                    .position(|c| c.index == index)
                    .and_then(|pos| r.queued.remove(pos))
                {
                    r.in_progress_base = (retries > 0).then(|| r.conversation.clone());
                    r.conversation.push_instruction(cmd.task);
                }
                if let Some(rec) = record(&mut r.outputs, index) {
                    rec.status = CommandStatus::Running;
                    rec.started_at = Some(time(at_ms));
                }
                r.in_progress = Some(index);
                r.in_progress_steps = 0;
                r.in_progress_interrupted = false;
                r.status = AgentStatus::Running;
                r.last_error = None;
                started_tools.clear();
                continues = false;
                r.attempt = 1;
            }
            Event::Model {
                message,
                usage,
                stop_reason,
            } => {
                r.steps += 1;
                r.in_progress_steps += 1;
                r.tokens += usage;
                r.context_tokens = usage.input_tokens;
                r.usages.push(usage);
                if let Some(rec) = current.and_then(|i| record(&mut r.outputs, i)) {
                    rec.take_answer(&message.text(), continues);
                }
                let cut = is_cut_off(&message, &stop_reason);
                r.conversation.push_assistant(message);
                if cut {
                    r.conversation.push_continue();
                }
                continues = cut;
            }
            Event::Retry { .. } => {}
            Event::ToolCall { id, name, .. } => {
                r.tool_calls += 1;
                started_tools.push((id, name));
            }
            Event::ToolResult {
                id,
                content,
                is_error,
                files_read,
                files_written,
                ..
            } => {
                started_tools.retain(|(i, _)| *i != id);
                if let Some(rec) = current.and_then(|i| record(&mut r.outputs, i)) {
                    rec.files_read.extend(files_read);
                    rec.files_written.extend(files_written);
                }
                r.conversation.push_tool_result(id, content, is_error);
            }
            Event::Finished {
                index,
                status,
                error,
                ..
            } => {
                if let Some(rec) = record(&mut r.outputs, index) {
                    rec.status = status;
                    rec.error.clone_from(&error);
                    rec.finished_at = Some(time(at_ms));
                }
                // A command cancelled before it started has no `started` event.
                if let Some(pos) = r.queued.iter().position(|c| c.index == index) {
                    r.queued.remove(pos);
                    if deferred_index == Some(index) {
                        // A dependency failed: the agent's status says why.
                        r.status = status.into();
                        r.last_error.clone_from(&error);
                    }
                }
                if r.in_progress == Some(index) {
                    r.in_progress = None;
                    r.in_progress_interrupted = false;
                    r.status = status.into();
                    r.last_error = error;
                    started_tools.clear();
                }
            }
            Event::Resumed { .. } => {}
            Event::Evicted {
                index,
                attempt,
                error,
            } => {
                if let Some(base) = &r.in_progress_base {
                    r.conversation = base.clone();
                }
                if let Some(rec) = record(&mut r.outputs, index) {
                    r.conversation
                        .push_instruction(retry_instruction(&rec.task, &error));
                    rec.text.clear();
                    rec.output_json = None;
                }
                r.attempt = attempt + 1;
                r.in_progress_steps = 0;
                started_tools.clear();
                continues = false;
            }
            Event::CheckpointPassed { index, value } => {
                if let Some(rec) = record(&mut r.outputs, index) {
                    rec.output_json = Some(value);
                }
            }
            Event::CheckpointFailed { message, .. } => r.conversation.push_instruction(message),
            Event::Escalated { .. } | Event::HandoffFlagged { .. } => {}
            Event::Paused => r.paused = true,
            Event::Unpaused => r.paused = false,
        }
    }
    r.interrupted_tools = started_tools;
    // Queued records never started stay `queued`.
    Some(r)
}

fn record(outputs: &mut [CommandRecord], index: u32) -> Option<&mut CommandRecord> {
    (index as usize)
        .checked_sub(1)
        .and_then(|i| outputs.get_mut(i))
}
