//! Answering an agent's question, one place for every transport: `command_agent` on a
//! `needs_input` agent, the dashboard's answer box, and an MCP Tasks client's
//! `tasks/update` all come here. Acknowledged once the answer is on disk.

use super::policy::{Commanded, unsaved};
use super::{Registry, RegistryError};
use crate::agent::AgentHandle;
use crate::agent::asking::{Answerer, Delivered, NotAsking};
use std::sync::Arc;

impl Registry {
    /// Answer `agent`'s open question with `answer`: the command it was asked in goes
    /// on with it (the agent's command count does not change).
    pub async fn answer(
        &self,
        agent: &str,
        answer: String,
        from: Answerer,
    ) -> Result<Commanded, RegistryError> {
        let handle = self.get(agent)?;
        let answer = checked(&handle, answer)?;
        let delivered = handle
            .answer(answer, from)
            .map_err(|e| RegistryError::Invalid(refusal(&e)))?;
        Ok(answered(handle, delivered).await)
    }

    /// `command_agent`'s task as the answer, when the agent has a question open;
    /// `None` when it has none (the task is then its next command).
    pub(super) async fn answer_if_asking(
        &self,
        handle: &Arc<AgentHandle>,
        task: &str,
        output_schema: bool,
    ) -> Result<Option<Commanded>, RegistryError> {
        if handle.open_question().is_none() {
            return Ok(None);
        }
        if output_schema {
            return Err(RegistryError::Invalid(format!(
                "agent `{}` is waiting for an answer to its question, and this task is that answer: output_schema does not apply to it. Send the answer without output_schema, or use interrupt: true to cancel its command and give this one instead",
                handle.name()
            )));
        }
        let answer = checked(handle, task.to_string())?;
        match handle.answer(answer, Answerer::Orchestrator) {
            Ok(delivered) => Ok(Some(answered(handle.clone(), delivered).await)),
            // Answered (by the timeout) or its command ended a moment ago: a command.
            Err(NotAsking::NoQuestion(_) | NotAsking::Answered(_)) => Ok(None),
            Err(e) => Err(RegistryError::Invalid(e.to_string())),
        }
    }
}

/// The answer trimmed, refused when empty.
fn checked(handle: &AgentHandle, answer: String) -> Result<String, RegistryError> {
    let answer = answer.trim();
    if answer.is_empty() {
        return Err(RegistryError::Invalid(format!(
            "the answer is empty: say what agent `{}` should do about its question",
            handle.name()
        )));
    }
    Ok(answer.to_string())
}

/// What the orchestrator is told when there was nothing to answer.
fn refusal(e: &NotAsking) -> String {
    match e {
        NotAsking::NoQuestion(name) => format!(
            "{e}; give it work with command_agent (its status says what it is doing: get_agent_status `{name}`)"
        ),
        _ => e.to_string(),
    }
}

/// Acknowledge an answer once it is on disk (a warning when it could not be saved).
async fn answered(handle: Arc<AgentHandle>, delivered: Delivered) -> Commanded {
    let warning = unsaved(delivered.ack, |e| match e {
        Some(e) => format!(
            "the answer was delivered, but could not be saved ({e}); after a restart the agent would ask again"
        ),
        None => "the server is stopping; the agent may not take the answer".into(),
    })
    .await;
    Commanded {
        handle,
        index: delivered.index,
        waiting: 0,
        warning,
        answered: true,
    }
}
