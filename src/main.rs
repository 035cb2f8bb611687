//! The `flotilla` binary: parse flags, set up logging on stderr (stdout is the MCP
//! channel), build the registry, serve MCP over stdio (or, with `--listen`, over
//! Streamable HTTP: see `flotilla::http`), and on stdin EOF, SIGINT or SIGTERM cancel
//! every agent and wait for them, so no process is left behind.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use rmcp::ServiceExt;
use tracing_subscriber::EnvFilter;

use flotilla::config::{Config, Models};
use flotilla::fleet::Fleet;
use flotilla::fleet::limits::GuardRails;
use flotilla::http::{self, auth::Token};
use flotilla::prompts::{ORCHESTRATOR, Prompts};
use flotilla::registry::Registry;
use flotilla::server::FleetServer;
use flotilla::store::{Store, location};

/// An MCP server (stdio, or Streamable HTTP with --listen) that gives an orchestrator LLM a fleet of working sub-agents.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// TOML config file (providers, aliases, prices, retries). Default:
    /// the user's config directory, e.g. ~/.config/flotilla/config.toml, if it exists.
    #[arg(long, env = "FLOTILLA_CONFIG", value_name = "PATH")]
    config: Option<PathBuf>,
    /// Directory whose worker.md and agents/NAME.md override or add to the embedded prompts.
    #[arg(long, env = "FLOTILLA_PROMPTS_DIR", value_name = "DIR")]
    prompts_dir: Option<PathBuf>,
    /// Default work directory for agents. Default: the current directory.
    #[arg(long, value_name = "DIR")]
    workdir: Option<PathBuf>,
    /// Directory of the fleet's store (SQLite). Default: one per project under the
    /// user's data directory, e.g. ~/.local/share/flotilla/fleets/<project>-<hash>/.
    #[arg(long, env = "FLOTILLA_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// After a restart, do not resume commands that were running: mark them failed
    /// (and cancel queued ones) instead.
    #[arg(long)]
    no_resume: bool,
    /// Keep nothing on disk: the fleet ends with the process (overrides --data-dir).
    #[arg(long)]
    ephemeral: bool,
    /// Print the orchestrator sub-agent definition (for .claude/agents/) and exit.
    #[arg(long)]
    print_orchestrator: bool,
    /// Fleet-wide spend cap in USD (priced models). Overrides [limits] max_cost_usd.
    #[arg(long, env = "FLOTILLA_MAX_COST_USD", value_name = "USD")]
    max_cost_usd: Option<f64>,
    /// Fleet-wide cap on input + output tokens. Overrides [limits] max_tokens.
    #[arg(long, env = "FLOTILLA_MAX_TOKENS", value_name = "N")]
    max_tokens: Option<u64>,
    /// Agents running a command at once; 0 = no limit. Default 16, or [limits] max_running.
    #[arg(long, env = "FLOTILLA_MAX_RUNNING", value_name = "N")]
    max_running: Option<usize>,
    /// A command with no progress this long fails as stalled. Default 600, or
    /// [limits] stall_timeout_s.
    #[arg(long, env = "FLOTILLA_STALL_TIMEOUT_S", value_name = "SECONDS")]
    stall_timeout_s: Option<u64>,
    /// Serve MCP over Streamable HTTP at http://ADDR/mcp instead of stdio, e.g.
    /// 127.0.0.1:7777 (port 0 picks a free one). Clients need the bearer token:
    /// FLOTILLA_TOKEN, or the `token` file generated in the data directory.
    #[arg(long, env = "FLOTILLA_LISTEN", value_name = "ADDR")]
    listen: Option<String>,
    /// In stdio mode: also serve the dashboard (and /metrics) at http://ADDR/, e.g.
    /// 127.0.0.1:7778, with the same token rules as --listen. With --listen the
    /// dashboard is on that listener already.
    #[arg(
        long,
        env = "FLOTILLA_DASHBOARD",
        value_name = "ADDR",
        conflicts_with = "listen"
    )]
    dashboard: Option<String>,
    /// With --listen or --dashboard: also accept requests whose Origin is ORIGIN
    /// (scheme://host[:port]); repeatable. The server's own origin is always allowed.
    #[arg(long, value_name = "ORIGIN")]
    allow_origin: Vec<String>,
    /// With --listen or --dashboard: also accept requests whose Host names HOST (e.g.
    /// the name of a reverse proxy that passes Host through); repeatable. Loopback
    /// names and the listening IP are always allowed.
    #[arg(long, value_name = "HOST")]
    allow_host: Vec<String>,
}

fn main() -> anyhow::Result<()> {
    // `flotilla __exec` / `__init`: the run_command launcher, before any thread starts.
    if let Some(code) = flotilla::sandbox::dispatch() {
        std::process::exit(code);
    }
    let runtime = tokio::runtime::Runtime::new().context("cannot start the tokio runtime")?;
    let result = runtime.block_on(run(Cli::parse()));
    // The stdin reader is a blocking thread that may never return (a client that
    // keeps the pipe open while we stop on a signal): do not wait for it.
    runtime.shutdown_timeout(Duration::from_millis(500));
    result
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if cli.print_orchestrator {
        use std::io::Write;
        std::io::stdout().write_all(ORCHESTRATOR.as_bytes())?;
        return Ok(());
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("flotilla=info,rmcp=warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    // OTLP traces when OTEL_EXPORTER_OTLP_ENDPOINT is set; flushed after the agents stop.
    let traces = flotilla::telemetry::init();

    let config = Config::load(cli.config.as_deref())?;
    // Defence in depth: a process of the same user cannot read our memory or
    // environment through /proc (commands run in their own PID namespace anyway).
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        tracing::debug!("cannot mark the process non-dumpable: {e}");
    }
    let launcher = std::env::current_exe().context("cannot find the flotilla binary")?;
    let writable_roots = flotilla::workdirs::load_roots(
        &config.sandbox.writable_roots,
        &match &cli.workdir {
            Some(w) => w.clone(),
            None => std::env::current_dir().context("cannot read the current directory")?,
        },
    )
    .map_err(|e| anyhow::anyhow!("invalid config: [sandbox] {e}"))?;
    let installed = flotilla::sandbox::install(
        launcher,
        flotilla::sandbox::secret_vars(&config),
        writable_roots,
    )
    .await;
    match installed.isolation {
        flotilla::sandbox::Isolation::Namespaces => {
            tracing::debug!("run_command: PID and mount namespaces with a private /proc")
        }
        flotilla::sandbox::Isolation::Unavailable(why) => tracing::warn!(
            "run_command: process isolation is unavailable ({why}); commands can see other processes through /proc, including their environments, and detached processes may outlive flotilla"
        ),
    }
    if let Err(why) = &installed.sandbox {
        tracing::warn!(
            "run_command: the sandbox is unavailable ({why}); every agent's commands run as with sandbox \"off\": they can write wherever the user running flotilla can, and reach the network"
        );
    }
    let models = Models::new(&config, &|k| std::env::var(k).ok())?;
    let prompts = Prompts::load(cli.prompts_dir.as_deref())?;
    let workdir = match cli.workdir {
        Some(w) => w,
        None => std::env::current_dir().context("cannot read the current directory")?,
    };
    let workdir = workdir
        .canonicalize()
        .with_context(|| format!("work directory {} is not usable", workdir.display()))?;
    match models.default_model() {
        Some(m) => {
            tracing::info!(default_model = %m, workdir = %workdir.display(), "flotilla starting")
        }
        None => tracing::warn!(
            "no default model: set FLOTILLA_MODEL, default_model in the config, or ANTHROPIC_API_KEY / OPENAI_API_KEY; until then create_agent needs `model`"
        ),
    }

    let limits = GuardRails {
        max_cost_usd: cli.max_cost_usd,
        max_tokens: cli.max_tokens,
        max_running: cli.max_running,
        stall_timeout_s: cli.stall_timeout_s,
    }
    .over(&config)?;

    // HTTP: bind and check the token rules before anything starts, so a busy port or
    // a missing token fails at once, before restored agents resume. Either the MCP
    // listener (with the dashboard on it) or, beside stdio, the dashboard's own.
    let serves_mcp = cli.listen.is_some();
    let listener = match cli.listen.as_ref().or(cli.dashboard.as_ref()) {
        None => {
            if !cli.allow_host.is_empty() || !cli.allow_origin.is_empty() {
                anyhow::bail!(
                    "--allow-host and --allow-origin apply to a listener: add --listen ADDR (or --dashboard ADDR)"
                );
            }
            None
        }
        Some(addr) => Some(http::Listener::bind(addr, &cli.allow_host, &cli.allow_origin).await?),
    };
    let env_token = match &listener {
        None => None,
        Some(l) => {
            let token = Token::from_env()?;
            l.check_token_rules(token.is_some(), cli.ephemeral)?;
            token
        }
    };

    let (store, logs, data_dir, worktrees) = if cli.ephemeral {
        let worktrees = std::env::temp_dir()
            .join(format!("flotilla-{}", std::process::id()))
            .join("worktrees");
        tracing::info!(worktrees = %worktrees.display(), "ephemeral fleet: agents' git worktrees go to a temp directory");
        (Store::in_memory()?, Vec::new(), None, worktrees)
    } else {
        let dir = match cli.data_dir {
            Some(d) => d,
            None => location::default_dir(&workdir).context(
                "cannot find the user's data directory; pass --data-dir or set FLOTILLA_DATA_DIR",
            )?,
        };
        // Opening may wait (briefly) for a server that is still exiting: off the runtime.
        let opened =
            tokio::task::spawn_blocking(move || Store::open(&dir).map(|opened| (opened, dir)))
                .await
                .context("the store opener stopped")??;
        let ((store, logs), dir) = opened;
        tracing::info!(store = %dir.join(flotilla::store::DB_FILE).display(), agents = logs.len(), "fleet store opened");
        let worktrees = dir.join("worktrees");
        (store, logs, Some(dir), worktrees)
    };
    let token = match &listener {
        None => None,
        Some(_) => Some(Token::choose(env_token, data_dir.as_deref())?),
    };
    let store = Arc::new(store);
    let secrets = models.secret_values();
    let fleet = Fleet::new(
        store.clone(),
        limits.options(&config, store.retired_spend(), secrets),
    );
    let roots = flotilla::workdirs::load_roots(&config.limits.workdir_roots, &workdir)
        .map_err(|e| anyhow::anyhow!("invalid config: {e}"))?;
    let sandbox = flotilla::sandbox::Sandbox {
        mode: config
            .sandbox
            .mode
            .unwrap_or(flotilla::sandbox::SandboxMode::WorkspaceWrite),
        network: config.sandbox.network.unwrap_or(false),
    };
    let registry = Arc::new(
        Registry::new(models, prompts, workdir, fleet)
            .with_workdir_roots(roots)
            .with_worktrees_root(worktrees)
            .with_ephemeral_worktrees(cli.ephemeral)
            .with_sandbox_default(sandbox),
    );
    // Subscribed to the bus before any agent is restored: metrics miss nothing.
    let dashboard = flotilla::dashboard::Dashboard::start(registry.clone());
    if !logs.is_empty() {
        let report = registry.restore(logs, !cli.no_resume);
        tracing::info!(
            agents = report.agents,
            resumed = report.resumed,
            not_resumed = report.not_resumed,
            cancelled = report.cancelled,
            "fleet restored"
        );
    }
    registry.start_scheduler();
    let stdio = match (listener, token) {
        (Some(listener), Some(token)) if serves_mcp => {
            let stop = shutdown_signal();
            listener
                .serve(Some(registry.clone()), dashboard.clone(), token, stop)
                .await;
            None
        }
        (Some(listener), Some(token)) => {
            // stdio, with the dashboard on its own listener until stdio ends.
            let url = listener.dashboard_url();
            let stop = tokio_util::sync::CancellationToken::new();
            let served = tokio::spawn({
                let (dashboard, stop) = (dashboard.clone(), stop.clone());
                async move {
                    listener
                        .serve(None, dashboard, token, stop.cancelled_owned())
                        .await
                }
            });
            let stdio = serve_stdio(FleetServer::new(registry.clone()).with_dashboard(url)).await;
            stop.cancel();
            if served.await.is_err() {
                tracing::warn!("the dashboard listener stopped abnormally");
            }
            Some(stdio?)
        }
        _ => Some(serve_stdio(FleetServer::new(registry.clone())).await?),
    };
    registry.shutdown(Duration::from_secs(10)).await;
    dashboard.shutdown().await;
    if let Some(stdio) = stdio {
        stdio.finish(Duration::from_secs(1)).await;
    }
    store.close();
    traces.shutdown(Duration::from_secs(3)).await;
    tracing::info!("all agents stopped; store closed");
    Ok(())
}

/// Serve one client on stdin/stdout until it closes the connection or a signal comes.
/// Returns the stdio filter's tasks, to finish once the agents are stopped.
async fn serve_stdio(server: FleetServer) -> anyhow::Result<flotilla::stdio::Tasks> {
    let stop = shutdown_signal();
    // A line filter in front of rmcp answers malformed JSON-RPC (see flotilla::stdio).
    let (transport, stdio) = flotilla::stdio::filtered();
    let service = server
        .serve(transport)
        .await
        .context("MCP initialisation over stdio failed")?;
    let cancel = service.cancellation_token();
    tokio::select! {
        r = service.waiting() => {
            if let Err(e) = r { tracing::warn!("MCP service ended: {e}"); }
            tracing::info!("client closed the connection");
        }
        _ = stop => {
            tracing::info!("signal received; shutting down");
            cancel.cancel();
        }
    }
    Ok(stdio)
}

/// Resolves on SIGTERM or SIGINT. The handlers are installed when this is called,
/// not when the future is first polled: a signal that comes right after start-up
/// (e.g. just after the HTTP address is logged) is not lost to the default action.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        let (Ok(mut term), Ok(mut int)) = handlers else {
            tracing::warn!("cannot install signal handlers; relying on stdin EOF");
            std::future::pending::<()>().await;
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
}
