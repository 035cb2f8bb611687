//! Anthropic Messages API (`POST {base}/v1/messages`, non-streaming).
//!
//! Converts the neutral [`ModelRequest`] to the wire format and back. Prompt caching is
//! always on: the system prompt and the last block of the last message carry
//! `cache_control: {type: "ephemeral"}`, so each step of an agent loop re-reads the
//! conversation so far from the cache instead of paying for it again.

use reqwest::Client;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::http::{Endpoint, EndpointConfig};
use super::{BoxFuture, Provider, ProviderError};
use crate::model::{
    Block, Message, ModelRequest, ModelResponse, Role, StopReason, ToolSpec, Usage,
};

/// The API version we speak.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// A provider speaking the Anthropic Messages API.
#[derive(Debug)]
pub struct AnthropicProvider {
    client: Client,
    endpoint: Endpoint,
}

impl AnthropicProvider {
    /// Sends `anthropic-version: 2023-06-01` unless `config.headers` sets it.
    /// Fails only when a header (key or extra header) is not valid HTTP.
    pub fn new(client: Client, config: &EndpointConfig) -> Result<Self, String> {
        let mut config = config.clone();
        if !config
            .headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("anthropic-version"))
        {
            config.headers.push((
                "anthropic-version".to_string(),
                ANTHROPIC_VERSION.to_string(),
            ));
        }
        let endpoint = Endpoint::new(&config, "/v1/messages", |key| {
            vec![("x-api-key", key.to_string())]
        })?;
        Ok(Self { client, endpoint })
    }
}

impl Provider for AnthropicProvider {
    fn complete<'a>(
        &'a self,
        request: &'a ModelRequest<'a>,
    ) -> BoxFuture<'a, Result<ModelResponse, ProviderError>> {
        Box::pin(async move {
            let mut body = to_wire(request);
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
    max_tokens: u32,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    system: Vec<WireContent<'a>>,
    messages: Vec<WireMessage<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<WireTool<'a>>,
    /// Only when the config asks for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
}

#[derive(Serialize)]
struct WireMessage<'a> {
    role: &'static str,
    content: Vec<WireContent<'a>>,
}

/// One content block plus its optional cache breakpoint. Borrows from the
/// conversation: a request is serialised without copying it first.
#[derive(Serialize)]
struct WireContent<'a> {
    #[serde(flatten)]
    block: WireBlock<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_control: Option<CacheControl>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireBlock<'a> {
    Text {
        text: &'a str,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: &'a Value,
    },
    ToolResult {
        tool_use_id: &'a str,
        content: &'a str,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        is_error: bool,
    },
}

#[derive(Serialize)]
struct CacheControl {
    #[serde(rename = "type")]
    kind: &'static str,
}

const EPHEMERAL: CacheControl = CacheControl { kind: "ephemeral" };

#[derive(Serialize)]
struct WireTool<'a> {
    name: &'a str,
    description: &'a str,
    input_schema: &'a Value,
}

#[derive(Deserialize)]
struct WireResponse {
    /// `message`; an error body sent with status 200 says `error`.
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    error: Option<Value>,
    #[serde(default)]
    content: Option<Vec<WireResponseBlock>>,
    stop_reason: Option<String>,
    #[serde(default)]
    usage: WireUsage,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireResponseBlock {
    Text {
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        #[serde(default)]
        input: Value,
    },
    /// thinking, redacted_thinking, server tool blocks…: not part of our conversation.
    #[serde(other)]
    Other,
}

#[derive(Deserialize, Default)]
struct WireUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
}

// ---- conversion -----------------------------------------------------------------------

fn to_wire<'a>(request: &'a ModelRequest<'a>) -> WireRequest<'a> {
    let system = if request.system.trim().is_empty() {
        Vec::new()
    } else {
        vec![WireContent {
            block: WireBlock::Text {
                text: request.system,
            },
            cache_control: Some(EPHEMERAL),
        }]
    };
    let mut messages: Vec<WireMessage> = request.messages.iter().map(message_to_wire).collect();
    if let Some(last) = messages.last_mut().and_then(|m| m.content.last_mut()) {
        last.cache_control = Some(EPHEMERAL);
    }
    WireRequest {
        model: request.model,
        max_tokens: request.max_tokens,
        system,
        messages,
        tools: request.tools.iter().map(tool_to_wire).collect(),
        temperature: None,
    }
}

fn message_to_wire(message: &Message) -> WireMessage<'_> {
    let mut content: Vec<WireContent> = message
        .content
        .iter()
        .filter_map(|block| {
            let block = match block {
                // The API rejects empty text blocks.
                Block::Text { text } if text.trim().is_empty() => return None,
                Block::Text { text } => WireBlock::Text { text },
                Block::ToolUse { id, name, input } => WireBlock::ToolUse { id, name, input },
                Block::ToolResult {
                    tool_use_id,
                    content,
                    is_error,
                } => WireBlock::ToolResult {
                    tool_use_id,
                    content,
                    is_error: *is_error,
                },
            };
            Some(WireContent {
                block,
                cache_control: None,
            })
        })
        .collect();
    if content.is_empty() {
        // Every message needs at least one non-empty block.
        content.push(WireContent {
            block: WireBlock::Text { text: "(empty)" },
            cache_control: None,
        });
    }
    WireMessage {
        role: match message.role {
            Role::User => "user",
            Role::Assistant => "assistant",
        },
        content,
    }
}

fn tool_to_wire(tool: &ToolSpec) -> WireTool<'_> {
    WireTool {
        name: &tool.name,
        description: &tool.description,
        input_schema: &tool.input_schema,
    }
}

/// The neutral response, or why the answer cannot be used: an error body, no
/// `content`, or no text or tool call in it (e.g. only block types we do not know).
/// Such an answer is a failed call, never an empty final answer.
fn from_wire(response: WireResponse) -> Result<ModelResponse, String> {
    if response.kind.as_deref() == Some("error") || response.error.is_some() {
        let reported = response
            .error
            .as_ref()
            .and_then(|e| e.get("message").or(Some(e)))
            .map(|m| m.as_str().map_or_else(|| m.to_string(), str::to_string))
            .unwrap_or_default();
        return Err(format!(
            "the answer is an error: {}",
            crate::text::truncate_chars(&reported, 500)
        ));
    }
    let Some(blocks) = response.content else {
        return Err("the answer has no `content`; nothing to continue with".to_string());
    };
    let received = blocks.len();
    let content: Vec<Block> = blocks
        .into_iter()
        .filter_map(|block| match block {
            WireResponseBlock::Text { text } => Some(Block::Text { text }),
            WireResponseBlock::ToolUse { id, name, input } => Some(Block::ToolUse {
                id,
                name,
                // A tool without arguments may come back as `null`; tools expect an object.
                input: if input.is_null() {
                    Value::Object(Default::default())
                } else {
                    input
                },
            }),
            WireResponseBlock::Other => None,
        })
        .collect();
    let useful = content.iter().any(|b| match b {
        Block::Text { text } => !text.trim().is_empty(),
        _ => true,
    });
    if !useful {
        return Err(format!(
            "the answer has no text or tool call ({received} content block{} of other kinds, \
             stop_reason {}); nothing to continue with",
            if received == 1 { "" } else { "s" },
            response.stop_reason.as_deref().unwrap_or("none")
        ));
    }
    let stop_reason = match response.stop_reason.as_deref() {
        Some("end_turn") => StopReason::EndTurn,
        Some("tool_use") => StopReason::ToolUse,
        Some("max_tokens") => StopReason::MaxTokens,
        Some(other) => StopReason::Other(other.to_string()),
        None => StopReason::Other("none".to_string()),
    };
    let u = response.usage;
    Ok(ModelResponse {
        message: Message {
            role: Role::Assistant,
            content,
        },
        stop_reason,
        usage: Usage {
            input_tokens: u.input_tokens
                + u.cache_creation_input_tokens.unwrap_or(0)
                + u.cache_read_input_tokens.unwrap_or(0),
            output_tokens: u.output_tokens,
            cache_read_tokens: u.cache_read_input_tokens.unwrap_or(0),
            cache_write_tokens: u.cache_creation_input_tokens.unwrap_or(0),
        },
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample_messages() -> Vec<Message> {
        vec![
            Message::user_text("list the files"),
            Message {
                role: Role::Assistant,
                content: vec![
                    Block::Text {
                        text: "Looking.".into(),
                    },
                    Block::ToolUse {
                        id: "toolu_1".into(),
                        name: "list_files".into(),
                        input: json!({"path": "."}),
                    },
                ],
            },
            Message {
                role: Role::User,
                content: vec![Block::ToolResult {
                    tool_use_id: "toolu_1".into(),
                    content: "no such dir".into(),
                    is_error: true,
                }],
            },
        ]
    }

    #[test]
    fn request_to_wire() {
        let messages = sample_messages();
        let tools = vec![ToolSpec {
            name: "list_files".into(),
            description: "List files".into(),
            input_schema: json!({"type": "object", "properties": {"path": {"type": "string"}}}),
        }];
        let request = ModelRequest {
            model: "claude-sonnet-4-5",
            system: "You are helpful.",
            messages: &messages,
            tools: &tools,
            max_tokens: 1024,
        };
        let wire = serde_json::to_value(to_wire(&request)).unwrap();
        assert_eq!(
            wire,
            json!({
                "model": "claude-sonnet-4-5",
                "max_tokens": 1024,
                "system": [{"type": "text", "text": "You are helpful.",
                            "cache_control": {"type": "ephemeral"}}],
                "messages": [
                    {"role": "user", "content": [{"type": "text", "text": "list the files"}]},
                    {"role": "assistant", "content": [
                        {"type": "text", "text": "Looking."},
                        {"type": "tool_use", "id": "toolu_1", "name": "list_files",
                         "input": {"path": "."}}
                    ]},
                    {"role": "user", "content": [
                        {"type": "tool_result", "tool_use_id": "toolu_1",
                         "content": "no such dir", "is_error": true,
                         "cache_control": {"type": "ephemeral"}}
                    ]}
                ],
                "tools": [{"name": "list_files", "description": "List files",
                           "input_schema": {"type": "object",
                                            "properties": {"path": {"type": "string"}}}}]
            })
        );
    }

    #[test]
    fn empty_system_tools_and_text_are_left_out() {
        let messages = vec![Message {
            role: Role::User,
            content: vec![
                Block::Text { text: "  ".into() },
                Block::ToolResult {
                    tool_use_id: "t".into(),
                    content: "ok".into(),
                    is_error: false,
                },
            ],
        }];
        let request = ModelRequest {
            model: "m",
            system: "",
            messages: &messages,
            tools: &[],
            max_tokens: 10,
        };
        let wire = serde_json::to_value(to_wire(&request)).unwrap();
        assert_eq!(wire.get("system"), None);
        assert_eq!(wire.get("tools"), None);
        assert_eq!(
            wire["messages"][0]["content"],
            json!([{"type": "tool_result", "tool_use_id": "t", "content": "ok",
                    "cache_control": {"type": "ephemeral"}}])
        );
    }

    #[test]
    fn response_from_wire() {
        let body = json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude",
            "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "x"},
                {"type": "text", "text": "I'll read it."},
                {"type": "tool_use", "id": "toolu_9", "name": "read_file",
                 "input": {"path": "a.txt"}}
            ],
            "stop_reason": "tool_use",
            "usage": {"input_tokens": 10, "cache_creation_input_tokens": 100,
                      "cache_read_input_tokens": 1000, "output_tokens": 7}
        });
        let wire: WireResponse = serde_json::from_value(body).unwrap();
        let response = from_wire(wire).unwrap();
        assert_eq!(
            response,
            ModelResponse {
                message: Message {
                    role: Role::Assistant,
                    content: vec![
                        Block::Text {
                            text: "I'll read it.".into()
                        },
                        Block::ToolUse {
                            id: "toolu_9".into(),
                            name: "read_file".into(),
                            input: json!({"path": "a.txt"}),
                        },
                    ],
                },
                stop_reason: StopReason::ToolUse,
                usage: Usage {
                    input_tokens: 1110,
                    output_tokens: 7,
                    cache_read_tokens: 1000,
                    cache_write_tokens: 100,
                },
            }
        );
    }

    #[test]
    fn stop_reasons() {
        for (wire, ours) in [
            ("end_turn", StopReason::EndTurn),
            ("max_tokens", StopReason::MaxTokens),
            ("refusal", StopReason::Other("refusal".into())),
        ] {
            let body = json!({"content": [{"type": "text", "text": "x"}], "stop_reason": wire,
                              "usage": {"input_tokens": 1, "output_tokens": 1}});
            let response = from_wire(serde_json::from_value(body).unwrap()).unwrap();
            assert_eq!(response.stop_reason, ours);
        }
    }

    #[test]
    fn answers_without_usable_content_are_errors() {
        for (body, says) in [
            (
                json!({"type": "message", "stop_reason": "end_turn"}),
                "no `content`",
            ),
            (
                json!({"content": [], "stop_reason": "end_turn"}),
                "no text or tool call",
            ),
            (
                json!({"content": [{"type": "mystery", "x": 1}, {"type": "thinking"}]}),
                "2 content blocks of other kinds",
            ),
            (
                json!({"content": [{"type": "text", "text": "  "}]}),
                "no text",
            ),
            (
                json!({"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}),
                "error: busy",
            ),
        ] {
            let e = from_wire(serde_json::from_value(body.clone()).unwrap()).unwrap_err();
            assert!(e.contains(says), "{body}: {e}");
        }
    }
}
