//! Scenario 2, memory: the server's resident memory (VmRSS) at start, with idle agents
//! (created without a task), and while agents run (all at once: run slots off,
//! `--max-running 0`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};

use crate::mock::{Mock, write_project};
use crate::server::{Server, UNLIMITED, call, text_of};
use crate::stats::{kib, loadavg, round, table};

/// Create idle agents `idle-{from}` .. `idle-{to - 1}`: with `batch` 0 one
/// `create_agent` each, 16 calls in flight; else `create_agents` calls of `batch`
/// agents, one at a time (a plan's agents are created together).
pub async fn populate(server: &Server, from: usize, to: usize, batch: usize) {
    if batch > 0 {
        for start in (from..to).step_by(batch) {
            let agents: Vec<Value> = (start..(start + batch).min(to))
                .map(|i| json!({"name": format!("idle-{i:05}")}))
                .collect();
            let r = server
                .call("create_agents", json!({"agents": agents}))
                .await;
            assert_ne!(r.is_error, Some(true), "create_agents: {}", text_of(&r));
        }
        return;
    }
    futures::stream::iter(from..to)
        .map(|i| {
            let peer = server.peer();
            async move {
                let r = call(
                    &peer,
                    "create_agent",
                    json!({"name": format!("idle-{i:05}")}),
                )
                .await;
                assert_ne!(r.is_error, Some(true), "create_agent: {}", text_of(&r));
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
}

/// How [`populate`] creates, in words.
pub fn via(batch: usize) -> String {
    if batch == 0 {
        "create_agent, 16 calls in flight".into()
    } else {
        format!("create_agents of {batch}, one call at a time")
    }
}

/// Let the allocator and the runtime settle before reading RSS.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

/// Returns the report, plus the idle server (with the largest idle count) and its
/// mock, for the control-plane scenario to reuse.
pub async fn run(
    idle: &[usize],
    running: usize,
    latency: Duration,
    batch: usize,
) -> (Value, Server, Mock, usize) {
    let load_before = loadavg();
    let mock = Mock::start(latency, 5, running.max(1)).await;
    let server = Server::start(&mock.url, write_project).await;
    settle().await;
    let (rss0, _) = server.rss();
    let mut rows = vec![vec![
        "start (0 agents)".to_string(),
        kib(rss0 as f64),
        "".into(),
        "".into(),
        server.threads().to_string(),
    ]];
    let mut idle_json = Vec::new();
    let mut have = 0;
    let mut create_s = 0.0;
    let mut created = 0;
    for &n in idle {
        let t = std::time::Instant::now();
        populate(&server, have, n, batch).await;
        let took = t.elapsed().as_secs_f64();
        create_s += took;
        created += n.saturating_sub(have);
        have = n;
        settle().await;
        let (rss, _) = server.rss();
        let per = (rss as f64 - rss0 as f64) / n as f64;
        rows.push(vec![
            format!("{n} idle agents"),
            kib(rss as f64),
            kib(rss as f64 - rss0 as f64),
            format!("{:.1} KiB", per / 1024.0),
            server.threads().to_string(),
        ]);
        idle_json.push(
            json!({"agents": n, "rss_bytes": rss, "bytes_per_agent": round(per, 0),
            "create_s": round(took, 2), "rss_peak_bytes": server.rss().1}),
        );
    }

    // Running: a fresh server, `running` agents with a 5-step task, RSS sampled meanwhile.
    // No run slots, so that they really all run at once.
    let run_mock = Mock::start(latency, 5, running).await;
    let run_server = Server::start_env(&run_mock.url, write_project, UNLIMITED).await;
    settle().await;
    let (run_rss0, _) = run_server.rss();
    let peak = Arc::new(AtomicU64::new(run_rss0));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, stop, pid) = (peak.clone(), stop.clone(), run_server.pid);
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
                    let rss = s
                        .lines()
                        .find(|l| l.starts_with("VmRSS:"))
                        .and_then(|l| l.split_whitespace().nth(1))
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(0)
                        * 1024;
                    peak.fetch_max(rss, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let handles: Vec<_> = (0..running)
        .map(|i| {
            let peer = run_server.peer();
            tokio::spawn(async move {
                let r = call(
                    &peer,
                    "create_agent",
                    json!({"name": format!("r-{i:05}"), "task": format!("Benchmark task [bench k=scale a={i}]: read data.txt and say what it holds.")}),
                )
                .await;
                assert_ne!(r.is_error, Some(true), "create_agent: {}", text_of(&r));
            })
        })
        .collect();
    for h in handles {
        h.await.expect("create");
    }
    let names: Vec<String> = (0..running).map(|i| format!("r-{i:05}")).collect();
    let waited = run_server
        .call_ok(
            "wait_for_agents",
            json!({"agents": names, "timeout_s": 600}),
        )
        .await;
    assert_eq!(waited["timed_out"], false);
    stop.store(true, Ordering::Relaxed);
    sampler.await.expect("sampler");
    settle().await;
    let (after, hwm) = run_server.rss();
    let peak = peak.load(Ordering::Relaxed).max(hwm);
    let per_running = (peak as f64 - run_rss0 as f64) / running as f64;
    let per_done = (after as f64 - run_rss0 as f64) / running as f64;
    rows.push(vec![
        format!("{running} running (peak)"),
        kib(peak as f64),
        kib(peak as f64 - run_rss0 as f64),
        format!("{:.1} KiB", per_running / 1024.0),
        run_server.threads().to_string(),
    ]);
    rows.push(vec![
        format!("{running} after 5 steps (idle, 10-message conversations kept)"),
        kib(after as f64),
        kib(after as f64 - run_rss0 as f64),
        format!("{:.1} KiB", per_done / 1024.0),
        run_server.threads().to_string(),
    ]);
    run_server.stop().await;
    drop(run_mock);

    table(
        "Memory: server resident set (VmRSS); per agent = (RSS − RSS at start) / agents",
        &["state", "RSS", "Δ RSS", "per agent", "threads"],
        &rows,
    );
    let creates_per_s = created as f64 / create_s.max(1e-9);
    println!(
        "  idle agents were created at {creates_per_s:.0}/s ({}); the store holds {} for {have} idle agents",
        via(batch),
        kib(server.data_bytes() as f64)
    );
    let report = json!({
        "rss_start_bytes": rss0,
        "idle_creates_per_s": round(creates_per_s, 0),
        "idle_created_via": via(batch),
        "idle_store_bytes": server.data_bytes(),
        "idle": idle_json,
        "running": {
            "agents": running,
            "latency_ms": latency.as_millis() as u64,
            "rss_start_bytes": run_rss0,
            "rss_peak_bytes": peak,
            "bytes_per_agent_peak": round(per_running, 0),
            "rss_after_bytes": after,
            "bytes_per_agent_after": round(per_done, 0),
        },
        "load_before": load_before,
        "load_after": loadavg(),
    });
    (report, server, mock, have)
}
