//! Why a command failed: one [`Failure`] for every way a command can end in an error,
//! produced where it happens (the worker, the budget, the dependency scheduler) and read
//! by everything that decides or reports on it.
//!
//! - [`Failure::retryable`] is the retry policy of agents created with `retries`: a
//!   failure that would happen again the same way (a spent budget, a store that cannot
//!   save) is not worth another attempt.
//! - [`Failure::kind`] is a stable, low-cardinality [`FailureKind`]: the traces'
//!   `error.type`, the label of `/metrics`' failure counter, and what the store keeps
//!   beside the message of a failed command.
//! - `Display` is the message the orchestrator reads (`last_error`, `isError` text,
//!   events). Its wording is contract (`budget:`, `stalled:`, `escalated after N
//!   attempts:` …), but no decision depends on it any more.
//!
//! A leaf: it imports nothing from the rest of the crate, so every layer can use it.

mod budget;

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use budget::{BudgetExhausted, Cap, Spender};

/// How a command failed.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum Failure {
    /// This agent's or the fleet's spend cap is reached.
    #[error(transparent)]
    Budget(#[from] BudgetExhausted),
    /// A model call or a tool made no progress for the fleet's stall timeout.
    #[error(
        "stalled: no progress for {limit_s}s while waiting on {waiting_on}; it was stopped (and its processes killed). Command the agent again to retry, or raise --stall-timeout-s / [limits] stall_timeout_s"
    )]
    Stalled {
        limit_s: u64,
        /// What it waited for: "a model answer from …", "the tool …".
        waiting_on: String,
    },
    /// `max_steps` model calls without a final answer.
    #[error(
        "stopped after max_steps ({max_steps}) model calls without a final answer; command the agent to continue, or create it with a higher max_steps"
    )]
    MaxSteps { max_steps: u32 },
    /// `max_steps` model calls without an answer that passes the `output_schema`.
    #[error(
        "the answer never satisfied the output_schema within max_steps ({max_steps}) model calls; last problem: {last}"
    )]
    OutputSchema {
        max_steps: u32,
        /// Why the last answer did not validate.
        last: String,
    },
    /// The provider refused or failed the call for good (retries, if any, spent).
    /// A CLI session (Claude Code, Codex) failed: it could not start, exited with an
    /// error, printed what is not its JSON stream, or reported an error itself.
    #[error("{cli} session failed: {message}")]
    Session { cli: String, message: String },
    #[error("model call failed: {0}")]
    ModelCall(
        /// The provider's message.
        String,
    ),
    /// A tool call could not be journaled, so it was not run.
    #[error(
        "the tool call {tool} was not run because it could not be saved ({error}); the server may be stopping"
    )]
    Store { tool: String, error: String },
    /// The agent's git worktree is gone (the message says where its work is).
    #[error("{0}")]
    WorkspaceMissing(String),
    /// The worker panicked running the command.
    #[error("internal error: the agent's worker panicked (see the server log)")]
    Panicked,
    /// Every attempt of an agent with `retries` failed; `last` is the last one's.
    #[error("escalated after {attempts} attempts: {last}")]
    Escalated { attempts: u32, last: Box<Failure> },
    /// A dependency failed, was cancelled or was deleted, so the task never started
    /// (its command ends `cancelled`, with this as its error).
    #[error("cancelled before it started: its dependency `{name}` {fate}")]
    Dependency { name: String, fate: DependencyFate },
}

/// What happened to a dependency that blocks its dependent for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DependencyFate {
    Deleted,
    /// It failed; its `last_error`, if any.
    Failed(Option<String>),
    /// It was cancelled; its `last_error`, if any.
    Cancelled(Option<String>),
}

impl std::fmt::Display for DependencyFate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (what, error) = match self {
            Self::Deleted => return f.write_str("was deleted"),
            Self::Failed(error) => ("failed", error),
            Self::Cancelled(error) => ("was cancelled", error),
        };
        f.write_str(what)?;
        match error {
            Some(e) => write!(f, ": {e}"),
            None => Ok(()),
        }
    }
}

/// What kind of failure, as a stable snake_case word (`error.type` in traces, `kind`
/// in metrics, `failure` in the store's `finished` event).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    Budget,
    Stalled,
    MaxSteps,
    OutputSchema,
    ModelCallFailed,
    SessionFailed,
    Store,
    WorkspaceMissing,
    Internal,
    Escalated,
    Dependency,
    /// A kind this build does not know (a log written by a newer one).
    #[serde(rename = "_OTHER", other)]
    Other,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Budget => "budget",
            Self::Stalled => "stalled",
            Self::MaxSteps => "max_steps",
            Self::OutputSchema => "output_schema",
            Self::ModelCallFailed => "model_call_failed",
            Self::SessionFailed => "session_failed",
            Self::Store => "store",
            Self::WorkspaceMissing => "workspace_missing",
            Self::Internal => "internal",
            Self::Escalated => "escalated",
            Self::Dependency => "dependency",
            Self::Other => "_OTHER",
        }
    }
}

impl Failure {
    pub fn kind(&self) -> FailureKind {
        match self {
            Self::Budget(_) => FailureKind::Budget,
            Self::Stalled { .. } => FailureKind::Stalled,
            Self::MaxSteps { .. } => FailureKind::MaxSteps,
            Self::OutputSchema { .. } => FailureKind::OutputSchema,
            Self::ModelCall(_) => FailureKind::ModelCallFailed,
            Self::Session { .. } => FailureKind::SessionFailed,
            Self::Store { .. } => FailureKind::Store,
            Self::WorkspaceMissing(_) => FailureKind::WorkspaceMissing,
            Self::Panicked => FailureKind::Internal,
            Self::Escalated { .. } => FailureKind::Escalated,
            Self::Dependency { .. } => FailureKind::Dependency,
        }
    }

    /// Whether another attempt could go differently. A spent budget or a store that
    /// cannot save would fail again the same way; an escalation or a dependency's
    /// failure is already final.
    pub fn retryable(&self) -> bool {
        match self {
            Self::Budget(_)
            | Self::Store { .. }
            | Self::Escalated { .. }
            | Self::Dependency { .. } => false,
            Self::Stalled { .. }
            | Self::MaxSteps { .. }
            | Self::OutputSchema { .. }
            | Self::ModelCall(_)
            | Self::Session { .. }
            | Self::WorkspaceMissing(_)
            | Self::Panicked => true,
        }
    }
}

#[cfg(test)]
mod tests;
