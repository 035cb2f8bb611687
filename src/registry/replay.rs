//! Rebuild an agent from its event log: settings, conversation, counters, outputs,
//! queue, and whether a command was in progress when the process died.
//!
//! The store keeps the log (its own I/O); the registry, which owns agents, reads it
//! back here. Each event kind is one step of [`Replay`].

use std::collections::VecDeque;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::agent::asking::{Answer, Question};
use crate::agent::conversation::{Conversation, command_instruction, retry_instruction};
use crate::agent::output::{CommandRecord, CommandStatus};
use crate::agent::state::AgentStatus;
use crate::agent::{Deferred, QueuedCommand};
use crate::model::{Message, StopReason, Usage};
use crate::store::event::{Event, StoredSettings, is_cut_off};
use crate::store::{AgentLog, StoredEvent};

/// An agent as its log left it.
#[derive(Debug)]
pub(crate) struct Restored {
    pub agent_id: String,
    pub settings: StoredSettings,
    pub conversation: Conversation,
    pub status: AgentStatus,
    pub last_error: Option<String>,
    pub steps: u64,
    pub tool_calls: u64,
    pub tokens: Usage,
    /// Usage of each model call, for costing at today's price.
    pub usages: Vec<Usage>,
    /// Spend charged as it was made (CLI sessions), beside `usages`.
    pub charged_usd: Option<f64>,
    /// Its CLI session (CLI agents).
    pub session: Option<crate::cli::CliSession>,
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
    /// The question the in-progress command waits on (status `needs_input`).
    pub question: Option<Question>,
    /// Its answer, when it was given but the worker had not taken it yet.
    pub answer: Option<Answer>,
}

fn time(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

/// Replay a log. `None` when it has no `created` event (nothing to restore).
pub(crate) fn replay(log: AgentLog) -> Option<Restored> {
    let mut events = log.events.into_iter();
    let StoredEvent {
        seq,
        at_ms,
        event: Event::Created { settings },
    } = events.next()?
    else {
        return None;
    };
    let mut replay = Replay::new(log.agent_id, *settings, seq, at_ms);
    for StoredEvent { seq, at_ms, event } in events {
        replay.apply(seq, at_ms, event);
    }
    Some(replay.finish())
}

/// An agent half rebuilt, and what replaying the rest of its log needs to know.
struct Replay {
    r: Restored,
    /// The command its held task became, if any.
    deferred_index: Option<u32>,
    /// Tool calls of the in-progress command that have no result yet.
    started_tools: Vec<(String, String)>,
    /// Ids of the in-progress command's questions: a CLI session shows its ask as a
    /// tool call too (before or after the question), and it counts once.
    asked_ids: Vec<String>,
    /// The last model reply was cut off: the next one continues its answer.
    continues: bool,
}

impl Replay {
    /// The agent as its `created` event (number `seq`, at `at_ms`) left it.
    fn new(agent_id: String, settings: StoredSettings, seq: u64, at_ms: i64) -> Self {
        let deferred = settings.deferred_task.clone().map(|task| Deferred {
            task,
            output_schema: settings.deferred_schema.clone(),
        });
        let status = if deferred.is_some() {
            AgentStatus::Waiting
        } else {
            AgentStatus::Idle
        };
        let r = Restored {
            agent_id,
            settings,
            conversation: Conversation::default(),
            status,
            last_error: None,
            steps: 0,
            tool_calls: 0,
            tokens: Usage::default(),
            usages: Vec::new(),
            charged_usd: None,
            session: None,
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
            deferred,
            attempt: 1,
            in_progress_base: None,
            question: None,
            answer: None,
        };
        Self {
            r,
            deferred_index: None,
            started_tools: Vec::new(),
            asked_ids: Vec::new(),
            continues: false,
        }
    }

    /// Another node took it over and made its worktree there: it works in that one.
    fn relocated(&mut self, worktree: crate::worktree::Worktree) {
        self.r.settings.workdir = super::create::within(&worktree.path, &worktree.prefix);
        self.r.settings.worktree = Some(worktree);
    }

    /// Apply one event of the log.
    fn apply(&mut self, seq: u64, at_ms: i64, event: Event) {
        self.r.next_seq = seq + 1;
        self.r.last_activity_at = time(at_ms);
        match event {
            Event::Created { .. }
            | Event::Retry { .. }
            | Event::Resumed { .. }
            | Event::Escalated { .. }
            | Event::Pushed { .. }
            | Event::HandoffFlagged { .. } => {}
            Event::Relocated { worktree, .. } => self.relocated(worktree),
            Event::Command {
                index,
                task,
                interrupt,
                output_schema,
            } => self.command(at_ms, index, task, interrupt, output_schema),
            Event::Started { index, .. } => self.started(at_ms, index),
            Event::Model {
                message,
                usage,
                stop_reason,
                cost_usd,
            } => self.model(message, usage, &stop_reason, cost_usd),
            Event::Session { id } => {
                self.r.session = Some(crate::cli::CliSession {
                    id,
                    ..Default::default()
                });
            }
            Event::Charged {
                cost_usd,
                usage,
                session_total_usd,
                session_usage,
            } => {
                self.charge(cost_usd);
                self.r.tokens += usage;
                if let Some(session) = self.r.session.as_mut() {
                    if let Some(total) = session_total_usd {
                        session.reported_usd = total;
                    }
                    if let Some(total) = session_usage {
                        session.reported_usage = total;
                    }
                }
            }
            Event::ToolCall { id, name, .. } => {
                if !self.asked_ids.contains(&id) {
                    self.r.tool_calls += 1;
                }
                self.started_tools.push((id, name));
            }
            Event::Asked {
                index,
                id,
                question,
                options,
            } => self.asked(at_ms, index, id, question, options),
            Event::Answered { id, answer, by, .. } => self.answered(id, answer, by),
            Event::ToolResult {
                id,
                content,
                is_error,
                files_read,
                files_written,
                ..
            } => {
                if self.r.question.as_ref().is_some_and(|q| q.call_id == id) {
                    self.close_question();
                }
                self.started_tools.retain(|(i, _)| *i != id);
                if let Some(rec) = self.current_record() {
                    rec.files_read.extend(files_read);
                    rec.files_written.extend(files_written);
                }
                self.r.conversation.push_tool_result(id, content, is_error);
            }
            Event::Finished {
                index,
                status,
                error,
                ..
            } => self.finished(at_ms, index, status, error),
            Event::Evicted {
                index,
                attempt,
                error,
            } => self.evicted(index, attempt, &error),
            Event::CheckpointPassed { index, value } => {
                if let Some(rec) = record(&mut self.r.outputs, index) {
                    rec.output_json = Some(value);
                }
            }
            Event::CheckpointFailed { message, .. } => {
                self.r.conversation.push_instruction(message);
            }
            Event::Paused => self.r.paused = true,
            Event::Unpaused => self.r.paused = false,
        }
    }

    /// The output record of the command in progress.
    fn current_record(&mut self) -> Option<&mut CommandRecord> {
        let index = self.r.in_progress?;
        record(&mut self.r.outputs, index)
    }

    /// A command was given: queued (first, with `interrupt`).
    fn command(
        &mut self,
        at_ms: i64,
        index: u32,
        task: String,
        interrupt: bool,
        output_schema: Option<Value>,
    ) {
        let r = &mut self.r;
        // Its held task became (or was cancelled as) a command: no longer waiting.
        if r.deferred.take().is_some() && r.status == AgentStatus::Waiting {
            r.status = AgentStatus::Idle;
            self.deferred_index = Some(index);
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

    /// The worker started on a command: its instruction joins the conversation.
    fn started(&mut self, at_ms: i64, index: u32) {
        let r = &mut self.r;
        if let Some(cmd) = r
            .queued
            .iter()
            .position(|c| c.index == index)
            .and_then(|pos| r.queued.remove(pos))
        {
            r.in_progress_base = (r.settings.retries > 0).then(|| r.conversation.clone());
            r.conversation
                .push_instruction(command_instruction(&cmd.task, cmd.output_schema.as_ref()));
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
        r.attempt = 1;
        self.started_tools.clear();
        self.continues = false;
        self.close_question();
    }

    /// The in-progress command asked a question (it counts as a tool call, once: a CLI
    /// session's own tool call for it may come before or after).
    fn asked(
        &mut self,
        at_ms: i64,
        index: u32,
        id: String,
        question: String,
        options: Vec<String>,
    ) {
        if !self.started_tools.iter().any(|(i, _)| *i == id) {
            self.r.tool_calls += 1;
        }
        self.asked_ids.push(id.clone());
        self.r.answer = None;
        self.r.question = Some(Question {
            index,
            call_id: id,
            question,
            options,
            asked_at: time(at_ms),
        });
    }

    /// Its question was answered: the worker takes the answer when it resumes, unless
    /// the call's result follows (then the command went on with it).
    fn answered(&mut self, id: String, answer: String, by: crate::agent::asking::Answerer) {
        if self.r.question.as_ref().is_some_and(|q| q.call_id == id) {
            self.r.answer = Some(Answer {
                call_id: id,
                text: answer,
                by,
            });
        }
    }

    /// No question open any more (answered, or its command moved on).
    fn close_question(&mut self) {
        self.r.question = None;
        self.r.answer = None;
    }

    /// A model call answered: count it, and take its text as the answer so far.
    /// Spend charged as it was made.
    fn charge(&mut self, cost_usd: f64) {
        *self.r.charged_usd.get_or_insert(0.0) += cost_usd;
    }

    fn model(
        &mut self,
        message: Message,
        usage: Usage,
        stop_reason: &StopReason,
        cost_usd: Option<f64>,
    ) {
        let continues = self.continues;
        if let Some(rec) = self.current_record() {
            rec.take_answer(&message.text(), continues);
        }
        let r = &mut self.r;
        r.steps += 1;
        r.in_progress_steps += 1;
        r.tokens += usage;
        r.context_tokens = usage.input_tokens;
        match cost_usd {
            Some(cost) => self.charge(cost),
            None => self.r.usages.push(usage),
        }
        let r = &mut self.r;
        let cut = is_cut_off(&message, stop_reason);
        r.conversation.push_assistant(message);
        if cut {
            r.conversation.push_continue();
        }
        self.continues = cut;
    }

    /// A command ended (or was cancelled before it started).
    fn finished(&mut self, at_ms: i64, index: u32, status: CommandStatus, error: Option<String>) {
        let r = &mut self.r;
        if let Some(rec) = record(&mut r.outputs, index) {
            rec.status = status;
            rec.error.clone_from(&error);
            rec.finished_at = Some(time(at_ms));
        }
        // A command cancelled before it started has no `started` event.
        if let Some(pos) = r.queued.iter().position(|c| c.index == index) {
            r.queued.remove(pos);
            if self.deferred_index == Some(index) {
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
            self.started_tools.clear();
            self.close_question();
        }
    }

    /// A failed attempt was discarded: the command starts over from its task plus
    /// the error.
    fn evicted(&mut self, index: u32, attempt: u32, error: &str) {
        let r = &mut self.r;
        if let Some(base) = &r.in_progress_base {
            r.conversation = base.clone();
        }
        if let Some(rec) = record(&mut r.outputs, index) {
            r.conversation.push_instruction(retry_instruction(
                &rec.task,
                rec.output_schema.as_ref(),
                error,
            ));
            rec.text.clear();
            rec.output_json = None;
        }
        r.attempt = attempt + 1;
        r.in_progress_steps = 0;
        self.started_tools.clear();
        self.continues = false;
        self.close_question();
    }

    /// The agent as the whole log left it. Queued records never started stay `queued`.
    /// A command that was waiting on an unanswered question shows `needs_input`.
    fn finish(mut self) -> Restored {
        self.r.interrupted_tools = std::mem::take(&mut self.started_tools);
        let open = self.r.question.as_ref().map(|q| q.index);
        if open.is_some() && open == self.r.in_progress {
            if self.r.answer.is_none() {
                self.r.status = AgentStatus::NeedsInput;
            }
        } else {
            self.close_question();
        }
        self.r
    }
}

fn record(outputs: &mut [CommandRecord], index: u32) -> Option<&mut CommandRecord> {
    (index as usize)
        .checked_sub(1)
        .and_then(|i| outputs.get_mut(i))
}
