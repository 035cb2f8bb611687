//! The TOML config file (`~/.config/flotilla/config.toml` or `--config PATH`).
//!
//! [`Config`] is the file as written: every key optional, unknown keys refused so a typo
//! is an error that names the key rather than a setting silently ignored. [`Models`]
//! (in `config/models.rs`) is what the server builds from it once at startup: the
//! providers, aliases, prices, retry policy and default model, with API keys read from
//! the environment.
//!
//! ```toml
//! default_model = "sonnet"            # FLOTILLA_MODEL overrides
//! max_output_tokens = 8192
//! # store = "postgres://flotilla@db/fleet"  # a fleet shared by several nodes (--store,
//!                                     # FLOTILLA_STORE); default: SQLite in the data dir
//!
//! [aliases]                           # alias = "provider:model"
//! fast = "ollama:qwen3:8b"
//!
//! [providers.ollama]                  # extra providers; "anthropic"/"openai" may be tuned
//! kind = "openai"                     # "openai" (Chat Completions) or "anthropic" (Messages)
//! base_url = "http://localhost:11434/v1"
//! # api_key_env = "OLLAMA_API_KEY"    # NAME of the variable holding the key
//!
//! [providers.claude-code]             # CLI sessions: "claude-code", "codex", "gemini-cli"
//! # command = "claude"                # default: claude / codex / gemini on PATH
//! # args = []                         # extra arguments for every session
//! # env = {}                          # extra variables for the CLI
//! # mcp_config = "mcp.json"           # claude-code: the only MCP servers it loads
//!
//! [prices."ollama:qwen3:8b"]          # USD per million tokens
//! input = 0.0
//! output = 0.0
//!
//! [retry]
//! max_retries = 5
//! initial_backoff_ms = 1000
//! max_backoff_ms = 30000
//!
//! [limits]                            # guard rails; flags and env override
//! max_cost_usd = 5.0                  # fleet-wide spend cap (priced models)
//! max_tokens = 5_000_000              # fleet-wide input + output tokens
//! max_running = 16                    # agents running a command at once (0: no limit)
//! stall_timeout_s = 600               # a command with no progress this long fails
//! ask_timeout_s = 3600                # a question unanswered this long: "proceed" (default: wait)
//! circuit_failures = 5                # consecutive failed calls that open a circuit
//! circuit_open_s = 30                 # how long an open circuit holds calls
//!
//! [sandbox]                           # what agents' commands may change
//! mode = "workspace-write"            # or "read-only", "off"
//! network = false
//! writable_roots = []                 # also writable by workspace-write commands
//! env = []                            # variables commands get besides the minimal set
//!
//! [worktrees]                         # isolated agents (isolation = "worktree")
//! max_file_mib = 10                   # larger files are not counted nor committed
//!
//! [cluster]                           # several nodes on one `store` (--node NAME names this one)
//! lease_s = 15                        # an agent's lease lasts this long unrenewed (min 2)
//! # max_running = 64                  # agents running at once across the fleet
//! # remote = "origin"                 # git remote of worktree agents: a URL, a remote's name, "" for none
//! ```

mod models;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use self::models::{Models, ResolvedModel, Runtime};
use crate::pricing::Price;
use crate::provider::openai::MaxTokensField;

/// The config file, as written. Every key is optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Model for agents created without `model`: `provider:model` or an alias.
    /// The `FLOTILLA_MODEL` environment variable takes precedence.
    pub default_model: Option<String>,
    /// Output token limit for each model call (default 8192).
    pub max_output_tokens: Option<u32>,
    /// Most characters of each dependency's answer handed to a dependent (default 8000).
    pub handoff_max_chars: Option<usize>,
    /// Seconds an agent's question may wait before it is answered for it (default: it
    /// waits). The same setting as `[limits] ask_timeout_s`; set one of them.
    pub ask_timeout_s: Option<u64>,
    /// The fleet's shared store: a `postgres://` URL (`--store` and `FLOTILLA_STORE`
    /// take precedence). Default: SQLite in the data directory.
    pub store: Option<String>,
    /// Extra model aliases, `name = "provider:model"`. They may replace the built-ins
    /// `haiku`, `sonnet` and `opus`.
    #[serde(default)]
    pub aliases: BTreeMap<String, String>,
    /// Named providers. `anthropic` and `openai` exist already and can be tuned here;
    /// any other name adds a provider (it then needs `kind` and `base_url`).
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderConfig>,
    /// Prices in USD per million tokens, keyed by `provider:model`; they override the
    /// built-in prices and give a price to models that have none (cost is otherwise null).
    #[serde(default)]
    pub prices: BTreeMap<String, Price>,
    /// How model calls are retried on rate limits, overload and server errors.
    #[serde(default)]
    pub retry: RetryConfig,
    /// Guard rails: budgets, run slots, stalls, provider circuits, work directories.
    #[serde(default)]
    pub limits: Limits,
    /// Defaults for what agents' commands may change (`run_command`'s sandbox).
    #[serde(default)]
    pub sandbox: SandboxConfig,
    /// Isolated agents' git worktrees.
    #[serde(default)]
    pub worktrees: WorktreesConfig,
    /// Several nodes serving one fleet on a shared `store`.
    #[serde(default)]
    pub cluster: ClusterConfig,
    /// The file this was read from, for error messages (not a config key).
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

/// `[providers.NAME]`: one model endpoint.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Wire format: `"openai"` (Chat Completions: OpenAI, Ollama, vLLM, llama.cpp,
    /// OpenRouter, …) or `"anthropic"` (Messages API). Required for new providers.
    pub kind: Option<ProviderKind>,
    /// Base URL, e.g. `http://localhost:11434/v1` (requests go to
    /// `{base_url}/chat/completions` or `{base_url}/v1/messages`). Required for new
    /// providers. For the built-ins, `ANTHROPIC_BASE_URL`/`OPENAI_BASE_URL` win over it.
    pub base_url: Option<String>,
    /// NAME of the environment variable that holds the API key (never the key itself).
    /// When given, the variable must be set to use the provider's models. Leave it out
    /// for servers without authentication: then no key header is sent.
    /// Built-ins: `ANTHROPIC_API_KEY`, `OPENAI_API_KEY`.
    pub api_key_env: Option<String>,
    /// `kind = "openai"` only: send the output limit as `"max_completion_tokens"`
    /// (OpenAI's current name; the default for api.openai.com and Azure) or
    /// `"max_tokens"` (what most compatible servers understand; the default elsewhere).
    pub max_tokens_field: Option<MaxTokensField>,
    /// Extra HTTP headers sent with every request (e.g. OpenRouter's `HTTP-Referer`).
    /// Not for secrets: use `api_key_env`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Most model calls in flight to this provider at once, across the fleet
    /// (default: no limit), so a rate-limited account is not hammered.
    pub max_concurrent_requests: Option<usize>,
    /// Sampling temperature sent with every request. Default: none is sent (current
    /// Anthropic models reject sampling parameters with a 400).
    pub temperature: Option<f64>,
    /// CLI kinds only: the program (default `claude` / `codex` on `PATH`).
    pub command: Option<String>,
    /// CLI kinds only: extra arguments given to every session (codex: `-c` overrides).
    #[serde(default)]
    pub args: Vec<String>,
    /// CLI kinds only: variables set for the CLI (besides its own credentials, which
    /// it gets from flotilla's environment). Values are not secret-checked: prefer the
    /// CLI's own login or key variable.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// `kind = "claude-code"` only: an MCP config file the sessions load (with
    /// `--strict-mcp-config`, nothing else is loaded).
    pub mcp_config: Option<PathBuf>,
}

impl ProviderKind {
    /// The CLI of a CLI kind.
    pub fn cli(self) -> Option<crate::cli::CliKind> {
        match self {
            ProviderKind::ClaudeCode => Some(crate::cli::CliKind::ClaudeCode),
            ProviderKind::Codex => Some(crate::cli::CliKind::Codex),
            ProviderKind::Gemini => Some(crate::cli::CliKind::Gemini),
            ProviderKind::Anthropic | ProviderKind::OpenAi => None,
        }
    }
}

impl From<crate::cli::CliKind> for ProviderKind {
    fn from(kind: crate::cli::CliKind) -> Self {
        match kind {
            crate::cli::CliKind::ClaudeCode => ProviderKind::ClaudeCode,
            crate::cli::CliKind::Codex => ProviderKind::Codex,
            crate::cli::CliKind::Gemini => ProviderKind::Gemini,
        }
    }
}

/// A provider's wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum ProviderKind {
    /// Anthropic Messages API.
    #[serde(rename = "anthropic")]
    Anthropic,
    /// OpenAI Chat Completions.
    #[serde(rename = "openai")]
    OpenAi,
    /// Headless Claude Code sessions (`claude -p`).
    #[serde(rename = "claude-code")]
    ClaudeCode,
    /// Codex sessions (`codex exec`).
    #[serde(rename = "codex")]
    Codex,
    /// Gemini CLI sessions (`gemini -p`).
    #[serde(rename = "gemini-cli")]
    Gemini,
}

/// `[retry]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Retries after the first attempt (default 5).
    pub max_retries: Option<u32>,
    /// Backoff before the first retry, doubled each retry (default 1000).
    pub initial_backoff_ms: Option<u64>,
    /// Longest backoff (default 30000). A server's `retry-after` is honoured up to
    /// the larger of this and 60 s.
    pub max_backoff_ms: Option<u64>,
    /// Deadline of one model call, request sent to answer read (default 600).
    pub request_timeout_s: Option<u64>,
    /// Longest silence while an answer's body arrives (default 60; 0: no limit).
    pub idle_timeout_s: Option<u64>,
    /// Longest wait for an answer to start once the request is sent (default 60; 0: no
    /// limit); a miss is retried like any timeout.
    pub first_byte_timeout_s: Option<u64>,
    /// How many timed-out calls are retried (default 1), within `max_retries`.
    pub timeout_retries: Option<u32>,
}

/// `[limits]`: the fleet's guard rails. Flags and environment variables
/// (`--max-cost-usd`, `FLOTILLA_MAX_COST_USD`, …) override these.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Fleet-wide spend cap in USD over every priced model call.
    pub max_cost_usd: Option<f64>,
    /// Fleet-wide cap on input + output tokens of every model call.
    pub max_tokens: Option<u64>,
    /// Agents running a command at once (default 16; 0 means no limit).
    pub max_running: Option<usize>,
    /// Seconds a command may go without progress before it fails as stalled (default 600).
    pub stall_timeout_s: Option<u64>,
    /// Seconds an agent's question may wait before it is answered for it with "no
    /// answer; proceed on your best judgement" (default: it waits for the answer).
    pub ask_timeout_s: Option<u64>,
    /// Consecutive failed calls to a provider that open its circuit (default 5).
    pub circuit_failures: Option<u32>,
    /// Seconds an open circuit holds calls before one probe call (default 30).
    pub circuit_open_s: Option<u64>,
    /// Directories agents' work directories may lie under, besides the server's working
    /// directory and the system temp directory (relative paths: from the server's
    /// working directory).
    #[serde(default)]
    pub workdir_roots: Vec<PathBuf>,
}

/// `[sandbox]`: defaults for agents created without `sandbox` / `network` (a role's
/// front matter comes first).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxConfig {
    /// `"workspace-write"` (default), `"read-only"` or `"off"`.
    pub mode: Option<crate::sandbox::SandboxMode>,
    /// Whether commands may reach the network (default false).
    pub network: Option<bool>,
    /// The operator's consent to agents (or roles) asking for `sandbox: "off"`
    /// (default false: refused). Also `--allow-sandbox-off`.
    #[serde(default)]
    pub allow_off: bool,
    /// Directories `workspace-write` commands may also write (e.g. a shared build
    /// cache); relative paths from the server's working directory; each must exist.
    #[serde(default)]
    pub writable_roots: Vec<PathBuf>,
    /// Variables commands get besides the minimal set (PATH, HOME, LANG, LC_*, TERM,
    /// USER, SHELL, TMPDIR, …); the only way a credential-like name gets through.
    #[serde(default)]
    pub env: Vec<String>,
}

/// `[worktrees]`: isolated agents' git worktrees.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorktreesConfig {
    /// Largest file (MiB) counted in `diff_stat` and committed when the agent is
    /// deleted (default 10); larger ones are moved to a kept directory instead.
    pub max_file_mib: Option<u64>,
}

/// `[cluster]`: several nodes serving one fleet on a shared store.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Seconds an agent's lease lasts without renewal (default 15, at least 2).
    pub lease_s: Option<u64>,
    /// Agents running a command at once across every node (default: no fleet-wide cap).
    pub max_running: Option<usize>,
    /// The git remote worktree agents go through, so any node can run them: a URL, a
    /// remote of the repository flotilla runs in by name, or `""` for none. Default:
    /// that repository's own remote (read when the node starts).
    pub remote: Option<String>,
}

/// A config file that cannot be used. Messages name the file and what to change.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {} does not exist: check the path, or create the file", path.display())]
    NotFound { path: PathBuf },
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Not valid TOML, an unknown key, or a value of the wrong type. `origin` is
    /// `config file PATH` (or just `config` for text not read from a file).
    #[error("invalid {origin}: {message}")]
    Parse { origin: String, message: String },
    /// Valid TOML whose values do not make sense together.
    #[error("invalid {origin}: {message}")]
    Invalid { origin: String, message: String },
}

impl Config {
    /// Where the config file lives when no path is given:
    /// `dirs::config_dir()/flotilla/config.toml` (`~/.config/flotilla/config.toml` on Linux).
    pub fn default_path() -> Option<PathBuf> {
        dirs::config_dir().map(|dir| dir.join("flotilla").join("config.toml"))
    }

    /// Load from `path` if given (an error if it is missing), else from
    /// [`Config::default_path`] if that file exists, else the defaults.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let path = match path {
            Some(path) => path.to_path_buf(),
            None => match Self::default_path() {
                Some(path) if path.is_file() => path,
                _ => return Ok(Config::default()),
            },
        };
        let text = std::fs::read_to_string(&path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                ConfigError::NotFound { path: path.clone() }
            } else {
                ConfigError::Read {
                    path: path.clone(),
                    source,
                }
            }
        })?;
        let mut config = parse(&text, &format!("config file {}", path.display()))?;
        config.source = Some(path);
        Ok(config)
    }

    /// Parse config text (no file involved).
    pub fn from_toml_str(s: &str) -> Result<Config, ConfigError> {
        parse(s, "config")
    }

    /// The variables no command may see: every provider's `api_key_env`, plus
    /// `ANTHROPIC_API_KEY`, `OPENAI_API_KEY` and `FLOTILLA_TOKEN`.
    pub fn secret_vars(&self) -> Vec<String> {
        let mut vars: Vec<String> = crate::sandbox::ALWAYS_SECRET
            .iter()
            .map(|v| v.to_string())
            .collect();
        for provider in self.providers.values() {
            if let Some(var) = provider.api_key_env.as_deref().map(str::trim)
                && !var.is_empty()
                && !vars.iter().any(|v| v == var)
            {
                vars.push(var.to_string());
            }
        }
        vars
    }

    /// How to name this config in messages: `config file PATH`, or `config`.
    pub(crate) fn origin(&self) -> String {
        self.source.as_ref().map_or_else(
            || "config".to_string(),
            |p| format!("config file {}", p.display()),
        )
    }
}

fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse {
        origin: origin.to_string(),
        message: e.to_string().trim_end().to_string(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const FULL: &str = r#"
default_model = "fast"
max_output_tokens = 4096
store = "postgres://flotilla@db/fleet"

[aliases]
fast = "ollama:qwen3:8b"

[providers.ollama]
kind = "openai"
base_url = "http://localhost:11434/v1/"
api_key_env = "OLLAMA_API_KEY"
max_tokens_field = "max_tokens"
headers = { "X-Title" = "flotilla" }

[providers.anthropic]
base_url = "https://proxy.example/anthropic"

[prices."ollama:qwen3:8b"]
input = 0.0
output = 0.5

[retry]
max_retries = 2
initial_backoff_ms = 10
max_backoff_ms = 100

[cluster]
lease_s = 5
max_running = 40
remote = "origin"
"#;

    #[test]
    fn parses_every_key() {
        let config = Config::from_toml_str(FULL).unwrap();
        assert_eq!(config.default_model.as_deref(), Some("fast"));
        assert_eq!(config.max_output_tokens, Some(4096));
        assert_eq!(
            config.store.as_deref(),
            Some("postgres://flotilla@db/fleet")
        );
        assert_eq!(config.cluster.lease_s, Some(5));
        assert_eq!(config.cluster.max_running, Some(40));
        assert_eq!(config.cluster.remote.as_deref(), Some("origin"));
        assert_eq!(config.aliases["fast"], "ollama:qwen3:8b");
        let ollama = &config.providers["ollama"];
        assert_eq!(ollama.kind, Some(ProviderKind::OpenAi));
        assert_eq!(
            ollama.base_url.as_deref(),
            Some("http://localhost:11434/v1/")
        );
        assert_eq!(ollama.api_key_env.as_deref(), Some("OLLAMA_API_KEY"));
        assert_eq!(ollama.max_tokens_field, Some(MaxTokensField::MaxTokens));
        assert_eq!(ollama.headers["X-Title"], "flotilla");
        assert_eq!(config.providers["anthropic"].kind, None);
        assert_eq!(
            config.prices["ollama:qwen3:8b"],
            Price {
                input: 0.0,
                output: 0.5
            }
        );
        assert_eq!(config.retry.max_retries, Some(2));
        assert_eq!(config.retry.max_backoff_ms, Some(100));
    }

    #[test]
    fn sandbox_section_parses_and_checks_the_mode() {
        let config =
            Config::from_toml_str("[sandbox]\nmode = \"read-only\"\nnetwork = true\n").unwrap();
        assert_eq!(
            config.sandbox.mode,
            Some(crate::sandbox::SandboxMode::ReadOnly)
        );
        assert_eq!(config.sandbox.network, Some(true));
        let err = Config::from_toml_str("[sandbox]\nmode = \"strict\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("workspace-write"), "{err}");
    }

    #[test]
    fn secret_vars_cover_every_configured_key() {
        let config = Config::from_toml_str(
            "[providers.a]\nkind = \"openai\"\nbase_url = \"http://x\"\napi_key_env = \"A_KEY\"\n\
             [providers.b]\nkind = \"openai\"\nbase_url = \"http://y\"\napi_key_env = \"OPENAI_API_KEY\"\n",
        )
        .unwrap();
        assert_eq!(
            config.secret_vars(),
            [
                "ANTHROPIC_API_KEY",
                "OPENAI_API_KEY",
                "FLOTILLA_TOKEN",
                "A_KEY"
            ]
        );
    }

    #[test]
    fn empty_text_is_the_defaults() {
        let config = Config::from_toml_str("").unwrap();
        assert!(config.default_model.is_none() && config.providers.is_empty());
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::from_toml_str("defualt_model = \"sonnet\"").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("defualt_model"), "{text}");
        assert!(
            text.contains("default_model"),
            "should list the expected keys: {text}"
        );

        let err = Config::from_toml_str("[providers.x]\nkind = \"openai\"\napi_key = \"sk\"")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("api_key") && err.contains("api_key_env"),
            "{err}"
        );

        let err = Config::from_toml_str("[retry]\nmax_retry = 3")
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_retry"), "{err}");
    }

    #[test]
    fn bad_kind_is_explained() {
        let err = Config::from_toml_str("[providers.x]\nkind = \"gemini\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("gemini"), "{err}");
        assert!(err.contains("anthropic") && err.contains("openai"), "{err}");
    }

    #[test]
    fn load_names_the_missing_file() {
        let err = Config::load(Some(Path::new("/nonexistent/flotilla.toml"))).unwrap_err();
        assert!(matches!(err, ConfigError::NotFound { .. }));
        assert!(err.to_string().contains("/nonexistent/flotilla.toml"));
    }

    #[test]
    fn load_reads_a_file_and_names_it_in_errors() {
        let dir = std::env::temp_dir().join(format!("flotilla-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.toml");
        std::fs::write(&good, "max_output_tokens = 100").unwrap();
        let config = Config::load(Some(&good)).unwrap();
        assert_eq!(config.max_output_tokens, Some(100));
        assert_eq!(config.source.as_deref(), Some(good.as_path()));

        let bad = dir.join("bad.toml");
        std::fs::write(&bad, "max_output_tokens = \"lots\"").unwrap();
        let err = Config::load(Some(&bad)).unwrap_err().to_string();
        assert!(
            err.contains("bad.toml") && err.contains("max_output_tokens"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
