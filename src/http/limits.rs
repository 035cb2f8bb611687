//! Request limits and the in-flight call tracker for graceful shutdown.
//!
//! Every request body is read here, before any handler sees it: at most
//! [`MAX_BODY_BYTES`] (413 beyond, without reading further) within [`BODY_TIMEOUT`]
//! (408 for a client that trickles its body). A POST that is an MCP call holds a
//! token of the [`Calls`] tracker until its response body has been sent, so shutdown
//! can let calls in flight finish. `wait_for_agents` is one of them: at shutdown it
//! answers at once (timed out, with a note), so it does not hold the drain.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use http_body::Frame;
use tokio_util::task::TaskTracker;
use tokio_util::task::task_tracker::TaskTrackerToken;

/// The largest request body accepted.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// How long a client may take to send its request body.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// An oversized body up to this size is read to its end (and discarded) before the
/// 413 goes out: a client still sending when the connection closed would otherwise
/// get a broken pipe instead of the answer. Beyond it, the 413 comes at once.
const DISCARD_LIMIT: u64 = 64 * 1024 * 1024;

/// Calls in flight (responses not yet fully sent).
#[derive(Clone, Default)]
pub struct Calls(TaskTracker);

impl Calls {
    /// Wait until every call in flight has been answered, or `grace` passes. Returns
    /// whether they all were.
    pub async fn drain(&self, grace: Duration) -> bool {
        self.0.close();
        tokio::time::timeout(grace, self.0.wait()).await.is_ok()
    }

    pub fn in_flight(&self) -> usize {
        self.0.len()
    }
}

/// Middleware: cap and time the body, then track the call until its response ends.
pub async fn limit(State(calls): State<Calls>, request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > DISCARD_LIMIT) {
        return too_large();
    }
    let (parts, body) = request.into_parts();
    let bytes = match tokio::time::timeout(BODY_TIMEOUT, read_capped(body)).await {
        Err(_) => {
            return (
                StatusCode::REQUEST_TIMEOUT,
                format!("the request body did not arrive within {BODY_TIMEOUT:?}\n"),
            )
                .into_response();
        }
        Ok(Err(Read::TooLarge)) => return too_large(),
        Ok(Err(Read::Failed(e))) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("cannot read the request body: {e}\n"),
            )
                .into_response();
        }
        Ok(Ok(bytes)) => bytes,
    };
    let token = (parts.method == Method::POST).then(|| calls.0.token());
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    match token {
        None => response,
        Some(token) => response.map(|body| {
            Body::new(Tracked {
                inner: body,
                _token: token,
            })
        }),
    }
}

fn too_large() -> Response {
    (
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "the request body is larger than {} MiB\n",
            MAX_BODY_BYTES / 1024 / 1024
        ),
    )
        .into_response()
}

enum Read {
    TooLarge,
    Failed(axum::Error),
}

/// The body, if it is at most [`MAX_BODY_BYTES`]; a larger one is read on (and
/// dropped) up to [`DISCARD_LIMIT`] so the client can take the 413.
async fn read_capped(body: Body) -> Result<Bytes, Read> {
    let mut stream = body.into_data_stream();
    let mut buf = Vec::new();
    let mut discarded: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(Read::Failed)?;
        if discarded > 0 || buf.len() + chunk.len() > MAX_BODY_BYTES {
            discarded += (buf.len() + chunk.len()) as u64;
            buf = Vec::new();
            if discarded > DISCARD_LIMIT {
                break;
            }
            continue;
        }
        buf.extend_from_slice(&chunk);
    }
    if discarded > 0 {
        return Err(Read::TooLarge);
    }
    Ok(Bytes::from(buf))
}

/// A response body that keeps its call counted until it has been sent (or dropped).
struct Tracked {
    inner: Body,
    _token: TaskTrackerToken,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tracked_bodies_hold_the_drain_until_sent() {
        let calls = Calls::default();
        let body = Tracked {
            inner: Body::from("x"),
            _token: calls.0.token(),
        };
        assert_eq!(calls.in_flight(), 1);
        let early = calls.clone();
        assert!(!early.drain(Duration::from_millis(10)).await);
        let bytes = axum::body::to_bytes(Body::new(body), 10).await.unwrap();
        assert_eq!(&bytes[..], b"x");
        assert!(calls.drain(Duration::from_millis(10)).await);
    }
}
