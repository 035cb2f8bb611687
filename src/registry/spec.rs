//! An agent's spec: what `create_agent` asks for ([`CreateSpec`]), and what is kept
//! of it once checked and completed with its defaults (`Registry::prepare`:
//! [`StoredSettings`], the one description of an agent, saved in its `created`
//! event). [`Registry::resolve`] is the one way a spec becomes running
//! [`AgentSettings`]: at creation and when a restart brings the agent back;
//! [`AgentSettings::stored`] is its inverse.

use std::path::PathBuf;

use super::create::Prepared;
use super::policy::check_output_schema;
use super::{DEFAULT_MAX_STEPS, MAX_MAX_STEPS, Registry, RegistryError};
use crate::agent::AgentSettings;
use crate::config::ResolvedModel;
use crate::fleet::budget::Caps;
use crate::prompts::{Role, isolation_note};
use crate::sandbox::{Sandbox, SandboxMode};
use crate::store::event::StoredSettings;
use crate::tools::Tool;

/// What `create_agent` asks for, already type-checked; `Registry::prepare` checks
/// it and fills in the defaults (role, config) to make an agent's spec.
#[derive(Debug, Default, Clone)]
pub struct CreateSpec {
    pub name: String,
    pub task: Option<String>,
    pub system_prompt: Option<String>,
    pub role: Option<String>,
    pub model: Option<String>,
    pub tools: Option<Vec<Tool>>,
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
    /// `worktree`: work in a git worktree of its own on branch `flotilla/<name>`.
    pub isolation: Option<crate::worktree::Isolation>,
    /// With isolation: a git ref or an agent's name to start from (default `HEAD`).
    pub base: Option<String>,
    /// With isolation, in a fleet: the git remote the node that placed the agent on
    /// this one resolved (this node may not have its work directory).
    pub remote: Option<crate::worktree::RemoteSpec>,
    /// Default: the role's, else config.
    pub sandbox: Option<SandboxMode>,
    /// Whether its commands may reach the network; default: the role's, else config.
    pub network: Option<bool>,
}

/// Most retries of a failed command.
pub const MAX_RETRIES: u32 = 5;

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
        let mut system_prompt = match &model.runtime {
            crate::config::Runtime::Api(_) => {
                let mut prompt = self.prompts().compose(
                    spec.role.as_deref(),
                    spec.extra_prompt.as_deref(),
                    &spec.name,
                    &spec.workdir,
                    &spec.tools,
                );
                prompt.push_str(&isolation_note(
                    &spec.tools,
                    sandbox,
                    spec.worktree.as_ref(),
                ));
                prompt
            }
            crate::config::Runtime::Cli(cli) => {
                let tools = cli.kind.dialect().tool_names(&spec.tools);
                let mut prompt = self.prompts().compose_session(
                    spec.role.as_deref(),
                    spec.extra_prompt.as_deref(),
                    &spec.name,
                    &spec.workdir,
                    &tools,
                );
                if let Some(wt) = &spec.worktree {
                    prompt.push_str(&crate::prompts::worktree_note(&wt.branch));
                }
                prompt
            }
        };
        // Composing doubled its capacity (4 KB of text in an 8 KB buffer): held by
        // every agent for its whole life, the slack was a third of an idle agent.
        system_prompt.shrink_to_fit();
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

impl Registry {
    /// Check every argument and build the agent's settings; changes nothing.
    /// `workdir`: the agent's work directory, resolved with [`Registry::workdir`].
    pub(crate) fn prepare(
        &self,
        spec: CreateSpec,
        workdir: PathBuf,
    ) -> Result<Prepared, RegistryError> {
        let invalid = |m: String| RegistryError::Invalid(m);
        validate_name(&spec.name).map_err(invalid)?;
        if self.names.contains_key(&spec.name) {
            return Err(RegistryError::DuplicateName(spec.name));
        }
        let task = checked_task(spec.task)?;
        if task.is_some() {
            self.fleet_may_start()?;
        }
        let caps = checked_caps(spec.max_cost_usd, spec.max_tokens).map_err(invalid)?;
        let retries = spec.retries.unwrap_or(0);
        if retries > MAX_RETRIES {
            return Err(invalid(format!(
                "retries must be between 0 and {MAX_RETRIES}; got {retries}"
            )));
        }
        let depends_on =
            checked_depends_on(&spec.name, &spec.depends_on, task.is_some()).map_err(invalid)?;
        if let Some(schema) = &spec.output_schema {
            check_output_schema(schema)?;
            if task.is_none() {
                return Err(invalid(
                    "output_schema checks the answer to `task`, but no task was given; pass output_schema with command_agent instead".into(),
                ));
            }
        }
        let role = self.role(spec.role.as_deref()).map_err(invalid)?;
        if spec.tools.as_ref().is_some_and(Vec::is_empty) {
            return Err(invalid(
                "`tools` is empty: list the tools the agent may use (e.g. [\"read_file\", \"list_files\"]), or omit `tools` for all of them".into(),
            ));
        }
        let tools = tools_of(spec.tools.as_deref(), role);
        let max_steps = spec
            .max_steps
            .or(role.and_then(|r| r.max_steps))
            .unwrap_or(DEFAULT_MAX_STEPS);
        if !(1..=MAX_MAX_STEPS).contains(&max_steps) {
            return Err(invalid(format!(
                "max_steps must be between 1 and {MAX_MAX_STEPS} (model calls per command); got {max_steps}"
            )));
        }
        let model = self
            .models
            .resolve(spec.model.as_deref())
            .map_err(|e| invalid(e.to_string()))?;
        let sandbox = self.sandbox_of(spec.sandbox, spec.network, role)?;
        let warnings = unenforced_sandbox(&spec.name, sandbox, &tools)
            .into_iter()
            .chain(match &model.runtime {
                crate::config::Runtime::Cli(cli) => crate::cli::asking::unserved(cli, &tools),
                crate::config::Runtime::Api(_) => None,
            })
            .collect();
        let stored = StoredSettings {
            name: spec.name,
            role: spec.role,
            model: model.id.clone(),
            extra_prompt: spec.system_prompt.filter(|e| !e.trim().is_empty()),
            tools,
            workdir,
            max_steps,
            max_cost_usd: caps.max_cost_usd,
            max_tokens: caps.max_tokens,
            depends_on,
            deferred_task: None,
            deferred_schema: None,
            retries,
            sandbox: Some(sandbox),
            worktree: None,
        };
        Ok(Prepared {
            settings: self.resolve(stored, model),
            task,
            output_schema: spec.output_schema,
            isolate: None,
            warnings,
        })
    }

    /// The role profile named, if any.
    fn role(&self, name: Option<&str>) -> Result<Option<&Role>, String> {
        let Some(r) = name else {
            return Ok(None);
        };
        self.prompts.role(r).map(Some).ok_or_else(|| {
            format!(
                "unknown role `{r}`; known roles: {}",
                self.prompts.role_names().join(", ")
            )
        })
    }

    /// The sandbox asked for, else the role's, else the fleet's default. `off` asked
    /// for by the agent or its role needs the operator's consent (`[sandbox] allow_off`
    /// or `--allow-sandbox-off`); the config's own default needs none.
    fn sandbox_of(
        &self,
        mode: Option<SandboxMode>,
        network: Option<bool>,
        role: Option<&Role>,
    ) -> Result<Sandbox, RegistryError> {
        let asked = mode.map(|m| (m, "`sandbox: \"off\"`")).or(role
            .and_then(|r| r.sandbox)
            .map(|m| (m, "its role's `sandbox: off`")));
        if let Some((SandboxMode::Off, by)) = asked
            && !self.sandbox_allow_off
        {
            return Err(RegistryError::Invalid(format!(
                "{by} runs the agent's commands unconfined, which needs the operator's consent: \
                 start flotilla with --allow-sandbox-off or set `allow_off = true` under \
                 [sandbox] in its config; or use sandbox \"workspace-write\" (with \
                 `network: true` if it needs the network)"
            )));
        }
        Ok(Sandbox {
            mode: asked.map_or(self.sandbox_default.mode, |(m, _)| m),
            network: network
                .or(role.and_then(|r| r.network))
                .unwrap_or(self.sandbox_default.network),
        })
    }
}

/// `task`, refused when given but empty.
fn checked_task(task: Option<String>) -> Result<Option<String>, RegistryError> {
    match task {
        Some(t) if t.trim().is_empty() => Err(RegistryError::Invalid(
            "`task` is empty: give the agent its first instruction, or omit `task` and use command_agent later".into(),
        )),
        t => Ok(t),
    }
}

/// An agent's own caps, each positive when set.
fn checked_caps(max_cost_usd: Option<f64>, max_tokens: Option<u64>) -> Result<Caps, String> {
    if let Some(c) = max_cost_usd
        && !(c.is_finite() && c > 0.0)
    {
        return Err(format!(
            "max_cost_usd must be a positive number of US dollars, e.g. 0.5; got {c}"
        ));
    }
    if max_tokens == Some(0) {
        return Err(
            "max_tokens must be at least 1 (input + output tokens over all the agent's commands); omit it for no cap".into(),
        );
    }
    Ok(Caps {
        max_cost_usd,
        max_tokens,
    })
}

/// `depends_on` without repeats: names, not itself, and only with a task to hold.
fn checked_depends_on(
    name: &str,
    depends_on: &[String],
    has_task: bool,
) -> Result<Vec<String>, String> {
    let depends_on = dedup(depends_on);
    if let Some(bad) = depends_on.iter().find(|d| d.trim().is_empty()) {
        return Err(format!(
            "depends_on has an empty name ({bad:?}); list agent names"
        ));
    }
    if depends_on.iter().any(|d| d == name) {
        return Err(format!(
            "agent `{name}` depends on itself; remove it from its depends_on"
        ));
    }
    if !depends_on.is_empty() && !has_task {
        return Err(
            "depends_on needs a `task`: the task starts when the dependencies are done".into(),
        );
    }
    Ok(depends_on)
}

/// The tools asked for (without repeats), else the role's, else all.
fn tools_of(tools: Option<&[Tool]>, role: Option<&Role>) -> Vec<Tool> {
    match (tools, role.and_then(|r| r.tools.as_ref())) {
        (Some(tools), _) => dedup(tools),
        (None, Some(role_tools)) => role_tools.clone(),
        (None, None) => Tool::ALL.to_vec(),
    }
}

/// A warning when the agent's sandbox cannot be enforced on this system.
fn unenforced_sandbox(name: &str, sandbox: Sandbox, tools: &[Tool]) -> Option<String> {
    if sandbox.mode == SandboxMode::Off || !tools.contains(&Tool::RunCommand) {
        return None;
    }
    let why = crate::sandbox::sandbox_status().err()?;
    let mode = sandbox.mode.as_str();
    tracing::warn!(agent = %name, "sandbox {mode} cannot be enforced: {why}");
    Some(format!(
        "sandbox \"{mode}\" cannot be enforced on this system ({why}): its run_command runs unconfined, as with sandbox \"off\""
    ))
}

/// The items in their first order, without repeats.
fn dedup<T: Clone + PartialEq>(items: &[T]) -> Vec<T> {
    let mut out: Vec<T> = Vec::with_capacity(items.len());
    for t in items {
        if !out.contains(t) {
            out.push(t.clone());
        }
    }
    out
}

/// `[A-Za-z0-9_-]`, 1–64 characters.
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err(format!(
            "`name` must be 1–64 characters of letters, digits, `_` or `-`; got {} characters",
            name.chars().count()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(format!(
            "`name` may contain only letters, digits, `_` and `-`; `{name}` contains {c:?}. Try e.g. `scout-1`"
        ));
    }
    if looks_like_id(name) {
        return Err(format!(
            "`name` `{name}` has the form of an agent id (`ag-` and 10 hex digits), which would shadow ids; choose another name"
        ));
    }
    Ok(())
}

fn looks_like_id(s: &str) -> bool {
    s.strip_prefix("ag-")
        .is_some_and(|h| h.len() == 10 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}
