//! The dashboard's exit: one middleware over every dashboard route redacts what the
//! response carries with the fleet's [`Redactor`], so no handler has to remember it.
//!
//! - JSON (`/api/fleet`, `/api/agents/{name}`, `/api/timeline`, the controls): every
//!   string in the document;
//! - the live feed (`text/event-stream`): every `data:` line of every message, as JSON,
//!   as it streams;
//! - `/metrics` (text): the whole text, labels included.
//!
//! The page itself is static and passes untouched.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::Value;

use crate::plan::redact::Redactor;

use super::Dashboard;

/// Largest body buffered to redact (the snapshot and an agent's detail are far smaller).
const MAX_BODY: usize = 64 * 1024 * 1024;

/// What a response's content type says about how to redact it.
enum Kind {
    Json,
    Feed,
    Text,
    Other,
}

fn kind(res: &Response) -> Kind {
    let ct = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if ct.starts_with("application/json") {
        Kind::Json
    } else if ct.starts_with("text/event-stream") {
        Kind::Feed
    } else if ct.starts_with("text/plain") {
        Kind::Text
    } else {
        Kind::Other
    }
}

/// The middleware: the handler's response, redacted.
pub async fn layer(State(d): State<Arc<Dashboard>>, req: Request, next: Next) -> Response {
    let res = next.run(req).await;
    let redactor = d.registry.fleet().redactor.clone();
    match kind(&res) {
        Kind::Other => res,
        Kind::Feed => {
            let (parts, body) = res.into_parts();
            let stream = body
                .into_data_stream()
                .map(move |chunk| chunk.map(|b| feed_chunk(&redactor, b)));
            Response::from_parts(parts, Body::from_stream(stream))
        }
        k @ (Kind::Json | Kind::Text) => {
            let (mut parts, body) = res.into_parts();
            let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
                return withheld();
            };
            let clean = match k {
                Kind::Json => json(&redactor, &bytes),
                _ => text(&redactor, &bytes),
            };
            let Some(clean) = clean else {
                return withheld();
            };
            parts.headers.remove(header::CONTENT_LENGTH);
            if let Ok(len) = HeaderValue::from_str(&clean.len().to_string()) {
                parts.headers.insert(header::CONTENT_LENGTH, len);
            }
            Response::from_parts(parts, Body::from(clean))
        }
    }
}

/// A JSON document with every string redacted; `None` if it is not JSON.
fn json(r: &Redactor, bytes: &[u8]) -> Option<Vec<u8>> {
    let mut v: Value = serde_json::from_slice(bytes).ok()?;
    if !r.redact_json(&mut v) {
        return Some(bytes.to_vec());
    }
    serde_json::to_vec(&v).ok()
}

/// A text redacted; `None` if it is not UTF-8.
fn text(r: &Redactor, bytes: &[u8]) -> Option<Vec<u8>> {
    let s = std::str::from_utf8(bytes).ok()?;
    Some(r.redact(s).as_bytes().to_vec())
}

/// One chunk of the feed (axum writes each message whole): each `data:` line redacted as
/// JSON when it is JSON, every other line as text.
fn feed_chunk(r: &Redactor, bytes: Bytes) -> Bytes {
    let Ok(s) = std::str::from_utf8(&bytes) else {
        return Bytes::from_static(b": withheld: not UTF-8\n\n");
    };
    let mut out = String::with_capacity(s.len());
    for line in s.split_inclusive('\n') {
        let (body, end) = match line.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (line, ""),
        };
        match body.strip_prefix("data:") {
            Some(data) => {
                let mut v: Option<Value> = serde_json::from_str(data.trim_start()).ok();
                match v.as_mut() {
                    Some(v) => {
                        r.redact_json(v);
                        out.push_str("data: ");
                        out.push_str(&v.to_string());
                    }
                    None => out.push_str(&r.redact(body)),
                }
            }
            None => out.push_str(&r.redact(body)),
        }
        out.push_str(end);
    }
    Bytes::from(out)
}

/// What is sent when a body cannot be read back to redact it: nothing of it.
fn withheld() -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        "flotilla withheld this response: it could not be checked for secrets\n",
    )
        .into_response()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn feed_messages_are_redacted_line_by_line_and_stay_valid() {
        let r = Redactor::new(["flotilla-test-secret-Q7x9Lm2Vp4Rt8Wz".to_string()]);
        let chunk = Bytes::from(
            "event: agent\ndata: {\"summary\":\"run flotilla-test-secret-Q7x9L\\u200bm2\"}\n\n",
        );
        let out = feed_chunk(&r, chunk);
        let out = std::str::from_utf8(&out).unwrap();
        assert_eq!(
            out,
            "event: agent\ndata: {\"summary\":\"run [REDACTED]\"}\n\n"
        );
    }
}
