//! Agents per node: `--node-agents` agents with tasks, created one call after another
//! through node a of a three-node fleet (one PostgreSQL, default `[cluster]` settings,
//! 16 run slots per node); how many each node got (a new agent goes to the node with
//! the most free run slots), the create latency, and the wall time until all are
//! done — beside the same creates on a one-node fleet on PostgreSQL.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::mock::Mock;
use crate::nodes::Nodes;
use crate::scale::settled_rows;
use crate::server::text_of;
use crate::stats::{Summary, loadavg, ms, round, table};

pub async fn run(n: usize, latency: Duration, steps: u32) -> Value {
    let mut rows = Vec::new();
    let mut out = Vec::new();
    for names in [&["a"][..], &["a", "b", "c"][..]] {
        let r = one(names, n, latency, steps).await;
        let per_node: Vec<String> = r["per_node"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(node, count)| format!("{node} {count}"))
            .collect();
        rows.push(vec![
            names.len().to_string(),
            n.to_string(),
            per_node.join(", "),
            ms(r["create_ms"]["p50_ms"].as_f64().unwrap_or(0.0)),
            ms(r["create_ms"]["p99_ms"].as_f64().unwrap_or(0.0)),
            format!("{:.2} s", r["wall_s"].as_f64().unwrap_or(0.0)),
            r["load_before"].as_str().unwrap_or("").to_string(),
        ]);
        out.push(r);
    }
    table(
        &format!(
            "Agents per node: {n} agents × {steps} model calls ({} ms each), created one call at a time through node a (16 run slots per node, one PostgreSQL)",
            latency.as_millis()
        ),
        &[
            "nodes",
            "agents",
            "placed",
            "create p50",
            "create p99",
            "wall (first create → all done)",
            "load before",
        ],
        &rows,
    );
    Value::Array(out)
}

fn task(i: usize) -> Value {
    json!({
        "name": format!("p-{i:05}"),
        "task": format!("Benchmark task [bench k=scale a={i}]: read data.txt and say what it holds."),
    })
}

async fn one(names: &[&str], n: usize, latency: Duration, steps: u32) -> Value {
    let load_before = loadavg();
    let mock = Mock::start(latency, steps, n).await;
    let fleet = Nodes::start(&mock.url, names, "", &[]).await;
    let a = fleet.node("a");
    let started = Instant::now();
    let mut created = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        let r = a.call("create_agent", task(i)).await;
        created.push(t.elapsed());
        assert_ne!(r.is_error, Some(true), "create_agent: {}", text_of(&r));
    }
    let agents: Vec<String> = (0..n).map(|i| format!("p-{i:05}")).collect();
    let waited = a
        .call_ok(
            "wait_for_agents",
            json!({"agents": agents, "timeout_s": 600}),
        )
        .await;
    let wall = started.elapsed();
    let rows = settled_rows(&waited, n, steps);
    let mut per_node = BTreeMap::new();
    for r in rows {
        *per_node
            .entry(r["node"].as_str().unwrap_or("?").to_string())
            .or_insert(0usize) += 1;
    }
    let create = Summary::of(&created);
    fleet.stop().await;
    json!({
        "nodes": names.len(),
        "agents": n,
        "steps": steps,
        "latency_ms": latency.as_millis() as u64,
        "per_node": per_node,
        "create_ms": create.json(),
        "wall_s": round(wall.as_secs_f64(), 3),
        "load_before": load_before,
        "load_after": loadavg(),
    })
}
