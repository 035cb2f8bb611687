//! The agent loop: one tokio task per agent that owns its conversation.
//!
//! For each command: append the instruction, then call the model; run the tools it
//! asks for inside the work directory; send the results back; repeat until the model
//! answers without tool calls (its final answer) or `max_steps` is reached. Every
//! await is raced against the command's cancellation token, so an interrupt or a
//! delete stops a model call or a tool at once.
//!
//! Everything that changes the conversation is journaled first-hand here (model
//! answers, tool calls and results, command start and end), so a restart can rebuild
//! it. When the whole agent is being stopped (delete or server shutdown) the worker
//! stops journaling at once: a command cut short that way is resumed after a restart,
//! not recorded as cancelled.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use futures::FutureExt;
use tokio_util::sync::CancellationToken;

use super::AgentHandle;
use super::conversation::Conversation;
use super::output::CommandStatus;
use super::state::{Activity, AgentStatus};
use crate::model::{ModelRequest, Role};
use crate::provider::retry::{RetryError, complete_with_retry};
use crate::store::event::Event;
use crate::tools::{ToolContext, ToolOutcome, describe_call, run_tool};

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
}

/// How a command ended, when it did not end with a final answer.
enum Stop {
    Cancelled,
    Failed(String),
}

/// Run the agent until it is cancelled. Fires `finished` on the way out.
pub async fn run(agent: Arc<AgentHandle>, start: Start) {
    let _finished = agent.finished.clone().drop_guard();
    let mut conversation = start.conversation;
    let mut resume = start.resume;
    loop {
        let (index, turn, queued, steps_done) = if let Some(r) = resume.take() {
            agent.record(Event::Resumed { index: r.index });
            (r.index, r.token, false, r.steps)
        } else {
            let (cmd, turn) = tokio::select! {
                biased;
                _ = agent.cancel.cancelled() => break,
                next = agent.next_command() => next,
            };
            conversation.push_instruction(cmd.task);
            (cmd.index, turn, true, 0)
        };
        agent.update(|s| {
            s.status = AgentStatus::Running;
            if queued {
                s.pending = s.pending.saturating_sub(1);
            }
            s.last_error = None;
            s.activity = Some(activity("starting"));
        });
        agent.with_record(index, |r| {
            r.status = CommandStatus::Running;
            r.started_at.get_or_insert_with(SystemTime::now);
        });

        // Boxed so an idle agent's task stays small: the model call and tool futures
        // live on the heap only while a command runs.
        let result = AssertUnwindSafe(Box::pin(run_command(
            &agent,
            &mut conversation,
            index,
            &turn,
            steps_done,
        )))
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
        // The output is saved before anyone is told the command is over.
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
        agent.update(|s| {
            s.status = status;
            s.activity = None;
            s.last_error = error;
        });
    }
}

fn activity(label: impl Into<String>) -> Activity {
    Activity {
        label: label.into(),
        since: Instant::now(),
    }
}

async fn run_command(
    agent: &AgentHandle,
    conversation: &mut Conversation,
    index: u32,
    turn: &CancellationToken,
    steps_done: u32,
) -> Result<(), Stop> {
    let settings = &agent.settings;
    let ctx = ToolContext {
        root: settings.workdir.clone(),
        cancel: turn.clone(),
    };
    // Journal unless the whole agent is stopping (see the module docs).
    let journal = |event: Event| {
        if !agent.cancel.is_cancelled() {
            agent.record(event);
        }
    };
    let mut steps = steps_done;
    loop {
        // Tool calls still unanswered (a fresh model answer, or one found on resume).
        let calls = conversation.unanswered_tool_calls();
        if !calls.is_empty() {
            for (id, name, input) in calls {
                let outcome = if turn.is_cancelled() {
                    ToolOutcome {
                        content: "Cancelled: the orchestrator interrupted this command before this tool ran.".into(),
                        is_error: true,
                        ..Default::default()
                    }
                } else if !settings.tools.contains(&name) {
                    ToolOutcome {
                        content: format!(
                            "Error: tool `{name}` is not available to this agent. Available tools: {}.",
                            settings.tools.join(", ")
                        ),
                        is_error: true,
                        ..Default::default()
                    }
                } else {
                    let label = describe_call(&name, &input);
                    agent.update(|s| {
                        s.tool_calls += 1;
                        s.activity = Some(activity(label));
                    });
                    // On disk before it runs: after a crash it is reported as
                    // interrupted, never run a second time.
                    if !agent.cancel.is_cancelled() {
                        let ack = agent.record(Event::ToolCall {
                            id: id.clone(),
                            name: name.clone(),
                            input: input.clone(),
                        });
                        if let Some(Ok(Err(e))) = match ack {
                            Some(ack) => Some(ack.await),
                            None => None,
                        } {
                            tracing::error!(agent = %settings.name, "could not save a tool call: {e}");
                        }
                    }
                    let outcome = run_tool(&name, input, &ctx).await;
                    if !outcome.files_read.is_empty() || !outcome.files_written.is_empty() {
                        agent.with_record(index, |r| {
                            r.files_read.extend(outcome.files_read.iter().cloned());
                            r.files_written
                                .extend(outcome.files_written.iter().cloned());
                        });
                    }
                    outcome
                };
                if agent.cancel.is_cancelled() {
                    return Err(Stop::Cancelled);
                }
                journal(Event::ToolResult {
                    id: id.clone(),
                    name,
                    content: outcome.content.clone(),
                    is_error: outcome.is_error,
                    files_read: outcome.files_read,
                    files_written: outcome.files_written,
                });
                conversation.push_tool_result(id, outcome.content, outcome.is_error);
            }
            if turn.is_cancelled() {
                return Err(Stop::Cancelled);
            }
            continue;
        }
        // The model's last word had no tool calls: that is its final answer.
        if conversation
            .messages()
            .last()
            .is_some_and(|m| m.role == Role::Assistant)
        {
            return Ok(());
        }
        if steps >= settings.max_steps {
            return Err(Stop::Failed(format!(
                "stopped after max_steps ({}) model calls without a final answer; command the agent to continue, or create it with a higher max_steps",
                settings.max_steps
            )));
        }
        steps += 1;
        agent.update(|s| s.activity = Some(activity(format!("calling model (step {steps})"))));
        let request = ModelRequest {
            model: &settings.model.model,
            system: &settings.system_prompt,
            messages: conversation.messages(),
            tools: &settings.tool_specs,
            max_tokens: settings.max_output_tokens,
        };
        let mut on_retry = |attempt: u32,
                            err: &crate::provider::ProviderError,
                            wait: std::time::Duration| {
            tracing::warn!(agent = %settings.name, attempt, error = %err, ?wait, "model call failed; retrying");
            journal(Event::Retry {
                attempt,
                error: err.to_string(),
                wait_ms: wait.as_millis() as u64,
            });
            let label = format!(
                "retrying model call in {:.1}s (retry {attempt}/{}): {}",
                wait.as_secs_f64(),
                settings.retry.max_retries,
                short(&err.to_string(), 80)
            );
            agent.update(|s| s.activity = Some(activity(label)));
        };
        let response = match complete_with_retry(
            settings.model.provider.as_ref(),
            &request,
            &settings.retry,
            turn,
            &mut on_retry,
        )
        .await
        {
            Ok(r) => r,
            Err(RetryError::Cancelled) => return Err(Stop::Cancelled),
            Err(RetryError::Failed(e)) => {
                return Err(Stop::Failed(format!("model call failed: {e}")));
            }
        };
        if agent.cancel.is_cancelled() {
            return Err(Stop::Cancelled);
        }
        let usage = response.usage;
        agent.update(|s| {
            s.steps += 1;
            s.tokens += usage;
            s.context_tokens = usage.input_tokens;
            if let (Some(price), Some(cost)) = (&settings.model.price, s.cost_usd.as_mut()) {
                *cost += price.cost(usage);
            }
        });
        let text = response.message.text();
        if !text.is_empty() {
            agent.with_record(index, |r| r.text.clone_from(&text));
        }
        journal(Event::Model {
            message: response.message.clone(),
            usage,
            stop_reason: response.stop_reason,
        });
        conversation.push_assistant(response.message);
    }
}

/// The first line of `s`, cut to `max` characters.
pub fn short(s: &str, max: usize) -> String {
    let line = s.lines().next().unwrap_or("");
    if line.chars().count() <= max {
        line.to_string()
    } else {
        let cut: String = line.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}
