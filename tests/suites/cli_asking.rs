//! `ask_orchestrator` for CLI agents, with the real Claude Code (and Codex) pointed at
//! the mock model: the CLI calls flotilla's ask endpoint as an MCP tool, the agent
//! shows `needs_input`, `command_agent` answers, and the CLI's next model request
//! carries the answer as that tool's result. The stall timer is short and the
//! question waits longer: a session waiting on its question is not killed.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::clis::{self, CODEX_MODEL};

use crate::common::*;

/// Longer than the stall timeout the servers here run with (2 s).
const QUESTION_WAIT: Duration = Duration::from_secs(4);

fn config(root: &Path, mock: &MockModel) -> String {
    let (claude_home, codex_home) = (root.join("claude-home"), root.join("codex-home"));
    std::fs::create_dir_all(&claude_home).unwrap();
    std::fs::create_dir_all(&codex_home).unwrap();
    std::fs::write(
        codex_home.join("config.toml"),
        format!(
            "model_provider = \"mock\"\nmodel = \"{CODEX_MODEL}\"\n\n[model_providers.mock]\n\
             name = \"mock\"\nbase_url = \"{}\"\nenv_key = \"MOCK_KEY\"\nwire_api = \"responses\"\n\
             request_max_retries = 0\nstream_max_retries = 0\n",
            mock.openai_url()
        ),
    )
    .unwrap();
    format!(
        "[providers.claude-code]\ncommand = \"{}\"\nenv = {{ CLAUDE_CONFIG_DIR = \"{}\", CLAUDE_CODE_MAX_RETRIES = \"0\" }}\n\n\
         [providers.codex]\ncommand = \"{}\"\nenv = {{ CODEX_HOME = \"{}\", MOCK_KEY = \"mock-key\" }}\n",
        clis::cli("claude").display(),
        claude_home.display(),
        clis::cli("codex").display(),
        codex_home.display()
    )
}

async fn start(extra: &[&str]) -> Flotilla {
    let mock = MockModel::start().await;
    let root = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let config = config(root.path(), &mock);
    let mut builder = Flotilla::builder()
        .root(root)
        .mock(mock)
        .config(&config)
        .env("PATH", &clis::path())
        .arg("--stall-timeout-s")
        .arg("2");
    for a in extra {
        builder = builder.arg(a);
    }
    builder.start().await
}

/// The agent asks through its CLI, waits past the stall timeout without a slot, and
/// goes on with the answer as command 1.
async fn asks_and_goes_on(fl: &Flotilla, agent: &str, model: &str, key: &str, tool: &str) {
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
    tokio::time::sleep(QUESTION_WAIT).await;
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

fn row_of<'a>(waited: &'a Value, agent: &str) -> &'a Value {
    row(&waited["agents"], agent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claude_code_agent_asks_through_flotillas_mcp_tool_and_goes_on_with_the_answer() {
    let fl = start(&[]).await;
    asks_and_goes_on(
        &fl,
        "cc",
        "claude-code:sonnet",
        "[cc-ask]",
        "mcp__flotilla__ask_orchestrator",
    )
    .await;
}

/// Codex 0.169 offers MCP tools directly (in a `mcp__flotilla` namespace) to a model
/// without tool search; to one with it (`gpt-5.5`) they are found through its
/// `tool_search` first, which the mock does not script.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_codex_agent_asks_through_flotillas_mcp_tool_and_goes_on_with_the_answer() {
    let fl = start(&[]).await;
    asks_and_goes_on(
        &fl,
        "cx",
        "codex:gpt-4.1",
        "[cx-ask]",
        "mcp__flotilla__ask_orchestrator",
    )
    .await;
}
