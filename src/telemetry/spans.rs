//! The spans the worker opens: `invoke_agent <name>` per command, and under it
//! `chat <model>` per model call and `execute_tool <tool>` per tool call, with the
//! OpenTelemetry GenAI attributes. With tracing off every type here is empty and
//! every method returns at once.

use std::time::Duration;

use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt, Tracer as _};
use opentelemetry::{Array, Context, KeyValue, StringValue, Value};
use opentelemetry_sdk::trace::Span;
use serde_json::Value as Json;

use super::{content, tracing};
use crate::failure::Failure;
use crate::model::{Message, ModelRequest, StopReason, Usage};

/// How a command ended, for its span's status.
pub enum Outcome<'a> {
    Done,
    Cancelled,
    Failed(&'a Failure),
    /// The agent was deleted or the server is stopping: the command is left as it is.
    Stopped,
}

/// The `invoke_agent <name>` span of one command. Ends when [`CommandSpan::end`] is
/// called or, failing that, when it is dropped.
#[derive(Default)]
pub struct CommandSpan {
    /// The context holding the span, the parent of its children.
    cx: Option<Context>,
}

/// Open the span of command `index` of agent `name` (`id`). `task` is attached only
/// when message content is captured.
pub fn command_span(name: &str, id: &str, index: u32, task: &str) -> CommandSpan {
    let Some(t) = tracing() else {
        return CommandSpan::default();
    };
    let mut attributes = vec![
        KeyValue::new("gen_ai.operation.name", "invoke_agent"),
        KeyValue::new("gen_ai.agent.name", name.to_string()),
        KeyValue::new("gen_ai.agent.id", id.to_string()),
        KeyValue::new("flotilla.command", i64::from(index)),
    ];
    if t.capture {
        attributes.push(KeyValue::new(
            "gen_ai.input.messages",
            content::task_message(task),
        ));
    }
    let span = t
        .tracer
        .span_builder(format!("invoke_agent {name}"))
        .with_kind(SpanKind::Internal)
        .with_attributes(attributes)
        .start_with_context(&t.tracer, &Context::new());
    CommandSpan {
        cx: Some(Context::new().with_span(span)),
    }
}

impl CommandSpan {
    /// A span that is not traced, for a caller that needs a `&CommandSpan` before it
    /// has the real one.
    pub fn off() -> &'static CommandSpan {
        static OFF: CommandSpan = CommandSpan { cx: None };
        &OFF
    }

    /// The trace id (32 hex digits), when the command is traced and sampled (so
    /// exported).
    pub fn trace_id(&self) -> Option<String> {
        let cx = self.cx.as_ref()?;
        let span = cx.span();
        let sc = span.span_context();
        (sc.is_valid() && sc.is_sampled()).then(|| sc.trace_id().to_string())
    }

    /// End the span: its status from `outcome`, and what the command cost, if priced.
    pub fn end(self, outcome: Outcome<'_>, cost_usd: Option<f64>) {
        let Some(cx) = self.cx else {
            return;
        };
        let span = cx.span();
        if let Some(cost) = cost_usd {
            span.set_attribute(KeyValue::new("flotilla.cost_usd", cost));
        }
        let status = match outcome {
            Outcome::Done => "done",
            Outcome::Cancelled => "cancelled",
            Outcome::Stopped => "stopped",
            Outcome::Failed(error) => {
                span.set_attribute(KeyValue::new("error.type", error.kind().as_str()));
                span.set_status(Status::error(error.to_string()));
                "failed"
            }
        };
        span.set_attribute(KeyValue::new("flotilla.command.status", status));
        span.end();
    }

    /// Open the `chat <model>` span of one model call (retries included).
    pub fn chat(&self, provider: &str, request: &ModelRequest<'_>) -> ChatSpan {
        let (Some(cx), Some(t)) = (&self.cx, tracing()) else {
            return ChatSpan::default();
        };
        let mut attributes = vec![
            KeyValue::new("gen_ai.operation.name", "chat"),
            KeyValue::new("gen_ai.provider.name", provider.to_string()),
            KeyValue::new("gen_ai.request.model", request.model.to_string()),
            KeyValue::new("gen_ai.request.max_tokens", i64::from(request.max_tokens)),
        ];
        if t.capture {
            attributes.push(KeyValue::new(
                "gen_ai.system_instructions",
                content::system(request.system),
            ));
            attributes.push(KeyValue::new(
                "gen_ai.input.messages",
                content::messages(request.messages),
            ));
        }
        let span = t
            .tracer
            .span_builder(format!("chat {}", request.model))
            .with_kind(SpanKind::Client)
            .with_attributes(attributes)
            .start_with_context(&t.tracer, cx);
        ChatSpan {
            span: Some(span),
            capture: t.capture,
        }
    }

    /// Open the `execute_tool <tool>` span of one tool call.
    pub fn tool(&self, name: &str, call_id: &str, input: &Json) -> ToolSpan {
        let (Some(cx), Some(t)) = (&self.cx, tracing()) else {
            return ToolSpan::default();
        };
        let mut attributes = vec![
            KeyValue::new("gen_ai.operation.name", "execute_tool"),
            KeyValue::new("gen_ai.tool.name", name.to_string()),
            KeyValue::new("gen_ai.tool.call.id", call_id.to_string()),
            KeyValue::new("gen_ai.tool.type", "function"),
        ];
        if t.capture {
            attributes.push(KeyValue::new(
                "gen_ai.tool.call.arguments",
                content::capped(&input.to_string()),
            ));
        }
        let span = t
            .tracer
            .span_builder(format!("execute_tool {name}"))
            .with_kind(SpanKind::Internal)
            .with_attributes(attributes)
            .start_with_context(&t.tracer, cx);
        ToolSpan {
            span: Some(span),
            capture: t.capture,
        }
    }
}

/// The `chat <model>` span of one model call.
#[derive(Default)]
pub struct ChatSpan {
    span: Option<Span>,
    capture: bool,
}

impl ChatSpan {
    /// A failed attempt that will be retried: an event on the span.
    pub fn retry(&mut self, attempt: u32, error: &str, wait: Duration) {
        if let Some(span) = &mut self.span {
            span.add_event(
                "retry",
                vec![
                    KeyValue::new("flotilla.retry.attempt", i64::from(attempt)),
                    KeyValue::new("flotilla.retry.wait_ms", wait.as_millis() as i64),
                    KeyValue::new("error.message", content::capped(error)),
                ],
            );
        }
    }

    /// The model answered: tokens, finish reason, cost (if priced), and with content
    /// capture the answer itself.
    pub fn answered(
        mut self,
        message: &Message,
        usage: Usage,
        stop: &StopReason,
        cost_usd: Option<f64>,
    ) {
        let Some(mut span) = self.span.take() else {
            return;
        };
        let reason = finish_reason(stop);
        let mut attributes = vec![
            KeyValue::new("gen_ai.usage.input_tokens", usage.input_tokens as i64),
            KeyValue::new("gen_ai.usage.output_tokens", usage.output_tokens as i64),
            KeyValue::new(
                "gen_ai.response.finish_reasons",
                Value::Array(Array::String(vec![StringValue::from(reason.clone())])),
            ),
        ];
        if usage.cache_read_tokens > 0 {
            attributes.push(KeyValue::new(
                "gen_ai.usage.cache_read.input_tokens",
                usage.cache_read_tokens as i64,
            ));
        }
        if usage.cache_write_tokens > 0 {
            attributes.push(KeyValue::new(
                "gen_ai.usage.cache_creation.input_tokens",
                usage.cache_write_tokens as i64,
            ));
        }
        if let Some(cost) = cost_usd {
            attributes.push(KeyValue::new("flotilla.cost_usd", cost));
        }
        if self.capture {
            attributes.push(KeyValue::new(
                "gen_ai.output.messages",
                content::output(message, &reason),
            ));
        }
        span.set_attributes(attributes);
        span.end();
    }

    /// The call failed for good (or stalled).
    pub fn failed(&mut self, kind: &str, error: &str) {
        if let Some(mut span) = self.span.take() {
            span.set_attribute(KeyValue::new("error.type", kind.to_string()));
            span.set_status(Status::error(error.to_string()));
            span.end();
        }
    }
}

/// The `execute_tool <tool>` span of one tool call.
#[derive(Default)]
pub struct ToolSpan {
    span: Option<Span>,
    capture: bool,
}

impl ToolSpan {
    /// The tool's result as given back to the model; an error result is an error status.
    pub fn end(mut self, result: &str, is_error: bool) {
        let Some(mut span) = self.span.take() else {
            return;
        };
        if self.capture {
            span.set_attribute(KeyValue::new(
                "gen_ai.tool.call.result",
                content::capped(result),
            ));
        }
        if is_error {
            span.set_attribute(KeyValue::new("error.type", "tool_error"));
            span.set_status(Status::error(crate::text::short(result, 200)));
        }
        span.end();
    }
}

/// The conventions' finish reasons: `stop`, `tool_call`, `length`, or the provider's own.
fn finish_reason(stop: &StopReason) -> String {
    match stop {
        StopReason::EndTurn => "stop".into(),
        StopReason::ToolUse => "tool_call".into(),
        StopReason::MaxTokens => "length".into(),
        StopReason::Other(other) => other.clone(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn untraced_spans_do_nothing() {
        let cmd = CommandSpan::default();
        assert!(cmd.trace_id().is_none());
        let mut chat = ChatSpan::default();
        chat.retry(1, "x", Duration::from_millis(1));
        chat.failed("x", "y");
        cmd.tool("read_file", "id", &Json::Null).end("ok", false);
        cmd.end(Outcome::Failed(&Failure::Panicked), Some(1.0));
    }
}
