//! One fleet served by several nodes that share a PostgreSQL store (`--store
//! postgres://…`). Each node runs the agents it holds a lease on and mirrors the rest:
//!
//! - [`leases`]: a lease per agent (`leases` table), renewed by this node's heartbeat
//!   every `lease_s / 3`. An expired lease is claimed by a node that can serve the
//!   agent's work directory (`FOR UPDATE SKIP LOCKED`, the token raised by one), which
//!   replays the agent and resumes its command as after a restart. Every append carries
//!   the token (the store refuses a stale one), and a node that finds a lease gone stops
//!   that agent at once.
//! - [`listen`]: one `LISTEN` connection: `flotilla_events` (an agent's log grew: refresh
//!   its mirror), `flotilla_requests` (a tool call forwarded to this node),
//!   `flotilla_replies` (the answer to one this node forwarded).
//! - [`forward`]: tool calls for an agent another node runs go through the `requests`
//!   table to its owner, which answers them as if they were its own.
//! - [`nodes`]: each node's row (heartbeat, run slots, agents, the directories it
//!   serves), read for placement and for the fleet's health.
//!
//! With the default SQLite store there is no cluster: one node, nothing here runs.

mod forward;
mod leases;
mod listen;
pub mod nodes;
mod slots;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::registry::Registry;
use crate::store::AgentLog;
use crate::store::postgres::Shared;
use crate::sync::{lock, read};

pub use forward::{Executor, Forwarded, refusal};
pub use nodes::NodeRow;

/// The shortest time between two refreshes of one mirror.
const REFRESH_EVERY: Duration = Duration::from_millis(100);

/// What a node needs to join the fleet.
pub struct ClusterOptions {
    /// Directories whose agents this node can run (its work directory and roots).
    pub roots: Vec<PathBuf>,
    /// The node's MCP address, shown to the others (when it listens on HTTP).
    pub url: Option<String>,
    /// Fleet-wide cap on agents running a command at once (`[cluster] max_running`).
    pub max_running: Option<usize>,
    /// Resume commands in progress on agents this node held before it restarted.
    pub resume: bool,
}

/// This node's membership of the fleet.
pub struct Cluster {
    shared: Arc<Shared>,
    registry: Arc<Registry>,
    options: ClusterOptions,
    /// The other nodes as last read, and this one.
    nodes: RwLock<Vec<NodeRow>>,
    /// Forwarded calls waiting for their answer, by request id.
    waiting: DashMap<i64, tokio::sync::oneshot::Sender<()>>,
    /// Runs tool calls forwarded to this node (the MCP server, set at start).
    executor: OnceLock<Arc<dyn Executor>>,
    /// Mirrors being refreshed: `true` when another change came in meanwhile.
    refreshing: DashMap<String, bool>,
    /// Agents this node claimed but could not make the worktree of, with why: their
    /// status says so until a takeover succeeds.
    stuck: DashMap<String, String>,
    /// When this node last renewed its leases.
    renewed: Mutex<Instant>,
    /// `[cluster] max_running`, when set.
    slots: Option<Arc<slots::SharedSlots>>,
    /// This process, in its node's row (another process under this node's name
    /// writes another).
    instance: String,
    /// This process has written its node's row once.
    reported: std::sync::atomic::AtomicBool,
    cancel: CancellationToken,
    tracker: TaskTracker,
}

impl Cluster {
    /// Join the fleet: take back the leases this node still held, run those agents
    /// (`owned` of `logs`), mirror the others, then keep heartbeating, listening and
    /// taking over agents whose node went away.
    pub async fn start(
        registry: Arc<Registry>,
        logs: Vec<AgentLog>,
        options: ClusterOptions,
    ) -> anyhow::Result<Arc<Self>> {
        let shared = registry
            .store()
            .shared()
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("a cluster needs the PostgreSQL store"))?;
        let slots = options
            .max_running
            .filter(|n| *n > 0)
            .map(|n| slots::SharedSlots::new(shared.clone(), n));
        let mut bytes = [0u8; 8];
        getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        let instance = format!("{}-{:016x}", std::process::id(), u64::from_le_bytes(bytes));
        let cluster = Arc::new(Self {
            instance,
            reported: std::sync::atomic::AtomicBool::new(false),
            slots,
            shared,
            registry,
            options,
            nodes: RwLock::new(Vec::new()),
            waiting: DashMap::new(),
            executor: OnceLock::new(),
            refreshing: DashMap::new(),
            stuck: DashMap::new(),
            renewed: Mutex::new(Instant::now()),
            cancel: CancellationToken::new(),
            tracker: TaskTracker::new(),
        });
        cluster.budget_in_store();
        if let Some(slots) = &cluster.slots {
            slots.clear_mine().await?;
            let _ = cluster
                .registry
                .fleet()
                .fleet_slots
                .set(Arc::new(slots.clone()));
        }
        let held = cluster.reclaim().await?;
        let owners = cluster.owners().await?;
        let (mine, others): (Vec<_>, Vec<_>) =
            logs.into_iter().partition(|l| held.contains(&l.agent_id));
        if !mine.is_empty() {
            let report = cluster.registry.restore(mine, cluster.options.resume);
            for h in cluster.registry.local_agents() {
                h.set_node(cluster.node());
            }
            tracing::info!(
                agents = report.agents,
                resumed = report.resumed,
                "this node's agents restored"
            );
        }
        for log in others {
            let owner = owners
                .get(&log.agent_id)
                .cloned()
                .unwrap_or_else(|| "?".into());
            cluster.registry.mirror(log, &owner);
        }
        cluster.heartbeat().await;
        cluster.spawn_loops();
        tracing::info!(node = %cluster.node(), lease_s = cluster.lease().as_secs(), "joined the fleet");
        Ok(cluster)
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.shared.node
    }

    pub fn lease(&self) -> Duration {
        self.shared.lease
    }

    /// Set what runs tool calls forwarded to this node (once).
    pub fn set_executor(&self, executor: Arc<dyn Executor>) {
        let _ = self.executor.set(executor);
    }

    /// Every node as last read (this one included), by name.
    pub fn nodes(&self) -> Vec<NodeRow> {
        read(&self.nodes).clone()
    }

    /// Stop heartbeating and listening, and let the leases go so another node takes
    /// this node's agents over at once (their commands resume there).
    pub async fn shutdown(&self) {
        self.cancel.cancel();
        self.tracker.close();
        let _ = tokio::time::timeout(Duration::from_secs(3), self.tracker.wait()).await;
        if let Err(e) = self.release().await {
            tracing::warn!("could not release this node's leases: {e}");
        }
    }

    fn spawn_loops(self: &Arc<Self>) {
        self.tracker.spawn(leases::heartbeats(self.clone()));
        self.tracker.spawn(listen::listen(self.clone()));
        if let Some(fenced) = self.shared.take_fenced() {
            self.tracker.spawn(leases::fenced(self.clone(), fenced));
        }
    }

    /// Fleet spend lives in the store: every model call's spend is added there
    /// atomically, and the fleet's total comes back.
    fn budget_in_store(self: &Arc<Self>) {
        let store = self.registry.store().clone();
        let fleet = Arc::downgrade(self.registry.fleet());
        let tracker = self.tracker.clone();
        self.registry
            .fleet()
            .budget
            .send_charges_to(Box::new(move |delta| {
                let Some(total) = store.charge(delta) else {
                    return;
                };
                let fleet = fleet.clone();
                tracker.spawn(async move {
                    match total.await {
                        Ok(Ok(total)) => {
                            if let Some(f) = fleet.upgrade() {
                                f.budget.observe(total);
                            }
                        }
                        Ok(Err(e)) => tracing::error!("could not charge the fleet's spend: {e}"),
                        Err(_) => {}
                    }
                });
            }));
    }

    /// Refresh the mirror of `agent_id` from its log; coalesces bursts.
    fn refresh(self: &Arc<Self>, agent_id: &str) {
        if let Ok(h) = self.registry.get(agent_id)
            && !h.is_mirror()
        {
            return;
        }
        match self.refreshing.entry(agent_id.to_string()) {
            dashmap::Entry::Occupied(mut o) => {
                *o.get_mut() = true;
                return;
            }
            dashmap::Entry::Vacant(v) => {
                v.insert(false);
            }
        }
        let me = self.clone();
        let id = agent_id.to_string();
        self.tracker.spawn(async move {
            loop {
                if let Err(e) = me.refresh_now(&id).await {
                    tracing::warn!(agent_id = %id, "cannot refresh the agent from the store: {e}");
                }
                let again = me.refreshing.remove_if(&id, |_, again| !*again).is_none();
                if !again {
                    return;
                }
                if let Some(mut a) = me.refreshing.get_mut(&id) {
                    *a = false;
                }
                // A busy agent writes many events a second: read it at most every
                // REFRESH_EVERY, not once per event.
                tokio::select! {
                    _ = me.cancel.cancelled() => return,
                    _ = tokio::time::sleep(REFRESH_EVERY) => {}
                }
            }
        });
    }

    /// Read these agents back from the store now (after a call another node answered:
    /// this node's next read shows what the call did).
    pub async fn sync(&self, agent_ids: &[String]) {
        for id in agent_ids {
            if let Err(e) = self.refresh_now(id).await {
                tracing::warn!(agent_id = %id, "cannot read the agent back from the store: {e}");
            }
        }
    }

    /// Bring these agents' mirrors up to date with the store before a read: a client
    /// that changed an agent through another node (or behind a load balancer) reads
    /// what it did here too. One query; only mirrors behind the log are read again.
    pub async fn freshen(&self, agent_ids: &[String]) {
        let mirrors: Vec<String> = agent_ids
            .iter()
            .filter(|id| self.registry.get(id).is_ok_and(|h| h.is_mirror()))
            .cloned()
            .collect();
        if mirrors.is_empty() {
            return;
        }
        let latest = async {
            let client = self.shared.pool.get().await?;
            let rows = client
                .query(
                    "SELECT agent_id, max(seq) FROM events WHERE agent_id = ANY($1) GROUP BY agent_id",
                    &[&mirrors],
                )
                .await?;
            anyhow::Ok(
                rows.iter()
                    .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1)))
                    .collect::<Vec<_>>(),
            )
        };
        let latest = match latest.await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!("cannot check the agents against the store: {e}");
                return;
            }
        };
        let behind: Vec<String> = mirrors
            .into_iter()
            .filter(|id| {
                let known = self.registry.get(id).map(|h| h.last_seq()).unwrap_or(0);
                match latest.iter().find(|(l, _)| l == id) {
                    Some((_, max)) => known < (*max).max(0) as u64,
                    // Deleted on its node.
                    None => true,
                }
            })
            .collect();
        self.sync(&behind).await;
    }

    /// Look an agent this node has not heard of up in the store, by name or id, and
    /// mirror it.
    pub async fn learn(&self, agent: &str) {
        let found = async {
            let client = self.shared.pool.get().await?;
            let row = client
                .query_opt(
                    // Each half uses an index (by agent, by name).
                    "(SELECT agent_id, id FROM events WHERE agent_id = $1 AND kind = 'created')
                     UNION ALL
                     (SELECT agent_id, id FROM events WHERE kind = 'created'
                        AND ((data::jsonb) -> 'settings' ->> 'name') = $1)
                     ORDER BY id DESC LIMIT 1",
                    &[&agent],
                )
                .await?;
            anyhow::Ok(row.map(|r| r.get::<_, String>(0)))
        };
        match found.await {
            Ok(Some(id)) => self.sync(&[id]).await,
            Ok(None) => {}
            Err(e) => tracing::warn!(agent, "cannot look the agent up in the store: {e}"),
        }
    }

    async fn refresh_now(&self, agent_id: &str) -> anyhow::Result<()> {
        if let Ok(h) = self.registry.get(agent_id)
            && !h.is_mirror()
        {
            return Ok(());
        }
        let owner = self.owner(agent_id).await?;
        match self.registry.store().load_agent(agent_id).await? {
            None => self.registry.unmirror(agent_id),
            Some(log) => self.registry.mirror(log, owner.as_deref().unwrap_or("?")),
        }
        Ok(())
    }

    /// Run a forwarded call here.
    async fn execute(&self, tool: &str, args: Value) -> Value {
        match self.executor.get() {
            Some(x) => x.execute(tool.to_string(), args).await,
            None => forward::refusal("this node is still starting; try again"),
        }
    }

    fn renewed(&self) -> Instant {
        *lock(&self.renewed)
    }
}
