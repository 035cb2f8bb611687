//! Worktree agents through a git remote (`isolation: "worktree"` in a fleet): what the
//! remote costs, on a generated repository of realistic size ([`crate::repo`]).
//!
//! 1. `create_agent` with `isolation: "worktree"` and no task, one at a time: p50/p95
//!    for one node on SQLite with a local repository (no remote), a fleet node on
//!    PostgreSQL with `remote = ""` (the same local repository: what the store costs),
//!    and a fleet node whose repository's `origin` is a bare repository on local disk
//!    (fetch into the node's clone, worktree from it, push of the new branch).
//! 2. The end-of-command push: an agent whose command writes one file and answers
//!    (mock latency 1 ms), from the `create_agent` with the task to the
//!    `wait_for_agents` that returns it idle, on the same three; and the `pushed`
//!    events (one per command with the remote, none without; one agent gets a second
//!    command to show the count follows the commands).
//! 3. Failover with a rebuild: nodes a and b with separate roots (a a clone of the
//!    remote, b none: `[cluster] remote` names it), `lease_s`; a worktree agent on b
//!    mid-command (the mock holds its answer); SIGKILL b, remove its data directory
//!    (its worktree goes with its disk); time until a made the worktree again from the
//!    pushed branch (`relocated`) and the command is done there; beside the plain
//!    failover (the `failover` scenario, shared work directory, no worktree). The
//!    `resumed` events are counted: one per run when a took the agent over once.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::failover;
use crate::mock::Mock;
use crate::nodes::Nodes;
use crate::repo::{Repo, git};
use crate::server::Server;
use crate::stats::{Summary, loadavg, ms, percentile_ms, round, table};
use crate::store::Store;

/// What the scenario runs.
pub struct Sizes {
    /// Part 1: `create_agent`s per setup.
    pub agents: usize,
    /// Part 2: write-then-answer agents per setup.
    pub runs: usize,
    /// Part 3: kills.
    pub failover_runs: usize,
    pub lease_s: u64,
    /// The generated repository.
    pub files: usize,
    pub mib: usize,
}

#[derive(Clone, Copy, PartialEq)]
enum Setup {
    Sqlite,
    FleetLocal,
    FleetRemote,
}

impl Setup {
    fn label(self) -> &'static str {
        match self {
            Self::Sqlite => "one node, SQLite, local repository",
            Self::FleetLocal => "fleet node, PostgreSQL, remote = \"\"",
            Self::FleetRemote => "fleet node, PostgreSQL, bare remote",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite_local",
            Self::FleetLocal => "fleet_local",
            Self::FleetRemote => "fleet_remote",
        }
    }
}

/// One node of a setup, and what it owns.
enum Target {
    One(Box<Server>),
    Fleet(Nodes, tempfile::TempDir),
}

impl Target {
    async fn start(setup: Setup, repo: &Repo, mock_url: &str) -> Self {
        match setup {
            Setup::Sqlite => Self::One(Box::new(
                Server::start_on(Store::Sqlite, mock_url, |w| repo.clone_local(w), &[]).await,
            )),
            Setup::FleetLocal | Setup::FleetRemote => {
                let work = tempfile::tempdir().expect("node work dir");
                let config = if setup == Setup::FleetLocal {
                    repo.clone_local(work.path());
                    "[cluster]\nremote = \"\"\n"
                } else {
                    repo.clone_remote(work.path());
                    ""
                };
                let nodes = Nodes::start_apart(mock_url, &[("a", work.path(), config)], &[]).await;
                Self::Fleet(nodes, work)
            }
        }
    }

    fn server(&self) -> &Server {
        match self {
            Self::One(s) => s,
            Self::Fleet(nodes, _) => nodes.node("a"),
        }
    }

    async fn stop(self) {
        match self {
            Self::One(s) => (*s).stop().await,
            Self::Fleet(nodes, _work) => nodes.stop().await,
        }
    }
}

pub async fn run(sizes: &Sizes, plain_failover: Option<&Value>) -> Value {
    let started = Instant::now();
    let repo = Repo::generate(sizes.files, sizes.mib);
    println!(
        "\nremote: generated repository: {} (in {:.1} s)",
        repo.describe(),
        started.elapsed().as_secs_f64()
    );
    let mut creates = Vec::new();
    let mut commands = Vec::new();
    let mut out = serde_json::Map::new();
    out.insert("repository".into(), json!(repo.describe()));
    for setup in [Setup::Sqlite, Setup::FleetLocal, Setup::FleetRemote] {
        // Each setup writes hundreds of MiB of worktrees: flush the last one's (and the
        // generated repository's) dirty pages first, or the writeback lands on the next
        // setup's figures (it made whichever ran second look 3-4× slower).
        let _ = tokio::process::Command::new("sync").status().await;
        let load_before = loadavg();
        let mock = Mock::start(Duration::from_millis(1), 2, sizes.runs).await;
        let target = Target::start(setup, &repo, &mock.url).await;
        let create = create_times(target.server(), sizes.agents).await;
        let (write, pushed) = command_times(target.server(), sizes.runs).await;
        if setup == Setup::FleetRemote {
            let written = git(&repo.bare, &["show", "flotilla/w0:bench-out.txt"]);
            assert_eq!(
                written, "written by a benchmark agent\n",
                "w0's file in the remote"
            );
        }
        target.stop().await;
        let expected = if setup == Setup::FleetRemote {
            sizes.runs + 1
        } else {
            0
        };
        assert_eq!(pushed.pushed, expected, "{}: pushed events", setup.label());
        creates.push(vec![
            setup.label().to_string(),
            create.len().to_string(),
            ms(percentile_ms(&create, 50.0)),
            ms(percentile_ms(&create, 95.0)),
            ms(create.first().copied().unwrap_or_default()),
            load_before.clone(),
        ]);
        commands.push(vec![
            setup.label().to_string(),
            write.len().to_string(),
            ms(percentile_ms(&write, 50.0)),
            ms(percentile_ms(&write, 95.0)),
            format!("{} / {} commands", pushed.pushed, sizes.runs + 1),
            pushed.failed.to_string(),
        ]);
        out.insert(
            setup.key().into(),
            json!({
                "create_ms": Summary::of_ms(&create).json(),
                "create_p95_ms": round(percentile_ms(&create, 95.0), 4),
                "create_first_ms": round(create.first().copied().unwrap_or_default(), 4),
                "command_ms": Summary::of_ms(&write).json(),
                "command_p95_ms": round(percentile_ms(&write, 95.0), 4),
                "pushed": pushed.pushed,
                "push_failed": pushed.failed,
                "load_before": load_before,
                "load_after": loadavg(),
            }),
        );
    }
    table(
        &format!(
            "Remote: create_agent isolation \"worktree\", no task, one at a time ({})",
            repo.describe()
        ),
        &["setup", "agents", "p50", "p95", "first", "load before"],
        &creates,
    );
    table(
        "Remote: create with a task (write_file, then answer; model 1 ms) → wait_for_agents idle",
        &[
            "setup",
            "runs",
            "p50",
            "p95",
            "pushed events",
            "push errors",
        ],
        &commands,
    );
    out.insert(
        "failover".into(),
        rebuild(&repo, sizes.lease_s, sizes.failover_runs, plain_failover).await,
    );
    Value::Object(out)
}

/// Part 1: each `create_agent`'s time (ms), in order.
async fn create_times(server: &Server, agents: usize) -> Vec<f64> {
    let mut times = Vec::with_capacity(agents);
    for i in 0..agents {
        let t = Instant::now();
        let created = server
            .call_ok(
                "create_agent",
                json!({"name": format!("c{i}"), "isolation": "worktree"}),
            )
            .await;
        times.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(created["branch"], format!("flotilla/c{i}"), "{created}");
    }
    times
}

/// `pushed` events counted, and how many of them say the push failed.
struct Pushed {
    pushed: usize,
    failed: usize,
}

/// Part 2: each create-with-task → idle time (ms); then a second command for `w0`, and
/// the `pushed` events of every agent.
async fn command_times(server: &Server, runs: usize) -> (Vec<f64>, Pushed) {
    let mut times = Vec::with_capacity(runs);
    for i in 0..runs {
        let name = format!("w{i}");
        let t = Instant::now();
        server
            .call_ok(
                "create_agent",
                json!({
                    "name": name,
                    "isolation": "worktree",
                    "task": format!("Benchmark task [bench k=write a={i}]: write bench-out.txt, then report."),
                }),
            )
            .await;
        idle(server, &name).await;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    if runs > 0 {
        server
            .call_ok(
                "command_agent",
                json!({"agent": "w0", "task": "Anything else? Answer briefly."}),
            )
            .await;
        idle(server, "w0").await;
    }
    let mut pushed = Pushed {
        pushed: 0,
        failed: 0,
    };
    for i in 0..runs {
        let page = server
            .call_ok(
                "get_agent_events",
                json!({"agent": format!("w{i}"), "kinds": ["pushed"], "limit": 50}),
            )
            .await;
        for event in page["events"].as_array().into_iter().flatten() {
            pushed.pushed += 1;
            if event["summary"]
                .as_str()
                .unwrap_or("")
                .contains("NOT pushed")
            {
                pushed.failed += 1;
            }
        }
    }
    (times, pushed)
}

/// Until a `wait_for_agents` returns `agent` idle.
async fn idle(server: &Server, agent: &str) {
    let waited = server
        .call_ok(
            "wait_for_agents",
            json!({"agents": [agent], "timeout_s": 120}),
        )
        .await;
    let row = &waited["agents"][0];
    assert_eq!(row["status"], "idle", "{agent} not idle: {waited}");
}

/// Part 3: failover with a rebuild of the worktree from the remote, beside the plain one.
async fn rebuild(repo: &Repo, lease: u64, runs: usize, plain: Option<&Value>) -> Value {
    let load_before = loadavg();
    let mut takeover = Vec::with_capacity(runs);
    let mut done = Vec::with_capacity(runs);
    let mut early = 0;
    let mut resumed = 0;
    for i in 0..runs {
        let heartbeat = Duration::from_secs(lease) / 3;
        let after = heartbeat.mul_f64((i as f64 + 0.5) / runs as f64);
        let (kill, times) = kill_one(repo, lease, &format!("held{i}"), after).await;
        takeover.push(kill.takeover);
        done.push(kill.done);
        early += kill.early.len();
        resumed += times;
    }
    let (t, d) = (Summary::of(&takeover), Summary::of(&done));
    let fastest = done.iter().min().copied().unwrap_or_default();
    let plain = match plain.and_then(|p| of_lease(p, lease)) {
        Some(p) => p,
        None => {
            of_lease(&failover::run(&[lease], runs).await, lease).expect("the plain failover run")
        }
    };
    let secs = |v: &Value, key: &str| v[key].as_f64().unwrap_or(0.0) / 1e3;
    let rows = vec![
        vec![
            "plain (shared work dir)".to_string(),
            plain["runs"].to_string(),
            format!("{:.2} s", secs(&plain["takeover_ms"], "p50_ms")),
            format!("{:.2} s", secs(&plain["done_ms"], "p50_ms")),
            format!("max {:.2} s", secs(&plain["done_ms"], "max_ms")),
            "–".into(),
            "–".into(),
            plain["load_before"].as_str().unwrap_or("?").to_string(),
        ],
        vec![
            "worktree, rebuilt from the remote".to_string(),
            runs.to_string(),
            format!("{:.2} s", t.p50 / 1e3),
            format!("{:.2} s", d.p50 / 1e3),
            format!("{:.2}–{:.2} s", fastest.as_secs_f64(), d.max / 1e3),
            format!("{runs} / {runs}"),
            format!("{resumed} / {runs}"),
            load_before.clone(),
        ],
    ];
    table(
        &format!(
            "Remote: SIGKILL of node b mid-command, b's data dir removed → done on a (lease_s {lease}, separate roots)"
        ),
        &[
            "agent",
            "runs",
            "kill → a resumes p50",
            "kill → done on a p50",
            "done min–max",
            "relocated",
            "resumed",
            "load before",
        ],
        &rows,
    );
    json!({
        "lease_s": lease,
        "runs": runs,
        "takeover_ms": t.json(),
        "done_ms": d.json(),
        "early_waits": early,
        "resumed_events": resumed,
        "plain_takeover_p50_ms": plain["takeover_ms"]["p50_ms"],
        "plain_done_p50_ms": plain["done_ms"]["p50_ms"],
        "load_before": load_before,
        "load_after": loadavg(),
    })
}

/// The `failover` scenario's entry for `lease`.
fn of_lease(failover: &Value, lease: u64) -> Option<Value> {
    failover
        .as_array()?
        .iter()
        .find(|f| f["lease_s"] == lease)
        .cloned()
}

/// One kill: a fresh fleet of a (a clone of the remote) and b (no checkout), `agent` a
/// worktree agent created through b, SIGKILL of b `after` its held model call began.
/// What it measured, and the `resumed` events in the agent's log (1 when a took it over
/// once).
async fn kill_one(
    repo: &Repo,
    lease: u64,
    agent: &str,
    after: Duration,
) -> (failover::Kill, usize) {
    let mock = Mock::start(Duration::from_millis(1), 2, 1).await;
    let (work_a, work_b) = (tempdir(), tempdir());
    repo.clone_remote(work_a.path());
    let config_a = format!("[cluster]\nlease_s = {lease}\n");
    let config_b = format!("[cluster]\nlease_s = {lease}\nremote = {:?}\n", repo.url());
    let mut fleet = Nodes::start_apart(
        &mock.url,
        &[
            ("a", work_a.path(), &config_a),
            ("b", work_b.path(), &config_b),
        ],
        &[],
    )
    .await;
    let b = fleet.take("b");
    let created = b
        .call_ok(
            "create_agent",
            json!({
                "name": agent,
                "isolation": "worktree",
                "task": "Benchmark task [bench k=hold a=0]: read data.txt, then report.",
            }),
        )
        .await;
    let a = fleet.node("a");
    let b_data = b.data.clone();
    // b's disk goes with b (dropping b removed its temp dir already, data included).
    let kill = failover::kill_b(a, b, &mock, agent, &created, lease, after, || {
        remove(&b_data)
    })
    .await;
    let moved = count_events(a, agent, "relocated").await;
    assert_eq!(moved, 1, "one relocated event for {agent}");
    let resumed = count_events(a, agent, "resumed").await;
    fleet.stop().await;
    (kill, resumed)
}

/// How many events of `kind` `agent`'s log has, read through `a`.
async fn count_events(a: &Server, agent: &str, kind: &str) -> usize {
    let page = a
        .call_ok("get_agent_events", json!({"agent": agent, "kinds": [kind]}))
        .await;
    page["events"].as_array().map_or(0, Vec::len)
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

fn remove(dir: &Path) {
    if dir.exists() {
        std::fs::remove_dir_all(dir).expect("remove b's data dir");
    }
}
