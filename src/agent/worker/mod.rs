//! The agent loop: one tokio task per agent that owns its conversation.
//!
//! The loop takes the next command from the agent's inbox, runs it as a [`Turn`]
//! (in `turn.rs`: run slot, pause holds, model steps, tool calls, stalls), and records
//! how it ended. Every await is raced against the command's cancellation token, so an
//! interrupt or a delete stops a model call or a tool at once.
//!
//! Everything that changes the conversation is journaled first-hand (model answers,
//! tool calls and results, command start and end), so a restart can rebuild it. When
//! the whole agent is being stopped (delete or server shutdown) the worker stops
//! journaling at once: a command cut short that way is resumed after a restart, not
//! recorded as cancelled.

mod ask;
mod push;
mod session;
mod session_ask;
mod step;
mod tool_call;
mod turn;

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::SystemTime;

use futures::FutureExt;
use tokio_util::sync::CancellationToken;

use serde_json::Value;

use super::AgentHandle;
use super::conversation::{Conversation, command_instruction, retry_instruction};
use super::output::CommandStatus;
use super::state::{Activity, AgentStatus};
use crate::config::Runtime;
use crate::failure::Failure;
use crate::plan::checkpoint::Checkpoint;
use crate::store::event::Event;
use crate::telemetry::{self, CommandSpan, Outcome};
use session::Session;
use turn::Turn;

/// How a worker starts.
#[derive(Default)]
pub struct Start {
    pub conversation: Conversation,
    /// A command that was running when the server stopped: continue it first.
    pub resume: Option<Resume>,
    /// The CLI session of earlier commands (CLI agents).
    pub session: Option<crate::cli::CliSession>,
}

/// A command to continue after a restart.
pub struct Resume {
    pub index: u32,
    /// Its cancellation token, already installed as the agent's current command so
    /// an interrupt that comes before the worker runs still reaches it.
    pub token: CancellationToken,
    /// Model calls it made before the restart (they count against `max_steps`).
    pub steps: u32,
    /// Its place in line for a run slot.
    pub ticket: u64,
    /// Its task and output_schema, for a retry.
    pub task: String,
    pub output_schema: Option<Value>,
    /// The conversation before its instruction, for a retry (agents with `retries`).
    pub base: Option<Conversation>,
    /// Which attempt it is on.
    pub attempt: u32,
}

/// How a command ended, when it did not end with a final answer.
pub(crate) enum Stop {
    Cancelled,
    Failed(Failure),
}

/// One command as the worker runs it, attempt after attempt.
struct Job {
    index: u32,
    token: CancellationToken,
    ticket: u64,
    steps: u32,
    task: String,
    output_schema: Option<Value>,
    base: Option<Conversation>,
    attempt: u32,
    /// Its `invoke_agent` span (a no-op when traces are off).
    trace: CommandSpan,
    /// It was running when the server stopped (a CLI session is told so).
    restarted: bool,
    /// Why the last attempt failed, while it is started again.
    retry_error: Option<String>,
}

/// Run the agent until it is cancelled. Fires `finished` on the way out.
pub async fn run(agent: Arc<AgentHandle>, start: Start) {
    let _finished = agent.finished.clone().drop_guard();
    let mut conversation = start.conversation;
    let mut resume = start.resume;
    let mut session = start.session;
    loop {
        let (mut job, queued) = if let Some(r) = resume.take() {
            (Job::resumed(&agent, r), false)
        } else {
            let (cmd, token, trace) = tokio::select! {
                biased;
                _ = agent.cancel.cancelled() => break,
                next = agent.next_command() => next,
            };
            // Kept only when a failed attempt may be discarded.
            let base = (agent.settings.retries > 0).then(|| conversation.clone());
            conversation
                .push_instruction(command_instruction(&cmd.task, cmd.output_schema.as_ref()));
            let job = Job {
                index: cmd.index,
                token,
                ticket: cmd.ticket,
                steps: 0,
                task: cmd.task,
                output_schema: cmd.output_schema,
                base,
                attempt: 1,
                trace,
                restarted: false,
                retry_error: None,
            };
            (job, true)
        };
        begin(&agent, job.index, queued, job.attempt);
        let cost_before = agent.peek(|s| s.cost_usd);
        let result = attempts(&agent, &mut conversation, &mut job, &mut session).await;
        agent.finish_command();
        let cost = agent
            .peek(|s| s.cost_usd)
            .map(|after| after - cost_before.unwrap_or(0.0));
        job.trace
            .end(traced(&result, agent.cancel.is_cancelled()), cost);
        if agent.cancel.is_cancelled() {
            // Deleted or shutting down: leave the log as it is (resumed on restart).
            break;
        }
        push::push_work(&agent, job.index).await;
        end(&agent, job.index, result).await;
    }
}

impl Job {
    /// A command that was running when the server stopped, picked up again in a new
    /// trace.
    fn resumed(agent: &AgentHandle, r: Resume) -> Self {
        let trace = telemetry::command_span(agent.name(), &agent.id, r.index, &r.task);
        agent.record(Event::Resumed {
            index: r.index,
            trace_id: trace.trace_id(),
        });
        Job {
            index: r.index,
            token: r.token,
            ticket: r.ticket,
            steps: r.steps,
            task: r.task,
            output_schema: r.output_schema,
            base: r.base,
            attempt: r.attempt,
            trace,
            restarted: true,
            retry_error: None,
        }
    }
}

/// Run the command's attempts: one, or with `retries` until one succeeds, a failure
/// is not worth retrying, or the retries are spent (escalated).
async fn attempts(
    agent: &AgentHandle,
    conversation: &mut Conversation,
    job: &mut Job,
    session: &mut Option<crate::cli::CliSession>,
) -> Result<(), Stop> {
    let retries = agent.settings.retries;
    loop {
        // A worktree deleted behind flotilla's back: say so, do not run blind.
        if let Some(missing) = agent.settings.workspace_missing() {
            return Err(Stop::Failed(Failure::WorkspaceMissing(missing)));
        }
        let result = match &agent.settings.model.runtime {
            Runtime::Api(provider) => {
                let checkpoint = job
                    .output_schema
                    .as_ref()
                    .and_then(|s| Checkpoint::new(s).ok());
                // Boxed so an idle agent's task stays small: the model call and tool
                // futures live on the heap only while a command runs.
                let turn = Turn::new(
                    agent,
                    provider.as_ref(),
                    conversation,
                    job.index,
                    &job.token,
                    job.steps,
                    job.ticket,
                    checkpoint,
                )
                .traced(&job.trace);
                AssertUnwindSafe(Box::pin(turn.run())).catch_unwind().await
            }
            Runtime::Cli(cli) => {
                let prompt = session_prompt(job);
                let run = Session::new(
                    agent,
                    cli,
                    conversation,
                    job.index,
                    &job.token,
                    job.steps,
                    job.ticket,
                    job.output_schema.as_ref(),
                    session,
                    &job.trace,
                );
                AssertUnwindSafe(Box::pin(run.run(prompt)))
                    .catch_unwind()
                    .await
            }
        }
        .unwrap_or(Err(Stop::Failed(Failure::Panicked)));
        job.restarted = false;
        match result {
            Err(Stop::Failed(error))
                if retries > 0 && !agent.cancel.is_cancelled() && error.retryable() =>
            {
                if job.attempt > retries {
                    agent.record(Event::Escalated {
                        index: job.index,
                        attempts: job.attempt,
                        error: error.to_string(),
                    });
                    return Err(Stop::Failed(Failure::Escalated {
                        attempts: job.attempt,
                        last: Box::new(error),
                    }));
                }
                evict(agent, conversation, job, &error);
            }
            other => return other,
        }
    }
}

/// What a CLI session is told for `job`: its task (again with the last error on a
/// retry), after a note when flotilla restarted in the middle of it.
fn session_prompt(job: &Job) -> String {
    let instruction = match &job.retry_error {
        Some(error) => retry_instruction(&job.task, job.output_schema.as_ref(), error),
        None => command_instruction(&job.task, job.output_schema.as_ref()),
    };
    if job.restarted {
        format!("{}\n\n{instruction}", session::RESTARTED_NOTE)
    } else {
        instruction
    }
}

/// How the command's trace span ends; `stopping` when the agent is deleted or the
/// server stops.
fn traced(result: &Result<(), Stop>, stopping: bool) -> Outcome<'_> {
    match result {
        _ if stopping => Outcome::Stopped,
        Ok(()) => Outcome::Done,
        Err(Stop::Cancelled) => Outcome::Cancelled,
        Err(Stop::Failed(error)) => Outcome::Failed(error),
    }
}

/// Discard a failed attempt: back to the conversation before the command, then its
/// task again with the error in hand.
fn evict(agent: &AgentHandle, conversation: &mut Conversation, job: &mut Job, error: &Failure) {
    let error = error.to_string();
    tracing::info!(agent = %agent.name(), command = job.index, attempt = job.attempt, "attempt failed; starting again: {error}");
    agent.record(Event::Evicted {
        index: job.index,
        attempt: job.attempt,
        error: error.clone(),
    });
    if let Some(base) = &job.base {
        *conversation = base.clone();
    }
    conversation.push_instruction(retry_instruction(
        &job.task,
        job.output_schema.as_ref(),
        &error,
    ));
    job.attempt += 1;
    job.steps = 0;
    job.retry_error = Some(error.clone());
    agent.with_record(job.index, |r| {
        r.text.clear();
        r.output_json = None;
    });
    let attempt = job.attempt;
    agent.update(|s| {
        s.attempt = attempt;
        s.activity = Some(Activity::now(format!("attempt {attempt}: starting again")));
    });
}

/// A command is taken up: counters and its record say so.
fn begin(agent: &AgentHandle, index: u32, queued: bool, attempt: u32) {
    agent.update(|s| {
        // Resumed while waiting on a question: it still waits.
        if s.question.is_none() {
            s.status = AgentStatus::Running;
            s.activity = Some(Activity::now("starting"));
        }
        s.attempt = attempt;
        if queued {
            s.pending = s.pending.saturating_sub(1);
        }
        s.last_error = None;
    });
    agent.with_record(index, |r| {
        r.status = CommandStatus::Running;
        r.started_at.get_or_insert_with(SystemTime::now);
    });
}

/// A command is over: its end is saved before anyone is told.
async fn end(agent: &AgentHandle, index: u32, result: Result<(), Stop>) {
    let (cmd_status, failure) = match result {
        Ok(()) => (CommandStatus::Done, None),
        Err(Stop::Cancelled) => (CommandStatus::Cancelled, None),
        Err(Stop::Failed(f)) => (CommandStatus::Failed, Some(f)),
    };
    let error = failure.as_ref().map(Failure::to_string);
    let status = AgentStatus::from(cmd_status);
    tracing::info!(agent = %agent.name(), command = index, status = status.as_str(), error = ?error, "command ended");
    let ack = agent.record(Event::Finished {
        index,
        status: cmd_status,
        error: error.clone(),
        failure: failure.as_ref().map(Failure::kind),
    });
    if let Some(ack) = ack {
        match ack.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(agent = %agent.name(), "could not save the end of command {index}: {e}")
            }
            Err(_) => {
                tracing::error!(agent = %agent.name(), "store closed before saving command {index}")
            }
        }
    }
    agent.with_record(index, |r| {
        r.status = cmd_status;
        r.error.clone_from(&error);
        r.finished_at = Some(SystemTime::now());
    });
    // Under the inbox lock, so a resume cannot slip between reading the pause and
    // setting the status.
    let inbox = super::lock(&agent.inbox);
    let paused = inbox.paused;
    agent.update(|s| {
        s.activity = None;
        s.last_error = error;
        if paused {
            // Held: it shows `paused` and takes up its pre-pause status on resume.
            s.before_pause = Some(status);
            s.status = AgentStatus::Paused;
        } else {
            s.status = status;
        }
    });
    drop(inbox);
}
