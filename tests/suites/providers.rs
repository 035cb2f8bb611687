//! Both providers end to end against the mock, plus retry behaviour: 429s honour
//! `retry-after` and then succeed, persistent 5xx fails the command with the provider's
//! message, other errors are not retried.

use std::time::Duration;

use crate::common::*;
use serde_json::json;

const ALL_TOOLS: [&str; 7] = [
    "ask_orchestrator",
    "edit_file",
    "list_files",
    "read_file",
    "run_command",
    "search_files",
    "write_file",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_requests_are_well_formed() {
    let fl = Flotilla::start().await;
    fl.create("ant", "[ant] hello").await;
    fl.wait_all(&["ant"]).await;
    let r = &fl.mock.requests_for("[ant]")[0];
    assert_eq!(r.path, "/v1/messages");
    assert_eq!(r.header("x-api-key"), Some("test-key"));
    assert!(r.header("anthropic-version").is_some());
    assert_eq!(r.model(), "claude-sonnet-4-5");
    assert!(r.body["max_tokens"].as_u64().unwrap() > 0);
    assert_eq!(
        r.tool_names(),
        ALL_TOOLS,
        "every tool is offered by default"
    );
    assert!(!r.system_text().trim().is_empty(), "no system prompt");
    for sampling in ["temperature", "top_p", "top_k"] {
        assert!(r.body.get(sampling).is_none(), "{sampling} sent unasked");
    }
    assert_eq!(fl.output("ant").await["text"], "done");
    fl.mock.assert_no_protocol_problems();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_temperature_is_sent_to_that_provider_only() {
    let fl = Flotilla::builder()
        .config("[providers.openai]\ntemperature = 0.25\n")
        .start()
        .await;
    fl.call(
        "create_agent",
        json!({"name": "o", "task": "[o] hi", "model": "openai:gpt-5"}),
    )
    .await;
    fl.create("a", "[a] hi").await;
    fl.wait_all(&["o", "a"]).await;
    assert_eq!(fl.mock.requests_for("[o]")[0].body["temperature"], 0.25);
    assert!(
        fl.mock.requests_for("[a]")[0]
            .body
            .get("temperature")
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_tool_round_trip() {
    let fl = Flotilla::builder().model("openai:gpt-test").start().await;
    fl.mock.script(
        "[oai]",
        vec![
            Step::tool(
                "write_file",
                json!({"path": "o.txt", "content": "from openai"}),
            )
            .with_text("I'll write it."),
            Step::text("openai done"),
        ],
    );
    let created = fl.create("oai", "[oai] write o.txt").await;
    assert!(
        created["model"].as_str().unwrap().contains("gpt-test"),
        "{created}"
    );
    fl.wait_all(&["oai"]).await;

    let reqs = fl.mock.requests_for("[oai]");
    assert_eq!(reqs.len(), 2);
    let first = &reqs[0];
    assert_eq!(first.path, "/v1/chat/completions");
    assert_eq!(first.header("authorization"), Some("Bearer test-key"));
    assert_eq!(first.model(), "gpt-test");
    assert_eq!(first.tool_names(), ALL_TOOLS);
    assert!(!first.system_text().trim().is_empty(), "no system message");

    let results = reqs[1].tool_results();
    assert_eq!(
        results.len(),
        1,
        "tool result must go back as a role:tool message"
    );
    assert_eq!(results[0].id, first.issued_ids[0]);
    assert_eq!(reqs[1].tool_call_ids(), first.issued_ids);
    assert!(!results[0].failed(), "{results:?}");
    let path = fl.agent_dir(&created).join("o.txt");
    assert_eq!(std::fs::read_to_string(path).unwrap(), "from openai");
    assert_eq!(fl.output("oai").await["text"], "openai done");
    let s = fl.status("oai").await;
    assert_eq!(
        (
            s["tokens"]["input"].as_u64(),
            s["tokens"]["output"].as_u64()
        ),
        (Some(200), Some(40))
    );
    fl.mock.assert_no_protocol_problems();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_agent_model_overrides_the_default() {
    let fl = Flotilla::start().await;
    let v = fl
        .call(
            "create_agent",
            json!({"name": "mixed", "task": "[mixed] hi", "model": "openai:gpt-other"}),
        )
        .await;
    assert!(v["model"].as_str().unwrap().contains("gpt-other"), "{v}");
    fl.call(
        "create_agent",
        json!({"name": "aliased", "task": "[aliased] hi", "model": "haiku"}),
    )
    .await;
    fl.wait_all(&["mixed", "aliased"]).await;
    let mixed = &fl.mock.requests_for("[mixed]")[0];
    assert_eq!(
        (mixed.path.as_str(), mixed.model()),
        ("/v1/chat/completions", "gpt-other")
    );
    let aliased = &fl.mock.requests_for("[aliased]")[0];
    assert_eq!(aliased.path, "/v1/messages");
    assert!(
        aliased.model().contains("haiku"),
        "alias haiku sent model {}",
        aliased.model()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_are_retried_honouring_retry_after() {
    let fl = Flotilla::start().await;
    fl.mock.script(
        "[429]",
        vec![
            Step::rate_limit(1),
            Step::rate_limit(1),
            Step::text("made it"),
        ],
    );
    fl.create("limited", "[429] try hard").await;
    fl.wait_all(&["limited"]).await;
    let s = fl.status("limited").await;
    assert_eq!(s["status"], "idle", "{s}");
    assert_eq!(fl.output("limited").await["text"], "made it");
    let reqs = fl.mock.requests_for("[429]");
    assert_eq!(reqs.len(), 3);
    for pair in reqs.windows(2) {
        let gap = pair[1].received_at - pair[0].received_at;
        assert!(
            gap >= Duration::from_millis(900),
            "retry-after: 1 not honoured ({gap:?})"
        );
    }
    assert_eq!(s["steps"], 1, "retries are not extra steps: {s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_529_is_retried() {
    let fl = Flotilla::start().await;
    fl.mock.script(
        "[529]",
        vec![Step::fail(529), Step::fail(503), Step::text("back")],
    );
    fl.create("over", "[529] go").await;
    fl.wait_all(&["over"]).await;
    assert_eq!(fl.status("over").await["status"], "idle");
    assert_eq!(fl.mock.requests_for("[529]").len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_500_fails_with_the_provider_message() {
    let fl = Flotilla::start().await;
    let failures = (0..10)
        .map(|_| Step::fail_with(500, "upstream exploded XK-500"))
        .collect();
    fl.mock.script("[500]", failures);
    fl.create("broken", "[500] go").await;
    let waited = fl.wait_all(&["broken"]).await;
    let r = row(&waited["agents"], "broken");
    assert_eq!(r["status"], "failed", "{r}");
    let err = r["last_error"]
        .as_str()
        .unwrap_or_else(|| panic!("no last_error: {r}"));
    assert!(err.contains("500") || err.contains("XK-500"), "{err}");
    assert_eq!(
        fl.mock.requests_for("[500]").len(),
        4,
        "1 try + max_retries = 3"
    );
    assert_eq!(fl.output("broken").await["command_status"], "failed");

    // A failed agent can be commanded again.
    fl.mock.clear("[500]");
    fl.command("broken", "again").await;
    fl.wait_all(&["broken"]).await;
    assert_eq!(fl.status("broken").await["status"], "idle");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_errors_are_not_retried() {
    let fl = Flotilla::start().await;
    fl.mock.script(
        "[400]",
        vec![Step::fail_with(400, "field frobnicate is invalid")],
    );
    fl.create("bad", "[400] go").await;
    fl.wait_all(&["bad"]).await;
    let s = fl.status("bad").await;
    assert_eq!(s["status"], "failed", "{s}");
    assert!(
        s["last_error"].as_str().unwrap().contains("frobnicate"),
        "{s}"
    );
    assert_eq!(
        fl.mock.requests_for("[400]").len(),
        1,
        "a 400 must not be retried"
    );

    // It can be commanded again, and then succeeds.
    fl.command("bad", "try again").await;
    fl.wait_all(&["bad"]).await;
    let s = fl.status("bad").await;
    assert_eq!(s["status"], "idle", "{s}");
}
