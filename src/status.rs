//! The statuses of agents and commands: the contract's vocabulary (`running`,
//! `queued`, … and `done`, `failed`, …, and who answered an agent's question), shared by the agent, the store's events, the
//! fleet's totals and every result. A leaf: it imports nothing of flotilla.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How one command stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CommandStatus {
    /// Waiting behind another command.
    Queued,
    Running,
    /// Finished with a final answer.
    Done,
    Failed,
    Cancelled,
}

impl CommandStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }
}

/// Where an agent is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AgentStatus {
    /// Working on a command (calling the model or a tool).
    Running,
    /// Has a command to run, waiting for a run slot (`max_running`).
    Queued,
    /// Created with `depends_on`: its task starts when its dependencies are done.
    Waiting,
    /// Held by `pause_agents`; resumes where it stopped.
    Paused,
    /// Its last command finished; ready for the next.
    Idle,
    /// Its last command ended in an error (`last_error` says which).
    Failed,
    /// Its last command was interrupted.
    Cancelled,
    /// Asked the orchestrator a question (`question`); `command_agent` answers it.
    #[serde(rename = "needs_input")]
    NeedsInput,
}

impl AgentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Queued => "queued",
            Self::Waiting => "waiting",
            Self::Paused => "paused",
            Self::Idle => "idle",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::NeedsInput => "needs_input",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Running,
            Self::Queued,
            Self::Waiting,
            Self::Paused,
            Self::Idle,
            Self::Failed,
            Self::Cancelled,
            Self::NeedsInput,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

impl From<CommandStatus> for AgentStatus {
    /// The agent's status once a command has ended (or while it runs).
    fn from(c: CommandStatus) -> Self {
        use CommandStatus as C;
        match c {
            C::Queued | C::Running => Self::Running,
            C::Done => Self::Idle,
            C::Failed => Self::Failed,
            C::Cancelled => Self::Cancelled,
        }
    }
}

/// Who answered a question.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Answerer {
    /// `command_agent` on the agent.
    Orchestrator,
    /// A human, on the dashboard.
    Dashboard,
    /// An MCP Tasks client (`tasks/update`).
    Client,
    /// Nobody within `ask_timeout_s`.
    Timeout,
}

impl Answerer {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Orchestrator => "orchestrator",
            Self::Dashboard => "dashboard",
            Self::Client => "client",
            Self::Timeout => "timeout",
        }
    }
}
