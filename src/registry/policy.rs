//! The fleet's policies, one place for every transport (the MCP tools and the
//! dashboard call the same methods): may this work start (the fleet's budget, the
//! agent's caps, its output schema, its dependencies), commanding an agent, holding
//! it (pause and resume, acknowledged once on disk), and the budget row of the
//! fleet's totals.

use std::sync::Arc;

use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;

use super::{Registry, RegistryError};
use crate::agent::AgentHandle;
use crate::agent::state::AgentStatus;
use crate::fleet::budget::{Owner, exhausted};
use crate::plan::checkpoint::Checkpoint;
use crate::pricing::round_cost;
use crate::store::Ack;

/// A command accepted by [`Registry::command`].
pub struct Commanded {
    pub handle: Arc<AgentHandle>,
    /// Its 1-based index among the agent's commands.
    pub index: u32,
    /// Commands ahead of it.
    pub waiting: u32,
    /// What the orchestrator should know: the command runs but is not saved.
    pub warning: Option<String>,
    /// The task was the answer to the agent's question (`index` is the command it
    /// was asked in, which goes on).
    pub answered: bool,
}

/// What [`Registry::hold`] did, by agent name.
#[derive(Debug, Default)]
pub struct Held {
    /// Agents whose state changed (paused, or let go).
    pub changed: Vec<String>,
    /// Agents that already were in that state.
    pub unchanged: Vec<String>,
}

/// `list_agents` totals: the fleet's caps and what it has spent against them.
#[derive(Debug, Serialize, JsonSchema)]
pub struct BudgetRow {
    pub max_cost_usd: Option<f64>,
    pub cost_usd: f64,
    pub max_tokens: Option<u64>,
    /// Input + output tokens.
    pub tokens: u64,
}

impl Registry {
    /// Give an agent its next instruction (queued, or first with `interrupt`), once
    /// the fleet's budget, its own caps, its output schema and its dependencies allow
    /// it. Returns once the command is on disk; when it could not be saved the command
    /// still runs, and the warning says so.
    pub async fn command(
        &self,
        agent: &str,
        task: String,
        interrupt: bool,
        output_schema: Option<Value>,
    ) -> Result<Commanded, RegistryError> {
        if task.trim().is_empty() {
            return Err(RegistryError::Invalid(
                "`task` is empty: say what the agent should do next".into(),
            ));
        }
        let handle = self.get(agent)?;
        if !interrupt
            && let Some(answered) = self
                .answer_if_asking(&handle, &task, output_schema.is_some())
                .await?
        {
            return Ok(answered);
        }
        self.may_start(&handle, output_schema.as_ref())?;
        let queued = handle
            .enqueue(task, interrupt, output_schema)
            .map_err(RegistryError::Invalid)?;
        // Acknowledge only what is on disk: a command is never lost to a crash. If the
        // store fails the command still runs (it is queued): say so, but do not
        // report an error an orchestrator would answer by sending it again.
        let warning = unsaved(queued.ack, |e| match e {
            Some(e) => format!(
                "the command is queued and will run, but could not be saved ({e}); it would be lost if the server restarted"
            ),
            None => "the server is stopping; the command may not run".into(),
        })
        .await;
        Ok(Commanded {
            handle,
            index: queued.index,
            waiting: queued.waiting,
            warning,
            answered: false,
        })
    }

    /// May this agent start more work: the fleet's budget and its own caps have room,
    /// the output schema is one, and it is not waiting for its dependencies.
    fn may_start(
        &self,
        handle: &AgentHandle,
        output_schema: Option<&Value>,
    ) -> Result<(), RegistryError> {
        self.fleet_may_start()?;
        if let Some(e) = exhausted(
            Owner::Agent(handle.name()),
            &handle.settings.caps,
            handle.peek(|s| s.spent()),
        ) {
            return Err(RegistryError::Invalid(e.to_string()));
        }
        if let Some(schema) = output_schema {
            check_output_schema(schema)?;
        }
        if handle.deferred().is_some() {
            return Err(RegistryError::Invalid(format!(
                "agent `{}` is waiting for its dependencies ({}); its task starts when they are done. Command it after that, or delete it",
                handle.name(),
                handle.settings.depends_on.join(", ")
            )));
        }
        Ok(())
    }

    /// Whether the fleet's budget has room for new work (creating an agent with a
    /// task, commanding one).
    pub(crate) fn fleet_may_start(&self) -> Result<(), RegistryError> {
        self.fleet()
            .budget
            .check()
            .map_err(|e| RegistryError::Invalid(e.to_string()))
    }

    /// The status of an agent that has just been given work: `paused` when held,
    /// `queued` when it must wait for a run slot, else `running`.
    pub fn start_status(&self, h: &AgentHandle) -> AgentStatus {
        let status = h.peek(|s| s.status);
        let slots = &self.fleet().slots;
        if h.is_paused() {
            AgentStatus::Paused
        } else if status == AgentStatus::Queued
            || (status != AgentStatus::Running && slots.max() > 0 && slots.running() >= slots.max())
        {
            AgentStatus::Queued
        } else {
            AgentStatus::Running
        }
    }

    /// A warning when a dollar cap is set (the agent's or the fleet's) and the agent's
    /// model has no price.
    pub fn unpriced_warning(&self, h: &AgentHandle) -> Option<String> {
        let dollar_cap = h.settings.caps.max_cost_usd.is_some()
            || self.fleet().budget.caps().max_cost_usd.is_some();
        (dollar_cap && !h.settings.model.priced()).then(|| {
            format!(
                "model {} has no known price: a max_cost_usd cap cannot see its spend (only max_tokens can); add its price under [prices] in the config",
                h.settings.model.id
            )
        })
    }

    /// Pause (`pause`) or let go the agents named (default: the whole fleet). Every
    /// move is made, then each is awaited on disk; the first that could not be saved
    /// is the error (the moves stay in effect).
    pub async fn hold(
        &self,
        agents: Option<&[String]>,
        pause: bool,
    ) -> Result<Held, RegistryError> {
        let handles = self.select(agents)?;
        let mut held = Held::default();
        let mut acks = Vec::new();
        for h in &handles {
            let moved = if pause { h.pause() } else { h.resume() };
            match moved {
                Some(ack) => {
                    held.changed.push(h.name().to_string());
                    acks.extend(ack);
                }
                None => held.unchanged.push(h.name().to_string()),
            }
        }
        for ack in acks {
            saved(ack).await?;
        }
        tracing::info!(
            pause,
            changed = held.changed.len(),
            "agents {}",
            if pause { "paused" } else { "resumed" }
        );
        Ok(held)
    }

    /// The fleet's caps and spend; `None` when no cap is set.
    pub fn budget_row(&self) -> Option<BudgetRow> {
        let budget = &self.fleet().budget;
        budget.caps().is_set().then(|| {
            let spent = budget.spent();
            BudgetRow {
                max_cost_usd: budget.caps().max_cost_usd,
                cost_usd: round_cost(spent.cost_usd),
                max_tokens: budget.caps().max_tokens,
                tokens: spent.tokens,
            }
        })
    }
}

/// Wait until a pause or resume is on disk.
async fn saved(ack: Ack) -> Result<(), RegistryError> {
    match ack.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(RegistryError::Store(format!(
            "the change is in effect but could not be saved: {e}"
        ))),
        Err(_) => Err(RegistryError::Store("the server is stopping".into())),
    }
}

/// An output schema must be one that can check an answer.
pub(crate) fn check_output_schema(schema: &Value) -> Result<(), RegistryError> {
    Checkpoint::new(schema)
        .map(drop)
        .map_err(RegistryError::Invalid)
}

/// Wait for `ack` (when there is one): `None` once it is on disk, else the warning
/// `say` gives for the store's error (`None`: the store closed, the server is stopping).
pub(super) async fn unsaved(
    ack: Option<Ack>,
    say: impl FnOnce(Option<&str>) -> String,
) -> Option<String> {
    match ack?.await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(say(Some(&e.to_string()))),
        Err(_) => Some(say(None)),
    }
}
