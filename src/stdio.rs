//! The stdio seam between the client and rmcp: a line filter that answers malformed
//! JSON-RPC the way the specification says, and a single writer to stdout.
//!
//! rmcp 3.9 drops a line that is not JSON without a word (the client waits forever),
//! answers an invalid request with an error that has no `id` at all (the spec wants
//! `"id": null`), and answers `tools/call` whose `arguments` is not an object with
//! "method not found". So every line from stdin is checked here first:
//!
//! - not JSON → `-32700` parse error, `id: null`;
//! - not one JSON object (a batch, a string, …), no `"jsonrpc": "2.0"`, no string
//!   `method`, an `id` that is neither a string nor an integer → `-32600` invalid
//!   request (`id` echoed when it is a valid one, else `null`);
//! - `params` that is not an object, or a `tools/call` without a string `name` or with
//!   `arguments` that is not an object → `-32602` invalid params;
//! - blank lines are skipped; responses and notifications are never answered (the
//!   spec forbids it): malformed ones are only logged.
//!
//! Everything else goes to rmcp unchanged. rmcp's output and these errors reach stdout
//! through one writer task, a whole line at a time, so lines never interleave. Every
//! refusal is logged (warn) with the reason and the start of the line. The same check
//! ([`classify`]) answers malformed messages over HTTP (`crate::http::jsonrpc`).
//!
//! The filter also counts the client's requests that rmcp has not answered yet
//! ([`InFlight`]), so that a shutdown can let them answer (a `wait_for_agents` in
//! flight answers at once when the server stops) before it ends the session.

use std::collections::HashSet;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::text::json_kind;
use serde_json::{Value, json};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::Notify;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Longest message accepted on stdin.
pub const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;
const PIPE_BYTES: usize = 256 * 1024;

/// What to do with one line from the client.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// Well-formed: hand it to rmcp.
    Forward,
    /// Answer with this error response (a JSON-RPC error object) and drop the line.
    Reply(Value),
    /// Drop it (blank line, or a malformed message that must not be answered); why.
    Drop(String),
}

/// The client's requests that rmcp has not answered yet, by id (as JSON text).
#[derive(Default)]
pub struct InFlight {
    ids: Mutex<HashSet<String>>,
    changed: Notify,
}

impl InFlight {
    fn add(&self, id: String) {
        if let Ok(mut ids) = self.ids.lock() {
            ids.insert(id);
        }
    }

    fn is_empty(&self) -> bool {
        self.ids.lock().map(|ids| ids.is_empty()).unwrap_or(true)
    }

    /// A line from rmcp: if it answers a request in flight, that one is done.
    fn answered(&self, line: &[u8]) {
        if self.is_empty() {
            return;
        }
        #[derive(serde::Deserialize)]
        struct Reply {
            id: Option<Value>,
            method: Option<serde::de::IgnoredAny>,
        }
        let Ok(Reply {
            id: Some(id),
            method: None,
        }) = serde_json::from_slice::<Reply>(line)
        else {
            return;
        };
        self.forget(&id.to_string());
    }

    fn forget(&self, id: &str) {
        if let Ok(mut ids) = self.ids.lock()
            && ids.remove(id)
        {
            drop(ids);
            self.changed.notify_waiters();
        }
    }

    /// Wait until every request in flight has been answered, or `grace` passes.
    /// Returns whether they all were.
    pub async fn drain(&self, grace: Duration) -> bool {
        tokio::time::timeout(grace, async {
            loop {
                let changed = self.changed.notified();
                if self.is_empty() {
                    return;
                }
                changed.await;
            }
        })
        .await
        .is_ok()
    }
}

/// The tasks behind [`filtered`]; [`Tasks::finish`] flushes what is left.
pub struct Tasks {
    reader: JoinHandle<()>,
    pump: JoinHandle<()>,
    writer: JoinHandle<()>,
    pub in_flight: Arc<InFlight>,
}

impl Tasks {
    /// After the MCP service ended: let the last lines reach stdout (bounded), and stop
    /// reading stdin.
    pub async fn finish(self, grace: std::time::Duration) {
        self.reader.abort();
        let _ = tokio::time::timeout(grace, async {
            let _ = self.pump.await;
            let _ = self.writer.await;
        })
        .await;
    }
}

/// The transport to give rmcp (`serve(transport)`), reading the real stdin through the
/// filter and writing to the real stdout through the single writer.
pub fn filtered() -> ((DuplexStream, DuplexStream), Tasks) {
    let (to_rmcp, rmcp_in) = tokio::io::duplex(PIPE_BYTES);
    let (rmcp_out, from_rmcp) = tokio::io::duplex(PIPE_BYTES);
    let (lines, queue) = mpsc::channel::<Vec<u8>>(64);
    let in_flight = Arc::new(InFlight::default());
    let writer = tokio::spawn(write_lines(queue, tokio::io::stdout()));
    let pump = tokio::spawn(pump(from_rmcp, lines.clone(), in_flight.clone()));
    let reader = tokio::spawn(read_lines(
        tokio::io::BufReader::new(tokio::io::stdin()),
        to_rmcp,
        lines,
        in_flight.clone(),
    ));
    (
        (rmcp_in, rmcp_out),
        Tasks {
            reader,
            pump,
            writer,
            in_flight,
        },
    )
}

/// When stdin is a terminal, a person started flotilla by hand: say on stderr what it
/// is and how to connect a client, instead of waiting in silence.
pub fn greet_if_terminal() {
    if !std::io::stdin().is_terminal() {
        return;
    }
    eprintln!(
        "flotilla is an MCP server: an MCP client (Claude Code, Claude Desktop, Cursor, Codex, ...) starts it and speaks JSON-RPC with it over stdin/stdout, so typing here does nothing useful.\n\
         - connect a client, e.g. `claude mcp add flotilla -- {exe}`;\n\
         - or serve Streamable HTTP with `--listen 127.0.0.1:7777` (MCP at /mcp, the dashboard at /);\n\
         - or add `--dashboard 127.0.0.1:7778` to watch the fleet in a browser while a client drives it over stdio.\n\
         Waiting for a client on stdin; press Ctrl-C to quit.",
        exe = std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "flotilla".into())
    );
}

/// The single writer: whole lines, flushed one by one.
async fn write_lines(
    mut queue: mpsc::Receiver<Vec<u8>>,
    mut out: impl tokio::io::AsyncWrite + Unpin,
) {
    while let Some(line) = queue.recv().await {
        if out.write_all(&line).await.is_err() || out.flush().await.is_err() {
            tracing::debug!("stdout closed");
            return;
        }
    }
}

/// rmcp's output, a line at a time, to the writer; answers leave [`InFlight`].
async fn pump(from_rmcp: DuplexStream, lines: mpsc::Sender<Vec<u8>>, in_flight: Arc<InFlight>) {
    let mut reader = tokio::io::BufReader::new(from_rmcp);
    loop {
        let mut line = Vec::new();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                if !line.ends_with(b"\n") {
                    line.push(b'\n');
                }
                // The shutdown that waits for this answer then lets the writer
                // finish: the line still reaches stdout.
                in_flight.answered(&line);
                if lines.send(line).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Read the client's lines; forward the good ones to rmcp, answer or drop the rest.
async fn read_lines(
    mut input: impl AsyncBufRead + Unpin,
    mut to_rmcp: DuplexStream,
    lines: mpsc::Sender<Vec<u8>>,
    in_flight: Arc<InFlight>,
) {
    let mut buf = Vec::new();
    loop {
        let too_long = match read_line(&mut input, &mut buf).await {
            Ok(Some(too_long)) => too_long,
            Ok(None) | Err(_) => break,
        };
        let verdict = if too_long {
            Verdict::Reply(error(
                Value::Null,
                -32600,
                &format!("Invalid Request: message longer than {MAX_LINE_BYTES} bytes"),
            ))
        } else {
            classify(&buf)
        };
        match verdict {
            Verdict::Forward => {
                track(&in_flight, &buf);
                buf.push(b'\n');
                if to_rmcp.write_all(&buf).await.is_err() {
                    break;
                }
            }
            Verdict::Reply(reply) => {
                tracing::warn!(
                    code = reply["error"]["code"].as_i64().unwrap_or(0),
                    "refused a message on stdin: {}; it starts: {}",
                    reply["error"]["message"].as_str().unwrap_or_default(),
                    preview(&buf)
                );
                let mut line = serde_json::to_vec(&reply).unwrap_or_default();
                line.push(b'\n');
                if lines.send(line).await.is_err() {
                    break;
                }
            }
            Verdict::Drop(why) if why.is_empty() => {}
            Verdict::Drop(why) => {
                tracing::warn!(
                    "ignored a message on stdin: {why}; it starts: {}",
                    preview(&buf)
                );
            }
        }
    }
    // EOF: rmcp sees its input close and ends the session.
    let _ = to_rmcp.shutdown().await;
}

/// One line (without `\n` or `\r`) into `buf`; `Some(true)` when it was over the limit
/// (and skipped), `None` at EOF.
async fn read_line(
    input: &mut (impl AsyncBufRead + Unpin),
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<bool>> {
    buf.clear();
    let mut too_long = false;
    let mut any = false;
    loop {
        let available = input.fill_buf().await?;
        if available.is_empty() {
            return Ok(any.then_some(too_long));
        }
        any = true;
        let (chunk, used, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..i], i + 1, true),
            None => (available, available.len(), false),
        };
        if !too_long {
            if buf.len() + chunk.len() > MAX_LINE_BYTES {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(chunk);
            }
        }
        input.consume(used);
        if done {
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
            return Ok(Some(too_long));
        }
    }
}

/// Keep [`InFlight`] up to date with a message from the client: a request (a `method`
/// and an `id`) is in flight until answered; `notifications/cancelled` ends one (rmcp
/// sends no answer to a cancelled request).
fn track(in_flight: &InFlight, line: &[u8]) {
    #[derive(serde::Deserialize)]
    struct Message {
        id: Option<Value>,
        method: Option<String>,
        params: Option<Cancelled>,
    }
    #[derive(serde::Deserialize)]
    struct Cancelled {
        #[serde(rename = "requestId")]
        request_id: Option<Value>,
    }
    let Ok(message) = serde_json::from_slice::<Message>(line) else {
        return;
    };
    match (message.method.as_deref(), message.id) {
        (Some("notifications/cancelled"), None) => {
            if let Some(id) = message.params.and_then(|p| p.request_id) {
                in_flight.forget(&id.to_string());
            }
        }
        (Some(_), Some(id)) => in_flight.add(id.to_string()),
        _ => {}
    }
}

/// A JSON-RPC error response.
pub fn error(id: Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

fn preview(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(&line[..line.len().min(120)]);
    format!("{text:?}")
}

/// Check one line of JSON-RPC from the client.
pub fn classify(line: &[u8]) -> Verdict {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Verdict::Drop(String::new());
    }
    let message: Value = match serde_json::from_slice(line) {
        Ok(v) => v,
        Err(e) => return Verdict::Reply(error(Value::Null, -32700, &format!("Parse error: {e}"))),
    };
    let invalid = |id: Value, why: String| {
        Verdict::Reply(error(id, -32600, &format!("Invalid Request: {why}")))
    };
    let obj = match &message {
        Value::Object(obj) => obj,
        Value::Array(_) => {
            return invalid(
                Value::Null,
                "batches (JSON arrays) are not supported; send one JSON object per line".into(),
            );
        }
        other => {
            return invalid(
                Value::Null,
                format!("a message must be a JSON object, not {}", json_kind(other)),
            );
        }
    };
    let id = obj.get("id");
    let id_ok = id.is_some_and(|id| id.is_string() || id.is_i64() || id.is_u64());
    let reply_id = if id_ok {
        id.cloned().unwrap_or(Value::Null)
    } else {
        Value::Null
    };
    if obj.get("jsonrpc") != Some(&json!("2.0")) {
        return invalid(reply_id, "`jsonrpc` must be \"2.0\"".into());
    }
    let Some(method) = obj.get("method") else {
        if obj.contains_key("result") || obj.contains_key("error") {
            // A response to one of our requests: never answered.
            return if id_ok {
                Verdict::Forward
            } else {
                Verdict::Drop("a response without a valid `id`".into())
            };
        }
        return invalid(reply_id, "no `method` (and not a response)".into());
    };
    let Some(method) = method.as_str() else {
        return invalid(
            reply_id,
            format!("`method` must be a string, not {}", json_kind(method)),
        );
    };
    if let Some(id) = id
        && !id_ok
    {
        return invalid(
            Value::Null,
            format!(
                "`id` must be a string or an integer, not {}",
                match id {
                    Value::Number(_) => "a fraction",
                    other => json_kind(other),
                }
            ),
        );
    }
    let bad_params = |why: String| {
        if id_ok {
            Verdict::Reply(error(
                reply_id.clone(),
                -32602,
                &format!("Invalid params: {why}"),
            ))
        } else {
            Verdict::Drop(format!("notification {method}: {why}"))
        }
    };
    let params = obj.get("params");
    if let Some(p) = params
        && !p.is_object()
    {
        return bad_params(format!(
            "`params` must be a JSON object, not {}",
            json_kind(p)
        ));
    }
    if method == "tools/call"
        && let Err(why) = check_tool_call(params)
    {
        return bad_params(why);
    }
    Verdict::Forward
}

/// The `params` of a `tools/call`: a string `name`, and `arguments` an object if given.
fn check_tool_call(params: Option<&Value>) -> Result<(), String> {
    let Some(p) = params else {
        return Err("tools/call needs `params` with the tool's `name`".into());
    };
    match p.get("name") {
        Some(Value::String(_)) => {}
        Some(other) => {
            return Err(format!("`name` must be a string, not {}", json_kind(other)));
        }
        None => return Err("tools/call needs `params.name`, the tool to call".into()),
    }
    if let Some(args) = p.get("arguments")
        && !(args.is_object() || args.is_null())
    {
        return Err(format!(
            "`arguments` must be a JSON object of the tool's arguments, not {}",
            json_kind(args)
        ));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn reply(line: &str) -> (i64, Value, String) {
        match classify(line.as_bytes()) {
            Verdict::Reply(r) => (
                r["error"]["code"].as_i64().unwrap(),
                r["id"].clone(),
                r["error"]["message"].as_str().unwrap().to_string(),
            ),
            other => panic!("{line}: expected a reply, got {other:?}"),
        }
    }

    #[test]
    fn malformed_messages_get_the_spec_errors() {
        assert_eq!(reply("garbage").0, -32700);
        assert_eq!(reply("garbage").1, Value::Null);
        assert_eq!(
            reply(r#"{"jsonrpc":"2.0","id":12,"method":"ping""#).0,
            -32700
        );
        for line in [
            "[1,2]",
            "[]",
            "\"str\"",
            "42",
            r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","method":1}"#,
        ] {
            let (code, id, _) = reply(line);
            assert_eq!((code, id), (-32600, Value::Null), "{line}");
        }
        assert_eq!(reply(r#"{"jsonrpc":"2.0","id":2}"#).1, json!(2));
        let (code, id, _) = reply(r#"{"id":3,"method":"ping"}"#);
        assert_eq!((code, id), (-32600, json!(3)));
        let (code, id, msg) = reply(
            r#"{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"x","arguments":"y"}}"#,
        );
        assert_eq!((code, id), (-32602, json!("a")));
        assert!(msg.contains("`arguments` must be a JSON object"), "{msg}");
        assert_eq!(
            reply(r#"{"jsonrpc":"2.0","id":4,"method":"tools/call"}"#).0,
            -32602
        );
        assert_eq!(
            reply(r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":[1]}"#).0,
            -32602
        );
    }

    #[test]
    fn good_messages_pass_and_notifications_are_never_answered() {
        for line in [
            r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":"x","method":"tools/call","params":{"name":"a","arguments":{}}}"#,
            r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"a"}}"#,
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            r#"{"jsonrpc":"2.0","id":7,"result":{}}"#,
            r#"{"jsonrpc":"2.0","id":8,"method":"nosuch"}"#,
        ] {
            assert_eq!(classify(line.as_bytes()), Verdict::Forward, "{line}");
        }
        assert!(matches!(classify(b"   "), Verdict::Drop(w) if w.is_empty()));
        assert!(matches!(
            classify(br#"{"jsonrpc":"2.0","method":"notifications/x","params":3}"#),
            Verdict::Drop(_)
        ));
        assert!(matches!(
            classify(br#"{"jsonrpc":"2.0","result":{}}"#),
            Verdict::Drop(_)
        ));
    }

    #[tokio::test]
    async fn long_lines_are_refused_and_the_stream_goes_on() {
        let mut data = vec![b'x'; MAX_LINE_BYTES + 10];
        data.extend_from_slice(b"\n{\"a\":1}\r\nlast");
        let mut input = tokio::io::BufReader::new(&data[..]);
        let mut buf = Vec::new();
        assert_eq!(read_line(&mut input, &mut buf).await.unwrap(), Some(true));
        assert_eq!(read_line(&mut input, &mut buf).await.unwrap(), Some(false));
        assert_eq!(buf, b"{\"a\":1}");
        assert_eq!(read_line(&mut input, &mut buf).await.unwrap(), Some(false));
        assert_eq!(buf, b"last");
        assert_eq!(read_line(&mut input, &mut buf).await.unwrap(), None);
    }
}
