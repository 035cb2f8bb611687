//! The front door (issue 16): how flotilla meets what connects to it before any tool
//! runs. Malformed JSON-RPC gets the same answers over HTTP as over stdio; a `Host`
//! with userinfo is refused; idle connections without a token cannot starve a client
//! that has one; a wait in flight at SIGTERM answers (stdio); started by hand on a
//! terminal flotilla says what it is, and a client that leaves before `initialize`
//! costs one plain line, never a backtrace.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::*;
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}"#;

/// POST `body` to `/mcp` with the token (and a session, if given); status and the
/// JSON-RPC message in the answer (plain JSON or the first SSE `data:` line).
async fn rpc(server: &HttpServer, session: Option<&str>, body: &str) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new()
        .post(&server.url)
        .header(AUTHORIZATION, format!("Bearer {TOKEN}"))
        .header(CONTENT_TYPE, "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_string());
    if let Some(s) = session {
        request = request.header("mcp-session-id", s);
    }
    let response = tokio::time::timeout(CALL_TIMEOUT, request.send())
        .await
        .expect("request timed out")
        .expect("request failed");
    let status = response.status();
    let text = tokio::time::timeout(CALL_TIMEOUT, response.text())
        .await
        .expect("body timed out")
        .unwrap_or_default();
    let json = serde_json::from_str(&text)
        .ok()
        .or_else(|| {
            text.lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .find_map(|d| serde_json::from_str(d.trim()).ok())
        })
        .unwrap_or_else(|| json!({"not_json": text}));
    (status, json)
}

/// An initialised raw MCP session over HTTP; its id.
async fn raw_session(server: &HttpServer) -> String {
    let response = reqwest::Client::new()
        .post(&server.url)
        .header(AUTHORIZATION, format!("Bearer {TOKEN}"))
        .header(CONTENT_TYPE, "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(INITIALIZE)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let session = response.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_string();
    drop(response);
    let (status, _) = rpc(
        server,
        Some(&session),
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    session
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_rpc_gets_the_same_answers_over_http_as_over_stdio() {
    let server = HttpServer::start().await;
    let session = raw_session(&server).await;
    // The answers the stdio filter gives (see `src/stdio.rs`): line, code, id.
    let cases = [
        ("garbage", -32700, Value::Null),
        (
            r#"{"jsonrpc":"2.0","id":12,"method":"ping""#,
            -32700,
            Value::Null,
        ),
        ("[1,2]", -32600, Value::Null),
        (r#"{"jsonrpc":"2.0","id":6,"method":1}"#, -32600, json!(6)),
        (r#"{"id":3,"method":"ping"}"#, -32600, json!(3)),
        (
            r#"{"jsonrpc":"2.0","id":4,"method":"tools/call"}"#,
            -32602,
            json!(4),
        ),
        (
            r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"list_agents","arguments":"x"}}"#,
            -32602,
            json!(5),
        ),
    ];

    // stdio, through the same lines.
    let (mut child, _root, _mock) = Flotilla::builder().spawn_raw().await;
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    for (body, code, id) in &cases {
        use tokio::io::AsyncWriteExt;
        stdin
            .write_all(format!("{body}\n").as_bytes())
            .await
            .unwrap();
        let line = tokio::time::timeout(CALL_TIMEOUT, stdout.next_line())
            .await
            .expect("stdio did not answer")
            .unwrap()
            .unwrap();
        let answer: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            (&answer["error"]["code"], &answer["id"]),
            (&json!(code), id),
            "stdio, {body}: {answer}"
        );

        for s in [Some(session.as_str()), None] {
            let (status, answer) = rpc(&server, s, body).await;
            assert_eq!(
                (&answer["error"]["code"], &answer["id"]),
                (&json!(code), id),
                "HTTP (session {s:?}), {body}: {status} {answer}"
            );
            assert_eq!(answer["jsonrpc"], "2.0", "{body}: {answer}");
            assert!(
                status == StatusCode::OK || status == StatusCode::BAD_REQUEST,
                "{body}: {status}"
            );
        }
    }
    let _ = child.kill().await;
    // Good requests still reach the server.
    let (status, answer) = rpc(
        &server,
        Some(&session),
        r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"list_agents","arguments":{}}}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["id"], 9, "{answer}");
    assert!(answer["result"].is_object(), "{answer}");
    server.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_with_userinfo_is_refused() {
    let server = HttpServer::start().await;
    let port = server.addr.port();
    for host in [
        format!("evil.com@127.0.0.1:{port}"),
        format!("user:pw@localhost:{port}"),
        format!("@127.0.0.1:{port}"),
    ] {
        let response = reqwest::Client::new()
            .get(format!("http://{}/api/fleet", server.addr))
            .header(AUTHORIZATION, format!("Bearer {TOKEN}"))
            .header(HOST, &host)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "Host {host}");
    }
    let origin = reqwest::Client::new()
        .get(format!("http://{}/api/fleet", server.addr))
        .header(AUTHORIZATION, format!("Bearer {TOKEN}"))
        .header("origin", format!("http://evil.com@127.0.0.1:{port}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        origin.status(),
        StatusCode::FORBIDDEN,
        "Origin with userinfo"
    );
    server.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_without_a_token_do_not_starve_a_client() {
    const IDLE: usize = 300;
    let server = HttpServer::start().await;
    let mut idle = Vec::with_capacity(IDLE);
    for _ in 0..IDLE {
        idle.push(tokio::net::TcpStream::connect(server.addr).await.unwrap());
    }
    for i in 0..4 {
        // A fresh client (a new connection) each time.
        let started = Instant::now();
        let response = tokio::time::timeout(
            Duration::from_secs(8),
            reqwest::Client::new()
                .get(format!("http://{}/api/fleet", server.addr))
                .header(AUTHORIZATION, format!("Bearer {TOKEN}"))
                .send(),
        )
        .await
        .unwrap_or_else(|_| panic!("request {i} waited behind {IDLE} idle connections"))
        .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        eprintln!("request {i}: {:?}", started.elapsed());
        // More idle ones come meanwhile.
        for _ in 0..50 {
            idle.push(tokio::net::TcpStream::connect(server.addr).await.unwrap());
        }
    }
    // An MCP client, too.
    let client = server.client().await;
    client.call("list_agents", json!({})).await;
    drop(idle);
    server.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_wait_over_stdio_answers_the_wait() {
    let fl = Flotilla::start().await;
    fl.mock.script(
        "[long]",
        vec![Step::tool(
            "run_command",
            json!({"command": "exec sleep 300"}),
        )],
    );
    fl.create("long", "[long] sleep").await;
    fl.status_until("long", "running", |s| s["status"] == "running")
        .await;
    let fl = Arc::new(fl);
    let waiting = tokio::spawn({
        let fl = fl.clone();
        async move {
            fl.call_with_progress(
                "wait_for_agents",
                json!({"agents": ["long"], "timeout_s": 600}),
            )
            .await
        }
    });
    fl.recorder.progress_arrived().await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(fl.pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let (result, _) = tokio::time::timeout(CALL_TIMEOUT, waiting)
        .await
        .expect("the wait did not answer after SIGTERM")
        .expect("the wait failed");
    assert_eq!(result["timed_out"], true, "{result}");
    let note = result["note"].as_str().unwrap_or_default();
    assert!(note.contains("restart"), "{result}");
    assert!(wait_pid_gone(fl.pid as i32, CALL_TIMEOUT).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_before_initialize_costs_one_plain_line() {
    let (status, stderr) = Flotilla::builder()
        .env("RUST_BACKTRACE", "1")
        .env("RUST_LIB_BACKTRACE", "1")
        .run_to_exit()
        .await;
    assert!(
        matches!(status.code(), Some(0 | 1)),
        "exit status {status:?}\n{stderr}"
    );
    assert!(
        !stderr.to_lowercase().contains("backtrace") && !stderr.contains("Caused by"),
        "{stderr}"
    );
    let about: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("initialize") || l.contains("initialisation"))
        .collect();
    assert_eq!(about.len(), 1, "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn started_on_a_terminal_it_says_how_to_connect() {
    let pty = nix::pty::openpty(None, None).unwrap();
    let (mut child, _root, _mock) = Flotilla::builder()
        .spawn_with_stdin(std::process::Stdio::from(pty.slave))
        .await;
    let stderr = child.stderr.take().unwrap();
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    let mut seen = Vec::new();
    let found = tokio::time::timeout(CALL_TIMEOUT, async {
        while let Ok(Some(line)) = lines.next_line().await {
            seen.push(line);
            let text = seen.join("\n");
            if text.contains("MCP server") && text.contains("--dashboard") {
                return true;
            }
        }
        false
    })
    .await;
    let _ = child.kill().await;
    drop(pty.master);
    assert_eq!(found, Ok(true), "{}", seen.join("\n"));
}
