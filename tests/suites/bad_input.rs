//! Every mistake an orchestrator can make is a tool result with `isError: true` and a
//! message saying what was wrong (never a protocol error, a panic or a hang), and a
//! rejected call changes nothing.

use crate::common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_agent() {
    let fl = Flotilla::start().await;
    let calls = [
        ("get_agent_status", json!({"agent": "ghost"})),
        ("get_agent_output", json!({"agent": "ghost"})),
        ("command_agent", json!({"agent": "ghost", "task": "boo"})),
        ("delete_agent", json!({"agent": "ghost"})),
        (
            "wait_for_agents",
            json!({"agents": ["ghost"], "timeout_s": 5}),
        ),
    ];
    for (tool, args) in calls {
        let err = fl.call_err(tool, args).await;
        assert_mentions(&err, &["ghost"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_must_be_valid_and_unique() {
    let fl = Flotilla::start().await;
    fl.create("dup", "[dup] hi").await;
    let err = fl
        .call_err("create_agent", json!({"name": "dup", "task": "again"}))
        .await;
    assert_mentions(&err, &["dup"]);

    let long = "a".repeat(65);
    for bad in [
        "bad name!",
        "",
        long.as_str(),
        "ünï",
        "a/b",
        "ag-0123456789",
    ] {
        let err = fl.call_err("create_agent", json!({"name": bad})).await;
        assert_mentions(&err, &["name"]);
    }
    let list = fl.call("list_agents", json!({})).await;
    assert_eq!(
        names(&list["agents"]),
        ["dup"],
        "a rejected create registered an agent"
    );

    // The boundaries are accepted.
    let ok = "b".repeat(64);
    fl.call("create_agent", json!({"name": ok})).await;
    fl.call("create_agent", json!({"name": "A-z_0"})).await;
    fl.call("create_agent", json!({"name": "ag-tester"})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_role_model_and_tool() {
    let fl = Flotilla::start().await;
    let err = fl
        .call_err("create_agent", json!({"name": "r", "role": "wizard"}))
        .await;
    assert_mentions(&err, &["wizard"]);
    let err = fl
        .call_err("create_agent", json!({"name": "m", "model": "nope:x"}))
        .await;
    assert_mentions(&err, &["nope"]);
    let err = fl
        .call_err("create_agent", json!({"name": "m2", "model": "gibberish"}))
        .await;
    assert_mentions(&err, &["gibberish"]);
    let err = fl
        .call_err(
            "create_agent",
            json!({"name": "t", "tools": ["read_file", "teleport"]}),
        )
        .await;
    assert_mentions(&err, &["teleport"]);
    let list = fl.call("list_agents", json!({})).await;
    assert!(names(&list["agents"]).is_empty(), "{list}");
    assert!(
        fl.mock.requests().is_empty(),
        "a rejected agent called the model"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_range_numbers() {
    let fl = Flotilla::start().await;
    let err = fl
        .call_err("create_agent", json!({"name": "s", "max_steps": 0}))
        .await;
    assert_mentions(&err, &["max_steps"]);
    fl.create("x", "[x] hi").await;
    fl.wait_all(&["x"]).await;
    let err = fl
        .call_err("wait_for_agents", json!({"timeout_s": 100_000}))
        .await;
    assert_mentions(&err, &["timeout_s", "600"]);
    let err = fl
        .call_err("get_agent_output", json!({"agent": "x", "max_chars": 0}))
        .await;
    assert_mentions(&err, &["max_chars"]);
    let err = fl
        .call_err("get_agent_output", json!({"agent": "x", "command": 7}))
        .await;
    assert_mentions(&err, &["command"]);
    let err = fl
        .call_err("get_agent_output", json!({"agent": "x", "command": 0}))
        .await;
    assert_mentions(&err, &["command"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_enum_values() {
    let fl = Flotilla::start().await;
    let err = fl
        .call_err("wait_for_agents", json!({"until": "most", "timeout_s": 5}))
        .await;
    assert_mentions(&err, &["until"]);
    let err = fl
        .call_err("list_agents", json!({"status": "sleeping"}))
        .await;
    assert_mentions(&err, &["status"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_task() {
    let fl = Flotilla::start().await;
    fl.call("create_agent", json!({"name": "blank"})).await;
    for task in ["", "   \n"] {
        let err = fl
            .call_err("command_agent", json!({"agent": "blank", "task": task}))
            .await;
        assert_mentions(&err, &["task"]);
    }
    assert_eq!(fl.status("blank").await["commands"], 0);
    assert!(fl.mock.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_survives_a_burst_of_bad_calls() {
    let fl = Flotilla::start().await;
    for _ in 0..3 {
        fl.call_err("get_agent_status", json!({"agent": ""})).await;
        fl.call_err("create_agent", json!({"name": "has space"}))
            .await;
    }
    fl.create("fine", "[fine] hi").await;
    fl.wait_all(&["fine"]).await;
    assert_eq!(fl.output("fine").await["text"], "done");
}
