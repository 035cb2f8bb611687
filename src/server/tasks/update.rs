//! `tasks/update`: the client's answers to a task's input requests, each an
//! elicitation result for one agent's question, delivered through
//! [`Registry::answer`](crate::registry::Registry::answer) as [`Answerer::Client`].

use rmcp::ErrorData;
use rmcp::model::{ElicitResult, ElicitationAction};
use serde_json::Value;

use super::{Part, TaskId};
use crate::agent::asking::Answerer;
use crate::server::FleetServer;

/// What an agent is told when the user declines to answer (`tasks/update` with
/// `action: "decline"`): the work goes on.
pub const DECLINED: &str =
    "The user declined to answer; proceed on your best judgement and state what you assumed.";

/// Deliver one input response (`tasks/update`): the elicitation result for the
/// question keyed `<agent_id>/<command>/<call id>`. Accept answers with
/// `content.answer`; decline answers with [`DECLINED`]; cancel cancels the command.
/// A response to a question no longer pending (answered meanwhile elsewhere) is
/// ignored.
pub(super) async fn answer(
    server: &FleetServer,
    id: &TaskId,
    key: &str,
    response: Value,
) -> Result<(), ErrorData> {
    let bad = |m: String| ErrorData::invalid_params(m, None);
    let mut pieces = key.splitn(3, '/');
    let (part, call_id) = match (pieces.next(), pieces.next(), pieces.next()) {
        (Some(agent), Some(command), Some(call_id)) => (
            command.parse::<u32>().ok().map(|n| Part::new(agent, n)),
            call_id,
        ),
        _ => (None, ""),
    };
    let Some(part) = part.filter(|p| id.0.contains(p)) else {
        return Err(bad(format!(
            "`{key}` is not one of task `{id}`'s input requests: answer with the keys of its `inputRequests`"
        )));
    };
    let handle = server
        .registry
        .get(&part.agent_id)
        .map_err(|e| bad(e.to_string()))?;
    let pending = handle.peek(|s| {
        s.question
            .as_ref()
            .is_some_and(|q| q.index == part.command && q.call_id == call_id)
    });
    if !pending {
        tracing::debug!(task = %id, key, "input response for a question no longer pending: ignored");
        return Ok(());
    }
    let response: ElicitResult = serde_json::from_value(response).map_err(|e| {
        bad(format!(
            "the response to `{key}` is not an elicitation result ({e}): send {{\"action\": \"accept\", \"content\": {{\"answer\": \"…\"}}}}"
        ))
    })?;
    let text = match response.action {
        ElicitationAction::Accept => response
            .content
            .as_ref()
            .and_then(|c| c.get("answer"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| {
                bad(format!(
                    "the accepted response to `{key}` has no `content.answer` string: put the answer there"
                ))
            })?,
        ElicitationAction::Cancel => {
            server.cancel_command(&handle, part.command).await;
            return Ok(());
        }
        _ => DECLINED.to_string(),
    };
    if let Some(answered) = server
        .on_owner(
            &handle,
            crate::server::routed::ANSWER,
            serde_json::json!({ "agent": handle.id, "answer": text, "by": "client" }),
        )
        .await
    {
        return match answered.is_error {
            Some(true) => Err(bad(crate::server::routed::text_of(&answered))),
            _ => Ok(()),
        };
    }
    server
        .registry
        .answer(&part.agent_id, text, Answerer::Client)
        .await
        .map(|_| ())
        .map_err(|e| bad(e.to_string()))
}
