//! Which sub-agent tools an agent gets: the `tools` allow-list and the read-only
//! `scout` role, both in what is offered to the model and in what a call may do.

use crate::common::*;
use serde_json::json;

const WRITE_TOOLS: [&str; 3] = ["edit_file", "run_command", "write_file"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_list_limits_offered_and_callable_tools() {
    let fl = Flotilla::start().await;
    fl.mock.script(
        "[allow]",
        vec![
            Step::tool("write_file", json!({"path": "nope.txt", "content": "x"})),
            Step::text("ok"),
        ],
    );
    let created = fl
        .call(
            "create_agent",
            json!({"name": "limited", "task": "[allow] try writing",
                   "tools": ["read_file", "list_files"]}),
        )
        .await;
    fl.wait_all(&["limited"]).await;
    let reqs = fl.mock.requests_for("[allow]");
    assert_eq!(reqs[0].tool_names(), ["list_files", "read_file"]);
    let result = &reqs[1].tool_results()[0];
    assert!(
        result.failed(),
        "a tool outside the allow-list ran: {result:?}"
    );
    assert!(
        result.content.contains("write_file"),
        "say which tool is unavailable: {result:?}"
    );
    assert!(!fl.agent_dir(&created).join("nope.txt").exists());
    fl.mock.assert_no_protocol_problems();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_tool_call_from_the_model_is_an_error_result() {
    let fl = Flotilla::start().await;
    fl.mock.script(
        "[ghost-tool]",
        vec![
            Step::tool("teleport", json!({"to": "mars"})),
            Step::text("ok"),
        ],
    );
    fl.create("dreamer", "[ghost-tool] go").await;
    fl.wait_all(&["dreamer"]).await;
    let result = &fl.mock.requests_for("[ghost-tool]")[1].tool_results()[0];
    assert!(
        result.failed() && result.content.contains("teleport"),
        "{result:?}"
    );
    assert_eq!(fl.status("dreamer").await["status"], "idle");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tool_arguments_are_an_error_result() {
    let fl = Flotilla::start().await;
    fl.mock.script(
        "[bad-args]",
        vec![
            Step::tool("read_file", json!({"file": "x.txt"})),
            Step::text("ok"),
        ],
    );
    fl.create("sloppy", "[bad-args] go").await;
    fl.wait_all(&["sloppy"]).await;
    let result = &fl.mock.requests_for("[bad-args]")[1].tool_results()[0];
    assert!(
        result.failed() && result.content.contains("path"),
        "{result:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scout_role_is_read_only() {
    let fl = Flotilla::start().await;
    fl.mock.script(
        "[scout]",
        vec![
            Step::tool("run_command", json!({"command": "touch pwned"})),
            Step::text("looked"),
        ],
    );
    let created = fl
        .call(
            "create_agent",
            json!({"name": "scout", "task": "[scout] look", "role": "scout"}),
        )
        .await;
    fl.wait_all(&["scout"]).await;
    let reqs = fl.mock.requests_for("[scout]");
    let offered = reqs[0].tool_names();
    assert!(offered.iter().any(|t| t == "read_file"), "{offered:?}");
    for t in WRITE_TOOLS {
        assert!(
            !offered.iter().any(|o| o == t),
            "scout was offered {t}: {offered:?}"
        );
    }
    assert!(reqs[1].tool_results()[0].failed());
    assert!(
        !fl.agent_dir(&created).join("pwned").exists(),
        "scout ran a command"
    );
}
