//! An agent's spec: what `create_agent` asks for ([`CreateSpec`]), and what is kept
//! of it once checked ([`StoredSettings`], the one description of an agent, saved in
//! its `created` event). [`Registry::resolve`] is the one way a spec becomes running
//! [`AgentSettings`]: at creation and when a restart brings the agent back;
//! [`AgentSettings::stored`] is its inverse.

use crate::agent::AgentSettings;
use crate::config::ResolvedModel;
use crate::fleet::budget::Caps;
use crate::prompts::isolation_note;
use crate::sandbox::{Sandbox, SandboxMode};
use crate::store::event::StoredSettings;

use super::Registry;

/// What `create_agent` asks for, already type-checked; `Registry::prepare` checks
/// it and fills in the defaults (role, config) to make an agent's spec.
#[derive(Debug, Default, Clone)]
pub struct CreateSpec {
    pub name: String,
    pub task: Option<String>,
    pub system_prompt: Option<String>,
    pub role: Option<String>,
    pub model: Option<String>,
    pub tools: Option<Vec<String>>,
    pub workdir: Option<String>,
    pub max_steps: Option<u32>,
    /// This agent's own caps, over all its commands.
    pub max_cost_usd: Option<f64>,
    pub max_tokens: Option<u64>,
    /// Names of agents whose work must be done before its task starts.
    pub depends_on: Vec<String>,
    /// Times a failed command starts again before it is escalated (0-5).
    pub retries: Option<u32>,
    /// The task's answer must be JSON that validates against this schema.
    pub output_schema: Option<serde_json::Value>,
    /// `"worktree"`: work in a git worktree of its own on branch `flotilla/<name>`.
    pub isolation: Option<String>,
    /// With isolation: a git ref or an agent's name to start from (default `HEAD`).
    pub base: Option<String>,
    /// `"workspace-write"`, `"read-only"` or `"off"`; default: the role's, else config.
    pub sandbox: Option<String>,
    /// Whether its commands may reach the network; default: the role's, else config.
    pub network: Option<bool>,
}

/// The sandbox of an agent stored before sandboxes existed: none, as it ran.
const UNSANDBOXED: Sandbox = Sandbox {
    mode: SandboxMode::Off,
    network: true,
};

impl Registry {
    /// The running settings of an agent's spec, with `model` resolved from its id:
    /// its system prompt composed from today's prompts (role, the orchestrator's
    /// part, its sandbox and worktree), its tool specs, the fleet's model-call
    /// limits. Creation and restore both come through here.
    pub(crate) fn resolve(&self, spec: StoredSettings, model: ResolvedModel) -> AgentSettings {
        let sandbox = spec.sandbox.unwrap_or(UNSANDBOXED);
        let mut system_prompt = self.prompts().compose(
            spec.role.as_deref(),
            spec.extra_prompt.as_deref(),
            &spec.name,
            &spec.workdir,
            &spec.tools,
        );
        system_prompt.push_str(&isolation_note(
            &spec.tools,
            sandbox,
            spec.worktree.as_ref(),
        ));
        AgentSettings {
            name: spec.name,
            role: spec.role,
            model,
            system_prompt,
            extra_prompt: spec.extra_prompt,
            tool_specs: self.specs_for(&spec.tools),
            tools: spec.tools,
            workdir: spec.workdir,
            max_steps: spec.max_steps,
            max_output_tokens: self.models().max_output_tokens(),
            retry: self.models().retry_policy().clone(),
            caps: Caps {
                max_cost_usd: spec.max_cost_usd,
                max_tokens: spec.max_tokens,
            },
            depends_on: spec.depends_on,
            retries: spec.retries,
            sandbox,
            worktree: spec.worktree,
        }
    }
}

impl AgentSettings {
    /// What the store keeps of these settings.
    pub fn stored(&self) -> StoredSettings {
        StoredSettings {
            name: self.name.clone(),
            role: self.role.clone(),
            model: self.model.id.clone(),
            extra_prompt: self.extra_prompt.clone(),
            tools: self.tools.clone(),
            workdir: self.workdir.clone(),
            max_steps: self.max_steps,
            max_cost_usd: self.caps.max_cost_usd,
            max_tokens: self.caps.max_tokens,
            depends_on: self.depends_on.clone(),
            deferred_task: None,
            deferred_schema: None,
            retries: self.retries,
            sandbox: Some(self.sandbox),
            worktree: self.worktree.clone(),
        }
    }
}
