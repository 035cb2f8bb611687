//! Scenario 1, scale: N agents created at once, each doing `steps` model calls with one
//! tool call between them; one `wait_for_agents` until all settle. Wall time against
//! the ideal (steps × latency + tool time) is flotilla's overhead.
//!
//! Each size runs twice: one `create_agent` call per agent (all in flight at once), and
//! the whole fleet in one `create_agents` call, as a plan is submitted.
//!
//! The fleet runs without run slots (`--max-running 0`, see [`UNLIMITED`]): flotilla's
//! default of 16 would make this a measure of the queue. [`one`] with a limit is the
//! `guards` scenario's comparison.
//!
//! On each store of `--stores`: SQLite with `--agents`, PostgreSQL (one node) with
//! `--pg-agents`; [`side_by_side`] prints the sizes both ran.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::mock::{Mock, write_project};
use crate::server::{Server, UNLIMITED, call, cpu_s_of, text_of};
use crate::stats::{Summary, loadavg, ms, round, table};
use crate::store::Store;

pub async fn run(store: Store, sizes: &[usize], latency: Duration, steps: u32) -> Value {
    let mut results = Vec::new();
    let mut rows = Vec::new();
    let mut splits = Vec::new();
    for (&n, via) in sizes
        .iter()
        .flat_map(|n| [(n, Via::Single), (n, Via::Plan)])
    {
        let r = one(store, n, latency, steps, 0, via).await;
        rows.push(vec![
            format!("{n} {}", via.label()),
            format!("{:.3} s", r["wall_s"].as_f64().unwrap_or(0.0)),
            format!("{:.3} s", r["ideal_s"].as_f64().unwrap_or(0.0)),
            format!("{:.3}", r["overhead_ratio"].as_f64().unwrap_or(0.0)),
            format!(
                "{:.3} / {:.3}",
                r["agent_overhead_p50"].as_f64().unwrap_or(0.0),
                r["agent_overhead_p99"].as_f64().unwrap_or(0.0)
            ),
            ms(r["create_ms"]["p50_ms"].as_f64().unwrap_or(0.0)),
            ms(r["create_ms"]["p99_ms"].as_f64().unwrap_or(0.0)),
            ms(r["create_burst_ms"].as_f64().unwrap_or(0.0)),
            format!(
                "{:.0} µs",
                r["server_cpu_us_per_create"].as_f64().unwrap_or(0.0)
            ),
            format!(
                "{:.0} µs",
                r["server_cpu_us_per_step"].as_f64().unwrap_or(0.0)
            ),
            r["load_before"].as_str().unwrap_or("").to_string(),
        ]);
        splits.push(vec![
            format!("{n} {}", via.label()),
            ms(r["start_delay_ms"]["p50_ms"].as_f64().unwrap_or(0.0)),
            ms(r["start_delay_ms"]["p99_ms"].as_f64().unwrap_or(0.0)),
            ms(r["turnaround_ms"]["p50_ms"].as_f64().unwrap_or(0.0)),
            ms(r["turnaround_ms"]["p99_ms"].as_f64().unwrap_or(0.0)),
            ms(r["turnaround_ms"]["max_ms"].as_f64().unwrap_or(0.0)),
            ms(r["model_hold_ms"]["p99_ms"].as_f64().unwrap_or(0.0)),
            ms(r["settle_lag_ms"].as_f64().unwrap_or(0.0)),
            r["max_inflight"].to_string(),
            r["progress_notifications"].to_string(),
        ]);
        results.push(r);
    }
    table(
        &format!(
            "Scale, {}: N agents × {steps} model calls ({} ms each) with a read_file between; create all, one wait_for_agents",
            store.label(),
            latency.as_millis()
        ),
        &[
            "agents",
            "wall",
            "ideal",
            "overhead",
            "per agent p50 / p99",
            "create p50",
            "create p99",
            "create burst",
            "server CPU/create",
            "server CPU/step",
            "load before",
        ],
        &rows,
    );
    table(
        &format!(
            "Scale, {}, where the time goes (start delay: create sent → first model request; turnaround: model reply → same agent's next request, incl. the tool; settle lag: last final answer → wait_for_agents returned)",
            store.label()
        ),
        &[
            "agents",
            "start p50",
            "start p99",
            "turnaround p50",
            "turnaround p99",
            "turnaround max",
            "model hold p99",
            "settle lag",
            "max in flight",
            "progress msgs",
        ],
        &splits,
    );
    Value::Array(results)
}

/// The sizes both stores ran, row by row: wall ÷ ideal, create latency and server CPU.
pub fn side_by_side(sqlite: &Value, postgres: &Value) {
    let empty = Vec::new();
    let theirs = postgres.as_array().unwrap_or(&empty);
    let f = |r: &Value, k: &str| r[k].as_f64().unwrap_or(0.0);
    let rows: Vec<Vec<String>> = sqlite
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .filter_map(|s| {
            let p = theirs
                .iter()
                .find(|p| p["agents"] == s["agents"] && p["created_via"] == s["created_via"])?;
            Some(vec![
                format!(
                    "{} {}",
                    s["agents"],
                    s["created_via"].as_str().unwrap_or("")
                ),
                format!("{:.3} / {:.3} s", f(s, "wall_s"), f(p, "wall_s")),
                format!(
                    "{:.3} / {:.3}",
                    f(s, "overhead_ratio"),
                    f(p, "overhead_ratio")
                ),
                format!(
                    "{} / {}",
                    ms(s["create_ms"]["p50_ms"].as_f64().unwrap_or(0.0)),
                    ms(p["create_ms"]["p50_ms"].as_f64().unwrap_or(0.0))
                ),
                format!(
                    "{} / {}",
                    ms(f(s, "create_burst_ms")),
                    ms(f(p, "create_burst_ms"))
                ),
                format!(
                    "{:.0} / {:.0} µs",
                    f(s, "server_cpu_us_per_step"),
                    f(p, "server_cpu_us_per_step")
                ),
                format!(
                    "{} / {}",
                    s["load_before"].as_str().unwrap_or(""),
                    p["load_before"].as_str().unwrap_or("")
                ),
            ])
        })
        .collect();
    if rows.is_empty() {
        return;
    }
    table(
        "Scale, SQLite / PostgreSQL (one node)",
        &[
            "agents",
            "wall",
            "wall ÷ ideal",
            "create p50",
            "create burst",
            "server CPU/step",
            "load before",
        ],
        &rows,
    );
}

/// How the fleet is created.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// One `create_agent` call per agent, all in flight at once.
    Single,
    /// One `create_agents` call for the whole fleet.
    Plan,
}

impl Via {
    fn label(self) -> &'static str {
        match self {
            Via::Single => "× create_agent",
            Via::Plan => "in one create_agents",
        }
    }
}

fn task(i: usize) -> Value {
    json!({
        "name": format!("s-{i:05}"),
        "task": format!("Benchmark task [bench k=scale a={i}]: read data.txt and say what it holds."),
    })
}

/// One fleet of `n` agents. `max_running`: the server's run slots (0: none). With slots
/// the agents run in waves of `max_running`, so the ideal is ⌈n / max_running⌉ × one
/// agent's ideal.
pub async fn one(
    store: Store,
    n: usize,
    latency: Duration,
    steps: u32,
    max_running: usize,
    via: Via,
) -> Value {
    let load_before = loadavg();
    let mock = Mock::start(latency, steps, n).await;
    let server = if max_running == 0 {
        Server::start_on(store, &mock.url, write_project, UNLIMITED).await
    } else {
        let limit = max_running.to_string();
        Server::start_on(
            store,
            &mock.url,
            write_project,
            &[("FLOTILLA_MAX_RUNNING", limit.as_str())],
        )
        .await
    };
    let tool_ms = tool_time_ms(&server.work).await;
    let epoch = mock.epoch();
    let cpu0 = server.cpu_s();
    let threads0 = server.cpu_by_thread();
    let bench_cpu0 = cpu_s_of("/proc/self/stat");
    let notes0 = server
        .handler
        .progress
        .load(std::sync::atomic::Ordering::Relaxed);

    let t0 = epoch.elapsed();
    let created: Vec<(Duration, Duration)> = match via {
        Via::Single => {
            let handles: Vec<_> = (0..n)
                .map(|i| {
                    let peer = server.peer();
                    tokio::spawn(async move {
                        let sent = epoch.elapsed();
                        let r = call(&peer, "create_agent", task(i)).await;
                        let done = epoch.elapsed();
                        assert_ne!(
                            r.is_error,
                            Some(true),
                            "create_agent failed: {}",
                            text_of(&r)
                        );
                        (sent, done)
                    })
                })
                .collect();
            let mut created = Vec::with_capacity(n);
            for h in handles {
                created.push(h.await.expect("create task"));
            }
            created
        }
        Via::Plan => {
            let agents: Vec<Value> = (0..n).map(task).collect();
            let sent = epoch.elapsed();
            let r = server
                .call("create_agents", json!({"agents": agents}))
                .await;
            let done = epoch.elapsed();
            assert_ne!(
                r.is_error,
                Some(true),
                "create_agents failed: {}",
                text_of(&r)
            );
            vec![(sent, done); n]
        }
    };
    let cpu_created = server.cpu_s();
    let t_created = created.iter().map(|c| c.1).max().unwrap_or(t0);
    // Name every agent: under load some may have finished before the last create returned.
    let names: Vec<String> = (0..n).map(|i| format!("s-{i:05}")).collect();
    let waited = server
        .call_ok(
            "wait_for_agents",
            json!({"agents": names, "timeout_s": 600}),
        )
        .await;
    let t_end = epoch.elapsed();
    let cpu = server.cpu_s() - cpu0;
    let threads: serde_json::Map<String, Value> = server
        .cpu_by_thread()
        .into_iter()
        .map(|(k, v)| {
            let d = v - threads0.get(&k).copied().unwrap_or(0.0);
            (k, json!(round(d, 2)))
        })
        .collect();
    let bench_cpu = cpu_s_of("/proc/self/stat") - bench_cpu0;
    let notes = server
        .handler
        .progress
        .load(std::sync::atomic::Ordering::Relaxed)
        - notes0;

    // Check the work was really done.
    settled_rows(&waited, n, steps);
    let stats = mock.stats();
    let requests = stats.requests.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(requests, n as u64 * u64::from(steps), "model requests");

    let max_inflight = stats
        .max_inflight
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        max_running == 0 || max_inflight <= max_running as u64,
        "{max_inflight} model calls at once with --max-running {max_running}: the server ignores it"
    );

    let wall = (t_end - t0).as_secs_f64();
    let agent_ideal =
        f64::from(steps) * latency.as_secs_f64() + f64::from(steps - 1) * tool_ms / 1e3;
    let waves = if max_running == 0 {
        1
    } else {
        n.div_ceil(max_running)
    };
    let ideal = waves as f64 * agent_ideal;
    let create = Summary::of(&created.iter().map(|(s, d)| *d - *s).collect::<Vec<_>>());
    let start_delay: Vec<f64> = created
        .iter()
        .enumerate()
        .map(|(i, (sent, _))| {
            let first = stats.slots[i]
                .first_ns
                .load(std::sync::atomic::Ordering::Relaxed);
            (first as f64 - sent.as_nanos() as f64) / 1e6
        })
        .collect();
    let start_delay = Summary::of_ms(&start_delay);
    // Each agent's own life: create sent → its final answer, against the ideal.
    let lifetime: Vec<f64> = created
        .iter()
        .enumerate()
        .map(|(i, (sent, _))| {
            let last = stats.slots[i]
                .last_reply_ns
                .load(std::sync::atomic::Ordering::Relaxed);
            (last as f64 - sent.as_nanos() as f64) / 1e6
        })
        .collect();
    let lifetime = Summary::of_ms(&lifetime);
    let turnaround = Summary::of_ms(&stats.take_gaps_ms());
    let hold = Summary::of_ms(&stats.take_holds_ms());
    let last_final = stats
        .last_final_ns
        .load(std::sync::atomic::Ordering::Relaxed);
    let settle_lag_ms = (t_end.as_nanos() as f64 - last_final as f64) / 1e6;
    let avg_request = stats
        .request_bytes
        .load(std::sync::atomic::Ordering::Relaxed)
        / requests.max(1);

    server.call_ok("delete_all_agents", json!({})).await;
    server.stop().await;
    json!({
        "agents": n,
        "store": store.label(),
        "created_via": via.label(),
        "steps": steps,
        "latency_ms": latency.as_millis() as u64,
        "max_running": max_running,
        "wall_s": round(wall, 4),
        "ideal_s": round(ideal, 4),
        "overhead_ratio": round(wall / ideal, 4),
        "tool_ms": round(tool_ms, 4),
        "create_ms": create.json(),
        "create_burst_ms": round((t_created - t0).as_secs_f64() * 1e3, 2),
        "start_delay_ms": start_delay.json(),
        "agent_lifetime_ms": lifetime.json(),
        "agent_overhead_p50": round(lifetime.p50 / (agent_ideal * 1e3), 4),
        "agent_overhead_p99": round(lifetime.p99 / (agent_ideal * 1e3), 4),
        "turnaround_ms": turnaround.json(),
        "model_hold_ms": hold.json(),
        "settle_lag_ms": round(settle_lag_ms, 2),
        "max_inflight": max_inflight,
        "model_requests": requests,
        "avg_request_bytes": avg_request,
        "max_request_bytes": stats.max_request_bytes.load(std::sync::atomic::Ordering::Relaxed),
        "server_cpu_s": round(cpu, 2),
        "server_cpu_us_per_step": round(cpu * 1e6 / (n as f64 * f64::from(steps)), 1),
        "server_cpu_us_per_create": round((cpu_created - cpu0) * 1e6 / n as f64, 1),
        "server_cpu_s_by_thread": threads,
        "bench_cpu_s": round(bench_cpu, 2),
        "progress_notifications": notes,
        "load_before": load_before,
        "load_after": loadavg(),
    })
}

/// Median time of the tool call each step makes (`read_file data.txt`), measured
/// in-process with flotilla's own tool code.
pub async fn tool_time_ms(work: &std::path::Path) -> f64 {
    let ctx = flotilla::tools::ToolContext {
        root: work.canonicalize().expect("work dir"),
        cancel: CancellationToken::new(),
        sandbox: Default::default(),
        agent: "bench".into(),
        visible: Vec::new(),
    };
    let mut samples = Vec::with_capacity(300);
    for i in 0..320 {
        let t = Instant::now();
        let out = flotilla::tools::Tool::ReadFile
            .run(json!({"path": "data.txt"}), &ctx)
            .await;
        if i >= 20 {
            samples.push(t.elapsed());
        }
        assert!(!out.is_error, "read_file failed: {}", out.content);
    }
    Summary::of(&samples).p50
}

/// The rows of a `wait_for_agents` over `n` agents, each checked idle after `steps`
/// model calls (the work was really done).
pub fn settled_rows(waited: &Value, n: usize, steps: u32) -> &[Value] {
    assert_eq!(
        waited["timed_out"], false,
        "agents did not settle: {waited}"
    );
    let rows = waited["agents"].as_array().expect("rows");
    assert_eq!(
        rows.len(),
        n,
        "wait_for_agents covered {} of {n} agents",
        rows.len()
    );
    let bad: Vec<_> = rows
        .iter()
        .filter(|r| r["status"] != "idle" || r["steps"] != u64::from(steps))
        .take(3)
        .collect();
    assert!(bad.is_empty(), "agents did not finish cleanly: {bad:?}");
    rows
}
