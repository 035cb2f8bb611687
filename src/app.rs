//! The server's wiring, from resolved [`Settings`] to a running fleet and back: install
//! the command launcher, open the store, build the fleet and the registry, restore what
//! the store holds, serve MCP (stdio, or Streamable HTTP), and on stdin EOF, SIGINT or
//! SIGTERM cancel every agent and wait for them, so no process is left behind.

use crate::worktree::Pinned;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rmcp::ServiceExt;

use crate::cluster::{Cluster, ClusterOptions};
use crate::dashboard::Dashboard;
use crate::fleet::Fleet;
use crate::http::{self, auth::Token};
use crate::registry::Registry;
use crate::server::FleetServer;
use crate::settings::{Serve, Settings, Storage};
use crate::store::{AgentLog, Store};

/// Run the server until its client goes away or a signal comes.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    // OTLP traces when OTEL_EXPORTER_OTLP_ENDPOINT is set; flushed after the agents stop.
    let traces = crate::telemetry::init();
    // Defence in depth: a process of the same user cannot read our memory or
    // environment through /proc (commands run in their own PID namespace anyway).
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        tracing::debug!("cannot mark the process non-dumpable: {e}");
    }
    install_launcher(&settings).await?;
    log_start(&settings);
    // HTTP: bind and check the token rules before anything starts, so a busy port or
    // a missing token fails at once, before restored agents resume.
    let bound = bind(&settings).await?;
    let (store, logs) = match &settings.store {
        Some(url) => open_shared_store(url, &settings.cluster).await?,
        None => open_store(&settings.storage).await?,
    };
    let (listener, token) = match bound {
        None => (None, None),
        Some((l, env_token)) => (
            Some(l),
            Some(Token::choose(env_token, data_dir(&settings))?),
        ),
    };
    let resume = settings.resume;
    let serve = settings.serve.clone();
    let joining = cluster_options(&settings, listener.as_ref());
    let pinned = pin_remote(&settings).await?;
    let registry = Arc::new(registry(settings, store.clone(), pinned));
    // Subscribed to the bus before any agent is restored: metrics miss nothing.
    let dashboard = Dashboard::start(registry.clone());
    let cluster = match joining {
        Some(mut options) if store.shared().is_some() => {
            options.roots = registry.workdir_roots().to_vec();
            Some(Cluster::start(registry.clone(), logs, options).await?)
        }
        _ => {
            restore(&registry, logs, resume);
            None
        }
    };
    let server = FleetServer::new(registry.clone()).with_cluster(cluster.clone());
    if let Some(c) = &cluster {
        c.set_executor(server.executor());
        dashboard.set_cluster(c.clone(), server.clone());
    }
    registry.start_scheduler();
    let stdio = match (listener, token) {
        (Some(listener), Some(token)) if matches!(serve, Serve::Http(_)) => {
            let stop = shutdown_signal();
            listener
                .serve(Some(server), dashboard.clone(), token, stop)
                .await;
            None
        }
        (Some(listener), Some(token)) => {
            Some(stdio_with_dashboard(server, &dashboard, listener, token).await?)
        }
        _ => Some(serve_stdio(server).await?),
    };
    registry.shutdown(Duration::from_secs(10)).await;
    // After the agents stopped: another node takes their commands over at once.
    if let Some(c) = cluster {
        c.shutdown().await;
    }
    dashboard.shutdown().await;
    if let Some(stdio) = stdio {
        stdio.finish(Duration::from_secs(1)).await;
    }
    store.close().await;
    traces.shutdown(Duration::from_secs(3)).await;
    tracing::info!("all agents stopped; store closed");
    Ok(())
}

/// Start `run_command` through flotilla's own binary, and say what confinement holds.
async fn install_launcher(settings: &Settings) -> anyhow::Result<()> {
    let launcher = std::env::current_exe().context("cannot find the flotilla binary")?;
    let installed = crate::sandbox::install(launcher, settings.sandbox_setup()).await;
    match installed.isolation {
        crate::sandbox::Isolation::Namespaces => {
            tracing::debug!("run_command: PID and mount namespaces with a private /proc")
        }
        crate::sandbox::Isolation::Unavailable(why) => tracing::warn!(
            "run_command: process isolation is unavailable ({why}); commands can see other processes through /proc, including their environments, and detached processes may outlive flotilla"
        ),
    }
    if let Err(why) = &installed.sandbox {
        tracing::warn!(
            "run_command: the sandbox is unavailable ({why}); every agent's commands run as with sandbox \"off\": they can write wherever the user running flotilla can, and reach the network"
        );
    }
    Ok(())
}

fn log_start(settings: &Settings) {
    let workdir = settings.workdir.display();
    match settings.models.default_model() {
        Some(m) => match settings.models.default_cli() {
            Some((_, source)) => tracing::info!(
                default_model = %m,
                workdir = %workdir,
                "flotilla starting; the default model is the {m} CLI ({source}, no API key is set)"
            ),
            None => tracing::info!(default_model = %m, workdir = %workdir, "flotilla starting"),
        },
        None => tracing::warn!(
            "no default model: set FLOTILLA_MODEL, default_model in the config, or ANTHROPIC_API_KEY / OPENAI_API_KEY, or install and log in to Claude Code or Codex; until then create_agent needs `model`"
        ),
    }
    let unpriced = settings.models.unpriced();
    if settings.limits.caps.max_cost_usd.is_some() && !unpriced.is_empty() {
        tracing::warn!(
            "models with no known price: {}: max_cost_usd cannot see their spend (only max_tokens can); add their prices under [prices] in the config",
            unpriced.join(", ")
        );
    }
}

/// The MCP listener (with the dashboard on it) or, beside stdio, the dashboard's own,
/// with the token `FLOTILLA_TOKEN` gives, if any.
async fn bind(settings: &Settings) -> anyhow::Result<Option<(http::Listener, Option<Token>)>> {
    let addr = match &settings.serve {
        Serve::Stdio => return Ok(None),
        Serve::Http(addr) | Serve::StdioWithDashboard(addr) => addr,
    };
    let listener =
        http::Listener::bind(addr, &settings.allow_hosts, &settings.allow_origins).await?;
    let env_token = Token::from_env()?;
    listener.check_token_rules(env_token.is_some(), settings.ephemeral())?;
    Ok(Some((listener, env_token)))
}

fn data_dir(settings: &Settings) -> Option<&std::path::Path> {
    match &settings.storage {
        Storage::Dir(dir) => Some(dir),
        Storage::Ephemeral { .. } => None,
    }
}

/// Open the store (or keep the fleet in memory) and read back every agent's log.
async fn open_store(storage: &Storage) -> anyhow::Result<(Arc<Store>, Vec<AgentLog>)> {
    let dir = match storage {
        Storage::Ephemeral { worktrees } => {
            tracing::info!(worktrees = %worktrees.display(), "ephemeral fleet: agents' git worktrees go to a temp directory");
            return Ok((Arc::new(Store::in_memory()?), Vec::new()));
        }
        Storage::Dir(dir) => dir.clone(),
    };
    // Opening may wait (briefly) for a server that is still exiting: off the runtime.
    let (store, logs) = tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || Store::open(&dir)
    })
    .await
    .context("the store opener stopped")??;
    tracing::info!(store = %dir.join(crate::store::DB_FILE).display(), agents = logs.len(), "fleet store opened");
    Ok((Arc::new(store), logs))
}

/// Open the PostgreSQL store several nodes share, as this node.
async fn open_shared_store(
    url: &str,
    cluster: &crate::settings::ClusterSettings,
) -> anyhow::Result<(Arc<Store>, Vec<AgentLog>)> {
    let options = crate::store::PgOptions {
        node: cluster.node.clone(),
        lease: cluster.lease,
    };
    let (store, logs) = Store::open_postgres(url, options).await?;
    tracing::info!(
        "fleet store opened: postgres {} as node {}, agents = {}",
        crate::store::postgres::redact(url),
        cluster.node,
        logs.len()
    );
    Ok((Arc::new(store), logs))
}

/// The fleet context and the registry over it.
fn registry(settings: Settings, store: Arc<Store>, pinned: Option<Pinned>) -> Registry {
    let secrets = settings.models.secret_values();
    let fleet = Fleet::new(
        store.clone(),
        settings.limits.options(store.retired_spend(), secrets),
    );
    // The log and the span exporter redact with the fleet's secrets from now on.
    crate::plan::redact::install(fleet.redactor.clone());
    let worktrees: PathBuf = match &settings.storage {
        Storage::Ephemeral { worktrees } => worktrees.clone(),
        Storage::Dir(dir) => dir.join("worktrees"),
    };
    let ephemeral = settings.ephemeral();
    if let Some(mib) = settings.config.worktrees.max_file_mib {
        crate::worktree::set_max_file_mib(mib);
    }
    let in_fleet = settings.store.is_some();
    let registry = Registry::new(settings.models, settings.prompts, settings.workdir, fleet)
        .with_workdir_roots(settings.workdir_roots)
        .with_worktrees_root(worktrees)
        .with_ephemeral_worktrees(ephemeral)
        .with_sandbox_default(settings.sandbox, settings.sandbox_allow_off);
    // Worktree agents go through a git remote only in a fleet of several nodes.
    if in_fleet {
        registry.with_git_remote(pinned)
    } else {
        registry
    }
}

/// In a fleet: the git remote worktree agents go through (`[cluster] remote`), read
/// now, before any agent runs.
async fn pin_remote(settings: &Settings) -> anyhow::Result<Option<Pinned>> {
    if settings.store.is_none() {
        return Ok(None);
    }
    let pinned = settings
        .cluster
        .remote
        .pin(&settings.workdir)
        .await
        .map_err(|e| anyhow::anyhow!("invalid config: {e}"))?;
    match &pinned {
        Some(p) => {
            tracing::info!(remote = %p.url, only_repository = ?p.repo, "worktree agents go through a git remote ([cluster] remote)")
        }
        None => tracing::info!(
            "worktree agents work in their repository on a node serving it (no git remote: [cluster] remote)"
        ),
    }
    Ok(pinned)
}

/// How this node joins a fleet of several nodes (a shared PostgreSQL store).
fn cluster_options(
    settings: &Settings,
    listener: Option<&http::Listener>,
) -> Option<ClusterOptions> {
    settings.store.as_ref()?;
    Some(ClusterOptions {
        // The registry's, once it is built.
        roots: Vec::new(),
        url: listener
            .filter(|_| matches!(settings.serve, Serve::Http(_)))
            .map(|l| format!("{}mcp", l.dashboard_url())),
        max_running: settings.cluster.max_running,
        resume: settings.resume,
    })
}

fn restore(registry: &Registry, logs: Vec<AgentLog>, resume: bool) {
    if logs.is_empty() {
        return;
    }
    let report = registry.restore(logs, resume);
    tracing::info!(
        agents = report.agents,
        resumed = report.resumed,
        not_resumed = report.not_resumed,
        cancelled = report.cancelled,
        "fleet restored"
    );
}

/// MCP on stdio, with the dashboard on its own listener until stdio ends.
async fn stdio_with_dashboard(
    server: FleetServer,
    dashboard: &Arc<Dashboard>,
    listener: http::Listener,
    token: Token,
) -> anyhow::Result<crate::stdio::Tasks> {
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
    let stdio = serve_stdio(server.with_dashboard(url)).await;
    stop.cancel();
    if served.await.is_err() {
        tracing::warn!("the dashboard listener stopped abnormally");
    }
    stdio
}

/// Serve one client on stdin/stdout until it closes the connection or a signal comes.
/// Returns the stdio filter's tasks, to finish once the agents are stopped.
///
/// On a signal, calls in flight get [`http::DRAIN_GRACE`] to answer first (a
/// `wait_for_agents` answers at once, timed out, with a note) before the session ends.
/// A client that goes away before `initialize` is one log line, not an error.
async fn serve_stdio(server: FleetServer) -> anyhow::Result<crate::stdio::Tasks> {
    let stop = shutdown_signal();
    tokio::pin!(stop);
    crate::stdio::greet_if_terminal();
    let stopping = tokio_util::sync::CancellationToken::new();
    let server = server.with_stopping(stopping.clone());
    // A line filter in front of rmcp answers malformed JSON-RPC (see crate::stdio).
    let (transport, stdio) = crate::stdio::filtered();
    let service = tokio::select! {
        served = server.serve(transport) => match served {
            Ok(service) => service,
            Err(rmcp::service::ServerInitializeError::ConnectionClosed(_)) => {
                tracing::info!("the client closed stdin before sending `initialize`; nothing to serve");
                return Ok(stdio);
            }
            Err(e) => anyhow::bail!("MCP initialisation over stdio failed: {e}"),
        },
        _ = &mut stop => {
            tracing::info!("signal received before a client connected; shutting down");
            return Ok(stdio);
        }
    };
    let cancel = service.cancellation_token();
    // Kept alive while calls drain: dropping it would cancel the session at once.
    let waiting = service.waiting();
    tokio::pin!(waiting);
    tokio::select! {
        r = &mut waiting => {
            if let Err(e) = r { tracing::warn!("MCP service ended: {e}"); }
            tracing::info!("client closed the connection");
        }
        _ = &mut stop => {
            tracing::info!("signal received; letting calls in flight answer, then shutting down");
            stopping.cancel();
            if !stdio.in_flight.drain(http::DRAIN_GRACE).await {
                tracing::warn!("calls still running after {:?}; ending them", http::DRAIN_GRACE);
            }
            cancel.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(1), waiting).await;
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
