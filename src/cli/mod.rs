//! Agents that are sessions of a coding-agent CLI — Claude Code (`claude -p`), Codex
//! (`codex exec`) or Gemini CLI (`gemini -p`) — instead of flotilla's own model loop.
//!
//! A [`CliProvider`] is a `[providers.NAME]` of a CLI kind (or one of the built-in
//! `claude-code` / `codex` / `gemini-cli`): the program, its arguments and environment. Each kind is a
//! [`Dialect`] in its own module: the arguments for one command and the reading of
//! its JSON stream into [`CliEvent`]s. The worker's CLI runtime
//! (`agent/worker/session.rs`) runs them through [`process`] and turns the events into
//! flotilla's own: everything above the seam does not care which runtime an agent has.

pub(crate) mod asking;
pub(crate) mod claude_code;
pub(crate) mod codex;
pub(crate) mod gemini;
pub(crate) mod process;
mod setup;

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::model::Usage;
use crate::sandbox::SandboxMode;
use crate::tools::Tool;

pub(crate) use setup::{CliTable, build, detect_default};

/// Which CLI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CliKind {
    ClaudeCode,
    Codex,
    Gemini,
}

impl CliKind {
    pub const ALL: [CliKind; 3] = [CliKind::ClaudeCode, CliKind::Codex, CliKind::Gemini];

    /// The built-in provider's name, also the `kind` in the config.
    pub fn name(self) -> &'static str {
        match self {
            CliKind::ClaudeCode => "claude-code",
            CliKind::Codex => "codex",
            CliKind::Gemini => "gemini-cli",
        }
    }

    /// The program on `PATH` when the config names none.
    pub fn default_command(self) -> &'static str {
        match self {
            CliKind::ClaudeCode => "claude",
            CliKind::Codex => "codex",
            CliKind::Gemini => "gemini",
        }
    }

    /// How a user installs it.
    pub fn install_hint(self) -> &'static str {
        match self {
            CliKind::ClaudeCode => {
                "install Claude Code (`npm install -g @anthropic-ai/claude-code`, Node 22) and log in with `claude`, or set command under [providers.claude-code]"
            }
            CliKind::Codex => {
                "install Codex (`npm install -g @openai/codex`, Node 22) and log in with `codex login`, or set command under [providers.codex]"
            }
            CliKind::Gemini => {
                "install Gemini CLI (`npm install -g @google/gemini-cli`, Node 22) and set GEMINI_API_KEY (or log in with `gemini`), or set command under [providers.gemini-cli]"
            }
        }
    }

    /// The versions flotilla drives: (lowest, first unsupported), as `major.minor.patch`.
    pub fn supported(self) -> ((u64, u64, u64), (u64, u64, u64)) {
        match self {
            CliKind::ClaudeCode => ((2, 1, 0), (3, 0, 0)),
            CliKind::Codex => ((0, 160, 0), (0, 200, 0)),
            CliKind::Gemini => ((0, 61, 0), (0, 70, 0)),
        }
    }

    /// Variables it gets from flotilla's environment when set: its own credentials,
    /// endpoint and state directory, nothing of another provider.
    pub fn own_vars(self) -> &'static [&'static str] {
        match self {
            CliKind::ClaudeCode => &[
                "ANTHROPIC_API_KEY",
                "ANTHROPIC_AUTH_TOKEN",
                "ANTHROPIC_BASE_URL",
                "ANTHROPIC_MODEL",
                "CLAUDE_CONFIG_DIR",
                "CLAUDE_CODE_OAUTH_TOKEN",
                "CLAUDE_CODE_USE_BEDROCK",
                "CLAUDE_CODE_USE_VERTEX",
            ],
            CliKind::Codex => &[
                "OPENAI_API_KEY",
                "CODEX_API_KEY",
                "CODEX_HOME",
                "OPENAI_BASE_URL",
            ],
            CliKind::Gemini => &[
                "GEMINI_API_KEY",
                "GOOGLE_API_KEY",
                "GOOGLE_GEMINI_BASE_URL",
                "GEMINI_CLI_HOME",
                "GOOGLE_GENAI_USE_VERTEXAI",
                "GOOGLE_CLOUD_PROJECT",
                "GOOGLE_CLOUD_LOCATION",
                "GOOGLE_APPLICATION_CREDENTIALS",
            ],
        }
    }

    /// Of [`CliKind::own_vars`], the ones holding secrets (redacted from what flotilla
    /// hands on).
    pub fn secret_vars(self) -> &'static [&'static str] {
        match self {
            CliKind::ClaudeCode => &[
                "ANTHROPIC_API_KEY",
                "ANTHROPIC_AUTH_TOKEN",
                "CLAUDE_CODE_OAUTH_TOKEN",
            ],
            CliKind::Codex => &["OPENAI_API_KEY", "CODEX_API_KEY"],
            CliKind::Gemini => &["GEMINI_API_KEY", "GOOGLE_API_KEY"],
        }
    }

    /// Its state directory (sessions, login): `CLAUDE_CONFIG_DIR` or `~/.claude`;
    /// `CODEX_HOME` or `~/.codex`; `$GEMINI_CLI_HOME/.gemini` or `~/.gemini`.
    fn state_dir(self, env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
        let dir = match self {
            CliKind::ClaudeCode => ".claude",
            CliKind::Codex => ".codex",
            CliKind::Gemini => {
                let home = env(self.state_var()).or_else(|| env("HOME"))?;
                return Some(Path::new(&home).join(".gemini"));
            }
        };
        env(self.state_var())
            .map(PathBuf::from)
            .or_else(|| env("HOME").map(|h| Path::new(&h).join(dir)))
    }

    /// The value of [`CliKind::state_var`] that makes `dir` its state directory
    /// (Gemini CLI's variable names the directory holding `.gemini`).
    fn state_var_value(self, dir: &Path) -> &Path {
        match self {
            CliKind::Gemini => dir.parent().unwrap_or(dir),
            CliKind::ClaudeCode | CliKind::Codex => dir,
        }
    }

    /// The variable naming its state directory.
    fn state_var(self) -> &'static str {
        match self {
            CliKind::ClaudeCode => "CLAUDE_CONFIG_DIR",
            CliKind::Codex => "CODEX_HOME",
            CliKind::Gemini => "GEMINI_CLI_HOME",
        }
    }

    pub(crate) fn dialect(self) -> Box<dyn Dialect> {
        match self {
            CliKind::ClaudeCode => Box::new(claude_code::ClaudeCode::default()),
            CliKind::Codex => Box::new(codex::Codex::default()),
            CliKind::Gemini => Box::new(gemini::Gemini::default()),
        }
    }
}

/// A provider of CLI sessions, built once at startup.
#[derive(Debug)]
pub struct CliProvider {
    /// Its name under `[providers]`.
    pub name: String,
    pub kind: CliKind,
    /// The program as configured (a name looked up on `PATH`, or a path).
    pub command: String,
    /// Extra arguments for every session.
    pub args: Vec<String>,
    /// The CLI's whole environment.
    pub env: Vec<(String, String)>,
    /// Writable for the session besides its work directory: the CLI's state.
    pub state_dir: Option<PathBuf>,
    /// claude-code: the MCP servers it loads.
    pub mcp_config: Option<PathBuf>,
    /// The program found and its version, checked once.
    checked: std::sync::OnceLock<Result<(PathBuf, String), String>>,
}

/// Which session a command runs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionRef {
    /// A new session with this id (claude-code picks it up front).
    New(String),
    /// A new session whose id the CLI chooses (codex).
    Fresh,
    /// The session of earlier commands.
    Resume(String),
}

/// One command as a CLI runs it.
#[derive(Debug)]
pub struct Invocation<'a> {
    /// The model after `kind:`; empty: the CLI's default.
    pub model: &'a str,
    pub session: SessionRef,
    /// The role's instructions, the orchestrator's and the environment.
    pub system_prompt: &'a str,
    pub tools: &'a [Tool],
    pub workdir: &'a Path,
    pub sandbox: SandboxMode,
    pub network: bool,
    /// flotilla's launcher enforces `sandbox` on the session (Landlock works here and
    /// the mode is not `off`).
    pub confined: bool,
    /// The command's output_schema, and the file it was written to (codex reads a file).
    pub output_schema: Option<(&'a Value, &'a Path)>,
    /// What is left of the agent's dollar cap.
    pub max_budget_usd: Option<f64>,
    /// flotilla's `ask_orchestrator` endpoint, when the agent may ask.
    pub ask: Option<AskAccess<'a>>,
}

/// How one invocation reaches flotilla's `ask_orchestrator` endpoint ([`asking`]).
#[derive(Debug, Clone, Copy)]
pub struct AskAccess<'a> {
    pub url: &'a str,
    /// Its bearer token (this invocation's only).
    pub token: &'a str,
    /// The file from [`Dialect::ask_config`], when the dialect wrote one.
    pub config: Option<&'a Path>,
}

/// What a CLI's JSON stream says, in flotilla's terms.
#[derive(Debug, Clone, PartialEq)]
pub enum CliEvent {
    /// The session's id, once known.
    Session(String),
    /// One model call: its text and the tool calls it made.
    Turn(Turn),
    /// A tool ran inside the CLI.
    ToolResult {
        id: String,
        content: String,
        is_error: bool,
    },
    /// The command's end, as the CLI reports it.
    Result(Outcome),
}

/// One model call of a CLI session.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Turn {
    pub text: String,
    /// (id, CLI tool name, input)
    pub calls: Vec<(String, String, Value)>,
    pub usage: Usage,
    /// The model the CLI names for it (for the price).
    pub model: Option<String>,
    /// Its cost, when the CLI says.
    pub cost_usd: Option<f64>,
}

/// How a CLI says a command ended.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    /// Its final answer.
    pub text: String,
    /// The CLI's error, if it failed.
    pub error: Option<String>,
    /// What the session has cost so far, all commands together, when the CLI says
    /// (Claude Code's `total_cost_usd` is cumulative over a resumed session).
    pub total_cost_usd: Option<f64>,
    /// The command's tokens in all, when the CLI says (Claude Code's per-turn lines
    /// carry only the start of each turn's usage).
    pub usage: Option<Usage>,
    /// The session's tokens so far, all commands together, when the CLI counts so
    /// (Codex's `turn.completed`).
    pub session_usage: Option<Usage>,
}

/// An agent's CLI session, as the worker keeps it between commands.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CliSession {
    /// The session's (or thread's) id.
    pub id: String,
    /// What the CLI last reported the session had cost in all.
    pub reported_usd: f64,
    /// The tokens the CLI last reported the session had used in all (Codex).
    pub reported_usage: Usage,
}

/// The CLI's tool names standing for `tools`, by `mapped`, each once, in order.
fn mapped_names(tools: &[Tool], mapped: fn(Tool) -> &'static [&'static str]) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = Vec::new();
    for name in tools.iter().flat_map(|t| mapped(*t)) {
        if !names.contains(name) {
            names.push(name);
        }
    }
    names
}

/// One CLI's arguments and stream format.
pub(crate) trait Dialect: Send + Sync {
    /// The arguments (after the program and the provider's `args`) for one command;
    /// the prompt goes to standard input.
    fn args(&self, run: &Invocation<'_>, provider: &CliProvider) -> Vec<String>;
    /// What goes to standard input for `prompt` (a CLI without a system-prompt flag
    /// gets its instructions here).
    fn prompt(&self, _run: &Invocation<'_>, prompt: &str) -> String {
        prompt.to_string()
    }
    /// Before the process starts: files the CLI needs in its state directory.
    fn prepare(&self, _provider: &CliProvider) -> Result<(), String> {
        Ok(())
    }
    /// Read one line of its standard output.
    fn line(&mut self, line: &str, out: &mut Vec<CliEvent>) -> Result<(), String>;
    /// Standard output ended: anything still pending.
    fn finish(&mut self, out: &mut Vec<CliEvent>);
    /// The CLI's name for a flotilla tool (for the summary of what it may use).
    fn tool_names(&self, tools: &[Tool]) -> Vec<&'static str>;
    /// Whether it can call `ask_orchestrator` on flotilla's endpoint ([`asking`]).
    fn can_ask(&self) -> bool {
        false
    }
    /// The config file naming the endpoint, when the CLI reads one (Claude Code's
    /// `--mcp-config`): its text, for `url` and `token`.
    fn ask_config(&self, _url: &str, _token: &str) -> Option<String> {
        None
    }
    /// Variables this invocation adds to the CLI's environment.
    fn env(&self, _run: &Invocation<'_>) -> Vec<(String, String)> {
        Vec::new()
    }
}
