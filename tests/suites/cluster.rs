//! One fleet, several nodes: real flotilla processes on one machine sharing one
//! throwaway PostgreSQL database (`--store`), each serving MCP over Streamable HTTP,
//! driven by rmcp clients as users would. One mock model serves them all.
//!
//! Placement, forwarding and waits across nodes; SIGKILL of a node mid-command (its
//! agents finish on another, no tool call run twice); SIGSTOP of a node past its lease
//! (it writes nothing once it comes back); one budget across nodes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::cluster::{
    LEASE_S, TwoNodes, create_first_writer, node, two_nodes, until_nodes,
};
use crate::common::*;
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(90);

/// Until `agent`'s status row (read through `client`) satisfies `check`.
async fn until_status(
    client: &Flotilla,
    agent: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let mut last = Value::Null;
    let found = tokio::time::timeout(LONG, async {
        loop {
            last = client.status(agent).await;
            if check(&last) {
                return last.clone();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("{agent}: {what} never came; last status {last}"))
}

async fn db_client(db: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(db, tokio_postgres::NoTls)
        .await
        .expect("connect to the test database");
    tokio::spawn(conn);
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_placed_on_another_node_is_commanded_and_awaited_through_any_node() {
    // a has one run slot, b four: a new agent goes to b.
    let TwoNodes {
        mock,
        a: _a,
        b: _b,
        on_a,
        on_b,
        ..
    } = two_nodes(&["--max-running", "1"], &["--max-running", "4"], "").await;

    mock.script("[x]", vec![Step::text("x one"), Step::text("x two")]);
    let created = on_a.create("x", "[x] first").await;
    assert!(
        created["status"] == "running" || created["status"] == "idle",
        "{created}"
    );
    let x = on_a.status("x").await;
    assert_eq!(
        x["node"], "b",
        "placed on the node with more free slots: {x}"
    );

    // A wait on a wakes when b's agent finishes.
    let waited = on_a.wait_all(&["x"]).await;
    assert_eq!(row_of(&waited, "x")["status"], "idle", "{waited}");
    assert_eq!(on_a.output("x").await["text"], "x one");

    // A command through a reaches the agent on b.
    let commanded = on_a.command("x", "[x] second").await;
    assert_eq!(commanded["command"], 2, "{commanded}");
    on_a.wait_all(&["x"]).await;
    assert_eq!(on_a.output("x").await["text"], "x two");
    assert_eq!(on_b.output("x").await["text"], "x two");
    let reqs = mock.requests_for("[x]");
    assert_eq!(reqs.len(), 2, "one model call per command");

    // Rows carry the node; every node lists the whole fleet and its nodes.
    for client in [&on_a, &on_b] {
        let list = client.call("list_agents", json!({})).await;
        assert_eq!(row(&list["agents"], "x")["node"], "b", "{list}");
        let nodes: Vec<&str> = list["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|n| n["node"].as_str())
            .collect();
        assert!(nodes.contains(&"a") && nodes.contains(&"b"), "{list}");
    }

    // Deleting through a deletes it on b.
    let deleted = on_a.call("delete_agent", json!({"agent": "x"})).await;
    assert_eq!(deleted["deleted"], "x", "{deleted}");
    eventually("x gone on b", async || {
        on_b.call("list_agents", json!({})).await["agents"]
            .as_array()
            .is_some_and(|a| a.is_empty())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_a_node_mid_command_moves_its_agents_and_runs_no_tool_twice() {
    let db = postgres::database();
    let root = Arc::new(tempfile::tempdir().unwrap());
    let mock = MockModel::start().await;
    // Three nodes; b has the most run slots, so both agents go there.
    let a = node(&db, "a", &root, &mock, &["--max-running", "2"], "").await;
    let b = node(&db, "b", &root, &mock, &["--max-running", "16"], "").await;
    let c = node(&db, "c", &root, &mock, &["--max-running", "2"], "").await;
    let on_a = a.client().await;
    let on_c = c.client().await;
    until_nodes(&on_a, &["a", "b", "c"]).await;
    until_nodes(&on_c, &["a", "b", "c"]).await;
    for k in ["k1", "k2"] {
        mock.script(
            &format!("[{k}]"),
            vec![
                Step::tool(
                    "run_command",
                    json!({"command": format!("echo run >> {k}.txt")}),
                ),
                // b dies waiting for this answer.
                Step::text("never delivered").delay(Duration::from_secs(60)),
                Step::text(format!("{k} final")),
            ],
        );
        on_a.create(k, &format!("[{k}] do it")).await;
        assert_eq!(on_a.status(k).await["node"], "b");
    }
    mock.wait_requests("[k1]", 2, LONG).await;
    mock.wait_requests("[k2]", 2, LONG).await;
    let killed = Instant::now();
    b.kill().await;

    // One wait on a survivor follows both agents across the takeover: it returns
    // when they are done on their new node, not when their mirrors are retired.
    let waited = on_c.wait_all(&["k1", "k2"]).await;
    for k in ["k1", "k2"] {
        let r = row_of(&waited, k);
        assert_eq!(r["status"], "idle", "{waited}");
        assert_ne!(r["node"], "b", "{waited}");
        assert!(r.get("deleted").is_none(), "{waited}");
    }
    for k in ["k1", "k2"] {
        let done = until_status(&on_c, k, "the agent finished on another node", |s| {
            s["node"] != "b" && s["status"] == "idle"
        })
        .await;
        let failover = killed.elapsed();
        eprintln!(
            "failover: {k} finished on node {} {:.1}s after b was killed (lease {LEASE_S}s)",
            done["node"],
            failover.as_secs_f64()
        );
        assert!(
            failover < Duration::from_secs(LEASE_S + 15),
            "took {failover:?}: {done}"
        );
        assert_eq!(on_a.output(k).await["text"], format!("{k} final"));
        let runs = std::fs::read_to_string(root.path().join(format!("work/{k}.txt"))).unwrap();
        assert_eq!(runs, "run\n", "{k}'s command ran once");
        // The resumed call carried the tool's one result.
        let last = mock.requests_for(&format!("[{k}]")).pop().unwrap();
        assert_eq!(last.tool_results().len(), 1, "{:?}", last.tool_results());
        let events = on_a.event_kinds(k, &[]).await;
        assert_eq!(
            events.iter().filter(|e| *e == "tool_call").count(),
            1,
            "{events:?}"
        );
    }
    assert!(
        a.logged("took over the agent from node b") || c.logged("took over the agent from node b"),
        "{}",
        a.log_tail(40)
    );
    // b shows as gone on the nodes that are left (at their next heartbeat).
    for client in [&on_a, &on_c] {
        eventually("b shown unhealthy", async || {
            let list = client.call("list_agents", json!({})).await;
            list["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|n| n["node"] == "b" && n["healthy"] == false)
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_runs_at_most_its_cluster_max_running_across_nodes() {
    let cap = "max_running = 1";
    let TwoNodes {
        mock,
        a: _a,
        b: _b,
        on_a,
        on_b,
        ..
    } = two_nodes(&[], &[], cap).await;
    for key in ["[m]", "[n]"] {
        mock.script(
            key,
            vec![
                Step::tool("list_files", json!({})).delay(Duration::from_millis(700)),
                Step::text("done").delay(Duration::from_millis(700)),
            ],
        );
    }
    on_a.create("m", "[m] go").await;
    on_b.create("n", "[n] go").await;
    assert_ne!(
        on_a.status("m").await["node"],
        on_a.status("n").await["node"],
        "one agent on each node"
    );
    // One of them waits for the fleet's slot, and says so (on its own node: what an
    // agent is doing this moment is not in the log other nodes read).
    let queued = eventually("an agent queued for the fleet's slot", async || {
        for (client, name) in [(&on_a, "m"), (&on_b, "n")] {
            let s = client.status(name).await;
            if s["status"] == "queued" {
                return Some(s);
            }
        }
        None
    })
    .await;
    assert!(
        queued["activity"]
            .as_str()
            .unwrap_or("")
            .contains("max_running 1 across its nodes"),
        "{queued}"
    );
    let done = on_b.wait_all(&["m", "n"]).await;
    assert_eq!(row_of(&done, "m")["status"], "idle", "{done}");
    assert_eq!(row_of(&done, "n")["status"], "idle", "{done}");
    assert_eq!(
        mock.max_in_flight(),
        1,
        "at most one model call in the whole fleet"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_stopped_past_its_lease_writes_nothing_when_it_comes_back() {
    let TwoNodes {
        db,
        mock,
        a: _a,
        b,
        on_a,
        on_b,
        ..
    } = two_nodes(&[], &[], "").await;
    // b's call is answered while b is stopped; a's, after the takeover, at once.
    mock.script(
        "[s]",
        vec![
            Step::text("b's late answer").delay(Duration::from_secs(LEASE_S + 4)),
            Step::text("s final"),
        ],
    );
    on_b.create("s", "[s] go").await;
    mock.wait_requests("[s]", 1, LONG).await;
    let pid = nix::unistd::Pid::from_raw(b.pid as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    until_status(&on_a, "s", "a took the agent over and finished it", |s| {
        s["node"] == "a" && s["status"] == "idle"
    })
    .await;
    let pg = db_client(&db).await;
    let last: i64 = pg
        .query_one("SELECT max(id) FROM events", &[])
        .await
        .unwrap()
        .get(0);
    // Past the moment b's late answer arrives.
    mock.wait_no_request_in_flight(LONG).await;
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    eventually("b stopped the agent it lost", async || {
        b.logged("lease lost") || b.logged("no longer holds")
    })
    .await;
    // b's heartbeats go on; give its worker every chance to write.
    let beats_before = on_b.call("list_agents", json!({})).await;
    eventually("b heartbeats again", async || {
        let n = on_a.call("list_agents", json!({})).await;
        n["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["node"] == "b" && n["healthy"] == true)
    })
    .await;
    let written: i64 = pg
        .query_one(
            "SELECT count(*) FROM events WHERE node = 'b' AND id > $1",
            &[&last],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        written,
        0,
        "b wrote after it lost the lease; {}",
        b.log_tail(40)
    );
    let s = on_b.status("s").await;
    assert_eq!(s["node"], "a", "{s} / {beats_before}");
    assert_eq!(on_b.output("s").await["text"], "s final");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_budget_spans_the_nodes() {
    // Each reply costs 5000 tokens: the cap allows six calls in the whole fleet. Two
    // nodes that each counted alone would allow six each.
    let cap = ["--max-tokens", "30000"];
    let TwoNodes {
        mock,
        a: _a,
        b: _b,
        on_a,
        on_b,
        ..
    } = two_nodes(&cap, &cap, "").await;
    for key in ["[p]", "[q]"] {
        mock.script(
            key,
            (0..20)
                .map(|_| Step::tool("list_files", json!({})).usage(4_000, 1_000))
                .collect(),
        );
    }
    on_a.create("p", "[p] spend").await;
    on_b.create("q", "[q] spend").await;
    assert_eq!(on_a.status("q").await["node"], "b");
    let done = on_a.wait_all(&["p", "q"]).await;
    for name in ["p", "q"] {
        let r = row_of(&done, name);
        assert_eq!(r["status"], "failed", "{done}");
    }
    let calls = mock.requests_for("[p]").len() + mock.requests_for("[q]").len();
    eprintln!("fleet-wide budget: {calls} calls made under a cap worth 6");
    // Six calls, plus at most what each node had in flight or had not heard of yet.
    assert!(
        (6..=10).contains(&calls),
        "{calls} calls made under a 30000-token fleet cap"
    );
    let list = on_a.call("list_agents", json!({})).await;
    assert!(
        list["totals"]["budget"]["tokens"].as_u64().unwrap() >= 30_000,
        "{list}"
    );
    // b's view of a's agent follows a's log (a notification later).
    let p = until_status(&on_b, "p", "b shows p's budget failure", |s| {
        s["status"] == "failed"
    })
    .await;
    assert!(
        p["last_error"].as_str().unwrap_or("").contains("budget"),
        "{p}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_question_asked_on_one_node_is_answered_through_another() {
    let TwoNodes {
        mock,
        a: _a,
        b: _b,
        on_a,
        on_b,
        ..
    } = two_nodes(&[], &[], "").await;
    mock.script(
        "[ask]",
        vec![
            Step::tool(
                "ask_orchestrator",
                json!({"question": "v1 or v2?", "options": ["v1", "v2"]}),
            ),
            Step::text("kept v2"),
        ],
    );
    on_b.create("asker", "[ask] merge the parsers").await;
    // A wait on a wakes with b's agent's question.
    let waited = on_a.wait_all(&["asker"]).await;
    let asked = row_of(&waited, "asker");
    assert_eq!(asked["status"], "needs_input", "{waited}");
    assert_eq!(asked["question"], "v1 or v2?", "{waited}");
    assert_eq!(asked["options"], json!(["v1", "v2"]), "{waited}");
    // The answer, given to a, reaches the agent on b as its tool's result.
    let answered = on_a.command("asker", "v2").await;
    assert_eq!(answered["answered"], true, "{answered}");
    assert_eq!(answered["command"], 1, "{answered}");
    let done = on_a.wait_all(&["asker"]).await;
    assert_eq!(row_of(&done, "asker")["status"], "idle", "{done}");
    assert_eq!(on_b.output("asker").await["text"], "kept v2");
    let requests = mock.requests_for("[ask]");
    assert_eq!(requests.len(), 2);
    let results = requests[1].tool_results();
    assert!(
        results.iter().any(|r| format!("{r:?}").contains("v2")),
        "{results:?}"
    );
}

/// On a filesystem every node shares, a worktree agent on one node can start from the
/// work of a worktree agent another node ran (through the shared repository; a git
/// remote for nodes that share no filesystem is not built yet).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worktree_agent_on_one_node_starts_from_another_nodes_agent() {
    let db = postgres::database();
    let root = Arc::new(tempfile::tempdir().unwrap());
    let work = root.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "-q", "-b", "main"]);
    std::fs::write(work.join("README.md"), "repo\n").unwrap();
    git(&work, &["add", "-A"]);
    git(
        &work,
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-q",
            "-m",
            "init",
        ],
    );
    let mock = MockModel::start().await;
    let a = node(&db, "a", &root, &mock, &[], "").await;
    let b = node(&db, "b", &root, &mock, &[], "").await;
    let on_a = a.client().await;
    let on_b = b.client().await;
    until_nodes(&on_a, &["a", "b"]).await;
    until_nodes(&on_b, &["a", "b"]).await;
    create_first_writer(&mock, &on_a).await;
    on_a.wait_all(&["first"]).await;
    assert_eq!(on_b.status("first").await["node"], "a");
    mock.script(
        "[second]",
        vec![
            Step::tool("read_file", json!({"path": "feature.txt"})),
            Step::text("read it"),
        ],
    );
    let second = on_b
        .call(
            "create_agent",
            json!({"name": "second", "task": "[second] read", "isolation": "worktree", "base": "first"}),
        )
        .await;
    assert_eq!(second["branch"], "flotilla/second", "{second}");
    assert_eq!(on_b.status("second").await["node"], "b");
    on_b.wait_all(&["second"]).await;
    let read = mock.requests_for("[second]").pop().unwrap();
    assert!(
        format!("{:?}", read.tool_results()).contains("from a"),
        "{:?}",
        read.tool_results()
    );
    let branches = git(&work, &["branch", "--list", "flotilla/*"]);
    assert!(
        branches.contains("flotilla/first") && branches.contains("flotilla/second"),
        "{branches}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_under_one_node_name_are_told() {
    let db = postgres::database();
    let root = Arc::new(tempfile::tempdir().unwrap());
    let mock = MockModel::start().await;
    let first = node(&db, "same", &root, &mock, &[], "").await;
    let second = node(&db, "same", &root, &mock, &[], "").await;
    eventually(
        "one of them says another process runs as node same",
        async || {
            first.logged("another flotilla process is running as node same")
                || second.logged("another flotilla process is running as node same")
        },
    )
    .await;
    // A node restarted under its own name is not taken for another process.
    let solo = node(&db, "solo", &root, &mock, &[], "").await;
    let client = solo.client().await;
    until_nodes(&client, &["solo"]).await;
    solo.kill().await;
    let again = node(&db, "solo", &root, &mock, &[], "").await;
    // Three beats of the restarted node, seen in its row.
    let pg = db_client(&db).await;
    let mut beats = Vec::new();
    eventually("three beats of the restarted node", async || {
        let at: String = pg
            .query_one(
                "SELECT heartbeat_at::text FROM nodes WHERE node = 'solo'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if beats.last() != Some(&at) {
            beats.push(at);
        }
        beats.len() > 3
    })
    .await;
    assert!(
        !again.logged("another flotilla process"),
        "{}",
        again.log_tail(30)
    );
}
