//! Scenario 8, cli: a Claude Code session as an agent beside a built-in agent.
//!
//! The same job for each — one agent, `commands` commands in a row (the first a tool
//! call and an answer, each later one an answer) against the bench's mock (streamed replies for
//! Claude Code, which always streams) — through the release server over stdio. For each
//! runtime: the latency from `create_agent` to its first model request (start), the
//! wall time of a command, the peak memory of flotilla plus its child processes while
//! commands run, and flotilla's own CPU per event it journaled. Needs the pinned CLIs
//! (`.ci/install-clis`, or `FLOTILLA_TEST_CLIS`); skipped without them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::mock::Mock;
use crate::server::Server;
use crate::stats::{Summary, round, table};

/// Where the pinned CLIs are.
fn clis() -> Option<PathBuf> {
    let dir = std::env::var_os("FLOTILLA_TEST_CLIS").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/clis/node_modules/.bin"),
        PathBuf::from,
    );
    dir.join("claude").exists().then_some(dir)
}

/// Resident memory of `pid` and every process under it, in bytes.
fn tree_rss(pid: u32) -> u64 {
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024;
    let children: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect();
    rss + children.into_iter().map(tree_rss).sum::<u64>()
}

/// One runtime's figures.
async fn measure(model: &str, commands: usize, bin: &Path, mock: &Mock) -> Value {
    let claude_home = tempfile::tempdir().expect("claude home");
    let config = format!(
        "[providers.claude-code]\ncommand = \"{}\"\nenv = {{ CLAUDE_CONFIG_DIR = \"{}\", CLAUDE_CODE_MAX_RETRIES = \"0\" }}\n",
        bin.join("claude").display(),
        claude_home.path().display()
    );
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let (program, extra) = crate::server::command();
    let server = Server::start_with(
        &program,
        &extra,
        &[("PATH", path.as_str())],
        &mock.url,
        |work| {
            std::fs::write(work.join("data.txt"), "ten short lines\n").expect("data");
            std::fs::write(work.parent().expect("root").join("config.toml"), &config)
                .expect("config");
        },
    )
    .await;
    let peak = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done, pid) = (peak.clone(), done.clone(), server.pid);
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(tree_rss(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let idle = tree_rss(server.pid);
    let cpu_before = server.cpu_s();
    let epoch = mock.epoch();
    let created_ns = epoch.elapsed().as_nanos() as u64;
    let requests_before = mock.stats().requests.load(Ordering::Relaxed);
    server
        .call_ok(
            "create_agent",
            json!({"name": "a", "model": model, "task": "[bench a=0] read data.txt and report"}),
        )
        .await;
    let mut walls = Vec::new();
    for n in 0..commands {
        let started = Instant::now();
        if n > 0 {
            server
                .call_ok(
                    "command_agent",
                    json!({"agent": "a", "task": format!("[bench a=0] again, round {n}")}),
                )
                .await;
        }
        let waited = server
            .call_ok(
                "wait_for_agents",
                json!({"agents": ["a"], "timeout_s": 120}),
            )
            .await;
        assert_eq!(waited["agents"][0]["status"], "idle", "{model}: {waited}");
        walls.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    done.store(true, Ordering::Relaxed);
    let _ = sampler.await;
    let first_ns = mock.stats().slots[0].first_ns.load(Ordering::Relaxed);
    let start_ms = first_ns.saturating_sub(created_ns) as f64 / 1e6;
    let cpu = server.cpu_s() - cpu_before;
    let events = server
        .call_ok("get_agent_events", json!({"agent": "a", "limit": 500}))
        .await["events"]
        .as_array()
        .map_or(0, Vec::len);
    let requests = mock.stats().requests.load(Ordering::Relaxed) - requests_before;
    server.stop().await;
    let wall = Summary::of_ms(&walls);
    json!({
        "model": model,
        "start_ms": round(start_ms, 1),
        "command_ms_p50": round(wall.p50, 1),
        "command_ms_max": round(wall.max, 1),
        "model_calls": requests,
        "idle_rss_mib": round(idle as f64 / 1048576.0, 1),
        "peak_rss_mib": round(peak.load(Ordering::Relaxed) as f64 / 1048576.0, 1),
        "events": events,
        "flotilla_cpu_ms": round(cpu * 1000.0, 1),
        "flotilla_cpu_us_per_event": round(cpu * 1e6 / events.max(1) as f64, 0),
    })
}

pub async fn run(commands: usize) -> Value {
    let Some(bin) = clis() else {
        println!(
            "\n## cli: skipped (no Claude Code: run .ci/install-clis or set FLOTILLA_TEST_CLIS)"
        );
        return json!({"skipped": "no Claude Code"});
    };
    let mut rows = Vec::new();
    for model in ["anthropic:claude-sonnet-4-5", "claude-code:sonnet"] {
        // A fresh mock per runtime: its per-agent clock starts clean.
        let mock = Mock::start(Duration::from_millis(50), 2, 1).await;
        rows.push(measure(model, commands, &bin, &mock).await);
    }
    let title = format!(
        "## cli: a Claude Code session beside a built-in agent ({commands} commands: a tool call and an answer, then an answer each; 50 ms model latency)"
    );
    let lines: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r["model"].as_str().unwrap_or_default().to_string(),
                r["start_ms"].to_string(),
                r["command_ms_p50"].to_string(),
                r["peak_rss_mib"].to_string(),
                r["events"].to_string(),
                r["flotilla_cpu_us_per_event"].to_string(),
            ]
        })
        .collect();
    table(
        &title,
        &[
            "runtime",
            "create → first model call (ms)",
            "command p50 (ms)",
            "peak RSS, flotilla + children (MiB)",
            "events",
            "flotilla CPU per event (µs)",
        ],
        &lines,
    );
    json!({"commands": commands, "rows": rows})
}
