//! The dashboard and `/metrics` of a fleet of several nodes: two real flotilla nodes on
//! one throwaway PostgreSQL database, each serving HTTP. Node a's `/api/fleet` and
//! `/metrics` show node b's agent with its node and both nodes' health; a's dashboard
//! pauses and resumes b's agent, and answers the question b's agent asked, and all of
//! it takes effect on b. Headless Chromium (when installed) renders a's page with the
//! nodes in its header; `FLOTILLA_CLUSTER_SCREENSHOT=path.png` saves a screenshot.

use std::process::Stdio;
use std::time::Duration;

use crate::common::cluster::{TwoNodes, two_nodes};
use crate::common::http::{HttpServer, TOKEN};
use crate::common::*;
use reqwest::header::AUTHORIZATION;
use serde_json::{Value, json};

const CHROMIUM: [&str; 2] = ["/usr/bin/chromium", "/usr/bin/chromium-browser"];

/// A dashboard route of `server`, read as a script would (bearer token).
async fn get(server: &HttpServer, path: &str) -> reqwest::Response {
    let r = reqwest::Client::new()
        .get(format!("http://{}{path}", server.addr))
        .header(AUTHORIZATION, format!("Bearer {TOKEN}"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "GET {path}: {}", r.status());
    r
}

async fn fleet(server: &HttpServer) -> Value {
    get(server, "/api/fleet").await.json().await.unwrap()
}

/// A dashboard control of `server`: POST `path` with `body`; the answer's JSON.
async fn post(server: &HttpServer, path: &str, body: Option<Value>) -> Value {
    let mut r = reqwest::Client::new()
        .post(format!("http://{}{path}", server.addr))
        .header(AUTHORIZATION, format!("Bearer {TOKEN}"));
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.unwrap();
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert!(status.is_success(), "POST {path}: {status} {v}");
    v
}

/// `name`'s row in a snapshot (null until the node has heard of it).
fn agent_of<'a>(fleet: &'a Value, name: &str) -> &'a Value {
    fleet["agents"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["name"] == name))
        .unwrap_or(&Value::Null)
}

fn node_of<'a>(fleet: &'a Value, name: &str) -> &'a Value {
    fleet["nodes"]
        .as_array()
        .and_then(|n| n.iter().find(|n| n["node"] == name))
        .unwrap_or(&Value::Null)
}

/// The value of the series `series` (`name{labels}` exactly as written) in `text`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nodes_dashboard_shows_and_steers_the_agents_of_another_node() {
    // a has one run slot, b four: new agents go to b.
    let TwoNodes {
        mock,
        a,
        b: _b,
        on_a,
        on_b,
        ..
    } = two_nodes(&["--max-running", "1"], &["--max-running", "4"], "").await;

    // x, on b, runs a tool that holds until the test writes `go`.
    mock.script(
        "[x]",
        vec![
            Step::tool(
                "run_command",
                json!({"command": "while [ ! -f go ]; do sleep 0.05; done; echo one > step1.txt"}),
            ),
            Step::text("x finished after resume"),
        ],
    );
    let created = on_a.create("x", "[x] do the steps").await;
    let dir = on_a.agent_dir(&created);
    assert_eq!(on_a.status("x").await["node"], "b");
    on_b.status_until("x", "its tool runs on b", |s| {
        s["activity"]
            .as_str()
            .is_some_and(|a| a.starts_with("run_command"))
    })
    .await;

    // a's snapshot: b's agent with its node, both nodes healthy, b's agent counted.
    let snap = eventually("a's dashboard shows x running on b", async || {
        let f = fleet(&a).await;
        let x = agent_of(&f, "x");
        (x["node"] == "b" && x["status"] == "running" && node_of(&f, "b")["agents"] == 1)
            .then_some(f)
    })
    .await;
    for n in ["a", "b"] {
        assert_eq!(node_of(&snap, n)["healthy"], true, "{snap}");
    }
    assert_eq!(node_of(&snap, "b")["free_slots"], 3, "{snap}");
    assert_eq!(node_of(&snap, "a")["agents"], 0, "{snap}");
    let metrics = eventually("a's /metrics shows both nodes", async || {
        let text = get(&a, "/metrics").await.text().await.unwrap();
        (sample(&text, "flotilla_node_running{node=\"b\"}") == Some(1.0)).then_some(text)
    })
    .await;
    for (series, value) in [
        ("flotilla_node_healthy{node=\"a\"}", 1.0),
        ("flotilla_node_healthy{node=\"b\"}", 1.0),
        ("flotilla_node_agents{node=\"a\"}", 0.0),
        ("flotilla_node_agents{node=\"b\"}", 1.0),
        ("flotilla_node_free_slots{node=\"a\"}", 1.0),
        ("flotilla_node_free_slots{node=\"b\"}", 3.0),
    ] {
        assert_eq!(sample(&metrics, series), Some(value), "{series}\n{metrics}");
    }
    let age = sample(&metrics, "flotilla_node_heartbeat_age_seconds{node=\"b\"}");
    assert!(age.is_some_and(|s| s < 3.0), "{metrics}");
    assert!(
        metrics.contains("flotilla_agents{status=\"running\"} 1"),
        "{metrics}"
    );

    // a's dashboard pauses x: b holds it after the tool in hand.
    let paused = post(&a, "/api/agents/x/pause", None).await;
    assert_eq!(paused["changed"], true, "{paused}");
    std::fs::write(dir.join("go"), "").unwrap();
    let held = on_b.wait_all(&["x"]).await;
    assert_eq!(row(&held["agents"], "x")["status"], "paused", "{held}");
    assert!(dir.join("step1.txt").exists(), "the tool in hand finished");
    assert_eq!(
        mock.requests_for("[x]").len(),
        1,
        "a model call while paused"
    );
    // a's dashboard resumes x: it runs on, on b.
    let resumed = post(&a, "/api/agents/x/resume", None).await;
    assert_eq!(resumed["changed"], true, "{resumed}");
    let done = on_b.wait_all(&["x"]).await;
    assert_eq!(row(&done["agents"], "x")["status"], "idle", "{done}");
    assert_eq!(on_b.output("x").await["text"], "x finished after resume");
    assert_eq!(mock.requests_for("[x]").len(), 2);

    // q, on b, asks; a's dashboard answers; the answer reaches q's model call on b.
    mock.script(
        "[q]",
        vec![
            Step::tool(
                "ask_orchestrator",
                json!({"question": "keep v1 or v2?", "options": ["v1", "v2"]}),
            ),
            Step::text("kept v2"),
        ],
    );
    on_b.create("q", "[q] clean up").await;
    assert_eq!(on_b.status("q").await["node"], "b");
    let asked = eventually("a's dashboard shows q's question", async || {
        let f = fleet(&a).await;
        let q = agent_of(&f, "q").clone();
        (q["status"] == "needs_input").then_some(q)
    })
    .await;
    assert_eq!(asked["question"], "keep v1 or v2?", "{asked}");
    assert_eq!(asked["options"], json!(["v1", "v2"]), "{asked}");
    let answered = post(&a, "/api/agents/q/answer", Some(json!({"answer": "v2"}))).await;
    assert_eq!(answered["answered"], true, "{answered}");
    assert_eq!(answered["command"], 1, "{answered}");
    let done = on_b.wait_all(&["q"]).await;
    assert_eq!(row(&done["agents"], "q")["status"], "idle", "{done}");
    assert_eq!(on_b.output("q").await["text"], "kept v2");
    let second = &mock.requests_for("[q]")[1];
    assert!(
        second.tool_results().iter().any(|r| r.content == "v2"),
        "{:?}",
        second.tool_results()
    );
    let answered_by = on_b
        .call(
            "get_agent_events",
            json!({"agent": "q", "kinds": ["answered"]}),
        )
        .await;
    let summary = answered_by["events"][0]["summary"].as_str().unwrap_or("");
    assert!(summary.contains("dashboard"), "{answered_by}");

    eventually("a's dashboard shows both idle", async || {
        let f = fleet(&a).await;
        agent_of(&f, "x")["status"] == "idle" && agent_of(&f, "q")["status"] == "idle"
    })
    .await;
    in_a_browser(&a).await;
    mock.assert_no_protocol_problems();
}

/// Render a's page in headless Chromium: the header shows both nodes, the table each
/// row's node. Skipped (saying why) without Chromium, unless `CI` is set.
async fn in_a_browser(a: &HttpServer) {
    let Some(binary) = CHROMIUM.iter().find(|p| std::path::Path::new(p).exists()) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium is not installed"
        );
        eprintln!("skipping the browser check: chromium is not installed");
        return;
    };
    let url = format!("http://{}/?token={TOKEN}", a.addr);
    let expected = [
        "<body class=\"cluster\">",
        "data-node=\"a\" data-healthy=\"true\"",
        "data-node=\"b\" data-healthy=\"true\"",
        // x's row, in the node column.
        "<td class=\"c-node\">b</td>",
    ];
    // The dump comes when the page has loaded, maybe before its first snapshot did:
    // look again until it shows.
    eventually("a's page shows the nodes and each row's node", async || {
        let dom = chromium(binary, "--dump-dom", &url).await;
        match expected.iter().find(|e| !dom.contains(*e)) {
            None => Ok(()),
            Some(e) => Err(format!("no {e} in\n{dom}")),
        }
    })
    .await;
    if let Some(path) = std::env::var_os("FLOTILLA_CLUSTER_SCREENSHOT") {
        let path = path.to_string_lossy().into_owned();
        chromium(binary, &format!("--screenshot={path}"), &url).await;
        assert!(
            std::path::Path::new(&path).exists(),
            "no screenshot at {path}"
        );
        eprintln!("screenshot saved to {path}");
    }
}

/// Run headless Chromium on `url` with `what` (`--dump-dom`, `--screenshot=…`) once the
/// page has loaded (its live feed never ends: `--virtual-time-budget` would wait for
/// it forever); its stdout.
async fn chromium(binary: &str, what: &str, url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let child = tokio::process::Command::new(binary)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1400,600",
            "--timeout=3000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(what)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start chromium");
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("chromium did not finish within 60s")
        .expect("chromium's output");
    assert!(out.status.success(), "chromium: {}", out.status);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_node_fleet_shows_no_nodes() {
    let server = HttpServer::start().await;
    server.mock.script("[o]", vec![Step::text("done")]);
    let fl = server.client().await;
    fl.create("o", "[o] go").await;
    fl.wait_all(&["o"]).await;
    let f = fleet(&server).await;
    assert!(f.get("nodes").is_none(), "{f}");
    assert!(agent_of(&f, "o").get("node").is_none(), "{f}");
    let text = get(&server, "/metrics").await.text().await.unwrap();
    assert!(
        text.contains("flotilla_agents{status=\"idle\"} 1"),
        "{text}"
    );
    assert!(!text.contains("flotilla_node_"), "{text}");
    server.kill().await;
}
