//! The `flotilla` binary: parse flags, set up logging on stderr (stdout is the MCP
//! channel), build the registry, serve MCP over stdio, and on stdin EOF, SIGINT or
//! SIGTERM cancel every agent and wait for them, so no process is left behind.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use rmcp::ServiceExt;
use tracing_subscriber::EnvFilter;

use flotilla::config::{Config, Models};
use flotilla::prompts::{ORCHESTRATOR, Prompts};
use flotilla::registry::Registry;
use flotilla::server::FleetServer;

/// An MCP server (stdio) that gives an orchestrator LLM a fleet of working sub-agents.
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
    /// Print the orchestrator sub-agent definition (for .claude/agents/) and exit.
    #[arg(long)]
    print_orchestrator: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
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

    let config = Config::load(cli.config.as_deref())?;
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

    let registry = Arc::new(Registry::new(models, prompts, workdir));
    let service = FleetServer::new(registry.clone())
        .serve(rmcp::transport::stdio())
        .await
        .context("MCP initialisation over stdio failed")?;
    let cancel = service.cancellation_token();

    tokio::select! {
        r = service.waiting() => {
            if let Err(e) = r { tracing::warn!("MCP service ended: {e}"); }
            tracing::info!("client closed the connection");
        }
        _ = shutdown_signal() => {
            tracing::info!("signal received; shutting down");
            cancel.cancel();
        }
    }
    registry.shutdown(Duration::from_secs(10)).await;
    tracing::info!("all agents stopped");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("cannot install signal handlers; relying on stdin EOF");
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
