//! Agents that ask: `ask_orchestrator`, status `needs_input`, the answer through
//! `command_agent` (or the timeout), across a restart and inside a plan, end to end
//! through the real binary against the scripted mock model.

use std::time::Duration;

use crate::common::*;
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(60);

fn ask(question: &str, options: &[&str]) -> Step {
    Step::tool(
        "ask_orchestrator",
        json!({"question": question, "options": options}),
    )
}

/// One `wait_for_agents` on `agent` that must end (not time out) with it `needs_input`.
async fn wait_question(fl: &Flotilla, agent: &str) -> Value {
    let waited = fl.wait_all(&[agent]).await;
    let asked = row(&waited["agents"], agent).clone();
    assert_eq!(asked["status"], "needs_input", "{waited}");
    asked
}

/// The summary of `agent`'s `answered` event.
async fn answered_summary(fl: &Flotilla, agent: &str) -> String {
    let page = fl
        .call(
            "get_agent_events",
            json!({"agent": agent, "kinds": ["answered"]}),
        )
        .await;
    page["events"][0]["summary"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The content of the tool result answering call `id` in `request`.
fn result_for(request: &Recorded, id: &str) -> (String, Option<bool>) {
    let results = request.tool_results();
    let r = results
        .iter()
        .find(|r| r.id == id)
        .unwrap_or_else(|| panic!("no result for {id}: {results:?}"));
    (r.content.clone(), r.is_error)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_asks_waits_without_a_slot_and_goes_on_with_the_answer() {
    let fl = Flotilla::builder()
        .arg("--max-running")
        .arg("1")
        .start()
        .await;
    fl.mock.script(
        "[q]",
        vec![
            ask("Two parsers exist: keep v1 or v2?", &["v1", "v2"]),
            Step::text("Kept v2, as answered."),
        ],
    );
    fl.mock.script("[o]", vec![Step::text("other work done")]);
    fl.create("asker", "[q] clean up the parsers").await;

    let asked = wait_question(&fl, "asker").await;
    assert_eq!(asked["question"], "Two parsers exist: keep v1 or v2?");
    assert_eq!(asked["options"], json!(["v1", "v2"]));
    let s = fl.status("asker").await;
    assert_eq!(
        (s["status"].as_str(), s["commands"].as_u64()),
        (Some("needs_input"), Some(1)),
        "{s}"
    );
    assert_eq!(s["question"], "Two parsers exist: keep v1 or v2?", "{s}");
    let listed = fl
        .call("list_agents", json!({"status": "needs_input"}))
        .await;
    assert_eq!(names(&listed["agents"]), ["asker"], "{listed}");

    // Waiting holds no run slot (max_running 1) and calls no model.
    fl.create("other", "[o] meanwhile").await;
    let other = fl.wait_all(&["other"]).await;
    assert_eq!(row(&other["agents"], "other")["status"], "idle", "{other}");
    assert_eq!(fl.mock.requests_for("[q]").len(), 1);

    // The answer: the same command goes on; the command count does not change.
    let answered = fl.command("asker", "v2").await;
    assert_eq!(answered["answered"], true, "{answered}");
    assert_eq!(answered["command"], 1, "{answered}");
    let done = fl.wait_all(&["asker"]).await;
    assert_eq!(row(&done["agents"], "asker")["status"], "idle", "{done}");
    assert!(
        row(&done["agents"], "asker").get("question").is_none(),
        "{done}"
    );
    let out = fl.output("asker").await;
    assert_eq!(
        (out["command"].as_u64(), out["text"].as_str()),
        (Some(1), Some("Kept v2, as answered.")),
        "{out}"
    );
    assert_eq!(fl.status("asker").await["commands"], 1);

    // The model got the answer as the result of its ask_orchestrator call.
    let requests = fl.mock.requests_for("[q]");
    assert_eq!(requests.len(), 2);
    let id = &requests[1].tool_call_ids()[0];
    let (content, is_error) = result_for(&requests[1], id);
    assert_eq!((content.as_str(), is_error == Some(true)), ("v2", false));
    assert!(
        requests[0]
            .tool_names()
            .contains(&"ask_orchestrator".to_string()),
        "{:?}",
        requests[0].tool_names()
    );
    let kinds = fl.event_kinds("asker", &["asked", "answered"]).await;
    assert_eq!(kinds, ["asked", "answered"]);
    let answered = answered_summary(&fl, "asker").await;
    assert!(
        answered.contains("answered by the orchestrator: v2"),
        "{answered}"
    );

    // Nothing to answer now: command_agent is a new command again.
    fl.mock.script("[q]", vec![Step::text("second")]);
    let next = fl.command("asker", "[q] next").await;
    assert_eq!(
        (next["command"].as_u64(), next.get("answered")),
        (Some(2), None),
        "{next}"
    );
    fl.mock.assert_no_protocol_problems();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupt_cancels_the_asking_command_and_bad_questions_are_refused() {
    let fl = Flotilla::start().await;
    fl.mock.script(
        "[i]",
        vec![
            Step::tool("ask_orchestrator", json!({"question": "   "})),
            ask("Which database?", &[]),
            Step::text("next command done"),
        ],
    );
    fl.create("asker", "[i] pick one").await;
    wait_question(&fl, "asker").await;
    // The empty question came back to the model as an error it could fix.
    let second = &fl.mock.requests_for("[i]")[1];
    let (content, is_error) = result_for(second, &second.tool_call_ids()[0]);
    assert!(content.contains("`question` is empty"), "{content}");
    assert_eq!(is_error, Some(true));

    let schema = fl
        .call_err(
            "command_agent",
            json!({"agent": "asker", "task": "postgres", "output_schema": {"type": "object"}}),
        )
        .await;
    assert_mentions(&schema, &["waiting for an answer", "interrupt: true"]);

    let redirected = fl
        .call(
            "command_agent",
            json!({"agent": "asker", "task": "[i] forget it, do this", "interrupt": true}),
        )
        .await;
    assert_eq!(redirected["command"], 2, "{redirected}");
    fl.wait_all(&["asker"]).await;
    let first = fl.output_of("asker", 1).await;
    assert_eq!(first["command_status"], "cancelled", "{first}");
    let second = fl.output_of("asker", 2).await;
    assert_eq!(second["text"], "next command done", "{second}");
    let last = fl.mock.requests_for("[i]").pop().unwrap();
    let ids = last.tool_call_ids();
    let (content, is_error) = result_for(&last, ids.last().unwrap());
    assert!(content.contains("interrupted this command"), "{content}");
    assert_eq!(is_error, Some(true));
    fl.mock.assert_no_protocol_problems();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_question_survives_a_restart_and_is_answered_after_it() {
    let fl = Flotilla::start().await;
    fl.mock.script(
        "[r]",
        vec![
            ask("Is the failing test expected?", &["yes", "no"]),
            Step::text("Treated it as expected."),
        ],
    );
    fl.create("asker", "[r] fix the build").await;
    wait_question(&fl, "asker").await;

    let fl = fl.restart().await;
    let s = fl.status("asker").await;
    assert_eq!(
        (s["status"].as_str(), s["question"].as_str()),
        (Some("needs_input"), Some("Is the failing test expected?")),
        "{s}"
    );
    assert_eq!(s["options"], json!(["yes", "no"]), "{s}");
    let asked = wait_question(&fl, "asker").await;
    assert_eq!(asked["question"], "Is the failing test expected?");
    assert!(
        fl.requests_since_start("[r]").is_empty(),
        "asked once, not again"
    );

    let answered = fl.command("asker", "yes").await;
    assert_eq!(
        (answered["answered"].as_bool(), answered["command"].as_u64()),
        (Some(true), Some(1))
    );
    fl.wait_all(&["asker"]).await;
    let out = fl.output("asker").await;
    assert_eq!(
        (
            out["command"].as_u64(),
            out["command_status"].as_str(),
            out["text"].as_str()
        ),
        (Some(1), Some("done"), Some("Treated it as expected.")),
        "{out}"
    );
    let after = fl.requests_since_start("[r]");
    assert_eq!(after.len(), 1);
    let id = &after[0].tool_call_ids()[0];
    assert_eq!(result_for(&after[0], id).0, "yes");
    assert_eq!(fl.event_kinds("asker", &["asked"]).await.len(), 1);
    fl.mock.assert_no_protocol_problems();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_question_is_answered_by_the_timeout() {
    let fl = Flotilla::builder()
        .arg("--ask-timeout-s")
        .arg("1")
        .start()
        .await;
    fl.mock.script(
        "[t]",
        vec![
            ask("Tabs or spaces?", &[]),
            Step::text("Used spaces (assumed)."),
        ],
    );
    fl.create("asker", "[t] format it").await;
    let s = fl
        .status_until("asker", "idle after the timeout", |s| s["status"] == "idle")
        .await;
    assert_eq!(s["commands"], 1, "{s}");
    let requests = fl.mock.requests_for("[t]");
    let id = &requests[1].tool_call_ids()[0];
    let (content, _) = result_for(&requests[1], id);
    assert!(
        content.contains("No answer; proceed on your best judgement and state what you assumed"),
        "{content}"
    );
    let answered = answered_summary(&fl, "asker").await;
    assert!(answered.contains("answered by the timeout"), "{answered}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dependent_waits_while_its_dependency_asks() {
    let fl = Flotilla::start().await;
    fl.mock.script(
        "[a]",
        vec![
            ask("REST or gRPC?", &["REST", "gRPC"]),
            Step::text("chose gRPC"),
        ],
    );
    fl.mock
        .script("[b]", vec![Step::text("built on the choice")]);
    fl.call(
        "create_agents",
        json!({"agents": [
            {"name": "a", "task": "[a] design the API"},
            {"name": "b", "task": "[b] build it", "depends_on": ["a"]},
        ]}),
    )
    .await;
    let waited = fl.wait_all(&["a", "b"]).await;
    assert_eq!(
        row(&waited["agents"], "a")["status"],
        "needs_input",
        "{waited}"
    );
    assert_eq!(row(&waited["agents"], "b")["status"], "waiting", "{waited}");
    assert!(fl.mock.requests_for("[b]").is_empty());

    fl.command("a", "gRPC").await;
    let done = fl.wait_all(&["a", "b"]).await;
    for name in ["a", "b"] {
        assert_eq!(row(&done["agents"], name)["status"], "idle", "{done}");
    }
    let b = fl.mock.wait_requests("[b]", 1, LONG).await;
    assert!(
        b[0].body_text().contains("chose gRPC"),
        "the handoff carries a's answer"
    );
}
