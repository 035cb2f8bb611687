//! The fleet as a whole: agents run in parallel, status rows and totals add up, the
//! system prompt carries the role and extra instructions.

use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_agents_run_in_parallel() {
    let fl = Flotilla::start().await;
    fl.mock.set_latency(Duration::from_secs(1));
    for n in ["a1", "a2", "a3"] {
        fl.mock
            .script(&format!("[{n}]"), vec![Step::text(format!("{n} finished"))]);
    }
    let started = Instant::now();
    for n in ["a1", "a2", "a3"] {
        let created = fl.create(n, &format!("[{n}] say hello")).await;
        assert_eq!(created["name"], n);
        assert!(created["agent_id"].is_string(), "{created}");
    }
    fl.wait_all(&["a1", "a2", "a3"]).await;
    let elapsed = started.elapsed();

    assert_eq!(
        fl.mock.max_in_flight(),
        3,
        "the three model calls did not overlap"
    );
    assert!(
        elapsed < Duration::from_millis(2500),
        "three 1 s model calls took {elapsed:?}: not parallel"
    );
    for n in ["a1", "a2", "a3"] {
        assert_eq!(fl.mock.requests_for(&format!("[{n}]")).len(), 1);
        assert_eq!(fl.output(n).await["text"], format!("{n} finished"));
    }
    fl.mock.assert_no_protocol_problems();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_returns_at_once() {
    let fl = Flotilla::start().await;
    fl.mock.script(
        "[slowpoke]",
        vec![Step::text("late").delay(Duration::from_secs(5))],
    );
    let started = Instant::now();
    let created = fl.create("slowpoke", "[slowpoke] take your time").await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "create_agent waited for the model ({:?})",
        started.elapsed()
    );
    assert_eq!(created["status"], "running", "{created}");
    assert!(
        created["model"]
            .as_str()
            .unwrap()
            .contains("claude-sonnet-4-5")
    );
    assert!(fl.agent_dir(&created).is_dir(), "{created}");
    fl.wait_all(&["slowpoke"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_row_counts_steps_tools_and_tokens() {
    let fl = Flotilla::start().await;
    fl.mock.script(
        "[counter]",
        vec![
            Step::tool("list_files", json!({})).usage(1000, 10),
            Step::text("counted").usage(1500, 30),
        ],
    );
    let created = fl.create("counter", "[counter] count things").await;
    fl.wait_all(&["counter"]).await;

    let by_id = fl.status(created["agent_id"].as_str().unwrap()).await;
    let by_name = fl.status("counter").await;
    assert_eq!(by_id["agent_id"], by_name["agent_id"]);
    let s = by_name;
    assert_eq!(s["name"], "counter");
    assert_eq!(s["status"], "idle", "{s}");
    assert_eq!(s["commands"], 1, "{s}");
    assert_eq!(s["pending"], 0, "{s}");
    assert_eq!(s["steps"], 2, "{s}");
    assert_eq!(s["tool_calls"], 1, "{s}");
    assert_eq!(s["tokens"]["input"], 2500, "{s}");
    assert_eq!(s["tokens"]["output"], 40, "{s}");
    assert_eq!(
        s["context_tokens"], 1500,
        "context_tokens is the last prompt's size: {s}"
    );
    assert!(s["cost_usd"].is_null() || s["cost_usd"].is_number(), "{s}");
    assert!(s["last_error"].is_null(), "{s}");
    assert!(s.get("last_activity_at").is_some(), "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_agents_rows_filter_and_totals() {
    let fl = Flotilla::start().await;
    fl.mock.script(
        "[busy]",
        vec![Step::text("zzz").delay(Duration::from_secs(60))],
    );
    fl.create("quick", "[quick] be quick").await;
    fl.wait_all(&["quick"]).await;
    fl.create("busy", "[busy] be slow").await;
    fl.mock
        .wait_requests("[busy]", 1, Duration::from_secs(30))
        .await;

    let all = fl.call("list_agents", json!({})).await;
    assert_eq!(names(&all["agents"]), ["busy", "quick"]);
    for r in all["agents"].as_array().unwrap() {
        for field in ["agent_id", "name", "status", "steps", "output_chars"] {
            assert!(r.get(field).is_some(), "row lacks {field}: {r}");
        }
    }
    assert_eq!(row(&all["agents"], "quick")["status"], "idle");
    assert_eq!(row(&all["agents"], "busy")["status"], "running");
    assert!(all["totals"].is_object(), "{all}");

    let running = fl.call("list_agents", json!({"status": "running"})).await;
    assert_eq!(names(&running["agents"]), ["busy"]);
    let idle = fl.call("list_agents", json!({"status": "idle"})).await;
    assert_eq!(names(&idle["agents"]), ["quick"]);
    fl.call("delete_all_agents", json!({})).await;
}

/// The first line of a role profile's body that is long enough to identify it.
fn role_marker(role: &str) -> String {
    let path = format!("{}/prompts/agents/{role}.md", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let body = match text.strip_prefix("---") {
        Some(rest) => rest.split_once("\n---").map_or(rest, |(_, b)| b),
        None => &text,
    };
    body.lines()
        .map(str::trim)
        .filter(|l| l.len() >= 20 && !l.starts_with('#'))
        .max_by_key(|l| l.len())
        .unwrap_or_else(|| panic!("{path} has no body line to look for"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_prompt_carries_role_and_extra_instructions() {
    let fl = Flotilla::start().await;
    fl.call(
        "create_agent",
        json!({"name": "plain", "task": "[plain] go",
               "system_prompt": "Answer in French. MARKER-7731"}),
    )
    .await;
    fl.call(
        "create_agent",
        json!({"name": "scout", "task": "[scout] look around", "role": "scout"}),
    )
    .await;
    fl.wait_all(&["plain", "scout"]).await;

    let plain = &fl.mock.requests_for("[plain]")[0];
    assert!(
        plain.system_text().contains("MARKER-7731"),
        "{}",
        plain.system_text()
    );
    let marker = role_marker("scout");
    let scout = &fl.mock.requests_for("[scout]")[0];
    assert!(
        scout.system_text().contains(&marker),
        "scout's system prompt lacks its role text {marker:?}:\n{}",
        scout.system_text()
    );
    assert!(
        !plain.system_text().contains(&marker),
        "role text leaked into a plain agent"
    );
    assert!(plain.first_user_text().contains("[plain] go"));
}
