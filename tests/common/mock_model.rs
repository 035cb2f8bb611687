//! A scripted mock model server: a real axum HTTP server on `127.0.0.1:0` that speaks
//! the wire formats flotilla and the agent CLIs use:
//!
//! - Anthropic Messages, `POST /v1/messages` (JSON, or SSE when the request streams, as
//!   Claude Code's always do)
//! - OpenAI Chat Completions, `POST /v1/chat/completions` (JSON)
//! - OpenAI Responses, `POST /v1/responses` (SSE when streamed, as Codex's always are;
//!   see [`super::responses`])
//! - Gemini, `POST /v1beta/models/<model>:streamGenerateContent?alt=sse` (SSE, as
//!   Gemini CLI's are) and `:generateContent` (JSON; see [`super::gemini`])
//!
//! Tests register *scripts*: a queue of [`Step`]s under a key such as `"[alpha]"`. A request
//! is routed to the script whose key appears in the first user message of its conversation,
//! so many agents can run in parallel, each with its own script. Each request pops the next
//! step. When a script is exhausted (or no key matches) the mock answers a plain `"done"`,
//! so nothing hangs.
//!
//! Every request is recorded ([`Recorded`]) so tests assert on what the server sent, and
//! the mock counts requests in flight to prove parallelism. It also checks the protocol
//! rules the real APIs enforce (alternating roles, tool results answering the tool calls
//! of the previous assistant turn, ...) and answers a 400 when they are broken, recording
//! the problem in [`Recorded::problems`].

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

pub use super::script::{Action, Step};
use super::{reply, wire};

/// Which wire format a request used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Anthropic,
    OpenAi,
    /// The OpenAI Responses API (Codex).
    Responses,
    /// The Gemini API (Gemini CLI).
    Gemini,
}

/// One request the mock received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// 0-based arrival order.
    pub seq: usize,
    pub format: Format,
    pub path: String,
    /// Header names lower-cased.
    pub headers: HashMap<String, String>,
    pub body: Value,
    /// The script key the request was routed to, if any.
    pub key: Option<String>,
    pub received_at: Instant,
    /// Protocol violations found in the request (the mock answered 400).
    pub problems: Vec<String>,
    /// Ids of the tool calls in the mock's reply, in order.
    pub issued_ids: Vec<String>,
}

impl Recorded {
    /// Routed to `key`, or unscripted with `key` in its first user message.
    pub fn is_for(&self, key: &str) -> bool {
        match &self.key {
            Some(k) => k == key,
            None => self.first_user_text().contains(key),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_lowercase()).map(String::as_str)
    }

    /// The system prompt (Anthropic `system`, OpenAI `system` messages, Responses
    /// `instructions` and developer messages), joined.
    pub fn system_text(&self) -> String {
        wire::system_text(self.format, &self.body)
    }

    /// The text of the first user message (Responses: of every user message).
    pub fn first_user_text(&self) -> String {
        wire::first_user_text(self.format, &self.body)
    }

    /// Names of the tools offered to the model.
    pub fn tool_names(&self) -> Vec<String> {
        wire::tool_names(self.format, &self.body)
    }

    /// Tool results sent back to the model, in order, over the whole conversation.
    pub fn tool_results(&self) -> Vec<wire::ToolResult> {
        wire::tool_results(self.format, &self.body)
    }

    /// Ids of the tool calls in the conversation's assistant messages, in order.
    pub fn tool_call_ids(&self) -> Vec<String> {
        wire::tool_call_ids(self.format, &self.body)
    }

    /// Number of messages in the conversation (system messages excluded).
    pub fn message_count(&self) -> usize {
        wire::messages(self.format, &self.body)
            .iter()
            .filter(|m| m["role"] != "system")
            .count()
    }

    /// The whole body as a string, for "the request mentions X" checks.
    pub fn body_text(&self) -> String {
        self.body.to_string()
    }

    pub fn model(&self) -> &str {
        if self.format == Format::Gemini {
            return super::gemini::model(&self.path);
        }
        self.body["model"].as_str().unwrap_or_default()
    }
}

#[derive(Default)]
struct Inner {
    scripts: Mutex<HashMap<String, VecDeque<Step>>>,
    latency: Mutex<Duration>,
    requests: Mutex<Vec<Recorded>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    completed: AtomicUsize,
    ids: AtomicU64,
    changed: tokio::sync::Notify,
    /// While set, every request is answered with this HTTP status (scripts untouched).
    outage: Mutex<Option<u16>>,
}

/// Handle on a running mock model server. Cheap to clone; the server lives until the
/// test's runtime shuts down.
#[derive(Clone)]
pub struct MockModel {
    inner: Arc<Inner>,
    addr: std::net::SocketAddr,
}

impl MockModel {
    /// Binds `127.0.0.1:0` and starts serving.
    pub async fn start() -> Self {
        let inner = Arc::new(Inner::default());
        let app = Router::new()
            .route("/v1/messages", post(anthropic))
            .route("/v1/chat/completions", post(openai))
            .route("/v1/responses", post(responses))
            .route("/v1beta/models/{call}", post(gemini))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind mock model server");
        let addr = listener.local_addr().expect("mock model address");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { inner, addr }
    }

    /// `http://127.0.0.1:PORT` (the Anthropic base URL).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://127.0.0.1:PORT/v1` (the OpenAI base URL, Chat Completions and Responses).
    pub fn openai_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Registers (or extends) the script for `key`.
    pub fn script(&self, key: &str, steps: Vec<Step>) {
        let mut scripts = self.inner.scripts.lock().expect("scripts lock");
        scripts.entry(key.to_string()).or_default().extend(steps);
    }

    /// Drops the steps not yet consumed for `key`.
    pub fn clear(&self, key: &str) {
        let mut scripts = self.inner.scripts.lock().expect("scripts lock");
        scripts.remove(key);
    }

    /// Answer every request with `status` (e.g. 500) until called with `None`; the
    /// scripts are not consumed meanwhile.
    pub fn set_outage(&self, status: Option<u16>) {
        *self.inner.outage.lock().expect("outage lock") = status;
    }

    /// Delay applied to every reply whose step does not set its own.
    pub fn set_latency(&self, latency: Duration) {
        *self.inner.latency.lock().expect("latency lock") = latency;
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.requests.lock().expect("requests lock").clone()
    }

    /// Requests routed to `key`, plus unscripted ones whose first user message
    /// mentions it, in arrival order.
    pub fn requests_for(&self, key: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.is_for(key))
            .collect()
    }

    /// The most requests ever being answered at the same time.
    pub fn max_in_flight(&self) -> usize {
        self.inner.max_in_flight.load(Ordering::SeqCst)
    }

    /// Requests being answered right now (a request whose client hung up stops counting).
    pub fn in_flight(&self) -> usize {
        self.inner.in_flight.load(Ordering::SeqCst)
    }

    /// Requests whose reply was fully produced (not abandoned by the client).
    pub fn completed(&self) -> usize {
        self.inner.completed.load(Ordering::SeqCst)
    }

    /// Waits until no request is in flight or `within` has passed, woken by each
    /// request's start and end. (How soon a call is abandoned is what the callers
    /// assert, so they check [`MockModel::in_flight`] afterwards.)
    pub async fn wait_no_request_in_flight(&self, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            // Registered before looking: an end between the look and the wait counts.
            let changed = self.inner.changed.notified();
            if self.in_flight() == 0 || tokio::time::timeout_at(deadline, changed).await.is_err() {
                return;
            }
        }
    }

    /// Waits until `pred` holds over the recorded requests, or panics after `timeout`.
    pub async fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&[Recorded]) -> bool,
    ) -> Vec<Recorded> {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.inner.changed.notified();
            let reqs = self.requests();
            if pred(&reqs) {
                return reqs;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!(
                    "mock model: timed out after {timeout:?} waiting for {what}; {} requests: {:#?}",
                    reqs.len(),
                    reqs.iter()
                        .map(|r| (r.seq, r.path.clone(), r.key.clone()))
                        .collect::<Vec<_>>()
                );
            }
            let _ = tokio::time::timeout(left.min(Duration::from_millis(200)), notified).await;
        }
    }

    /// Waits until at least `n` requests were routed to `key`.
    pub async fn wait_requests(&self, key: &str, n: usize, timeout: Duration) -> Vec<Recorded> {
        let what = format!("{n} requests for {key}");
        self.wait_until(&what, timeout, |reqs| {
            reqs.iter()
                .filter(|r| r.key.as_deref() == Some(key))
                .count()
                >= n
        })
        .await
        .into_iter()
        .filter(|r| r.key.as_deref() == Some(key))
        .collect()
    }

    /// Panics if any request broke the wire protocol.
    pub fn assert_no_protocol_problems(&self) {
        let bad: Vec<_> = self
            .requests()
            .into_iter()
            .filter(|r| !r.problems.is_empty())
            .map(|r| (r.seq, r.path, r.problems))
            .collect();
        assert!(bad.is_empty(), "requests broke the wire protocol: {bad:#?}");
    }

    fn route(&self, first_user: &str) -> (Option<String>, Option<Step>) {
        let mut scripts = self.inner.scripts.lock().expect("scripts lock");
        let key = scripts
            .keys()
            .filter(|k| first_user.contains(k.as_str()))
            .max_by_key(|k| k.len())
            .cloned();
        let step = key
            .as_ref()
            .and_then(|k| scripts.get_mut(k))
            .and_then(VecDeque::pop_front);
        (key, step)
    }
}

/// Decrements the in-flight counter even when the client hangs up mid-request.
struct InFlight(Arc<Inner>);

impl InFlight {
    fn enter(inner: &Arc<Inner>) -> Self {
        let now = inner.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        inner.max_in_flight.fetch_max(now, Ordering::SeqCst);
        Self(inner.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.0.changed.notify_waiters();
    }
}

async fn anthropic(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    handle(inner, Format::Anthropic, "/v1/messages", headers, body).await
}

async fn openai(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    handle(inner, Format::OpenAi, "/v1/chat/completions", headers, body).await
}

async fn responses(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    handle(inner, Format::Responses, "/v1/responses", headers, body).await
}

async fn gemini(
    State(inner): State<Arc<Inner>>,
    axum::extract::Path(call): axum::extract::Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = format!("/v1beta/models/{call}");
    handle(inner, Format::Gemini, &path, headers, body).await
}

async fn handle(
    inner: Arc<Inner>,
    format: Format,
    path: &str,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let guard = InFlight::enter(&inner);
    let mock = MockModel {
        inner: inner.clone(),
        addr: ([127, 0, 0, 1], 0).into(),
    };
    let body: Value = serde_json::from_slice(&body)
        .unwrap_or_else(|e| json!({ "__unparseable__": e.to_string() }));
    let header_map: HashMap<String, String> = headers
        .iter()
        .map(|(k, v)| {
            let v = v.to_str().unwrap_or("<non-utf8>").to_string();
            (k.as_str().to_lowercase(), v)
        })
        .collect();
    let problems = wire::check(format, &header_map, &body);
    let outage = *inner.outage.lock().expect("outage lock");
    let (key, step) = if let Some(status) = outage.filter(|_| problems.is_empty()) {
        (None, Some(Step::fail(status)))
    } else if problems.is_empty() {
        mock.route(&wire::first_user_text(format, &body))
    } else {
        (None, None)
    };
    let step = step.unwrap_or_else(|| Step::text("done"));
    let n = inner.ids.fetch_add(1, Ordering::SeqCst);
    let issued_ids = match &step.action {
        Action::Tools(_, calls) => (0..calls.len())
            .map(|i| wire::call_id(format, n, i))
            .collect(),
        _ => Vec::new(),
    };
    {
        let mut reqs = inner.requests.lock().expect("requests lock");
        let seq = reqs.len();
        reqs.push(Recorded {
            seq,
            format,
            path: path.to_string(),
            headers: header_map,
            body: body.clone(),
            key,
            received_at: Instant::now(),
            problems: problems.clone(),
            issued_ids,
        });
    }
    inner.changed.notify_waiters();

    if !problems.is_empty() {
        let msg = format!("mock: malformed request: {}", problems.join("; "));
        drop(guard);
        return reply::error(format, 400, &msg, None).into_response();
    }

    match step.action {
        Action::Raw(status, body) => {
            drop(guard);
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            return (status, axum::Json(body)).into_response();
        }
        Action::Silent => {
            // Accept the request, then send nothing, not even a status line, until the
            // client hangs up (the handler is then dropped).
            drop(guard);
            return futures::future::pending::<Response>().await;
        }
        Action::Stall => {
            drop(guard);
            let (head, sse) = reply::stall_head(format, path, n, &body);
            let start = futures::stream::once(async { Ok::<_, std::convert::Infallible>(head) });
            let body = axum::body::Body::from_stream(futures::StreamExt::chain(
                start,
                futures::stream::pending(),
            ));
            let kind = if sse {
                "text/event-stream"
            } else {
                "application/json"
            };
            return (StatusCode::OK, [("content-type", kind)], body).into_response();
        }
        _ => {}
    }
    let latency = *inner.latency.lock().expect("latency lock");
    let delay = step.delay.unwrap_or(latency);
    let reply = match step.action {
        Action::Fail(status, msg) => reply::error(format, status, &msg, None),
        Action::RateLimit(secs) => reply::error(format, 429, "mock: rate limited", Some(secs)),
        action => reply::answer(format, path, &action, step.usage, n, &body),
    };
    // The head goes out at once, the body after the delay. While it waits the mock
    // trickles filler the client ignores (JSON whitespace, SSE comment lines): writing to
    // a client that hung up fails, hyper drops the stream, and the in-flight guard with
    // it, so `in_flight` and `completed` prove that a cancelled model call really was
    // abandoned.
    let deadline = tokio::time::Instant::now() + delay;
    let filler = reply.filler();
    let state = Some((guard, inner, reply.body.clone()));
    let stream = futures::stream::unfold(state, move |state| async move {
        let (guard, inner, bytes) = state?;
        let now = tokio::time::Instant::now();
        if now < deadline {
            tokio::time::sleep((deadline - now).min(Duration::from_millis(100))).await;
            return Some((
                Ok::<_, std::convert::Infallible>(Bytes::from_static(filler)),
                Some((guard, inner, bytes)),
            ));
        }
        inner.completed.fetch_add(1, Ordering::SeqCst);
        drop(guard);
        Some((Ok(bytes), None))
    });
    reply.respond(axum::body::Body::from_stream(stream))
}
