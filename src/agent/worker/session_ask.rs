//! `ask_orchestrator` in the CLI runtime: the CLI calls flotilla's ask endpoint
//! ([`crate::cli::asking`]) and its worker takes the call here, as the built-in loop's
//! `ask` does: the question journaled (`asked`) before anyone sees it, the run slot
//! given back, `needs_input` shown, no stall timer and nothing spent while it waits;
//! the answer goes back to the CLI as the tool's result once the agent holds a run
//! slot again. An interrupt or delete while it waits ends the command (the process
//! group dies with it).
//!
//! After a restart the CLI process that asked is gone: the open question still shows
//! (replay keeps it); once answered, the resumed session is told what it asked and
//! what the answer was, beside flotilla's restart note.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use super::Stop;
use super::session::{RESTARTED_NOTE, Session};
use super::tool_call::journal_durably;
use super::turn::seated;
use crate::agent::asking::{Answer, Question};
use crate::cli::Dialect;
use crate::cli::asking::{AskCall, Grant};
use crate::store::event::Event;
use crate::tools::Tool;

/// What the CLI is told when its command is interrupted while it waits (it is
/// killed at once; this only reaches a CLI that outlives the kill).
const INTERRUPTED: &str =
    "Cancelled: the orchestrator interrupted this command instead of answering the question.";

/// The next ask on `grant`'s channel; never, without a grant.
pub(super) async fn next_ask(grant: &mut Option<Grant>) -> Option<AskCall> {
    match grant {
        Some(g) => g.calls.recv().await,
        None => std::future::pending().await,
    }
}

impl Session<'_> {
    /// A token for this invocation when the agent may ask and its CLI can.
    pub(super) async fn ask_grant(&self, dialect: &dyn Dialect) -> Result<Option<Grant>, Stop> {
        if !self.agent.settings.tools.contains(&Tool::AskOrchestrator) || !dialect.can_ask() {
            return Ok(None);
        }
        crate::cli::asking::grant()
            .await
            .map(Some)
            .map_err(|e| self.failed(e))
    }

    /// The file naming the endpoint for the CLI, when its dialect reads one (mode 0600:
    /// it holds the run's token).
    pub(super) fn ask_config(
        &self,
        dialect: &dyn Dialect,
        grant: Option<&Grant>,
    ) -> Result<Option<PathBuf>, Stop> {
        let Some(text) = grant.and_then(|g| dialect.ask_config(&g.url, &g.token)) else {
            return Ok(None);
        };
        let file = self.hand_over("ask-mcp.json", &text)?;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| self.failed(format!("cannot restrict {}: {e}", file.display())))?;
        Ok(Some(file))
    }

    /// Answer the CLI's `ask_orchestrator` call.
    pub(super) async fn cli_ask(&mut self, call: AskCall) -> Result<(), Stop> {
        let agent = self.agent;
        let AskCall {
            call_id,
            question,
            options,
            reply,
        } = call;
        if self.token.is_cancelled() {
            let _ = reply.send(Err(INTERRUPTED.into()));
            return Err(Stop::Cancelled);
        }
        // The CLI's id for the call when it says, else the ask call it has shown.
        let call_id = call_id
            .or_else(|| {
                self.calls
                    .iter()
                    .rev()
                    .find(|(_, name)| is_ask(name))
                    .map(|(id, _)| id.clone())
            })
            .unwrap_or_else(|| format!("ask-{}-{}", self.index, self.steps));
        let question = Question {
            index: self.index,
            call_id,
            question,
            options,
            asked_at: std::time::SystemTime::now(),
        };
        // On disk before anyone can see it: a restart finds it open.
        let asked = Event::Asked {
            index: question.index,
            id: question.call_id.clone(),
            question: question.question.clone(),
            options: question.options.clone(),
        };
        if let Err(stop) = journal_durably(agent, asked, Tool::AskOrchestrator.name()).await {
            let _ = reply.send(Err("Error: flotilla could not save the question.".into()));
            return Err(stop);
        }
        tracing::info!(agent = %agent.name(), command = self.index, "a CLI session asked the orchestrator: {}", question.question);
        let Some(answer) = self.wait_for_answer(&question).await else {
            let _ = reply.send(Err(INTERRUPTED.into()));
            return Err(Stop::Cancelled);
        };
        tracing::info!(agent = %agent.name(), by = answer.by.as_str(), "question answered");
        // The CLI goes on only with a run slot (max_running holds).
        seated(agent, self.token, self.ticket, &mut self.slot).await?;
        let _ = reply.send(Ok(answer.text));
        Ok(())
    }

    /// Show `question`, holding no run slot, until it is answered (`None`: the
    /// command was interrupted first).
    async fn wait_for_answer(&mut self, question: &Question) -> Option<Answer> {
        self.slot = None;
        self.agent
            .wait_for_answer(question.clone(), self.token)
            .await
    }

    /// After a restart: the question the command's CLI asked before flotilla stopped,
    /// answered now, is put to the resumed session beside the restart note.
    pub(super) async fn asked_before_restart(&mut self, prompt: String) -> Result<String, Stop> {
        let Some(question) = self.agent.open_question().filter(|q| q.index == self.index) else {
            return Ok(prompt);
        };
        let Some(answer) = self.wait_for_answer(&question).await else {
            return Err(Stop::Cancelled);
        };
        let exchange = format!(
            "You asked the orchestrator: {}\nThe orchestrator answered: {}",
            question.question, answer.text
        );
        Ok(match prompt.strip_prefix(RESTARTED_NOTE) {
            Some(rest) => format!("{RESTARTED_NOTE}\n\n{exchange}{rest}"),
            None => format!("{exchange}\n\n{prompt}"),
        })
    }
}

/// A CLI's name for flotilla's ask tool (Claude Code's `mcp__flotilla__…`; Codex
/// shows any MCP call as `mcp`).
fn is_ask(name: &str) -> bool {
    name == crate::cli::claude_code::ASK_TOOL || name == "mcp"
}
