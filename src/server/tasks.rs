//! MCP Tasks (SEP-2663, extension `io.modelcontextprotocol/tasks`). For a client that
//! declares the extension, `create_agent` (with a `task`), `create_agents` and
//! `command_agent` answer at once with a task naming the agent commands they started;
//! `tasks/get` maps those commands' state, `tasks/update` answers an agent's question,
//! `tasks/cancel` cancels the commands. Session peers (2025-11-25, `initialize`) also
//! get `notifications/tasks` when a task they created changes status ([`notify`]).
//!
//! There is no task table: a task id names its `(agent, command)` pairs
//! ([`TaskId`]) and its state is read from those agents' records on every request.
//! So ids survive a restart (the records come back from the store) and work on the
//! stateless 2026-07-28 generation, where no request shares state with another.

mod id;
mod notify;
mod update;
mod view;

use rmcp::ErrorData;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, CancelTaskParams, CreateTaskResult,
    DetailedTask, GetTaskParams, GetTaskResult, JsonObject, TaskPayload, UpdateTaskParams,
};
use rmcp::service::RequestContext;
use rmcp::{RoleServer, model::TASKS_EXTENSION_ID};
use serde_json::{Value, json};

use super::FleetServer;
use super::params::GetAgentOutputParams;
pub use id::{Part, TaskId};
use view::Outcome;

/// How often a client should poll `tasks/get`.
pub const POLL_INTERVAL_MS: u64 = 1500;

/// The tools that answer with a task for a client that declared the extension.
pub const TASK_TOOLS: [&str; 3] = ["create_agent", "create_agents", "command_agent"];

/// Mark a tool that may answer with a task: `_meta` under the extension's id says
/// `{"taskSupport": "optional"}` (rmcp 3.9's `Tool` has no `execution` field).
pub fn mark(tool: &mut rmcp::model::Tool) {
    if TASK_TOOLS.contains(&tool.name.as_ref()) {
        let meta = tool.meta.get_or_insert_with(Default::default);
        meta.insert(
            TASKS_EXTENSION_ID.to_string(),
            json!({"taskSupport": "optional"}),
        );
    }
}

/// Whether this request's client declared the Tasks extension (per request on the
/// stateless generation, at `initialize` for a session).
fn declared(context: &RequestContext<RoleServer>) -> bool {
    context
        .client_capabilities()
        .is_some_and(|c| c.supports_tasks())
}

/// A `tools/call`: answered as a task when the client declared the extension and the
/// call started agent commands; otherwise [`FleetServer::call_checked`]'s answer as is.
pub(super) async fn call_tool(
    server: &FleetServer,
    request: CallToolRequestParams,
    context: RequestContext<RoleServer>,
) -> Result<CallToolResponse, ErrorData> {
    if !TASK_TOOLS.contains(&request.name.as_ref()) {
        return server.call_checked(request, context).await;
    }
    if !declared(&context) {
        tracing::debug!(tool = %request.name, protocol = ?context.protocol_version(), "the client did not declare the Tasks extension: answered at once");
        return server.call_checked(request, context).await;
    }
    let name = request.name.clone();
    let arguments = request.arguments.clone();
    let peer = context.peer.clone();
    // A session (2025-11-25, `initialize`) hears of status changes; the stateless
    // generation has no channel for them (its clients poll).
    let session = peer.peer_info().is_some()
        && context
            .protocol_version()
            .is_none_or(|v| v.as_str() < rmcp::model::ProtocolVersion::V_2026_07_28.as_str());
    let answer = server.call_checked(request, context).await?;
    let CallToolResponse::Complete(result) = &answer else {
        return Ok(answer);
    };
    let Some(id) = started(&name, arguments.as_ref(), result) else {
        return Ok(answer);
    };
    let look = match view::look(server, &id) {
        Ok(look) => look,
        Err(e) => {
            tracing::warn!(task = %id, "a task just created cannot be read: {e}");
            return Ok(answer);
        }
    };
    tracing::info!(tool = %name, task = %id, "answered with a task (the client declared the Tasks extension)");
    if session {
        notify::watch(server, id.clone(), peer, look.status());
    }
    let mut task = look.task(&id);
    if let Some(warning) = result.structured_content.as_ref().and_then(warning_of) {
        let message = match task.status_message.take() {
            Some(m) => format!("{m}; {warning}"),
            None => warning,
        };
        task.status_message = Some(message);
    }
    Ok(CallToolResponse::Task(CreateTaskResult::new(task)))
}

/// A created result's warnings (unpriced model, …), which the task's status message
/// carries in its place.
fn warning_of(structured: &Value) -> Option<String> {
    match (&structured["warning"], &structured["warnings"]) {
        (Value::String(w), _) => Some(w.clone()),
        (_, Value::Array(ws)) if !ws.is_empty() => Some(
            ws.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join("; "),
        ),
        _ => None,
    }
}

/// The commands a successful call of `tool` started, as a task id; `None` when it
/// started none (a `create_agent` without `task`) or failed.
fn started(tool: &str, arguments: Option<&JsonObject>, result: &CallToolResult) -> Option<TaskId> {
    if result.is_error == Some(true) {
        return None;
    }
    let s = result.structured_content.as_ref()?;
    let parts = match tool {
        "create_agent"
            if arguments.is_some_and(|a| a.get("task").is_some_and(Value::is_string)) =>
        {
            vec![Part::new(s["agent_id"].as_str()?, 1)]
        }
        "command_agent" => vec![Part::new(
            s["agent_id"].as_str()?,
            u32::try_from(s["command"].as_u64()?).ok()?,
        )],
        "create_agents" => {
            let specs = arguments?.get("agents")?.as_array()?;
            s["agents"]
                .as_array()?
                .iter()
                .filter(|row| {
                    specs
                        .iter()
                        .any(|spec| spec["name"] == row["name"] && spec["task"].is_string())
                })
                .filter_map(|row| Some(Part::new(row["agent_id"].as_str()?, 1)))
                .collect()
        }
        _ => return None,
    };
    (!parts.is_empty()).then_some(TaskId(parts))
}

/// A task id from a request, or invalid params saying what is wrong.
fn parse(task_id: &str) -> Result<TaskId, ErrorData> {
    task_id
        .parse::<TaskId>()
        .map_err(|e| ErrorData::invalid_params(e, None))
}

/// `tasks/get`: the task's current state; a completed task carries what
/// `get_agent_output` returns for each command.
pub(super) async fn get(
    server: &FleetServer,
    params: GetTaskParams,
) -> Result<GetTaskResult, ErrorData> {
    let id = parse(&params.task_id)?;
    tracing::debug!(task = %id, "tasks/get");
    let look = view::look(server, &id).map_err(|e| ErrorData::invalid_params(e, None))?;
    let payload = match look.outcome() {
        Outcome::Completed => TaskPayload::Completed {
            result: completed(server, &id).await?,
        },
        other => other.payload(),
    };
    Ok(GetTaskResult::new(DetailedTask::new(
        look.task(&id),
        payload,
    )))
}

/// The result of a completed task: `get_agent_output` of its command as a
/// `CallToolResult`; for a batch, `{"agents": [...]}` with one output per command.
async fn completed(server: &FleetServer, id: &TaskId) -> Result<JsonObject, ErrorData> {
    let mut outputs = Vec::with_capacity(id.0.len());
    for part in &id.0 {
        let params = GetAgentOutputParams {
            agent: part.agent_id.clone(),
            command: Some(part.command),
            offset: None,
            max_chars: None,
        };
        let output = server
            .get_agent_output(Parameters(params))
            .await
            .map_err(|e| ErrorData::invalid_params(e, None))?;
        outputs.push(serde_json::to_value(output.0).map_err(|e| {
            ErrorData::internal_error(format!("could not encode the output: {e}"), None)
        })?);
    }
    let value = match <[Value; 1]>::try_from(outputs) {
        Ok([one]) => one,
        Err(many) => json!({"agents": many}),
    };
    match serde_json::to_value(CallToolResult::structured(value)) {
        Ok(Value::Object(result)) => Ok(result),
        _ => Err(ErrorData::internal_error(
            "could not encode the task's result",
            None,
        )),
    }
}

/// `tasks/cancel`: cancel every command of the task that has not ended. A task that
/// has ended cannot be cancelled (invalid params).
pub(super) async fn cancel(
    server: &FleetServer,
    params: CancelTaskParams,
) -> Result<(), ErrorData> {
    let id = parse(&params.task_id)?;
    let look = view::look(server, &id).map_err(|e| ErrorData::invalid_params(e, None))?;
    if look.status().is_terminal() {
        return Err(ErrorData::invalid_params(
            format!(
                "task `{id}` has already ended ({}); there is nothing to cancel",
                look.outcome().as_str()
            ),
            None,
        ));
    }
    for (part, handle) in look.parts() {
        if server.cancel_command(handle, part.command).await {
            tracing::info!(agent = %handle.name(), command = part.command, "command cancelled by tasks/cancel");
        }
    }
    Ok(())
}

/// `tasks/update`: the client's answers to the task's input requests.
pub(super) async fn update(
    server: &FleetServer,
    params: UpdateTaskParams,
) -> Result<(), ErrorData> {
    let id = parse(&params.task_id)?;
    view::look(server, &id).map_err(|e| ErrorData::invalid_params(e, None))?;
    for (key, response) in params.input_responses {
        update::answer(server, &id, &key, response).await?;
    }
    Ok(())
}
