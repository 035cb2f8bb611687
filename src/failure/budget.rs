//! [`BudgetExhausted`]: a spend cap that is reached, and the `budget: …` message that
//! names the cap, what was spent and how to go on.

use thiserror::Error;

/// A spend cap that is reached: the command cannot make another model call.
#[derive(Debug, Clone, PartialEq, Error)]
#[error("budget: {} {cap} {}", whose(owner), how_to_raise(owner, cap.key()))]
pub struct BudgetExhausted {
    pub owner: Spender,
    pub cap: Cap,
}

/// Whose cap it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spender {
    /// `--max-cost-usd` / `--max-tokens`, over the whole fleet.
    Fleet,
    /// One agent's `max_cost_usd` / `max_tokens`; its name.
    Agent(String),
}

/// Which cap, and what was spent against it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cap {
    CostUsd { cap: f64, spent: f64 },
    Tokens { cap: u64, spent: u64 },
}

impl Cap {
    /// The cap's name in flags, config and `create_agent`.
    pub fn key(&self) -> &'static str {
        match self {
            Self::CostUsd { .. } => "max_cost_usd",
            Self::Tokens { .. } => "max_tokens",
        }
    }
}

impl std::fmt::Display for Cap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::CostUsd { cap, spent } => write!(
                f,
                "max_cost_usd cap of ${cap} is reached (${spent:.4} spent)."
            ),
            Self::Tokens { cap, spent } => write!(
                f,
                "max_tokens cap of {cap} tokens is reached ({spent} input + output tokens used)."
            ),
        }
    }
}

fn whose(owner: &Spender) -> String {
    match owner {
        Spender::Fleet => "the fleet's".to_string(),
        Spender::Agent(name) => format!("agent `{name}`'s"),
    }
}

fn how_to_raise(owner: &Spender, key: &str) -> String {
    match owner {
        Spender::Fleet => format!(
            "Raise it with --{} / FLOTILLA_{} / [limits] {key} and restart the server (spend so far is kept), or wait for a person to do so.",
            key.replace('_', "-"),
            key.to_ascii_uppercase()
        ),
        Spender::Agent(_) => format!(
            "An agent's caps are fixed when it is created: to go on, create a new agent with a higher {key} (this agent's files stay)."
        ),
    }
}
