//! A fleet of several flotilla nodes on one machine: each a real release binary over
//! stdio, all on one fresh PostgreSQL database (`--store`, `--node NAME`) and one
//! shared work directory (so every node serves every agent), one mock model for all.
//! [`Nodes::start_apart`] gives each node a work directory of its own instead (nodes
//! that share no filesystem; each node's data directory is always its own).

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::mock::write_project;
use crate::server::Server;
use crate::store::database;

pub struct Nodes {
    /// In the order of the names given to [`Nodes::start`].
    pub nodes: Vec<Server>,
    pub names: Vec<String>,
    /// The shared work directory (removed with the fleet).
    _work: tempfile::TempDir,
}

impl Nodes {
    /// Start one node per name on a fresh database, with `config` (e.g. `[cluster]
    /// lease_s = 3`) and `env`, and wait until every node sees all of them healthy.
    pub async fn start(mock_url: &str, names: &[&str], config: &str, env: &[(&str, &str)]) -> Self {
        let db = database();
        let work = tempfile::tempdir().expect("shared work dir");
        write_project(work.path());
        let mut nodes = Vec::with_capacity(names.len());
        for name in names {
            nodes.push(Server::start_node(mock_url, &db, name, work.path(), config, env).await);
        }
        let fleet = Self {
            nodes,
            names: names.iter().map(|n| n.to_string()).collect(),
            _work: work,
        };
        for node in &fleet.nodes {
            fleet.until_healthy(node).await;
        }
        fleet
    }

    /// Start one node per `(name, work directory, config)` on a fresh database, and wait
    /// until every node sees all of them healthy. The work directories stay the
    /// caller's.
    pub async fn start_apart(
        mock_url: &str,
        nodes: &[(&str, &Path, &str)],
        env: &[(&str, &str)],
    ) -> Self {
        let db = database();
        let mut servers = Vec::with_capacity(nodes.len());
        for (name, work, config) in nodes {
            servers.push(Server::start_node(mock_url, &db, name, work, config, env).await);
        }
        let fleet = Self {
            nodes: servers,
            names: nodes.iter().map(|(n, ..)| n.to_string()).collect(),
            _work: tempfile::tempdir().expect("unused shared work dir"),
        };
        for node in &fleet.nodes {
            fleet.until_healthy(node).await;
        }
        fleet
    }

    /// The node named `name`.
    pub fn node(&self, name: &str) -> &Server {
        let i = self
            .names
            .iter()
            .position(|n| n == name)
            .unwrap_or_else(|| panic!("no node {name}"));
        &self.nodes[i]
    }

    /// Take the node named `name` out of the fleet (to kill or stop it).
    pub fn take(&mut self, name: &str) -> Server {
        let i = self
            .names
            .iter()
            .position(|n| n == name)
            .unwrap_or_else(|| panic!("no node {name}"));
        self.names.remove(i);
        self.nodes.remove(i)
    }

    /// Until `server` lists every node of the fleet as healthy (a node writes its row at
    /// its first heartbeat; placement only considers the rows it has read).
    async fn until_healthy(&self, server: &Server) {
        let started = Instant::now();
        loop {
            let list = server.call_ok("list_agents", json!({"limit": 1})).await;
            let healthy = |name: &String| {
                list["nodes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|n: &Value| {
                        n["node"].as_str() == Some(name.as_str()) && n["healthy"] == true
                    })
            };
            if self.names.iter().all(healthy) {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "nodes {:?} not all healthy after 60 s: {}",
                self.names,
                list["nodes"]
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn stop(self) {
        for node in self.nodes {
            node.stop().await;
        }
    }
}
