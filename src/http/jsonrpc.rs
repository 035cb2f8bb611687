//! Malformed JSON-RPC on `/mcp` gets the answers it gets on stdio: the body of every
//! POST is checked with [`crate::stdio::classify`] before rmcp sees it (rmcp alone
//! answers HTTP 415 in plain text to a body it cannot parse, and "method not found"
//! to `tools/call` with `arguments` that is not an object).
//!
//! - an error answer with an `id` (e.g. `-32602` for bad params) is the JSON-RPC
//!   response to that request: HTTP 200, `application/json`;
//! - one with `id: null` (`-32700` parse error, `-32600` invalid request) and a
//!   malformed notification or response (which JSON-RPC never answers) get HTTP 400
//!   with a JSON-RPC error body without a usable id, as the Streamable HTTP transport
//!   allows; an empty body is a parse error.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::stdio::{Verdict, classify, error};

/// Middleware on `/mcp`: answer malformed JSON-RPC; pass the rest on unchanged. The
/// body was already read (and capped) by [`super::limits`].
pub async fn check(request: Request, next: Next) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, super::limits::MAX_BODY_BYTES).await {
        Ok(bytes) => bytes,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("cannot read the request body: {e}\n"),
            )
                .into_response();
        }
    };
    if let Some(answer) = answer(&bytes) {
        return answer;
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// The answer to a malformed body; `None` when rmcp should have it.
fn answer(body: &[u8]) -> Option<Response> {
    let reply = if body.iter().all(u8::is_ascii_whitespace) {
        error(
            Value::Null,
            -32700,
            "Parse error: the request body is empty; send one JSON-RPC message",
        )
    } else {
        match classify(body) {
            Verdict::Forward => return None,
            Verdict::Reply(reply) => reply,
            Verdict::Drop(why) => error(Value::Null, -32600, &format!("Invalid Request: {why}")),
        }
    };
    let status = if reply["id"].is_null() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    tracing::warn!(
        code = reply["error"]["code"].as_i64().unwrap_or(0),
        "refused a message on {}: {}",
        super::MCP_PATH,
        reply["error"]["message"].as_str().unwrap_or_default()
    );
    Some(
        (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            reply.to_string(),
        )
            .into_response(),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_id() {
        assert_eq!(answer(b"nope").unwrap().status(), StatusCode::BAD_REQUEST);
        assert_eq!(answer(b"  ").unwrap().status(), StatusCode::BAD_REQUEST);
        let bad_args = br#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"x","arguments":"y"}}"#;
        assert_eq!(answer(bad_args).unwrap().status(), StatusCode::OK);
        let notification = br#"{"jsonrpc":"2.0","method":"notifications/x","params":3}"#;
        assert_eq!(
            answer(notification).unwrap().status(),
            StatusCode::BAD_REQUEST
        );
        assert!(answer(br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#).is_none());
    }
}
