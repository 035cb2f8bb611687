//! Self-tests of the harness itself (no flotilla involved): the mock model rejects
//! malformed requests, counts abandoned calls, and the pid helpers see processes die.

use std::time::Duration;

use crate::common::*;
use serde_json::json;

#[tokio::test]
async fn mock_rejects_bad_protocol() {
    let mock = MockModel::start().await;
    let c = reqwest::Client::new();
    let r = c.post(format!("{}/v1/messages", mock.url()))
        .json(&json!({"model": "m", "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "x", "input": {}}]},
            {"role": "user", "content": "forgot the result"}]}))
        .send().await.unwrap();
    assert_eq!(r.status(), 400);
    let reqs = mock.requests();
    let p = reqs[0].problems.join("\n");
    assert!(
        p.contains("x-api-key") && p.contains("max_tokens") && p.contains("no tool_result"),
        "{p}"
    );
    // abandoned request stops counting as in flight
    mock.script(
        "[slow]",
        vec![Step::text("late").delay(Duration::from_secs(30))],
    );
    let url = mock.url();
    let h = tokio::spawn(async move {
        reqwest::Client::new().post(format!("{url}/v1/messages"))
            .header("x-api-key", "k").header("anthropic-version", "v")
            .json(&json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "[slow]"}]}))
            .send().await
    });
    mock.wait_requests("[slow]", 1, Duration::from_secs(5))
        .await;
    assert_eq!(mock.in_flight(), 1);
    h.abort();
    drop(h);
    mock.wait_no_request_in_flight(Duration::from_secs(5)).await;
    assert_eq!(mock.in_flight(), 0, "abandoned request still counted");
    assert_eq!(
        mock.completed(),
        0,
        "the abandoned reply must not count as completed"
    );
}

#[tokio::test]
async fn pid_helpers() {
    let mut child = tokio::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let pid = child.id().unwrap() as i32;
    assert!(pid_alive(pid));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    // zombie until reaped: still counts as gone
    assert!(wait_pid_gone(pid, Duration::from_secs(5)).await);
    let _ = child.wait().await;
}
