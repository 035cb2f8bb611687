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

mod step;
mod tool_call;
mod turn;

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::SystemTime;

use futures::FutureExt;
use tokio_util::sync::CancellationToken;

use super::AgentHandle;
use super::conversation::Conversation;
use super::output::CommandStatus;
use super::state::{Activity, AgentStatus};
use crate::store::event::Event;
use turn::Turn;

/// How a worker starts.
#[derive(Default)]
pub struct Start {
    pub conversation: Conversation,
    /// A command that was running when the server stopped: continue it first.
    pub resume: Option<Resume>,
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
}

/// How a command ended, when it did not end with a final answer.
pub(crate) enum Stop {
    Cancelled,
    Failed(String),
}

/// Run the agent until it is cancelled. Fires `finished` on the way out.
pub async fn run(agent: Arc<AgentHandle>, start: Start) {
    let _finished = agent.finished.clone().drop_guard();
    let mut conversation = start.conversation;
    let mut resume = start.resume;
    loop {
        let (index, token, queued, steps_done, ticket) = if let Some(r) = resume.take() {
            agent.record(Event::Resumed { index: r.index });
            (r.index, r.token, false, r.steps, r.ticket)
        } else {
            let (cmd, token) = tokio::select! {
                biased;
                _ = agent.cancel.cancelled() => break,
                next = agent.next_command() => next,
            };
            conversation.push_instruction(cmd.task);
            (cmd.index, token, true, 0, cmd.ticket)
        };
        begin(&agent, index, queued);
        // Boxed so an idle agent's task stays small: the model call and tool futures
        // live on the heap only while a command runs.
        let turn = Turn::new(&agent, &mut conversation, index, &token, steps_done, ticket);
        let result = AssertUnwindSafe(Box::pin(turn.run()))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| {
                Err(Stop::Failed(
                    "internal error: the agent's worker panicked (see the server log)".into(),
                ))
            });
        agent.finish_command();
        if agent.cancel.is_cancelled() {
            // Deleted or shutting down: leave the log as it is (resumed on restart).
            break;
        }
        end(&agent, index, result).await;
    }
}

/// A command is taken up: counters and its record say so.
fn begin(agent: &AgentHandle, index: u32, queued: bool) {
    agent.update(|s| {
        s.status = AgentStatus::Running;
        if queued {
            s.pending = s.pending.saturating_sub(1);
        }
        s.last_error = None;
        s.activity = Some(Activity::now("starting"));
    });
    agent.with_record(index, |r| {
        r.status = CommandStatus::Running;
        r.started_at.get_or_insert_with(SystemTime::now);
    });
}

/// A command is over: its end is saved before anyone is told.
async fn end(agent: &AgentHandle, index: u32, result: Result<(), Stop>) {
    let (cmd_status, error) = match result {
        Ok(()) => (CommandStatus::Done, None),
        Err(Stop::Cancelled) => (CommandStatus::Cancelled, None),
        Err(Stop::Failed(e)) => (CommandStatus::Failed, Some(e)),
    };
    let status = AgentStatus::from(cmd_status);
    tracing::info!(agent = %agent.name(), command = index, status = status.as_str(), error = ?error, "command ended");
    let ack = agent.record(Event::Finished {
        index,
        status: cmd_status,
        error: error.clone(),
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
