//! The agent loop: one tokio task per agent that owns its conversation.
//!
//! For each command: append the instruction, then call the model; run the tools it
//! asks for inside the work directory; send the results back; repeat until the model
//! answers without tool calls (its final answer) or `max_steps` is reached. Every
//! await is raced against the command's cancellation token, so an interrupt or a
//! delete stops a model call or a tool at once.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use futures::FutureExt;
use tokio_util::sync::CancellationToken;

use super::AgentHandle;
use super::output::CommandStatus;
use super::state::{Activity, AgentStatus};
use crate::model::{Block, Message, ModelRequest, Role};
use crate::provider::retry::{RetryError, complete_with_retry};
use crate::tools::{ToolContext, describe_call, run_tool};

/// How a command ended, when it did not end with a final answer.
enum Stop {
    Cancelled,
    Failed(String),
}

/// Run the agent until it is cancelled. Fires `finished` on the way out.
pub async fn run(agent: Arc<AgentHandle>) {
    let _finished = agent.finished.clone().drop_guard();
    let mut conversation: Vec<Message> = Vec::new();
    loop {
        let (cmd, turn) = tokio::select! {
            biased;
            _ = agent.cancel.cancelled() => break,
            next = agent.next_command() => next,
        };
        let index = cmd.index;
        agent.update(|s| {
            s.status = AgentStatus::Running;
            s.pending = s.pending.saturating_sub(1);
            s.last_error = None;
            s.activity = Some(activity("starting"));
        });
        agent.with_record(index, |r| {
            r.status = CommandStatus::Running;
            r.started_at = Some(SystemTime::now());
        });
        push_user_text(&mut conversation, cmd.task);

        // Boxed so an idle agent's task stays small: the model call and tool futures
        // live on the heap only while a command runs.
        let result = AssertUnwindSafe(Box::pin(run_command(
            &agent,
            &mut conversation,
            index,
            &turn,
        )))
        .catch_unwind()
        .await
        .unwrap_or_else(|_| {
            Err(Stop::Failed(
                "internal error: the agent's worker panicked (see the server log)".into(),
            ))
        });
        agent.finish_command();
        let (status, cmd_status, error) = match result {
            Ok(()) => (AgentStatus::Idle, CommandStatus::Done, None),
            Err(Stop::Cancelled) => (AgentStatus::Cancelled, CommandStatus::Cancelled, None),
            Err(Stop::Failed(e)) => (AgentStatus::Failed, CommandStatus::Failed, Some(e)),
        };
        tracing::info!(agent = %agent.name(), command = index, status = status.as_str(), error = ?error, "command ended");
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

/// Append an instruction, merging into a trailing user message (left there by an
/// interrupted command) so user and assistant turns keep alternating.
fn push_user_text(conversation: &mut Vec<Message>, text: String) {
    match conversation.last_mut() {
        Some(last) if last.role == Role::User => {
            last.content.push(Block::Text {
                text: format!(
                    "(Your previous instruction ended before you finished it: it was interrupted or failed.)\n\n{text}"
                ),
            });
        }
        _ => conversation.push(Message::user_text(text)),
    }
}

async fn run_command(
    agent: &AgentHandle,
    conversation: &mut Vec<Message>,
    index: u32,
    turn: &CancellationToken,
) -> Result<(), Stop> {
    let settings = &agent.settings;
    let specs = &settings.tool_specs;
    let ctx = ToolContext {
        root: settings.workdir.clone(),
        cancel: turn.clone(),
    };
    for step in 1..=settings.max_steps {
        agent.update(|s| s.activity = Some(activity(format!("calling model (step {step})"))));
        let request = ModelRequest {
            model: &settings.model.model,
            system: &settings.system_prompt,
            messages: conversation,
            tools: specs,
            max_tokens: settings.max_output_tokens,
        };
        let mut on_retry = |attempt: u32,
                            err: &crate::provider::ProviderError,
                            wait: std::time::Duration| {
            tracing::warn!(agent = %settings.name, attempt, error = %err, ?wait, "model call failed; retrying");
            let label = format!(
                "retrying model call in {:.1}s (attempt {}/{}): {}",
                wait.as_secs_f64(),
                attempt + 1,
                settings.retry.max_retries + 1,
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
        let usage = response.usage;
        agent.update(|s| {
            s.steps += 1;
            s.tokens.input_tokens += usage.input_tokens;
            s.tokens.output_tokens += usage.output_tokens;
            s.context_tokens = usage.input_tokens;
            if let (Some(price), Some(cost)) = (&settings.model.price, s.cost_usd.as_mut()) {
                *cost += price.cost(usage);
            }
        });
        let text = response.message.text();
        if !text.is_empty() {
            agent.with_record(index, |r| r.text.clone_from(&text));
        }
        let calls: Vec<(String, String, serde_json::Value)> = response
            .message
            .tool_uses()
            .map(|(id, name, input)| (id.to_string(), name.to_string(), input.clone()))
            .collect();
        conversation.push(response.message);
        if calls.is_empty() {
            return Ok(());
        }

        let mut results = Vec::with_capacity(calls.len());
        for (id, name, input) in calls {
            let outcome = if turn.is_cancelled() {
                crate::tools::ToolOutcome {
                    content: "Cancelled: the orchestrator interrupted this command.".into(),
                    is_error: true,
                    ..Default::default()
                }
            } else if !settings.tools.contains(&name) {
                crate::tools::ToolOutcome {
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
            results.push(Block::ToolResult {
                tool_use_id: id,
                content: outcome.content,
                is_error: outcome.is_error,
            });
        }
        conversation.push(Message {
            role: Role::User,
            content: results,
        });
        if turn.is_cancelled() {
            return Err(Stop::Cancelled);
        }
    }
    Err(Stop::Failed(format!(
        "stopped after max_steps ({}) model calls without a final answer; command the agent to continue, or create it with a higher max_steps",
        settings.max_steps
    )))
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
