//! Typed arguments of the MCP tools. The `///` comments are the descriptions the
//! orchestrator reads in `tools/list`, so they say what each argument does and its
//! limits.

use schemars::JsonSchema;
use serde::Deserialize;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAgentParams {
    /// Unique name among live agents: 1-64 of letters, digits, `_`, `-` (e.g. `scout-auth`).
    pub name: String,
    /// The first instruction. When given, the agent starts on it at once. Brief it fully:
    /// goal, context, constraints, files, and what its final report must contain.
    #[serde(default)]
    pub task: Option<String>,
    /// Extra standing instructions appended to the agent's system prompt.
    #[serde(default)]
    pub system_prompt: Option<String>,
    /// Role profile: `scout` (read-only exploration), `planner` (read-only planning),
    /// `builder` (implements and tests), `reviewer` (reviews and runs tests), or a custom
    /// role from the prompts directory. Sets instructions, tools and max_steps defaults.
    #[serde(default)]
    pub role: Option<String>,
    /// `provider:model` (e.g. `anthropic:claude-sonnet-4-5`, `openai:gpt-5`) or an alias
    /// (`haiku`, `sonnet`, `opus`, or one from the config). Default: the server's default model.
    #[serde(default)]
    pub model: Option<String>,
    /// Allow-list of sub-agent tools: read_file, write_file, edit_file, list_files,
    /// search_files, run_command. Default: the role's tools, else all six.
    #[serde(default)]
    pub tools: Option<Vec<String>>,
    /// Directory the agent works in (created if missing; relative paths are relative to
    /// the server's working directory). Default: the server's working directory.
    #[serde(default)]
    pub workdir: Option<String>,
    /// Model calls allowed per command, 1-1000. Default: the role's, else 50.
    #[serde(default)]
    pub max_steps: Option<u32>,
    /// Spend cap in USD for this agent over all its commands (priced models only).
    /// When reached, its command fails with a `budget:` error. Default: no cap.
    #[serde(default)]
    pub max_cost_usd: Option<f64>,
    /// Cap on this agent's input + output tokens over all its commands. Default: no cap.
    #[serde(default)]
    pub max_tokens: Option<u64>,
    /// Names of agents whose work must be done first. The agent is created at once
    /// with status `waiting`; its `task` starts when every dependency's latest command
    /// has ended `done`, followed by their answers (as untrusted data). A dependency
    /// that fails for good cancels it. Needs `task`.
    #[serde(default)]
    pub depends_on: Option<Vec<String>>,
    /// Times a failed command is started again (0-5, default 0), from its task plus
    /// the error; then it is escalated (status failed, `escalated after N attempts:`).
    #[serde(default)]
    pub retries: Option<u32>,
    /// A JSON Schema object the answer to `task` must satisfy: the final answer must
    /// be JSON (bare or in one ```json block) valid against it, else the agent is told
    /// what failed and answers again. The valid value comes back as `output_json`.
    #[serde(default)]
    pub output_schema: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAgentsParams {
    /// The whole plan: each element takes every create_agent argument; `depends_on`
    /// may name agents of the same call. All or nothing: an unknown dependency, a
    /// duplicate name or a cycle refuses the plan before any agent exists.
    pub agents: Vec<CreateAgentParams>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandAgentParams {
    /// The agent's name or id.
    pub agent: String,
    /// The next instruction. The agent keeps its whole conversation so far.
    pub task: String,
    /// false (default): queue behind the current command. true: cancel the current
    /// command first and run this one next.
    #[serde(default)]
    pub interrupt: Option<bool>,
    /// A JSON Schema object this command's answer must satisfy (see create_agent).
    #[serde(default)]
    pub output_schema: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentParams {
    /// The agent's name or id.
    pub agent: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetAgentOutputParams {
    /// The agent's name or id.
    pub agent: String,
    /// 1-based index of the command whose answer to read. Default: the latest.
    #[serde(default)]
    pub command: Option<u32>,
    /// Character offset to start from (use `next_offset` from the previous call). Default 0.
    #[serde(default)]
    pub offset: Option<u64>,
    /// Most characters to return, 1-100000. Default 4000.
    #[serde(default)]
    pub max_chars: Option<u64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentsParams {
    /// Names or ids. Default: every agent in the fleet.
    #[serde(default)]
    pub agents: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListAgentsParams {
    /// Only agents with this status: running, queued, waiting, paused, idle, failed or
    /// cancelled.
    #[serde(default)]
    pub status: Option<String>,
    /// Most rows to return, 1-1000. Default 100. Totals always cover the whole fleet.
    #[serde(default)]
    pub limit: Option<u32>,
    /// Cursor: the `next_after` of the previous page (rows come in name order).
    #[serde(default)]
    pub after: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WaitForAgentsParams {
    /// Names or ids to wait for. Default: every agent with work running or queued.
    #[serde(default)]
    pub agents: Option<Vec<String>>,
    /// `all` (default): until every one has settled (idle, failed or cancelled, with
    /// nothing queued). `any`: until at least one has.
    #[serde(default)]
    pub until: Option<String>,
    /// Seconds to wait at most, 0-600. Default 50 (under the common 60 s tool-call
    /// timeout). On `timed_out: true`, simply call again.
    #[serde(default)]
    pub timeout_s: Option<f64>,
    /// Also return up to this many characters of each settled agent's latest answer
    /// in its row (`output`), so one call both waits and reads. 0-100000, default 0.
    /// If `output` is shorter than `output_chars`, read the rest with get_agent_output.
    #[serde(default)]
    pub output_max_chars: Option<u64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetAgentEventsParams {
    /// The agent's name or id.
    pub agent: String,
    /// Return events with a sequence number greater than this (use `next_after` from
    /// the previous call). Default 0: from the start.
    #[serde(default)]
    pub after: Option<u64>,
    /// Most events to return, 1-500. Default 50.
    #[serde(default)]
    pub limit: Option<u32>,
    /// Only these kinds: created, command, started, model, retry, tool_call,
    /// tool_result, finished, resumed.
    #[serde(default)]
    pub kinds: Option<Vec<String>>,
}
