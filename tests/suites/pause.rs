//! Pause and resume: a paused agent finishes the tool it is in, then holds; no model
//! call starts while paused, even across a SIGKILL and restart; queued commands stay
//! queued; resume finishes the work.

use crate::common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_mid_command_holds_across_a_restart_and_resume_finishes() {
    let fl = Flotilla::start().await;
    fl.mock.script(
        "[p]",
        vec![
            Step::tool(
                "run_command",
                json!({"command": "while [ ! -f go ]; do sleep 0.05; done; echo one > step1.txt"}),
            ),
            Step::text("finished after resume"),
        ],
    );
    let created = fl.create("p", "[p] do the steps").await;
    let dir = fl.agent_dir(&created);
    fl.status_until("p", "its tool runs", |s| {
        s["activity"]
            .as_str()
            .is_some_and(|a| a.starts_with("run_command"))
    })
    .await;

    let paused = fl.call("pause_agents", json!({"agents": ["p"]})).await;
    assert_eq!(paused["changed"], json!(["p"]), "{paused}");
    // The tool it is in runs to its end.
    std::fs::write(dir.join("go"), "").unwrap();
    // A paused agent counts as settled: the wait returns once it holds.
    let waited = fl
        .call("wait_for_agents", json!({"agents": ["p"], "timeout_s": 30}))
        .await;
    assert_eq!(waited["timed_out"], false, "{waited}");
    assert_eq!(waited["agents"][0]["status"], "paused", "{waited}");
    assert!(
        dir.join("step1.txt").exists(),
        "the tool in flight was not finished"
    );
    assert_eq!(
        fl.mock.requests_for("[p]").len(),
        1,
        "a model call started while paused"
    );

    // A command given while paused stays queued.
    let queued = fl.command("p", "[p] and then this").await;
    assert_eq!(queued["status"], "paused", "{queued}");
    assert_eq!(fl.status("p").await["pending"], 1);
    // Pausing again changes nothing.
    let again = fl.call("pause_agents", json!({})).await;
    assert_eq!(again["unchanged"], json!(["p"]), "{again}");

    // SIGKILL while paused: after the restart it is still held, nothing lost.
    let fl = fl.restart().await;
    let status = fl
        .status_until("p", "held again", |s| s["status"] == "paused")
        .await;
    assert_eq!(status["pending"], 1, "{status}");
    let waited = fl
        .call("wait_for_agents", json!({"agents": ["p"], "timeout_s": 30}))
        .await;
    assert_eq!(waited["agents"][0]["status"], "paused", "{waited}");
    assert_eq!(
        fl.mock.requests_for("[p]").len(),
        1,
        "a model call started while paused"
    );

    let resumed = fl.call("resume_agents", json!({})).await;
    assert_eq!(resumed["changed"], json!(["p"]), "{resumed}");
    fl.wait_all(&["p"]).await;
    let status = fl.status("p").await;
    assert_eq!(status["status"], "idle", "{status}");
    assert_eq!(fl.output_of("p", 1).await["text"], "finished after resume");
    assert_eq!(fl.output_of("p", 2).await["command_status"], "done");
    // The model's second call carried the tool's result: it continued where it stopped.
    let second = &fl.mock.requests_for("[p]")[1];
    assert!(
        second.tool_results().iter().any(|r| !r.failed()),
        "{:?}",
        second.body
    );
    fl.mock.assert_no_protocol_problems();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pausing_an_idle_agent_holds_its_queue_and_resume_restores_its_status() {
    let fl = Flotilla::start().await;
    fl.call("create_agent", json!({"name": "i"})).await;
    let e = fl
        .call_err("pause_agents", json!({"agents": ["nobody"]}))
        .await;
    assert!(e.contains("nobody"), "{e}");
    let e = fl.call_err("pause_agents", json!({"agents": []})).await;
    assert!(e.contains("empty"), "{e}");
    fl.call("pause_agents", json!({"agents": ["i"]})).await;
    assert_eq!(fl.status("i").await["status"], "paused");
    fl.command("i", "[i] later").await;
    let listed = fl.call("list_agents", json!({"status": "paused"})).await;
    assert_eq!(names(&listed["agents"]), ["i"], "{listed}");
    assert!(fl.mock.requests_for("[i]").is_empty());
    fl.call("resume_agents", json!({"agents": ["i"]})).await;
    fl.wait_all(&["i"]).await;
    assert_eq!(fl.status("i").await["status"], "idle");
    assert_eq!(fl.mock.requests_for("[i]").len(), 1);
}
