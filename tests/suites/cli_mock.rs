//! The real, pinned agent CLIs against the mock model (no flotilla involved): each
//! writes a file through its own shell tool, answers, and continues the same session in
//! a second run — proving the mock speaks their wire formats as they expect, and
//! pinning the JSON they print (tests/fixtures hold full samples).

use serde_json::{Value, json};

use crate::common::clis::{self, Run};
use crate::common::*;

fn assert_ok(run: &Run, what: &str) {
    assert_eq!(run.code, Some(0), "{what}: {run:#?}");
}

#[tokio::test]
async fn codex_runs_its_shell_tool_and_resumes_its_thread() {
    let mock = MockModel::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (home, work) = (dir.path().join("codex-home"), dir.path().join("work"));
    std::fs::create_dir_all(&work).expect("work dir");
    mock.script(
        "[cx]",
        vec![
            Step::tool("exec_command", json!({"cmd": "echo hello > out.txt"})),
            Step::text("wrote out.txt"),
        ],
    );
    let mut cmd = clis::codex(&mock, &home, &work);
    cmd.args(["exec", "--json", "-C"])
        .arg(&work)
        .args(["--sandbox", "workspace-write", "--skip-git-repo-check"])
        .arg("[cx] write hello to out.txt");
    let first = clis::run(cmd).await;
    assert_ok(&first, "first codex run");
    assert_eq!(
        first.types(),
        [
            "thread.started",
            "turn.started",
            "item.started",
            "item.completed",
            "item.completed",
            "turn.completed"
        ],
        "{first:#?}"
    );
    let thread = first.lines[0]["thread_id"]
        .as_str()
        .expect("thread id")
        .to_string();
    let items: Vec<&Value> = first
        .of_type("item.completed")
        .iter()
        .map(|l| &l["item"])
        .collect();
    assert_eq!(items[0]["type"], "command_execution");
    assert_eq!(items[0]["exit_code"], 0);
    assert_eq!(items[1]["type"], "agent_message");
    assert_eq!(items[1]["text"], "wrote out.txt");
    assert_eq!(
        first.of_type("turn.completed")[0]["usage"]["input_tokens"],
        200
    );
    let written = std::fs::read_to_string(work.join("out.txt")).expect("out.txt written");
    assert_eq!(written, "hello\n");

    let reqs = mock.requests_for("[cx]");
    assert_eq!(reqs.len(), 2, "one request per model turn");
    assert!(reqs[0].tool_names().contains(&"exec_command".to_string()));
    assert_eq!(reqs[0].model(), clis::CODEX_MODEL);
    let results = reqs[1].tool_results();
    assert_eq!(results[0].id, reqs[0].issued_ids[0]);
    assert!(
        results[0].content.contains("exited with code 0"),
        "{results:?}"
    );

    // Resume: `exec resume` has no -C or --sandbox of its own; given before it they hold.
    mock.script("[cx]", vec![Step::text("still here")]);
    let mut cmd = clis::codex(&mock, &home, &work);
    cmd.args(["exec", "-C"])
        .arg(&work)
        .args(["--sandbox", "workspace-write", "resume", &thread, "--json"])
        .args(["--skip-git-repo-check", "[cx] and again"]);
    let second = clis::run(cmd).await;
    assert_ok(&second, "resumed codex run");
    assert_eq!(second.lines[0]["thread_id"], thread.as_str());
    let last = second.of_type("item.completed");
    assert_eq!(
        last.last().map(|l| &l["item"]["text"]),
        Some(&json!("still here"))
    );
    // Usage on turn.completed counts the whole thread, not the turn.
    assert_eq!(
        second.of_type("turn.completed")[0]["usage"]["input_tokens"],
        300
    );
    let reqs = mock.requests_for("[cx]");
    assert_eq!(reqs.len(), 3, "no compaction or extra request on resume");
    assert_eq!(reqs[2].tool_call_ids(), [reqs[0].issued_ids[0].clone()]);
    mock.assert_no_protocol_problems();
}

#[tokio::test]
async fn claude_code_runs_bash_and_resumes_its_session() {
    let mock = MockModel::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (home, work) = (dir.path().join("claude-home"), dir.path().join("work"));
    std::fs::create_dir_all(&work).expect("work dir");
    mock.script(
        "[cc]",
        vec![
            Step::tool(
                "Bash",
                json!({"command": "echo hello > out.txt", "description": "write"}),
            ),
            Step::text("wrote out.txt"),
        ],
    );
    let session = "0b6f1c2e-5d4a-4f3b-9c8d-7e6f5a4b3c2d";
    let stream = ["--output-format", "stream-json", "--verbose"];
    let mut cmd = clis::claude(&mock, &home, &work);
    cmd.args(["-p", "[cc] write hello to out.txt"])
        .args(stream)
        .args(["--session-id", session, "--allowedTools", "Bash"]);
    let first = clis::run(cmd).await;
    assert_ok(&first, "first claude run");
    assert_eq!(first.stderr, "", "a clean run prints nothing on stderr");
    assert_eq!(
        first.types(),
        ["system", "assistant", "user", "assistant", "result"],
        "{first:#?}"
    );
    assert_eq!(first.lines[0]["subtype"], "init");
    assert_eq!(first.lines[0]["session_id"], session);
    let tool_result = &first.lines[2]["message"]["content"][0];
    assert_eq!(tool_result["type"], "tool_result");
    assert_eq!(tool_result["is_error"], false);
    let result = &first.lines[4];
    assert_eq!(result["is_error"], false);
    assert_eq!(result["result"], "wrote out.txt");
    assert_eq!(result["session_id"], session);
    assert_eq!(result["usage"]["input_tokens"], 200);
    assert_eq!(result["usage"]["output_tokens"], 40);
    assert!(
        result["total_cost_usd"].as_f64().is_some_and(|c| c > 0.0),
        "{result}"
    );
    let written = std::fs::read_to_string(work.join("out.txt")).expect("out.txt written");
    assert_eq!(written, "hello\n");

    let reqs = mock.requests();
    assert_eq!(reqs.len(), 2, "only the two model turns: {reqs:#?}");
    assert!(reqs.iter().all(|r| r.key.as_deref() == Some("[cc]")));
    assert_eq!(reqs[0].body["stream"], true);
    assert!(reqs[0].tool_names().contains(&"Bash".to_string()));
    let results = reqs[1].tool_results();
    assert_eq!(results[0].id, reqs[0].issued_ids[0]);
    assert_eq!(results[0].is_error, Some(false));

    mock.script("[cc]", vec![Step::text("still here")]);
    let mut cmd = clis::claude(&mock, &home, &work);
    cmd.args(["-p", "and again"])
        .args(stream)
        .args(["--resume", session]);
    let second = clis::run(cmd).await;
    assert_ok(&second, "resumed claude run");
    let result = second.of_type("result")[0];
    assert_eq!(result["result"], "still here");
    assert_eq!(result["session_id"], session);
    let reqs = mock.requests_for("[cc]");
    assert_eq!(reqs.len(), 3);
    assert_eq!(reqs[2].tool_call_ids(), [reqs[0].issued_ids[0].clone()]);
    mock.assert_no_protocol_problems();
}

#[tokio::test]
async fn provider_errors_end_both_clis_with_exit_1_and_a_json_error() {
    let mock = MockModel::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).expect("work dir");
    mock.script("[cx-err]", vec![Step::fail_with(500, "boom from the mock")]);
    mock.script("[cc-err]", vec![Step::fail_with(500, "boom from the mock")]);

    let mut cmd = clis::codex(&mock, &dir.path().join("codex-home"), &work);
    cmd.args(["exec", "--json", "--skip-git-repo-check", "[cx-err] hi"]);
    let codex = clis::run(cmd).await;
    assert_eq!(codex.code, Some(1), "{codex:#?}");
    assert_eq!(
        codex.types().last().map(String::as_str),
        Some("turn.failed")
    );
    assert_eq!(
        mock.requests_for("[cx-err]").len(),
        1,
        "retries are configured off"
    );

    let mut cmd = clis::claude(&mock, &dir.path().join("claude-home"), &work);
    cmd.args([
        "-p",
        "[cc-err] hi",
        "--output-format",
        "stream-json",
        "--verbose",
    ]);
    let claude = clis::run(cmd).await;
    assert_eq!(claude.code, Some(1), "{claude:#?}");
    let result = claude.of_type("result")[0];
    assert_eq!(result["is_error"], true);
    assert_eq!(result["api_error_status"], 500);
    assert!(
        result["result"]
            .as_str()
            .is_some_and(|r| r.contains("boom from the mock")),
        "{result}"
    );
    assert_eq!(
        mock.requests_for("[cc-err]").len(),
        1,
        "CLAUDE_CODE_MAX_RETRIES=0"
    );
}
