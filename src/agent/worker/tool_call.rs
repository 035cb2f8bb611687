//! One tool call the model asked for: check it is allowed, journal it before it runs
//! (so a crash never runs it twice), run it jailed to the work directory under the
//! stall timeout, and give the result back to the model.

use serde_json::Value;

use super::Stop;
use super::turn::{Turn, stalled};
use crate::agent::AgentHandle;
use crate::agent::state::Activity;
use crate::failure::Failure;
use crate::store::event::Event;
use crate::tools::{Tool, ToolContext, ToolOutcome};

impl Turn<'_> {
    pub(super) async fn tool_call(
        &mut self,
        id: String,
        name: String,
        input: Value,
    ) -> Result<(), Stop> {
        let agent = self.agent;
        let settings = &agent.settings;
        self.tool_span = Some(self.trace.tool(&name, &id, &input));
        // The model names the tool: parsed once here; unknown and not allowed are one case.
        let allowed = name
            .parse::<Tool>()
            .ok()
            .filter(|t| settings.tools.contains(t));
        if allowed == Some(Tool::AskOrchestrator) {
            return self.ask(id, input).await;
        }
        let held = if self.token.is_cancelled() {
            Err(Stop::Cancelled)
        } else {
            self.between_steps().await
        };
        let outcome = if let Err(stop) = held {
            if agent.cancel.is_cancelled() {
                return Err(stop);
            }
            ToolOutcome {
                content:
                    "Cancelled: the orchestrator interrupted this command before this tool ran."
                        .into(),
                is_error: true,
                ..Default::default()
            }
        } else if let Some(tool) = allowed {
            let label = tool.label(&input);
            agent.update(|s| {
                s.tool_calls += 1;
                s.activity = Some(Activity::now(label));
            });
            self.journal_call(&id, &name, &input).await?;
            let outcome = self.run_within_stall(&id, tool, input).await?;
            if tool.writes(settings.sandbox) {
                self.push_progress().await;
            }
            if !outcome.files_read.is_empty() || !outcome.files_written.is_empty() {
                agent.with_record(self.index, |r| {
                    r.files_read.extend(outcome.files_read.iter().cloned());
                    r.files_written
                        .extend(outcome.files_written.iter().cloned());
                });
            }
            outcome
        } else {
            ToolOutcome {
                content: format!(
                    "Error: tool `{name}` is not available to this agent. Available tools: {}.",
                    Tool::join(&settings.tools)
                ),
                is_error: true,
                ..Default::default()
            }
        };
        if agent.cancel.is_cancelled() {
            return Err(Stop::Cancelled);
        }
        self.answer(id, name, outcome);
        Ok(())
    }

    /// On disk before it runs: after a crash it is reported as interrupted, never run
    /// a second time. A store that cannot take it stops the command rather than run
    /// a tool nobody could account for.
    async fn journal_call(&self, id: &str, name: &str, input: &Value) -> Result<(), Stop> {
        journal_durably(
            self.agent,
            Event::ToolCall {
                id: id.to_string(),
                name: name.to_string(),
                input: input.clone(),
            },
            name,
        )
        .await
    }

    /// Run the tool; past the stall timeout cancel it, wait for its processes to be
    /// killed, tell the model, and fail the command as stalled.
    async fn run_within_stall(
        &mut self,
        id: &str,
        tool: Tool,
        input: Value,
    ) -> Result<ToolOutcome, Stop> {
        let name = tool.name();
        let limit = self.agent.fleet.stall_timeout;
        let cancel = self.token.child_token();
        if let Some(missing) = self.agent.settings.workspace_missing() {
            return Ok(ToolOutcome::error(missing));
        }
        let ctx = ToolContext {
            root: self.agent.settings.workdir.clone(),
            cancel: cancel.clone(),
            sandbox: self.agent.settings.sandbox,
            agent: self.agent.id.clone(),
            visible: self.agent.settings.git_dir_to_show().into_iter().collect(),
        };
        let run = tool.run(input, &ctx);
        tokio::pin!(run);
        tokio::select! {
            outcome = &mut run => Ok(outcome),
            _ = tokio::time::sleep(limit) => {
                cancel.cancel();
                let _ = run.await;
                let content = format!(
                    "Stopped: {name} made no progress for {}s (the fleet's stall timeout); it was cancelled and its processes killed.",
                    limit.as_secs()
                );
                self.answer(id.to_string(), name.to_string(), ToolOutcome {
                    content,
                    is_error: true,
                    ..Default::default()
                });
                Err(Stop::Failed(stalled(limit, &format!("the tool {name}"))))
            }
        }
    }

    /// Journal the result and give it to the model.
    pub(super) fn answer(&mut self, id: String, name: String, outcome: ToolOutcome) {
        if let Some(span) = self.tool_span.take() {
            span.end(&outcome.content, outcome.is_error);
        }
        self.journal(Event::ToolResult {
            id: id.clone(),
            name,
            content: outcome.content.clone(),
            is_error: outcome.is_error,
            files_read: outcome.files_read,
            files_written: outcome.files_written,
        });
        self.conversation
            .push_tool_result(id, outcome.content, outcome.is_error);
    }
}

/// Journal `event` (of the call to `tool`) and wait until it is on disk, for any
/// runtime; a store that cannot take it fails the command (a tool or a question
/// nobody could account for after a crash must not go on).
pub(super) async fn journal_durably(
    agent: &AgentHandle,
    event: Event,
    tool: &str,
) -> Result<(), Stop> {
    if agent.cancel.is_cancelled() {
        return Err(Stop::Cancelled);
    }
    let saved = match agent.record(event) {
        Some(ack) => ack
            .await
            .unwrap_or_else(|_| Err("the fleet store is closed".into())),
        None => Ok(()),
    };
    saved.map_err(|e| {
        tracing::error!(agent = %agent.name(), tool, "could not save to the fleet store: {e}");
        Stop::Failed(Failure::Store {
            tool: tool.to_string(),
            error: e.to_string(),
        })
    })
}
