//! Run slots, provider health and stalls, end to end: `--max-running` keeps the
//! mock's concurrency bounded and the order of creation; the circuit breaker turns an
//! outage into a bounded number of requests; fatal errors are not retried; a reply
//! cut off by the output limit is continued; stalled model calls and tools end.

use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_running_two_runs_six_agents_two_at_a_time_in_order_of_creation() {
    let fl = Flotilla::builder()
        .arg("--max-running")
        .arg("2")
        .start()
        .await;
    fl.mock.set_latency(Duration::from_millis(200));
    let names: Vec<String> = (1..=6).map(|i| format!("r{i}")).collect();
    for n in &names {
        fl.mock.script(
            &format!("[{n}]"),
            vec![
                Step::tool("list_files", json!({})),
                Step::text(format!("{n} done")),
            ],
        );
    }
    for n in &names {
        fl.create(n, &format!("[{n}] work")).await;
    }
    // The last ones wait for a slot: status queued, activity says why.
    let queued = fl
        .status_until("r6", "queued", |s| {
            s["status"] == "queued" || s["status"] == "running"
        })
        .await;
    if queued["status"] == "queued" {
        assert!(
            queued["activity"].as_str().unwrap().contains("run slot"),
            "{queued}"
        );
    }
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    fl.wait_all(&refs).await;

    assert_eq!(
        fl.mock.max_in_flight(),
        2,
        "at most two agents' calls at once"
    );
    for n in &names {
        assert_eq!(fl.output(n).await["text"], format!("{n} done"));
    }
    // First come, first served: each agent's first request in creation order.
    let requests = fl.mock.requests();
    let mut firsts: Vec<(usize, &str)> = names
        .iter()
        .map(|n| {
            let key = format!("[{n}]");
            let first = requests.iter().find(|r| r.is_for(&key)).unwrap();
            (first.seq, n.as_str())
        })
        .collect();
    firsts.sort();
    // Two slots, first come first served: an agent never starts before one created
    // two places or more ahead of it. (Neighbours may race: a slot freed for one can
    // meet the other's first request under load.)
    let order: Vec<&str> = firsts.iter().map(|(_, n)| *n).collect();
    let pos = |n: &str| order.iter().position(|x| *x == n).unwrap();
    for (i, a) in refs.iter().enumerate() {
        for b in refs.iter().skip(i + 3) {
            assert!(pos(a) < pos(b), "{b} started before {a}: {order:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_costs_a_bounded_number_of_requests_and_the_fleet_recovers() {
    let fl = Flotilla::builder()
        .config(
            "[retry]\nmax_retries = 50\ninitial_backoff_ms = 20\nmax_backoff_ms = 50\n\
             [limits]\ncircuit_failures = 5\ncircuit_open_s = 1\n",
        )
        .start()
        .await;
    fl.mock.set_outage(Some(500));
    let names: Vec<String> = (1..=10).map(|i| format!("c{i}")).collect();
    for n in &names {
        fl.mock
            .script(&format!("[{n}]"), vec![Step::text(format!("{n} ok"))]);
        fl.create(n, &format!("[{n}] go")).await;
    }
    let outage_started = Instant::now();
    fl.status_until("c1", "waiting on the open circuit", |s| {
        s["activity"]
            .as_str()
            .is_some_and(|a| a.contains("anthropic unavailable"))
    })
    .await;
    // Keep the provider down for three circuit intervals: until the server says an
    // agent has been held for 3 s.
    eventually("an agent held 3 s by the open circuit", async || {
        let list = fl.call("list_agents", json!({})).await;
        let held = list["agents"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|row| held_s(&row["activity"]))
            .max();
        held.filter(|s| *s >= 3)
            .ok_or_else(|| format!("held at most {held:?} s"))
    })
    .await;
    let during = fl.mock.requests().len();
    let outage_s = outage_started.elapsed().as_secs_f64();
    fl.mock.set_outage(None);
    // Without the circuit, ten agents retrying every 20-50 ms for ~3 s would send
    // hundreds of requests (up to 51 each). With it: the first failures of the ten,
    // then one probe per open interval.
    let bound = names.len() + (outage_s / 1.0).ceil() as usize + 2;
    eprintln!("requests during a {outage_s:.1}s outage: {during} (bound {bound})");
    assert!(
        during <= bound,
        "{during} requests during the outage (bound {bound})"
    );
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    fl.wait_all(&refs).await;
    for n in &names {
        let s = fl.status(n).await;
        assert_eq!(s["status"], "idle", "{s}");
        assert_eq!(fl.output(n).await["text"], format!("{n} ok"));
    }
}

/// Seconds an activity `waiting: anthropic unavailable (3s)` says the agent has waited.
fn held_s(activity: &Value) -> Option<u64> {
    let (_, rest) = activity.as_str()?.split_once("anthropic unavailable (")?;
    rest.split_once("s)")?.0.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fatal_provider_errors_fail_at_once_with_one_request() {
    let fl = Flotilla::start().await;
    fl.mock
        .script("[k]", vec![Step::fail_with(401, "invalid x-api-key")]);
    fl.mock.script(
        "[m]",
        vec![Step::fail_with(404, "model: claude-nope not found")],
    );
    fl.create("k", "[k] go").await;
    fl.create("m", "[m] go").await;
    fl.wait_all(&["k", "m"]).await;
    for (agent, key, text) in [("k", "[k]", "invalid x-api-key"), ("m", "[m]", "not found")] {
        let s = fl.status(agent).await;
        assert_eq!(s["status"], "failed", "{s}");
        assert!(s["last_error"].as_str().unwrap().contains(text), "{s}");
        assert_eq!(fl.mock.requests_for(key).len(), 1, "{agent} was retried");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_cut_off_by_the_output_limit_is_continued() {
    let fl = Flotilla::start().await;
    fl.mock.script(
        "[cut]",
        vec![
            Step::cut_off("The first half, "),
            Step::text("and the second half."),
        ],
    );
    fl.create("cut", "[cut] write a long answer").await;
    fl.wait_all(&["cut"]).await;
    assert_eq!(
        fl.output("cut").await["text"],
        "The first half, and the second half."
    );
    let requests = fl.mock.requests_for("[cut]");
    assert_eq!(requests.len(), 2);
    assert!(
        requests[1]
            .body_text()
            .contains("cut off by the output token limit"),
        "the model was not asked to continue"
    );
    let events = fl
        .call(
            "get_agent_events",
            json!({"agent": "cut", "kinds": ["model"]}),
        )
        .await;
    assert!(
        events["events"][0]["summary"]
            .as_str()
            .unwrap()
            .contains("cut off"),
        "{events}"
    );
    fl.mock.assert_no_protocol_problems();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_model_call_and_a_hung_tool_end_as_stalled_with_no_process_left() {
    let fl = Flotilla::builder()
        .arg("--stall-timeout-s")
        .arg("3")
        .start()
        .await;
    fl.mock.script(
        "[hang-model]",
        vec![Step::text("too late").delay(Duration::from_secs(600))],
    );
    fl.mock.script(
        "[hang-tool]",
        vec![Step::tool(
            "run_command",
            json!({"command": "echo $$ > pid.txt; sleep 1000", "timeout_s": 600}),
        )],
    );
    let started = Instant::now();
    let tool = fl.create("hang-tool", "[hang-tool] run it").await;
    fl.create("hang-model", "[hang-model] answer").await;
    // Read while it runs (commands may run in their own PID namespace).
    let pid = read_pid_file(&fl.agent_dir(&tool).join("pid.txt")).await;
    fl.wait_all(&["hang-model", "hang-tool"]).await;
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );

    let s = fl.status("hang-model").await;
    let e = s["last_error"].as_str().unwrap();
    assert!(e.starts_with("stalled: no progress for 3s"), "{e}");
    assert!(e.contains("model answer"), "{e}");
    assert_eq!(fl.mock.in_flight(), 0, "the hung model call was abandoned");

    let s = fl.status("hang-tool").await;
    let e = s["last_error"].as_str().unwrap();
    assert!(e.starts_with("stalled:"), "{e}");
    assert!(e.contains("run_command"), "{e}");
    assert!(
        wait_pid_gone(pid, Duration::from_secs(10)).await,
        "the stalled command's shell lives on"
    );
}
