//! The model wire formats as the mock sees them: reading recorded requests (system
//! prompt, first user message, tools offered, tool results sent back), checking them
//! against the rules the real APIs enforce, and building replies. The Responses API
//! lives in [`super::responses`], the Gemini API in [`super::gemini`]; these functions
//! dispatch to them.

use std::collections::{HashMap, HashSet};

use serde_json::{Value, json};

use super::mock_model::{Action, Format};
use super::{gemini, responses};

/// A tool result the server sent back to the model.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolResult {
    /// The tool call it answers.
    pub id: String,
    pub content: String,
    /// Anthropic's `is_error`; OpenAI has no such flag (`None`).
    pub is_error: Option<bool>,
}

impl ToolResult {
    /// Refused or failed: `is_error: true`, or (OpenAI) content starting with "Error".
    pub fn failed(&self) -> bool {
        self.is_error.unwrap_or_else(|| {
            self.content
                .trim_start()
                .to_lowercase()
                .starts_with("error")
        })
    }
}

/// The conversation's messages (Responses: its `message` input items).
pub fn messages(format: Format, body: &Value) -> Vec<Value> {
    match format {
        Format::Responses => responses::messages(body),
        Format::Gemini => gemini::contents(body),
        Format::Anthropic | Format::OpenAi => {
            body["messages"].as_array().cloned().unwrap_or_default()
        }
    }
}

/// Text of a `content` that is a string or an array of blocks/parts.
pub fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter(|b| b["type"] == "text")
            .filter_map(|b| b["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

pub fn system_text(format: Format, body: &Value) -> String {
    match format {
        Format::Anthropic => content_text(&body["system"]),
        Format::OpenAi => messages(format, body)
            .iter()
            .filter(|m| m["role"] == "system" || m["role"] == "developer")
            .map(|m| content_text(&m["content"]))
            .collect::<Vec<_>>()
            .join("\n"),
        Format::Responses => responses::system_text(body),
        Format::Gemini => gemini::system_text(body),
    }
}

pub fn first_user_text(format: Format, body: &Value) -> String {
    match format {
        Format::Responses => return responses::first_user_text(body),
        Format::Gemini => return gemini::first_user_text(body),
        Format::Anthropic | Format::OpenAi => {}
    }
    messages(format, body)
        .iter()
        .find(|m| m["role"] == "user")
        .map(|m| content_text(&m["content"]))
        .unwrap_or_default()
}

pub fn tool_names(format: Format, body: &Value) -> Vec<String> {
    match format {
        Format::Responses => return responses::tool_names(body),
        Format::Gemini => return gemini::tool_names(body),
        Format::Anthropic | Format::OpenAi => {}
    }
    let tools = body["tools"].as_array().cloned().unwrap_or_default();
    let mut names: Vec<String> = tools
        .iter()
        .filter_map(|t| match format {
            Format::Anthropic => t["name"].as_str(),
            Format::OpenAi | Format::Responses | Format::Gemini => t["function"]["name"].as_str(),
        })
        .map(str::to_string)
        .collect();
    names.sort();
    names
}

pub fn tool_results(format: Format, body: &Value) -> Vec<ToolResult> {
    let msgs = messages(format, body);
    match format {
        Format::Responses => responses::tool_results(body),
        Format::Gemini => gemini::tool_results(body),
        Format::Anthropic => msgs
            .iter()
            .filter(|m| m["role"] == "user")
            .filter_map(|m| m["content"].as_array().cloned())
            .flatten()
            .filter(|b| b["type"] == "tool_result")
            .map(|b| ToolResult {
                id: b["tool_use_id"].as_str().unwrap_or_default().to_string(),
                content: content_text(&b["content"]),
                is_error: Some(b["is_error"].as_bool().unwrap_or(false)),
            })
            .collect(),
        Format::OpenAi => msgs
            .iter()
            .filter(|m| m["role"] == "tool")
            .map(|m| ToolResult {
                id: m["tool_call_id"].as_str().unwrap_or_default().to_string(),
                content: content_text(&m["content"]),
                is_error: None,
            })
            .collect(),
    }
}

/// Protocol problems in a request; empty when it is well formed.
pub fn check(format: Format, headers: &HashMap<String, String>, body: &Value) -> Vec<String> {
    let mut p = Vec::new();
    if let Some(e) = body.get("__unparseable__") {
        return vec![format!("body is not JSON: {e}")];
    }
    match format {
        Format::Responses => return responses::check(headers, body),
        Format::Gemini => return gemini::check(headers, body),
        Format::Anthropic | Format::OpenAi => {}
    }
    if body["model"].as_str().is_none_or(str::is_empty) {
        p.push("`model` missing".to_string());
    }
    let Some(msgs) = body["messages"].as_array() else {
        p.push("`messages` is not an array".to_string());
        return p;
    };
    if msgs.is_empty() {
        p.push("`messages` is empty".to_string());
    }
    match format {
        Format::Anthropic => check_anthropic(headers, body, msgs, &mut p),
        Format::OpenAi => check_openai(headers, body, msgs, &mut p),
        Format::Responses | Format::Gemini => {}
    }
    p
}

fn check_anthropic(
    headers: &HashMap<String, String>,
    body: &Value,
    msgs: &[Value],
    p: &mut Vec<String>,
) {
    if headers.get("x-api-key").is_none_or(String::is_empty) {
        p.push("x-api-key header missing".into());
    }
    if !headers.contains_key("anthropic-version") {
        p.push("anthropic-version header missing".into());
    }
    if body["max_tokens"].as_u64().is_none_or(|n| n == 0) {
        p.push("`max_tokens` must be a positive integer".into());
    }
    match &body["system"] {
        Value::Null | Value::String(_) => {}
        Value::Array(blocks) if blocks.iter().all(|b| b["type"] == "text") => {}
        other => p.push(format!(
            "`system` must be a string or text blocks, got {other}"
        )),
    }
    if let Some(tools) = body.get("tools") {
        let ok = tools.as_array().is_some_and(|ts| {
            ts.iter()
                .all(|t| t["name"].is_string() && t["input_schema"]["type"] == "object")
        });
        if !ok {
            p.push("`tools` must be [{name, description, input_schema: {type: object}}]".into());
        }
    }
    // Claude Code sends `system` turns between the others (its environment block, even
    // last); they take no part in the user/assistant alternation.
    let turns: Vec<&Value> = msgs.iter().filter(|m| m["role"] != "system").collect();
    if turns.first().is_some_and(|m| m["role"] != "user") {
        p.push("first message must be from the user".into());
    }
    if turns.last().is_some_and(|m| m["role"] != "user") {
        p.push("last message must be from the user (no assistant prefill expected)".into());
    }
    let mut open: HashSet<String> = HashSet::new();
    for (i, m) in msgs.iter().enumerate() {
        let role = m["role"].as_str().unwrap_or_default();
        if role == "system" {
            if !m["content"].is_string()
                && !m["content"]
                    .as_array()
                    .is_some_and(|b| b.iter().all(|b| b["type"] == "text"))
            {
                p.push(format!("messages[{i}]: a system turn holds only text"));
            }
            continue;
        }
        if role != "user" && role != "assistant" {
            p.push(format!("messages[{i}]: bad role {role:?}"));
        }
        let blocks = match &m["content"] {
            Value::String(_) => vec![],
            Value::Array(b) => b.clone(),
            other => {
                p.push(format!("messages[{i}]: bad content {other}"));
                vec![]
            }
        };
        let answered: HashSet<String> = blocks
            .iter()
            .filter(|b| b["type"] == "tool_result")
            .filter_map(|b| b["tool_use_id"].as_str().map(str::to_string))
            .collect();
        if role == "user" {
            for id in &answered {
                if !open.contains(id) {
                    p.push(format!(
                        "messages[{i}]: tool_result for unknown tool_use id {id}"
                    ));
                }
            }
            for id in &open {
                if !answered.contains(id) {
                    p.push(format!(
                        "messages[{i}]: tool_use {id} has no tool_result after it"
                    ));
                }
            }
            open.clear();
        } else if role == "assistant" {
            if !open.is_empty() {
                p.push(format!("messages[{i}]: tool_use ids {open:?} not answered"));
            }
            open.clear();
            for b in &blocks {
                if b["type"] == "tool_use" {
                    if !b["input"].is_object() {
                        p.push(format!("messages[{i}]: tool_use input must be an object"));
                    }
                    open.insert(b["id"].as_str().unwrap_or_default().to_string());
                }
                if b["type"] == "tool_result" {
                    p.push(format!(
                        "messages[{i}]: tool_result in an assistant message"
                    ));
                }
            }
        }
    }
}

fn check_openai(
    headers: &HashMap<String, String>,
    body: &Value,
    msgs: &[Value],
    p: &mut Vec<String>,
) {
    if !headers
        .get("authorization")
        .is_some_and(|a| a.starts_with("Bearer ") && a.len() > 7)
    {
        p.push("authorization: Bearer header missing".into());
    }
    if let Some(tools) = body.get("tools") {
        let ok = tools.as_array().is_some_and(|ts| {
            ts.iter().all(|t| {
                t["type"] == "function"
                    && t["function"]["name"].is_string()
                    && t["function"]["parameters"]["type"] == "object"
            })
        });
        if !ok {
            p.push("`tools` must be [{type: function, function: {name, parameters}}]".into());
        }
    }
    let mut open: HashSet<String> = HashSet::new();
    for (i, m) in msgs.iter().enumerate() {
        let role = m["role"].as_str().unwrap_or_default();
        match role {
            "tool" => {
                let id = m["tool_call_id"].as_str().unwrap_or_default().to_string();
                if !open.remove(&id) {
                    p.push(format!(
                        "messages[{i}]: tool message for unknown tool_call_id {id:?}"
                    ));
                }
                if !m["content"].is_string() && !m["content"].is_array() {
                    p.push(format!(
                        "messages[{i}]: tool message content must be a string"
                    ));
                }
            }
            "system" | "developer" | "user" | "assistant" => {
                if !open.is_empty() {
                    p.push(format!("messages[{i}]: tool calls {open:?} not answered"));
                    open.clear();
                }
                if role == "assistant" {
                    for c in m["tool_calls"].as_array().cloned().unwrap_or_default() {
                        let args = c["function"]["arguments"].as_str();
                        if c["type"] != "function" || c["function"]["name"].as_str().is_none() {
                            p.push(format!("messages[{i}]: malformed tool call {c}"));
                        }
                        if args.is_none_or(|a| serde_json::from_str::<Value>(a).is_err()) {
                            p.push(format!("messages[{i}]: arguments must be a JSON string"));
                        }
                        open.insert(c["id"].as_str().unwrap_or_default().to_string());
                    }
                }
            }
            other => p.push(format!("messages[{i}]: bad role {other:?}")),
        }
    }
    if !open.is_empty() {
        p.push(format!("tool calls {open:?} not answered at the end"));
    }
    if msgs.last().is_some_and(|m| m["role"] == "assistant") {
        p.push("last message must not be from the assistant".into());
    }
}

/// The id the mock gives tool call `i` of reply `n`.
pub fn call_id(format: Format, n: u64, i: usize) -> String {
    match format {
        Format::Anthropic => format!("toolu_mock_{n}_{i}"),
        Format::OpenAi => format!("call_mock_{n}_{i}"),
        Format::Responses => responses::call_id(n, i),
        Format::Gemini => gemini::call_id(n, i),
    }
}

pub fn tool_call_ids(format: Format, body: &Value) -> Vec<String> {
    match format {
        Format::Responses => return responses::tool_call_ids(body),
        Format::Gemini => return gemini::tool_call_ids(body),
        Format::Anthropic | Format::OpenAi => {}
    }
    let assistant = messages(format, body)
        .into_iter()
        .filter(|m| m["role"] == "assistant");
    let ids = match format {
        Format::Anthropic => assistant
            .filter_map(|m| m["content"].as_array().cloned())
            .flatten()
            .filter(|b| b["type"] == "tool_use")
            .map(|b| b["id"].clone())
            .collect::<Vec<_>>(),
        Format::OpenAi | Format::Responses | Format::Gemini => assistant
            .filter_map(|m| m["tool_calls"].as_array().cloned())
            .flatten()
            .map(|c| c["id"].clone())
            .collect(),
    };
    ids.iter()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

pub fn anthropic_reply(model: &str, action: &Action, usage: (u64, u64), n: u64) -> Value {
    let (content, stop) = match action {
        Action::Text(t) => (vec![json!({"type": "text", "text": t})], "end_turn"),
        Action::Tools(text, calls) => {
            let mut blocks: Vec<Value> = text
                .iter()
                .map(|t| json!({"type": "text", "text": t}))
                .collect();
            blocks.extend(calls.iter().enumerate().map(|(i, (name, input))| {
                json!({"type": "tool_use", "id": call_id(Format::Anthropic, n, i),
                       "name": name, "input": input})
            }));
            (blocks, "tool_use")
        }
        Action::CutOff(t) => (vec![json!({"type": "text", "text": t})], "max_tokens"),
        Action::Fail(..)
        | Action::RateLimit(_)
        | Action::Raw(..)
        | Action::Stall
        | Action::Silent => (vec![], "end_turn"),
    };
    json!({
        "id": format!("msg_mock_{n}"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": null,
        "usage": {"input_tokens": usage.0, "output_tokens": usage.1},
    })
}

pub fn openai_reply(model: &str, action: &Action, usage: (u64, u64), n: u64) -> Value {
    let (message, finish) = match action {
        Action::Text(t) => (json!({"role": "assistant", "content": t}), "stop"),
        Action::Tools(text, calls) => {
            let calls: Vec<Value> = calls
                .iter()
                .enumerate()
                .map(|(i, (name, input))| {
                    json!({"id": call_id(Format::OpenAi, n, i), "type": "function",
                           "function": {"name": name, "arguments": input.to_string()}})
                })
                .collect();
            (
                json!({"role": "assistant", "content": text, "tool_calls": calls}),
                "tool_calls",
            )
        }
        Action::CutOff(t) => (json!({"role": "assistant", "content": t}), "length"),
        Action::Fail(..)
        | Action::RateLimit(_)
        | Action::Raw(..)
        | Action::Stall
        | Action::Silent => (json!({"role": "assistant"}), "stop"),
    };
    json!({
        "id": format!("chatcmpl-mock-{n}"),
        "object": "chat.completion",
        "created": 1_700_000_000u64,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": usage.0, "completion_tokens": usage.1,
                  "total_tokens": usage.0 + usage.1},
    })
}
