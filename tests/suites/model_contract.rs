//! What the sub-agent's model is told and how its calls are bounded (issue 16): a checked
//! command's schema in its instruction, budget reservations, first-byte timeouts, empty
//! answers, aliases and prices, and the operator's consent for `sandbox: "off"`.

use crate::common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checked_commands_first_request_carries_its_schema_and_passes_at_once() {
    let fl = Flotilla::start().await;
    let schema = json!({
        "type": "object",
        "required": ["verdict"],
        "properties": {"verdict": {"type": "string", "enum": ["ship-it", "hold"]}},
    });
    fl.mock.script(
        "[schema]",
        vec![
            Step::text("{\"verdict\": \"ship-it\"}"),
            Step::text("{\"n\": 3}"),
        ],
    );
    fl.call(
        "create_agent",
        json!({"name": "s", "task": "[schema] judge the change", "output_schema": schema}),
    )
    .await;
    fl.wait_all(&["s"]).await;
    let out = fl.output("s").await;
    assert_eq!(out["output_json"], json!({"verdict": "ship-it"}), "{out}");
    let requests = fl.mock.requests_for("[schema]");
    assert_eq!(
        requests.len(),
        1,
        "one model call for a model that follows it"
    );
    let first = requests[0].first_user_text();
    assert!(
        first.contains("must be a JSON value that validates against this JSON Schema"),
        "{first}"
    );
    assert!(
        first.contains("ship-it") && first.contains("\"verdict\""),
        "{first}"
    );

    // A later command with its own schema: the schema is in that command's instruction.
    fl.call(
        "command_agent",
        json!({"agent": "s", "task": "count them",
               "output_schema": {"type": "object", "required": ["n"],
                                 "properties": {"n": {"type": "integer", "minimum": 1}}}}),
    )
    .await;
    fl.wait_all(&["s"]).await;
    let out = fl.output("s").await;
    assert_eq!(out["output_json"], json!({"n": 3}), "{out}");
    let requests = fl.mock.requests_for("[schema]");
    assert_eq!(requests.len(), 2, "one model call per command");
    let body = requests[1].body_text();
    assert!(body.contains("\\\"minimum\\\": 1"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_tools_list_is_refused_with_what_to_do() {
    let fl = Flotilla::start().await;
    let e = fl
        .call_err("create_agent", json!({"name": "bare", "tools": []}))
        .await;
    assert!(
        e.contains("`tools` is empty") && e.contains("omit `tools`"),
        "{e}"
    );
    let e = fl
        .call_err(
            "create_agents",
            json!({"agents": [{"name": "ok"}, {"name": "bare", "tools": []}]}),
        )
        .await;
    assert!(e.contains("`tools` is empty"), "{e}");
    let listed = fl.call("list_agents", json!({})).await;
    assert_eq!(listed["agents"], json!([]), "all or nothing: {listed}");
    // A non-empty list is still fine.
    fl.call(
        "create_agent",
        json!({"name": "reader", "tools": ["read_file"]}),
    )
    .await;
}

/// A prompts directory with a role `loose` whose front matter turns the sandbox off.
fn loose_role(root: &std::path::Path) -> String {
    let dir = root.join("prompts");
    std::fs::create_dir_all(dir.join("agents")).unwrap();
    std::fs::write(
        dir.join("agents/loose.md"),
        "---\ndescription: runs unconfined\nsandbox: off\n---\nYou run unconfined.\n",
    )
    .unwrap();
    dir.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_off_needs_the_operators_consent() {
    let root = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let prompts = loose_role(root.path());
    let fl = Flotilla::builder()
        .root(root.clone())
        .arg("--prompts-dir")
        .arg(&prompts)
        .start()
        .await;
    let e = fl
        .call_err("create_agent", json!({"name": "free", "sandbox": "off"}))
        .await;
    for needle in [
        "sandbox: \"off\"",
        "--allow-sandbox-off",
        "allow_off = true",
        "[sandbox]",
    ] {
        assert!(e.contains(needle), "no {needle:?} in: {e}");
    }
    let e = fl
        .call_err("create_agent", json!({"name": "free", "role": "loose"}))
        .await;
    assert!(
        e.contains("role") && e.contains("--allow-sandbox-off"),
        "{e}"
    );
    // The agent's own argument wins over its role: a confined agent of that role is fine.
    fl.call(
        "create_agent",
        json!({"name": "tight", "role": "loose", "sandbox": "read-only"}),
    )
    .await;
    assert_eq!(fl.status("tight").await["sandbox"], "read-only");
    drop(fl);

    // With the flag, or with the config's consent, both are accepted.
    for (args, config) in [
        (vec!["--allow-sandbox-off"], DEFAULT_CONFIG.to_string()),
        (
            vec![],
            format!("{DEFAULT_CONFIG}[sandbox]\nallow_off = true\n"),
        ),
    ] {
        let root = std::sync::Arc::new(tempfile::tempdir().unwrap());
        let prompts = loose_role(root.path());
        let mut builder = Flotilla::builder()
            .root(root.clone())
            .config(&config)
            .arg("--prompts-dir")
            .arg(&prompts);
        for a in args {
            builder = builder.arg(a);
        }
        let fl = builder.start().await;
        fl.call("create_agent", json!({"name": "free", "sandbox": "off"}))
            .await;
        assert_eq!(fl.status("free").await["sandbox"], "off");
        fl.call("create_agent", json!({"name": "by-role", "role": "loose"}))
            .await;
        assert_eq!(fl.status("by-role").await["sandbox"], "off");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aliases_send_the_vendors_models_and_unpriced_models_are_named_under_a_dollar_cap() {
    let fl = Flotilla::builder()
        .model("openai:gpt-mystery")
        .config(&format!(
            "{DEFAULT_CONFIG}[aliases]\nlocal = \"openai:qwen-unpriced\"\n"
        ))
        .arg("--max-cost-usd")
        .arg("5")
        .start()
        .await;
    // The start-up log names every unpriced model the default and the aliases point at.
    let log = fl.log_tail(200);
    let line = log
        .lines()
        .find(|l| l.contains("no known price"))
        .unwrap_or_else(|| panic!("no unpriced warning at start-up:\n{log}"));
    assert!(
        line.contains("openai:gpt-mystery") && line.contains("openai:qwen-unpriced"),
        "{line}"
    );
    assert!(
        !line.contains("claude"),
        "the built-in aliases are priced: {line}"
    );

    for (alias, sent) in [
        ("sonnet", "claude-sonnet-5-5"),
        ("opus", "claude-opus-5-5"),
        ("haiku", "claude-haiku-5-5"),
    ] {
        let key = format!("[{alias}]");
        let created = fl
            .call(
                "create_agent",
                json!({"name": alias, "task": format!("{key} hi"), "model": alias}),
            )
            .await;
        assert_eq!(created["model"], format!("anthropic:{sent}"), "{created}");
        let warning = created["warning"].as_str().unwrap_or_default();
        assert!(!warning.contains("price"), "priced: {created}");
        fl.wait_all(&[alias]).await;
        assert_eq!(fl.mock.requests_for(&key)[0].model(), sent);
    }
    // haiku's price is known: its cost is counted.
    let status = fl.status("haiku").await;
    assert!(status["cost_usd"].as_f64().unwrap() > 0.0, "{status}");

    let created = fl.call("create_agent", json!({"name": "mystery"})).await;
    let warning = created["warning"].as_str().unwrap_or_default();
    assert!(
        warning.contains("openai:gpt-mystery") && warning.contains("no known price"),
        "{created}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_openai_answer_is_a_failed_call_not_a_final_answer() {
    let fl = Flotilla::builder().model("openai:gpt-test").start().await;
    fl.mock.script(
        "[empty]",
        vec![Step::raw(
            200,
            json!({"id": "c1", "object": "chat.completion", "model": "gpt-test",
                   "choices": [{"index": 0, "finish_reason": "stop",
                                "message": {"role": "assistant", "content": ""}}],
                   "usage": {"prompt_tokens": 10, "completion_tokens": 0}}),
        )],
    );
    fl.create("e", "[empty] say something").await;
    fl.wait_all(&["e"]).await;
    let status = fl.status("e").await;
    assert_eq!(status["status"], "failed", "{status}");
    let error = status["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("no text or tool call"), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_sends_a_checked_answer_once() {
    let fl = Flotilla::start().await;
    fl.mock
        .script("[once]", vec![Step::text("{\"files\": [\"a.rs\"]}")]);
    fl.mock.script("[plain]", vec![Step::text("just prose")]);
    fl.call(
        "create_agent",
        json!({"name": "once", "task": "[once] list",
               "output_schema": {"type": "object", "required": ["files"]}}),
    )
    .await;
    fl.create("plain", "[plain] talk").await;
    let waited = fl
        .call(
            "wait_for_agents",
            json!({"agents": ["once", "plain"], "timeout_s": 60, "output_max_chars": 500}),
        )
        .await;
    let rows = waited["agents"].as_array().unwrap();
    let once = rows.iter().find(|r| r["name"] == "once").unwrap();
    assert_eq!(once["output_json"], json!({"files": ["a.rs"]}), "{waited}");
    assert!(once.get("output").is_none(), "sent twice: {once}");
    let plain = rows.iter().find(|r| r["name"] == "plain").unwrap();
    assert_eq!(plain["output"], "just prose", "{waited}");
    assert!(plain.get("output_json").is_none(), "{plain}");
    // get_agent_output keeps its text.
    assert_eq!(fl.output("once").await["text"], "{\"files\": [\"a.rs\"]}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_never_answers_is_timed_out_at_the_first_byte_and_retried() {
    let fl = Flotilla::builder()
        .config(&format!("{DEFAULT_CONFIG}first_byte_timeout_s = 1\n"))
        .start()
        .await;
    fl.mock.script(
        "[mute]",
        vec![Step::silent(), Step::text("answered the second time")],
    );
    let started = std::time::Instant::now();
    fl.create("mute", "[mute] hello").await;
    fl.wait_all(&["mute"]).await;
    assert_eq!(fl.output("mute").await["text"], "answered the second time");
    assert_eq!(fl.mock.requests_for("[mute]").len(), 2);
    // Far below request_timeout_s (600 s): the first byte's limit ended the silent call.
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    let log = fl.log_tail(200);
    assert!(log.contains("first_byte_timeout_s"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_overshoots_the_fleets_dollar_cap_by_at_most_one_call() {
    // claude-sonnet-4-5: $3 / $15 per million. Each call reports 30k in + 10k out =
    // $0.24; its worst case is ~16k output tokens ($0.24) plus its small input.
    let fl = Flotilla::builder()
        .config(&format!("max_output_tokens = 16000\n{DEFAULT_CONFIG}"))
        .arg("--max-cost-usd")
        .arg("1")
        .arg("--max-running")
        .arg("0")
        .start()
        .await;
    let names: Vec<String> = (0..20).map(|i| format!("b{i}")).collect();
    let agents: Vec<_> = names
        .iter()
        .map(|n| {
            let key = format!("[{n}]");
            fl.mock.script(
                &key,
                vec![
                    Step::text("spent")
                        .usage(30_000, 10_000)
                        .delay(std::time::Duration::from_millis(1500)),
                ],
            );
            json!({"name": n, "task": format!("{key} work")})
        })
        .collect();
    fl.call("create_agents", json!({"agents": agents})).await;
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    fl.wait_all(&refs).await;
    let list = fl.call("list_agents", json!({})).await;
    let spent = list["totals"]["cost_usd"].as_f64().unwrap();
    assert!(
        spent <= 1.0 + 0.25,
        "a burst spent ${spent} against a $1 cap (one call is ~$0.24): {list}"
    );
    assert!(spent >= 0.24, "nothing ran: {list}");
    let refused = list["agents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["status"] == "failed")
        .count();
    assert!(refused > 0, "{list}");
}
