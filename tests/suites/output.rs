//! `get_agent_output`: slicing long answers with `offset`/`max_chars`/`next_offset`, and
//! the files each command wrote and read.

use crate::common::*;
use serde_json::{Value, json};

fn page(v: &Value) -> (String, u64, Option<u64>) {
    (
        v["text"].as_str().unwrap().to_string(),
        v["total_chars"].as_u64().unwrap(),
        v["next_offset"].as_u64(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_answers_are_paginated() {
    let fl = Flotilla::start().await;
    let answer: String = (0..1000).map(|i| format!("line {i:04}\n")).collect();
    assert_eq!(answer.len(), 10_000);
    fl.mock.script("[long]", vec![Step::text(answer.clone())]);
    fl.create("long", "[long] write a lot").await;
    fl.wait_all(&["long"]).await;

    let first = fl.output("long").await;
    let (text, total, next) = page(&first);
    assert_eq!(total, 10_000, "{first}");
    assert_eq!(text.chars().count(), 4000, "default max_chars is 4000");
    assert_eq!(next, Some(4000));
    assert!(
        first.get("offset").is_none(),
        "offset 0 is left out: {first}"
    );
    assert_eq!(first["command_status"], "done");

    let mut collected = text;
    let mut offset = 4000;
    let mut pages = 1;
    loop {
        let args = json!({"agent": "long", "offset": offset, "max_chars": 3000});
        let (text, _, next) = page(&fl.call("get_agent_output", args).await);
        pages += 1;
        assert!(text.chars().count() <= 3000);
        collected.push_str(&text);
        match next {
            Some(n) => {
                assert_eq!(n, offset + text.chars().count() as u64);
                offset = n;
            }
            None => break,
        }
        assert!(pages < 10, "pagination does not end");
    }
    assert_eq!(pages, 3, "4000 + 3000 + 3000 chars");
    assert_eq!(collected, answer);

    let past = fl
        .call(
            "get_agent_output",
            json!({"agent": "long", "offset": 20_000}),
        )
        .await;
    assert_eq!(past["text"], "");
    assert!(past["next_offset"].is_null(), "{past}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slicing_counts_characters_not_bytes() {
    let fl = Flotilla::start().await;
    let answer = "é🚀".repeat(3000);
    fl.mock.script("[utf8]", vec![Step::text(answer.clone())]);
    fl.create("utf8", "[utf8] be international").await;
    fl.wait_all(&["utf8"]).await;
    let v = fl
        .call(
            "get_agent_output",
            json!({"agent": "utf8", "offset": 1, "max_chars": 4001}),
        )
        .await;
    let (text, total, next) = page(&v);
    assert_eq!(total, 6000);
    assert_eq!(text, answer.chars().skip(1).take(4001).collect::<String>());
    assert_eq!(next, Some(4002));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_are_listed_per_command() {
    let fl = Flotilla::start().await;
    fl.mock.script(
        "[files]",
        vec![
            Step::tool(
                "write_file",
                json!({"path": "src/lib.rs", "content": "pub fn f() {}\n"}),
            ),
            Step::text("written"),
            Step::tool("read_file", json!({"path": "src/lib.rs"})),
            Step::tool(
                "edit_file",
                json!({"path": "src/lib.rs", "old_text": "f()", "new_text": "g()"}),
            ),
            Step::text("edited"),
        ],
    );
    let created = fl.create("files", "[files] write then edit").await;
    fl.wait_all(&["files"]).await;
    fl.command("files", "now edit it").await;
    fl.wait_all(&["files"]).await;

    let one = fl.output_of("files", 1).await;
    assert!(lists_path(&one["files_written"], "src/lib.rs"), "{one}");
    let two = fl.output_of("files", 2).await;
    assert_eq!(two["text"], "edited");
    assert!(lists_path(&two["files_read"], "src/lib.rs"), "{two}");
    assert!(
        lists_path(&two["files_written"], "src/lib.rs"),
        "edit_file writes: {two}"
    );
    let content = std::fs::read_to_string(fl.agent_dir(&created).join("src/lib.rs")).unwrap();
    assert_eq!(content, "pub fn g() {}\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_of_a_running_command_says_running() {
    let fl = Flotilla::start().await;
    fl.mock.script(
        "[busy]",
        vec![Step::text("x").delay(std::time::Duration::from_secs(60))],
    );
    fl.create("busy", "[busy] go").await;
    fl.mock
        .wait_requests("[busy]", 1, std::time::Duration::from_secs(30))
        .await;
    let v = fl.output("busy").await;
    assert_eq!(v["command_status"], "running", "{v}");
    assert_eq!(v["command"], 1);
    fl.call("delete_all_agents", json!({})).await;
}
