//! Scenario 3, control plane: round-trip latency over stdio of the fleet tools, one
//! call at a time, with a large fleet registered. `ping` (no tool, no registry) is the
//! floor set by the transport and the two rmcp stacks. Then `ping` and
//! `get_agent_status` again over Streamable HTTP (`--listen`), on a fleet as large.
//!
//! Each store of `--stores` runs the same calls (SQLite with `--control-agents`,
//! PostgreSQL with `--pg-control-agents`), printed side by side.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::memory::populate;
use crate::mock::{Mock, write_project};
use crate::server::{Server, text_of};
use crate::stats::{Rng, Summary, kib, loadavg, ms, round, table};
use crate::store::Store;

struct Measured {
    what: String,
    fleet: usize,
    summary: Summary,
    /// Bytes of the result's text content (last sample).
    bytes: usize,
    /// Server CPU per call (µs).
    cpu_us: f64,
}

async fn measure<F, Fut>(
    server: &Server,
    what: &str,
    fleet: usize,
    samples: usize,
    mut f: F,
) -> Measured
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = usize>,
{
    // Warm up (page in code paths, fill caches).
    for i in 0..samples.min(20) {
        f(usize::MAX - i).await;
    }
    let cpu0 = server.cpu_s();
    let mut times = Vec::with_capacity(samples);
    let mut bytes = 0;
    for i in 0..samples {
        let t = Instant::now();
        bytes = f(i).await;
        times.push(t.elapsed());
    }
    let cpu = server.cpu_s() - cpu0;
    Measured {
        what: what.to_string(),
        fleet,
        summary: Summary::of(&times),
        bytes,
        cpu_us: cpu * 1e6 / samples as f64,
    }
}

/// The control plane on each store in `stores`: SQLite with a fleet of `agents` (reusing
/// the memory scenario's server when given), PostgreSQL with `pg_agents`.
pub async fn run(
    samples: usize,
    agents: usize,
    pg_agents: usize,
    mut reuse: Option<(Server, Mock, usize)>,
    batch: usize,
    stores: &[Store],
) -> Value {
    let mut out = serde_json::Map::new();
    let mut runs = Vec::new();
    for &store in stores {
        let load_before = loadavg();
        let (results, list_wire) = match store {
            Store::Sqlite => on(store, samples, agents, reuse.take(), batch).await,
            Store::Postgres => on(store, samples, pg_agents, None, batch).await,
        };
        print(store, &results, list_wire);
        let report = json!({
            "calls": results.iter().map(|m| json!({
                "call": m.what,
                "fleet": m.fleet,
                "latency": m.summary.json(),
                "server_cpu_us_per_call": round(m.cpu_us, 1),
                "result_text_bytes": m.bytes,
            })).collect::<Vec<_>>(),
            "list_agents_wire_bytes": list_wire,
            "load_before": load_before,
            "load_after": loadavg(),
        });
        // SQLite's figures stay where earlier `--json` baselines have them.
        match (store, report) {
            (Store::Sqlite, Value::Object(m)) => out.extend(m),
            (_, report) => {
                out.insert("postgres".into(), report);
            }
        }
        runs.push((store, results));
    }
    if let Some(reused) = reuse {
        reused.0.stop().await;
    }
    if let [(a, first), (b, second)] = runs.as_slice() {
        side_by_side(*a, first, *b, second);
    }
    Value::Object(out)
}

/// Every call of the scenario on one store: its measurements and the wire bytes of a
/// 100-row `list_agents` page.
async fn on(
    store: Store,
    samples: usize,
    agents: usize,
    reuse: Option<(Server, Mock, usize)>,
    batch: usize,
) -> (Vec<Measured>, u64) {
    let mut results = Vec::new();

    // A one-agent fleet: the baseline.
    {
        let mock = Mock::start(Duration::from_millis(1), 5, 1).await;
        let server = Server::start_on(store, &mock.url, write_project, &[]).await;
        server
            .call_ok("create_agent", json!({"name": "idle-00000"}))
            .await;
        let n = samples.min(1000);
        results.push(
            measure(&server, "ping (transport floor)", 1, n, |_| async {
                server.ping().await;
                0
            })
            .await,
        );
        results.push(
            measure(&server, "get_agent_status", 1, n, |_| async {
                let r = server
                    .call("get_agent_status", json!({"agent": "idle-00000"}))
                    .await;
                text_of(&r).len()
            })
            .await,
        );
        server.stop().await;
    }

    // The big fleet.
    let (server, _mock, have) = match reuse {
        Some((s, m, have)) => (s, m, have),
        None => {
            let mock = Mock::start(Duration::from_millis(1), 5, 1).await;
            let server = Server::start_on(store, &mock.url, write_project, &[]).await;
            (server, mock, 0)
        }
    };
    if have < agents {
        populate(&server, have, agents, batch).await;
    }
    let fleet = agents.max(have);
    let list_wire = std::cell::Cell::new(0u64);
    results.push(
        measure(
            &server,
            "ping (transport floor)",
            fleet,
            samples,
            |_| async {
                server.ping().await;
                0
            },
        )
        .await,
    );
    let mut rng = Rng::new(0x5eed);
    let names: Vec<String> = (0..samples)
        .map(|_| format!("idle-{:05}", rng.below(fleet)))
        .collect();
    results.push(
        measure(&server, "get_agent_status", fleet, samples, |i| {
            let name = names.get(i).cloned().unwrap_or_else(|| "idle-00000".into());
            let server = &server;
            async move {
                let r = server
                    .call("get_agent_status", json!({"agent": name}))
                    .await;
                assert_ne!(r.is_error, Some(true), "{}", text_of(&r));
                text_of(&r).len()
            }
        })
        .await,
    );
    results.push(
        measure(
            &server,
            "list_agents {status: running} (0 rows)",
            fleet,
            (samples / 10).max(20),
            |_| async {
                let r = server
                    .call("list_agents", json!({"status": "running"}))
                    .await;
                text_of(&r).len()
            },
        )
        .await,
    );
    results.push(
        measure(
            &server,
            "list_agents (first page: 100 rows)",
            fleet,
            (samples / 100).max(10),
            |_| async {
                let w0 = server.wire_bytes.load(std::sync::atomic::Ordering::Relaxed);
                let r = server.call("list_agents", json!({})).await;
                let w1 = server.wire_bytes.load(std::sync::atomic::Ordering::Relaxed);
                list_wire.set(w1 - w0);
                text_of(&r).len()
            },
        )
        .await,
    );
    results.push(
        measure(&server, "create_agent (no task)", fleet, samples, |i| {
            let server = &server;
            async move {
                let name = if i >= samples {
                    format!("warm-{}", usize::MAX - i)
                } else {
                    format!("ctl-{i:05}")
                };
                let r = server.call("create_agent", json!({"name": name})).await;
                assert_ne!(r.is_error, Some(true), "{}", text_of(&r));
                text_of(&r).len()
            }
        })
        .await,
    );
    results.push(
        measure(
            &server,
            "create_agents (1,000 agents, no task)",
            fleet,
            5,
            |i| {
                let server = &server;
                async move {
                    let agents: Vec<Value> = (0..1000)
                        .map(|j| json!({"name": format!("plan-{i}-{j:04}")}))
                        .collect();
                    let r = server
                        .call("create_agents", json!({"agents": agents}))
                        .await;
                    assert_ne!(r.is_error, Some(true), "{}", text_of(&r));
                    text_of(&r).len()
                }
            },
        )
        .await,
    );
    let list_wire = list_wire.get();
    server.stop().await;

    // The same fleet size over Streamable HTTP: one client, one session, a
    // kept-alive connection (the transport a shared service adds).
    {
        let mock = Mock::start(Duration::from_millis(1), 5, 1).await;
        let server = Server::start_http_on(store, &mock.url, write_project).await;
        populate(&server, 0, fleet, batch).await;
        results.push(
            measure(&server, "ping over HTTP", fleet, samples, |_| async {
                server.ping().await;
                0
            })
            .await,
        );
        results.push(
            measure(&server, "get_agent_status over HTTP", fleet, samples, |i| {
                let name = names.get(i).cloned().unwrap_or_else(|| "idle-00000".into());
                let server = &server;
                async move {
                    let r = server
                        .call("get_agent_status", json!({"agent": name}))
                        .await;
                    assert_ne!(r.is_error, Some(true), "{}", text_of(&r));
                    text_of(&r).len()
                }
            })
            .await,
        );
        server.stop().await;
    }

    (results, list_wire)
}

fn print(store: Store, results: &[Measured], list_wire: u64) {
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|m| {
            vec![
                m.what.clone(),
                m.fleet.to_string(),
                m.summary.n.to_string(),
                ms(m.summary.p50),
                ms(m.summary.p99),
                ms(m.summary.max),
                format!("{:.0} µs", m.cpu_us),
                if m.bytes > 0 {
                    kib(m.bytes as f64)
                } else {
                    "-".into()
                },
            ]
        })
        .collect();
    table(
        &format!(
            "Control plane, {}: sequential round trips over stdio, then Streamable HTTP (client → server → client)",
            store.label()
        ),
        &[
            "call",
            "fleet",
            "samples",
            "p50",
            "p99",
            "max",
            "server CPU/call",
            "result text",
        ],
        &rows,
    );
    println!(
        "  list_agents, a 100-row page: {} of text, {} on the wire (text + structuredContent + JSON-RPC)",
        kib(results
            .iter()
            .find(|m| m.what.starts_with("list_agents (first"))
            .map_or(0, |m| m.bytes) as f64),
        kib(list_wire as f64)
    );
}

/// The same calls on two stores, row by row.
fn side_by_side(a: Store, first: &[Measured], b: Store, second: &[Measured]) {
    let rows: Vec<Vec<String>> = first
        .iter()
        .zip(second)
        .map(|(x, y)| {
            vec![
                x.what.clone(),
                format!("{} / {}", x.fleet, y.fleet),
                ms(x.summary.p50),
                ms(y.summary.p50),
                ms(x.summary.p99),
                ms(y.summary.p99),
                format!("{:.0} / {:.0} µs", x.cpu_us, y.cpu_us),
            ]
        })
        .collect();
    let (a, b) = (a.label(), b.label());
    table(
        &format!("Control plane, {a} beside {b} (one node)"),
        &[
            "call",
            "fleet",
            &format!("{a} p50"),
            &format!("{b} p50"),
            &format!("{a} p99"),
            &format!("{b} p99"),
            "server CPU/call",
        ],
        &rows,
    );
}
