//! Deleting agents: while a model call is in flight, while a long `run_command` runs
//! (its process and its background children die), `delete_all_agents`, and shutdown.

use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::json;

const PROMPT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_during_a_model_call() {
    let fl = Flotilla::start().await;
    fl.mock.script(
        "[del-model]",
        vec![
            Step::tool("write_file", json!({"path": "after.txt", "content": "x"}))
                .delay(Duration::from_secs(60)),
        ],
    );
    let created = fl.create("victim", "[del-model] think hard").await;
    fl.mock
        .wait_requests("[del-model]", 1, Duration::from_secs(30))
        .await;

    let started = Instant::now();
    let deleted = fl.call("delete_agent", json!({"agent": "victim"})).await;
    assert!(
        started.elapsed() < PROMPT,
        "delete_agent took {:?}",
        started.elapsed()
    );
    assert_eq!(deleted["deleted"], "victim");
    assert_eq!(deleted["agent_id"], created["agent_id"]);

    let list = fl.call("list_agents", json!({})).await;
    assert!(names(&list["agents"]).is_empty(), "{list}");
    let err = fl
        .call_err("get_agent_status", json!({"agent": "victim"}))
        .await;
    assert_mentions(&err, &["victim"]);

    // The model call was abandoned, so the scripted tool call never runs.
    fl.mock.wait_no_request_in_flight(PROMPT).await;
    assert_eq!(
        fl.mock.in_flight(),
        0,
        "the deleted agent's model call is still open"
    );
    assert!(!fl.agent_dir(&created).join("after.txt").exists());

    // The name is free again.
    fl.create("victim", "[reborn] hello").await;
    fl.wait_all(&["victim"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_kills_a_running_command_and_its_children() {
    let fl = Flotilla::start().await;
    let script = "sleep 300 & echo $! > bg.txt; echo $$ > pid.txt; exec sleep 300";
    fl.mock.script(
        "[del-cmd]",
        vec![Step::tool(
            "run_command",
            json!({"command": script, "timeout_s": 600}),
        )],
    );
    let created = fl.create("sleeper", "[del-cmd] sleep").await;
    let dir = fl.agent_dir(&created);
    let pid = read_pid_file(&dir.join("pid.txt")).await;
    let bg = read_pid_file(&dir.join("bg.txt")).await;
    assert!(
        pid_alive(pid) && pid_alive(bg),
        "the command is not running"
    );
    let s = fl.status("sleeper").await;
    assert_eq!(s["status"], "running");
    if let Some(activity) = s["activity"].as_str() {
        assert!(activity.contains("run_command"), "activity: {activity}");
    }

    let started = Instant::now();
    let deleted = fl.call("delete_agent", json!({"agent": "sleeper"})).await;
    assert!(
        started.elapsed() < PROMPT,
        "delete_agent took {:?}",
        started.elapsed()
    );
    assert_eq!(deleted["deleted"], "sleeper");
    let pid_gone = wait_pid_gone(pid, PROMPT).await;
    let bg_gone = wait_pid_gone(bg, PROMPT).await;
    kill_quietly(pid);
    kill_quietly(bg);
    assert!(pid_gone, "run_command process {pid} survived delete_agent");
    assert!(
        bg_gone,
        "background child {bg} survived delete_agent (process group not killed)"
    );
    assert!(
        dir.join("pid.txt").exists(),
        "delete_agent must keep the agent's files"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_command_timeout_kills_the_process_group() {
    let fl = Flotilla::start().await;
    let script = "sleep 300 & echo $! > bg.txt; exec sleep 300";
    fl.mock.script(
        "[cmd-timeout]",
        vec![
            Step::tool("run_command", json!({"command": script, "timeout_s": 1})),
            Step::text("gave up"),
        ],
    );
    let created = fl.create("impatient", "[cmd-timeout] wait").await;
    let bg = read_pid_file(&fl.agent_dir(&created).join("bg.txt")).await;
    fl.wait_all(&["impatient"]).await;
    let result = &fl.mock.requests_for("[cmd-timeout]")[1].tool_results()[0];
    let gone = wait_pid_gone(bg, PROMPT).await;
    kill_quietly(bg);
    assert!(result.failed(), "{result:?}");
    assert_mentions(&result.content, &["time"]);
    assert!(gone, "background child {bg} survived the timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_all_agents_removes_every_agent_and_keeps_files() {
    let fl = Flotilla::start().await;
    fl.mock.script(
        "[keep]",
        vec![
            Step::tool("write_file", json!({"path": "keep.txt", "content": "k"})),
            Step::text("ok"),
        ],
    );
    fl.mock.script(
        "[busy]",
        vec![Step::text("x").delay(Duration::from_secs(60))],
    );
    let keeper = fl.create("keeper", "[keep] write").await;
    fl.create("idle1", "[idle1] hi").await;
    fl.wait_all(&["keeper", "idle1"]).await;
    fl.create("busy", "[busy] work").await;
    fl.mock
        .wait_requests("[busy]", 1, Duration::from_secs(30))
        .await;

    let started = Instant::now();
    let deleted = fl.call("delete_all_agents", json!({})).await;
    assert!(started.elapsed() < PROMPT);
    assert_eq!(deleted["deleted"], 3, "{deleted}");
    let list = fl.call("list_agents", json!({})).await;
    assert!(names(&list["agents"]).is_empty(), "{list}");
    assert!(fl.agent_dir(&keeper).join("keep.txt").exists());
    let again = fl.call("delete_all_agents", json!({})).await;
    assert_eq!(again["deleted"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_session_stops_the_server_and_its_processes() {
    let fl = Flotilla::start().await;
    let script = "sleep 300 & echo $! > bg.txt; echo $$ > pid.txt; exec sleep 300";
    fl.mock.script(
        "[shutdown]",
        vec![Step::tool("run_command", json!({"command": script}))],
    );
    let created = fl.create("orphan", "[shutdown] sleep").await;
    let dir = fl.agent_dir(&created);
    let pid = read_pid_file(&dir.join("pid.txt")).await;
    let bg = read_pid_file(&dir.join("bg.txt")).await;
    let server_gone = fl.shutdown(Duration::from_secs(15)).await;
    let child_gone = wait_pid_gone(pid, PROMPT).await;
    let bg_gone = wait_pid_gone(bg, PROMPT).await;
    kill_quietly(pid);
    kill_quietly(bg);
    assert!(server_gone, "flotilla kept running after its stdin closed");
    assert!(child_gone, "an agent's process {pid} outlived the server");
    assert!(
        bg_gone,
        "an agent's background process {bg} outlived the server"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_server_and_its_processes() {
    let fl = Flotilla::start().await;
    let script = "sleep 300 & echo $! > bg.txt; echo $$ > pid.txt; exec sleep 300";
    fl.mock.script(
        "[term]",
        vec![Step::tool("run_command", json!({"command": script}))],
    );
    let created = fl.create("termed", "[term] sleep").await;
    let dir = fl.agent_dir(&created);
    let pid = read_pid_file(&dir.join("pid.txt")).await;
    let bg = read_pid_file(&dir.join("bg.txt")).await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(fl.pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let server_gone = wait_pid_gone(fl.pid as i32, Duration::from_secs(15)).await;
    let child_gone = wait_pid_gone(pid, PROMPT).await;
    let bg_gone = wait_pid_gone(bg, PROMPT).await;
    kill_quietly(pid);
    kill_quietly(bg);
    assert!(server_gone, "flotilla kept running after SIGTERM");
    assert!(child_gone, "an agent's process {pid} outlived SIGTERM");
    assert!(
        bg_gone,
        "an agent's background process {bg} outlived SIGTERM"
    );
}
