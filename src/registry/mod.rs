//! The fleet: every live agent by id, names resolved to ids, and the task tracker
//! that lets the server shut down with nothing left behind.
//!
//! It owns agents from spec to deletion: creating them (`create`, from a
//! [`CreateSpec`] resolved by `spec`), bringing them back after a restart
//! (`replay`, `restore`), and every policy the transports share (`policy`).
//!
//! DashMap guards are never held across an `.await`: look-ups clone the `Arc` out
//! and drop the guard at once.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{BuildHasher, Hasher};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::RwLock;
use std::time::Duration;

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::agent::state::AgentStatus;
use crate::agent::{AgentHandle, worker};
use crate::config::Models;
use crate::fleet::Fleet;
use crate::model::ToolSpec;
use crate::prompts::Prompts;
use crate::store::Store;
use crate::sync::{read, write};
use crate::tools::{Tool, tool_specs};

mod answer;
mod create;
mod mirror;
mod policy;
mod remote;
pub(crate) mod replay;
mod restore;
mod schedule;
mod spec;
#[cfg(test)]
mod tests;

pub use policy::{BudgetRow, Held};
pub use spec::CreateSpec;

/// How long `delete_agent` waits for a worker to stop before giving up on it.
const STOP_GRACE: Duration = Duration::from_secs(10);
pub const DEFAULT_MAX_STEPS: u32 = 50;
pub const MAX_MAX_STEPS: u32 = 1000;

/// A mistake the orchestrator can fix; the message says how.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{0}")]
    Invalid(String),
    #[error("no agent named or with id `{wanted}`. {known}")]
    UnknownAgent { wanted: String, known: String },
    #[error("an agent named `{0}` already exists; choose another name, or delete_agent it first")]
    DuplicateName(String),
    #[error("{0}")]
    Store(String),
}

impl From<crate::store::StoreError> for RegistryError {
    fn from(e: crate::store::StoreError) -> Self {
        Self::Store(e.to_string())
    }
}

pub struct Registry {
    agents: DashMap<String, Arc<AgentHandle>>,
    names: DashMap<String, String>,
    /// Every live name, sorted: pages of `list_agents` in O(log n + page).
    order: RwLock<BTreeSet<String>>,
    /// Ids of agents waiting for their dependencies, in creation order.
    waiting: std::sync::Mutex<Vec<String>>,
    models: Models,
    prompts: Prompts,
    default_workdir: PathBuf,
    /// Directories agents' work directories must lie under.
    workdir_roots: Vec<PathBuf>,
    /// Where flotilla puts agents' git worktrees (`<root>/<name>`).
    worktrees_root: PathBuf,
    /// `--ephemeral`: worktrees are removed (branches kept) at shutdown.
    ephemeral_worktrees: bool,
    /// In a fleet of several nodes: the git remote worktree agents go through.
    remotes: Option<remote::Remotes>,
    /// `sandbox` / `network` of agents that set neither (nor their role): config.
    sandbox_default: crate::sandbox::Sandbox,
    /// The operator allows agents and roles to ask for `sandbox: "off"`.
    sandbox_allow_off: bool,
    /// Agents that can write, by work directory: who may overwrite whom.
    writers: std::sync::Mutex<BTreeMap<PathBuf, BTreeSet<String>>>,
    cancel: CancellationToken,
    tracker: TaskTracker,
    ids: std::collections::hash_map::RandomState,
    next: std::sync::atomic::AtomicU64,
    /// Tool specs by allow-list, built once and shared.
    specs: DashMap<Vec<Tool>, Arc<[ToolSpec]>>,
    fleet: Arc<Fleet>,
}

impl Registry {
    pub fn new(
        models: Models,
        prompts: Prompts,
        default_workdir: PathBuf,
        fleet: Arc<Fleet>,
    ) -> Self {
        Self {
            fleet,
            agents: DashMap::new(),
            names: DashMap::new(),
            order: RwLock::new(BTreeSet::new()),
            waiting: std::sync::Mutex::new(Vec::new()),
            models,
            prompts,
            workdir_roots: default_workdir_roots(&default_workdir),
            worktrees_root: std::env::temp_dir()
                .join(format!("flotilla-{}", std::process::id()))
                .join("worktrees"),
            sandbox_default: crate::sandbox::Sandbox::default(),
            sandbox_allow_off: false,
            ephemeral_worktrees: false,
            remotes: None,
            writers: Default::default(),
            default_workdir,
            cancel: CancellationToken::new(),
            tracker: TaskTracker::new(),
            ids: Default::default(),
            next: Default::default(),
            specs: DashMap::new(),
        }
    }

    /// Widen the directories agents may work in (config `[limits] workdir_roots`);
    /// the defaults (the server's work directory and the temp directory) stay.
    pub fn with_workdir_roots(mut self, roots: Vec<PathBuf>) -> Self {
        for root in roots {
            if !self.workdir_roots.contains(&root) {
                self.workdir_roots.push(root);
            }
        }
        self
    }

    /// Put agents' git worktrees under `root` (`<data dir>/worktrees`); work
    /// directories there are allowed.
    /// It is created when the first worktree is.
    pub fn with_worktrees_root(mut self, root: PathBuf) -> Self {
        let root = crate::workdirs::canonical_prefix(&root).unwrap_or(root);
        if !self.workdir_roots.contains(&root) {
            self.workdir_roots.push(root.clone());
        }
        self.worktrees_root = root;
        self
    }

    /// `--ephemeral`: the fleet ends with the process, and so do its agents'
    /// worktrees (their work is committed to their branches, which stay).
    pub fn with_ephemeral_worktrees(mut self, ephemeral: bool) -> Self {
        self.ephemeral_worktrees = ephemeral;
        self
    }

    /// The sandbox of agents created without `sandbox` / `network` (and whose role sets
    /// neither): config `[sandbox]`; `allow_off`: the operator's consent to agents and
    /// roles asking for `sandbox: "off"`.
    pub fn with_sandbox_default(
        mut self,
        sandbox: crate::sandbox::Sandbox,
        allow_off: bool,
    ) -> Self {
        self.sandbox_default = sandbox;
        self.sandbox_allow_off = allow_off;
        self
    }

    pub fn worktrees_root(&self) -> &Path {
        &self.worktrees_root
    }

    pub fn prompts(&self) -> &Prompts {
        &self.prompts
    }

    /// The directory agents work in when `create_agent` names none.
    pub fn default_workdir(&self) -> &Path {
        &self.default_workdir
    }

    /// The directories agents' work directories must lie under.
    pub fn workdir_roots(&self) -> &[PathBuf] {
        &self.workdir_roots
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.fleet.store
    }

    /// What every agent shares: store, bus, budget, run slots, provider gates.
    pub fn fleet(&self) -> &Arc<Fleet> {
        &self.fleet
    }

    /// A fresh agent id (`ag-` and 10 hex digits).
    fn new_id(&self) -> String {
        loop {
            let mut h = self.ids.build_hasher();
            h.write_u64(self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
            let id = format!("ag-{:010x}", h.finish() & 0xff_ffff_ffff);
            if !self.agents.contains_key(&id) {
                return id;
            }
        }
    }

    pub(crate) fn models(&self) -> &Models {
        &self.models
    }

    pub(crate) fn cancel_token(&self) -> &CancellationToken {
        &self.cancel
    }

    /// Register a restored agent under its stored id and name and start its worker.
    pub(crate) fn adopt(&self, handle: Arc<AgentHandle>, start: worker::Start) {
        self.register(&handle);
        if handle.deferred().is_some() {
            self.wait_for_dependencies(&handle);
        }
        self.tracker.spawn(worker::run(handle, start));
    }

    /// Make an agent reachable by id and name (a name taken by another id is an error
    /// in the store: that agent is reachable by id only).
    fn register(&self, handle: &Arc<AgentHandle>) {
        if !handle.is_mirror()
            && let Some(shared) = self.store().shared()
        {
            handle.set_node(&shared.node);
        }
        match self.names.entry(handle.name().to_string()) {
            Entry::Occupied(o) if *o.get() == handle.id => {}
            Entry::Occupied(_) => {
                tracing::error!(agent = %handle.name(), id = %handle.id, "two stored agents share a name; this one is reachable by id only");
            }
            Entry::Vacant(v) => {
                v.insert(handle.id.clone());
                write(&self.order).insert(handle.name().to_string());
            }
        }
        self.agents.insert(handle.id.clone(), handle.clone());
        self.track_writer(&handle.settings);
    }

    pub(crate) fn specs_for(&self, tools: &[Tool]) -> Arc<[ToolSpec]> {
        if let Some(specs) = self.specs.get(tools) {
            return specs.clone();
        }
        self.specs
            .entry(tools.to_vec())
            .or_insert_with(|| tool_specs(tools).into())
            .clone()
    }

    /// Find an agent by name or id.
    pub fn get(&self, agent: &str) -> Result<Arc<AgentHandle>, RegistryError> {
        let id = self
            .names
            .get(agent)
            .map(|e| e.value().clone())
            .unwrap_or_else(|| agent.to_string());
        if let Some(h) = self.agents.get(&id).map(|e| e.value().clone()) {
            return Ok(h);
        }
        let mut names: Vec<String> = self.names.iter().map(|e| e.key().clone()).collect();
        names.sort();
        let known = match names.len() {
            0 => "There are no agents; create one with create_agent.".to_string(),
            n if n <= 20 => format!("Known agents: {}.", names.join(", ")),
            n => format!(
                "{n} agents exist, e.g. {}; use list_agents.",
                names[..20].join(", ")
            ),
        };
        Err(RegistryError::UnknownAgent {
            wanted: agent.to_string(),
            known,
        })
    }

    /// A receiver that wakes whenever any agent settles or gets new work.
    pub fn watch_fleet(&self) -> tokio::sync::watch::Receiver<u64> {
        self.fleet.watch_settle()
    }

    /// The agents named (names or ids), or every agent when `None`. An unknown name
    /// fails the whole call before anything is done.
    pub fn select(
        &self,
        agents: Option<&[String]>,
    ) -> Result<Vec<Arc<AgentHandle>>, RegistryError> {
        match agents {
            None => Ok(self.all()),
            Some([]) => Err(RegistryError::Invalid(
                "`agents` is an empty list; omit it to mean the whole fleet".into(),
            )),
            Some(names) => {
                let mut handles: Vec<Arc<AgentHandle>> = Vec::with_capacity(names.len());
                for n in names {
                    let h = self.get(n)?;
                    if !handles.iter().any(|x| Arc::ptr_eq(x, &h)) {
                        handles.push(h);
                    }
                }
                Ok(handles)
            }
        }
    }

    /// Every agent, sorted by name.
    pub fn all(&self) -> Vec<Arc<AgentHandle>> {
        let mut all = self.unsorted();
        all.sort_by(|a, b| a.name().cmp(b.name()));
        all
    }

    /// One page of agents in name order: those after `after` (a name), at most
    /// `limit`, and whether more follow.
    pub fn page(&self, after: Option<&str>, limit: usize) -> (Vec<Arc<AgentHandle>>, bool) {
        let order = read(&self.order);
        let start = match after {
            Some(a) => Bound::Excluded(a),
            None => Bound::Unbounded,
        };
        let mut page = Vec::with_capacity(limit.min(order.len()));
        for name in order.range::<str, _>((start, Bound::Unbounded)) {
            let Some(handle) = self
                .names
                .get(name)
                .and_then(|id| self.agents.get(id.value()).map(|h| h.value().clone()))
            else {
                continue;
            };
            if page.len() == limit {
                return (page, true);
            }
            page.push(handle);
        }
        (page, false)
    }

    /// A page of the agents in `status`, read through the fleet's status index (only
    /// matching rows are touched); with the cursor for the next page, if any.
    pub fn page_in(
        &self,
        status: AgentStatus,
        after: Option<&str>,
        limit: usize,
    ) -> (Vec<Arc<AgentHandle>>, Option<String>) {
        let (names, more) = self.fleet().totals.names_in(status, after, limit);
        let next_after = more.then(|| names.last().cloned()).flatten();
        let page = names
            .iter()
            .filter_map(|n| self.get(n).ok())
            // The index and an agent's state change under different locks: recheck.
            .filter(|h| h.peek(|s| s.status) == status)
            .collect();
        (page, next_after)
    }

    /// Every agent, in no particular order.
    pub fn unsorted(&self) -> Vec<Arc<AgentHandle>> {
        self.agents.iter().map(|e| e.value().clone()).collect()
    }

    /// Remove an agent: its name is free at once; its work is cancelled and its
    /// processes killed before this returns. An agent in a worktree has its
    /// uncommitted work committed to its branch and the worktree removed (the
    /// branch stays): the second value says what happened.
    pub async fn delete(
        &self,
        agent: &str,
    ) -> Result<
        (
            Arc<AgentHandle>,
            Option<Result<crate::worktree::Removed, String>>,
        ),
        RegistryError,
    > {
        let handle = self.get(agent)?;
        self.remove(&handle).await?;
        crate::sandbox::remove_agent_temp(&handle.id).await;
        if let crate::config::Runtime::Cli(cli) = &handle.settings.model.runtime
            && let Some(dir) = cli.handover_dir(&handle.id)
        {
            let _ = tokio::fs::remove_dir_all(dir).await;
        }
        let worktree = match &handle.settings.worktree {
            Some(wt) => Some(crate::worktree::remove(wt, handle.name()).await),
            None => None,
        };
        if let Some(Err(e)) = &worktree {
            tracing::warn!(agent = %handle.name(), "{e}");
        }
        Ok((handle, worktree))
    }

    /// Delete every agent, in parallel. Returns how many.
    pub async fn delete_all(&self) -> usize {
        // In a fleet of several nodes each node deletes the agents it runs.
        let all = self.local_agents();
        let stops = all.iter().map(|h| async move {
            if let Err(e) = self.remove(h).await {
                tracing::error!(agent = %h.name(), "{e}");
            }
            if let Some(wt) = &h.settings.worktree
                && let Err(e) = crate::worktree::remove(wt, h.name()).await
            {
                tracing::warn!(agent = %h.name(), "{e}");
            }
        });
        futures::future::join_all(stops).await;
        all.len()
    }

    /// Unregister an agent (its name is free at once), stop its worker and its
    /// processes, then remove its records.
    async fn remove(&self, handle: &AgentHandle) -> Result<(), RegistryError> {
        self.unregister(handle);
        if !handle.shutdown(STOP_GRACE).await {
            tracing::warn!(agent = %handle.name(), "worker did not stop within {STOP_GRACE:?}");
        }
        // Its spend stays counted against the fleet's budget.
        let spent = handle.peek(|s| s.spent());
        self.store()
            .delete_agent(&handle.id, spent)
            .await
            .map_err(|e| {
                RegistryError::Store(format!(
                    "agent `{}` was stopped but its records could not be removed: {e}",
                    handle.name()
                ))
            })?;
        tracing::info!(agent = %handle.name(), "agent deleted");
        // Agents waiting on it learn it is gone.
        self.fleet.notify_settle();
        Ok(())
    }

    /// Make an agent unreachable: its name is free at once.
    fn unregister(&self, handle: &AgentHandle) {
        self.agents.remove(&handle.id);
        if self
            .names
            .remove_if(handle.name(), |_, id| *id == handle.id)
            .is_some()
        {
            write(&self.order).remove(handle.name());
        }
        self.untrack_writer(&handle.settings);
    }

    /// Cancel every agent and wait (bounded) for all tasks to end.
    pub async fn shutdown(&self, grace: Duration) {
        self.cancel.cancel();
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("some agents did not stop within {grace:?}");
        }
        self.publish_all().await;
        if self.ephemeral_worktrees {
            // The fleet ends with the process: so do its worktrees; their branches stay.
            for h in self.local_agents() {
                if let Some(wt) = &h.settings.worktree {
                    match crate::worktree::remove(wt, h.name()).await {
                        Ok(r) => {
                            tracing::info!(agent = %h.name(), branch = %r.branch, "ephemeral fleet: worktree removed, branch kept")
                        }
                        Err(e) => tracing::warn!(agent = %h.name(), "{e}"),
                    }
                }
            }
            // `$TMPDIR/flotilla-<pid>/worktrees` and its parent, if nothing is left there.
            let _ = std::fs::remove_dir(&self.worktrees_root);
            if let Some(parent) = self.worktrees_root.parent() {
                // The agents' private temp directories (`sandbox::Setup::temp_root`).
                let _ = std::fs::remove_dir_all(parent.join("tmp"));
                let _ = std::fs::remove_dir(parent);
            }
        }
    }
}

impl Registry {
    /// Remember a writing agent's work directory (for [`Registry::overlapping_writers`]).
    pub(crate) fn track_writer(&self, s: &crate::agent::AgentSettings) {
        if s.can_write() {
            crate::sync::lock(&self.writers)
                .entry(s.workdir.clone())
                .or_default()
                .insert(s.name.clone());
        }
    }

    fn untrack_writer(&self, s: &crate::agent::AgentSettings) {
        let mut writers = crate::sync::lock(&self.writers);
        if let Some(names) = writers.get_mut(&s.workdir) {
            names.remove(&s.name);
            if names.is_empty() {
                writers.remove(&s.workdir);
            }
        }
    }

    /// Writing agents other than `name` whose work directory is `dir`, inside it, or
    /// holds it: they may overwrite each other's changes. O(log n + directories that
    /// overlap): names are kept to [`Overlap::SHOWN`], the rest are counted.
    pub(crate) fn overlapping_writers(&self, dir: &Path, name: &str) -> Overlap {
        let mut overlap = Overlap::default();
        overlap.add(&crate::sync::lock(&self.writers), dir, name);
        overlap
    }
}

/// Agents writing where another will: a few names and how many in all.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Overlap {
    /// The first [`Overlap::SHOWN`] of them, by name within each directory.
    pub names: Vec<String>,
    /// All of them.
    pub count: usize,
}

impl Overlap {
    /// Names a warning shows; the rest are counted.
    pub const SHOWN: usize = 3;

    /// Add the writers in `writers` (work directory → names) whose directory is `dir`,
    /// inside it or holds it, other than `name`.
    pub fn add(&mut self, writers: &BTreeMap<PathBuf, BTreeSet<String>>, dir: &Path, name: &str) {
        // Work directories inside `dir` sort right after it (paths order by component).
        let inside = writers
            .range::<Path, _>((Bound::Included(dir), Bound::Unbounded))
            .take_while(|(path, _)| path.starts_with(dir));
        let holding = dir
            .ancestors()
            .skip(1)
            .filter_map(|a| writers.get_key_value(a));
        for (_, names) in inside.chain(holding) {
            let me = usize::from(names.contains(name));
            self.count += names.len() - me;
            let room = Self::SHOWN.saturating_sub(self.names.len());
            self.names
                .extend(names.iter().filter(|n| *n != name).take(room).cloned());
        }
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// The server's work directory and the system temp directory, canonical.
fn default_workdir_roots(default_workdir: &Path) -> Vec<PathBuf> {
    let mut roots = vec![default_workdir.to_path_buf()];
    if let Ok(tmp) = std::env::temp_dir().canonicalize()
        && !roots.contains(&tmp)
    {
        roots.push(tmp);
    }
    roots
}

/// Whether a status filter string is valid, for `list_agents`.
pub fn parse_status_filter(s: &str) -> Result<AgentStatus, RegistryError> {
    AgentStatus::parse(s).ok_or_else(|| {
        RegistryError::Invalid(format!(
            "unknown status `{s}`; use one of running, queued, waiting, needs_input, paused, idle, failed, cancelled"
        ))
    })
}
