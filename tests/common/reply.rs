//! What the mock sends back for one scripted step, in each wire format: the JSON body,
//! or — when the request asked for `"stream": true` (Claude Code always does, Codex
//! always does) — the same answer as Server-Sent Events; and the providers' error bodies.

use axum::body::Bytes;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::mock_model::{Action, Format};
use super::{gemini, responses, wire};

/// A reply ready to go out after the step's delay.
pub struct Reply {
    pub status: StatusCode,
    pub body: Bytes,
    /// The body is an SSE stream (`text/event-stream`).
    pub sse: bool,
    /// A `retry-after` header, in seconds.
    pub retry_after: Option<u64>,
}

impl Reply {
    /// Bytes to trickle while the reply waits for its delay: insignificant whitespace in
    /// JSON, a comment line in SSE.
    pub fn filler(&self) -> &'static [u8] {
        if self.sse { b":\n" } else { b" " }
    }

    /// Status and headers of this reply around `body` (its own, or a delayed stream).
    pub fn respond(&self, body: axum::body::Body) -> Response {
        let kind = if self.sse {
            "text/event-stream"
        } else {
            "application/json"
        };
        let mut response = (self.status, [("content-type", kind)], body).into_response();
        if let Some(v) = self
            .retry_after
            .and_then(|s| HeaderValue::from_str(&s.to_string()).ok())
        {
            response.headers_mut().insert("retry-after", v);
        }
        response
    }

    /// The whole reply at once.
    pub fn into_response(self) -> Response {
        let body = axum::body::Body::from(self.body.clone());
        self.respond(body)
    }
}

/// Whether the request asked for a streamed answer (only the formats that can stream;
/// Gemini by its method, in `path`).
pub fn wants_stream(format: Format, path: &str, body: &Value) -> bool {
    match format {
        Format::OpenAi => false,
        Format::Gemini => path.ends_with(":streamGenerateContent"),
        Format::Anthropic | Format::Responses => body["stream"] == true,
    }
}

/// The answer to a successful step (text, tool calls, cut off).
pub fn answer(
    format: Format,
    path: &str,
    action: &Action,
    usage: (u64, u64),
    n: u64,
    request: &Value,
) -> Reply {
    let model = request["model"].as_str().unwrap_or("mock");
    let json = match format {
        Format::Anthropic => wire::anthropic_reply(model, action, usage, n),
        Format::OpenAi => wire::openai_reply(model, action, usage, n),
        Format::Responses => responses::reply(model, action, usage, n, request),
        Format::Gemini => gemini::reply(action, usage, n),
    };
    if !wants_stream(format, path, request) {
        return Reply {
            status: StatusCode::OK,
            body: Bytes::from(json.to_string()),
            sse: false,
            retry_after: None,
        };
    }
    let body = match format {
        Format::Responses => encode(&responses::events(&json)),
        Format::Gemini => gemini::sse(&json),
        _ => encode(&anthropic_events(&json)),
    };
    Reply {
        status: StatusCode::OK,
        body,
        sse: true,
        retry_after: None,
    }
}

/// The first bytes of an answer and nothing after: for a stream its first event, for
/// JSON a cut-off object.
pub fn stall_head(format: Format, path: &str, n: u64, request: &Value) -> (Bytes, bool) {
    if format == Format::Gemini && wants_stream(format, path, request) {
        return (gemini::stall_head(), true);
    }
    if wants_stream(format, path, request) {
        let reply = answer(
            format,
            path,
            &Action::Text(String::new()),
            (0, 0),
            n,
            request,
        );
        let first = reply
            .body
            .windows(2)
            .position(|w| w == b"\n\n")
            .map_or(reply.body.clone(), |end| reply.body.slice(..end + 2));
        (first, true)
    } else {
        (Bytes::from_static(b"{\"id\": \"msg_"), false)
    }
}

/// `event: NAME\ndata: JSON\n\n` per event.
pub fn encode(events: &[(String, Value)]) -> Bytes {
    let mut out = String::new();
    for (name, data) in events {
        out.push_str(&format!("event: {name}\ndata: {data}\n\n"));
    }
    Bytes::from(out)
}

/// The Messages streaming events for a complete `message`: message_start, ping, per
/// content block start → delta → stop, message_delta (stop reason, output tokens),
/// message_stop.
pub fn anthropic_events(message: &Value) -> Vec<(String, Value)> {
    let mut ev: Vec<(String, Value)> = Vec::new();
    let mut push = |name: &str, mut data: Value| {
        data["type"] = json!(name);
        ev.push((name.to_string(), data));
    };
    let mut head = message.clone();
    head["content"] = json!([]);
    head["stop_reason"] = Value::Null;
    head["usage"]["output_tokens"] = json!(1);
    push("message_start", json!({"message": head}));
    push("ping", json!({}));
    let blocks = message["content"].as_array().cloned().unwrap_or_default();
    for (index, block) in blocks.iter().enumerate() {
        let (start, delta) = if block["type"] == "tool_use" {
            let mut start = block.clone();
            start["input"] = json!({});
            let partial = block["input"].to_string();
            (
                start,
                json!({"type": "input_json_delta", "partial_json": partial}),
            )
        } else {
            let text = block["text"].clone();
            (
                json!({"type": "text", "text": ""}),
                json!({"type": "text_delta", "text": text}),
            )
        };
        push(
            "content_block_start",
            json!({"index": index, "content_block": start}),
        );
        push(
            "content_block_delta",
            json!({"index": index, "delta": delta}),
        );
        push("content_block_stop", json!({"index": index}));
    }
    push(
        "message_delta",
        json!({"delta": {"stop_reason": message["stop_reason"], "stop_sequence": null},
               "usage": {"output_tokens": message["usage"]["output_tokens"]}}),
    );
    push("message_stop", json!({}));
    ev
}

/// The provider's error body with `status` (and `retry-after` when given).
pub fn error(format: Format, status: u16, message: &str, retry_after: Option<u64>) -> Reply {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let kind = match status.as_u16() {
        429 => "rate_limit_error",
        529 => "overloaded_error",
        400 => "invalid_request_error",
        401 => "authentication_error",
        404 => "not_found_error",
        _ => "api_error",
    };
    let body = match format {
        Format::Anthropic => json!({"type": "error", "error": {"type": kind, "message": message}}),
        Format::OpenAi | Format::Responses => {
            json!({"error": {"message": message, "type": kind, "code": null}})
        }
        Format::Gemini => gemini::error(status.as_u16(), message),
    };
    Reply {
        status,
        body: Bytes::from(body.to_string()),
        sse: false,
        retry_after,
    }
}
