//! OpenAI Chat Completions (`POST {base}/chat/completions`, non-streaming), and so every
//! OpenAI-compatible server (Ollama, vLLM, llama.cpp, OpenRouter, …).
//!
//! Conversion rules: the system prompt is the first `system` message; an assistant
//! message's text becomes `content` and its tool uses `tool_calls`; each tool result is a
//! `tool` message (content prefixed `Error: ` when it failed), and any text in the same
//! user message follows as a separate `user` message. Tool-call arguments that are not
//! valid JSON become `{"_invalid_arguments": "<raw text>"}` so the tool layer can answer
//! the model with a clear error instead of the call failing here.

use std::sync::atomic::{AtomicU64, Ordering};

use reqwest::Client;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::http::{Endpoint, EndpointConfig};
use super::{BoxFuture, Provider, ProviderError};
use crate::model::{
    Block, Message, ModelRequest, ModelResponse, Role, StopReason, ToolSpec, Usage,
};

/// Key of the object that stands in for tool-call arguments that were not valid JSON.
pub const INVALID_ARGUMENTS_KEY: &str = "_invalid_arguments";

/// Which request field carries the output token limit.
///
/// OpenAI's own API wants `max_completion_tokens` (its reasoning models reject
/// `max_tokens`), while many compatible servers only understand `max_tokens`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaxTokensField {
    MaxCompletionTokens,
    MaxTokens,
}

impl MaxTokensField {
    /// `max_completion_tokens` for OpenAI's own hosts (api.openai.com, Azure OpenAI),
    /// `max_tokens` for everything else.
    pub fn default_for(base_url: &str) -> Self {
        let host = reqwest::Url::parse(base_url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
            .unwrap_or_default();
        if host == "openai.com"
            || host.ends_with(".openai.com")
            || host.ends_with(".openai.azure.com")
        {
            Self::MaxCompletionTokens
        } else {
            Self::MaxTokens
        }
    }
}

/// A provider speaking OpenAI Chat Completions.
#[derive(Debug)]
pub struct OpenAiProvider {
    client: Client,
    endpoint: Endpoint,
    max_tokens_field: MaxTokensField,
}

impl OpenAiProvider {
    /// Without an API key no `Authorization` header is sent (local servers).
    /// Fails only when a header (key or extra header) is not valid HTTP.
    pub fn new(
        client: Client,
        config: &EndpointConfig,
        max_tokens_field: MaxTokensField,
    ) -> Result<Self, String> {
        let endpoint = Endpoint::new(config, "/chat/completions", |key| {
            vec![("authorization", format!("Bearer {key}"))]
        })?;
        Ok(Self {
            client,
            endpoint,
            max_tokens_field,
        })
    }
}

impl Provider for OpenAiProvider {
    fn complete<'a>(
        &'a self,
        request: &'a ModelRequest<'a>,
    ) -> BoxFuture<'a, Result<ModelResponse, ProviderError>> {
        Box::pin(async move {
            let mut body = to_wire(request, self.max_tokens_field);
            body.temperature = self.endpoint.temperature;
            let response: WireResponse = self.endpoint.post_json(&self.client, &body).await?;
            from_wire(response).map_err(|message| ProviderError::Fatal {
                status: Some(200),
                message: format!("{}: {message}", self.endpoint.name),
            })
        })
    }
}

// ---- wire types (private) -------------------------------------------------------------

#[derive(Serialize)]
struct WireRequest<'a> {
    model: &'a str,
    messages: Vec<Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_completion_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    /// Only when the config asks for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
}

#[derive(Deserialize)]
struct WireResponse {
    #[serde(default)]
    choices: Vec<WireChoice>,
    #[serde(default)]
    usage: Option<WireUsage>,
    /// Some gateways (OpenRouter) report upstream failures in a 200 answer.
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct WireChoice {
    message: WireMessage,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireMessage {
    /// A string, null, or (some servers) an array of `{type: "text", text}` parts.
    #[serde(default)]
    content: Value,
    #[serde(default)]
    refusal: Option<String>,
    #[serde(default)]
    tool_calls: Vec<WireToolCall>,
}

#[derive(Deserialize)]
struct WireToolCall {
    #[serde(default)]
    id: Option<String>,
    function: WireFunction,
}

#[derive(Deserialize)]
struct WireFunction {
    name: String,
    /// A JSON string per the spec; some servers send the object itself.
    #[serde(default)]
    arguments: Value,
}

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    prompt_tokens_details: Option<PromptTokensDetails>,
}

#[derive(Debug, Deserialize)]
struct PromptTokensDetails {
    #[serde(default)]
    cached_tokens: u64,
}

// ---- conversion -----------------------------------------------------------------------

fn to_wire<'a>(request: &'a ModelRequest<'a>, field: MaxTokensField) -> WireRequest<'a> {
    let mut messages = Vec::with_capacity(request.messages.len() + 1);
    if !request.system.trim().is_empty() {
        messages.push(json!({"role": "system", "content": request.system}));
    }
    for message in request.messages {
        match message.role {
            Role::User => user_to_wire(message, &mut messages),
            Role::Assistant => messages.push(assistant_to_wire(message)),
        }
    }
    WireRequest {
        model: request.model,
        messages,
        tools: request.tools.iter().map(tool_to_wire).collect(),
        max_completion_tokens: (field == MaxTokensField::MaxCompletionTokens)
            .then_some(request.max_tokens),
        max_tokens: (field == MaxTokensField::MaxTokens).then_some(request.max_tokens),
        temperature: None,
    }
}

/// Tool results first (they must directly follow the assistant's `tool_calls`), then the
/// message's text as one `user` message.
fn user_to_wire(message: &Message, out: &mut Vec<Value>) {
    let mut texts = Vec::new();
    for block in &message.content {
        match block {
            Block::Text { text } if !text.trim().is_empty() => texts.push(text.as_str()),
            Block::ToolResult {
                tool_use_id,
                content,
                is_error,
            } => {
                let content = if *is_error {
                    format!("Error: {content}")
                } else {
                    content.clone()
                };
                out.push(json!({"role": "tool", "tool_call_id": tool_use_id, "content": content}));
            }
            _ => {}
        }
    }
    if !texts.is_empty() {
        out.push(json!({"role": "user", "content": texts.join("\n\n")}));
    }
}

fn assistant_to_wire(message: &Message) -> Value {
    let text = message.text();
    let tool_calls: Vec<Value> = message
        .tool_uses()
        .map(|(id, name, input)| {
            json!({
                "id": id,
                "type": "function",
                "function": {"name": name, "arguments": input.to_string()},
            })
        })
        .collect();
    let mut wire = json!({"role": "assistant"});
    wire["content"] = if text.is_empty() && !tool_calls.is_empty() {
        Value::Null
    } else {
        Value::String(text)
    };
    if !tool_calls.is_empty() {
        wire["tool_calls"] = Value::Array(tool_calls);
    }
    wire
}

fn tool_to_wire(tool: &ToolSpec) -> Value {
    json!({
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description,
            "parameters": tool.input_schema,
        },
    })
}

fn from_wire(response: WireResponse) -> Result<ModelResponse, String> {
    let Some(choice) = response.choices.into_iter().next() else {
        let reported = response
            .error
            .as_ref()
            .and_then(|e| e.get("message").or(Some(e)))
            .map(|m| m.as_str().map_or_else(|| m.to_string(), str::to_string));
        return Err(match reported {
            Some(message) => format!(
                "the answer has no choices; it reported: {}",
                crate::text::truncate_chars(&message, 500)
            ),
            None => "the answer has no choices".to_string(),
        });
    };
    let mut content = Vec::new();
    let text = content_text(&choice.message.content)
        .or(choice.message.refusal)
        .unwrap_or_default();
    if !text.is_empty() {
        content.push(Block::Text { text });
    }
    let has_tool_calls = !choice.message.tool_calls.is_empty();
    for call in choice.message.tool_calls {
        let id = call
            .id
            .filter(|id| !id.is_empty())
            .unwrap_or_else(generate_call_id);
        content.push(Block::ToolUse {
            id,
            name: call.function.name,
            input: parse_arguments(call.function.arguments),
        });
    }
    // An empty message is a failed call, never an empty final answer (as on the
    // Anthropic path).
    let useful = content.iter().any(|b| match b {
        Block::Text { text } => !text.trim().is_empty(),
        _ => true,
    });
    if !useful {
        return Err(format!(
            "the answer has no text or tool call (an empty assistant message, finish_reason \
             {}); nothing to continue with",
            choice.finish_reason.as_deref().unwrap_or("none")
        ));
    }
    let stop_reason = match choice.finish_reason.as_deref() {
        // Some servers (Ollama) say "stop" even when they ask for tools.
        Some("tool_calls" | "function_call") => StopReason::ToolUse,
        Some("stop") | None if has_tool_calls => StopReason::ToolUse,
        Some("stop") => StopReason::EndTurn,
        Some("length") => StopReason::MaxTokens,
        Some(other) => StopReason::Other(other.to_string()),
        None => StopReason::EndTurn,
    };
    let usage = response.usage.map_or_else(Usage::default, |u| Usage {
        input_tokens: u.prompt_tokens,
        output_tokens: u.completion_tokens,
        cache_read_tokens: u.prompt_tokens_details.map_or(0, |d| d.cached_tokens),
        cache_write_tokens: 0,
    });
    Ok(ModelResponse {
        message: Message {
            role: Role::Assistant,
            content,
        },
        stop_reason,
        usage,
    })
}

fn content_text(content: &Value) -> Option<String> {
    match content {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => {
            let texts: Vec<&str> = parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect();
            (!texts.is_empty()).then(|| texts.join(""))
        }
        _ => None,
    }
}

/// Arguments string → JSON. Empty means no arguments; invalid JSON is kept under
/// [`INVALID_ARGUMENTS_KEY`] for the tool layer to report.
fn parse_arguments(arguments: Value) -> Value {
    match arguments {
        Value::String(s) if s.trim().is_empty() => json!({}),
        Value::String(s) => match serde_json::from_str::<Value>(&s) {
            Ok(value) => value,
            Err(_) => json!({ INVALID_ARGUMENTS_KEY: s }),
        },
        Value::Null => json!({}),
        other => other,
    }
}

fn generate_call_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("call_flotilla_{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
