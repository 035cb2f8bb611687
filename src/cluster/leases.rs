//! Leases: which node runs which agent. A node renews its leases every `lease_s / 3`;
//! when it misses them for a whole `lease_s` (dead, stopped, cut off) another node that
//! can serve the agent's work directory claims the lease with a token one higher and
//! resumes the agent from its log. The token fences the old node out: the store refuses
//! its appends, and the old node stops the agent as soon as it sees the lease gone (or
//! sees that it could not renew in time, before it writes anything).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedReceiver;

use super::Cluster;
use crate::sync::lock;

/// Most agents one node takes over per heartbeat (the rest follow at the next one).
const TAKE_PER_BEAT: i64 = 64;

/// Renew, report, read the fleet and take over, every `lease_s / 3`, until shutdown.
pub(super) async fn heartbeats(cluster: Arc<Cluster>) {
    let period = (cluster.lease() / 3).max(Duration::from_millis(500));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = cluster.cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        cluster.heartbeat().await;
    }
}

/// Stop every agent whose append the store refused for a stale lease.
pub(super) async fn fenced(cluster: Arc<Cluster>, mut ids: UnboundedReceiver<String>) {
    loop {
        let id = tokio::select! {
            _ = cluster.cancel.cancelled() => return,
            id = ids.recv() => match id { Some(id) => id, None => return },
        };
        cluster.lost(&id).await;
    }
}

impl Cluster {
    /// One beat. A node that could not renew for a whole lease stops its agents first:
    /// another node may run them already.
    pub(super) async fn heartbeat(self: &Arc<Self>) {
        if self.renewed().elapsed() > self.lease() {
            let held: Vec<String> = self.held();
            if !held.is_empty() {
                tracing::warn!(
                    agents = held.len(),
                    "this node could not renew its leases for {:?}: stopping its agents (another node may run them now)",
                    self.lease()
                );
                for id in held {
                    self.lost(&id).await;
                }
            }
        }
        if let Err(e) = self.renew().await {
            tracing::warn!("heartbeat: cannot renew this node's leases: {e}");
            return;
        }
        if let Err(e) = self.report().await {
            tracing::warn!("heartbeat: cannot update this node's row: {e}");
        }
        match self.read_nodes().await {
            Ok(rows) => {
                *crate::sync::write(&self.nodes) = rows;
                self.flag_orphans();
            }
            Err(e) => tracing::warn!("heartbeat: cannot read the fleet's nodes: {e}"),
        }
        if let Err(e) = self.read_spend().await {
            tracing::warn!("heartbeat: cannot read the fleet's spend: {e}");
        }
        if let Err(e) = self.take_over().await {
            tracing::warn!("heartbeat: cannot take over agents: {e}");
        }
        self.serve_requests().await;
    }

    /// Agents this node holds a lease on.
    fn held(&self) -> Vec<String> {
        self.shared.leases.iter().map(|e| e.key().clone()).collect()
    }

    /// Extend every lease this node holds; stop the agents whose lease another node
    /// has now.
    async fn renew(self: &Arc<Self>) -> anyhow::Result<()> {
        let began = Instant::now();
        let held = self.held();
        let client = self.shared.pool.get().await?;
        let rows = client
            .query(
                "UPDATE leases SET expires_at = now() + make_interval(secs => $2)
                 WHERE node = $1 AND agent_id = ANY($3) RETURNING agent_id, token",
                &[&self.node(), &self.lease().as_secs_f64(), &held],
            )
            .await?;
        *lock(&self.renewed) = began;
        let renewed: BTreeMap<String, i64> = rows
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1)))
            .collect();
        let stale: Vec<String> = self
            .shared
            .leases
            .iter()
            .filter(|e| renewed.get(e.key()) != Some(e.value()))
            .map(|e| e.key().clone())
            .collect();
        if stale.is_empty() {
            return Ok(());
        }
        // Not renewed: lost to another node, or not written yet (an agent being
        // created), or deleted. Only the first stops the agent.
        let rows = client
            .query(
                "SELECT agent_id, node, token FROM leases WHERE agent_id = ANY($1)",
                &[&stale],
            )
            .await?;
        drop(client);
        for r in rows {
            let id: String = r.get(0);
            let node: String = r.get(1);
            let token: i64 = r.get(2);
            let mine = self.shared.leases.get(&id).map(|t| *t);
            if node != self.node() || Some(token) != mine {
                tracing::warn!(agent_id = %id, now = %node, "lease lost to another node");
                self.lost(&id).await;
            }
        }
        Ok(())
    }

    /// This node no longer runs `agent_id`: stop it at once and show it as a mirror.
    pub(super) async fn lost(self: &Arc<Self>, agent_id: &str) {
        // Out of the map first: from now on the store refuses this node's appends.
        let token = self.shared.leases.remove(agent_id).map(|(_, t)| t);
        let owner = self.owner(agent_id).await.ok().flatten();
        let log = self
            .registry
            .store()
            .load_agent(agent_id)
            .await
            .ok()
            .flatten();
        self.registry
            .demote(agent_id, log, owner.as_deref().unwrap_or("?"))
            .await;
        // Still ours in the store (this node could not renew in time, and nobody took
        // it yet): let it go now, so a node that can renew takes it over.
        if let Some(token) = token {
            self.let_go(agent_id, token).await;
        }
        self.refresh(agent_id);
    }

    /// Let the lease of `agent_id` (held with `token`) expire now: the next node
    /// able to run the agent takes it over.
    async fn let_go(&self, agent_id: &str, token: i64) {
        self.let_go_for(agent_id, token, Duration::ZERO).await;
    }

    /// Let the lease go, to expire `after` from now.
    async fn let_go_for(&self, agent_id: &str, token: i64, after: Duration) {
        self.shared.leases.remove(agent_id);
        let released = match self.shared.pool.get().await {
            Ok(client) => client
                .execute(
                    "UPDATE leases SET expires_at = now() + make_interval(secs => $4)
                     WHERE agent_id = $1 AND node = $2 AND token = $3",
                    &[&agent_id, &self.node(), &token, &after.as_secs_f64()],
                )
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = released {
            tracing::warn!(agent_id, "cannot release the lease: {e}");
        }
    }

    /// Claim expired leases of agents this node can serve, as many as it has free run
    /// slots (or [`TAKE_PER_BEAT`]), and resume those agents here.
    async fn take_over(self: &Arc<Self>) -> anyhow::Result<()> {
        let slots = &self.registry.fleet().slots;
        let free = match slots.max() {
            0 => TAKE_PER_BEAT,
            max => (max.saturating_sub(slots.running()) as i64).clamp(1, TAKE_PER_BEAT),
        };
        let roots: Vec<String> = self
            .options
            .roots
            .iter()
            .map(|r| r.to_string_lossy().trim_end_matches('/').to_string())
            .collect();
        let mut client = self.shared.pool.get().await?;
        let tx = client.transaction().await?;
        crate::store::postgres::bound_transaction(&tx, self.lease()).await?;
        let rows = tx
            .query(
                "WITH expired AS (
                     SELECT l.agent_id, l.node AS was FROM leases l
                     WHERE l.expires_at < now()
                       AND (l.workdir = ''
                            OR EXISTS (SELECT 1 FROM unnest($4::text[]) AS r(root)
                                   WHERE l.workdir = r.root OR l.workdir LIKE r.root || '/%'
                                      OR r.root = ''))
                     ORDER BY l.expires_at
                     FOR UPDATE SKIP LOCKED LIMIT $3)
                 UPDATE leases l SET node = $1, token = l.token + 1,
                        expires_at = now() + make_interval(secs => $2)
                 FROM expired WHERE l.agent_id = expired.agent_id
                 RETURNING l.agent_id, l.token, expired.was",
                &[&self.node(), &self.lease().as_secs_f64(), &free, &roots],
            )
            .await?;
        let taken: Vec<String> = rows.iter().map(|r| r.get::<_, String>(0)).collect();
        if !taken.is_empty() {
            // Calls forwarded to the old owner come here now.
            tx.execute(
                "UPDATE requests SET node = $1, claimed_by = NULL
                 WHERE agent_id = ANY($2) AND result IS NULL",
                &[&self.node(), &taken],
            )
            .await?;
        }
        tx.commit().await?;
        drop(client);
        for r in rows {
            let id: String = r.get(0);
            let token: i64 = r.get(1);
            let was: String = r.get(2);
            self.shared.leases.insert(id.clone(), token);
            match self.registry.store().load_agent(&id).await {
                Ok(Some(log)) if let Some(wt) = self.registry.worktree_to_bring(&log) => {
                    // Its worktree is made here from the git remote first: off the
                    // heartbeat (a fetch can take long), which keeps renewing the lease.
                    let cluster = self.clone();
                    self.tracker.spawn(async move {
                        cluster
                            .take_over_with_worktree(id, token, was, log, wt)
                            .await;
                    });
                }
                Ok(Some(log)) => {
                    let report = self.registry.take_over(log, self.node(), None);
                    tracing::info!(agent_id = %id, from = %was, resumed = report.resumed, "took over the agent from node {was}");
                }
                Ok(None) => {
                    self.shared.leases.remove(&id);
                }
                Err(e) => {
                    tracing::error!(agent_id = %id, "took the lease but cannot read the agent's log: {e}");
                }
            }
        }
        Ok(())
    }

    /// Take over an agent whose worktree must be made on this node from its git
    /// remote. If it cannot be (the remote unreachable, its branch gone), the lease is
    /// let go for a lease's time, and the agent's status says why.
    async fn take_over_with_worktree(
        self: Arc<Self>,
        id: String,
        token: i64,
        was: String,
        log: crate::store::AgentLog,
        wt: crate::worktree::Worktree,
    ) {
        let moved = tokio::select! {
            _ = self.cancel.cancelled() => return,
            moved = self.registry.bring_worktree(&wt) => moved,
        };
        let still_ours = self.shared.leases.get(&id).map(|t| *t) == Some(token);
        match moved {
            Ok(moved) if still_ours => {
                self.stuck.remove(&id);
                let report = self.registry.take_over(log, self.node(), Some(moved));
                tracing::info!(agent_id = %id, from = %was, resumed = report.resumed, "took over the agent from node {was}, its worktree made here from the git remote");
            }
            Ok(_) => {
                tracing::warn!(agent_id = %id, "lost the lease while making the agent's worktree; another node runs it");
            }
            Err(e) => {
                let why = format!(
                    "node {} could not make its worktree from the git remote: {e}; it tries again in {}s (another node may first)",
                    self.node(),
                    self.lease().as_secs()
                );
                tracing::error!(agent_id = %id, from = %was, "cannot take the agent over: {why}");
                if let Ok(h) = self.registry.get(&id) {
                    h.note_orphaned(&why);
                }
                self.stuck.insert(id.clone(), why);
                self.let_go_for(&id, token, self.lease()).await;
            }
        }
    }

    /// At start: the leases this node still holds (it restarted before they expired),
    /// with fresh tokens.
    pub(super) async fn reclaim(&self) -> anyhow::Result<BTreeSet<String>> {
        let client = self.shared.pool.get().await?;
        let rows = client
            .query(
                "UPDATE leases SET token = token + 1,
                        expires_at = now() + make_interval(secs => $2)
                 WHERE node = $1 RETURNING agent_id, token",
                &[&self.node(), &self.lease().as_secs_f64()],
            )
            .await?;
        *lock(&self.renewed) = Instant::now();
        let mut held = BTreeSet::new();
        for r in rows {
            let id: String = r.get(0);
            self.shared.leases.insert(id.clone(), r.get(1));
            held.insert(id);
        }
        Ok(held)
    }

    /// Which node holds each agent's lease.
    pub(super) async fn owners(&self) -> anyhow::Result<BTreeMap<String, String>> {
        let client = self.shared.pool.get().await?;
        let rows = client
            .query("SELECT agent_id, node FROM leases", &[])
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// The node that holds one agent's lease.
    pub(super) async fn owner(&self, agent_id: &str) -> anyhow::Result<Option<String>> {
        let client = self.shared.pool.get().await?;
        let row = client
            .query_opt("SELECT node FROM leases WHERE agent_id = $1", &[&agent_id])
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Let this node's leases expire now (it is stopping on purpose).
    pub(super) async fn release(&self) -> anyhow::Result<()> {
        let client = self.shared.pool.get().await?;
        client
            .execute(
                "UPDATE leases SET expires_at = now() WHERE node = $1",
                &[&self.node()],
            )
            .await?;
        client
            .execute(
                "UPDATE nodes SET heartbeat_at = now() - interval '1 day' WHERE node = $1",
                &[&self.node()],
            )
            .await?;
        self.shared.leases.clear();
        Ok(())
    }

    /// The fleet's spend as the store has it.
    async fn read_spend(&self) -> anyhow::Result<()> {
        let client = self.shared.pool.get().await?;
        if let Some(r) = client
            .query_opt("SELECT cost_usd, tokens FROM fleet_spend WHERE id = 1", &[])
            .await?
        {
            let tokens: i64 = r.get(1);
            self.registry.fleet().budget.observe(crate::pricing::Spend {
                cost_usd: r.get(0),
                tokens: tokens.max(0) as u64,
            });
        }
        Ok(())
    }
}
