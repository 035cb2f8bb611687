//! OpenTelemetry traces of the fleet's work, following the GenAI semantic conventions.
//!
//! Off unless `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is
//! set: then [`init`] (called once from `main`) installs an OTLP/HTTP exporter
//! (protobuf, or JSON with `OTEL_EXPORTER_OTLP_PROTOCOL=http/json`) behind a batch span
//! processor on the tokio runtime. The SDK reads the other standard variables itself:
//! `OTEL_SERVICE_NAME` (default here: `flotilla`), `OTEL_RESOURCE_ATTRIBUTES`,
//! `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_TIMEOUT`, `OTEL_BSP_*`,
//! `OTEL_TRACES_SAMPLER`.
//!
//! The worker calls the thin API in [`spans`]: one [`CommandSpan`] (`invoke_agent
//! <name>`) per command, and under it a [`ChatSpan`] (`chat <model>`) per model call and
//! a [`ToolSpan`] (`execute_tool <tool>`) per tool call. Parents are passed explicitly,
//! never through a thread-local "current span", so they stay right across awaits.
//!
//! What it costs an agent: with tracing off, each call is one check of a `OnceLock`.
//! With it on, ending a span is a `try_send` into a bounded queue (2048 spans by
//! default, `OTEL_BSP_MAX_QUEUE_SIZE`): a slow or dead collector makes the processor
//! drop spans, never makes a step wait, and never fails a command. A collector that
//! cannot be reached is one warning in the log (and one more only if it comes back
//! and fails again). Prompt and completion text are exported only with
//! `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true` (see [`content`]). Every
//! string of every span is redacted just before export ([`redacted`]), as is every log line.

mod content;
pub mod redacted;
mod spans;

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::runtime;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use opentelemetry_sdk::trace::{BatchConfigBuilder, SdkTracer, SdkTracerProvider, SpanData};

pub use spans::{ChatSpan, CommandSpan, Outcome, ToolSpan, command_span};

/// The service name when neither `OTEL_SERVICE_NAME` nor `OTEL_RESOURCE_ATTRIBUTES` give one.
const SERVICE_NAME: &str = "flotilla";

/// The tracer, once [`init`] found an endpoint; `None` means every span is a no-op.
static TRACING: OnceLock<Tracing> = OnceLock::new();

struct Tracing {
    tracer: SdkTracer,
    /// `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true`.
    capture: bool,
}

fn tracing() -> Option<&'static Tracing> {
    TRACING.get()
}

/// Flushes the spans still queued when the server stops. Hold it until the agents
/// have stopped, then call [`Guard::shutdown`].
pub struct Guard {
    provider: Option<SdkTracerProvider>,
}

impl Guard {
    /// Export what is queued and stop the exporter, waiting at most `limit`: a
    /// collector that does not answer loses the last spans, never delays the exit.
    pub async fn shutdown(self, limit: Duration) {
        let Some(provider) = self.provider else {
            return;
        };
        // The SDK's shutdown blocks its caller until the processor task is done.
        let done = tokio::task::spawn_blocking(move || provider.shutdown());
        match tokio::time::timeout(limit, done).await {
            Ok(Ok(Ok(()))) => tracing::debug!("traces: flushed"),
            // Already said (once) by the exporter, or nothing the user can act on.
            Ok(Ok(Err(e))) => tracing::debug!("traces: shutdown: {e}"),
            Ok(Err(e)) => tracing::debug!("traces: shutdown task: {e}"),
            Err(_) => tracing::warn!(
                "traces: the collector did not take the last spans within {}s; they were dropped",
                limit.as_secs_f64()
            ),
        }
    }
}

/// Set up tracing from the environment (see the module docs). Never fails: a setting
/// that cannot be used is a warning and tracing stays off. Call it once, inside the
/// tokio runtime, after the log is set up.
pub fn init() -> Guard {
    init_from(&|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()))
}

fn init_from(env: &dyn Fn(&str) -> Option<String>) -> Guard {
    let off = Guard { provider: None };
    let endpoint = env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .or_else(|| env("OTEL_EXPORTER_OTLP_ENDPOINT").map(|e| traces_url(&e)));
    let Some(endpoint) = endpoint else {
        tracing::debug!("traces: off (set OTEL_EXPORTER_OTLP_ENDPOINT to export them)");
        return off;
    };
    if env("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
        || env("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"))
    {
        tracing::info!("traces: off (OTEL_SDK_DISABLED or OTEL_TRACES_EXPORTER=none)");
        return off;
    }
    let protocol = env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|| env("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .unwrap_or_else(|| "http/protobuf".into());
    let protocol = match protocol.trim() {
        "http/protobuf" => Protocol::HttpBinary,
        "http/json" => Protocol::HttpJson,
        other => {
            tracing::warn!(
                "traces: off: OTLP protocol `{other}` is not supported; use http/protobuf (the collector's HTTP port, usually 4318) or http/json"
            );
            return off;
        }
    };
    let exporter = match opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(endpoint.clone())
        .with_protocol(protocol)
        .build()
    {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!("traces: off: cannot set up the OTLP exporter for {endpoint}: {e}");
            return off;
        }
    };
    let exporter = Watched {
        inner: exporter,
        endpoint: endpoint.clone(),
        failing: AtomicBool::new(false),
    };
    // Reads OTEL_BSP_*; the queue is bounded and full means dropped, never waited on.
    let batch = BatchSpanProcessor::builder(exporter, runtime::Tokio)
        .with_batch_config(BatchConfigBuilder::default().build())
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(batch)
        .with_resource(resource())
        .build();
    let tracer = provider.tracer_with_scope(
        opentelemetry::InstrumentationScope::builder("flotilla")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build(),
    );
    let capture = env("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    if TRACING.set(Tracing { tracer, capture }).is_err() {
        tracing::warn!("traces: already set up; ignoring a second init");
        return off;
    }
    tracing::info!(
        endpoint = %endpoint,
        capture_message_content = capture,
        "traces: exporting over OTLP"
    );
    Guard {
        provider: Some(provider),
    }
}

/// The SDK's resource (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, SDK and host
/// facts), named `flotilla` unless the environment names it.
fn resource() -> Resource {
    let service = opentelemetry::Key::from_static_str("service.name");
    let detected = Resource::builder().build();
    let named = detected
        .get(&service)
        .is_some_and(|v| v.as_str() != "unknown_service");
    let builder = Resource::builder()
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    if named {
        builder.build()
    } else {
        builder.with_service_name(SERVICE_NAME).build()
    }
}

/// `OTEL_EXPORTER_OTLP_ENDPOINT` is a base: traces go to `<base>/v1/traces`.
fn traces_url(base: &str) -> String {
    format!("{}/v1/traces", base.trim_end_matches('/'))
}

/// The OTLP exporter, watched: the first failed export is a warning in the log, the
/// next ones are quiet until an export succeeds again.
#[derive(Debug)]
struct Watched<E> {
    inner: E,
    endpoint: String,
    failing: AtomicBool,
}

impl<E: opentelemetry_sdk::trace::SpanExporter> opentelemetry_sdk::trace::SpanExporter
    for Watched<E>
{
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        let redactor = crate::plan::redact::process();
        let batch = batch
            .into_iter()
            .map(|s| redacted::span(redactor, s))
            .collect();
        let result = self.inner.export(batch).await;
        match &result {
            Err(e) if !self.failing.swap(true, Ordering::Relaxed) => tracing::warn!(
                "traces: cannot export to {} ({e}); spans are dropped until it answers (agents are not slowed)",
                self.endpoint
            ),
            Err(e) => tracing::debug!(spans, "traces: export failed again: {e}"),
            Ok(()) if self.failing.swap(false, Ordering::Relaxed) => {
                tracing::info!("traces: exporting to {} again", self.endpoint)
            }
            Ok(()) => tracing::trace!(spans, "traces: exported"),
        }
        result
    }

    fn shutdown_with_timeout(&mut self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&mut self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn the_traces_url_is_under_the_base() {
        assert_eq!(
            traces_url("http://localhost:4318"),
            "http://localhost:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://localhost:4318/"),
            "http://localhost:4318/v1/traces"
        );
    }

    #[test]
    fn without_an_endpoint_tracing_is_off() {
        let guard = init_from(&|_| None);
        assert!(guard.provider.is_none());
        assert!(command_span("a", "id", 1, "task").trace_id().is_none());
    }

    #[test]
    fn an_unsupported_protocol_leaves_tracing_off() {
        let guard = init_from(&|k| match k {
            "OTEL_EXPORTER_OTLP_ENDPOINT" => Some("http://127.0.0.1:1".into()),
            "OTEL_EXPORTER_OTLP_PROTOCOL" => Some("grpc".into()),
            _ => None,
        });
        assert!(guard.provider.is_none());
    }
}
