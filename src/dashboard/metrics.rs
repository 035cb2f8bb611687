//! `GET /metrics`: the fleet in the Prometheus text format (version 0.0.4).
//!
//! Counters come from the observer (events on the bus since the process started);
//! gauges from the fleet's totals and run slots; the model-call latency histogram and
//! provider errors from each provider gate ([`crate::fleet::calls`]). Every series
//! is prefixed `flotilla_`.

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::Dashboard;
use crate::agent::state::AgentStatus;
use crate::fleet::calls::BUCKETS_S;

const STATUSES: [AgentStatus; 7] = [
    AgentStatus::Running,
    AgentStatus::Queued,
    AgentStatus::Waiting,
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

/// A label value, escaped as the format wants.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

pub fn render(d: &Dashboard) -> String {
    let fleet = d.registry.fleet();
    let totals = fleet.totals.snapshot();
    let c = &d.seen.counters;
    let get = |n| d.seen.get(n);
    let mut out = String::with_capacity(4096);

    family(&mut out, "agents", "gauge", "Agents by status.");
    for s in STATUSES {
        let n = totals.by_status.get(s.as_str()).copied().unwrap_or(0);
        line(&mut out, "agents", &format!("status=\"{}\"", s.as_str()), n);
    }
    family(
        &mut out,
        "commands_total",
        "counter",
        "Commands given to agents.",
    );
    line(&mut out, "commands_total", "", get(&c.commands));
    family(
        &mut out,
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
            &mut out,
            "commands_finished_total",
            &format!("status=\"{status}\""),
            get(n),
        );
    }
    family(
        &mut out,
        "model_calls_total",
        "counter",
        "Model calls answered.",
    );
    line(&mut out, "model_calls_total", "", get(&c.model_calls));
    family(
        &mut out,
        "model_retries_total",
        "counter",
        "Model calls retried after a retryable error.",
    );
    line(&mut out, "model_retries_total", "", get(&c.model_retries));
    family(
        &mut out,
        "tool_calls_total",
        "counter",
        "Tool calls started.",
    );
    line(&mut out, "tool_calls_total", "", get(&c.tool_calls));
    family(
        &mut out,
        "tool_errors_total",
        "counter",
        "Tool calls that returned an error.",
    );
    line(&mut out, "tool_errors_total", "", get(&c.tool_errors));
    family(
        &mut out,
        "tokens_total",
        "counter",
        "Tokens of answered model calls.",
    );
    line(
        &mut out,
        "tokens_total",
        "direction=\"input\"",
        get(&c.input_tokens),
    );
    line(
        &mut out,
        "tokens_total",
        "direction=\"output\"",
        get(&c.output_tokens),
    );
    family(
        &mut out,
        "cost_usd_total",
        "counter",
        "Known spend in USD, deleted agents included (unpriced models add nothing).",
    );
    line(
        &mut out,
        "cost_usd_total",
        "",
        fleet.budget.spent().cost_usd,
    );
    family(
        &mut out,
        "running_agents",
        "gauge",
        "Agents holding a run slot.",
    );
    line(&mut out, "running_agents", "", fleet.slots.running());
    family(&mut out, "max_running", "gauge", "Run slots (0: no limit).");
    line(&mut out, "max_running", "", fleet.slots.max());
    family(
        &mut out,
        "queued_agents",
        "gauge",
        "Agents waiting for a run slot.",
    );
    let queued = totals.by_status.get("queued").copied().unwrap_or(0);
    line(&mut out, "queued_agents", "", queued);
    let pending: u64 = d
        .registry
        .unsorted()
        .iter()
        .map(|h| h.peek(|s| u64::from(s.pending)))
        .sum();
    family(
        &mut out,
        "pending_commands",
        "gauge",
        "Commands given and not yet started.",
    );
    line(&mut out, "pending_commands", "", pending);

    let gates: Vec<_> = fleet
        .gates()
        .into_iter()
        .map(|g| (esc(g.name()), g.calls.snapshot()))
        .collect();
    family(
        &mut out,
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
                &mut out,
                "model_call_duration_seconds_bucket",
                &format!("provider=\"{name}\",le=\"{le}\""),
                n,
            );
        }
        let labels = format!("provider=\"{name}\"");
        line(
            &mut out,
            "model_call_duration_seconds_sum",
            &labels,
            snap.sum_s,
        );
        line(
            &mut out,
            "model_call_duration_seconds_count",
            &labels,
            snap.count,
        );
    }
    family(
        &mut out,
        "provider_errors_total",
        "counter",
        "Failed model call attempts by kind (rate_limited, overloaded, server_error, connection_or_timeout, auth, bad_request, …).",
    );
    for (name, snap) in &gates {
        for ((kind, retryable), n) in &snap.errors {
            line(
                &mut out,
                "provider_errors_total",
                &format!("provider=\"{name}\",kind=\"{kind}\",retryable=\"{retryable}\""),
                n,
            );
        }
    }
    family(
        &mut out,
        "observer_missed_events_total",
        "counter",
        "Bus events the metrics observer missed by falling behind.",
    );
    line(
        &mut out,
        "observer_missed_events_total",
        "",
        get(&c.missed_events),
    );
    out
}
