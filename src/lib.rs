//! flotilla: an MCP server that gives an orchestrator LLM a fleet of working
//! sub-agents.
//!
//! A tour, from the outside in:
//! - [`server`]: the MCP tools (rmcp router). Owns no state; an adapter that calls
//!   the registry and shapes compact JSON results. [`http`] serves them over Streamable HTTP to many
//!   clients at once (auth, DNS-rebinding guard, limits); on stdio, [`stdio`] filters
//!   malformed JSON-RPC in front of it.
//! - [`registry`]: the fleet — agents by id in a `DashMap`, names resolved to ids,
//!   every task tracked for shutdown. It owns every policy (may this work start,
//!   pause and resume, totals) and turns an agent's spec into running settings, at
//!   creation and when a restart replays the store.
//! - [`fleet`]: what every agent shares — store, event bus, budget, run slots,
//!   provider gates (in-flight caps, circuit breakers), stall timeout.
//! - [`agent`]: one agent — a handle with an inbox and a `watch`ed state, and the
//!   worker task that owns the conversation and runs the agent loop.
//! - [`provider`]: model calls (Anthropic Messages, OpenAI Chat Completions) behind
//!   one trait, with retries; [`config`] resolves models, aliases and keys;
//!   [`pricing`] turns tokens into dollars.
//! - [`tools`]: the sub-agent tools, jailed to the agent's work directory;
//!   [`sandbox`] starts `run_command` in its own PID and mount namespaces, confined
//!   by Landlock and a network namespace; [`worktree`] gives isolated agents a git
//!   worktree of their own.
//! - [`store`]: the durable fleet — an append-only event log per agent in SQLite (or
//!   a shared PostgreSQL), written off the hot path by one writer; the [`registry`]
//!   replays it on restart.
//! - [`cluster`]: one fleet over several nodes sharing a PostgreSQL store — leases
//!   with fencing tokens, mirrors of the agents other nodes run, calls forwarded to
//!   the node that runs an agent, placement, takeover when a node dies.
//! - [`dashboard`]: the live web view of the fleet and `/metrics`, fed by the bus.
//! - [`prompts`]: the embedded worker prompt, role profiles and orchestrator definition.
//! - [`failure`]: why a command failed — one type that says whether it is worth
//!   retrying and what kind it is (traces, metrics), and displays the message.
//! - [`model`]: the provider-neutral conversation types everything above shares.
//! - [`telemetry`]: OpenTelemetry traces (GenAI conventions) when an OTLP endpoint is set.

// No function over 100 lines (clippy.toml sets the threshold).
#![deny(clippy::too_many_lines)]

pub(crate) mod agent;
pub mod app;
pub(crate) mod cli;
pub(crate) mod cluster;
pub(crate) mod config;
pub(crate) mod dashboard;
pub(crate) mod failure;
pub mod fleet;
pub(crate) mod http;
pub(crate) mod model;
pub(crate) mod plan;
pub(crate) mod pricing;
pub mod prompts;
pub(crate) mod provider;
pub(crate) mod registry;
pub mod sandbox;
pub(crate) mod server;
pub mod settings;
pub(crate) mod status;
pub(crate) mod stdio;
pub(crate) mod store;
pub(crate) mod sync;
pub(crate) mod telemetry;
pub(crate) mod text;
pub mod tools;
pub(crate) mod workdirs;
pub(crate) mod worktree;

/// The log's writer (stderr, every line redacted), for the binary's subscriber.
pub use telemetry::redacted::Stderr as RedactedStderr;
