//! What the mock model answers: a script is a queue of [`Step`]s (final text, tool
//! calls, HTTP errors, rate limits), each with an optional delay and token usage.

use std::time::Duration;

use serde_json::Value;

/// What the mock answers to one request.
#[derive(Debug, Clone)]
pub enum Action {
    /// A final answer (`end_turn` / `stop`).
    Text(String),
    /// Optional text plus one or more tool calls (`tool_use` / `tool_calls`).
    Tools(Option<String>, Vec<(String, Value)>),
    /// An HTTP error with the provider's error body.
    Fail(u16, String),
    /// 429 with a `retry-after` header (seconds).
    RateLimit(u64),
    /// Text cut off by the output-token limit (`max_tokens` / `length`).
    CutOff(String),
    /// This status and body, exactly (malformed answers).
    Raw(u16, Value),
    /// Status 200 and the first bytes of a body, then silence until the client hangs up.
    Stall,
    /// Not a byte, not even the status line, until the client hangs up.
    Silent,
}

/// One scripted reply, with an optional delay before it is sent.
#[derive(Debug, Clone)]
pub struct Step {
    pub action: Action,
    pub delay: Option<Duration>,
    pub usage: (u64, u64),
}

/// Tokens every reply reports unless a step says otherwise.
pub const DEFAULT_USAGE: (u64, u64) = (100, 20);

impl Step {
    fn new(action: Action) -> Self {
        Self {
            action,
            delay: None,
            usage: DEFAULT_USAGE,
        }
    }

    /// The model's final answer.
    pub fn text(text: impl Into<String>) -> Self {
        Self::new(Action::Text(text.into()))
    }

    /// One tool call.
    pub fn tool(name: &str, input: Value) -> Self {
        Self::tools(vec![(name, input)])
    }

    /// Several tool calls in one assistant turn.
    pub fn tools(calls: Vec<(&str, Value)>) -> Self {
        let calls = calls.into_iter().map(|(n, i)| (n.to_string(), i)).collect();
        Self::new(Action::Tools(None, calls))
    }

    /// An HTTP error status with a generic provider message.
    pub fn fail(status: u16) -> Self {
        Self::fail_with(status, &format!("mock provider failure (HTTP {status})"))
    }

    /// An HTTP error status with the given provider message.
    pub fn fail_with(status: u16, message: &str) -> Self {
        Self::new(Action::Fail(status, message.to_string()))
    }

    /// Text the output-token limit cut off.
    pub fn cut_off(text: impl Into<String>) -> Self {
        Self::new(Action::CutOff(text.into()))
    }

    /// 429 with `retry-after: secs`.
    pub fn rate_limit(retry_after_secs: u64) -> Self {
        Self::new(Action::RateLimit(retry_after_secs))
    }

    /// Answer exactly this status and JSON body.
    pub fn raw(status: u16, body: Value) -> Self {
        Self::new(Action::Raw(status, body))
    }

    /// Start an answer, then send nothing more.
    pub fn stall() -> Self {
        Self::new(Action::Stall)
    }

    /// Take the request and never answer.
    pub fn silent() -> Self {
        Self::new(Action::Silent)
    }

    /// Wait this long before answering (overrides the server-wide latency).
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// Add text before the tool calls of a tool step.
    pub fn with_text(mut self, text: &str) -> Self {
        if let Action::Tools(t, _) = &mut self.action {
            *t = Some(text.to_string());
        }
        self
    }

    /// Report these token counts.
    pub fn usage(mut self, input: u64, output: u64) -> Self {
        self.usage = (input, output);
        self
    }
}
