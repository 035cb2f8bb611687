//! Fleets of several nodes for the tests: real flotilla processes on one machine
//! sharing one throwaway PostgreSQL database (`--store`), each serving MCP (and its
//! dashboard) over HTTP, with short leases so failover stays quick.

use std::sync::Arc;

use serde_json::json;

use super::{DEFAULT_CONFIG, Flotilla, HttpServer, MockModel, eventually};

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
