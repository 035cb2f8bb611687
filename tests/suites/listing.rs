//! `list_agents` pages: rows in name order, `limit` and the `after` cursor, totals
//! over the whole fleet on every page.

use crate::common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_agents_pages_in_name_order_with_whole_fleet_totals() {
    let fl = Flotilla::start().await;
    for i in 0..25 {
        fl.call("create_agent", json!({"name": format!("ag{i:02}")}))
            .await;
    }
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut args = json!({"limit": 10});
        if let Some(a) = &after {
            args["after"] = json!(a);
        }
        let page = fl.call("list_agents", args).await;
        pages += 1;
        assert_eq!(page["totals"]["agents"], 25, "{page}");
        assert_eq!(page["totals"]["by_status"]["idle"], 25, "{page}");
        seen.extend(names(&page["agents"]));
        match page["next_after"].as_str() {
            Some(next) => after = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let want: Vec<String> = (0..25).map(|i| format!("ag{i:02}")).collect();
    assert_eq!(seen, want);

    // The default page is 100 rows; a filter pages too.
    let all = fl.call("list_agents", json!({})).await;
    assert_eq!(names(&all["agents"]).len(), 25);
    assert!(all["next_after"].is_null());
    let none = fl.call("list_agents", json!({"status": "running"})).await;
    assert!(names(&none["agents"]).is_empty());
    assert_eq!(none["totals"]["agents"], 25);

    // Deleted agents leave the pages and the totals.
    fl.call("delete_agent", json!({"agent": "ag00"})).await;
    let page = fl.call("list_agents", json!({"limit": 1})).await;
    assert_eq!(names(&page["agents"]), ["ag01"]);
    assert_eq!(page["totals"]["agents"], 24);

    for (args, needle) in [
        (json!({"limit": 0}), "limit must be between 1 and 1000"),
        (json!({"limit": 1001}), "limit must be between 1 and 1000"),
        (json!({"after": ""}), "next_after"),
    ] {
        let e = fl.call_err("list_agents", args).await;
        assert!(e.contains(needle), "{e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_without_names_shows_at_most_a_page_of_rows_and_counts_the_rest() {
    let fl = Flotilla::start().await;
    fl.mock.set_latency(std::time::Duration::from_secs(5));
    let agents: Vec<serde_json::Value> = (0..101)
        .map(|i| json!({"name": format!("w{i:03}"), "task": format!("[w{i:03}] go")}))
        .collect();
    fl.call("create_agents", json!({ "agents": agents })).await;
    let waited = fl.call("wait_for_agents", json!({"timeout_s": 0})).await;
    assert_eq!(waited["timed_out"], true, "{waited}");
    assert_eq!(waited["agents"].as_array().unwrap().len(), 100);
    assert_eq!(waited["more_agents"], 1, "{}", waited["more_agents"]);
    // Named agents are always all shown.
    let named: Vec<String> = (0..101).map(|i| format!("w{i:03}")).collect();
    let waited = fl
        .call("wait_for_agents", json!({"agents": named, "timeout_s": 0}))
        .await;
    assert_eq!(waited["agents"].as_array().unwrap().len(), 101);
    assert!(waited.get("more_agents").is_none());
    fl.call("delete_all_agents", json!({})).await;
}
