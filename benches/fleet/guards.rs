//! Scenario 6, guards: what the guard rails (budgets, run slots, provider gates) cost.
//!
//! - In process, with the library's own types: the work a worker does for each model
//!   call — the agent's and the fleet's budget checks before it (`exhausted`,
//!   `Budget::check`), the charge and 80 % test after it (`Budget::charge`, `crossing`),
//!   the provider gate on a closed circuit (`Gate::pass` + `Pass::finish`), with and
//!   without a `max_concurrent_requests` cap — and per command a run slot
//!   (`RunSlots::ticket` + `try_acquire` + drop), with and without `--max-running`.
//!   CPU time per operation, on one thread and with 16 tasks on the multi-thread runtime
//!   sharing one budget, gate and slots (contention). Best of three runs.
//! - End to end: the scale setup (N agents × `steps` model calls, created at once, one
//!   `wait_for_agents`) with `--max-running 0` and with `--max-running 16`. Unlimited,
//!   the ideal is one agent's (steps × latency + tool time); with 16 slots the agents go
//!   in ⌈N / 16⌉ waves, so the ideal is that many agents' ideals. Wall ÷ ideal is the
//!   overhead, as in `scale`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flotilla::fleet::budget::{self, Budget, Caps, Owner, Spend};
use flotilla::fleet::circuit::{CircuitPolicy, Gate, Outcome};
use flotilla::fleet::slots::RunSlots;
use serde_json::{Value, json};

use crate::scale;
use crate::stats::{loadavg, round, table};

/// Operations per measurement (split over the tasks when contended).
const OPS: usize = 1_000_000;
/// Tasks in the contended measurement.
const TASKS: usize = 16;
/// Limits in the measurements: `max_concurrent_requests` and `--max-running`.
const LIMIT: usize = 16;
/// Runs of every measurement; the best counts (a shared machine only adds time).
const RUNS: usize = 3;

/// What one loop iteration does.
#[derive(Debug, Clone, Copy)]
enum Op {
    /// Budget checks before a model call, charge and 80 % test after it.
    Budget,
    /// The provider gate on a closed circuit, no in-flight cap.
    Gate,
    /// The provider gate with `max_concurrent_requests`.
    GateCapped,
    /// A run slot with `--max-running 16` (per command).
    Slot,
    /// A run slot with `--max-running 0` (per command).
    SlotUnlimited,
    /// Everything per model call: budget, gate (no cap), and every `steps`-th call a
    /// slot with `--max-running 16` (a command of `steps` model calls).
    Call,
    /// The same with `max_concurrent_requests`.
    CallCapped,
}

/// One fleet's guards, shared by every task of a measurement.
struct Guards {
    budget: Budget,
    caps: Caps,
    gate: Arc<Gate>,
    gate_capped: Arc<Gate>,
    slots: Arc<RunSlots>,
    unlimited: Arc<RunSlots>,
}

impl Guards {
    fn new() -> Self {
        // Caps set (and never reached), so every comparison and the 80 % test run.
        let caps = Caps {
            max_cost_usd: Some(1e12),
            max_tokens: Some(u64::MAX / 2),
        };
        Self {
            budget: Budget::new(caps, Spend::default()),
            caps,
            gate: Arc::new(Gate::new("anthropic", None, CircuitPolicy::default())),
            gate_capped: Arc::new(Gate::new(
                "anthropic",
                Some(LIMIT),
                CircuitPolicy::default(),
            )),
            slots: Arc::new(RunSlots::new(LIMIT)),
            unlimited: Arc::new(RunSlots::new(0)),
        }
    }

    /// A model call's budget work, as `step.rs` does it (`spent`: the agent's own).
    fn budget(&self, spent: &mut Spend) {
        black_box(budget::exhausted(
            Owner::Agent("bench-agent"),
            &self.caps,
            *spent,
        ));
        black_box(self.budget.check().is_ok());
        let before = *spent;
        spent.cost_usd += 0.0003;
        spent.tokens += 1200;
        self.budget.charge(Some(0.0003), 1200);
        black_box(budget::crossing(
            Owner::Agent("bench-agent"),
            &self.caps,
            before,
            *spent,
        ));
    }

    fn slot(slots: &Arc<RunSlots>) {
        black_box(slots.ticket());
        let slot = slots.try_acquire();
        assert!(slot.is_some(), "a free run slot");
        drop(black_box(slot));
    }

    async fn run(&self, op: Op, n: usize, steps: usize) {
        let mut spent = Spend::default();
        match op {
            Op::Budget => {
                for _ in 0..n {
                    self.budget(&mut spent);
                }
            }
            Op::Gate | Op::GateCapped => {
                let gate = if matches!(op, Op::Gate) {
                    &self.gate
                } else {
                    &self.gate_capped
                };
                for _ in 0..n {
                    gate.pass(|_| {}).await.finish(Outcome::Answered);
                }
            }
            Op::Slot => {
                for _ in 0..n {
                    Self::slot(&self.slots);
                }
            }
            Op::SlotUnlimited => {
                for _ in 0..n {
                    Self::slot(&self.unlimited);
                }
            }
            Op::Call | Op::CallCapped => {
                let gate = if matches!(op, Op::Call) {
                    &self.gate
                } else {
                    &self.gate_capped
                };
                let mut slot = None;
                for i in 0..n {
                    if i % steps == 0 {
                        drop(slot.take());
                        black_box(self.slots.ticket());
                        slot = self.slots.try_acquire();
                        assert!(slot.is_some(), "a free run slot");
                    }
                    self.budget(&mut spent);
                    let pass = gate.pass(|_| {}).await;
                    pass.finish(Outcome::Answered);
                }
            }
        }
    }
}

/// CPU time of the calling thread, ns (`/proc/thread-self/schedstat`).
fn thread_cpu_ns() -> u64 {
    schedstat("/proc/thread-self/schedstat")
}

/// CPU time of every thread of this process, ns.
fn process_cpu_ns() -> u64 {
    std::fs::read_dir("/proc/self/task")
        .map(|dir| {
            dir.flatten()
                .map(|t| schedstat(&t.path().join("schedstat").to_string_lossy()))
                .sum()
        })
        .unwrap_or(0)
}

fn schedstat(path: &str) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// ns of CPU per op on one thread (its own current-thread runtime), best of [`RUNS`].
async fn single(op: Op, steps: usize) -> f64 {
    tokio::task::spawn_blocking(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        (0..RUNS)
            .map(|_| {
                let guards = Guards::new();
                let cpu0 = thread_cpu_ns();
                rt.block_on(guards.run(op, OPS, steps));
                (thread_cpu_ns() - cpu0) as f64 / OPS as f64
            })
            .fold(f64::INFINITY, f64::min)
    })
    .await
    .expect("single-thread measurement")
}

/// ns of CPU (all threads) per op with [`TASKS`] tasks on this multi-thread runtime,
/// best of [`RUNS`]; and the cores that run used on average (CPU time ÷ wall time).
async fn contended(op: Op, steps: usize) -> (f64, f64) {
    let mut best = (f64::INFINITY, 0.0);
    for _ in 0..RUNS {
        let guards = Arc::new(Guards::new());
        let cpu0 = process_cpu_ns();
        let t0 = Instant::now();
        let tasks: Vec<_> = (0..TASKS)
            .map(|_| {
                let guards = guards.clone();
                tokio::spawn(async move { guards.run(op, OPS / TASKS, steps).await })
            })
            .collect();
        for t in tasks {
            t.await.expect("contended task");
        }
        let cpu = (process_cpu_ns() - cpu0) as f64;
        let ns = cpu / (OPS / TASKS * TASKS) as f64;
        if ns < best.0 {
            best = (ns, cpu / t0.elapsed().as_nanos() as f64);
        }
    }
    best
}

pub async fn run(agents: usize, latency: Duration, steps: u32, runs: usize) -> Value {
    let load_before = loadavg();
    let per_command = steps as usize;
    let workers = tokio::runtime::Handle::current().metrics().num_workers();
    let started = Instant::now();
    let ops: [(Op, &str, &str, f64); 7] = [
        (
            Op::Budget,
            "budget: agent + fleet check, charge, 80 % test",
            "model call",
            1.0,
        ),
        (
            Op::Gate,
            "gate, closed circuit, no request cap",
            "model call",
            1.0,
        ),
        (
            Op::GateCapped,
            "gate, closed circuit, max_concurrent_requests 16",
            "model call",
            1.0,
        ),
        (
            Op::Slot,
            "run slot, --max-running 16: ticket, take, free",
            "command",
            1.0 / f64::from(steps),
        ),
        (
            Op::SlotUnlimited,
            "run slot, --max-running 0",
            "command",
            1.0 / f64::from(steps),
        ),
        (
            Op::Call,
            "all guards (defaults: slots 16, no request cap)",
            "model call",
            1.0,
        ),
        (
            Op::CallCapped,
            "all guards, max_concurrent_requests 16",
            "model call",
            1.0,
        ),
    ];
    let mut rows = Vec::new();
    let mut micro = Vec::new();
    let mut per_call = (0.0, 0.0, 0.0, 0.0);
    let mut cores = Vec::new();
    for (op, what, per, share) in ops {
        let one = single(op, per_command).await;
        let (many, used) = contended(op, per_command).await;
        cores.push(used);
        rows.push(vec![
            what.to_string(),
            per.to_string(),
            format!("{one:.0} ns"),
            format!("{many:.0} ns"),
            format!("{:.0} / {:.0} ns", one * share, many * share),
            format!("{used:.2}"),
        ]);
        match op {
            Op::Call => (per_call.0, per_call.1) = (one / 1e3, many / 1e3),
            Op::CallCapped => (per_call.2, per_call.3) = (one / 1e3, many / 1e3),
            _ => {}
        }
        micro.push(json!({
            "op": format!("{op:?}"),
            "what": what,
            "per": per,
            "ns_1_thread": round(one, 1),
            "ns_contended": round(many, 1),
            "ns_per_model_call_1_thread": round(one * share, 1),
            "ns_per_model_call_contended": round(many * share, 1),
            "contended_cores_used": round(used, 2),
        }));
    }
    table(
        &format!(
            "Guards, in process: CPU per operation, best of {RUNS} × {OPS} ops; contended = {TASKS} tasks on {workers} runtime workers sharing one budget, gate and slots (cores used: their CPU ÷ wall time); a command = {steps} model calls"
        ),
        &[
            "what",
            "per",
            "1 thread",
            &format!("{TASKS} tasks"),
            &format!("per model call (1 / {TASKS})"),
            "cores used",
        ],
        &rows,
    );
    println!(
        "  guard rails per model call: {:.2} µs on one thread, {:.2} µs contended ({:.2} / {:.2} µs with max_concurrent_requests); measured in {:.1} s",
        per_call.0,
        per_call.1,
        per_call.2,
        per_call.3,
        started.elapsed().as_secs_f64()
    );

    // End to end, the two settings interleaved so a noisy neighbour hurts both alike.
    let limits = [0, LIMIT];
    let mut results: Vec<Vec<Value>> = vec![Vec::new(); limits.len()];
    for _ in 0..runs {
        for (i, &limit) in limits.iter().enumerate() {
            results[i].push(
                scale::one(
                    crate::store::Store::Sqlite,
                    agents,
                    latency,
                    steps,
                    limit,
                    scale::Via::Single,
                )
                .await,
            );
        }
    }
    let mut rows = Vec::new();
    let mut e2e = Vec::new();
    for (i, &limit) in limits.iter().enumerate() {
        let ratios: Vec<f64> = results[i]
            .iter()
            .map(|r| r["overhead_ratio"].as_f64().unwrap_or(0.0))
            .collect();
        let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = ratios.iter().copied().fold(0.0, f64::max);
        for (run, r) in results[i].iter().enumerate() {
            rows.push(vec![
                format!("--max-running {limit}"),
                (run + 1).to_string(),
                format!("{:.3} s", r["wall_s"].as_f64().unwrap_or(0.0)),
                format!("{:.3} s", r["ideal_s"].as_f64().unwrap_or(0.0)),
                format!("{:.3}", r["overhead_ratio"].as_f64().unwrap_or(0.0)),
                r["max_inflight"].to_string(),
                format!(
                    "{:.0} µs",
                    r["server_cpu_us_per_step"].as_f64().unwrap_or(0.0)
                ),
                r["load_before"].as_str().unwrap_or("").to_string(),
            ]);
        }
        e2e.push(json!({
            "max_running": limit,
            "overhead_min": round(lo, 4),
            "overhead_max": round(hi, 4),
            "runs": results[i],
        }));
    }
    table(
        &format!(
            "Guards, end to end: {agents} agents × {steps} model calls ({} ms each) with a read_file between; ideal with 16 slots = ⌈{agents} / 16⌉ = {} waves × one agent's ideal",
            latency.as_millis(),
            agents.div_ceil(LIMIT)
        ),
        &[
            "server",
            "run",
            "wall",
            "ideal",
            "overhead",
            "max in flight",
            "server CPU/step",
            "load before",
        ],
        &rows,
    );
    for e in &e2e {
        println!(
            "  --max-running {}: overhead {:.3}–{:.3} over {runs} run(s)",
            e["max_running"],
            e["overhead_min"].as_f64().unwrap_or(0.0),
            e["overhead_max"].as_f64().unwrap_or(0.0)
        );
    }
    json!({
        "ops_per_measurement": OPS,
        "contended_tasks": TASKS,
        "runtime_workers": workers,
        "steps_per_command": steps,
        "micro": micro,
        "us_per_model_call": {
            "defaults_1_thread": round(per_call.0, 3),
            "defaults_contended": round(per_call.1, 3),
            "request_cap_1_thread": round(per_call.2, 3),
            "request_cap_contended": round(per_call.3, 3),
        },
        "agents": agents,
        "latency_ms": latency.as_millis() as u64,
        "e2e": e2e,
        "load_before": load_before,
        "load_after": loadavg(),
    })
}
