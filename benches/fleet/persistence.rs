//! Scenario 5, persistence: what the durable store (SQLite event log, one writer
//! thread) costs.
//!
//! - Step cost: one agent, many model steps at 0 ms model latency, one at a time: the
//!   server's turnaround per step (reply → next request, tool included) with the store
//!   on disk, in memory (`--ephemeral`), and — with `--baseline PATH` — on another
//!   binary (e.g. a build from before the store). Extra time per step = the difference.
//! - Throughput: N agents × 5 steps at 0 ms latency, all running at once (no run slots):
//!   events the store took per second (events per agent counted with
//!   `get_agent_events`), the writer thread's CPU per event, and the bytes on disk per
//!   agent.
//!
//! Skipped (printing "not available yet") when the server has no `get_agent_events`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use crate::mock::{Mock, write_project};
use crate::server::{Server, UNLIMITED, call, command, text_of};
use crate::stats::{Summary, kib, loadavg, ms, round, table};

/// Model calls of the step-cost agent (the last is its final answer).
const STEP_COST_STEPS: u32 = 40;
/// Agents run one after another per step-cost measurement (the first is a warm-up).
const ROUNDS: usize = 4;
/// Interleaved repetitions of every variant.
const REPEATS: usize = 3;

pub async fn run(agents: usize, baseline: Option<PathBuf>) -> Value {
    let load_before = loadavg();
    let (program, extra) = command();
    {
        let mock = Mock::start(Duration::ZERO, 5, 1).await;
        let server = Server::start(&mock.url, write_project).await;
        let tools = server.tool_names().await;
        server.stop().await;
        if !tools.iter().any(|t| t == "get_agent_events") {
            println!("\nPersistence: not available yet (the server has no get_agent_events tool)");
            return json!({"available": false});
        }
    }

    // Step cost, one agent at a time.
    let mut variants: Vec<(String, PathBuf, Vec<String>)> = vec![
        ("store on disk".into(), program.clone(), extra.clone()),
        ("store in memory (--ephemeral)".into(), program.clone(), {
            let mut e = extra.clone();
            e.push("--ephemeral".into());
            e
        }),
    ];
    if let Some(b) = &baseline {
        variants.push((format!("baseline {}", b.display()), b.clone(), Vec::new()));
    }
    // Interleaved repetitions so that a noisy neighbour hurts every variant alike.
    let mut pooled: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    for _ in 0..REPEATS {
        for (i, (_, prog, args)) in variants.iter().enumerate() {
            pooled[i].extend(step_cost(prog, args).await);
        }
    }
    let mut step_rows = Vec::new();
    let mut step_json = Vec::new();
    let summaries: Vec<Summary> = pooled.iter().map(|p| Summary::of_ms(p)).collect();
    let disk_p50 = summaries[0].p50;
    for ((label, _, _), s) in variants.iter().zip(&summaries) {
        step_rows.push(vec![
            label.clone(),
            s.n.to_string(),
            ms(s.p50),
            ms(s.p90),
            ms(s.p99),
            if label == "store on disk" {
                "-".into()
            } else {
                ms(disk_p50 - s.p50)
            },
        ]);
        step_json.push(json!({"server": label, "turnaround": s.json()}));
    }
    table(
        &format!(
            "Persistence, step cost: one agent, {STEP_COST_STEPS} model calls at 0 ms latency; turnaround = model reply → next request (tool included)"
        ),
        &["server", "steps", "p50", "p90", "p99", "disk store adds"],
        &step_rows,
    );

    // Throughput: a fleet at 0 ms latency, every agent running at once.
    let mock = Mock::start(Duration::ZERO, 5, agents).await;
    let server = Server::start_env(&mock.url, write_project, UNLIMITED).await;
    let threads0 = server.cpu_by_thread();
    let cpu0 = server.cpu_s();
    let epoch = mock.epoch();
    let t0 = epoch.elapsed();
    let handles: Vec<_> = (0..agents)
        .map(|i| {
            let peer = server.peer();
            tokio::spawn(async move {
                let r = call(&peer, "create_agent", json!({"name": format!("p-{i:05}"), "task": format!("Benchmark task [bench k=scale a={i}]: read data.txt.")})).await;
                assert_ne!(r.is_error, Some(true), "create_agent: {}", text_of(&r));
            })
        })
        .collect();
    for h in handles {
        h.await.expect("create");
    }
    let names: Vec<String> = (0..agents).map(|i| format!("p-{i:05}")).collect();
    let waited = server
        .call_ok(
            "wait_for_agents",
            json!({"agents": names, "timeout_s": 600}),
        )
        .await;
    assert_eq!(waited["timed_out"], false);
    let wall = (epoch.elapsed() - t0).as_secs_f64();
    let cpu = server.cpu_s() - cpu0;
    let threads = server.cpu_by_thread();
    let store_cpu = threads.get("flotilla-store").copied().unwrap_or(0.0)
        - threads0.get("flotilla-store").copied().unwrap_or(0.0);
    let per_agent = count_events(&server, "p-00000").await;
    let events = per_agent * agents;
    let disk = server.data_bytes();
    server.call_ok("delete_all_agents", json!({})).await;
    server.stop().await;
    drop(mock);

    let events_per_s = events as f64 / wall;
    table(
        &format!("Persistence, throughput: {agents} agents × 5 model calls at 0 ms latency"),
        &[
            "wall",
            "events",
            "events/s",
            "store thread CPU",
            "per event",
            "server CPU",
            "on disk",
            "per agent",
        ],
        &[vec![
            format!("{wall:.2} s"),
            format!("{events} ({per_agent}/agent)"),
            format!("{events_per_s:.0}"),
            format!("{store_cpu:.2} s"),
            format!("{:.0} µs", store_cpu * 1e6 / events as f64),
            format!("{cpu:.2} s"),
            kib(disk as f64),
            kib(disk as f64 / agents as f64),
        ]],
    );
    json!({
        "available": true,
        "step_cost": step_json,
        "throughput": {
            "agents": agents,
            "wall_s": round(wall, 3),
            "events": events,
            "events_per_agent": per_agent,
            "events_per_s": round(events_per_s, 0),
            "store_thread_cpu_s": round(store_cpu, 3),
            "store_cpu_us_per_event": round(store_cpu * 1e6 / events as f64, 1),
            "server_cpu_s": round(cpu, 3),
            "disk_bytes": disk,
            "disk_bytes_per_agent": disk / agents as u64,
        },
        "load_before": load_before,
        "load_after": loadavg(),
    })
}

/// Agents doing `STEP_COST_STEPS` model calls at 0 ms latency, one after another:
/// per-step turnarounds in ms (the first agent is a warm-up).
async fn step_cost(program: &Path, args: &[String]) -> Vec<f64> {
    let mock = Mock::start(Duration::ZERO, STEP_COST_STEPS, 1).await;
    let server = Server::start_with(program, args, &[], &mock.url, write_project).await;
    let mut gaps = Vec::new();
    for round in 0..ROUNDS {
        let name = format!("step-{round}");
        server
            .call_ok(
                "create_agent",
                json!({"name": name, "task": "Benchmark task [bench k=scale a=0]: read data.txt."}),
            )
            .await;
        let w = server
            .call_ok(
                "wait_for_agents",
                json!({"agents": [name], "timeout_s": 600}),
            )
            .await;
        assert_eq!(w["agents"][0]["status"], "idle", "{w}");
        if round > 0 {
            gaps.extend(mock.stats().take_gaps_ms());
        }
        mock.stats().gaps_ns.lock().expect("gaps").clear();
        server.call_ok("delete_agent", json!({"agent": name})).await;
        mock.stats().slots[0]
            .last_reply_ns
            .store(0, std::sync::atomic::Ordering::Relaxed);
    }
    server.stop().await;
    gaps
}

/// How many events an agent's log holds (pages through get_agent_events).
async fn count_events(server: &Server, agent: &str) -> usize {
    let mut after = 0u64;
    let mut n = 0;
    loop {
        let page = server
            .call_ok(
                "get_agent_events",
                json!({"agent": agent, "after": after, "limit": 500}),
            )
            .await;
        n += page["events"].as_array().map_or(0, Vec::len);
        match page["next_after"].as_u64() {
            Some(next) if next > after => after = next,
            _ => return n,
        }
    }
}
