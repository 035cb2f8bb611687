//! The server's settings, resolved once: the command line and the environment (through
//! [`Cli`]) over the config file, checked together so a bad value is one error that
//! names it. Everything downstream takes a [`Settings`] and never reads a flag, a
//! variable or the config file again.

mod cluster;

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Parser;

use crate::config::{Config, Models};
use crate::fleet::limits::{GuardRails, Settled};
use crate::prompts::Prompts;
use crate::sandbox::{Sandbox, SandboxMode};
pub use cluster::ClusterSettings;

/// An MCP server (stdio, or Streamable HTTP with --listen) that gives an orchestrator LLM a fleet of working sub-agents.
#[derive(Debug, Parser)]
#[command(name = "flotilla", version, about)]
pub struct Cli {
    /// TOML config file (providers, aliases, prices, retries). Default:
    /// the user's config directory, e.g. ~/.config/flotilla/config.toml, if it exists.
    #[arg(long, env = "FLOTILLA_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Directory whose worker.md and agents/NAME.md override or add to the embedded prompts.
    #[arg(long, env = "FLOTILLA_PROMPTS_DIR", value_name = "DIR")]
    pub prompts_dir: Option<PathBuf>,
    /// Default work directory for agents. Default: the current directory.
    #[arg(long, value_name = "DIR")]
    pub workdir: Option<PathBuf>,
    /// Directory of the fleet's store (SQLite). Default: one per project under the
    /// user's data directory, e.g. ~/.local/share/flotilla/fleets/<project>-<hash>/.
    #[arg(long, env = "FLOTILLA_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The fleet's store shared by several nodes: a PostgreSQL URL
    /// (postgres://user:password@host/db). Default: SQLite in the data directory.
    #[arg(long, env = "FLOTILLA_STORE", value_name = "URL")]
    pub store: Option<String>,
    /// This node's name in a shared store ([A-Za-z0-9._-], at most 64). Default: the
    /// host name.
    #[arg(long, env = "FLOTILLA_NODE", value_name = "NAME")]
    pub node: Option<String>,
    /// After a restart, do not resume commands that were running: mark them failed
    /// (and cancel queued ones) instead.
    #[arg(long)]
    pub no_resume: bool,
    /// Keep nothing on disk: the fleet ends with the process (overrides --data-dir).
    #[arg(long)]
    pub ephemeral: bool,
    /// Print the orchestrator sub-agent definition (for .claude/agents/) and exit.
    #[arg(long)]
    pub print_orchestrator: bool,
    /// Fleet-wide spend cap in USD (priced models). Overrides [limits] max_cost_usd.
    #[arg(long, env = "FLOTILLA_MAX_COST_USD", value_name = "USD")]
    pub max_cost_usd: Option<f64>,
    /// Fleet-wide cap on input + output tokens. Overrides [limits] max_tokens.
    #[arg(long, env = "FLOTILLA_MAX_TOKENS", value_name = "N")]
    pub max_tokens: Option<u64>,
    /// Agents running a command at once; 0 = no limit. Default 16, or [limits] max_running.
    #[arg(long, env = "FLOTILLA_MAX_RUNNING", value_name = "N")]
    pub max_running: Option<usize>,
    /// A command with no progress this long fails as stalled. Default 600, or
    /// [limits] stall_timeout_s.
    #[arg(long, env = "FLOTILLA_STALL_TIMEOUT_S", value_name = "SECONDS")]
    pub stall_timeout_s: Option<u64>,
    /// An agent's question unanswered this long is answered for it ("no answer;
    /// proceed on your best judgement"). Default: it waits; or [limits] ask_timeout_s.
    #[arg(long, env = "FLOTILLA_ASK_TIMEOUT_S", value_name = "SECONDS")]
    pub ask_timeout_s: Option<u64>,
    /// Serve MCP over Streamable HTTP at http://ADDR/mcp instead of stdio, e.g.
    /// 127.0.0.1:7777 (port 0 picks a free one). Clients need the bearer token:
    /// FLOTILLA_TOKEN, or the `token` file generated in the data directory.
    #[arg(long, env = "FLOTILLA_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,
    /// In stdio mode: also serve the dashboard (and /metrics) at http://ADDR/, e.g.
    /// 127.0.0.1:7778, with the same token rules as --listen. With --listen the
    /// dashboard is on that listener already.
    #[arg(
        long,
        env = "FLOTILLA_DASHBOARD",
        value_name = "ADDR",
        conflicts_with = "listen"
    )]
    pub dashboard: Option<String>,
    /// With --listen or --dashboard: also accept requests whose Origin is ORIGIN
    /// (scheme://host[:port]); repeatable. The server's own origin is always allowed.
    #[arg(long, value_name = "ORIGIN")]
    pub allow_origin: Vec<String>,
    /// With --listen or --dashboard: also accept requests whose Host names HOST (e.g.
    /// the name of a reverse proxy that passes Host through); repeatable. Loopback
    /// names and the listening IP are always allowed.
    #[arg(long, value_name = "HOST")]
    pub allow_host: Vec<String>,
    /// Let create_agent and roles ask for `sandbox: "off"` (commands unconfined).
    /// Without it (or [sandbox] allow_off = true) such agents are refused.
    #[arg(long)]
    pub allow_sandbox_off: bool,
}

/// Where the fleet is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storage {
    /// Nothing on disk (`--ephemeral`): worktrees go to this temp directory.
    Ephemeral { worktrees: PathBuf },
    /// The store (and the token, and worktrees) in this data directory.
    Dir(PathBuf),
}

/// How clients reach the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Serve {
    /// MCP on stdin/stdout only.
    Stdio,
    /// MCP on stdin/stdout, and the dashboard on its own listener at this address.
    StdioWithDashboard(String),
    /// MCP over Streamable HTTP at this address (the dashboard on the same listener).
    Http(String),
}

/// Everything the server runs with, resolved once at start.
pub struct Settings {
    /// The config file as read (for what has no resolved form of its own).
    pub config: Config,
    /// The canonical default work directory (`--workdir`, else the current directory).
    pub workdir: PathBuf,
    /// Canonical roots agents' work directories may lie under (`[limits] workdir_roots`).
    pub workdir_roots: Vec<PathBuf>,
    /// Canonical extra directories `workspace-write` commands may write.
    pub writable_roots: Vec<PathBuf>,
    /// The sandbox of agents created without one (and without a role that sets one).
    pub sandbox: Sandbox,
    /// Agents and roles may ask for `sandbox: "off"` (`--allow-sandbox-off`, or
    /// `[sandbox] allow_off`).
    pub sandbox_allow_off: bool,
    /// The variables no command may see (provider keys, the token).
    pub secret_vars: Vec<String>,
    pub models: Models,
    pub prompts: Prompts,
    /// The guard rails: flags over `[limits]`.
    pub limits: Settled,
    pub storage: Storage,
    /// The PostgreSQL URL of a store shared with other nodes (`--store`); `None`:
    /// SQLite in the data directory.
    pub store: Option<String>,
    /// This node and the `[cluster]` settings.
    pub cluster: ClusterSettings,
    /// Resume commands that were running when the server stopped.
    pub resume: bool,
    pub serve: Serve,
    pub allow_hosts: Vec<String>,
    pub allow_origins: Vec<String>,
}

impl Settings {
    /// Resolve the command line over the config file and the environment (`env` looks
    /// a variable up: the process environment in the binary, a closure in tests).
    pub fn resolve(cli: Cli, env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<Settings> {
        let config = Config::load(cli.config.as_deref())?;
        let workdir = work_directory(cli.workdir.as_deref())?;
        let writable_roots = crate::workdirs::load_roots(&config.sandbox.writable_roots, &workdir)
            .map_err(|e| anyhow::anyhow!("invalid config: [sandbox] {e}"))?;
        let models = Models::new(&config, env)?;
        let prompts = Prompts::load(cli.prompts_dir.as_deref())?;
        let limits = GuardRails {
            max_cost_usd: cli.max_cost_usd,
            max_tokens: cli.max_tokens,
            max_running: cli.max_running,
            stall_timeout_s: cli.stall_timeout_s,
            ask_timeout_s: cli.ask_timeout_s,
        }
        .over(&config)?;
        let serve = match (cli.listen, cli.dashboard) {
            (Some(addr), _) => Serve::Http(addr),
            (None, Some(addr)) => Serve::StdioWithDashboard(addr),
            (None, None) => Serve::Stdio,
        };
        if serve == Serve::Stdio && !(cli.allow_host.is_empty() && cli.allow_origin.is_empty()) {
            anyhow::bail!(
                "--allow-host and --allow-origin apply to a listener: add --listen ADDR (or --dashboard ADDR)"
            );
        }
        let storage = storage(cli.ephemeral, cli.data_dir, &workdir)?;
        let store = cluster::store_url(cli.store.or(config.store.clone()), cli.ephemeral)?;
        let cluster = ClusterSettings::resolve(cli.node, &config.cluster)?;
        let workdir_roots = crate::workdirs::load_roots(&config.limits.workdir_roots, &workdir)
            .map_err(|e| anyhow::anyhow!("invalid config: {e}"))?;
        let sandbox = Sandbox {
            mode: config.sandbox.mode.unwrap_or(SandboxMode::WorkspaceWrite),
            network: config.sandbox.network.unwrap_or(false),
        };
        let allow_off = config.sandbox.allow_off;
        Ok(Settings {
            secret_vars: config.secret_vars(),
            config,
            workdir,
            workdir_roots,
            writable_roots,
            sandbox,
            sandbox_allow_off: cli.allow_sandbox_off || allow_off,
            models,
            prompts,
            limits,
            storage,
            store,
            cluster,
            resume: !cli.no_resume,
            serve,
            allow_hosts: cli.allow_host,
            allow_origins: cli.allow_origin,
        })
    }

    /// What the command launcher needs: the secrets it withholds, where commands may
    /// also write, the variables they also get, what they must not see (the data
    /// directory, the config file) and where agents' private temp directories live.
    pub fn sandbox_setup(&self) -> crate::sandbox::Setup {
        let (data, temp_root) = match &self.storage {
            Storage::Dir(dir) => (Some(dir.clone()), dir.join("tmp")),
            Storage::Ephemeral { worktrees } => {
                (None, worktrees.parent().unwrap_or(worktrees).join("tmp"))
            }
        };
        crate::sandbox::Setup {
            secret_vars: self.secret_vars.clone(),
            writable_roots: self.writable_roots.clone(),
            env: self.config.sandbox.env.clone(),
            hidden: data.into_iter().chain(self.config.source.clone()).collect(),
            temp_root,
        }
    }

    pub fn ephemeral(&self) -> bool {
        matches!(self.storage, Storage::Ephemeral { .. })
    }
}

/// `--workdir`, else the current directory; canonical.
fn work_directory(flag: Option<&Path>) -> anyhow::Result<PathBuf> {
    let workdir = match flag {
        Some(w) => w.to_path_buf(),
        None => std::env::current_dir().context("cannot read the current directory")?,
    };
    workdir
        .canonicalize()
        .with_context(|| format!("work directory {} is not usable", workdir.display()))
}

/// `--ephemeral`, else `--data-dir`, else the default data directory for `workdir`.
fn storage(ephemeral: bool, data_dir: Option<PathBuf>, workdir: &Path) -> anyhow::Result<Storage> {
    if ephemeral {
        let worktrees = std::env::temp_dir()
            .join(format!("flotilla-{}", std::process::id()))
            .join("worktrees");
        return Ok(Storage::Ephemeral { worktrees });
    }
    match data_dir {
        Some(dir) => Ok(Storage::Dir(dir)),
        None => crate::store::location::default_dir(workdir)
            .map(Storage::Dir)
            .context(
                "cannot find the user's data directory; pass --data-dir or set FLOTILLA_DATA_DIR",
            ),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        Cli::parse_from(std::iter::once("flotilla").chain(args.iter().copied()))
    }

    #[test]
    fn flags_resolve_once_into_settings() {
        let dir = tempfile::tempdir().unwrap();
        let workdir = dir.path().to_str().unwrap();
        let s = Settings::resolve(
            cli(&["--workdir", workdir, "--ephemeral", "--max-running", "3"]),
            &|_| None,
        )
        .unwrap();
        assert_eq!(s.workdir, dir.path().canonicalize().unwrap());
        assert!(s.ephemeral());
        assert_eq!(s.limits.max_running, 3);
        assert_eq!(s.sandbox.mode, SandboxMode::WorkspaceWrite);
        assert_eq!(s.serve, Serve::Stdio);
        assert!(s.resume);
        assert!(s.secret_vars.iter().any(|v| v == "ANTHROPIC_API_KEY"));
    }

    #[test]
    fn allow_host_without_a_listener_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let e = Settings::resolve(
            cli(&[
                "--workdir",
                dir.path().to_str().unwrap(),
                "--ephemeral",
                "--allow-host",
                "example",
            ]),
            &|_| None,
        )
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("add --listen ADDR"), "{e}");
    }
}
