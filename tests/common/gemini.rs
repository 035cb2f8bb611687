//! The Gemini API (`POST /v1beta/models/<model>:streamGenerateContent?alt=sse` and
//! `:generateContent`, the wire Gemini CLI speaks) as the mock sees it: reading a
//! request's `contents` (system instruction, user text, tools offered, function
//! responses sent back), checking them against the rules the real API enforces, and
//! building the reply, a `GenerateContentResponse` or the SSE stream of it.
//!
//! Gemini CLI 0.61.0 puts a `<session_context>` text part before the prompt in the
//! first user content, so a request's "first user text" is all the text parts of that
//! content, joined: the script key of the first prompt stays in it for the session.

use std::collections::HashMap;

use axum::body::Bytes;
use serde_json::{Value, json};

use super::script::Action;
use super::wire::ToolResult;

/// The model a request's path names (`/v1beta/models/<model>:<method>`).
pub fn model(path: &str) -> &str {
    let call = path.rsplit('/').next().unwrap_or_default();
    call.split(':').next().unwrap_or_default()
}

/// The request's `contents`.
pub fn contents(body: &Value) -> Vec<Value> {
    body["contents"].as_array().cloned().unwrap_or_default()
}

fn parts(content: &Value) -> Vec<Value> {
    content["parts"].as_array().cloned().unwrap_or_default()
}

fn text_of(content: &Value) -> String {
    parts(content)
        .iter()
        .filter(|p| p["thought"] != true)
        .filter_map(|p| p["text"].as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

/// `systemInstruction`'s text.
pub fn system_text(body: &Value) -> String {
    text_of(&body["systemInstruction"])
}

/// The text parts of the first user content (see the module comment).
pub fn first_user_text(body: &Value) -> String {
    contents(body)
        .iter()
        .find(|c| c["role"] == "user")
        .map(text_of)
        .unwrap_or_default()
}

/// Names of the functions offered.
pub fn tool_names(body: &Value) -> Vec<String> {
    let mut names: Vec<String> = body["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["functionDeclarations"].as_array())
        .flatten()
        .filter_map(|f| f["name"].as_str().map(str::to_string))
        .collect();
    names.sort();
    names
}

fn all_parts(body: &Value, key: &str) -> Vec<Value> {
    contents(body)
        .iter()
        .flat_map(parts)
        .filter_map(|p| p.get(key).cloned())
        .collect()
}

/// Function responses sent back, in order: id (or name when the call had none), the
/// response's `output` (or the whole response), an `error` in it is a failure.
pub fn tool_results(body: &Value) -> Vec<ToolResult> {
    all_parts(body, "functionResponse")
        .iter()
        .map(|r| ToolResult {
            id: r["id"]
                .as_str()
                .or_else(|| r["name"].as_str())
                .unwrap_or_default()
                .to_string(),
            content: r["response"]["output"]
                .as_str()
                .map_or_else(|| r["response"].to_string(), str::to_string),
            is_error: Some(r["response"].get("error").is_some()),
        })
        .collect()
}

/// Ids of the function calls in the conversation (the name when a call has none).
pub fn tool_call_ids(body: &Value) -> Vec<String> {
    all_parts(body, "functionCall")
        .iter()
        .filter_map(|c| c["id"].as_str().or_else(|| c["name"].as_str()))
        .map(str::to_string)
        .collect()
}

/// Protocol problems in a request; empty when it is well formed.
pub fn check(headers: &HashMap<String, String>, body: &Value) -> Vec<String> {
    let mut p = Vec::new();
    if headers.get("x-goog-api-key").is_none_or(String::is_empty) {
        p.push("x-goog-api-key header missing".to_string());
    }
    let contents = contents(body);
    if contents.is_empty() {
        p.push("`contents` must be a non-empty array".into());
    }
    for t in body["tools"].as_array().into_iter().flatten() {
        for f in t["functionDeclarations"].as_array().into_iter().flatten() {
            if !f["name"].is_string() {
                p.push(format!("malformed function declaration {f}"));
            }
        }
    }
    // Every function call is answered, by name, in the next content.
    let mut open: Vec<String> = Vec::new();
    for (i, c) in contents.iter().enumerate() {
        let role = c["role"].as_str().unwrap_or_default();
        if role != "user" && role != "model" {
            p.push(format!("contents[{i}]: bad role {role:?}"));
        }
        let answered: Vec<String> = parts(c)
            .iter()
            .filter_map(|x| x["functionResponse"]["name"].as_str().map(str::to_string))
            .collect();
        let mut want = std::mem::take(&mut open);
        want.sort();
        let mut got = answered.clone();
        got.sort();
        if want != got {
            p.push(format!(
                "contents[{i}]: function calls {want:?} answered by {got:?}"
            ));
        }
        if !answered.is_empty() && role != "user" {
            p.push(format!("contents[{i}]: a function response is the user's"));
        }
        open = parts(c)
            .iter()
            .filter_map(|x| x["functionCall"]["name"].as_str().map(str::to_string))
            .collect();
    }
    if contents.last().is_some_and(|c| c["role"] != "user") {
        p.push("the last content must be the user's".into());
    }
    p
}

/// The id the mock gives function call `i` of reply `n`.
pub fn call_id(n: u64, i: usize) -> String {
    format!("gemini_call_{n}_{i}")
}

/// The `GenerateContentResponse` for `action`.
pub fn reply(action: &Action, usage: (u64, u64), n: u64) -> Value {
    let (parts, finish) = match action {
        Action::Text(t) => (vec![json!({"text": t})], "STOP"),
        Action::CutOff(t) => (vec![json!({"text": t})], "MAX_TOKENS"),
        Action::Tools(text, calls) => {
            let mut parts: Vec<Value> = text.iter().map(|t| json!({"text": t})).collect();
            parts.extend(calls.iter().enumerate().map(|(i, (name, args))| {
                json!({"functionCall": {"id": call_id(n, i), "name": name, "args": args}})
            }));
            (parts, "STOP")
        }
        Action::Fail(..)
        | Action::RateLimit(_)
        | Action::Raw(..)
        | Action::Stall
        | Action::Silent => (Vec::new(), "STOP"),
    };
    json!({
        "candidates": [{"content": {"role": "model", "parts": parts},
                        "finishReason": finish, "index": 0}],
        "usageMetadata": {"promptTokenCount": usage.0, "candidatesTokenCount": usage.1,
                          "totalTokenCount": usage.0 + usage.1},
        "modelVersion": "mock",
        "responseId": format!("mock-{n}"),
    })
}

/// The response as one SSE event (`data:` only, no event names).
pub fn sse(response: &Value) -> Bytes {
    Bytes::from(format!("data: {response}\n\n"))
}

/// The first event of a streamed answer that never ends: a chunk with no finish reason.
pub fn stall_head() -> Bytes {
    sse(
        &json!({"candidates": [{"content": {"role": "model", "parts": [{"text": ""}]},
                                 "index": 0}]}),
    )
}

/// The API's error body.
pub fn error(status: u16, message: &str) -> Value {
    let kind = match status {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        503 => "UNAVAILABLE",
        _ => "INTERNAL",
    };
    json!({"error": {"code": status, "message": message, "status": kind}})
}
