//! Provider faults (issue #9): an Anthropic answer without usable content is a failed
//! call with a clear error, never an empty finished command; an answer that trickles
//! forever hits the call's deadline and one that stalls hits the idle timeout, each
//! retried a bounded number of times.

use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_answers_without_content_fail_the_command() {
    let fl = Flotilla::start().await;
    let usage = json!({"input_tokens": 5, "output_tokens": 1});
    let cases = [
        (
            "[no-content]",
            json!({"id": "m", "type": "message", "role": "assistant", "stop_reason": "end_turn", "usage": usage}),
            "no `content`",
        ),
        (
            "[empty-content]",
            json!({"id": "m", "type": "message", "role": "assistant", "content": [], "stop_reason": "end_turn", "usage": usage}),
            "no text or tool call",
        ),
        (
            "[unknown-blocks]",
            json!({"id": "m", "type": "message", "role": "assistant",
                   "content": [{"type": "hologram", "data": "x"}], "stop_reason": "end_turn", "usage": usage}),
            "no text or tool call",
        ),
    ];
    for (i, (key, body, _)) in cases.iter().enumerate() {
        fl.mock.script(key, vec![Step::raw(200, body.clone())]);
        fl.create(&format!("a{i}"), &format!("{key} answer")).await;
    }
    let names: Vec<String> = (0..cases.len()).map(|i| format!("a{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    fl.wait_all(&refs).await;
    for (i, (key, _, says)) in cases.iter().enumerate() {
        let status = fl.status(&names[i]).await;
        assert_eq!(status["status"], "failed", "{key}: {status}");
        let error = status["last_error"].as_str().unwrap_or_default();
        assert_mentions(error, &["anthropic", says]);
        let output = fl.output(&names[i]).await;
        assert_eq!(output["command_status"], "failed", "{key}: {output}");
        assert_eq!(
            fl.mock.requests_for(key).len(),
            1,
            "{key}: retried a fatal answer"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickling_answer_hits_the_deadline_and_is_retried_once() {
    let config = "[retry]\nmax_retries = 5\ninitial_backoff_ms = 50\nmax_backoff_ms = 200\n\
                  request_timeout_s = 2\ntimeout_retries = 1\n";
    let fl = Flotilla::builder().config(config).start().await;
    // The mock trickles a space every 100 ms while it "thinks": never idle, never done.
    let slow = || Step::text("too late").delay(Duration::from_secs(120));
    fl.mock
        .script("[trickle]", vec![slow(), slow(), slow(), slow()]);
    let started = Instant::now();
    fl.create("patient", "[trickle] answer slowly").await;
    fl.wait_all(&["patient"]).await;
    let status = fl.status("patient").await;
    assert_eq!(status["status"], "failed", "{status}");
    assert_mentions(
        status["last_error"].as_str().unwrap_or_default(),
        &["timed out", "2s", "request_timeout_s", "2 attempts"],
    );
    assert_eq!(
        fl.mock.requests_for("[trickle]").len(),
        2,
        "timeouts retried more than once"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_answer_hits_the_idle_timeout() {
    let config = "[retry]\nmax_retries = 2\ninitial_backoff_ms = 50\nmax_backoff_ms = 200\n\
                  idle_timeout_s = 1\n";
    let fl = Flotilla::builder().config(config).start().await;
    fl.mock.script(
        "[stall]",
        vec![Step::stall(), Step::stall(), Step::stall(), Step::stall()],
    );
    let started = Instant::now();
    fl.create("stuck", "[stall] answer").await;
    fl.wait_all(&["stuck"]).await;
    let status = fl.status("stuck").await;
    assert_eq!(status["status"], "failed", "{status}");
    assert_mentions(
        status["last_error"].as_str().unwrap_or_default(),
        &["stalled", "idle_timeout_s", "3 attempts"],
    );
    assert_eq!(fl.mock.requests_for("[stall]").len(), 3);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
}
