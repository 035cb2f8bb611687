//! Failover: two nodes a and b with `[cluster] lease_s` of each `--leases`; an agent on
//! b mid-command (the mock holds its final answer, see [`crate::mock::HOLD`]); SIGKILL
//! b; then how long until a took the agent over (the held request arrives again, from
//! a) and until its command is done on a (a `wait_for_agents` through a returns it
//! idle, on node a). flotilla's promise: the lease expires `lease_s` after b's last
//! renewal (which came 0 to `lease_s / 3` before the kill) and a claims it at its next
//! heartbeat (every `lease_s / 3`): ⅔ to 4⁄3 of `lease_s` after the kill, plus the
//! replay and the rest of the command. Run `i` of `n` kills b `(i + ½) / n` of a
//! heartbeat period after its model call began to be held, so the runs spread over
//! where in b's heartbeat cycle the kill falls (killed at once, it would always come
//! just after b's first renewal: the worst case).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::mock::Mock;
use crate::nodes::Nodes;
use crate::server::Server;
use crate::stats::{Summary, loadavg, table};

pub async fn run(leases: &[u64], runs: usize) -> Value {
    let mut rows = Vec::new();
    let mut out = Vec::new();
    for &lease in leases {
        let load_before = loadavg();
        let mut takeover = Vec::with_capacity(runs);
        let mut done = Vec::with_capacity(runs);
        let mut early = Vec::new();
        for i in 0..runs {
            let heartbeat = Duration::from_secs(lease) / 3;
            let kill = one(lease, heartbeat.mul_f64((i as f64 + 0.5) / runs as f64)).await;
            takeover.push(kill.takeover);
            done.push(kill.done);
            early.extend(kill.early);
        }
        let (t, d) = (Summary::of(&takeover), Summary::of(&done));
        let fastest = done.iter().min().copied().unwrap_or_default();
        rows.push(vec![
            format!("{lease} s"),
            runs.to_string(),
            format!("{:.2} s", t.p50 / 1e3),
            format!("{:.2} s", d.p50 / 1e3),
            format!("{:.2}–{:.2} s", fastest.as_secs_f64(), d.max / 1e3),
            format!(
                "{:.1}–{:.1} s",
                lease as f64 * 2.0 / 3.0,
                lease as f64 * 4.0 / 3.0
            ),
            early.len().to_string(),
            load_before.clone(),
        ]);
        out.push(json!({
            "lease_s": lease,
            "runs": runs,
            "takeover_ms": t.json(),
            "done_ms": d.json(),
            "early_waits": early.len(),
            "early_wait_rows": early,
            "load_before": load_before,
            "load_after": loadavg(),
        }));
    }
    table(
        "Failover: SIGKILL of node b mid-command (two nodes, one PostgreSQL) → the agent's command done on node a",
        &[
            "lease_s",
            "runs",
            "kill → a resumes p50",
            "kill → done on a p50",
            "done min–max",
            "takeover due",
            "waits back early",
            "load before",
        ],
        &rows,
    );
    Value::Array(out)
}

/// What one kill measured.
pub struct Kill {
    /// Kill → a's repeat of the held model request (a took the agent over and resumed).
    pub takeover: Duration,
    /// Kill → a `wait_for_agents` through a returned the agent idle on a.
    pub done: Duration,
    /// Rows of the waits that returned before that.
    pub early: Vec<Value>,
}

async fn one(lease: u64, after: Duration) -> Kill {
    let mock = Mock::start(Duration::from_millis(1), 2, 1).await;
    let config = format!("[cluster]\nlease_s = {lease}\n");
    let mut fleet = Nodes::start(&mock.url, &["a", "b"], &config, &[]).await;
    let b = fleet.take("b");
    let created = b
        .call_ok(
            "create_agent",
            json!({
                "name": "held",
                "task": "Benchmark task [bench k=hold a=0]: read data.txt, then report.",
            }),
        )
        .await;
    let kill = kill_b(
        fleet.node("a"),
        b,
        &mock,
        "held",
        &created,
        lease,
        after,
        || {},
    )
    .await;
    fleet.stop().await;
    kill
}

/// `agent` (`created` through b) runs on b: once its model call is held, wait `after`,
/// SIGKILL b (`gone` then takes away what goes with b), and measure until the agent's
/// command is done on `a`.
#[allow(clippy::too_many_arguments)]
pub async fn kill_b(
    a: &Server,
    b: Server,
    mock: &Mock,
    agent: &str,
    created: &Value,
    lease: u64,
    after: Duration,
    gone: impl FnOnce(),
) -> Kill {
    let status = a.call_ok("get_agent_status", json!({"agent": agent})).await;
    assert_eq!(
        status["node"], "b",
        "created through b, placed on {} ({created})",
        status["node"]
    );
    tokio::time::timeout(Duration::from_secs(60), mock.until_held(0))
        .await
        .expect("the agent on b never reached its held model call");

    tokio::time::sleep(after).await;
    let epoch = mock.epoch();
    let killed = epoch.elapsed();
    b.kill().await;
    gone();
    let (waited, early) = until_done_on_a(a, agent, lease, epoch, killed).await;
    let finished = epoch.elapsed();
    let repeated = mock.stats().slots[0]
        .repeated_ns
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(repeated > 0, "a never repeated the held request: {waited}");
    Kill {
        takeover: Duration::from_nanos(repeated).saturating_sub(killed),
        done: finished - killed,
        early,
    }
}

/// Wait through node `a` until `agent` is idle on a, `killed` (since `epoch`) being when
/// its node died; the rows of the waits that returned before that. A wait through a may
/// return early, when a replaces its mirror of the agent by the agent itself (the row
/// then says `deleted`, still running on b): it waits again.
async fn until_done_on_a(
    a: &Server,
    agent: &str,
    lease: u64,
    epoch: Instant,
    killed: Duration,
) -> (Value, Vec<Value>) {
    let mut early = Vec::new();
    loop {
        let waited = a
            .call_ok(
                "wait_for_agents",
                json!({"agents": [agent], "timeout_s": lease * 4 + 60}),
            )
            .await;
        assert_eq!(waited["timed_out"], false, "never done on a: {waited}");
        let row = &waited["agents"][0];
        if row["status"] == "idle" && row["node"] == "a" {
            return (waited, early);
        }
        assert!(
            early.len() < 50 && epoch.elapsed() - killed < Duration::from_secs(lease * 4 + 60),
            "not done on a: {waited}"
        );
        // Text, not numbers: `--compare` need not line these up.
        early.push(json!(format!(
            "{:.2} s after the kill: {row}",
            (epoch.elapsed() - killed).as_secs_f64()
        )));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
