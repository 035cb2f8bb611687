//! Tool results: compact JSON rows. Every byte here lands in the orchestrator's
//! context window, so rows carry what it acts on and nothing else.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Serialize;

use crate::agent::AgentHandle;
use crate::agent::output::CommandStatus;
use crate::agent::state::{AgentStatus, Tokens, rfc3339};
pub use crate::pricing::round_cost;
pub use crate::registry::BudgetRow;

#[derive(Debug, Serialize, JsonSchema)]
pub struct CreateAgentResult {
    pub agent_id: String,
    pub name: String,
    pub status: AgentStatus,
    /// Canonical `provider:model`.
    pub model: String,
    pub workdir: String,
    /// Its branch, with isolation `worktree`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// Something the orchestrator should know, e.g. that a dollar cap cannot see an
    /// unpriced model's spend, that another agent writes in the same directory, or
    /// that the sandbox cannot be enforced here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

/// `create_agents`: one row per agent, in the order given.
#[derive(Debug, Serialize, JsonSchema)]
pub struct CreateAgentsResult {
    pub agents: Vec<CreatedRow>,
    /// Warnings about single agents, `name: …`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct CreatedRow {
    pub name: String,
    pub agent_id: String,
    pub status: AgentStatus,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub waiting_on: Vec<String>,
    /// Its branch, with isolation `worktree`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct CommandAgentResult {
    pub agent_id: String,
    pub name: String,
    /// 1-based index of this command (for get_agent_output).
    pub command: u32,
    pub status: AgentStatus,
    /// Commands that run before this one starts: 0 when it starts at once (the agent
    /// was free, or `interrupt`), 1 when it waits behind the running command, and so on.
    pub pending: u32,
    /// Present when the command is queued but something went wrong saving it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
    /// True when the task was the answer to the agent's question: `command` is the
    /// command it asked in, which goes on.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub answered: bool,
}

/// One agent's full status.
#[derive(Debug, Serialize, JsonSchema)]
pub struct AgentStatusRow {
    pub agent_id: String,
    pub name: String,
    pub status: AgentStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    pub model: String,
    /// Commands given so far.
    pub commands: u32,
    /// Commands queued and not yet started.
    pub pending: u32,
    /// Model calls made.
    pub steps: u64,
    pub tool_calls: u64,
    /// What it is doing now, e.g. `run_command: cargo test (12s)`; null when not running.
    pub activity: Option<String>,
    pub last_activity_at: String,
    pub tokens: Tokens,
    /// Size of its last prompt, in tokens.
    pub context_tokens: u64,
    /// Spent so far; null when the model's price is unknown.
    pub cost_usd: Option<f64>,
    pub last_error: Option<String>,
    /// Said once: e.g. that the agent or the fleet has used 80 % of a budget cap.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Dependencies not yet done (status `waiting`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub waiting_on: Vec<String>,
    #[serde(flatten)]
    pub asking: Asking,
    /// Attempt of the current command, for agents with `retries`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// What its run_command may change, as enforced: `workspace-write`, `read-only`
    /// or `off` (with `+network` when it may use the network); for agents with
    /// run_command.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    #[serde(flatten)]
    pub isolation: Isolation,
    /// The node that runs it (a fleet of several nodes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// The question a `needs_input` agent waits on; answer it with command_agent.
#[derive(Debug, Default, Serialize, JsonSchema)]
pub struct Asking {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub question: Option<String>,
    /// The choices it offered, if any.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl Asking {
    pub fn of(h: &AgentHandle, question: Option<crate::agent::asking::Question>) -> Self {
        question.map_or_else(Self::default, |q| Self {
            question: Some(redact(h, &q.question)),
            options: q.options.iter().map(|o| redact(h, o)).collect(),
        })
    }
}

/// Where an isolated agent works, and how much it has changed.
#[derive(Debug, Default, Serialize, JsonSchema)]
pub struct Isolation {
    /// Its branch, `flotilla/<name>` (isolation `worktree`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// Its git worktree's directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worktree: Option<String>,
    /// Its changes against its base, committed or not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff_stat: Option<crate::worktree::DiffStat>,
    /// Why diff_stat is missing (e.g. the worktree was deleted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worktree_error: Option<String>,
}

impl Isolation {
    /// Branch, worktree and diff stat of an agent (git runs; empty without isolation).
    pub async fn of(h: &AgentHandle) -> Self {
        let Some(wt) = &h.settings.worktree else {
            return Self::default();
        };
        let (diff_stat, worktree_error) = match crate::worktree::diff_stat(wt).await {
            Ok(d) => (Some(d), None),
            Err(e) => (None, Some(e)),
        };
        Self {
            branch: Some(wt.branch.clone()),
            worktree: Some(wt.path.display().to_string()),
            diff_stat,
            worktree_error,
        }
    }
}

/// The sandbox an agent's commands really get: `off` where it cannot be enforced.
pub fn sandbox_shown(h: &AgentHandle) -> Option<String> {
    use crate::sandbox::SandboxMode;
    if !h.settings.tools.contains(&crate::tools::Tool::RunCommand) {
        return None;
    }
    let sb = h.settings.sandbox;
    let enforced = sb.mode != SandboxMode::Off && crate::sandbox::sandbox_status().is_ok();
    Some(match (enforced, sb.network) {
        (false, _) => SandboxMode::Off.as_str().to_string(),
        (true, false) => sb.mode.as_str().to_string(),
        (true, true) => format!("{}+network", sb.mode.as_str()),
    })
}

impl AgentStatusRow {
    pub fn of(h: &AgentHandle) -> Self {
        let note = join_notes([h.fleet.budget.take_note(), h.take_note()]);
        let s = h.state();
        Self {
            agent_id: h.id.clone(),
            name: h.name().to_string(),
            status: s.status,
            role: h.settings.role.clone(),
            model: h.settings.model.id.clone(),
            commands: s.commands,
            pending: s.pending,
            steps: s.steps,
            tool_calls: s.tool_calls,
            activity: s.activity_text(),
            last_activity_at: rfc3339(s.last_activity_at),
            tokens: s.tokens.into(),
            context_tokens: s.context_tokens,
            cost_usd: s.cost_usd.map(round_cost),
            last_error: s.last_error.map(|e| redact(h, &e)),
            note,
            waiting_on: s.waiting_on,
            asking: Asking::of(h, s.question),
            attempt: (h.settings.retries > 0).then_some(s.attempt),
            sandbox: sandbox_shown(h),
            isolation: Isolation::default(),
            node: h.node().map(|n| n.to_string()),
        }
    }
}

/// `text` with provider keys and common key shapes replaced by `[REDACTED]`.
pub fn redact(h: &AgentHandle, text: &str) -> String {
    h.fleet.redactor.redact(text).into_owned()
}

/// Notes that are there, one per line; `None` when there are none.
pub fn join_notes(notes: impl IntoIterator<Item = Option<String>>) -> Option<String> {
    let notes: Vec<String> = notes.into_iter().flatten().collect();
    (!notes.is_empty()).then(|| notes.join("\n"))
}

/// A compact row for lists and waits: what the orchestrator acts on, nothing more.
#[derive(Debug, Serialize, JsonSchema)]
pub struct AgentRow {
    pub name: String,
    /// In `list_agents` rows only (names are unique and accepted everywhere).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    pub status: AgentStatus,
    /// Commands queued and not yet started; omitted when 0.
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub pending: u32,
    /// Model calls made.
    pub steps: u64,
    /// Length in characters of the latest command's answer (read it with get_agent_output).
    pub output_chars: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activity: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The start of its latest answer (`wait_for_agents` with `output_max_chars`, once
    /// it has settled); omitted when `output_json` carries the answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// The validated JSON answer (`wait_for_agents` with `output_max_chars`, when the
    /// latest command had an output_schema and passed it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_json: Option<serde_json::Value>,
    /// Dependencies not yet done (status `waiting`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub waiting_on: Vec<String>,
    #[serde(flatten)]
    pub asking: Asking,
    /// Attempt of the current command, for agents with `retries`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// Present (true) when the agent was deleted while being waited on.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
    /// The node that runs it (a fleet of several nodes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

impl AgentRow {
    /// A row; `with_id` adds the agent id (for `list_agents`); `output_max_chars` > 0
    /// adds the start of the latest answer once the agent has settled. State and
    /// answer are read together (under the outputs lock), so a row never pairs a
    /// status with the record of a command queued a moment later.
    pub fn of(h: &AgentHandle, with_id: bool, output_max_chars: usize) -> Self {
        h.with_outputs(|outputs| {
            let s = h.state();
            let latest = outputs.last().map_or("", |r| r.text.as_str());
            let show = output_max_chars > 0 && s.settled() && !outputs.is_empty();
            let output_json = outputs
                .last()
                .and_then(|r| r.output_json.clone())
                .filter(|_| show);
            // A checked answer is sent once: as `output_json`, not again as text.
            let output = (show && output_json.is_none()).then(|| {
                crate::agent::output::slice_chars(&redact(h, latest), 0, output_max_chars).0
            });
            Self {
                name: h.name().to_string(),
                agent_id: with_id.then(|| h.id.clone()),
                status: s.status,
                pending: s.pending,
                steps: s.steps,
                output_chars: latest.chars().count(),
                activity: s.activity_text(),
                last_error: s.last_error.map(|e| redact(h, &e)),
                output,
                output_json,
                waiting_on: s.waiting_on,
                asking: Asking::of(h, s.question),
                attempt: (h.settings.retries > 0).then_some(s.attempt),
                deleted: s.deleted,
                node: h.node().map(|n| n.to_string()),
            }
        })
    }
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct AgentOutputResult {
    /// Which command this is the answer to (1-based).
    pub command: u32,
    pub command_status: CommandStatus,
    /// The slice of the final answer.
    pub text: String,
    /// Where the slice starts; omitted when 0.
    #[serde(skip_serializing_if = "is_zero")]
    pub offset: usize,
    pub total_chars: usize,
    /// Offset to continue from; null when nothing is left.
    pub next_offset: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The validated JSON answer, when the command had an output_schema and passed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_json: Option<serde_json::Value>,
    pub files_written: Vec<String>,
    pub files_read: Vec<String>,
    #[serde(flatten)]
    pub isolation: Isolation,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct DeleteAgentResult {
    /// The deleted agent's name.
    pub deleted: String,
    pub agent_id: String,
    /// The branch that keeps its work (isolation `worktree`); the worktree is removed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// What happened to its worktree, e.g. that its uncommitted work was committed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct FleetTotals {
    pub agents: usize,
    /// Agents by status.
    pub by_status: BTreeMap<String, usize>,
    pub tokens: Tokens,
    /// Known spend; agents on unpriced models add nothing.
    pub cost_usd: f64,
    /// Agents whose cost is unknown (model without a price).
    #[serde(skip_serializing_if = "is_zero")]
    pub unpriced_agents: usize,
    /// The fleet's caps and spend (deleted agents' spend included); present when a
    /// cap is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetRow>,
}

/// `pause_agents` / `resume_agents`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct PauseResult {
    /// Agents whose state changed (paused, or let go).
    pub changed: Vec<String>,
    /// Agents that already were in that state.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unchanged: Vec<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ListAgentsResult {
    pub agents: Vec<AgentRow>,
    /// Pass as `after` for the next page; null on the last page.
    pub next_after: Option<String>,
    /// Totals over the whole fleet (not just the filtered rows).
    pub totals: FleetTotals,
    /// The fleet's nodes and their health (a fleet of several nodes).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<crate::cluster::NodeRow>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct DeleteAllResult {
    /// How many agents were deleted.
    pub deleted: usize,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct WaitResult {
    /// True when the timeout passed first; call wait_for_agents again to keep waiting.
    pub timed_out: bool,
    pub waited_s: f64,
    pub agents: Vec<AgentRow>,
    /// Agents waited on beyond the rows shown (only when no `agents` were named and
    /// more than 100 were waited on); list_agents pages through them.
    #[serde(skip_serializing_if = "is_zero")]
    pub more_agents: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}

/// One event of an agent's log, summarised.
#[derive(Debug, Serialize, JsonSchema)]
pub struct EventRow {
    pub seq: u64,
    /// RFC 3339 UTC.
    pub at: String,
    pub kind: String,
    pub summary: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct AgentEventsResult {
    pub agent_id: String,
    pub name: String,
    pub events: Vec<EventRow>,
    /// Pass as `after` to continue; null when there is nothing more (yet).
    pub next_after: Option<u64>,
}
