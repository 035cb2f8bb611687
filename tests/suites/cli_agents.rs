//! Real Claude Code and Codex sessions as flotilla agents, driven over MCP as a user's
//! client would, each CLI pointed at the mock model: they write files with their own
//! tools, keep their session across commands, and take part in a plan beside a
//! built-in agent.

use std::path::PathBuf;

use serde_json::json;

use crate::common::clis::{self, CODEX_MODEL};
use crate::common::*;

async fn start() -> Flotilla {
    let mock = MockModel::start().await;
    let root = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let config = clis::both_config(root.path(), &mock, "");
    clis::flotilla(mock, root, &config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claude_code_agent_writes_with_its_own_tools_and_keeps_its_session() {
    let fl = start().await;
    let target = clis::work_file(&fl, "hello.txt");
    fl.mock.script(
        "[cc-agent]",
        vec![
            Step::tool(
                "Write",
                json!({"file_path": target, "content": "hi from claude code\n"}),
            ),
            Step::text("done: wrote hello.txt"),
            Step::text("I wrote hello.txt in the first command"),
        ],
    );
    let created = fl
        .call(
            "create_agent",
            json!({"name": "cc", "model": "claude-code:sonnet", "role": "builder",
                   "task": "[cc-agent] write hello.txt"}),
        )
        .await;
    assert_eq!(created["status"], "running", "{created}");
    let done = fl.wait_all(&["cc"]).await;
    assert_eq!(
        row(&done["agents"], "cc")["status"],
        "idle",
        "{done}\n{}",
        fl.log_tail(30)
    );
    assert_eq!(
        std::fs::read_to_string(&target).unwrap(),
        "hi from claude code\n"
    );
    let status = fl.status("cc").await;
    assert_eq!(status["model"], "claude-code:sonnet", "{status}");
    assert_eq!(status["tool_calls"], 1, "{status}");
    assert!(status["cost_usd"].as_f64().unwrap() > 0.0, "{status}");
    assert_eq!(
        status["tokens"],
        json!({"input": 200, "output": 40}),
        "{status}"
    );
    let out = fl.output("cc").await;
    assert!(out.to_string().contains("done: wrote hello.txt"), "{out}");

    // What Claude Code sent: the model flotilla asked for, the role's instructions.
    let reqs = fl.mock.requests_for("[cc-agent]");
    assert_eq!(reqs[0].model(), "claude-sonnet-5-5");
    assert!(
        reqs[0].system_text().contains("Your name: cc"),
        "{}",
        reqs[0].system_text()
    );

    // The second command continues the same session: its request carries the first.
    fl.command("cc", "what did you write?").await;
    let done = fl.wait_all(&["cc"]).await;
    assert_eq!(row(&done["agents"], "cc")["status"], "idle", "{done}");
    let reqs = fl.mock.requests_for("[cc-agent]");
    assert_eq!(reqs.len(), 3, "{reqs:#?}");
    assert_eq!(reqs[2].tool_call_ids(), [reqs[0].issued_ids[0].clone()]);
    assert!(reqs[2].body_text().contains("what did you write?"));
    let out = fl.output("cc").await;
    assert!(out.to_string().contains("in the first command"), "{out}");
    let kinds = fl.event_kinds("cc", &["session"]).await;
    assert_eq!(kinds.len(), 1, "one session for both commands: {kinds:?}");
    fl.mock.assert_no_protocol_problems();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_codex_agent_runs_its_shell_and_resumes_its_thread() {
    let fl = start().await;
    fl.mock.script(
        "[cx-agent]",
        vec![
            Step::tool("exec_command", json!({"cmd": "echo hello > out.txt"})),
            Step::text("wrote out.txt"),
            Step::text("out.txt holds hello"),
        ],
    );
    fl.call(
        "create_agent",
        json!({"name": "cx", "model": format!("codex:{CODEX_MODEL}"), "task": "[cx-agent] write out.txt"}),
    )
    .await;
    let done = fl.wait_all(&["cx"]).await;
    assert_eq!(
        row(&done["agents"], "cx")["status"],
        "idle",
        "{done}\n{}",
        fl.log_tail(30)
    );
    let results = fl.mock.requests_for("[cx-agent]")[1].tool_results();

    assert_eq!(
        std::fs::read_to_string(clis::work_file(&fl, "out.txt"))
            .ok()
            .as_deref(),
        Some("hello\n"),
        "what codex's shell said: {results:?}"
    );
    let status = fl.status("cx").await;
    assert_eq!(status["tool_calls"], 1, "{status}");
    // The role's and orchestrator's part reached the model as developer instructions.
    let first = &fl.mock.requests_for("[cx-agent]")[0];
    assert!(
        first.body_text().contains("Your name: cx"),
        "{}",
        first.body_text()
    );
    let out = fl.output("cx").await;
    assert!(out.to_string().contains("wrote out.txt"), "{out}");

    fl.command("cx", "what is in out.txt?").await;
    let done = fl.wait_all(&["cx"]).await;
    assert_eq!(row(&done["agents"], "cx")["status"], "idle", "{done}");
    let reqs = fl.mock.requests_for("[cx-agent]");
    assert_eq!(reqs.len(), 3, "{reqs:#?}");
    assert_eq!(reqs[2].tool_call_ids(), [reqs[0].issued_ids[0].clone()]);
    let out = fl.output("cx").await;
    assert!(out.to_string().contains("holds hello"), "{out}");
    fl.mock.assert_no_protocol_problems();
}

/// The reference job's mixed fleet as one plan: a Codex scout, a Claude Code builder in
/// a worktree of its own, a built-in reviewer — handoffs flow through all three.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_mixes_codex_claude_code_and_a_built_in_agent() {
    let fl = start().await;
    std::fs::write(fl.work().join("README.md"), "# demo\n").unwrap();
    git(fl.work(), &["init", "-q", "-b", "main"]);
    git(fl.work(), &["add", "-A"]);
    git(fl.work(), &["commit", "-q", "-m", "init"]);
    fl.mock.script(
        "[mix-scout]",
        vec![Step::text("scout: the repo holds README.md only")],
    );
    fl.mock.script(
        "[mix-build]",
        vec![
            Step::tool(
                "Bash",
                json!({"command": "echo built > built.txt", "description": "build"}),
            ),
            Step::text("builder: wrote built.txt"),
        ],
    );
    fl.mock
        .script("[mix-review]", vec![Step::text("reviewer: looks good")]);
    let plan = fl
        .call(
            "create_agents",
            json!({"agents": [
                {"name": "scout", "model": format!("codex:{CODEX_MODEL}"), "role": "scout",
                 "task": "[mix-scout] what is in the repo?"},
                {"name": "builder", "model": "claude-code:sonnet", "role": "builder",
                 "isolation": "worktree", "depends_on": ["scout"],
                 "task": "[mix-build] build it"},
                {"name": "reviewer", "depends_on": ["builder"],
                 "task": "[mix-review] review the build"},
            ]}),
        )
        .await;
    assert_eq!(plan["agents"][1]["status"], "waiting", "{plan}");
    let done = fl.wait_all(&["scout", "builder", "reviewer"]).await;
    for name in ["scout", "builder", "reviewer"] {
        assert_eq!(
            row(&done["agents"], name)["status"],
            "idle",
            "{done}\n{}",
            fl.log_tail(40)
        );
    }
    // The builder worked in its own worktree: the checkout is untouched.
    assert!(!fl.work().join("built.txt").exists());
    let builder = fl.status("builder").await;
    let tree = PathBuf::from(builder["worktree"].as_str().expect("a worktree"));
    assert_eq!(
        std::fs::read_to_string(tree.join("built.txt")).unwrap(),
        "built\n"
    );
    // Each answer was handed to the next, whatever runtime gave or took it.
    let build = fl.mock.requests_for("[mix-build]");
    assert!(
        build[0]
            .body_text()
            .contains("the repo holds README.md only")
    );
    let review = fl.mock.requests_for("[mix-review]");
    assert!(
        review[0]
            .first_user_text()
            .contains("builder: wrote built.txt")
    );
}
