//! Streamable HTTP (`--listen`): several clients share one fleet, waits stream
//! progress over SSE, a client may vanish mid-wait, a restart brings the fleet back;
//! and the protections: bearer token (401), Host/Origin (403), body cap (413), the
//! token file, the start-up refusals, and SIGTERM.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use crate::common::*;
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HOST, ORIGIN, WWW_AUTHENTICATE};
use serde_json::json;

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}"#;

/// A raw `initialize` POST with the given extra headers; returns status, the
/// `WWW-Authenticate` header and the body (read only when not 200: a 200 is a stream).
async fn post(
    url: &str,
    headers: &[(reqwest::header::HeaderName, &str)],
    body: reqwest::Body,
) -> (StatusCode, Option<String>, String) {
    let mut request = reqwest::Client::new()
        .post(url)
        .header(CONTENT_TYPE, "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body);
    for (name, value) in headers {
        request = request.header(name.clone(), *value);
    }
    let response = tokio::time::timeout(CALL_TIMEOUT, request.send())
        .await
        .expect("request timed out")
        .expect("request failed");
    let status = response.status();
    let challenge = response
        .headers()
        .get(WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_string());
    let body = if status == StatusCode::OK {
        String::new()
    } else {
        response.text().await.unwrap()
    };
    (status, challenge, body)
}

/// A request body sent in chunks, with no length known in advance.
struct Chunked(std::collections::VecDeque<axum::body::Bytes>);

impl http_body::Body for Chunked {
    type Data = axum::body::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<axum::body::Bytes>, std::io::Error>>> {
        std::task::Poll::Ready(self.0.pop_front().map(|b| Ok(http_body::Frame::data(b))))
    }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_share_one_fleet() {
    let server = HttpServer::start().await;
    let a = server.client().await;
    let b = server.client().await;
    server.mock.script(
        "[shared]",
        vec![Step::text("done by the fleet").delay(Duration::from_millis(500))],
    );
    a.create("worker", "[shared] go").await;

    let listed = b.call("list_agents", json!({})).await;
    assert_eq!(names(&listed["agents"]), ["worker"], "{listed}");
    let waited = b.wait_all(&["worker"]).await;
    assert_eq!(
        row(&waited["agents"], "worker")["status"],
        "idle",
        "{waited}"
    );
    let output = b.output("worker").await;
    assert_eq!(output["text"], "done by the fleet", "{output}");
    // And the creator sees what the other client waited for.
    assert_eq!(a.status("worker").await["status"], "idle");
    server.mock.assert_no_protocol_problems();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_streams_progress_before_it_returns() {
    let server = HttpServer::start().await;
    let client = server.client().await;
    server.mock.script(
        "[slow]",
        vec![Step::text("slow answer").delay(Duration::from_secs(5))],
    );
    client.create("slow", "[slow] go").await;
    let (result, progress) = client
        .call_with_progress(
            "wait_for_agents",
            json!({"agents": ["slow"], "timeout_s": 120}),
        )
        .await;
    let returned = Instant::now();
    assert_eq!(result["timed_out"], false, "{result}");
    assert!(
        progress.len() >= 2,
        "expected heartbeats over SSE while waiting, got {progress:?}"
    );
    // Streamed as it happened, not delivered in a batch with the result.
    assert!(
        returned.duration_since(progress[0].at) > Duration::from_secs(1),
        "the first progress notification arrived only with the result"
    );
    for pair in progress.windows(2) {
        assert!(
            pair[1].param.progress > pair[0].param.progress,
            "{progress:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_drops_mid_wait_costs_nothing() {
    let server = HttpServer::start().await;
    let creator = server.client().await;
    server.mock.script(
        "[long]",
        vec![Step::text("finished anyway").delay(Duration::from_secs(4))],
    );
    creator.create("long", "[long] go").await;

    let recorder = Recorder::default();
    let leaver = server.client_with(recorder.clone()).await;
    let waiting = tokio::spawn(async move {
        leaver
            .call_with_progress(
                "wait_for_agents",
                json!({"agents": ["long"], "timeout_s": 120}),
            )
            .await
    });
    // The wait is in flight once its first heartbeat arrives; then the client dies.
    recorder.progress_arrived().await;
    waiting.abort();
    let _ = waiting.await;

    // The agent goes on, and anyone can wait for it again.
    let again = server.client().await;
    let waited = again.wait_all(&["long"]).await;
    assert_eq!(row(&waited["agents"], "long")["status"], "idle", "{waited}");
    assert_eq!(again.output("long").await["text"], "finished anyway");
    assert_eq!(creator.status("long").await["status"], "idle");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_brings_the_fleet_back_to_a_reconnecting_client() {
    let first = HttpServer::start().await;
    let client = first.client().await;
    first
        .mock
        .script("[kept]", vec![Step::text("remembered answer")]);
    client.create("kept", "[kept] go").await;
    client.wait_all(&["kept"]).await;
    let (root, mock, addr) = (first.root.clone(), first.mock.clone(), first.addr);
    assert!(first.terminate(Duration::from_secs(30)).await.success());

    let second = Flotilla::builder()
        .with_test_token()
        .root(root)
        .mock(mock)
        .arg("--listen")
        .arg(&addr.to_string())
        .start_http()
        .await;
    assert_eq!(second.addr, addr);
    // The same client: its old session is unknown (404), so it starts a new one.
    let listed = client.call("list_agents", json!({})).await;
    assert_eq!(names(&listed["agents"]), ["kept"], "{listed}");
    assert_eq!(client.output("kept").await["text"], "remembered answer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_the_token_get_401_and_nothing_else() {
    let server = HttpServer::start().await;
    let url = &server.url;
    let wrong = bearer("test-token-0123456789abcdeX");
    for headers in [
        vec![],
        vec![(AUTHORIZATION, wrong.as_str())],
        vec![(AUTHORIZATION, "Basic dGVzdDp0ZXN0")],
        vec![(AUTHORIZATION, "Bearer")],
    ] {
        let (status, challenge, body) = post(url, &headers, INITIALIZE.into()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{headers:?}");
        assert_eq!(challenge.as_deref(), Some("Bearer"), "{headers:?}");
        assert_eq!(body, "", "{headers:?}");
    }
    // Any path, not only /mcp.
    let other = reqwest::get(url.replace("/mcp", "/metrics")).await.unwrap();
    assert_eq!(other.status(), StatusCode::UNAUTHORIZED);
    // The right token passes.
    let good = bearer(TOKEN);
    let (status, _, body) = post(url, &[(AUTHORIZATION, good.as_str())], INITIALIZE.into()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(!server.logged(TOKEN), "the token appeared in the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_host_or_origin_gets_403() {
    let server = Flotilla::builder()
        .with_test_token()
        .arg("--allow-origin")
        .arg("http://localhost:3000")
        .start_http()
        .await;
    let url = &server.url;
    let auth = bearer(TOKEN);
    let own_origin = format!("http://{}", server.addr);
    let localhost = format!("localhost:{}", server.addr.port());
    let cases: Vec<(Vec<(reqwest::header::HeaderName, &str)>, StatusCode)> = vec![
        (vec![(HOST, "evil.example.com")], StatusCode::FORBIDDEN),
        (vec![(HOST, "evil.example.com:7777")], StatusCode::FORBIDDEN),
        (
            vec![(ORIGIN, "http://evil.example.com")],
            StatusCode::FORBIDDEN,
        ),
        (
            vec![(ORIGIN, "http://localhost:3001")],
            StatusCode::FORBIDDEN,
        ),
        (vec![(ORIGIN, "null")], StatusCode::FORBIDDEN),
        (vec![(ORIGIN, "http://localhost:3000")], StatusCode::OK),
        (vec![(ORIGIN, own_origin.as_str())], StatusCode::OK),
        (vec![(HOST, localhost.as_str())], StatusCode::OK),
        (vec![], StatusCode::OK),
    ];
    for (extra, expected) in cases {
        let mut headers = vec![(AUTHORIZATION, auth.as_str())];
        headers.extend(extra.iter().cloned());
        let (status, _, body) = post(url, &headers, INITIALIZE.into()).await;
        assert_eq!(status, expected, "{extra:?}: {body}");
    }
    // A foreign Host is refused before the token is even looked at.
    let (status, _, _) = post(url, &[(HOST, "evil.example.com")], INITIALIZE.into()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_get_413() {
    let server = HttpServer::start().await;
    let auth = bearer(TOKEN);
    let headers = [(AUTHORIZATION, auth.as_str())];
    let big = vec![b' '; 5 * 1024 * 1024];
    // With a Content-Length, and streamed (chunked, no length).
    let (status, _, _) = post(&server.url, &headers, big.clone().into()).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let chunks = big.chunks(64 * 1024).map(|c| c.to_vec().into()).collect();
    let stream = reqwest::Body::wrap(Chunked(chunks));
    let (status, _, _) = post(&server.url, &headers, stream).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    // The server is fine afterwards.
    let client = server.client().await;
    client.call("list_agents", json!({})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_token_is_private_and_survives_a_restart() {
    let first = Flotilla::builder().start_http().await;
    let file = first.root.path().join("data").join("token");
    let token = std::fs::read_to_string(&file).expect("token file");
    let token = token.trim().to_string();
    assert!(token.len() >= 32, "token too short: {} chars", token.len());
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "token file mode {mode:o}");
    assert!(
        first.logged(&file.display().to_string()),
        "log does not say where the token is"
    );
    assert!(!first.logged(&token), "the token appeared in the log");
    let auth = bearer(&token);
    let (status, _, _) = post(
        &first.url,
        &[(AUTHORIZATION, auth.as_str())],
        INITIALIZE.into(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let root = first.root.clone();
    assert!(first.terminate(Duration::from_secs(30)).await.success());

    let second = Flotilla::builder().root(root).start_http().await;
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), token);
    let (status, _, _) = post(
        &second.url,
        &[(AUTHORIZATION, auth.as_str())],
        INITIALIZE.into(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "the reused token was refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_or_ephemeral_listener_needs_an_explicit_token() {
    let (status, stderr) = Flotilla::builder()
        .env("FLOTILLA_TOKEN", "")
        .arg("--listen")
        .arg("0.0.0.0:0")
        .run_to_exit()
        .await;
    assert!(!status.success(), "started on 0.0.0.0 without a token");
    assert_mentions(&stderr, &["FLOTILLA_TOKEN", "loopback"]);

    let (status, stderr) = Flotilla::builder()
        .env("FLOTILLA_TOKEN", "")
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--ephemeral")
        .run_to_exit()
        .await;
    assert!(!status.success(), "started ephemeral without a token");
    assert_mentions(&stderr, &["FLOTILLA_TOKEN", "--ephemeral"]);

    // With a token it starts, and warns that TLS belongs in a proxy.
    let public = Flotilla::builder()
        .with_test_token()
        .arg("--listen")
        .arg("0.0.0.0:0")
        .start_http()
        .await;
    assert!(public.logged("reverse proxy"), "{}", public.log_tail(20));
    assert!(public.terminate(Duration::from_secs(30)).await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_wait_exits_cleanly_and_leaves_no_process() {
    let server = HttpServer::start().await;
    let client = server.client().await;
    let script = "sleep 300 & echo $! > bg.txt; echo $$ > pid.txt; exec sleep 300";
    server.mock.script(
        "[term]",
        vec![Step::tool("run_command", json!({"command": script}))],
    );
    let created = client.create("termed", "[term] sleep").await;
    let dir = client.agent_dir(&created);
    let pid = read_pid_file(&dir.join("pid.txt")).await;
    let bg = read_pid_file(&dir.join("bg.txt")).await;

    let recorder = Recorder::default();
    let waiter = server.client_with(recorder.clone()).await;
    let waiting = tokio::spawn(async move {
        waiter
            .call_with_progress(
                "wait_for_agents",
                json!({"agents": ["termed"], "timeout_s": 600}),
            )
            .await
    });
    // The wait is in flight once its first heartbeat arrives.
    recorder.progress_arrived().await;

    let started = Instant::now();
    let log = server.log.clone();
    let status = server.terminate(Duration::from_secs(30)).await;
    let took = started.elapsed();
    let child_gone = wait_pid_gone(pid, Duration::from_secs(10)).await;
    let bg_gone = wait_pid_gone(bg, Duration::from_secs(10)).await;
    kill_quietly(pid);
    kill_quietly(bg);
    assert!(status.success(), "exit status {status:?}");
    assert!(child_gone, "an agent's process {pid} outlived SIGTERM");
    assert!(
        bg_gone,
        "an agent's background process {bg} outlived SIGTERM"
    );
    // A wait in flight does not hold the drain (which waits up to 10 s for calls).
    assert!(took < Duration::from_secs(8), "shutdown took {took:?}");
    let log = log.lock().unwrap().join("\n");
    assert!(log.contains("store closed"), "{log}");
    // The wait in flight answered before the server went: timed out, with a note.
    let (result, _) = tokio::time::timeout(CALL_TIMEOUT, waiting)
        .await
        .expect("the wait never answered")
        .expect("the wait failed instead of answering");
    assert_eq!(result["timed_out"], true, "{result}");
    let note = result["note"].as_str().unwrap_or_default();
    assert!(note.contains("restart"), "{result}");
}
