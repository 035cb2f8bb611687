//! Commands: a second command continues the conversation, tool calls round-trip,
//! commands queue behind a running one, and `interrupt` cancels it.

use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_command_continues_the_conversation() {
    let fl = Flotilla::start().await;
    fl.mock.script(
        "[conv]",
        vec![
            Step::text("first answer ALPHA-1"),
            Step::text("second answer BETA-2"),
        ],
    );
    fl.create("conv", "[conv] first question").await;
    fl.wait_all(&["conv"]).await;

    let cmd = fl.command("conv", "second question GAMMA-3").await;
    assert_eq!(cmd["name"], "conv");
    assert_eq!(cmd["command"], 2, "{cmd}");
    assert_eq!(cmd["pending"], 0, "{cmd}");
    fl.wait_all(&["conv"]).await;

    let reqs = fl.mock.requests_for("[conv]");
    assert_eq!(reqs.len(), 2);
    let second = reqs[1].body_text();
    for part in [
        "[conv] first question",
        "first answer ALPHA-1",
        "second question GAMMA-3",
    ] {
        assert!(
            second.contains(part),
            "second request lacks {part:?}: {second}"
        );
    }
    assert_eq!(reqs[1].message_count(), 3, "user, assistant, user");

    assert_eq!(
        fl.output_of("conv", 1).await["text"],
        "first answer ALPHA-1"
    );
    let latest = fl.output("conv").await;
    assert_eq!(latest["text"], "second answer BETA-2");
    assert_eq!(latest["command"], 2);
    assert_eq!(latest["command_status"], "done");
    assert_eq!(fl.status("conv").await["commands"], 2);
    fl.mock.assert_no_protocol_problems();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_calls_round_trip_and_files_are_listed() {
    let fl = Flotilla::start().await;
    fl.mock.script(
        "[tools]",
        vec![
            Step::tools(vec![
                (
                    "write_file",
                    json!({"path": "notes/a.txt", "content": "hello A"}),
                ),
                ("write_file", json!({"path": "b.txt", "content": "hello B"})),
            ])
            .with_text("Writing two files."),
            Step::tool("read_file", json!({"path": "notes/a.txt"})),
            Step::text("wrote and read"),
        ],
    );
    let created = fl.create("tools", "[tools] write files").await;
    fl.wait_all(&["tools"]).await;
    let dir = fl.agent_dir(&created);
    assert_eq!(
        std::fs::read_to_string(dir.join("notes/a.txt")).unwrap(),
        "hello A"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("b.txt")).unwrap(),
        "hello B"
    );

    let reqs = fl.mock.requests_for("[tools]");
    assert_eq!(reqs.len(), 3);
    let results = reqs[1].tool_results();
    assert_eq!(results.len(), 2, "{results:?}");
    let ids: Vec<_> = results.iter().map(|r| r.id.clone()).collect();
    assert_eq!(
        ids, reqs[0].issued_ids,
        "results answer the calls, in order"
    );
    assert!(results.iter().all(|r| !r.failed()), "{results:?}");
    let read = &reqs[2].tool_results()[2];
    assert!(
        !read.failed() && read.content.contains("hello A"),
        "{read:?}"
    );

    let out = fl.output("tools").await;
    assert_eq!(out["text"], "wrote and read");
    assert!(lists_path(&out["files_written"], "notes/a.txt"), "{out}");
    assert!(lists_path(&out["files_written"], "b.txt"), "{out}");
    assert!(lists_path(&out["files_read"], "notes/a.txt"), "{out}");
    let status = fl.status("tools").await;
    assert_eq!(status["steps"], 3);
    assert_eq!(status["tool_calls"], 3);
    fl.mock.assert_no_protocol_problems();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_command_output_goes_back_to_the_model() {
    let fl = Flotilla::start().await;
    fl.mock.script(
        "[sh]",
        vec![
            Step::tool(
                "run_command",
                json!({"command": "echo out-$((40+2)); echo err-7 >&2; exit 3"}),
            ),
            Step::text("ran it"),
        ],
    );
    fl.create("sh", "[sh] run something").await;
    fl.wait_all(&["sh"]).await;
    let result = &fl.mock.requests_for("[sh]")[1].tool_results()[0];
    assert!(
        result.content.contains("out-42"),
        "stdout missing: {result:?}"
    );
    assert!(
        result.content.contains("err-7"),
        "stderr missing: {result:?}"
    );
    let lower = result.content.to_lowercase();
    assert!(
        lower.contains("exit") && lower.contains('3'),
        "exit code missing: {result:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_given_while_running_is_queued() {
    let fl = Flotilla::start().await;
    fl.mock.script(
        "[queue]",
        vec![
            Step::text("one").delay(Duration::from_secs(3)),
            Step::text("two"),
        ],
    );
    fl.create("queue", "[queue] first").await;
    fl.mock
        .wait_requests("[queue]", 1, Duration::from_secs(30))
        .await;

    let cmd = fl.command("queue", "second").await;
    assert_eq!(cmd["command"], 2, "{cmd}");
    assert_eq!(cmd["pending"], 1, "{cmd}");
    let s = fl.status("queue").await;
    assert_eq!(
        (s["status"].as_str(), s["pending"].as_u64()),
        (Some("running"), Some(1)),
        "{s}"
    );

    let waited = fl.wait_all(&["queue"]).await;
    assert!(row(&waited["agents"], "queue").get("pending").is_none());
    let reqs = fl.mock.requests_for("[queue]");
    assert_eq!(reqs.len(), 2);
    assert!(
        reqs[1].body_text().contains("\"one\""),
        "the second command ran before the first finished"
    );
    assert_eq!(fl.output_of("queue", 1).await["command_status"], "done");
    assert_eq!(fl.output_of("queue", 1).await["text"], "one");
    assert_eq!(fl.output_of("queue", 2).await["text"], "two");
    assert_eq!(fl.status("queue").await["status"], "idle");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupt_cancels_the_running_command() {
    let fl = Flotilla::start().await;
    fl.mock.script(
        "[intr]",
        vec![
            Step::text("too late").delay(Duration::from_secs(60)),
            Step::text("fast"),
        ],
    );
    fl.create("intr", "[intr] slow work").await;
    fl.mock
        .wait_requests("[intr]", 1, Duration::from_secs(30))
        .await;

    let started = Instant::now();
    let cmd = fl
        .call(
            "command_agent",
            json!({"agent": "intr", "task": "urgent", "interrupt": true}),
        )
        .await;
    assert_eq!(cmd["command"], 2, "{cmd}");
    fl.wait_all(&["intr"]).await;
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the first command was not cancelled"
    );

    let first = fl.output_of("intr", 1).await;
    assert_eq!(first["command_status"], "cancelled", "{first}");
    let second = fl.output_of("intr", 2).await;
    assert_eq!(
        (second["command_status"].as_str(), second["text"].as_str()),
        (Some("done"), Some("fast"))
    );
    assert_eq!(fl.status("intr").await["status"], "idle");
    let reqs = fl.mock.requests_for("[intr]");
    assert_eq!(reqs.len(), 2);
    assert!(reqs[1].body_text().contains("urgent"));
    // The cancelled model call was abandoned, not left to finish in the background.
    fl.mock
        .wait_no_request_in_flight(Duration::from_secs(10))
        .await;
    assert_eq!(
        fl.mock.in_flight(),
        0,
        "the cancelled model call is still open"
    );
    assert_eq!(fl.mock.completed(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_steps_ends_a_runaway_command() {
    let fl = Flotilla::start().await;
    let looping = (0..10)
        .map(|_| Step::tool("list_files", json!({})))
        .collect();
    fl.mock.script("[loop]", looping);
    fl.call(
        "create_agent",
        json!({"name": "loop", "task": "[loop] go around", "max_steps": 3}),
    )
    .await;
    fl.wait_all(&["loop"]).await;
    let s = fl.status("loop").await;
    assert_eq!(
        fl.mock.requests_for("[loop]").len(),
        3,
        "max_steps caps model calls"
    );
    assert_eq!(s["steps"], 3, "{s}");
    assert_ne!(s["status"], "running");
}
