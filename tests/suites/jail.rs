//! The work-directory jail, seen from the model's side: paths that escape (`..`,
//! absolute, symlinks) are refused with a tool error the model can read, and nothing
//! outside is read or written.

use std::path::PathBuf;

use crate::common::wire::ToolResult;
use crate::common::*;
use serde_json::{Value, json};

const SECRET: &str = "TOP-SECRET-5521";

/// Creates an idle agent, plants a secret next to its work directory (outside it) and a
/// symlink inside pointing at it; returns (agent dir, secret path).
async fn jailed_agent(fl: &Flotilla, name: &str) -> (PathBuf, PathBuf) {
    let created = fl.call("create_agent", json!({"name": name})).await;
    let dir = fl.agent_dir(&created);
    let secret = dir.parent().unwrap().join("secret.txt");
    std::fs::write(&secret, SECRET).unwrap();
    std::os::unix::fs::symlink(&secret, dir.join("link.txt")).unwrap();
    std::os::unix::fs::symlink(dir.parent().unwrap(), dir.join("up")).unwrap();
    (dir, secret)
}

fn assert_refused(result: &ToolResult, what: &str) {
    assert!(result.failed(), "{what} was not refused: {result:?}");
    assert!(
        !result.content.contains(SECRET),
        "{what} leaked the secret: {result:?}"
    );
    let lower = result.content.to_lowercase();
    assert!(
        lower.contains("work") && lower.contains("dir"),
        "{what}: the error should say the path is outside the work directory: {result:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_outside_the_workdir_are_refused() {
    let fl = Flotilla::start().await;
    let (_dir, _secret) = jailed_agent(&fl, "reader").await;
    let calls: Vec<(&str, Value)> = vec![
        ("read_file", json!({"path": "../secret.txt"})),
        ("read_file", json!({"path": "/etc/passwd"})),
        ("read_file", json!({"path": "link.txt"})),
        ("read_file", json!({"path": "up/secret.txt"})),
        ("list_files", json!({"path": ".."})),
        (
            "search_files",
            json!({"pattern": "TOP-SECRET", "path": ".."}),
        ),
    ];
    let n = calls.len();
    fl.mock.script(
        "[jail-r]",
        vec![Step::tools(calls), Step::text("could not")],
    );
    fl.command("reader", "[jail-r] read the secret").await;
    fl.wait_all(&["reader"]).await;

    let results = fl.mock.requests_for("[jail-r]")[1].tool_results();
    assert_eq!(results.len(), n);
    let labels = [
        "../secret.txt",
        "/etc/passwd",
        "symlink",
        "symlinked dir",
        "list ..",
        "search ..",
    ];
    for (result, label) in results.iter().zip(labels) {
        assert_refused(result, label);
    }
    assert!(
        !results[1].content.contains("root:"),
        "/etc/passwd was read"
    );
    fl.mock.assert_no_protocol_problems();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_outside_the_workdir_are_refused() {
    let fl = Flotilla::start().await;
    let (dir, secret) = jailed_agent(&fl, "writer").await;
    let outside = dir.parent().unwrap().join("escaped.txt");
    // Named for this test alone (the suites share a process).
    let abs_dir = tempfile::Builder::new()
        .prefix("flotilla-escape-")
        .tempdir()
        .unwrap();
    let abs = abs_dir.path().join("escaped.txt");
    let calls: Vec<(&str, Value)> = vec![
        (
            "write_file",
            json!({"path": "../escaped.txt", "content": "x"}),
        ),
        (
            "write_file",
            json!({"path": abs.to_str().unwrap(), "content": "x"}),
        ),
        (
            "write_file",
            json!({"path": "link.txt", "content": "overwritten"}),
        ),
        (
            "write_file",
            json!({"path": "up/escaped.txt", "content": "x"}),
        ),
        (
            "edit_file",
            json!({"path": "link.txt", "old_text": "TOP", "new_text": "BOTTOM"}),
        ),
        (
            "edit_file",
            json!({"path": "../secret.txt", "old_text": "TOP", "new_text": "BOTTOM"}),
        ),
    ];
    let n = calls.len();
    fl.mock.script(
        "[jail-w]",
        vec![Step::tools(calls), Step::text("could not")],
    );
    fl.command("writer", "[jail-w] write outside").await;
    fl.wait_all(&["writer"]).await;

    let results = fl.mock.requests_for("[jail-w]")[1].tool_results();
    assert_eq!(results.len(), n);
    for (i, result) in results.iter().enumerate() {
        assert_refused(result, &format!("write #{i}"));
    }
    assert!(!outside.exists(), "wrote {}", outside.display());
    assert!(!abs.exists(), "wrote {}", abs.display());
    assert_eq!(
        std::fs::read_to_string(&secret).unwrap(),
        SECRET,
        "secret modified"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_inside_the_workdir_still_work() {
    let fl = Flotilla::start().await;
    let (dir, _) = jailed_agent(&fl, "inside").await;
    fl.mock.script(
        "[jail-ok]",
        vec![
            Step::tools(vec![
                (
                    "write_file",
                    json!({"path": "a/../b.txt", "content": "fine"}),
                ),
                ("list_files", json!({})),
                ("search_files", json!({"pattern": "TOP-SECRET"})),
            ]),
            Step::text("ok"),
        ],
    );
    fl.command("inside", "[jail-ok] stay inside").await;
    fl.wait_all(&["inside"]).await;
    let results = fl.mock.requests_for("[jail-ok]")[1].tool_results();
    assert!(!results[0].failed(), "{results:?}");
    assert_eq!(std::fs::read_to_string(dir.join("b.txt")).unwrap(), "fine");
    assert!(
        !results[1].failed() && results[1].content.contains("b.txt"),
        "{results:?}"
    );
    assert!(
        !results[1].content.contains("up/"),
        "list_files descended into a symlink out of the work directory: {results:?}"
    );
    assert!(
        !results[2].content.contains(SECRET),
        "search_files read through a symlink: {results:?}"
    );
}
