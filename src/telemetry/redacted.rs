//! The last step before spans and log lines leave the process: every string in them goes
//! through the process's [`Redactor`] ([`crate::plan::redact::process`]).
//!
//! - [`span`]: a span's name, string attributes (arrays too), events and status
//!   message, redacted in the exporter just before the batch is sent;
//! - [`Stderr`]: the log's writer; the formatter hands it one whole line per event, which
//!   is redacted before it reaches stderr.

use std::borrow::Cow;
use std::io::{self, Write};

use opentelemetry::trace::Status;
use opentelemetry::{Array, KeyValue, StringValue, Value};
use opentelemetry_sdk::trace::SpanData;
use tracing_subscriber::fmt::MakeWriter;

use crate::plan::redact::{Redactor, process};

/// `span` with every string redacted.
pub fn span(r: &Redactor, mut span: SpanData) -> SpanData {
    if let Cow::Owned(name) = r.redact(&span.name) {
        span.name = Cow::Owned(name);
    }
    attributes(r, &mut span.attributes);
    for event in &mut span.events.events {
        if let Cow::Owned(name) = r.redact(&event.name) {
            event.name = Cow::Owned(name);
        }
        attributes(r, &mut event.attributes);
    }
    if let Status::Error { description } = &mut span.status
        && let Cow::Owned(clean) = r.redact(description)
    {
        *description = Cow::Owned(clean);
    }
    span
}

fn attributes(r: &Redactor, attributes: &mut [KeyValue]) {
    for kv in attributes {
        match &mut kv.value {
            Value::String(s) => redact_value(r, s),
            Value::Array(Array::String(items)) => {
                items.iter_mut().for_each(|s| redact_value(r, s));
            }
            _ => {}
        }
    }
}

fn redact_value(r: &Redactor, s: &mut StringValue) {
    if let Cow::Owned(clean) = r.redact(s.as_str()) {
        *s = StringValue::from(clean);
    }
}

/// The log's writer: stderr, each line redacted first.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stderr;

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = Line;

    fn make_writer(&'a self) -> Self::Writer {
        Line(Vec::with_capacity(256))
    }
}

/// One log line, written (redacted) to stderr when dropped.
#[derive(Debug)]
pub struct Line(Vec<u8>);

impl Write for Line {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&self.0);
        let clean = process().redact(&text);
        // Nowhere to report a failed write to stderr.
        let _ = io::stderr().lock().write_all(clean.as_bytes());
    }
}
