//! `wait_for_agents`: until all / any, timeouts, the default agent set, and progress
//! notifications while it blocks.

use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn until_all_waits_for_the_slowest() {
    let fl = Flotilla::start().await;
    fl.mock.script(
        "[fast]",
        vec![Step::text("f").delay(Duration::from_millis(100))],
    );
    fl.mock.script(
        "[slow]",
        vec![Step::text("s").delay(Duration::from_secs(3))],
    );
    fl.create("fast", "[fast] go").await;
    fl.create("slow", "[slow] go").await;
    let started = Instant::now();
    let waited = fl.wait_all(&["fast", "slow"]).await;
    assert!(
        started.elapsed() >= Duration::from_millis(2500),
        "returned before slow settled"
    );
    assert_eq!(names(&waited["agents"]), ["fast", "slow"]);
    for name in ["fast", "slow"] {
        let r = row(&waited["agents"], name);
        assert_eq!(r["status"], "idle", "{r}");
        // Compact: nothing queued and no error means no such fields.
        assert!(r.get("pending").is_none(), "{r}");
        assert!(r.get("last_error").is_none(), "{r}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn until_any_returns_at_the_first_settled() {
    let fl = Flotilla::start().await;
    fl.mock.script(
        "[fast]",
        vec![Step::text("f").delay(Duration::from_millis(300))],
    );
    fl.mock.script(
        "[slow]",
        vec![Step::text("s").delay(Duration::from_secs(60))],
    );
    fl.create("fast", "[fast] go").await;
    fl.create("slow", "[slow] go").await;
    let started = Instant::now();
    let waited = fl
        .call(
            "wait_for_agents",
            json!({"agents": ["fast", "slow"], "until": "any", "timeout_s": 120}),
        )
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "any waited for the slow agent"
    );
    assert_eq!(waited["timed_out"], false, "{waited}");
    assert_eq!(row(&waited["agents"], "fast")["status"], "idle", "{waited}");
    assert_eq!(
        row(&waited["agents"], "slow")["status"],
        "running",
        "{waited}"
    );
    fl.call("delete_all_agents", json!({})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_reports_timed_out() {
    let fl = Flotilla::start().await;
    fl.mock.script(
        "[stuck]",
        vec![Step::text("s").delay(Duration::from_secs(60))],
    );
    fl.create("stuck", "[stuck] go").await;
    let started = Instant::now();
    let waited = fl
        .call(
            "wait_for_agents",
            json!({"agents": ["stuck"], "timeout_s": 2}),
        )
        .await;
    let elapsed = started.elapsed();
    assert_eq!(waited["timed_out"], true, "{waited}");
    assert!(
        elapsed >= Duration::from_millis(1500),
        "returned early: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(20),
        "ignored its timeout: {elapsed:?}"
    );
    assert_eq!(row(&waited["agents"], "stuck")["status"], "running");
    fl.call("delete_all_agents", json!({})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_set_is_agents_with_work_pending() {
    let fl = Flotilla::start().await;
    fl.create("done1", "[done1] go").await;
    fl.wait_all(&["done1"]).await;
    // Nothing has work pending: the default wait returns at once.
    let started = Instant::now();
    let waited = fl.call("wait_for_agents", json!({"timeout_s": 60})).await;
    assert_eq!(waited["timed_out"], false, "{waited}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "waited on idle agents"
    );

    fl.mock.script(
        "[later]",
        vec![Step::text("l").delay(Duration::from_secs(2))],
    );
    fl.create("later", "[later] go").await;
    let started = Instant::now();
    let waited = fl.call("wait_for_agents", json!({"timeout_s": 120})).await;
    assert_eq!(waited["timed_out"], false, "{waited}");
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "did not wait for the busy agent"
    );
    assert_eq!(
        row(&waited["agents"], "later")["status"],
        "idle",
        "{waited}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_notifications_arrive_while_waiting() {
    let fl = Flotilla::start().await;
    fl.mock.script(
        "[prog]",
        vec![Step::text("p").delay(Duration::from_secs(8))],
    );
    fl.create("prog", "[prog] go").await;
    let started = Instant::now();
    let (waited, progress) = fl
        .call_with_progress(
            "wait_for_agents",
            json!({"agents": ["prog"], "timeout_s": 120}),
        )
        .await;
    let finished = Instant::now();
    assert_eq!(waited["timed_out"], false, "{waited}");
    assert!(finished - started >= Duration::from_secs(7));
    let during: Vec<_> = progress.iter().filter(|p| p.at < finished).collect();
    assert!(
        during.len() >= 2,
        "expected several progress notifications during an 8 s wait, got {progress:?}"
    );
    let span = during.last().unwrap().at - during[0].at;
    assert!(
        span >= Duration::from_secs(1),
        "notifications were not spread over the wait"
    );
    let values: Vec<f64> = during.iter().map(|p| p.param.progress).collect();
    assert!(
        values.windows(2).all(|w| w[1] > w[0]),
        "progress must increase: {values:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_max_chars_returns_settled_answers_in_the_rows() {
    let fl = Flotilla::start().await;
    let long = "L".repeat(50);
    fl.mock.script("[short]", vec![Step::text("short answer")]);
    fl.mock.script("[long]", vec![Step::text(long.clone())]);
    fl.mock.script(
        "[busy]",
        vec![Step::text("late").delay(Duration::from_secs(30))],
    );
    fl.create("short", "[short] go").await;
    fl.create("long", "[long] go").await;
    fl.create("busy", "[busy] go").await;
    let waited = fl
        .call(
            "wait_for_agents",
            json!({"agents": ["short", "long", "busy"], "until": "all", "timeout_s": 3, "output_max_chars": 20}),
        )
        .await;
    assert_eq!(waited["timed_out"], true, "{waited}");
    let short = row(&waited["agents"], "short");
    assert_eq!(short["output"], "short answer", "{short}");
    let long_row = row(&waited["agents"], "long");
    assert_eq!(long_row["output"], "L".repeat(20), "{long_row}");
    assert_eq!(long_row["output_chars"], 50, "{long_row}");
    let busy = row(&waited["agents"], "busy");
    assert!(
        busy.get("output").is_none(),
        "no output before it settles: {busy}"
    );

    // Without the argument, rows stay compact.
    let plain = fl
        .call("wait_for_agents", json!({"agents": ["short"]}))
        .await;
    assert!(row(&plain["agents"], "short").get("output").is_none());
    let err = fl
        .call_err(
            "wait_for_agents",
            json!({"agents": ["short"], "output_max_chars": 100_001}),
        )
        .await;
    assert!(err.contains("output_max_chars"), "{err}");
    fl.call("delete_agent", json!({"agent": "busy"})).await;
}
