//! The fleet's nodes: each writes its row at every heartbeat (run slots, agents, the
//! directories it serves, its address) and reads everyone's, for placement and for the
//! health shown by `list_agents`, the dashboard and `/metrics`.

use std::path::Path;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::Serialize;

use super::Cluster;

/// One node of the fleet, as its last heartbeat left it.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct NodeRow {
    pub node: String,
    /// Heartbeats come every `lease_s / 3`; none for `lease_s` means it is gone.
    pub healthy: bool,
    /// Seconds since its last heartbeat.
    pub heartbeat_age_s: f64,
    /// Agents it runs.
    pub agents: u32,
    /// Agents running a command there now.
    pub running: u32,
    /// Run slots free there (null: no limit).
    pub free_slots: Option<u32>,
    /// Its MCP address, when it listens on HTTP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Directories whose agents it can run.
    #[serde(skip)]
    pub roots: Vec<String>,
}

impl NodeRow {
    /// Whether it can run an agent working in `dir`.
    pub fn serves(&self, dir: &Path) -> bool {
        let dir = dir.to_string_lossy();
        self.roots.iter().any(|r| {
            let r = r.trim_end_matches('/');
            r.is_empty() || dir == r || dir.starts_with(&format!("{r}/"))
        })
    }

    fn free(&self) -> u32 {
        self.free_slots.unwrap_or(u32::MAX)
    }
}

impl Cluster {
    /// Write this node's row.
    pub(super) async fn report(&self) -> anyhow::Result<()> {
        let slots = &self.registry.fleet().slots;
        let local = self.registry.local_agents();
        let roots: Vec<String> = self
            .options
            .roots
            .iter()
            .map(|r| r.to_string_lossy().into_owned())
            .collect();
        let client = self.shared.pool.get().await?;
        let row = client
            .query_one(
                "WITH prev AS (SELECT instance FROM nodes WHERE node = $1)
                 INSERT INTO nodes (node, heartbeat_at, started_at, max_running, running, agents, roots, url, instance)
                 VALUES ($1, now(), now(), $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (node) DO UPDATE SET heartbeat_at = now(),
                   max_running = excluded.max_running, running = excluded.running,
                   agents = excluded.agents, roots = excluded.roots, url = excluded.url,
                   instance = excluded.instance
                 RETURNING (SELECT instance FROM prev)",
                &[
                    &self.node(),
                    &(slots.max() as i32),
                    &(slots.running() as i32),
                    &(local.len() as i32),
                    &roots,
                    &self.options.url,
                    &self.instance,
                ],
            )
            .await?;
        // Since this node's last beat another process wrote its row: two processes run
        // under one name (the first beat may find this node's previous life).
        let prev: Option<String> = row.get(0);
        let before = self
            .reported
            .swap(true, std::sync::atomic::Ordering::Relaxed);
        if before && prev.is_some_and(|p| p != self.instance) {
            tracing::error!(
                node = %self.node(),
                "another flotilla process is running as node {}: two processes under one --node renew the same leases, and nothing stops both running one agent. Stop one of them, or give it its own --node",
                self.node()
            );
        }
        Ok(())
    }

    /// Every node's row, healthy ones first.
    pub(super) async fn read_nodes(&self) -> anyhow::Result<Vec<NodeRow>> {
        let client = self.shared.pool.get().await?;
        let rows = client
            .query(
                "SELECT node, EXTRACT(EPOCH FROM (now() - heartbeat_at))::float8,
                        max_running, running, agents, roots, url
                 FROM nodes ORDER BY node",
                &[],
            )
            .await?;
        let lease = self.lease().as_secs_f64();
        let mut nodes: Vec<NodeRow> = rows
            .iter()
            .map(|r| {
                let age: f64 = r.get(1);
                let max: i32 = r.get(2);
                let running: i32 = r.get(3);
                NodeRow {
                    node: r.get(0),
                    healthy: age < lease,
                    heartbeat_age_s: (age.max(0.0) * 10.0).round() / 10.0,
                    agents: r.get::<_, i32>(4).max(0) as u32,
                    running: running.max(0) as u32,
                    free_slots: (max > 0).then(|| (max - running).max(0) as u32),
                    roots: r.get(5),
                    url: r.get(6),
                }
            })
            .collect();
        nodes.sort_by_key(|n| !n.healthy);
        Ok(nodes)
    }

    /// Where a new agent working in `dir` goes: the healthy node serving `dir` (any
    /// node, without one: a worktree agent with a git remote) with the most free run
    /// slots (then the fewest agents; this node wins a tie). `None`: no node serves
    /// `dir`. With `runs`, the chosen node's free slots are counted down
    /// until its next heartbeat, so a burst of creates spreads out.
    pub fn place(self: &Arc<Self>, dir: Option<&Path>, runs: bool) -> Option<String> {
        let me = self.node().to_string();
        let mut nodes = crate::sync::write(&self.nodes);
        if !nodes.iter().any(|n| n.node == me) && dir.is_none_or(|d| self.serves(d)) {
            return Some(me);
        }
        let best = nodes
            .iter_mut()
            .filter(|n| n.healthy && dir.is_none_or(|d| n.serves(d)))
            .max_by(|a, b| {
                a.free()
                    .cmp(&b.free())
                    .then(b.agents.cmp(&a.agents))
                    .then((a.node == me).cmp(&(b.node == me)))
            })?;
        best.agents += 1;
        if runs {
            best.running += 1;
            if let Some(f) = best.free_slots.as_mut() {
                *f = f.saturating_sub(1);
            }
        }
        Some(best.node.clone())
    }

    /// Agents whose node stopped heartbeating say so, and whether a node can take
    /// them over (one that serves their work directory), or they wait for one.
    pub(super) fn flag_orphans(&self) {
        let nodes = crate::sync::read(&self.nodes);
        for h in self.registry.unsorted() {
            if !h.is_mirror() {
                continue;
            }
            let Some(owner) = h.node() else { continue };
            let Some(row) = nodes.iter().find(|n| *n.node == *owner) else {
                continue;
            };
            if row.healthy {
                continue;
            }
            if let Some(why) = self.stuck.get(&h.id) {
                h.note_orphaned(&why);
                continue;
            }
            let dir = &h.settings.workdir;
            let anywhere = h.settings.remote_worktree().is_some();
            let why = if anywhere && nodes.iter().any(|n| n.healthy) {
                format!(
                    "its node {owner} stopped heartbeating {:.0}s ago; another node takes it over and rebuilds its worktree from its branch in the remote",
                    row.heartbeat_age_s
                )
            } else if nodes.iter().any(|n| n.healthy && n.serves(dir)) {
                format!(
                    "its node {owner} stopped heartbeating {:.0}s ago; a node serving {} takes it over",
                    row.heartbeat_age_s,
                    dir.display()
                )
            } else {
                format!(
                    "its node {owner} stopped heartbeating {:.0}s ago, and no healthy node serves {}: it waits for one",
                    row.heartbeat_age_s,
                    dir.display()
                )
            };
            h.note_orphaned(&why);
        }
    }

    /// Whether this node can run an agent working in `dir`.
    pub fn serves(&self, dir: &Path) -> bool {
        self.options.roots.iter().any(|r| dir.starts_with(r))
    }
}
