//! The MCP exit: every tool result and every error goes through the fleet's
//! [`Redactor`] in [`answer`], called once in `call_tool` for all tools, so no tool's
//! result shaping has to remember it (progress notifications are redacted where they are
//! sent, in `progress_notifier`).

use std::borrow::Cow;

use rmcp::ErrorData;
use rmcp::model::{CallToolResponse, CallToolResult, ContentBlock};

use crate::plan::redact::Redactor;

/// `answer` with every string in it redacted: text content, structured content, an error's
/// message and data.
pub fn answer(
    r: &Redactor,
    answer: Result<CallToolResponse, ErrorData>,
) -> Result<CallToolResponse, ErrorData> {
    match answer {
        Ok(CallToolResponse::Complete(result)) => {
            Ok(CallToolResponse::Complete(tool_result(r, result)))
        }
        // Input requests and tasks carry no agent text (flotilla sends neither).
        Ok(other) => Ok(other),
        Err(mut e) => {
            if let Cow::Owned(clean) = r.redact(&e.message) {
                e.message = Cow::Owned(clean);
            }
            if let Some(data) = e.data.as_mut() {
                r.redact_json(data);
            }
            Err(e)
        }
    }
}

fn tool_result(r: &Redactor, mut result: CallToolResult) -> CallToolResult {
    if let Some(structured) = result.structured_content.as_mut() {
        r.redact_json(structured);
    }
    let Ok(mut content) = serde_json::to_value(&result.content) else {
        return withheld();
    };
    if r.redact_json(&mut content) {
        match serde_json::from_value::<Vec<ContentBlock>>(content) {
            Ok(clean) => result.content = clean,
            Err(_) => return withheld(),
        }
    }
    result
}

/// What is sent when a result cannot be redacted (it could not be read back after
/// redaction): nothing of it.
fn withheld() -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(
        "flotilla withheld this result: it could not be checked for secrets. Try again.",
    )])
}
