//! Prompts are data: the worker system prompt, role profiles and the orchestrator
//! definition live in `prompts/`, are embedded in the binary, and can be overridden
//! (or extended with new roles) from a directory given by `--prompts-dir`.
//!
//! A role profile is Markdown with a small front-matter block:
//!
//! ```text
//! ---
//! description: Explores a codebase and reports findings.
//! tools: read_file, list_files, search_files
//! max_steps: 40
//! ---
//! Instructions appended to the worker prompt.
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::sandbox::SandboxMode;
use crate::tools::Tool;

const WORKER: &str = include_str!("../prompts/worker.md");
/// The orchestrator sub-agent definition (Claude Code `.claude/agents/` format).
pub const ORCHESTRATOR: &str = include_str!("../prompts/orchestrator.md");
const EMBEDDED_ROLES: [(&str, &str); 4] = [
    ("builder", include_str!("../prompts/agents/builder.md")),
    ("planner", include_str!("../prompts/agents/planner.md")),
    ("reviewer", include_str!("../prompts/agents/reviewer.md")),
    ("scout", include_str!("../prompts/agents/scout.md")),
];

/// The short version of the orchestrator pattern, sent as the server's MCP
/// `instructions`.
pub const INSTRUCTIONS: &str = "\
flotilla runs a fleet of LLM sub-agents that work in parallel, each with its own \
conversation, tools (read/write/edit/list/search files, run commands) and work directory.
When you know the shape of the job, submit it whole with create_agents: one call with \
every agent (name, role scout|planner|builder|reviewer, a complete `task` brief: goal, \
context, constraints, what to report) and `depends_on` naming the agents whose answers it \
needs; each starts when its dependencies are done and receives their answers, so you \
never copy reports between agents. Add output_schema for answers you need as JSON and \
retries for flaky steps. Then wait_for_agents with output_max_chars=4000 (sleeps until \
they finish and returns their final reports; call again if timed_out; never poll \
get_agent_status in a loop) and read only the end results (get_agent_output for the rest \
of a long report). For one-off work: \
create_agent with `task` -> wait_for_agents -> command_agent to follow up (the agent keeps \
its conversation) -> delete_agent when done. An agent knows only what you and its \
dependencies tell it. Parallel builders in one git repository: isolation \"worktree\" \
(each on its own branch flotilla/<name>; a reviewer with base: the builder's name sees its \
work; delete_agent keeps the branch). An agent may ask you a question: status needs_input, its \
row carries `question` (wait_for_agents wakes for it); answer with command_agent {agent, task: \
your answer} and its command goes on. pause_agents/resume_agents hold and release the fleet; a \
`note` in a result means a budget cap is near.";

/// A role profile: extra instructions plus defaults for tools and steps.
#[derive(Debug, Clone, PartialEq)]
pub struct Role {
    pub name: String,
    pub description: String,
    /// Allowed tools; `None` means all of them.
    pub tools: Option<Vec<Tool>>,
    pub max_steps: Option<u32>,
    /// Default `sandbox` of its agents (`workspace-write`, `read-only` or `off`).
    pub sandbox: Option<SandboxMode>,
    /// Default `network` of its agents.
    pub network: Option<bool>,
    pub body: String,
}

/// Why the prompts could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    #[error("cannot read prompts from {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("role profile {origin}: {message}")]
    BadRole { origin: String, message: String },
}

/// The worker prompt and every role, embedded or overridden.
#[derive(Debug, Clone)]
pub struct Prompts {
    worker: String,
    roles: BTreeMap<String, Role>,
}

impl Prompts {
    /// The embedded prompts, with files from `override_dir` (if any) taking precedence:
    /// `worker.md` replaces the worker prompt, `agents/NAME.md` replaces or adds a role.
    pub fn load(override_dir: Option<&Path>) -> Result<Self, PromptError> {
        let mut worker = WORKER.to_string();
        let mut roles = BTreeMap::new();
        for (name, text) in EMBEDDED_ROLES {
            roles.insert(name.to_string(), parse_role(name, text, "(embedded)")?);
        }
        if let Some(dir) = override_dir {
            let read = |path: PathBuf| {
                std::fs::read_to_string(&path).map_err(|source| PromptError::Read { path, source })
            };
            if !dir.is_dir() {
                return Err(PromptError::Read {
                    path: dir.to_path_buf(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "not a directory (check --prompts-dir / FLOTILLA_PROMPTS_DIR)",
                    ),
                });
            }
            let worker_path = dir.join("worker.md");
            if worker_path.is_file() {
                worker = read(worker_path)?;
            }
            let agents = dir.join("agents");
            if agents.is_dir() {
                let entries = std::fs::read_dir(&agents).map_err(|source| PromptError::Read {
                    path: agents.clone(),
                    source,
                })?;
                for entry in entries.flatten() {
                    let path = entry.path();
                    if path.extension().is_some_and(|e| e == "md") {
                        let Some(name) = path.file_stem().and_then(|s| s.to_str()) else {
                            continue;
                        };
                        let name = name.to_string();
                        let origin = path.display().to_string();
                        let text = read(path)?;
                        roles.insert(name.clone(), parse_role(&name, &text, &origin)?);
                    }
                }
            }
        }
        Ok(Self { worker, roles })
    }

    pub fn worker(&self) -> &str {
        &self.worker
    }

    pub fn role(&self, name: &str) -> Option<&Role> {
        self.roles.get(name)
    }

    pub fn role_names(&self) -> Vec<&str> {
        self.roles.keys().map(String::as_str).collect()
    }

    /// An agent's system prompt: the worker prompt, its role, the orchestrator's extra
    /// instructions and its environment. Built from the current prompts both at
    /// creation and when an agent is restored (the store keeps only the parts).
    pub fn compose(
        &self,
        role: Option<&str>,
        extra: Option<&str>,
        name: &str,
        workdir: &Path,
        tools: &[Tool],
    ) -> String {
        let mut s = self.worker.trim().to_string();
        if let Some(role) = role {
            match self.role(role) {
                Some(r) => s.push_str(&format!("\n\n# Your role: {role}\n\n{}", r.body.trim())),
                None => tracing::warn!(
                    agent = name,
                    role,
                    "role no longer exists; its instructions are left out"
                ),
            }
        }
        if let Some(extra) = extra.filter(|e| !e.trim().is_empty()) {
            s.push_str(&format!(
                "\n\n# Instructions from the orchestrator\n\n{}",
                extra.trim()
            ));
        }
        s.push_str(&format!(
            "\n\n# Environment\n\nYour name: {name}\nYour work directory: {}\nYour tools: {}",
            workdir.display(),
            Tool::join(tools)
        ));
        s
    }
}

impl Prompts {
    /// The instructions a CLI session (Claude Code, Codex) gets on top of its own
    /// system prompt: who it works for, its role, the orchestrator's part and its
    /// environment. flotilla's worker prompt is about flotilla's own tools, so it is
    /// left out.
    pub fn compose_session(
        &self,
        role: Option<&str>,
        extra: Option<&str>,
        name: &str,
        workdir: &Path,
        tools: &[&str],
    ) -> String {
        let mut s = String::from(
            "You are a sub-agent in a flotilla fleet: an orchestrator gives you commands and reads your final message as your report. End every command with a concise report: what you did, what you found, which files you changed, and anything left undone. Work only in your work directory.",
        );
        if let Some(role) = role.and_then(|r| self.role(r)) {
            s.push_str(&format!(
                "\n\n# Your role: {}\n\n{}",
                role.name,
                role.body.trim()
            ));
        }
        if let Some(extra) = extra.filter(|e| !e.trim().is_empty()) {
            s.push_str(&format!(
                "\n\n# Instructions from the orchestrator\n\n{}",
                extra.trim()
            ));
        }
        let tools = if tools.is_empty() {
            "none that change anything".to_string()
        } else {
            tools.join(", ")
        };
        s.push_str(&format!(
            "\n\n# Environment\n\nYour name: {name}\nYour work directory: {}\nTools allowed without asking: {tools}",
            workdir.display()
        ));
        s
    }
}

/// The environment lines for an agent's sandbox and worktree, appended to its system
/// prompt (at creation and on restore) so the model knows its limits up front.
pub fn isolation_note(
    tools: &[Tool],
    sandbox: crate::sandbox::Sandbox,
    worktree: Option<&crate::worktree::Worktree>,
) -> String {
    let mut s = String::new();
    if let Some(wt) = worktree {
        s.push_str(&worktree_note(&wt.branch));
    }
    let enforced = crate::sandbox::sandbox_status().is_ok();
    if enforced && sandbox.mode != SandboxMode::Off && tools.contains(&Tool::RunCommand) {
        let writes = match sandbox.mode {
            SandboxMode::ReadOnly => "may not write any file",
            _ => "may write only in your work directory and the temp directories ($TMPDIR, /tmp)",
        };
        let net = if sandbox.network {
            "may use the network"
        } else {
            "have no network (only servers they start on 127.0.0.1)"
        };
        s.push_str(&format!(
            "\nrun_command is sandboxed: commands {writes}, and {net}. Anything else fails with `Permission denied` or a connection error; do not try to work around it."
        ));
    }
    s
}

/// The environment line of an agent working in a worktree on `branch`.
pub fn worktree_note(branch: &str) -> String {
    format!(
        "\nYour work directory is a git worktree of your own on branch {branch}, apart from the user's checkout; flotilla keeps your changes there, committed or not."
    )
}

/// Parse a role profile: optional `---` front matter with `key: value` lines, then body.
pub fn parse_role(name: &str, text: &str, origin: &str) -> Result<Role, PromptError> {
    let bad = |message: String| PromptError::BadRole {
        origin: format!("{name} {origin}"),
        message,
    };
    let mut role = Role {
        name: name.to_string(),
        description: String::new(),
        tools: None,
        max_steps: None,
        sandbox: None,
        network: None,
        body: text.trim().to_string(),
    };
    let text = text.trim_start();
    let Some(rest) = text.strip_prefix("---") else {
        return Ok(role);
    };
    let Some(end) = rest.find("\n---") else {
        return Err(bad("front matter opened with --- but never closed".into()));
    };
    let (front, body) = rest.split_at(end);
    role.body = body.trim_start_matches("\n---").trim().to_string();
    for line in front.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let Some((key, value)) = line.split_once(':') else {
            return Err(bad(format!("expected `key: value`, found `{line}`")));
        };
        let value = value.trim();
        match key.trim() {
            "description" => role.description = value.to_string(),
            "tools" => {
                let tools = value
                    .trim_matches(|c| c == '[' || c == ']')
                    .split(',')
                    .map(|t| t.trim().trim_matches('"'))
                    .filter(|t| !t.is_empty())
                    .map(str::parse::<Tool>)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|unknown| {
                        bad(format!(
                            "unknown tool `{}`; known tools: {}",
                            unknown.0,
                            Tool::all_names()
                        ))
                    })?;
                role.tools = Some(tools);
            }
            "max_steps" => {
                role.max_steps = Some(value.parse().map_err(|_| {
                    bad(format!("max_steps must be a whole number, found `{value}`"))
                })?)
            }
            "sandbox" => {
                let mode = value.trim_matches('"');
                role.sandbox = Some(SandboxMode::parse(mode).ok_or_else(|| {
                    bad(format!(
                        "sandbox must be one of {}, found `{value}`",
                        SandboxMode::NAMES.join(", ")
                    ))
                })?)
            }
            "network" => {
                role.network = Some(match value {
                    "true" => true,
                    "false" => false,
                    _ => {
                        return Err(bad(format!(
                            "network must be true or false, found `{value}`"
                        )));
                    }
                })
            }
            // Claude Code style keys that are harmless here.
            "name" | "model" | "color" => {}
            other => return Err(bad(format!("unknown key `{other}`"))),
        }
    }
    Ok(role)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn embedded_roles_parse_and_scout_is_read_only() {
        let prompts = Prompts::load(None).unwrap();
        assert_eq!(
            prompts.role_names(),
            ["builder", "planner", "reviewer", "scout"]
        );
        let scout = prompts.role("scout").unwrap();
        let tools = scout.tools.clone().unwrap();
        assert!(tools.iter().all(|t| t.is_read_only()), "{tools:?}");
        assert!(!scout.description.is_empty());
        assert!(!prompts.worker().is_empty());
    }

    #[test]
    fn front_matter_is_parsed_and_checked() {
        let role = parse_role(
            "x",
            "---\ndescription: d\ntools: read_file, run_command\nmax_steps: 7\nsandbox: read-only\nnetwork: true\n---\nBody here\n",
            "t",
        )
        .unwrap();
        assert_eq!(role.sandbox, Some(SandboxMode::ReadOnly));
        assert_eq!(role.network, Some(true));
        let err = parse_role("x", "---\nsandbox: strict\n---\nb", "t").unwrap_err();
        assert!(err.to_string().contains("workspace-write"), "{err}");
        assert_eq!(role.description, "d");
        assert_eq!(role.tools.unwrap(), [Tool::ReadFile, Tool::RunCommand]);
        assert_eq!(role.max_steps, Some(7));
        assert_eq!(role.body, "Body here");
        let err = parse_role("x", "---\ntools: rm_rf\n---\nb", "t").unwrap_err();
        assert!(err.to_string().contains("unknown tool `rm_rf`"), "{err}");
        let err = parse_role("x", "---\ndescription: d\nb", "t").unwrap_err();
        assert!(err.to_string().contains("never closed"), "{err}");
    }

    #[test]
    fn compose_puts_worker_role_extra_and_environment_in_order() {
        let prompts = Prompts::load(None).unwrap();
        let tools = vec![Tool::ReadFile];
        let s = prompts.compose(
            Some("scout"),
            Some("Only look at src/."),
            "scout-1",
            Path::new("/repo"),
            &tools,
        );
        let worker = s.find(prompts.worker().trim()).unwrap();
        let role = s.find("# Your role: scout").unwrap();
        let extra = s.find("Only look at src/.").unwrap();
        let env = s.find("Your work directory: /repo").unwrap();
        assert!(worker < role && role < extra && extra < env, "{s}");
        assert!(s.contains(prompts.role("scout").unwrap().body.trim()));
        // A role that disappeared (e.g. after an upgrade) is left out, not an error.
        let s = prompts.compose(Some("gone"), None, "x", Path::new("/"), &tools);
        assert!(!s.contains("# Your role"));
    }

    #[test]
    fn override_dir_replaces_and_adds_roles() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("agents")).unwrap();
        std::fs::write(dir.path().join("worker.md"), "custom worker").unwrap();
        std::fs::write(
            dir.path().join("agents/tester.md"),
            "---\ndescription: runs tests\ntools: run_command\n---\nTest things.",
        )
        .unwrap();
        let prompts = Prompts::load(Some(dir.path())).unwrap();
        assert_eq!(prompts.worker(), "custom worker");
        assert_eq!(prompts.role("tester").unwrap().body, "Test things.");
        assert!(prompts.role("scout").is_some());
    }
}
