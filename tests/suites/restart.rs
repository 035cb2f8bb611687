//! Nothing lost: the fleet survives restarts. Servers are killed with SIGKILL (or
//! shut down) mid-command and a new server on the same store must bring back every
//! agent, conversation, output and counter, and finish the interrupted commands.

use std::time::Duration;

use crate::common::*;
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(60);

/// Waits until `agent` has an event of `kind` (events are read after every earlier
/// write, so a hit means it is committed).
async fn wait_event(fl: &Flotilla, agent: &str, kind: &str) {
    eventually(&format!("a {kind} event for {agent}"), async || {
        !fl.event_kinds(agent, &[kind]).await.is_empty()
    })
    .await;
}

fn ids(list: &Value) -> Vec<(String, String)> {
    list["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["name"].as_str().unwrap().to_string(),
                a["agent_id"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_command_loses_nothing_and_interrupted_commands_complete() {
    let fl = Flotilla::start().await;
    let m = fl.mock.clone();
    m.script(
        "[b]",
        vec![
            Step::tool("write_file", json!({"path": "b.txt", "content": "b"})),
            Step::text("B final"),
        ],
    );
    m.script(
        "[a]",
        vec![
            Step::tool("write_file", json!({"path": "a.txt", "content": "a"})),
            Step::text("never delivered").delay(Duration::from_secs(30)),
            Step::text("A final"),
        ],
    );
    m.script(
        "[d]",
        vec![
            Step::tool(
                "run_command",
                json!({"command": "echo run >> runs.txt; sleep 30"}),
            ),
            Step::text("D final"),
        ],
    );
    m.script(
        "[c]",
        vec![
            Step::text("never delivered").delay(Duration::from_secs(30)),
            Step::text("C1 again"),
            Step::text("C2"),
        ],
    );

    fl.create("done-b", "[b] write b").await;
    fl.wait_all(&["done-b"]).await;
    let b_before = fl.status("done-b").await;
    fl.create("slow-a", "[a] write a").await;
    fl.create("cmd-d", "[d] run it").await;
    fl.create("queue-c", "[c] first").await;
    let queued = fl.command("queue-c", "[c] second").await;
    assert_eq!(queued["pending"], 1, "{queued}");

    // Mid-flight: a's second model call, d's command and c's first call are running.
    m.wait_requests("[a]", 2, LONG).await;
    m.wait_requests("[c]", 1, LONG).await;
    wait_event(&fl, "cmd-d", "tool_call").await;
    let runs = fl.work().join("runs.txt");
    eventually("the command started (runs.txt)", async || runs.exists()).await;
    let before = fl.call("list_agents", json!({})).await;

    let fl = fl.restart().await;

    // Every agent is back under the same id.
    let after = fl.call("list_agents", json!({})).await;
    assert_eq!(ids(&after), ids(&before), "{after}");

    // The finished agent: output, files and counters intact, no new model call.
    let b = fl.output("done-b").await;
    assert_eq!(b["text"], "B final", "{b}");
    assert_eq!(b["command_status"], "done");
    assert_eq!(b["files_written"], json!(["b.txt"]));
    let b_after = fl.status("done-b").await;
    for field in [
        "status",
        "steps",
        "tool_calls",
        "commands",
        "tokens",
        "cost_usd",
    ] {
        assert_eq!(
            b_after[field], b_before[field],
            "{field}: {b_after} vs {b_before}"
        );
    }

    // The interrupted commands complete.
    let waited = fl
        .call("wait_for_agents", json!({"timeout_s": SETTLE_TIMEOUT_S}))
        .await;
    assert_eq!(waited["timed_out"], false, "{waited}");
    let a = fl.output("slow-a").await;
    assert_eq!(
        (a["text"].as_str(), a["command_status"].as_str()),
        (Some("A final"), Some("done")),
        "{a}"
    );
    assert_eq!(
        a["files_written"],
        json!(["a.txt"]),
        "files from before the kill are kept: {a}"
    );
    let a_status = fl.status("slow-a").await;
    assert_eq!(
        a_status["steps"], 2,
        "one step before the kill, one after: {a_status}"
    );
    let resumed = fl
        .call(
            "get_agent_events",
            json!({"agent": "slow-a", "kinds": ["resumed"]}),
        )
        .await;
    assert_eq!(resumed["events"].as_array().unwrap().len(), 1, "{resumed}");
    // The model call made again carries the conversation so far.
    let redo = fl.requests_since_start("[a]");
    assert_eq!(redo.len(), 1);
    assert!(
        redo[0]
            .tool_results()
            .iter()
            .any(|r| r.content.contains("a.txt")),
        "{:?}",
        redo[0].tool_results()
    );

    // The tool cut short is reported as interrupted, not run again.
    let d = fl.output("cmd-d").await;
    assert_eq!(d["text"], "D final", "{d}");
    let runs = std::fs::read_to_string(fl.work().join("runs.txt")).unwrap();
    assert_eq!(
        runs.lines().count(),
        1,
        "run_command must not be re-run: {runs:?}"
    );
    let redo = fl.requests_since_start("[d]");
    let results = redo[0].tool_results();
    assert!(
        results
            .iter()
            .any(|r| r.content.contains("Interrupted") && r.is_error == Some(true)),
        "{results:?}"
    );

    // The queued command survives and runs after the resumed one.
    let c1 = fl.output_of("queue-c", 1).await;
    let c2 = fl.output_of("queue-c", 2).await;
    assert_eq!(c1["text"], "C1 again", "{c1}");
    assert_eq!(c2["text"], "C2", "{c2}");
    fl.mock.assert_no_protocol_problems();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_resume_marks_the_running_command_failed_and_cancels_the_queue() {
    let fl = Flotilla::start().await;
    fl.mock.script(
        "[n]",
        vec![
            Step::text("never delivered").delay(Duration::from_secs(30)),
            Step::text("after the restart"),
        ],
    );
    fl.create("nr", "[n] first").await;
    fl.command("nr", "[n] second").await;
    fl.mock.wait_requests("[n]", 1, LONG).await;
    let fl = fl.restart().arg("--no-resume").await;
    let s = fl.status("nr").await;
    assert_eq!(s["status"], "failed", "{s}");
    assert!(
        s["last_error"].as_str().unwrap().contains("--no-resume"),
        "{s}"
    );
    assert_eq!(s["pending"], 0, "{s}");
    let second = fl.output_of("nr", 2).await;
    assert_eq!(second["command_status"], "cancelled", "{second}");
    assert_eq!(
        fl.mock.requests_for("[n]").len(),
        1,
        "no model call after --no-resume"
    );

    // It can be commanded again, with a valid conversation.
    fl.command("nr", "go on").await;
    fl.wait_all(&["nr"]).await;
    assert_eq!(fl.output("nr").await["text"], "after the restart");
    // Settled: had the restart resumed anything, that call would be counted by now.
    assert_eq!(
        fl.mock.requests_for("[n]").len(),
        2,
        "no model call after --no-resume but the one commanded"
    );
    fl.mock.assert_no_protocol_problems();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_session_mid_command_resumes_on_the_next_start() {
    let fl = Flotilla::start().await;
    fl.mock.script(
        "[g]",
        vec![
            Step::text("never delivered").delay(Duration::from_secs(30)),
            Step::text("finished later"),
        ],
    );
    fl.create("g", "[g] work").await;
    fl.mock.wait_requests("[g]", 1, LONG).await;
    let fl = fl.restart().after_closing(Duration::from_secs(15)).await;
    fl.wait_all(&["g"]).await;
    let out = fl.output("g").await;
    assert_eq!(out["text"], "finished later", "{out}");
    assert_eq!(out["command_status"], "done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_the_same_store_is_refused() {
    let fl = Flotilla::start().await;
    let (status, stderr) = Flotilla::builder()
        .mock(fl.mock.clone())
        .root(fl.root_handle())
        .run_to_exit()
        .await;
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains("another flotilla server"), "{stderr}");
    assert!(stderr.contains(&format!("pid {}", fl.pid)), "{stderr}");
    assert!(stderr.contains("--data-dir"), "{stderr}");
    // The first one is unharmed.
    fl.call("list_agents", json!({})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_store_stops_the_server_with_the_file_named() {
    let root = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let data = root.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let db = data.join("fleet.db");
    std::fs::write(&db, "not a database ".repeat(300)).unwrap();
    let (status, stderr) = Flotilla::builder().root(root.clone()).run_to_exit().await;
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains(&db.display().to_string()), "{stderr}");
    assert!(stderr.contains("Move it aside"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&db).unwrap(),
        "not a database ".repeat(300),
        "the store must be left as it was"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_page_by_cursor_and_kind_and_delete_forgets_the_agent() {
    let fl = Flotilla::start().await;
    fl.mock.script(
        "[e]",
        vec![
            Step::tool("list_files", json!({})),
            Step::tool("read_file", json!({"path": "x.txt"})),
            Step::text("E done"),
        ],
    );
    std::fs::write(fl.work().join("x.txt"), "x").unwrap();
    fl.create("ev", "[e] look around").await;
    fl.wait_all(&["ev"]).await;

    // created, command, started, 3 × model, 2 × (tool_call, tool_result), finished.
    let all = fl
        .call("get_agent_events", json!({"agent": "ev", "limit": 500}))
        .await;
    assert_eq!(
        kinds(&all),
        [
            "created",
            "command",
            "started",
            "model",
            "tool_call",
            "tool_result",
            "model",
            "tool_call",
            "tool_result",
            "model",
            "finished"
        ],
        "{all}"
    );
    assert_eq!(all["next_after"], Value::Null);

    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let page = fl
            .call(
                "get_agent_events",
                json!({"agent": "ev", "after": after, "limit": 4}),
            )
            .await;
        let events = page["events"].as_array().unwrap();
        assert!(events.len() <= 4);
        seen.extend(events.iter().map(|e| e["seq"].as_u64().unwrap()));
        match page["next_after"].as_u64() {
            Some(n) => after = n,
            None => break,
        }
    }
    assert_eq!(seen, (1..=11).collect::<Vec<u64>>());

    let tools = fl
        .call(
            "get_agent_events",
            json!({"agent": "ev", "kinds": ["tool_call"]}),
        )
        .await;
    let summaries: Vec<&str> = tools["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["summary"].as_str().unwrap())
        .collect();
    assert_eq!(summaries.len(), 2, "{tools}");
    assert!(summaries[1].contains("x.txt"), "{tools}");
    let bad = fl
        .call_err(
            "get_agent_events",
            json!({"agent": "ev", "kinds": ["nope"]}),
        )
        .await;
    assert!(bad.contains("tool_result"), "{bad}");

    fl.call("delete_agent", json!({"agent": "ev"})).await;
    let fl = fl.restart().await;
    let list = fl.call("list_agents", json!({})).await;
    assert_eq!(
        list["agents"],
        json!([]),
        "a deleted agent stays deleted: {list}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_left_unanswered_by_no_resume_are_never_run_later() {
    let fl = Flotilla::start().await;
    fl.mock.script(
        "[u]",
        vec![
            Step::tools(vec![
                ("run_command", json!({"command": "sleep 30"})),
                (
                    "write_file",
                    json!({"path": "stale.txt", "content": "stale"}),
                ),
            ]),
            Step::text("fresh start"),
        ],
    );
    fl.create("u", "[u] two calls").await;
    wait_event(&fl, "u", "tool_call").await;
    let fl = fl.restart().arg("--no-resume").await;
    fl.command("u", "start over").await;
    fl.wait_all(&["u"]).await;
    let out = fl.output("u").await;
    assert_eq!(out["text"], "fresh start", "{out}");
    assert!(
        !fl.work().join("stale.txt").exists(),
        "a call abandoned by the restart was run later"
    );
    let last = fl.mock.requests_for("[u]").pop().unwrap();
    let results = last.tool_results();
    assert!(
        results.iter().any(|r| r.content.starts_with("Interrupted")),
        "{results:?}"
    );
    assert!(
        results.iter().any(|r| r.content.starts_with("Not run")),
        "{results:?}"
    );
    fl.mock.assert_no_protocol_problems();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledged_interrupt_survives_a_crash() {
    let fl = Flotilla::start().await;
    fl.mock.script(
        "[i]",
        vec![
            Step::text("never delivered").delay(Duration::from_secs(30)),
            // The old server may already have started command 2 when it was killed;
            // then its answer is lost and the call is made again after the restart.
            Step::text("redirected"),
            Step::text("redirected"),
        ],
    );
    fl.create("i", "[i] long job").await;
    fl.mock.wait_requests("[i]", 1, LONG).await;
    let ack = fl
        .call(
            "command_agent",
            json!({"agent": "i", "task": "stop that, do this", "interrupt": true}),
        )
        .await;
    assert_eq!(ack["command"], 2, "{ack}");
    // Killed at once: the worker may not have recorded the cancellation yet.
    let fl = fl.restart().await;
    fl.wait_all(&["i"]).await;
    let first = fl.output_of("i", 1).await;
    assert_eq!(first["command_status"], "cancelled", "{first}");
    let second = fl.output_of("i", 2).await;
    assert_eq!(second["text"], "redirected", "{second}");
    // (When the old server got as far as finishing command 2, nothing is left to do.)
    for r in fl.requests_since_start("[i]") {
        assert!(
            r.body_text().contains("stop that, do this"),
            "the interrupted command was resumed: {}",
            r.body_text()
        );
    }
    fl.mock.assert_no_protocol_problems();
}
