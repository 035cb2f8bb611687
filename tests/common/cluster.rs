//! Fleets of several nodes for the tests: real flotilla processes on one machine
//! sharing one throwaway PostgreSQL database (`--store`), each serving MCP (and its
//! dashboard) over HTTP, with short leases so failover stays quick.

use std::sync::Arc;

use serde_json::json;

use super::{DEFAULT_CONFIG, Flotilla, HttpServer, MockModel, Step, eventually};

/// Short leases keep failover tests quick: heartbeats every second.
pub const LEASE_S: u64 = 3;

fn config(extra: &str) -> String {
    format!("{DEFAULT_CONFIG}\n[cluster]\nlease_s = {LEASE_S}\n{extra}")
}

/// A node named `name` on `db`, sharing `root` (work directory, data) and `mock`.
pub async fn node(
    db: &str,
    name: &str,
    root: &Arc<tempfile::TempDir>,
    mock: &MockModel,
    args: &[&str],
    extra_config: &str,
) -> HttpServer {
    let mut b = Flotilla::builder()
        .with_test_token()
        .root(root.clone())
        .mock(mock.clone())
        .config(&config(extra_config))
        .arg("--store")
        .arg(db)
        .arg("--node")
        .arg(name);
    for a in args {
        b = b.arg(a);
    }
    b.start_http().await
}

/// Through `client`, create `first`, a worktree agent whose task writes `feature.txt`
/// ("from a") and answers.
pub async fn create_first_writer(mock: &MockModel, client: &Flotilla) {
    mock.script(
        "[first]",
        vec![
            Step::tool(
                "write_file",
                json!({"path": "feature.txt", "content": "from a\n"}),
            ),
            Step::text("wrote it"),
        ],
    );
    client
        .call(
            "create_agent",
            json!({"name": "first", "task": "[first] write", "isolation": "worktree"}),
        )
        .await;
}

/// Until `client` sees every node in `names` healthy.
pub async fn until_nodes(client: &Flotilla, names: &[&str]) {
    eventually(&format!("nodes {names:?} healthy"), async || {
        let list = client.call("list_agents", json!({})).await;
        let healthy: Vec<String> = list["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|n| n["healthy"] == true)
            .filter_map(|n| n["node"].as_str().map(String::from))
            .collect();
        names.iter().all(|n| healthy.iter().any(|h| h == n))
    })
    .await;
}

/// Nodes `a` and `b` on a fresh database, sharing a fresh root (each node holds it)
/// and mock, with a client each; `a`'s client has seen both healthy.
pub struct TwoNodes {
    pub db: String,
    pub mock: MockModel,
    pub a: HttpServer,
    pub b: HttpServer,
    pub on_a: Flotilla,
    pub on_b: Flotilla,
}

/// Start [`TwoNodes`]: `a_args` and `b_args` for each node's command line, `extra`
/// for both configs' `[cluster]` section.
pub async fn two_nodes(a_args: &[&str], b_args: &[&str], extra: &str) -> TwoNodes {
    let db = super::postgres::database();
    let root = Arc::new(tempfile::tempdir().expect("temp dir"));
    let mock = MockModel::start().await;
    let a = node(&db, "a", &root, &mock, a_args, extra).await;
    let b = node(&db, "b", &root, &mock, b_args, extra).await;
    let on_a = a.client().await;
    let on_b = b.client().await;
    until_nodes(&on_a, &["a", "b"]).await;
    TwoNodes {
        db,
        mock,
        a,
        b,
        on_a,
        on_b,
    }
}
