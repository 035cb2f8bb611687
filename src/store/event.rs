//! The events of an agent's append-only log: the source of truth from which its
//! conversation, counters and outputs are rebuilt after a restart.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::failure::FailureKind;
use crate::model::{Message, StopReason, Usage};
use crate::status::CommandStatus;
use crate::text::short;

/// An agent's spec: the one description of an agent, what `create_agent` asked for
/// once checked and completed with its defaults (role, config). Saved in its
/// `created` event; the registry resolves it into running settings both at creation
/// and on restart. The model is kept as its canonical id and resolved again on
/// restart (with the keys of the new process); the system prompt is rebuilt from the
/// current prompts, so only the orchestrator's part is kept. Old stores must keep
/// loading: fields are only ever added, optional, with defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredSettings {
    pub name: String,
    pub role: Option<String>,
    pub model: String,
    pub extra_prompt: Option<String>,
    pub tools: Vec<crate::tools::Tool>,
    pub workdir: PathBuf,
    pub max_steps: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cost_usd: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    /// Agents whose work must be done before its task starts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// Its task while it waits for `depends_on` (it becomes command 1 when they are done).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deferred_task: Option<String>,
    /// The output_schema of that deferred task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deferred_schema: Option<Value>,
    /// Times a failed command is started again before it is escalated.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: u32,
    /// Its sandbox; absent in stores from before sandboxes (restored as `off`, as they
    /// ran).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<crate::sandbox::Sandbox>,
    /// Its git worktree (`isolation: "worktree"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worktree: Option<crate::worktree::Worktree>,
}

impl StoredSettings {
    /// The `created` event in one line.
    fn summary(&self) -> String {
        let tools: Vec<&str> = self.tools.iter().map(|t| t.name()).collect();
        format!(
            "created: model {}, role {}, tools {}, workdir {}",
            self.model,
            self.role.as_deref().unwrap_or("-"),
            tools.join(","),
            self.workdir.display()
        )
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// One entry of an agent's log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// The agent was created (boxed: the settings are large and the event rare).
    Created { settings: Box<StoredSettings> },
    /// The orchestrator gave it a command (queued, or first with `interrupt`).
    Command {
        index: u32,
        task: String,
        interrupt: bool,
        /// The final answer must be JSON that validates against this schema.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output_schema: Option<Value>,
    },
    /// The worker started on a command: status running. `trace_id` is the command's
    /// OpenTelemetry trace when traces are exported.
    Started {
        index: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        trace_id: Option<String>,
    },
    /// A model call answered (or a CLI session's model turn, with the CLI's tool names).
    Model {
        message: Message,
        usage: Usage,
        stop_reason: StopReason,
        /// What it cost as charged when it was made (CLI sessions); absent: its usage
        /// at the model's price.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cost_usd: Option<f64>,
    },
    /// A CLI session's id (Claude Code's session, Codex's thread), journaled before a
    /// command runs in it so a restart resumes it.
    Session { id: String },
    /// Spend a CLI reported for a command beyond what its model turns showed (Claude
    /// Code's per-turn lines carry only the start of each turn's usage; its result has
    /// the command's tokens and the session's running cost).
    Charged {
        cost_usd: f64,
        #[serde(default)]
        usage: Usage,
        /// The CLI's running total for its session after this command.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session_total_usd: Option<f64>,
        /// The CLI's running token count for its session after this command (Codex).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session_usage: Option<Usage>,
    },
    /// A model call failed and will be retried.
    Retry {
        attempt: u32,
        error: String,
        wait_ms: u64,
    },
    /// A tool call started.
    ToolCall {
        id: String,
        name: String,
        input: Value,
    },
    /// A tool call's result, as sent back to the model.
    ToolResult {
        id: String,
        name: String,
        content: String,
        is_error: bool,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        files_read: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        files_written: Vec<String>,
    },
    /// A command ended: status idle, failed or cancelled.
    Finished {
        index: u32,
        status: CommandStatus,
        error: Option<String>,
        /// What kind of failure `error` is (logs written before it have none).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        failure: Option<FailureKind>,
    },
    /// After a restart, the worker picked the command up again (in a new trace).
    Resumed {
        index: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        trace_id: Option<String>,
    },
    /// A failed attempt was discarded; the command starts again from its task plus
    /// the error (`retries`).
    Evicted {
        index: u32,
        attempt: u32,
        error: String,
    },
    /// Retries are spent: the command fails for good.
    Escalated {
        index: u32,
        attempts: u32,
        error: String,
    },
    /// The final answer validated against the command's output_schema.
    CheckpointPassed { index: u32, value: Value },
    /// The final answer did not validate; the model was told why and answers again.
    CheckpointFailed {
        index: u32,
        error: String,
        /// What the model was told.
        message: String,
    },
    /// A dependency's answer handed to this agent looked like a prompt injection.
    HandoffFlagged {
        dependency: String,
        flags: Vec<String>,
    },
    /// The agent asked the orchestrator (`ask_orchestrator` call `id`): status
    /// `needs_input` until it is answered.
    Asked {
        index: u32,
        id: String,
        question: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        options: Vec<String>,
    },
    /// Its question was answered (journaled before whoever answered is told).
    Answered {
        index: u32,
        id: String,
        answer: String,
        by: crate::status::Answerer,
    },
    /// Held by `pause_agents`.
    Paused,
    /// Let go by `resume_agents`.
    Unpaused,
    /// A worktree agent with a git remote: at the end of command `index`, its work was
    /// committed onto its branch and pushed (`commit`), or could not be (`error`).
    Pushed {
        index: u32,
        branch: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        commit: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// Node `node` took the agent over and made its worktree there from its branch in
    /// the remote: it works in this worktree from now on.
    Relocated {
        node: String,
        worktree: crate::worktree::Worktree,
    },
}

/// Every event kind, for the `kinds` filter of `get_agent_events`.
pub const KINDS: [&str; 22] = [
    "created",
    "command",
    "started",
    "model",
    "retry",
    "tool_call",
    "tool_result",
    "finished",
    "resumed",
    "paused",
    "unpaused",
    "evicted",
    "escalated",
    "checkpoint_passed",
    "checkpoint_failed",
    "handoff_flagged",
    "session",
    "charged",
    "asked",
    "answered",
    "pushed",
    "relocated",
];

impl Event {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Created { .. } => "created",
            Self::Command { .. } => "command",
            Self::Started { .. } => "started",
            Self::Model { .. } => "model",
            Self::Retry { .. } => "retry",
            Self::ToolCall { .. } => "tool_call",
            Self::ToolResult { .. } => "tool_result",
            Self::Finished { .. } => "finished",
            Self::Resumed { .. } => "resumed",
            Self::Paused => "paused",
            Self::Unpaused => "unpaused",
            Self::Evicted { .. } => "evicted",
            Self::Escalated { .. } => "escalated",
            Self::CheckpointPassed { .. } => "checkpoint_passed",
            Self::CheckpointFailed { .. } => "checkpoint_failed",
            Self::HandoffFlagged { .. } => "handoff_flagged",
            Self::Session { .. } => "session",
            Self::Charged { .. } => "charged",
            Self::Asked { .. } => "asked",
            Self::Answered { .. } => "answered",
            Self::Pushed { .. } => "pushed",
            Self::Relocated { .. } => "relocated",
        }
    }

    /// Whether the store must have written this event before the caller goes on:
    /// acknowledged commands and finished outputs are never lost, and a tool call is
    /// on disk before it runs (so a crash can never make it run twice).
    pub fn is_durable(&self) -> bool {
        matches!(
            self,
            Self::Created { .. }
                | Self::Command { .. }
                | Self::ToolCall { .. }
                | Self::Finished { .. }
                | Self::Paused
                | Self::Unpaused
                | Self::Evicted { .. }
                | Self::CheckpointPassed { .. }
                | Self::Session { .. }
                | Self::Asked { .. }
                | Self::Answered { .. }
                | Self::Relocated { .. }
        )
    }

    /// A one-line summary for `get_agent_events`; long payloads are cut.
    pub fn summary(&self) -> String {
        const CUT: usize = 160;
        match self {
            Self::Created { settings } => settings.summary(),
            Self::Command {
                index,
                task,
                interrupt,
                ..
            } => format!(
                "command {index}{}: {}",
                if *interrupt { " (interrupt)" } else { "" },
                short(task, CUT)
            ),
            Self::Started { index, trace_id } => {
                format!("started command {index}{}", trace_note(trace_id))
            }
            Self::Model {
                message,
                usage,
                stop_reason,
                ..
            } => model_summary(message, usage, stop_reason, CUT),
            Self::Retry {
                attempt,
                error,
                wait_ms,
            } => format!(
                "retry {attempt} in {:.1}s: {}",
                *wait_ms as f64 / 1000.0,
                short(error, CUT)
            ),
            Self::ToolCall { name, input, .. } => crate::tools::describe_call(name, input),
            Self::ToolResult {
                name,
                content,
                is_error,
                ..
            } => format!(
                "{name} {}: {} ({} chars)",
                if *is_error { "error" } else { "ok" },
                short(content, CUT),
                content.chars().count()
            ),
            Self::Finished {
                index,
                status,
                error,
                ..
            } => {
                let status = status.as_str();
                match error {
                    Some(e) => format!("command {index} {status}: {}", short(e, CUT)),
                    None => format!("command {index} {status}"),
                }
            }
            Self::Resumed { index, trace_id } => format!(
                "resumed command {index} after a restart{}",
                trace_note(trace_id)
            ),
            Self::Evicted {
                index,
                attempt,
                error,
            } => format!(
                "attempt {attempt} of command {index} failed and was discarded; starting again: {}",
                short(error, CUT)
            ),
            Self::Escalated {
                index,
                attempts,
                error,
            } => format!(
                "command {index} escalated after {attempts} attempts: {}",
                short(error, CUT)
            ),
            Self::CheckpointPassed { index, .. } => {
                format!("command {index}: the answer validated against its output_schema")
            }
            Self::CheckpointFailed { index, error, .. } => format!(
                "command {index}: the answer did not validate, asked again: {}",
                short(error, CUT)
            ),
            Self::HandoffFlagged { dependency, flags } => format!(
                "the answer handed over from `{dependency}` was flagged: {}",
                short(&flags.join("; "), CUT)
            ),
            Self::Session { id } => format!("CLI session {id}"),
            Self::Charged {
                cost_usd, usage, ..
            } => format!(
                "charged ${cost_usd:.4} and {} in / {} out tokens the CLI reported beyond its model turns",
                usage.input_tokens, usage.output_tokens
            ),
            Self::Asked { .. } | Self::Answered { .. } => asking_summary(self, CUT),
            Self::Pushed { .. } | Self::Relocated { .. } => worktree_summary(self, CUT),
            Self::Paused => "paused by pause_agents".to_string(),
            Self::Unpaused => "resumed by resume_agents".to_string(),
        }
    }
}

/// The summary of a worktree agent's `pushed` and `relocated` events.
fn worktree_summary(event: &Event, cut: usize) -> String {
    match event {
        Event::Pushed {
            index,
            branch,
            commit,
            error,
        } => match (commit, error) {
            (_, Some(e)) => format!("command {index}: {branch} NOT pushed: {}", short(e, cut)),
            (Some(c), None) => format!(
                "command {index}: work committed and pushed to {branch} at {}",
                &c[..c.len().min(12)]
            ),
            (None, None) => format!("command {index}: {branch} pushed"),
        },
        Event::Relocated { node, worktree } => format!(
            "node {node} took it over: worktree {} rebuilt from {} in the remote",
            worktree.path.display(),
            worktree.branch
        ),
        _ => String::new(),
    }
}

/// `command 2 asks: …? [a | b]`, `command 2 answered by the orchestrator: …`.
fn asking_summary(event: &Event, cut: usize) -> String {
    match event {
        Event::Asked {
            index,
            question,
            options,
            ..
        } => {
            let options = if options.is_empty() {
                String::new()
            } else {
                format!(" [{}]", short(&options.join(" | "), cut))
            };
            format!("command {index} asks: {}{options}", short(question, cut))
        }
        Event::Answered {
            index, answer, by, ..
        } => format!(
            "command {index} answered by the {}: {}",
            by.as_str(),
            short(answer, cut)
        ),
        other => other.kind().to_string(),
    }
}

/// ` (trace <id>)` when the command is traced, for summaries.
fn trace_note(trace_id: &Option<String>) -> String {
    trace_id
        .as_ref()
        .map(|id| format!(" (trace {id})"))
        .unwrap_or_default()
}

/// The summary of a model call: its tokens, the tools it calls, the start of its
/// text (`cut` characters), and whether the output limit cut it off.
fn model_summary(message: &Message, usage: &Usage, stop_reason: &StopReason, cut: usize) -> String {
    let calls: Vec<&str> = message.tool_uses().map(|(_, n, _)| n).collect();
    let text = message.text();
    let mut s = format!(
        "model ({} in / {} out tokens)",
        usage.input_tokens, usage.output_tokens
    );
    if !calls.is_empty() {
        s.push_str(&format!(": calls {}", calls.join(", ")));
    }
    if !text.is_empty() {
        s.push_str(&format!(": {}", short(&text, cut)));
    }
    if is_cut_off(message, stop_reason) {
        s.push_str(" [cut off by the output limit (max_tokens); asked to continue]");
    }
    s
}

/// A reply the output-token limit cut off before it asked for any tool: not a final
/// answer. The worker asks the model to continue (and replay does the same).
pub fn is_cut_off(message: &Message, stop_reason: &StopReason) -> bool {
    *stop_reason == StopReason::MaxTokens && message.tool_uses().next().is_none()
}
