//! An `ask_orchestrator` call in the built-in loop: journal the question, give the run
//! slot back, show `needs_input`, and wait (no model call, no tool, no slot) until it
//! is answered or the command is interrupted. The answer is the call's result.

use serde_json::Value;

use super::Stop;
use super::tool_call::journal_durably;
use super::turn::Turn;
use crate::agent::asking::Question;
use crate::store::event::Event;
use crate::tools::{Tool, ToolOutcome, ask};

/// What the model is told when its command is interrupted while it waits.
const INTERRUPTED: &str =
    "Cancelled: the orchestrator interrupted this command instead of answering the question.";

impl Turn<'_> {
    pub(super) async fn ask(&mut self, id: String, input: Value) -> Result<(), Stop> {
        let agent = self.agent;
        let name = Tool::AskOrchestrator.name().to_string();
        let (question, options) = match ask::parse(input) {
            Ok(q) => q,
            Err(message) => {
                self.answer(id, name, ToolOutcome::error(message));
                return Ok(());
            }
        };
        // After a restart the question may be open already: wait on it again.
        let open = agent.open_question().filter(|q| q.call_id == id);
        let question = match open {
            Some(q) => q,
            None => {
                if self.token.is_cancelled() {
                    return self.interrupted(id, name);
                }
                // On disk before anyone can see it: a restart finds it open.
                let asked = Event::Asked {
                    index: self.index,
                    id: id.clone(),
                    question: question.clone(),
                    options: options.clone(),
                };
                journal_durably(agent, asked, &name).await?;
                agent.update(|s| s.tool_calls += 1);
                Question {
                    index: self.index,
                    call_id: id.clone(),
                    question,
                    options,
                    asked_at: std::time::SystemTime::now(),
                }
            }
        };
        tracing::info!(agent = %agent.name(), command = self.index, "asked the orchestrator: {}", question.question);
        // Waiting holds no run slot.
        self.slot = None;
        match agent.wait_for_answer(question, self.token).await {
            Some(a) => {
                tracing::info!(agent = %agent.name(), by = a.by.as_str(), "question answered");
                self.answer(id, name, ToolOutcome::ok(a.text));
                Ok(())
            }
            None => self.interrupted(id, name),
        }
    }

    /// Interrupted before an answer: the call gets a result saying so (unless the
    /// whole agent is stopping, when the log stays as it is, to resume).
    fn interrupted(&mut self, id: String, name: String) -> Result<(), Stop> {
        if self.agent.cancel.is_cancelled() {
            return Err(Stop::Cancelled);
        }
        self.answer(id, name, ToolOutcome::error(INTERRUPTED));
        Ok(())
    }
}
