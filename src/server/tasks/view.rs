//! What a task looks like now, read from its agents' records: each command's state
//! mapped to the extension's statuses (running, queued, waiting, paused → `working`;
//! a question of this command → `input_required`; done → `completed`; failed →
//! `failed`; cancelled → `cancelled`), then the commands of a batch combined.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rmcp::ErrorData;
use rmcp::model::{InputRequest, JsonObject, Task, TaskPayload, TaskStatus};
use serde_json::json;

use super::{POLL_INTERVAL_MS, Part, TaskId};
use crate::agent::AgentHandle;
use crate::agent::output::CommandStatus;
use crate::agent::state::{AgentState, AgentStatus, rfc3339};
use crate::server::FleetServer;

/// How long a task is kept after it ends, unless `FLOTILLA_TASK_TTL_S` says otherwise.
pub const DEFAULT_TTL_S: u64 = 86_400;
/// The environment variable that sets the task TTL in seconds.
pub const TTL_ENV: &str = "FLOTILLA_TASK_TTL_S";

/// The task TTL: how long a task is kept after it ends (a working task is never
/// dropped), from `FLOTILLA_TASK_TTL_S` or [`DEFAULT_TTL_S`].
fn ttl() -> Duration {
    static TTL: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    *TTL.get_or_init(|| {
        let secs = match std::env::var(TTL_ENV) {
            Err(_) => DEFAULT_TTL_S,
            Ok(v) => v.trim().parse::<u64>().unwrap_or_else(|_| {
                tracing::warn!(
                    "{TTL_ENV}={v:?} is not a number of seconds; tasks are kept the default {DEFAULT_TTL_S}s"
                );
                DEFAULT_TTL_S
            }),
        };
        tracing::debug!("tasks are kept {secs}s after they end ({TTL_ENV})");
        Duration::from_secs(secs)
    })
}

/// A question an agent asks in a command, as an input request.
pub(super) struct Asking {
    /// The input request's key: `<agent_id>/<command>/<call id>`.
    pub key: String,
    pub name: String,
    pub question: String,
    pub options: Vec<String>,
}

/// Where one command stands.
enum State {
    Working(String),
    Asking(Asking),
    Done,
    Failed(String),
    Cancelled(Option<String>),
}

/// One command of a task and where it stands.
struct PartLook {
    part: Part,
    handle: Arc<AgentHandle>,
    state: State,
    created: SystemTime,
    updated: SystemTime,
    finished: Option<SystemTime>,
}

/// A whole task, as it stands now.
pub(super) struct Look {
    parts: Vec<PartLook>,
}

/// The task's status with what goes with it (the completed result is fetched apart).
pub(super) enum Outcome<'a> {
    Working(String),
    InputRequired(Vec<&'a Asking>),
    Completed,
    Failed(String),
    Cancelled(Option<String>),
}

impl Outcome<'_> {
    pub fn status(&self) -> TaskStatus {
        match self {
            Self::Working(_) => TaskStatus::Working,
            Self::InputRequired(_) => TaskStatus::InputRequired,
            Self::Completed => TaskStatus::Completed,
            Self::Failed(_) => TaskStatus::Failed,
            Self::Cancelled(_) => TaskStatus::Cancelled,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Working(_) => "working",
            Self::InputRequired(_) => "input_required",
            Self::Completed => "completed",
            Self::Failed(_) => "failed",
            Self::Cancelled(_) => "cancelled",
        }
    }

    fn message(&self) -> Option<String> {
        match self {
            Self::Working(m) | Self::Failed(m) => Some(m.clone()),
            Self::Cancelled(m) => m.clone(),
            Self::InputRequired(asks) => Some(
                asks.iter()
                    .map(|a| format!("{} asks: {}", a.name, a.question))
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            Self::Completed => None,
        }
    }

    /// The payload for every status but `completed` (whose result is the agents'
    /// outputs, see `tasks::completed`).
    pub fn payload(&self) -> TaskPayload {
        match self {
            Self::Working(_) | Self::Completed => TaskPayload::Working,
            Self::InputRequired(asks) => TaskPayload::InputRequired {
                input_requests: asks.iter().filter_map(|a| input_request(a)).collect(),
            },
            Self::Failed(message) => {
                let mut error = JsonObject::new();
                error.insert(
                    "code".into(),
                    json!(ErrorData::internal_error("", None).code.0),
                );
                error.insert("message".into(), json!(message));
                TaskPayload::Failed { error }
            }
            Self::Cancelled(_) => TaskPayload::Cancelled,
        }
    }
}

/// An elicitation for an agent's question: a choice among its options, or free text.
fn input_request(a: &Asking) -> Option<(String, InputRequest)> {
    let mut answer = json!({
        "type": "string",
        "title": "Answer",
        "description": format!("Your answer to {}", a.name),
    });
    if !a.options.is_empty() {
        answer["enum"] = json!(a.options);
    }
    let request = json!({
        "method": "elicitation/create",
        "params": {
            "mode": "form",
            "message": format!("Agent `{}` asks: {}", a.name, a.question),
            "requestedSchema": {
                "type": "object",
                "properties": {"answer": answer},
                "required": ["answer"],
            },
        },
    });
    match serde_json::from_value(request) {
        Ok(r) => Some((a.key.clone(), r)),
        Err(e) => {
            tracing::error!("could not build the input request for {}: {e}", a.key);
            None
        }
    }
}

impl Look {
    pub fn outcome(&self) -> Outcome<'_> {
        let asks: Vec<&Asking> = self
            .parts
            .iter()
            .filter_map(|p| match &p.state {
                State::Asking(a) => Some(a),
                _ => None,
            })
            .collect();
        if !asks.is_empty() {
            return Outcome::InputRequired(asks);
        }
        let single = self.parts.len() == 1;
        let name = |p: &PartLook| {
            if single {
                String::new()
            } else {
                format!("{}: ", p.handle.name())
            }
        };
        let working: Vec<String> = self
            .parts
            .iter()
            .filter_map(|p| match &p.state {
                State::Working(m) => Some(format!("{}{m}", name(p))),
                _ => None,
            })
            .collect();
        if !working.is_empty() {
            let done = self.parts.len() - working.len();
            let mut message = working
                .iter()
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
                .join("; ");
            if !single {
                message = format!("{done} of {} ended; {message}", self.parts.len());
            }
            return Outcome::Working(message);
        }
        let failed: Vec<String> = self
            .parts
            .iter()
            .filter_map(|p| match &p.state {
                State::Failed(e) => Some(format!("{}{e}", name(p))),
                _ => None,
            })
            .collect();
        if !failed.is_empty() {
            return Outcome::Failed(failed.join("; "));
        }
        let cancelled: Vec<String> = self
            .parts
            .iter()
            .filter_map(|p| match &p.state {
                State::Cancelled(e) => Some(format!(
                    "{}{}",
                    name(p),
                    e.as_deref().unwrap_or("cancelled")
                )),
                _ => None,
            })
            .collect();
        if cancelled.is_empty() {
            Outcome::Completed
        } else {
            Outcome::Cancelled(Some(cancelled.join("; ")))
        }
    }

    pub fn status(&self) -> TaskStatus {
        self.outcome().status()
    }

    /// When the last of its commands ended, once they all have.
    fn finished(&self) -> Option<SystemTime> {
        self.parts
            .iter()
            .map(|p| p.finished)
            .collect::<Option<Vec<_>>>()?
            .into_iter()
            .max()
    }

    /// The task's metadata: kept [`ttl`] after it ends (`ttlMs` counts from its
    /// creation, so it grows by how long it ran).
    pub fn task(&self, id: &TaskId) -> Task {
        let outcome = self.outcome();
        let created = self.parts.iter().map(|p| p.created).min();
        let created = created.unwrap_or_else(SystemTime::now);
        let updated = self
            .parts
            .iter()
            .map(|p| p.updated)
            .max()
            .unwrap_or(created);
        let ran = match (outcome.status().is_terminal(), self.finished()) {
            (true, Some(end)) => end.duration_since(created).unwrap_or_default(),
            _ => Duration::ZERO,
        };
        let mut task = Task::new(
            id.to_string(),
            outcome.status(),
            rfc3339(created),
            rfc3339(updated),
        )
        .with_ttl_ms(u64::try_from((ttl() + ran).as_millis()).unwrap_or(u64::MAX))
        .with_poll_interval_ms(POLL_INTERVAL_MS);
        task.status_message = outcome.message();
        task
    }

    /// Each command and its agent.
    pub fn parts(&self) -> impl Iterator<Item = (&Part, &Arc<AgentHandle>)> {
        self.parts.iter().map(|p| (&p.part, &p.handle))
    }
}

/// The task `id` as it stands now; an error (for invalid params) when one of its
/// agents is gone, a command does not exist, or the task ended more than the TTL ago.
pub(super) fn look(server: &FleetServer, id: &TaskId) -> Result<Look, String> {
    let parts =
        id.0.iter()
            .map(|part| part_look(server, id, part))
            .collect::<Result<Vec<_>, _>>()?;
    let look = Look { parts };
    if look.status().is_terminal()
        && let Some(end) = look.finished()
        && end.elapsed().unwrap_or_default() > ttl()
    {
        return Err(format!(
            "unknown task `{id}`: it ended more than its TTL ({}s) ago and is forgotten; get_agent_output still reads its output",
            ttl().as_secs()
        ));
    }
    Ok(look)
}

fn part_look(server: &FleetServer, id: &TaskId, part: &Part) -> Result<PartLook, String> {
    let handle = server.registry.get(&part.agent_id).map_err(|_| {
        format!(
            "unknown task `{id}`: agent `{}` does not exist (it was deleted, or the id is wrong)",
            part.agent_id
        )
    })?;
    let redact = |s: String| server.registry.fleet().redactor.redact_string(s);
    let state = handle.state();
    let index = part.command as usize;
    let record = handle.with_outputs(|o| {
        let ahead = o
            .iter()
            .take(index.saturating_sub(1))
            .filter(|r| matches!(r.status, CommandStatus::Queued | CommandStatus::Running))
            .count();
        index.checked_sub(1).and_then(|i| o.get(i)).map(|r| {
            (
                r.status,
                r.error.clone(),
                r.queued_at,
                r.started_at,
                r.finished_at,
                ahead,
            )
        })
    });
    let Some((status, error, queued_at, started_at, finished_at, ahead)) = record else {
        // Held for its dependencies (or being handed over: the scheduler takes the
        // task before it queues it, while the status still says `waiting`).
        let held = handle.deferred().is_some() || state.status == AgentStatus::Waiting;
        if part.command == state.commands + 1 && held {
            let message = if state.waiting_on.is_empty() {
                "waiting for its dependencies".to_string()
            } else {
                format!(
                    "waiting for its dependencies: {}",
                    state.waiting_on.join(", ")
                )
            };
            return Ok(PartLook {
                part: part.clone(),
                handle,
                state: State::Working(message),
                created: state.last_activity_at,
                updated: state.last_activity_at,
                finished: None,
            });
        }
        return Err(format!(
            "unknown task `{id}`: agent `{}` has had {} command(s), not {}",
            handle.name(),
            state.commands,
            part.command
        ));
    };
    let paused = state.paused || state.status == AgentStatus::Paused;
    let asked = (status == CommandStatus::Running)
        .then(|| asking(&handle, &state, part, redact))
        .flatten();
    let task_state = match status {
        _ if let Some(a) = asked => State::Asking(a),
        CommandStatus::Done => State::Done,
        CommandStatus::Failed => State::Failed(redact(
            error.unwrap_or_else(|| "the command failed".to_string()),
        )),
        CommandStatus::Cancelled => State::Cancelled(error.map(redact)),
        _ if paused => State::Working("paused (resume_agents lets it go on)".into()),
        CommandStatus::Queued => State::Working(format!(
            "queued behind {ahead} command{}",
            if ahead == 1 { "" } else { "s" }
        )),
        CommandStatus::Running if state.status == AgentStatus::Queued => {
            State::Working("queued: waiting for a run slot".into())
        }
        CommandStatus::Running => State::Working(redact(
            state
                .activity_text()
                .unwrap_or_else(|| "running".to_string()),
        )),
    };
    let updated = [Some(queued_at), started_at, finished_at]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(queued_at);
    let updated = if status == CommandStatus::Running {
        updated.max(state.last_activity_at)
    } else {
        updated
    };
    Ok(PartLook {
        part: part.clone(),
        handle,
        state: task_state,
        created: queued_at,
        updated,
        finished: finished_at,
    })
}

/// The question `part`'s command is waiting on, if any.
fn asking(
    handle: &AgentHandle,
    state: &AgentState,
    part: &Part,
    redact: impl Fn(String) -> String,
) -> Option<Asking> {
    let q = state
        .question
        .as_ref()
        .filter(|q| q.index == part.command)?;
    Some(Asking {
        key: format!("{}/{}/{}", part.agent_id, part.command, q.call_id),
        name: handle.name().to_string(),
        question: redact(q.question.clone()),
        options: q.options.iter().cloned().map(&redact).collect(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ask(options: &[&str]) -> Asking {
        Asking {
            key: "ag-01/1/call_1".into(),
            name: "scout".into(),
            question: "Keep v1 or v2?".into(),
            options: options.iter().map(|o| o.to_string()).collect(),
        }
    }

    #[test]
    fn a_question_is_an_elicitation_with_its_options_as_an_enum() {
        let (key, request) = input_request(&ask(&["v1", "v2"])).unwrap();
        assert_eq!(key, "ag-01/1/call_1");
        assert!(matches!(request, InputRequest::Elicitation(_)));
        let wire = serde_json::to_value(&request).unwrap();
        assert_eq!(wire["method"], "elicitation/create");
        assert_eq!(
            wire["params"]["message"],
            "Agent `scout` asks: Keep v1 or v2?"
        );
        let answer = &wire["params"]["requestedSchema"]["properties"]["answer"];
        assert_eq!(answer["enum"], json!(["v1", "v2"]), "{wire}");
        assert_eq!(
            wire["params"]["requestedSchema"]["required"],
            json!(["answer"])
        );
    }

    #[test]
    fn a_question_without_options_asks_for_free_text() {
        let (_, request) = input_request(&ask(&[])).unwrap();
        let wire = serde_json::to_value(&request).unwrap();
        let answer = &wire["params"]["requestedSchema"]["properties"]["answer"];
        assert_eq!(answer["type"], "string", "{wire}");
        assert!(answer.get("enum").is_none(), "{wire}");
    }
}
