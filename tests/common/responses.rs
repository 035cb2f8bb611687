//! The OpenAI Responses API (`POST /v1/responses`, the wire Codex speaks) as the mock
//! sees it: reading a request's `input` items (instructions, user text, tools offered,
//! tool outputs sent back), checking them against the rules the real API enforces, and
//! building the reply, both the response object and the SSE events Codex streams.
//!
//! Codex 0.169.0 sends its environment context as a user message before the prompt,
//! so a request's "first user text" here is the text of all its user messages, joined:
//! the script key of the first prompt stays in it for the whole thread.

use std::collections::{HashMap, HashSet};

use serde_json::{Value, json};

use super::script::Action;
use super::wire::ToolResult;

/// The request's `input` as a list of items (a bare string is one user message).
pub fn items(body: &Value) -> Vec<Value> {
    match &body["input"] {
        Value::String(s) => vec![json!({"type": "message", "role": "user", "content": s})],
        Value::Array(items) => items.clone(),
        _ => Vec::new(),
    }
}

/// Message items (`type: message`, or an item with a `role` and no type).
pub fn messages(body: &Value) -> Vec<Value> {
    items(body)
        .into_iter()
        .filter(|i| i["type"] == "message" || (i["type"].is_null() && i["role"].is_string()))
        .collect()
}

/// Text of a message's `content`: a string, or parts of type input_text/output_text/text.
pub fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter(|p| {
                matches!(
                    p["type"].as_str(),
                    Some("input_text" | "output_text" | "text")
                )
            })
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

fn role_text(body: &Value, roles: &[&str]) -> Vec<String> {
    messages(body)
        .iter()
        .filter(|m| roles.iter().any(|r| m["role"] == *r))
        .map(|m| content_text(&m["content"]))
        .collect()
}

/// `instructions` plus the system and developer messages, joined.
pub fn system_text(body: &Value) -> String {
    let mut parts: Vec<String> = body["instructions"]
        .as_str()
        .map(str::to_string)
        .into_iter()
        .collect();
    parts.extend(role_text(body, &["system", "developer"]));
    parts.join("\n")
}

/// The text of every user message, joined (see the module comment).
pub fn first_user_text(body: &Value) -> String {
    role_text(body, &["user"]).join("\n")
}

/// Every tool definition offered: `tools`, and the `additional_tools` input items newer
/// models get, with namespaces flattened.
fn tool_defs(body: &Value) -> Vec<Value> {
    fn flatten(tools: &[Value], out: &mut Vec<Value>) {
        for t in tools {
            match t["tools"].as_array() {
                Some(inner) if t["type"] == "namespace" => flatten(inner, out),
                _ => out.push(t.clone()),
            }
        }
    }
    let mut out = Vec::new();
    flatten(
        body["tools"].as_array().map_or(&[], Vec::as_slice),
        &mut out,
    );
    for item in items(body)
        .iter()
        .filter(|i| i["type"] == "additional_tools")
    {
        flatten(
            item["tools"].as_array().map_or(&[], Vec::as_slice),
            &mut out,
        );
    }
    out
}

/// Names of the tools offered (a hosted tool without a name, e.g. `web_search`, by type).
pub fn tool_names(body: &Value) -> Vec<String> {
    let mut names: Vec<String> = tool_defs(body)
        .iter()
        .filter_map(|t| t["name"].as_str().or_else(|| t["type"].as_str()))
        .map(str::to_string)
        .collect();
    names.sort();
    names
}

const CALLS: [&str; 3] = ["function_call", "custom_tool_call", "local_shell_call"];
const OUTPUTS: [&str; 2] = ["function_call_output", "custom_tool_call_output"];

fn has_type(item: &Value, types: &[&str]) -> bool {
    item["type"].as_str().is_some_and(|t| types.contains(&t))
}

/// Tool outputs sent back, in order (the Responses API has no error flag: `None`).
pub fn tool_results(body: &Value) -> Vec<ToolResult> {
    items(body)
        .iter()
        .filter(|i| has_type(i, &OUTPUTS))
        .map(|i| ToolResult {
            id: i["call_id"].as_str().unwrap_or_default().to_string(),
            content: content_text(&i["output"]),
            is_error: None,
        })
        .collect()
}

/// `call_id`s of the tool calls replayed in `input`, in order.
pub fn tool_call_ids(body: &Value) -> Vec<String> {
    items(body)
        .iter()
        .filter(|i| has_type(i, &CALLS))
        .filter_map(|i| i["call_id"].as_str().map(str::to_string))
        .collect()
}

/// Protocol problems in a request; empty when it is well formed.
pub fn check(headers: &HashMap<String, String>, body: &Value) -> Vec<String> {
    let mut p = Vec::new();
    if body["model"].as_str().is_none_or(str::is_empty) {
        p.push("`model` missing".to_string());
    }
    if !headers
        .get("authorization")
        .is_some_and(|a| a.starts_with("Bearer ") && a.len() > 7)
    {
        p.push("authorization: Bearer header missing".into());
    }
    match &body["input"] {
        Value::String(s) if !s.is_empty() => {}
        Value::Array(a) if !a.is_empty() => {}
        other => p.push(format!(
            "`input` must be a non-empty string or array, got {other}"
        )),
    }
    for t in tool_defs(body) {
        let ok = match t["type"].as_str() {
            Some("function") => t["name"].is_string() && t["parameters"]["type"] == "object",
            Some("custom") => t["name"].is_string(),
            Some(_) => true,
            None => false,
        };
        if !ok {
            p.push(format!("malformed tool {t}"));
        }
    }
    check_items(&items(body), &mut p);
    p
}

fn check_items(items: &[Value], p: &mut Vec<String>) {
    let mut open: HashSet<String> = HashSet::new();
    for (i, item) in items.iter().enumerate() {
        let kind = item["type"].as_str().unwrap_or("message");
        if kind == "message" {
            let role = item["role"].as_str().unwrap_or_default();
            if !["user", "assistant", "system", "developer"].contains(&role) {
                p.push(format!("input[{i}]: bad role {role:?}"));
            }
        } else if has_type(item, &CALLS) {
            let id = item["call_id"].as_str().unwrap_or_default().to_string();
            if id.is_empty() || !open.insert(id) {
                p.push(format!("input[{i}]: tool call without a fresh call_id"));
            }
            let args = item["arguments"].as_str();
            if kind == "function_call"
                && args.is_none_or(|a| serde_json::from_str::<Value>(a).is_err())
            {
                p.push(format!("input[{i}]: arguments must be a JSON string"));
            }
        } else if has_type(item, &OUTPUTS) {
            let id = item["call_id"].as_str().unwrap_or_default();
            if !open.remove(id) {
                p.push(format!("input[{i}]: output for unknown call_id {id:?}"));
            }
        }
    }
    if !open.is_empty() {
        let mut ids: Vec<_> = open.into_iter().collect();
        ids.sort();
        p.push(format!("no tool output found for call_ids {ids:?}"));
    }
}

/// The id the mock gives tool call `i` of reply `n`.
pub fn call_id(n: u64, i: usize) -> String {
    format!("call_mock_{n}_{i}")
}

fn usage_json(usage: (u64, u64)) -> Value {
    json!({
        "input_tokens": usage.0,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": usage.1,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage.0 + usage.1,
    })
}

/// `name` as `(namespace, tool)` when it is `<namespace>__<tool>` of a namespace the
/// request offered (Codex offers MCP tools so: `mcp__flotilla` holding `ask_orchestrator`).
fn namespaced(request: &Value, name: &str) -> Option<(String, String)> {
    let tools = request["tools"].as_array()?;
    tools
        .iter()
        .filter(|t| t["type"] == "namespace")
        .find_map(|ns| {
            let ns_name = ns["name"].as_str()?;
            let tool = name.strip_prefix(ns_name)?.strip_prefix("__")?;
            ns["tools"]
                .as_array()?
                .iter()
                .any(|t| t["name"] == tool)
                .then(|| (ns_name.to_string(), tool.to_string()))
        })
}

fn message_item(n: u64, text: &str, status: &str) -> Value {
    json!({"type": "message", "id": format!("msg_mock_{n}"), "role": "assistant",
           "status": status,
           "content": [{"type": "output_text", "text": text, "annotations": []}]})
}

/// The response object for `action`. A call to a tool the request offered as `custom`
/// (freeform input, e.g. Codex's `apply_patch`) becomes a `custom_tool_call` whose input
/// is the step's string; any other call is a `function_call` with JSON arguments.
pub fn reply(model: &str, action: &Action, usage: (u64, u64), n: u64, request: &Value) -> Value {
    let custom: HashSet<String> = tool_defs(request)
        .iter()
        .filter(|t| t["type"] == "custom")
        .filter_map(|t| t["name"].as_str().map(str::to_string))
        .collect();
    let (output, status) = match action {
        Action::Text(t) => (vec![message_item(n, t, "completed")], "completed"),
        Action::CutOff(t) => (vec![message_item(n, t, "incomplete")], "incomplete"),
        Action::Tools(text, calls) => {
            let mut out: Vec<Value> = text
                .iter()
                .map(|t| message_item(n, t, "completed"))
                .collect();
            out.extend(calls.iter().enumerate().map(|(i, (name, input))| {
                if custom.contains(name) {
                    let input = input
                        .as_str()
                        .map_or_else(|| input.to_string(), str::to_string);
                    json!({"type": "custom_tool_call", "id": format!("ctc_mock_{n}_{i}"),
                           "call_id": call_id(n, i), "name": name, "input": input,
                           "status": "completed"})
                } else {
                    let mut call = json!({"type": "function_call", "id": format!("fc_mock_{n}_{i}"),
                           "call_id": call_id(n, i), "name": name,
                           "arguments": input.to_string(), "status": "completed"});
                    // `<namespace>__<tool>` of a namespace offered: called as the tool in it.
                    if let Some((ns, tool)) = namespaced(request, name) {
                        call["namespace"] = json!(ns);
                        call["name"] = json!(tool);
                    }
                    call
                }
            }));
            (out, "completed")
        }
        Action::Fail(..)
        | Action::RateLimit(_)
        | Action::Raw(..)
        | Action::Stall
        | Action::Silent => (Vec::new(), "completed"),
    };
    let incomplete = (status == "incomplete").then(|| json!({"reason": "max_output_tokens"}));
    json!({
        "id": format!("resp_mock_{n}"),
        "object": "response",
        "created_at": 1_700_000_000u64,
        "status": status,
        "model": model,
        "output": output,
        "usage": usage_json(usage),
        "incomplete_details": incomplete,
        "error": null,
    })
}

/// The SSE events that stream `response`: created, then per output item added → deltas →
/// done, then completed (or incomplete).
pub fn events(response: &Value) -> Vec<(String, Value)> {
    let mut ev: Vec<(String, Value)> = Vec::new();
    let mut push = |name: &str, mut data: Value| {
        data["type"] = json!(name);
        data["sequence_number"] = json!(ev.len());
        ev.push((name.to_string(), data));
    };
    let mut head = response.clone();
    head["status"] = json!("in_progress");
    head["output"] = json!([]);
    head["usage"] = Value::Null;
    push("response.created", json!({"response": head}));
    push("response.in_progress", json!({"response": head}));
    let output = response["output"].as_array().cloned().unwrap_or_default();
    for (idx, item) in output.iter().enumerate() {
        let id = item["id"].clone();
        let mut added = item.clone();
        added["status"] = json!("in_progress");
        match item["type"].as_str() {
            Some("message") => {
                added["content"] = json!([]);
                push(
                    "response.output_item.added",
                    json!({"output_index": idx, "item": added}),
                );
                let text = content_text(&item["content"]);
                let part = json!({"type": "output_text", "text": "", "annotations": []});
                let at = json!({"item_id": id, "output_index": idx, "content_index": 0});
                push(
                    "response.content_part.added",
                    merge(&at, json!({"part": part})),
                );
                push(
                    "response.output_text.delta",
                    merge(&at, json!({"delta": text})),
                );
                push(
                    "response.output_text.done",
                    merge(&at, json!({"text": text})),
                );
                let done = json!({"type": "output_text", "text": text, "annotations": []});
                push(
                    "response.content_part.done",
                    merge(&at, json!({"part": done})),
                );
            }
            Some("function_call") => {
                added["arguments"] = json!("");
                push(
                    "response.output_item.added",
                    json!({"output_index": idx, "item": added}),
                );
                let at = json!({"item_id": id, "output_index": idx});
                let args = item["arguments"].clone();
                push(
                    "response.function_call_arguments.delta",
                    merge(&at, json!({"delta": args})),
                );
                push(
                    "response.function_call_arguments.done",
                    merge(&at, json!({"arguments": args})),
                );
            }
            Some("custom_tool_call") => {
                added["input"] = json!("");
                push(
                    "response.output_item.added",
                    json!({"output_index": idx, "item": added}),
                );
                let at = json!({"item_id": id, "output_index": idx});
                let input = item["input"].clone();
                push(
                    "response.custom_tool_call_input.delta",
                    merge(&at, json!({"delta": input})),
                );
                push(
                    "response.custom_tool_call_input.done",
                    merge(&at, json!({"input": input})),
                );
            }
            _ => push(
                "response.output_item.added",
                json!({"output_index": idx, "item": added}),
            ),
        }
        push(
            "response.output_item.done",
            json!({"output_index": idx, "item": item}),
        );
    }
    let last = if response["status"] == "incomplete" {
        "response.incomplete"
    } else {
        "response.completed"
    };
    push(last, json!({"response": response}));
    ev
}

fn merge(a: &Value, b: Value) -> Value {
    let mut out = a.clone();
    if let (Some(o), Value::Object(extra)) = (out.as_object_mut(), b) {
        o.extend(extra);
    }
    out
}
