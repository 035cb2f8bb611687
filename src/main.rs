//! The `flotilla` binary: the launcher's entry point for `run_command`, else parse the
//! command line, log to stderr (stdout is the MCP channel), resolve the settings once
//! and run the server (`flotilla::app`).

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tracing_subscriber::EnvFilter;

use flotilla::settings::{Cli, Settings};

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One plain line (the causes joined), never a backtrace: what went wrong
            // and, in the message, what to do.
            eprintln!("flotilla: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    // `flotilla __exec` / `__init`: the run_command launcher, before any thread starts.
    if let Some(code) = flotilla::sandbox::dispatch() {
        std::process::exit(code);
    }
    let cli = Cli::parse();
    if cli.print_orchestrator {
        std::io::stdout().write_all(flotilla::prompts::ORCHESTRATOR.as_bytes())?;
        return Ok(());
    }
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("flotilla=info,rmcp=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(flotilla::RedactedStderr)
        .with_ansi(false)
        .init();
    let runtime = tokio::runtime::Runtime::new().context("cannot start the tokio runtime")?;
    let env = |k: &str| std::env::var(k).ok();
    let result =
        runtime.block_on(async { flotilla::app::run(Settings::resolve(cli, &env)?).await });
    // The stdin reader is a blocking thread that may never return (a client that
    // keeps the pipe open while we stop on a signal): do not wait for it.
    runtime.shutdown_timeout(Duration::from_millis(500));
    result
}
