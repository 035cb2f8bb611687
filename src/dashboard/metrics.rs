//! `GET /metrics`: the fleet in the Prometheus text format (version 0.0.4).
//!
//! Counters come from the observer (events on the bus since the process started;
//! failed commands by [`crate::failure::FailureKind`]); gauges from the fleet's totals
//! and run slots; the model-call latency histogram and provider errors from each
//! provider gate ([`crate::fleet::calls`]); in a fleet of several nodes, each node's
//! health from its last heartbeat ([`crate::cluster::NodeRow`], label `node`). Every
//! series is prefixed `flotilla_`.

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::Dashboard;
use crate::agent::state::AgentStatus;
use crate::cluster::NodeRow;
use crate::fleet::calls::BUCKETS_S;

const STATUSES: [AgentStatus; 8] = [
    AgentStatus::Running,
    AgentStatus::Queued,
    AgentStatus::Waiting,
    AgentStatus::NeedsInput,
    AgentStatus::Paused,
    AgentStatus::Idle,
    AgentStatus::Failed,
    AgentStatus::Cancelled,
];

pub async fn metrics(State(d): State<Arc<Dashboard>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render(&d),
    )
}

/// `# HELP` and `# TYPE` lines of one metric family.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(
        out,
        "# HELP flotilla_{name} {help}\n# TYPE flotilla_{name} {kind}"
    );
}

fn line(out: &mut String, name: &str, labels: &str, value: impl std::fmt::Display) {
    if labels.is_empty() {
        let _ = writeln!(out, "flotilla_{name} {value}");
    } else {
        let _ = writeln!(out, "flotilla_{name}{{{labels}}} {value}");
    }
}

/// A family of one series without labels.
fn single(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    family(out, name, kind, help);
    line(out, name, "", value);
}

/// A label value, escaped as the format wants.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

pub fn render(d: &Dashboard) -> String {
    let mut out = String::with_capacity(4096);
    agents_and_commands(&mut out, d);
    calls_and_spend(&mut out, d);
    run_slots(&mut out, d);
    provider_gates(&mut out, d);
    if let Some(nodes) = d.nodes() {
        fleet_nodes(&mut out, &nodes);
    }
    single(
        &mut out,
        "observer_missed_events_total",
        "counter",
        "Bus events the metrics observer missed by falling behind.",
        d.seen.get(&d.seen.counters.missed_events),
    );
    out
}

/// Agents by status; commands given, ended by how, and failed by kind of failure.
fn agents_and_commands(out: &mut String, d: &Dashboard) {
    let totals = d.registry.fleet().totals.snapshot();
    let c = &d.seen.counters;
    let get = |n| d.seen.get(n);
    family(out, "agents", "gauge", "Agents by status.");
    for s in STATUSES {
        let n = totals.by_status.get(s.as_str()).copied().unwrap_or(0);
        line(out, "agents", &format!("status=\"{}\"", s.as_str()), n);
    }
    single(
        out,
        "commands_total",
        "counter",
        "Commands given to agents.",
        get(&c.commands),
    );
    family(
        out,
        "commands_finished_total",
        "counter",
        "Commands ended, by how.",
    );
    for (status, n) in [
        ("done", &c.commands_done),
        ("failed", &c.commands_failed),
        ("cancelled", &c.commands_cancelled),
    ] {
        line(
            out,
            "commands_finished_total",
            &format!("status=\"{status}\""),
            get(n),
        );
    }
    family(
        out,
        "command_failures_total",
        "counter",
        "Commands ended failed, by kind of failure (budget, stalled, max_steps, output_schema, model_call_failed, escalated, …).",
    );
    for (kind, n) in c.failures() {
        line(
            out,
            "command_failures_total",
            &format!("kind=\"{}\"", kind.as_str()),
            n,
        );
    }
}

/// Model calls, retries, tool calls and errors, tokens and known spend.
fn calls_and_spend(out: &mut String, d: &Dashboard) {
    let c = &d.seen.counters;
    let get = |n| d.seen.get(n);
    single(
        out,
        "model_calls_total",
        "counter",
        "Model calls answered.",
        get(&c.model_calls),
    );
    single(
        out,
        "model_retries_total",
        "counter",
        "Model calls retried after a retryable error.",
        get(&c.model_retries),
    );
    single(
        out,
        "tool_calls_total",
        "counter",
        "Tool calls started.",
        get(&c.tool_calls),
    );
    single(
        out,
        "tool_errors_total",
        "counter",
        "Tool calls that returned an error.",
        get(&c.tool_errors),
    );
    family(
        out,
        "tokens_total",
        "counter",
        "Tokens of answered model calls.",
    );
    line(
        out,
        "tokens_total",
        "direction=\"input\"",
        get(&c.input_tokens),
    );
    line(
        out,
        "tokens_total",
        "direction=\"output\"",
        get(&c.output_tokens),
    );
    single(
        out,
        "cost_usd_total",
        "counter",
        "Known spend in USD, deleted agents included (unpriced models add nothing).",
        d.registry.fleet().budget.spent().cost_usd,
    );
}

/// Run slots: agents holding one, the limit, agents in line, commands not started.
fn run_slots(out: &mut String, d: &Dashboard) {
    let fleet = d.registry.fleet();
    single(
        out,
        "running_agents",
        "gauge",
        "Agents holding a run slot.",
        fleet.slots.running(),
    );
    single(
        out,
        "max_running",
        "gauge",
        "Run slots (0: no limit).",
        fleet.slots.max(),
    );
    let queued = fleet
        .totals
        .snapshot()
        .by_status
        .get("queued")
        .copied()
        .unwrap_or(0);
    single(
        out,
        "queued_agents",
        "gauge",
        "Agents waiting for a run slot.",
        queued,
    );
    let pending: u64 = d
        .registry
        .unsorted()
        .iter()
        .map(|h| h.peek(|s| u64::from(s.pending)))
        .sum();
    single(
        out,
        "pending_commands",
        "gauge",
        "Commands given and not yet started.",
        pending,
    );
}

/// A node's value of one gauge (`None`: the node has no such series).
type NodeGauge = fn(&NodeRow) -> Option<f64>;

/// Each node of a fleet of several nodes, as its last heartbeat left it.
fn fleet_nodes(out: &mut String, nodes: &[NodeRow]) {
    let gauges: [(&str, &str, NodeGauge); 5] = [
        (
            "node_healthy",
            "1 while the node heartbeats within its lease, else 0.",
            |n| Some(if n.healthy { 1.0 } else { 0.0 }),
        ),
        ("node_agents", "Agents the node runs.", |n| {
            Some(f64::from(n.agents))
        }),
        (
            "node_running",
            "Agents running a command on the node.",
            |n| Some(f64::from(n.running)),
        ),
        (
            "node_free_slots",
            "Run slots free on the node (only nodes with a max_running).",
            |n| n.free_slots.map(f64::from),
        ),
        (
            "node_heartbeat_age_seconds",
            "Seconds since the node's last heartbeat, as last read.",
            |n| Some(n.heartbeat_age_s),
        ),
    ];
    for (name, help, value) in gauges {
        let samples: Vec<(String, f64)> = nodes
            .iter()
            .filter_map(|n| value(n).map(|v| (format!("node=\"{}\"", esc(&n.node)), v)))
            .collect();
        if samples.is_empty() {
            continue;
        }
        family(out, name, "gauge", help);
        for (labels, v) in samples {
            line(out, name, &labels, v);
        }
    }
}

/// Per provider gate: the model-call latency histogram and failed attempts by kind.
fn provider_gates(out: &mut String, d: &Dashboard) {
    let gates: Vec<_> = d
        .registry
        .fleet()
        .gates()
        .into_iter()
        .map(|g| (esc(g.name()), g.calls.snapshot()))
        .collect();
    family(
        out,
        "model_call_duration_seconds",
        "histogram",
        "Duration of each model call attempt (answered or failed), by provider gate.",
    );
    for (name, snap) in &gates {
        for (i, n) in snap.cumulative.iter().enumerate() {
            let le = BUCKETS_S
                .get(i)
                .map_or("+Inf".to_string(), |b| b.to_string());
            line(
                out,
                "model_call_duration_seconds_bucket",
                &format!("provider=\"{name}\",le=\"{le}\""),
                n,
            );
        }
        let labels = format!("provider=\"{name}\"");
        line(out, "model_call_duration_seconds_sum", &labels, snap.sum_s);
        line(
            out,
            "model_call_duration_seconds_count",
            &labels,
            snap.count,
        );
    }
    family(
        out,
        "provider_errors_total",
        "counter",
        "Failed model call attempts by kind (rate_limited, overloaded, server_error, connection_or_timeout, auth, bad_request, …).",
    );
    for (name, snap) in &gates {
        for ((kind, retryable), n) in &snap.errors {
            line(
                out,
                "provider_errors_total",
                &format!("provider=\"{name}\",kind=\"{kind}\",retryable=\"{retryable}\""),
                n,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, healthy: bool, free_slots: Option<u32>) -> NodeRow {
        NodeRow {
            node: name.into(),
            healthy,
            heartbeat_age_s: 1.5,
            agents: 3,
            running: 2,
            free_slots,
            url: None,
            roots: Vec::new(),
        }
    }

    #[test]
    fn each_node_is_a_series_and_free_slots_only_where_capped() {
        let mut out = String::new();
        fleet_nodes(
            &mut out,
            &[node("a", true, Some(2)), node("b\"x", false, None)],
        );
        for expected in [
            "# TYPE flotilla_node_healthy gauge",
            "flotilla_node_healthy{node=\"a\"} 1",
            "flotilla_node_healthy{node=\"b\\\"x\"} 0",
            "flotilla_node_agents{node=\"a\"} 3",
            "flotilla_node_running{node=\"b\\\"x\"} 2",
            "flotilla_node_free_slots{node=\"a\"} 2",
            "flotilla_node_heartbeat_age_seconds{node=\"a\"} 1.5",
        ] {
            assert!(out.lines().any(|l| l == expected), "{expected}\n{out}");
        }
        assert!(!out.contains("flotilla_node_free_slots{node=\"b"), "{out}");
        let mut uncapped = String::new();
        fleet_nodes(&mut uncapped, &[node("b", true, None)]);
        assert!(!uncapped.contains("free_slots"), "{uncapped}");
    }
}
