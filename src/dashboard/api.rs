//! The dashboard's JSON: the fleet snapshot (`/api/fleet`), one agent's detail
//! (`/api/agents/{name}`), the timeline (`/api/timeline`) and the controls (POST
//! `/api/agents/{name}/pause|resume|interrupt|delete`, `/api/fleet/pause|resume`, and
//! `/api/agents/{name}/answer` with `{"answer": …}` for an agent's question).
//!
//! In a fleet of several nodes the snapshot carries `nodes` (each node's health) and
//! every row its `node`.
//!
//! Rows are read from each agent's `watch`ed state and its outputs under their short
//! locks; nothing here holds a lock across an `.await`. Text a person reads (errors,
//! answers, tool arguments) goes through the fleet's redactor first.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};

use super::Dashboard;
use super::observer::Mark;
use crate::agent::AgentHandle;
use crate::agent::state::rfc3339;
use crate::pricing::round_cost;
use crate::registry::{BudgetRow, RegistryError};
use crate::server::results::redact;
use crate::store::event::Event;
use crate::text::truncate_chars;

/// Context windows by model family: the first pattern the model id contains wins.
/// Unknown models show their context in tokens without a share.
const CONTEXT_WINDOWS: &[(&str, u64)] = &[("claude", 200_000), ("gpt-5", 400_000)];
/// Events shown in an agent's detail.
const DETAIL_EVENTS: u64 = 200;
/// Characters of an answer, a tool argument or a tool result shown.
const ANSWER_CHARS: usize = 4000;
const DETAIL_CHARS: usize = 400;

/// The context window of a model id, when known.
pub fn context_window(model: &str) -> Option<u64> {
    CONTEXT_WINDOWS
        .iter()
        .find(|(p, _)| model.contains(p))
        .map(|(_, n)| *n)
}

/// One agent's row in the table.
#[derive(Debug, Serialize)]
pub struct Row {
    pub id: String,
    pub name: String,
    pub role: Option<String>,
    pub model: String,
    pub status: &'static str,
    pub activity: Option<String>,
    pub steps: u64,
    pub tool_calls: u64,
    pub commands: u32,
    pub pending: u32,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub context_tokens: u64,
    /// Share of the model's context window in use, 0–1; null when the window is unknown.
    pub context_share: Option<f64>,
    pub cost_usd: Option<f64>,
    pub files_written: usize,
    pub last_error: Option<String>,
    pub waiting_on: Vec<String>,
    /// The question it waits on (status `needs_input`).
    pub question: Option<String>,
    pub options: Vec<String>,
    /// The node that runs it (a fleet of several nodes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

impl Row {
    pub fn of(h: &AgentHandle) -> Self {
        let files_written = h.with_outputs(|outputs| {
            outputs
                .iter()
                .flat_map(|r| r.files_written.iter())
                .collect::<BTreeSet<_>>()
                .len()
        });
        let s = h.state();
        let model = h.settings.model.id.clone();
        Self {
            id: h.id.clone(),
            name: h.name().to_string(),
            role: h.settings.role.clone(),
            status: s.status.as_str(),
            activity: s.activity_text(),
            steps: s.steps,
            tool_calls: s.tool_calls,
            commands: s.commands,
            pending: s.pending,
            tokens_in: s.tokens.input_tokens,
            tokens_out: s.tokens.output_tokens,
            context_tokens: s.context_tokens,
            context_share: context_window(&model).map(|w| s.context_tokens as f64 / w as f64),
            model,
            cost_usd: s.cost_usd.map(round_cost),
            files_written,
            last_error: s.last_error.map(|e| redact(h, &e)),
            waiting_on: s.waiting_on,
            question: s.question.as_ref().map(|q| redact(h, &q.question)),
            options: s
                .question
                .map(|q| q.options.iter().map(|o| redact(h, o)).collect())
                .unwrap_or_default(),
            node: h.node().map(|n| n.to_string()),
        }
    }
}

/// The header: the whole fleet at a glance.
#[derive(Debug, Serialize)]
pub struct Header {
    pub agents: usize,
    pub by_status: BTreeMap<String, usize>,
    pub tokens_in: u64,
    pub tokens_out: u64,
    /// Sum of every agent's last prompt size.
    pub context_tokens: u64,
    pub cost_usd: f64,
    pub unpriced_agents: usize,
    /// Spend against the fleet's caps (deleted agents included); null without caps.
    pub budget: Option<BudgetRow>,
    pub running: usize,
    /// 0: no limit.
    pub max_running: usize,
    /// Agents waiting for a run slot.
    pub queued: usize,
    /// Commands given and not yet started, over all agents.
    pub pending_commands: u64,
}

impl Header {
    pub fn of(d: &Dashboard, agents: &[Arc<AgentHandle>]) -> Self {
        let fleet = d.registry.fleet();
        let t = fleet.totals.snapshot();
        let (context_tokens, pending_commands) = agents.iter().fold((0, 0), |(c, p), h| {
            h.peek(|s| (c + s.context_tokens, p + u64::from(s.pending)))
        });
        Self {
            agents: t.agents,
            queued: t.by_status.get("queued").copied().unwrap_or(0),
            by_status: t.by_status,
            tokens_in: t.input,
            tokens_out: t.output,
            context_tokens,
            cost_usd: round_cost(t.cost_usd),
            unpriced_agents: t.unpriced_agents,
            budget: d.registry.budget_row(),
            running: fleet.slots.running(),
            max_running: fleet.slots.max(),
            pending_commands,
        }
    }
}

/// `GET /api/fleet`: header and every row, in name order; in a fleet of several
/// nodes, `nodes` too (each node and its health).
pub async fn fleet(State(d): State<Arc<Dashboard>>) -> Json<Value> {
    let agents = d.registry.all();
    let header = Header::of(&d, &agents);
    let rows: Vec<Row> = agents.iter().map(|h| Row::of(h)).collect();
    let mut body = json!({ "header": header, "agents": rows, "now_ms": crate::store::now_ms() });
    if let Some(nodes) = d.nodes() {
        body["nodes"] = json!(nodes);
    }
    Json(body)
}

/// `GET /api/timeline`: each agent's latest marks (`[at_ms, kind, ok, label]`).
pub async fn timeline(State(d): State<Arc<Dashboard>>) -> Json<Value> {
    let agents = d.registry.all();
    let ids: Vec<&str> = agents.iter().map(|h| h.id.as_str()).collect();
    let mut marks = d.seen.marks(&ids);
    let lanes: Vec<Value> = agents
        .iter()
        .map(|h| json!({ "name": h.name(), "marks": marks.remove(&h.id).unwrap_or_default() }))
        .collect();
    d.seen.retain(|id| ids.contains(&id));
    Json(json!({ "lanes": lanes, "now_ms": crate::store::now_ms() }))
}

/// What an event says in the detail view: its summary, and for tool calls the
/// arguments and a short result.
pub fn event_json(h: &AgentHandle, seq: u64, at_ms: i64, event: &Event) -> Value {
    let detail = match event {
        Event::ToolCall { input, .. } => Some(truncate_chars(&input.to_string(), DETAIL_CHARS)),
        Event::ToolResult { content, .. } => Some(truncate_chars(content, DETAIL_CHARS)),
        _ => None,
    };
    let mark = Mark::of(at_ms, event);
    json!({
        "seq": seq,
        "at_ms": at_ms,
        "kind": mark.1,
        "ok": mark.2,
        "label": mark.3,
        "summary": redact(h, &event.summary()),
        "detail": detail.map(|d| redact(h, &d)),
    })
}

fn unknown(e: impl std::fmt::Display) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({ "error": e.to_string() })),
    )
        .into_response()
}

/// `GET /api/agents/{name}`: the row, every command with its answer, and the latest
/// events from the store.
pub async fn agent(State(d): State<Arc<Dashboard>>, Path(name): Path<String>) -> Response {
    let h = match d.registry.get(&name) {
        Ok(h) => h,
        Err(e) => return unknown(e),
    };
    let commands: Vec<Value> = h.with_outputs(|outputs| {
        outputs
            .iter()
            .enumerate()
            .map(|(i, r)| {
                json!({
                    "index": i + 1,
                    "task": redact(&h, &truncate_chars(&r.task, ANSWER_CHARS)),
                    "status": r.status,
                    "text": redact(&h, &truncate_chars(&r.text, ANSWER_CHARS)),
                    "error": r.error.as_deref().map(|e| redact(&h, e)),
                    "files_written": r.files_written,
                    "started_at": r.started_at.map(rfc3339),
                    "finished_at": r.finished_at.map(rfc3339),
                })
            })
            .collect()
    });
    let after = h.last_seq().saturating_sub(DETAIL_EVENTS);
    let events = match h
        .store()
        .events(&h.id, after, DETAIL_EVENTS as usize, None)
        .await
    {
        Ok(page) => page
            .events
            .iter()
            .map(|e| event_json(&h, e.seq, e.at_ms, &e.event))
            .collect(),
        Err(e) => {
            vec![json!({ "kind": "error", "summary": format!("cannot read the events: {e}") })]
        }
    };
    Json(json!({ "row": Row::of(&h), "commands": commands, "events": events })).into_response()
}

/// `POST /api/agents/{name}/{action}`: pause, resume, interrupt or delete.
pub async fn control(
    State(d): State<Arc<Dashboard>>,
    Path((name, action)): Path<(String, String)>,
) -> Response {
    let h = match d.registry.get(&name) {
        Ok(h) => h,
        Err(e) => return unknown(e),
    };
    if let Some(server) = d.router().filter(|_| h.is_mirror()) {
        return elsewhere(server, &h, &name, &action).await;
    }
    let changed = match action.as_str() {
        "pause" | "resume" => d
            .registry
            .hold(Some(std::slice::from_ref(&h.id)), action == "pause")
            .await
            .map(|held| !held.changed.is_empty()),
        // Cancel the command in hand; the agent keeps its conversation and its queue.
        "interrupt" => Ok(h.interrupt_current()),
        "delete" => d.registry.delete(&h.id).await.map(|_| true),
        other => {
            return unknown(format!(
                "no control `{other}`; use pause, resume, interrupt or delete"
            ));
        }
    };
    tracing::info!(agent = %name, action, "dashboard control");
    answer(changed.map(|c| json!({ "agent": name, "action": action, "changed": c })))
}

/// A control of an agent another node runs, done there.
async fn elsewhere(
    server: &crate::server::FleetServer,
    h: &crate::agent::AgentHandle,
    name: &str,
    action: &str,
) -> Response {
    let (tool, args) = match action {
        "pause" | "resume" => (format!("{action}_agents"), json!({ "agents": [h.id] })),
        "interrupt" => (
            crate::server::routed::INTERRUPT.to_string(),
            json!({ "agent": h.id }),
        ),
        "delete" => ("delete_agent".to_string(), json!({ "agent": h.id })),
        other => {
            return unknown(format!(
                "no control `{other}`; use pause, resume, interrupt or delete"
            ));
        }
    };
    let r = server.call_routed(&tool, args).await;
    tracing::info!(agent = %name, action, node = ?h.node(), "dashboard control, on the agent's node");
    if r.is_error == Some(true) {
        return answer(Err(RegistryError::Store(crate::server::routed::text_of(
            &r,
        ))));
    }
    let s = r.structured_content.unwrap_or_default();
    let changed = s["changed"].as_bool().unwrap_or_else(|| {
        s["changed"].as_array().is_some_and(|c| !c.is_empty()) || s["deleted"].is_string()
    });
    answer(Ok(
        json!({ "agent": name, "action": action, "changed": changed }),
    ))
}

/// The body of `POST /api/agents/{name}/answer`.
#[derive(Debug, serde::Deserialize)]
pub struct AnswerBody {
    pub answer: String,
}

/// `POST /api/agents/{name}/answer`: a person answers the agent's question; its
/// command goes on with the answer. 409 when it has no question open.
pub async fn answer_question(
    State(d): State<Arc<Dashboard>>,
    Path(name): Path<String>,
    Json(body): Json<AnswerBody>,
) -> Response {
    if let Some(server) = d.router()
        && let Ok(h) = d.registry.get(&name)
        && let Some(r) = server
            .on_owner(
                &h,
                crate::server::routed::ANSWER,
                json!({ "agent": h.id, "answer": body.answer, "by": "dashboard" }),
            )
            .await
    {
        tracing::info!(agent = %name, ok = r.is_error != Some(true), "dashboard answer, on the agent's node");
        return match r.is_error {
            Some(true) => (
                StatusCode::CONFLICT,
                Json(json!({ "error": crate::server::routed::text_of(&r) })),
            )
                .into_response(),
            _ => {
                let command = r.structured_content.as_ref().map(|s| s["command"].clone());
                Json(json!({ "agent": name, "command": command, "answered": true })).into_response()
            }
        };
    }
    let answered = d
        .registry
        .answer(
            &name,
            body.answer,
            crate::agent::asking::Answerer::Dashboard,
        )
        .await;
    tracing::info!(agent = %name, ok = answered.is_ok(), "dashboard answer");
    match answered {
        Ok(a) => {
            Json(json!({ "agent": name, "command": a.index, "answered": true })).into_response()
        }
        Err(e @ RegistryError::UnknownAgent { .. }) => unknown(e),
        Err(e) => (
            StatusCode::CONFLICT,
            Json(json!({ "error": e.to_string() })),
        )
            .into_response(),
    }
}

/// `POST /api/fleet/{action}`: pause or resume every agent.
pub async fn fleet_control(
    State(d): State<Arc<Dashboard>>,
    Path(action): Path<String>,
) -> Response {
    let pause = match action.as_str() {
        "pause" => true,
        "resume" => false,
        other => return unknown(format!("no fleet control `{other}`; use pause or resume")),
    };
    let changed = match d.router() {
        // Every node holds the agents it runs.
        Some(server) => {
            let r = server
                .call_routed(&format!("{action}_agents"), json!({}))
                .await;
            match r.is_error {
                Some(true) => Err(RegistryError::Store(crate::server::routed::text_of(&r))),
                _ => Ok(r
                    .structured_content
                    .as_ref()
                    .and_then(|s| s["changed"].as_array().map(Vec::len))
                    .unwrap_or(0)),
            }
        }
        None => d
            .registry
            .hold(None, pause)
            .await
            .map(|held| held.changed.len()),
    };
    tracing::info!(action, changed = ?changed.as_ref().ok(), "dashboard fleet control");
    answer(changed.map(|changed| json!({ "action": action, "changed": changed })))
}

fn answer(result: Result<Value, RegistryError>) -> Response {
    match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({ "error": e.to_string() })),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_windows_by_family() {
        assert_eq!(context_window("anthropic:claude-sonnet-4-5"), Some(200_000));
        assert_eq!(context_window("openai:gpt-5-mini"), Some(400_000));
        assert_eq!(context_window("openai:gpt-4o"), None);
    }
}
