//! Bringing the fleet back after a restart: replay each agent's log into a live
//! agent, fill in tool calls the crash cut short, and either resume the command that
//! was running or (with `--no-resume`) mark it failed.

use std::sync::Arc;

use crate::agent::conversation::INTERRUPTED_TOOL;
use crate::agent::output::CommandStatus;
use crate::agent::state::{AgentState, AgentStatus};
use crate::agent::{AgentHandle, AgentSettings, Initial, worker};
use crate::config::ResolvedModel;
use crate::fleet::budget::Caps;
use crate::provider::Unavailable;
use crate::registry::Registry;
use crate::store::AgentLog;
use crate::store::event::Event;
use crate::store::replay::{Restored, replay};

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

    fn revive(
        &self,
        mut r: Restored,
        resume: bool,
        report: &mut RestoreReport,
    ) -> (Arc<AgentHandle>, worker::Start) {
        let model = self
            .models()
            .resolve(Some(&r.settings.model))
            .unwrap_or_else(|e| {
                let message = format!(
                    "model `{}` cannot be used after the restart: {e}",
                    r.settings.model
                );
                tracing::warn!(agent = %r.settings.name, "{message}");
                ResolvedModel {
                    id: r.settings.model.clone(),
                    model: r
                        .settings
                        .model
                        .split_once(':')
                        .map_or(r.settings.model.clone(), |(_, m)| m.to_string()),
                    provider: Arc::new(Unavailable(message)),
                    price: None,
                }
            });
        let cost_usd = model
            .price
            .map(|p| r.usages.iter().map(|u| p.cost(*u)).sum::<f64>());
        let stored = r.settings.clone();
        let mut system_prompt = self.prompts().compose(
            stored.role.as_deref(),
            stored.extra_prompt.as_deref(),
            &stored.name,
            &stored.workdir,
            &stored.tools,
        );
        let sandbox = stored.sandbox.unwrap_or(crate::sandbox::Sandbox {
            mode: crate::sandbox::SandboxMode::Off,
            network: true,
        });
        system_prompt.push_str(&crate::prompts::isolation_note(
            &stored.tools,
            sandbox,
            stored.worktree.as_ref(),
        ));
        let settings = AgentSettings {
            name: stored.name,
            role: stored.role,
            tool_specs: self.specs_for(&stored.tools),
            tools: stored.tools,
            model,
            system_prompt,
            extra_prompt: stored.extra_prompt,
            workdir: stored.workdir,
            max_steps: stored.max_steps,
            max_output_tokens: self.models().max_output_tokens(),
            retry: self.models().retry_policy().clone(),
            caps: Caps {
                max_cost_usd: stored.max_cost_usd,
                max_tokens: stored.max_tokens,
            },
            depends_on: stored.depends_on,
            retries: stored.retries,
            sandbox,
            worktree: stored.worktree,
        };
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
        let state = AgentState {
            status: r.status,
            commands: r.outputs.len() as u32,
            pending: queue.len() as u32,
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
            // An idle agent held at the restart shows `paused` at once; one with a
            // command in progress turns `paused` at its next step.
            before_pause: (r.paused && r.in_progress.is_none()).then_some(r.status),
            deleted: false,
        };
        let status_shown = if r.paused && r.in_progress.is_none() {
            AgentStatus::Paused
        } else {
            r.status
        };
        let state = AgentState {
            status: status_shown,
            ..state
        };
        // Its spend counts against the fleet's budget as before the restart.
        self.fleet().budget.charge(
            state.cost_usd,
            state.tokens.input_tokens + state.tokens.output_tokens,
        );
        let in_progress = r.in_progress;
        let interrupted = std::mem::take(&mut r.interrupted_tools);
        let handle = AgentHandle::new(
            r.agent_id,
            settings,
            r.created_at,
            self.cancel_token(),
            self.fleet().clone(),
            Initial {
                state: Some(state),
                outputs: r.outputs,
                queue,
                paused: r.paused,
                next_seq: r.next_seq,
                deferred: r.deferred.take(),
            },
        );
        let mut conversation = r.conversation;
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
        let mut start = worker::Start {
            conversation,
            resume: None,
        };
        if let Some(index) = in_progress {
            if r.in_progress_interrupted {
                // The orchestrator's interrupt was acknowledged: honour it.
                end_command(&handle, index, CommandStatus::Cancelled, None);
                handle.update(|s| set_status(s, AgentStatus::Cancelled));
                report.cancelled += 1;
            } else if resume {
                report.resumed += 1;
                let (task, output_schema) = handle
                    .with_outputs(|o| {
                        o.get(index as usize - 1)
                            .map(|rec| (rec.task.clone(), rec.output_schema.clone()))
                    })
                    .unwrap_or_default();
                start.resume = Some(worker::Resume {
                    index,
                    token: handle.resume_token(),
                    steps: r.in_progress_steps,
                    ticket: self.fleet().slots.ticket(),
                    task,
                    output_schema,
                    base: r.in_progress_base.take(),
                    attempt: r.attempt,
                });
            } else {
                end_command(&handle, index, CommandStatus::Failed, Some(NO_RESUME));
                handle.update(|s| {
                    set_status(s, AgentStatus::Failed);
                    s.last_error = Some(NO_RESUME.into());
                });
                report.not_resumed += 1;
            }
        }
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
