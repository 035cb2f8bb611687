//! `ask_orchestrator` for CLI agents, with the real Claude Code (and Codex) pointed at
//! the mock model: the CLI calls flotilla's ask endpoint as an MCP tool, the agent
//! shows `needs_input`, `command_agent` answers, and the CLI's next model request
//! carries the answer as that tool's result. The stall timer is short (3 s) and the
//! question waits longer: a session waiting on its question is not killed.

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use crate::common::clis;

use crate::common::*;

/// The stall timeout of the servers whose questions outwait it: short, but long
/// enough for a CLI to start on two busy cores.
const STALL_S: &str = "3";
/// Longer than [`STALL_S`].
const QUESTION_WAIT: Duration = Duration::from_secs(6);

async fn start(extra: &[&str]) -> Flotilla {
    start_with(extra, "").await
}

async fn start_with(extra: &[&str], claude_env: &str) -> Flotilla {
    let mock = MockModel::start().await;
    let root = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let config = clis::both_config(root.path(), &mock, claude_env);
    let mut builder = Flotilla::builder()
        .root(root)
        .mock(mock)
        .config(&config)
        .env("PATH", &clis::path());
    for a in extra {
        builder = builder.arg(a);
    }
    builder.start().await
}

/// The agent asks through its CLI, waits past the stall timeout without a slot, and
/// goes on with the answer as command 1.
async fn asks_and_goes_on(
    fl: &Flotilla,
    (agent, model): (&str, &str),
    (key, tool): (&str, &str),
    wait: Duration,
) {
    fl.mock.script(
        key,
        vec![
            Step::tool(
                tool,
                json!({"question": "Two parsers exist: keep v1 or v2?", "options": ["v1", "v2"]}),
            ),
            Step::text("Kept v2, as answered."),
        ],
    );
    let created = fl
        .call(
            "create_agent",
            json!({"name": agent, "model": model, "task": format!("{key} clean up the parsers")}),
        )
        .await;
    assert_eq!(created["status"], "running", "{created}");
    let waited = fl.wait_all(&[agent]).await;
    let row = row(&waited["agents"], agent).clone();
    assert_eq!(
        row["status"],
        "needs_input",
        "{waited}\n{}\ntools offered: {:?}",
        fl.log_tail(30),
        fl.mock.requests_for(key).first().map(Recorded::tool_names),
    );
    assert_eq!(
        row["question"], "Two parsers exist: keep v1 or v2?",
        "{row}"
    );
    assert_eq!(row["options"], json!(["v1", "v2"]), "{row}");

    // Time passes on purpose: the question outlasts the stall timeout.
    tokio::time::sleep(wait).await;
    let s = fl.status(agent).await;
    assert_eq!(s["status"], "needs_input", "{s}\n{}", fl.log_tail(30));
    assert_eq!(fl.mock.requests_for(key).len(), 1);

    let answered = fl.command(agent, "v2").await;
    assert_eq!(answered["answered"], true, "{answered}");
    assert_eq!(answered["command"], 1, "{answered}");
    let done = fl.wait_all(&[agent]).await;
    assert_eq!(
        row_of(&done, agent)["status"],
        "idle",
        "{done}\n{}",
        fl.log_tail(30)
    );
    let out = fl.output(agent).await;
    assert_eq!(out["command"], 1, "{out}");
    assert!(out.to_string().contains("Kept v2, as answered."), "{out}");
    assert_eq!(fl.status(agent).await["commands"], 1);

    // The CLI's next model request carries the answer as the tool's result.
    let requests = fl.mock.requests_for(key);
    assert_eq!(requests.len(), 2, "{requests:#?}");
    let id = requests[0].issued_ids[0].clone();
    let results = requests[1].tool_results();
    let result = results
        .iter()
        .find(|r| r.id == id)
        .unwrap_or_else(|| panic!("no result for {id}: {results:?}"));
    assert!(result.content.contains("v2"), "{results:?}");
    assert_ne!(result.is_error, Some(true), "{results:?}");
    let kinds = fl.event_kinds(agent, &["asked", "answered"]).await;
    assert_eq!(kinds, ["asked", "answered"]);
    fl.mock.assert_no_protocol_problems();
}

/// Claude Code has written the ask to its session's transcript: a session killed
/// before that cannot be resumed (`No conversation found`). A real orchestrator takes
/// longer than that to answer or interrupt; a test waits for it.
async fn transcript_holds_the_ask(fl: &Flotilla) {
    fn holds(dir: &Path) -> bool {
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| {
                let path = e.path();
                if path.is_dir() {
                    return holds(&path);
                }
                path.extension().is_some_and(|x| x == "jsonl")
                    && std::fs::read_to_string(&path)
                        .is_ok_and(|t| t.contains("mcp__flotilla__ask_orchestrator"))
            })
    }
    let projects = fl.root().join("claude-home/projects");
    eventually("Claude Code's transcript holds the ask", async || {
        holds(&projects)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claude_code_agent_asks_through_flotillas_mcp_tool_and_goes_on_with_the_answer() {
    // Claude Code's own limits on an MCP call, shorter than the question waits: the
    // `timeout` flotilla sets on its server overrides them.
    let fl = start_with(
        &["--stall-timeout-s", STALL_S],
        ", MCP_TOOL_TIMEOUT = \"2000\", CLAUDE_CODE_MCP_TOOL_IDLE_TIMEOUT = \"2000\"",
    )
    .await;
    asks_and_goes_on(
        &fl,
        ("cc", "claude-code:sonnet"),
        ("[cc-ask]", "mcp__flotilla__ask_orchestrator"),
        QUESTION_WAIT,
    )
    .await;
}

/// Codex 0.169 offers MCP tools directly (in a `mcp__flotilla` namespace) to a model
/// without tool search; to one with it (`gpt-5.5`) they are found through its
/// `tool_search` first, which the mock does not script.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_codex_agent_asks_through_flotillas_mcp_tool_and_goes_on_with_the_answer() {
    let fl = start(&["--stall-timeout-s", STALL_S]).await;
    asks_and_goes_on(
        &fl,
        ("cx", "codex:gpt-4.1"),
        ("[cx-ask]", "mcp__flotilla__ask_orchestrator"),
        QUESTION_WAIT,
    )
    .await;
}

/// `max_running 1` and `network: false`: the asking session holds no run slot (a
/// built-in agent runs meanwhile) and still reaches flotilla's endpoint on loopback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_asking_claude_code_agent_holds_no_slot_and_reaches_loopback_without_network() {
    let fl = start(&["--max-running", "1"]).await;
    fl.mock.script(
        "[cc-net]",
        vec![
            Step::tool(
                "mcp__flotilla__ask_orchestrator",
                json!({"question": "Which database?"}),
            ),
            Step::text("Used sqlite."),
        ],
    );
    fl.mock
        .script("[other]", vec![Step::text("other work done")]);
    fl.call(
        "create_agent",
        json!({"name": "cc", "model": "claude-code:sonnet", "network": false,
               "task": "[cc-net] pick a database"}),
    )
    .await;
    let waited = fl.wait_all(&["cc"]).await;
    assert_eq!(
        row_of(&waited, "cc")["status"],
        "needs_input",
        "{waited}\n{}",
        fl.log_tail(30)
    );
    fl.create("other", "[other] meanwhile").await;
    let other = fl.wait_all(&["other"]).await;
    assert_eq!(row_of(&other, "other")["status"], "idle", "{other}");

    fl.command("cc", "sqlite").await;
    let done = fl.wait_all(&["cc"]).await;
    assert_eq!(row_of(&done, "cc")["status"], "idle", "{done}");
    let requests = fl.mock.requests_for("[cc-net]");
    assert!(requests[1].body_text().contains("sqlite"), "{requests:#?}");
}

/// Interrupting the command while its CLI waits on the question kills the session:
/// the command ends cancelled, and the next command runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupting_an_asking_claude_code_agent_cancels_its_command() {
    let fl = start(&[]).await;
    fl.mock.script(
        "[cc-int]",
        vec![
            Step::tool(
                "mcp__flotilla__ask_orchestrator",
                json!({"question": "Which database?"}),
            ),
            Step::text("second command done"),
        ],
    );
    fl.call(
        "create_agent",
        json!({"name": "cc", "model": "claude-code:sonnet", "task": "[cc-int] pick a database"}),
    )
    .await;
    let waited = fl.wait_all(&["cc"]).await;
    assert_eq!(row_of(&waited, "cc")["status"], "needs_input", "{waited}");
    transcript_holds_the_ask(&fl).await;
    let next = fl
        .call(
            "command_agent",
            json!({"agent": "cc", "task": "[cc-int] forget it", "interrupt": true}),
        )
        .await;
    assert_eq!(next["command"], 2, "{next}");
    let done = fl.wait_all(&["cc"]).await;
    assert_eq!(row_of(&done, "cc")["status"], "idle", "{done}");
    let first = fl.output_of("cc", 1).await;
    assert_eq!(first["command_status"], "cancelled", "{first}");
    let second = fl.output_of("cc", 2).await;
    assert!(
        second.to_string().contains("second command done"),
        "{second}"
    );
}

/// flotilla dies while a CLI agent waits on its question: after the restart the
/// question still shows; once answered, the resumed session is told what it asked
/// and the answer, and the command ends done as command 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claude_code_agents_question_survives_a_restart() {
    let fl = start(&[]).await;
    fl.mock.script(
        "[cc-rs]",
        vec![
            Step::tool(
                "mcp__flotilla__ask_orchestrator",
                json!({"question": "Is the failing test expected?", "options": ["yes", "no"]}),
            ),
            Step::text("Treated it as expected."),
        ],
    );
    fl.call(
        "create_agent",
        json!({"name": "cc", "model": "claude-code:sonnet", "task": "[cc-rs] fix the build"}),
    )
    .await;
    let waited = fl.wait_all(&["cc"]).await;
    assert_eq!(row_of(&waited, "cc")["status"], "needs_input", "{waited}");
    transcript_holds_the_ask(&fl).await;

    let fl = fl.restart().await;
    let s = fl.status("cc").await;
    assert_eq!(
        (s["status"].as_str(), s["question"].as_str()),
        (Some("needs_input"), Some("Is the failing test expected?")),
        "{s}"
    );
    let answered = fl.command("cc", "yes").await;
    assert_eq!(
        (answered["answered"].as_bool(), answered["command"].as_u64()),
        (Some(true), Some(1)),
        "{answered}"
    );
    let done = fl.wait_all(&["cc"]).await;
    assert_eq!(
        row_of(&done, "cc")["status"],
        "idle",
        "{done}\n{}",
        fl.log_tail(30)
    );
    let out = fl.output("cc").await;
    assert_eq!(
        (out["command"].as_u64(), out["command_status"].as_str()),
        (Some(1), Some("done")),
        "{out}"
    );
    let after = fl.requests_since_start("[cc-rs]");
    assert_eq!(after.len(), 1, "{after:#?}");
    let body = after[0].body_text();
    assert!(
        body.contains("You asked the orchestrator: Is the failing test expected?")
            && body.contains("The orchestrator answered: yes")
            && body.contains("flotilla restarted"),
        "{body}"
    );
    assert_eq!(fl.event_kinds("cc", &["asked"]).await.len(), 1);
}

/// Gemini CLI cannot be handed flotilla's endpoint: a gemini-cli agent that may ask is
/// told so when created; a Claude Code one is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gemini_agent_that_may_ask_is_warned_that_it_cannot() {
    let fl = start(&[]).await;
    let gemini = fl
        .call(
            "create_agent",
            json!({"name": "gm", "model": "gemini-cli", "tools": ["read_file", "ask_orchestrator"]}),
        )
        .await;
    assert!(
        gemini["warning"]
            .to_string()
            .contains("gemini-cli sessions cannot call ask_orchestrator"),
        "{gemini}"
    );
    let claude = fl
        .call(
            "create_agent",
            json!({"name": "cc", "model": "claude-code", "tools": ["read_file", "ask_orchestrator"]}),
        )
        .await;
    assert!(!claude.to_string().contains("ask_orchestrator"), "{claude}");
}
