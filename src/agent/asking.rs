//! Asking (`ask_orchestrator`): an agent that meets a real ambiguity asks, and waits
//! for the answer without holding a run slot or spending anything.
//!
//! The worker journals `asked` and shows `needs_input` with the [`Question`]; whoever
//! answers (the orchestrator through `command_agent`, the dashboard, an MCP Tasks
//! client, or the ask timeout) goes through [`AgentHandle::answer`], which journals
//! `answered` durably before it returns, so an answer once acknowledged survives a
//! crash. The worker takes the answer from the inbox ([`AgentHandle::wait_for_answer`])
//! whenever it gets there, before or after a restart.

use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use super::state::{Activity, AgentStatus};
use super::{AgentHandle, lock};
pub use crate::status::Answerer;
use crate::store::Ack;
use crate::store::event::Event;

/// What an agent answered by the timeout is told.
pub const NO_ANSWER: &str = "No answer; proceed on your best judgement and state what you assumed.";

/// A question an agent is waiting on.
#[derive(Debug, Clone, PartialEq)]
pub struct Question {
    /// The command it was asked in.
    pub index: u32,
    /// Its `ask_orchestrator` call's id.
    pub call_id: String,
    pub question: String,
    /// Choices offered, if any.
    pub options: Vec<String>,
    pub asked_at: SystemTime,
}

/// An answer on its way to the worker.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The call it answers.
    pub call_id: String,
    pub text: String,
    pub by: Answerer,
}

/// Why [`AgentHandle::answer`] did not deliver.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotAsking {
    #[error("agent `{0}` has no question waiting for an answer")]
    NoQuestion(String),
    #[error("agent `{0}`'s question has been answered already; the answer is on its way")]
    Answered(String),
    #[error("agent `{0}` is being deleted (or the server is stopping)")]
    Stopping(String),
}

/// What [`AgentHandle::answer`] delivered.
pub struct Delivered {
    /// The command the question was asked in (it goes on).
    pub index: u32,
    /// Resolves once the answer is on disk.
    pub ack: Option<Ack>,
}

impl AgentHandle {
    /// The question its command in progress asked and has not gone on from
    /// (answered or not).
    pub(crate) fn open_question(&self) -> Option<Question> {
        lock(&self.inbox).asked.clone()
    }

    /// Answer its open question: journaled (`answered`), then handed to the worker.
    /// Refused when there is no question, or it is answered already.
    pub fn answer(&self, text: String, by: Answerer) -> Result<Delivered, NotAsking> {
        let name = || self.name().to_string();
        let mut inbox = lock(&self.inbox);
        if self.cancel.is_cancelled() {
            return Err(NotAsking::Stopping(name()));
        }
        let Some(q) = inbox.asked.clone() else {
            return Err(NotAsking::NoQuestion(name()));
        };
        if inbox.answer.is_some() {
            return Err(NotAsking::Answered(name()));
        }
        let ack = self.record(Event::Answered {
            index: q.index,
            id: q.call_id.clone(),
            answer: text.clone(),
            by,
        });
        inbox.answer = Some(Answer {
            call_id: q.call_id,
            text,
            by,
        });
        // Working again from now on: a wait that starts now must not return at once.
        self.update(|s| {
            s.question = None;
            if s.status == AgentStatus::NeedsInput {
                s.status = AgentStatus::Running;
            }
            s.activity = Some(Activity::now(format!("answered by the {}", by.as_str())));
        });
        drop(inbox);
        self.answered.notify_one();
        Ok(Delivered {
            index: q.index,
            ack,
        })
    }

    /// Show `question` (`needs_input`) until it is answered — by whoever, or by the
    /// fleet's ask timeout — then close it. `None` when `token` is cancelled first. The
    /// caller gives its run slot back before, and takes one again after.
    pub(crate) async fn wait_for_answer(
        &self,
        question: Question,
        token: &CancellationToken,
    ) -> Option<Answer> {
        self.show_question(question.clone());
        let answer = self
            .await_answer(&question, self.fleet.ask_timeout, token)
            .await;
        self.close_question();
        answer
    }

    /// Wait for the answer to `question`: from the inbox, or the timeout's after
    /// `timeout` from when it was asked. `None` when `token` is cancelled first.
    async fn await_answer(
        &self,
        question: &Question,
        timeout: Option<Duration>,
        token: &CancellationToken,
    ) -> Option<Answer> {
        let deadline = timeout.map(|t| {
            let waited = question.asked_at.elapsed().unwrap_or_default();
            tokio::time::Instant::now() + t.saturating_sub(waited)
        });
        loop {
            let notified = self.answered.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(answer) = self.take_answer(&question.call_id) {
                return Some(answer);
            }
            let expired = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = token.cancelled() => return None,
                _ = &mut notified => {}
                _ = expired => {
                    // Answered for it, unless an answer got there first.
                    match self.answer(NO_ANSWER.into(), Answerer::Timeout) {
                        Ok(_) | Err(NotAsking::Answered(_)) => {}
                        Err(_) => return None,
                    }
                }
            }
        }
    }

    /// The answer to call `call_id`, if it has come (an answer to another call is
    /// stale and dropped).
    fn take_answer(&self, call_id: &str) -> Option<Answer> {
        let mut inbox = lock(&self.inbox);
        match inbox.answer.take() {
            Some(a) if a.call_id == call_id => Some(a),
            _ => None,
        }
    }

    /// Show `question` as open: status `needs_input` (unless it is answered already).
    fn show_question(&self, question: Question) {
        let mut inbox = lock(&self.inbox);
        inbox.asked = Some(question.clone());
        if inbox.answer.is_none() {
            self.update(|s| {
                s.status = AgentStatus::NeedsInput;
                s.activity = Some(Activity::now("waiting for an answer"));
                s.question = Some(question);
            });
        }
    }

    /// The question is closed (answered, or its command ended).
    pub(crate) fn close_question(&self) {
        let mut inbox = lock(&self.inbox);
        inbox.asked = None;
        inbox.answer = None;
        self.update(|s| {
            s.question = None;
            if s.status == AgentStatus::NeedsInput {
                s.status = AgentStatus::Running;
            }
        });
    }
}
