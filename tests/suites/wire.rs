//! Hostile input on the wire (issue #9): malformed JSON-RPC lines get the errors the
//! specification names instead of silence, and tool calls with unknown, mistyped or
//! empty arguments are refused in plain words without touching the fleet.

use crate::common::*;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// A server driven by raw lines.
struct Raw {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    stdout: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    next_id: u64,
}

impl Raw {
    async fn start() -> Raw {
        let (mut child, _root, _mock) = Flotilla::builder().arg("--ephemeral").spawn_raw().await;
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut raw = Raw {
            child,
            stdin,
            stdout,
            next_id: 1000,
        };
        raw.send(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#).await;
        let init = raw.until_id(&json!(1)).await;
        assert!(
            init.last().unwrap()["result"]["serverInfo"].is_object(),
            "{init:?}"
        );
        raw.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
            .await;
        raw
    }

    async fn send(&mut self, line: &str) {
        self.stdin.write_all(line.as_bytes()).await.unwrap();
        self.stdin.write_all(b"\n").await.unwrap();
        self.stdin.flush().await.unwrap();
    }

    /// Every message up to and including the response with `id`.
    async fn until_id(&mut self, id: &Value) -> Vec<Value> {
        let mut seen = Vec::new();
        loop {
            let line = tokio::time::timeout(CALL_TIMEOUT, self.stdout.next_line())
                .await
                .unwrap_or_else(|_| panic!("no response with id {id}; got {seen:?}"))
                .unwrap()
                .unwrap_or_else(|| panic!("stdout closed; got {seen:?}"));
            let message: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"));
            let done = &message["id"] == id && message.get("method").is_none();
            seen.push(message);
            if done {
                return seen;
            }
        }
    }

    /// Send `line`, then a ping; the messages that came back before the ping's answer.
    /// Like [`Raw::answers_to`], for a line that must be answered: rmcp handles
    /// requests concurrently, so the ping's answer may overtake the answer to the line
    /// before it; then that answer is the next message.
    async fn answer_to(&mut self, line: &str) -> Vec<Value> {
        let mut got = self.answers_to(line).await;
        if got.is_empty() {
            let next = tokio::time::timeout(CALL_TIMEOUT, self.stdout.next_line())
                .await
                .unwrap_or_else(|_| panic!("no answer to {line}"))
                .unwrap()
                .unwrap_or_else(|| panic!("stdout closed before answering {line}"));
            got.push(serde_json::from_str(&next).unwrap());
        }
        got
    }

    async fn answers_to(&mut self, line: &str) -> Vec<Value> {
        self.send(line).await;
        self.next_id += 1;
        let id = json!(self.next_id);
        self.send(&format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping"}}"#))
            .await;
        let mut got = self.until_id(&id).await;
        assert_eq!(got.pop().unwrap()["result"], json!({}), "the ping failed");
        got
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_rpc_gets_the_errors_the_spec_names() {
    let mut raw = Raw::start().await;
    let cases: Vec<(&str, i64, Value)> = vec![
        ("garbage", -32700, Value::Null),
        (
            r#"{"jsonrpc":"2.0","id":5,"method":"ping""#,
            -32700,
            Value::Null,
        ),
        ("[1,2]", -32600, Value::Null),
        ("[]", -32600, Value::Null),
        ("\"a string\"", -32600, Value::Null),
        (r#"{"jsonrpc":"2.0","id":6}"#, -32600, json!(6)),
        (r#"{"id":7,"method":"ping"}"#, -32600, json!(7)),
        (
            r#"{"jsonrpc":"1.0","id":8,"method":"ping"}"#,
            -32600,
            json!(8),
        ),
        (
            r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#,
            -32600,
            Value::Null,
        ),
        (
            r#"{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}"#,
            -32600,
            Value::Null,
        ),
        (r#"{"jsonrpc":"2.0","id":9,"method":7}"#, -32600, json!(9)),
        (
            r#"{"jsonrpc":"2.0","id":10,"method":"tools/call","params":{"name":"delete_all_agents","arguments":"x"}}"#,
            -32602,
            json!(10),
        ),
        (
            r#"{"jsonrpc":"2.0","id":11,"method":"tools/call","params":{"name":"list_agents","arguments":[1]}}"#,
            -32602,
            json!(11),
        ),
        (
            r#"{"jsonrpc":"2.0","id":12,"method":"tools/call"}"#,
            -32602,
            json!(12),
        ),
        (
            r#"{"jsonrpc":"2.0","id":13,"method":"tools/call","params":7}"#,
            -32602,
            json!(13),
        ),
        (
            r#"{"jsonrpc":"2.0","id":14,"method":"no/such"}"#,
            -32601,
            json!(14),
        ),
    ];
    for (line, code, id) in cases {
        let got = raw.answer_to(line).await;
        assert_eq!(got.len(), 1, "{line}: expected one answer, got {got:?}");
        let answer = &got[0];
        assert_eq!(answer["jsonrpc"], "2.0", "{line}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{line}: {answer}");
        assert!(
            answer.as_object().unwrap().contains_key("id"),
            "{line}: an error response must carry `id` (null when unknown): {answer}"
        );
        assert_eq!(answer["id"], id, "{line}: {answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    // Never answered: blank lines, notifications, responses.
    for line in [
        "",
        "   ",
        r#"{"jsonrpc":"2.0","method":"notifications/whatever","params":3}"#,
        r#"{"jsonrpc":"2.0","id":99,"result":{}}"#,
    ] {
        let got = raw.answers_to(line).await;
        assert!(got.is_empty(), "{line:?} was answered: {got:?}");
    }
    // A good tool call still works, and the log says what was refused.
    raw.send(r#"{"jsonrpc":"2.0","id":15,"method":"tools/call","params":{"name":"list_agents","arguments":{}}}"#)
        .await;
    let got = raw.until_id(&json!(15)).await;
    let answer = got.last().unwrap();
    assert_eq!(answer["result"]["isError"], false, "{got:?}");
    drop(raw.stdin);
    let out = tokio::time::timeout(CALL_TIMEOUT, raw.child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("Parse error") && log.contains("refused"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_arguments_are_checked_in_plain_words() {
    let fl = Flotilla::start().await;
    fl.create("keeper", "[keep] hi").await;
    fl.wait_all(&["keeper"]).await;

    // Unknown arguments are refused by every tool, delete_all_agents too.
    let err = fl
        .call_err("delete_all_agents", json!({"agent": "x"}))
        .await;
    assert_mentions(&err, &["unknown argument `agent`", "no arguments"]);
    let err = fl
        .call_err(
            "get_agent_status",
            json!({"agent": "keeper", "verbose": true}),
        )
        .await;
    assert_mentions(&err, &["unknown argument `verbose`", "agent"]);
    let list = fl.call("list_agents", json!({})).await;
    assert_eq!(names(&list["agents"]), ["keeper"], "the fleet was touched");

    // Type errors: the argument, the JSON type, what was given; no Rust types.
    let cases = [
        (
            "create_agent",
            json!({"name": "a", "max_steps": "5"}),
            "max_steps must be an integer from 1 to 1000, got the string \"5\"",
        ),
        (
            "create_agent",
            json!({"name": "a", "tools": "read_file"}),
            "tools must be a list of strings, got the string \"read_file\"",
        ),
        (
            "command_agent",
            json!({"agent": "keeper", "task": "t", "interrupt": "yes"}),
            "interrupt must be true or false, got the string \"yes\"",
        ),
        (
            "get_agent_output",
            json!({"agent": "keeper", "offset": -1}),
            "offset must be a non-negative integer, got -1",
        ),
        (
            "wait_for_agents",
            json!({"timeout_s": "soon"}),
            "timeout_s must be a number from 0 to 600, got the string \"soon\"",
        ),
        (
            "create_agent",
            json!({"name": 7}),
            "name must be a string, got the number 7",
        ),
    ];
    for (tool, args, want) in cases {
        let err = fl.call_err(tool, args.clone()).await;
        assert_eq!(err, want, "{tool}({args})");
    }

    // Empty values are errors alike.
    let err = fl
        .call_err("create_agent", json!({"name": "m", "model": ""}))
        .await;
    assert_mentions(&err, &["`model` is empty"]);
    let err = fl
        .call_err("create_agent", json!({"name": "r", "role": ""}))
        .await;
    assert_mentions(&err, &["role"]);
    let err = fl
        .call_err("get_agent_events", json!({"agent": "keeper", "kinds": []}))
        .await;
    assert_mentions(&err, &["`kinds` is an empty list"]);
    let list = fl.call("list_agents", json!({})).await;
    assert_eq!(names(&list["agents"]), ["keeper"]);
}
