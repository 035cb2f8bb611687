//! The fleet benchmark: what flotilla costs in time, memory and orchestrator context.
//!
//! It starts the real release `flotilla` binary over stdio, drives it with rmcp's MCP
//! client, and serves its agents from a built-in mock model (an axum server speaking the
//! Anthropic Messages API with a configurable latency). Run it with
//!
//! ```sh
//! cargo bench --bench fleet                                  # every scenario, default sizes
//! cargo bench --bench fleet -- --scenario scale --agents 100,1000,5000
//! cargo bench --bench fleet -- --scenario memory,control --json target/fleet.json
//! cargo bench --bench fleet -- --scenario failover,nodes --leases 3 # several nodes
//! cargo bench --bench fleet -- --scenario failover,remote --leases 3 # worktrees via a remote
//! ```
//!
//! `cargo bench` builds the `flotilla` binary with the same (release-based) profile and
//! passes its path in `CARGO_BIN_EXE_flotilla`.
//!
//! Flags: `--scenario scale|memory|control|context|persistence|guards|sandbox|cli|failover|nodes|remote|all` (comma list),
//! `--agents N,..` (scale sizes, default 100,1000), `--latency-ms MS` (model latency for
//! scale, memory and guards, default 200), `--steps N` (model calls per scale and guards
//! agent, default 5), `--idle N,..` (memory, default 1000,10000), `--running N` (memory,
//! default 1000), `--control-agents N` (default 10000), `--samples N` (control, default 2000),
//! `--context-latency-ms MS` (default 100), `--poll-s S` (default 15), `--step-s S`
//! (realistic model step for the polling comparison, default 8), `--json PATH`,
//! `--server PATH` (another flotilla binary, e.g. an older build, for before/after
//! figures), `--server-arg ARG` (repeatable, e.g. `--server-arg --ephemeral`),
//! `--baseline PATH` (persistence: a binary to compare the per-step cost with, e.g. a
//! build from before the store), `--persist-agents N` (default 1000), `--guard-agents N`
//! (guards: the fleet run with `--max-running 0` and 16, default 100) and `--guard-runs
//! N` (guards: end-to-end runs of each, interleaved, default 1) and `--sandbox-commands N`
//! (sandbox: `run_command`s per variant, default 300), `--plan-batch N` (memory and
//! control: create the idle fleet with `create_agents` calls of N agents instead of one
//! `create_agent` per agent, 16 in flight; e.g. `--idle 100000 --plan-batch 1000`),
//! `--compare PATH` (print every
//! figure beside the same figure in a saved `--json` file of an earlier run, with the
//! ratio; keep a baseline with `--json target/baseline.json` and compare later runs to it).
//!
//! PostgreSQL (a throwaway cluster the bench starts, as the tests do; `initdb` must be
//! installed): `--stores sqlite,postgres` (scale and control on each, one node, printed
//! side by side; default both), `--pg-agents N,..` (scale sizes on PostgreSQL, default
//! 100,1000), `--pg-control-agents N` (default 10000). Several nodes on one database:
//! `failover` (two nodes, SIGKILL of the one running an agent mid-command; `--leases
//! S,..` default 3,15, `--failover-runs N` default 3) and `nodes` (agents per node:
//! `--node-agents N` created through one node of three, default 60, beside one node).
//! `remote`: worktree agents through a git remote, on a generated repository
//! (`--repo-files N` default 2000, `--repo-mib N` default 20): `create_agent` with
//! `isolation: "worktree"` (`--remote-agents N` default 30) and a create-with-task that
//! writes one file → idle (`--remote-runs N` default 20), each for one SQLite node with a
//! local repository, a fleet node with `remote = ""` and a fleet node with a bare remote;
//! then failover with the worktree rebuilt from the remote on the other node (nodes with
//! separate roots, the smallest of `--leases`, `--failover-runs` kills), beside the
//! plain failover (the `failover` scenario's figure when it ran, else its own run).
//!
//! Scenarios that run many agents at once (scale, memory, persistence) start the server
//! with `FLOTILLA_MAX_RUNNING=0`: flotilla's default of 16 run slots would queue them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[path = "fleet/cli.rs"]
mod cli;
#[path = "fleet/compare.rs"]
mod compare;
#[path = "fleet/context.rs"]
mod context;
#[path = "fleet/control.rs"]
mod control;
#[path = "fleet/definitions.rs"]
mod definitions;
#[path = "fleet/failover.rs"]
mod failover;
#[path = "fleet/guards.rs"]
mod guards;
#[path = "fleet/memory.rs"]
mod memory;
#[path = "fleet/mock.rs"]
mod mock;
#[path = "fleet/nodes.rs"]
mod nodes;
#[path = "fleet/persistence.rs"]
mod persistence;
#[path = "fleet/placement.rs"]
mod placement;
#[path = "../tests/common/postgres.rs"]
mod postgres;
#[path = "fleet/remote.rs"]
mod remote;
#[path = "fleet/repo.rs"]
mod repo;
#[path = "fleet/sandbox.rs"]
mod sandbox;
#[path = "fleet/scale.rs"]
mod scale;
#[path = "fleet/server.rs"]
mod server;
#[path = "fleet/stats.rs"]
mod stats;
#[path = "fleet/store.rs"]
mod store;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use crate::store::Store;

#[derive(Debug)]
struct Args {
    scenarios: Vec<String>,
    agents: Vec<usize>,
    latency_ms: u64,
    steps: u32,
    idle: Vec<usize>,
    running: usize,
    control_agents: usize,
    samples: usize,
    context_latency_ms: u64,
    poll_s: f64,
    step_s: f64,
    json: Option<PathBuf>,
    compare: Option<PathBuf>,
    server: Option<PathBuf>,
    server_args: Vec<String>,
    baseline: Option<PathBuf>,
    persist_agents: usize,
    guard_agents: usize,
    guard_runs: usize,
    sandbox_commands: usize,
    plan_batch: usize,
    stores: Vec<Store>,
    pg_agents: Vec<usize>,
    pg_control_agents: usize,
    leases: Vec<usize>,
    failover_runs: usize,
    node_agents: usize,
    remote_agents: usize,
    remote_runs: usize,
    repo_files: usize,
    repo_mib: usize,
}

const SCENARIOS: [&str; 11] = [
    "scale",
    "memory",
    "control",
    "context",
    "persistence",
    "guards",
    "sandbox",
    "cli",
    "failover",
    "nodes",
    "remote",
];

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        scenarios: SCENARIOS.iter().map(|s| s.to_string()).collect(),
        agents: vec![100, 1000],
        latency_ms: 200,
        steps: 5,
        idle: vec![1000, 10_000],
        running: 1000,
        control_agents: 10_000,
        samples: 2000,
        context_latency_ms: 100,
        poll_s: 15.0,
        step_s: 8.0,
        json: None,
        compare: None,
        server: None,
        server_args: Vec::new(),
        baseline: None,
        persist_agents: 1000,
        guard_agents: 100,
        guard_runs: 1,
        sandbox_commands: 300,
        plan_batch: 0,
        stores: vec![Store::Sqlite, Store::Postgres],
        pg_agents: vec![100, 1000],
        pg_control_agents: 10_000,
        leases: vec![3, 15],
        failover_runs: 3,
        node_agents: 60,
        remote_agents: 30,
        remote_runs: 20,
        repo_files: 2000,
        repo_mib: 20,
    };
    let mut it = std::env::args().skip(1);
    fn list(v: &str) -> Result<Vec<usize>, String> {
        v.split(',')
            .map(|x| {
                x.trim()
                    .replace('_', "")
                    .parse()
                    .map_err(|_| format!("not a number: {x}"))
            })
            .collect()
    }
    fn num<T: std::str::FromStr>(v: &str) -> Result<T, String> {
        v.parse().map_err(|_| format!("not a number: {v}"))
    }
    while let Some(flag) = it.next() {
        // `cargo bench` passes `--bench`; libtest-style filters are ignored too.
        if flag == "--bench" || !flag.starts_with("--") {
            continue;
        }
        let (flag, inline) = match flag.split_once('=') {
            Some((f, v)) => (f.to_string(), Some(v.to_string())),
            None => (flag, None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--scenario" | "--scenarios" => {
                let v = value()?;
                a.scenarios = if v == "all" {
                    SCENARIOS.iter().map(|s| s.to_string()).collect()
                } else {
                    v.split(',').map(|s| s.trim().to_string()).collect()
                };
                if let Some(bad) = a
                    .scenarios
                    .iter()
                    .find(|s| !SCENARIOS.contains(&s.as_str()))
                {
                    return Err(format!(
                        "unknown scenario {bad}; known: {}, all",
                        SCENARIOS.join(", ")
                    ));
                }
            }
            "--agents" => a.agents = list(&value()?)?,
            "--latency-ms" => a.latency_ms = num(&value()?)?,
            "--steps" => a.steps = num(&value()?)?,
            "--idle" => a.idle = list(&value()?)?,
            "--running" => a.running = num(&value()?)?,
            "--control-agents" => a.control_agents = num(&value()?)?,
            "--samples" => a.samples = num(&value()?)?,
            "--context-latency-ms" => a.context_latency_ms = num(&value()?)?,
            "--poll-s" => a.poll_s = num(&value()?)?,
            "--step-s" => a.step_s = num(&value()?)?,
            "--json" => a.json = Some(PathBuf::from(value()?)),
            "--compare" => a.compare = Some(PathBuf::from(value()?)),
            "--server" => a.server = Some(PathBuf::from(value()?)),
            "--server-arg" => a.server_args.push(value()?),
            "--baseline" => a.baseline = Some(PathBuf::from(value()?)),
            "--persist-agents" => a.persist_agents = num(&value()?)?,
            "--guard-agents" => a.guard_agents = num(&value()?)?,
            "--guard-runs" => a.guard_runs = num(&value()?)?,
            "--sandbox-commands" => a.sandbox_commands = num(&value()?)?,
            "--plan-batch" => a.plan_batch = num(&value()?)?,
            "--stores" => {
                a.stores = value()?
                    .split(',')
                    .map(Store::parse)
                    .collect::<Result<_, _>>()?
            }
            "--pg-agents" => a.pg_agents = list(&value()?)?,
            "--pg-control-agents" => a.pg_control_agents = num(&value()?)?,
            "--leases" => a.leases = list(&value()?)?,
            "--failover-runs" => a.failover_runs = num(&value()?)?,
            "--node-agents" => a.node_agents = num(&value()?)?,
            "--remote-agents" => a.remote_agents = num(&value()?)?,
            "--remote-runs" => a.remote_runs = num(&value()?)?,
            "--repo-files" => a.repo_files = num(&value()?)?,
            "--repo-mib" => a.repo_mib = num(&value()?)?,
            "--help" => {
                println!(
                    "{}",
                    include_str!("fleet.rs")
                        .lines()
                        .take_while(|l| l.starts_with("//!"))
                        .map(|l| l.trim_start_matches("//!").trim_start())
                        .collect::<Vec<_>>()
                        .join("\n")
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown flag {other} (see --help)")),
        }
    }
    if a.scenarios.iter().any(|s| s == "guards")
        && a.server_args.iter().any(|x| x.starts_with("--max-running"))
    {
        return Err(
            "the guards scenario sets --max-running itself; drop it from --server-arg".into(),
        );
    }
    if a.steps < 2 {
        return Err("--steps must be at least 2 (tool steps, then a final answer)".into());
    }
    Ok(a)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("fleet bench: {e}");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(run(args));
}

async fn run(args: Args) {
    let machine = stats::machine();
    println!(
        "flotilla fleet bench — {} × {}, {} GiB RAM, kernel {}; load {}",
        machine["cpus"],
        machine["cpu_model"].as_str().unwrap_or("?"),
        machine["mem_gib"],
        machine["kernel"].as_str().unwrap_or("?"),
        stats::loadavg()
    );
    let program = args
        .server
        .clone()
        .unwrap_or_else(|| PathBuf::from(server::FLOTILLA));
    println!(
        "server: {} {}",
        program.display(),
        args.server_args.join(" ")
    );
    server::COMMAND
        .set((program.clone(), args.server_args.clone()))
        .expect("server command set once");
    let started = Instant::now();
    let mut out = Map::new();
    out.insert("machine".into(), machine);
    out.insert(
        "server".into(),
        json!({"binary": program.display().to_string(), "args": args.server_args}),
    );
    out.insert("load_start".into(), json!(stats::loadavg()));
    let has = |s: &str| args.scenarios.iter().any(|x| x == s);
    let latency = Duration::from_millis(args.latency_ms);

    let on = |s: Store| args.stores.contains(&s);
    if has("scale") {
        if on(Store::Sqlite) {
            out.insert(
                "scale".into(),
                scale::run(Store::Sqlite, &args.agents, latency, args.steps).await,
            );
        }
        if on(Store::Postgres) {
            let pg = scale::run(Store::Postgres, &args.pg_agents, latency, args.steps).await;
            if let Some(sqlite) = out.get("scale") {
                scale::side_by_side(sqlite, &pg);
            }
            out.insert("scale_postgres".into(), pg);
        }
    }
    let mut reuse = None;
    if has("memory") {
        let (report, server, mock, have) =
            memory::run(&args.idle, args.running, latency, args.plan_batch).await;
        out.insert("memory".into(), report);
        if has("control") {
            reuse = Some((server, mock, have));
        } else {
            server.stop().await;
        }
    }
    if has("control") {
        out.insert(
            "control".into(),
            control::run(
                args.samples,
                args.control_agents,
                args.pg_control_agents,
                reuse,
                args.plan_batch,
                &args.stores,
            )
            .await,
        );
    }
    if has("context") {
        out.insert(
            "context".into(),
            context::run(
                Duration::from_millis(args.context_latency_ms),
                args.poll_s,
                args.step_s,
            )
            .await,
        );
    }
    if has("persistence") {
        out.insert(
            "persistence".into(),
            persistence::run(args.persist_agents, args.baseline.clone()).await,
        );
    }
    if has("guards") {
        out.insert(
            "guards".into(),
            guards::run(
                args.guard_agents,
                latency,
                args.steps,
                args.guard_runs.max(1),
            )
            .await,
        );
    }
    if has("sandbox") {
        out.insert("sandbox".into(), sandbox::run(args.sandbox_commands).await);
    }
    if has("cli") {
        out.insert("cli".into(), cli::run(20).await);
    }
    if has("failover") {
        let leases: Vec<u64> = args.leases.iter().map(|&l| l as u64).collect();
        out.insert(
            "failover".into(),
            failover::run(&leases, args.failover_runs.max(1)).await,
        );
    }
    if has("nodes") {
        out.insert(
            "nodes".into(),
            placement::run(args.node_agents, latency, args.steps).await,
        );
    }
    if has("remote") {
        let sizes = remote::Sizes {
            agents: args.remote_agents,
            runs: args.remote_runs,
            failover_runs: args.failover_runs.max(1),
            lease_s: args.leases.iter().min().map_or(3, |&l| l as u64),
            files: args.repo_files,
            mib: args.repo_mib,
        };
        let report = remote::run(&sizes, out.get("failover")).await;
        out.insert("remote".into(), report);
    }
    out.insert("load_end".into(), json!(stats::loadavg()));
    out.insert(
        "total_s".into(),
        json!(stats::round(started.elapsed().as_secs_f64(), 1)),
    );
    println!(
        "\ndone in {:.1} s; load {}",
        started.elapsed().as_secs_f64(),
        stats::loadavg()
    );
    let out = Value::Object(out);
    if let Some(saved) = &args.compare {
        compare::print(&out, saved);
    }
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&out).expect("json");
        std::fs::write(path, text + "\n")
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        println!("wrote {}", path.display());
    }
}
