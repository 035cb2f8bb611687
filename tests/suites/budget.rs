//! Budgets: a fleet cap stops a looping agent at the cap, an agent cap stops one
//! agent while the others go on, the spend survives a SIGKILL and a delete.

use crate::common::*;
use serde_json::{Value, json};

/// The default mock model (`claude-sonnet-4-5`) costs $3 / $15 per million tokens,
/// so each of these calls costs 10,000 × 3 + 1,000 × 15 = $0.045.
const CALL_COST: f64 = 0.045;

fn looping(n: usize) -> Vec<Step> {
    (0..n)
        .map(|_| Step::tool("list_files", json!({})).usage(10_000, 1_000))
        .collect()
}

fn budget(list: &Value) -> &Value {
    &list["totals"]["budget"]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_cap_stops_a_looping_agent_and_its_spend_survives_restart_and_delete() {
    let fl = Flotilla::builder()
        .arg("--max-cost-usd")
        .arg("0.1")
        .start()
        .await;
    fl.mock.script("[loop]", looping(20));
    fl.create("looper", "[loop] list files forever").await;
    let waited = fl.wait_all(&["looper"]).await;
    // 0.045 → 0.09 crosses 80 % of $0.10: said once, in the wait.
    let note = waited["note"].as_str().unwrap_or_default();
    assert!(note.contains("budget: the fleet has used 90%"), "{waited}");

    let status = fl.status("looper").await;
    assert_eq!(status["status"], "failed", "{status}");
    let error = status["last_error"].as_str().unwrap();
    assert!(
        error.starts_with("budget: the fleet's max_cost_usd cap of $0.1"),
        "{error}"
    );
    assert!(error.contains("--max-cost-usd"), "{error}");
    // Checked before each call: the third call (spend 0.09 < 0.1) went, the fourth not.
    assert_eq!(fl.mock.requests_for("[loop]").len(), 3);
    let spent = status["cost_usd"].as_f64().unwrap();
    assert!((spent - 3.0 * CALL_COST).abs() < 1e-9, "{status}");
    assert!(
        spent <= 0.1 + CALL_COST,
        "overshoot beyond one call: {spent}"
    );
    assert!(status.get("note").is_none(), "the note came once: {status}");

    let list = fl.call("list_agents", json!({})).await;
    assert_eq!(budget(&list)["max_cost_usd"], 0.1, "{list}");
    assert_eq!(budget(&list)["cost_usd"], 0.135, "{list}");
    assert_eq!(budget(&list)["tokens"], 33_000, "{list}");

    // An exhausted fleet refuses new work.
    let e = fl
        .call_err("create_agent", json!({"name": "more", "task": "go"}))
        .await;
    assert!(e.starts_with("budget:"), "{e}");
    let e = fl
        .call_err("command_agent", json!({"agent": "looper", "task": "again"}))
        .await;
    assert!(e.starts_with("budget:"), "{e}");
    // Creating without a task is fine (it spends nothing).
    fl.call("create_agent", json!({"name": "idle-one"})).await;

    // SIGKILL and restart (with the same cap): the spend is what it was.
    let fl = fl.restart().await;
    let list = fl.call("list_agents", json!({})).await;
    assert_eq!(budget(&list)["cost_usd"], 0.135, "{list}");
    assert_eq!(fl.status("looper").await["cost_usd"], 0.135);

    // Deleting the agent does not give its spend back, now or after a restart.
    fl.call("delete_agent", json!({"agent": "looper"})).await;
    let list = fl.call("list_agents", json!({})).await;
    assert_eq!(budget(&list)["cost_usd"], 0.135, "{list}");
    assert_eq!(
        list["totals"]["cost_usd"], 0.0,
        "live agents spent nothing: {list}"
    );
    let fl = fl.restart().await;
    let list = fl.call("list_agents", json!({})).await;
    assert_eq!(budget(&list)["cost_usd"], 0.135, "{list}");
    let e = fl
        .call_err("command_agent", json!({"agent": "idle-one", "task": "go"}))
        .await;
    assert!(e.starts_with("budget:"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_cap_stops_that_agent_while_the_others_go_on() {
    let fl = Flotilla::start().await;
    fl.mock.script("[capped]", looping(10));
    let mut free = looping(5);
    free.push(Step::text("free finished"));
    fl.mock.script("[free]", free);
    let created = fl
        .call(
            "create_agent",
            json!({"name": "capped", "task": "[capped] loop", "max_tokens": 25_000}),
        )
        .await;
    assert!(created.get("warning").is_none(), "{created}");
    fl.create("free", "[free] loop a little").await;
    fl.wait_all(&["capped", "free"]).await;

    let capped = fl.status("capped").await;
    assert_eq!(capped["status"], "failed", "{capped}");
    let error = capped["last_error"].as_str().unwrap();
    assert!(
        error.starts_with("budget: agent `capped`'s max_tokens cap of 25000 tokens"),
        "{error}"
    );
    assert!(
        error.contains("create a new agent with a higher max_tokens"),
        "{error}"
    );
    // 11,000 tokens a call: after two (22,000) a third goes; after it (33,000) none.
    assert_eq!(fl.mock.requests_for("[capped]").len(), 3);
    assert_eq!(fl.status("free").await["status"], "idle");
    assert_eq!(fl.output("free").await["text"], "free finished");
    assert_eq!(fl.mock.requests_for("[free]").len(), 6);
    let e = fl
        .call_err("command_agent", json!({"agent": "capped", "task": "more"}))
        .await;
    assert!(e.starts_with("budget: agent `capped`"), "{e}");
    // No fleet cap is set: no budget block in the totals.
    let list = fl.call("list_agents", json!({})).await;
    assert!(list["totals"].get("budget").is_none(), "{list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpriced_model_under_a_dollar_cap_is_flagged_and_counts_tokens_only() {
    let fl = Flotilla::builder()
        .arg("--max-cost-usd")
        .arg("1")
        .arg("--max-tokens")
        .arg("50000")
        .start()
        .await;
    fl.mock.script("[unpriced]", looping(10));
    let created = fl
        .call(
            "create_agent",
            json!({"name": "u", "task": "[unpriced] go", "model": "openai:mystery-model"}),
        )
        .await;
    let warning = created["warning"].as_str().unwrap();
    assert!(warning.contains("no known price"), "{created}");
    fl.wait_all(&["u"]).await;
    let status = fl.status("u").await;
    let error = status["last_error"].as_str().unwrap();
    assert!(
        error.starts_with("budget: the fleet's max_tokens cap of 50000"),
        "{error}"
    );
    let list = fl.call("list_agents", json!({})).await;
    assert_eq!(budget(&list)["cost_usd"], 0.0, "{list}");
    assert_eq!(budget(&list)["tokens"], 55_000, "{list}");
}
