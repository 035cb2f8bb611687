//! The fleet: every live agent by id, names resolved to ids, and the task tracker
//! that lets the server shut down with nothing left behind.
//!
//! DashMap guards are never held across an `.await`: look-ups clone the `Arc` out
//! and drop the guard at once.

use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use std::time::SystemTime;

use crate::agent::state::AgentStatus;
use crate::agent::{AgentHandle, AgentSettings, Initial, Journal, worker};
use crate::config::Models;
use crate::model::ToolSpec;
use crate::prompts::Prompts;
use crate::store::event::Event;
use crate::store::{Ack, Store};
use crate::tools::{ALL_TOOLS, tool_specs};

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

/// What `create_agent` asks for, already type-checked.
#[derive(Debug, Default, Clone)]
pub struct CreateSpec {
    pub name: String,
    pub task: Option<String>,
    pub system_prompt: Option<String>,
    pub role: Option<String>,
    pub model: Option<String>,
    pub tools: Option<Vec<String>>,
    pub workdir: Option<String>,
    pub max_steps: Option<u32>,
}

pub struct Registry {
    agents: DashMap<String, Arc<AgentHandle>>,
    names: DashMap<String, String>,
    models: Models,
    prompts: Prompts,
    default_workdir: PathBuf,
    /// Directories agents' work directories must lie under.
    workdir_roots: Vec<PathBuf>,
    cancel: CancellationToken,
    tracker: TaskTracker,
    ids: std::collections::hash_map::RandomState,
    next: std::sync::atomic::AtomicU64,
    fleet: Arc<tokio::sync::watch::Sender<u64>>,
    /// Tool specs by allow-list, built once and shared.
    specs: DashMap<Vec<String>, Arc<[ToolSpec]>>,
    store: Arc<Store>,
}

impl Registry {
    pub fn new(
        models: Models,
        prompts: Prompts,
        default_workdir: PathBuf,
        store: Arc<Store>,
    ) -> Self {
        Self {
            store,
            agents: DashMap::new(),
            names: DashMap::new(),
            models,
            prompts,
            workdir_roots: default_workdir_roots(&default_workdir),
            default_workdir,
            cancel: CancellationToken::new(),
            tracker: TaskTracker::new(),
            ids: Default::default(),
            next: Default::default(),
            fleet: Arc::new(tokio::sync::watch::Sender::new(0)),
            specs: DashMap::new(),
        }
    }

    pub fn prompts(&self) -> &Prompts {
        &self.prompts
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Validate, register, save and start an agent. Returns as soon as it is
    /// running and its creation (and first command) are on disk.
    pub async fn create(&self, spec: CreateSpec) -> Result<Arc<AgentHandle>, RegistryError> {
        let workdir = self
            .workdir(spec.workdir.as_deref())
            .await
            .map_err(RegistryError::Invalid)?;
        let (handle, acks) = self.register(spec, workdir)?;
        for ack in acks {
            match ack.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    return Err(RegistryError::Store(format!(
                        "agent `{}` was started but could not be saved: {e}",
                        handle.name()
                    )));
                }
                Err(_) => {
                    return Err(RegistryError::Store(
                        "the fleet store is closed; the server is shutting down".into(),
                    ));
                }
            }
        }
        Ok(handle)
    }

    fn register(
        &self,
        spec: CreateSpec,
        workdir: PathBuf,
    ) -> Result<(Arc<AgentHandle>, Vec<Ack>), RegistryError> {
        let invalid = |m: String| RegistryError::Invalid(m);
        validate_name(&spec.name).map_err(invalid)?;
        let task = match spec.task {
            Some(t) if t.trim().is_empty() => {
                return Err(invalid(
                    "`task` is empty: give the agent its first instruction, or omit `task` and use command_agent later".into(),
                ));
            }
            t => t,
        };
        let role = match spec.role.as_deref() {
            None => None,
            Some(r) => Some(self.prompts.role(r).ok_or_else(|| {
                invalid(format!(
                    "unknown role `{r}`; known roles: {}",
                    self.prompts.role_names().join(", ")
                ))
            })?),
        };
        let tools: Vec<String> = match (&spec.tools, role.and_then(|r| r.tools.as_ref())) {
            (Some(tools), _) => {
                if let Some(bad) = tools.iter().find(|t| !ALL_TOOLS.contains(&t.as_str())) {
                    return Err(invalid(format!(
                        "unknown tool `{bad}` in `tools`; the sub-agent tools are: {}",
                        ALL_TOOLS.join(", ")
                    )));
                }
                let mut uniq: Vec<String> = Vec::new();
                for t in tools {
                    if !uniq.contains(t) {
                        uniq.push(t.clone());
                    }
                }
                uniq
            }
            (None, Some(role_tools)) => role_tools.clone(),
            (None, None) => ALL_TOOLS.iter().map(|t| t.to_string()).collect(),
        };
        let max_steps = spec
            .max_steps
            .or(role.and_then(|r| r.max_steps))
            .unwrap_or(DEFAULT_MAX_STEPS);
        if !(1..=MAX_MAX_STEPS).contains(&max_steps) {
            return Err(invalid(format!(
                "max_steps must be between 1 and {MAX_MAX_STEPS} (model calls per command); got {max_steps}"
            )));
        }
        let model = self
            .models
            .resolve(spec.model.as_deref())
            .map_err(|e| invalid(e.to_string()))?;
        let extra_prompt = spec.system_prompt.filter(|e| !e.trim().is_empty());
        let system_prompt = self.prompts.compose(
            spec.role.as_deref(),
            extra_prompt.as_deref(),
            &spec.name,
            &workdir,
            &tools,
        );
        let tool_specs = self.specs_for(&tools);
        let settings = AgentSettings {
            name: spec.name.clone(),
            role: spec.role.clone(),
            model,
            system_prompt,
            extra_prompt,
            tools,
            tool_specs,
            workdir,
            max_steps,
            max_output_tokens: self.models.max_output_tokens(),
            retry: self.models.retry_policy().clone(),
        };

        // Claim the name atomically; no guard outlives this block.
        let id = loop {
            let mut h = self.ids.build_hasher();
            h.write_u64(self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
            let id = format!("ag-{:010x}", h.finish() & 0xff_ffff_ffff);
            if !self.agents.contains_key(&id) {
                break id;
            }
        };
        match self.names.entry(spec.name.clone()) {
            Entry::Occupied(_) => return Err(RegistryError::DuplicateName(spec.name)),
            Entry::Vacant(v) => {
                v.insert(id.clone());
            }
        }
        let journal = Journal::new(self.store.clone(), 1);
        let handle = AgentHandle::new(
            id.clone(),
            settings,
            SystemTime::now(),
            &self.cancel,
            self.fleet.clone(),
            journal,
            Initial::default(),
        );
        let mut acks = Vec::new();
        acks.extend(handle.record(Event::Created {
            settings: handle.settings.stored(),
        }));
        self.agents.insert(id, handle.clone());
        if let Some(task) = task {
            acks.extend(
                handle
                    .enqueue(task, false)
                    .map_err(RegistryError::Invalid)?
                    .ack,
            );
        }
        self.tracker
            .spawn(worker::run(handle.clone(), worker::Start::default()));
        tracing::info!(agent = %handle.name(), id = %handle.id, model = %handle.settings.model.id, "agent created");
        Ok((handle, acks))
    }

    pub(crate) fn models(&self) -> &Models {
        &self.models
    }

    pub(crate) fn cancel_token(&self) -> &CancellationToken {
        &self.cancel
    }

    pub(crate) fn fleet_sender(&self) -> Arc<tokio::sync::watch::Sender<u64>> {
        self.fleet.clone()
    }

    /// Register a restored agent under its stored id and name and start its worker.
    pub(crate) fn adopt(&self, handle: Arc<AgentHandle>, start: worker::Start) {
        match self.names.entry(handle.name().to_string()) {
            Entry::Occupied(_) => {
                tracing::error!(agent = %handle.name(), id = %handle.id, "two stored agents share a name; this one is reachable by id only");
            }
            Entry::Vacant(v) => {
                v.insert(handle.id.clone());
            }
        }
        self.agents.insert(handle.id.clone(), handle.clone());
        self.tracker.spawn(worker::run(handle, start));
    }

    pub(crate) fn specs_for(&self, tools: &[String]) -> Arc<[ToolSpec]> {
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
        self.fleet.subscribe()
    }

    /// Every agent, sorted by name.
    pub fn all(&self) -> Vec<Arc<AgentHandle>> {
        let mut all = self.unsorted();
        all.sort_by(|a, b| a.name().cmp(b.name()));
        all
    }

    /// Every agent, in no particular order.
    pub fn unsorted(&self) -> Vec<Arc<AgentHandle>> {
        self.agents.iter().map(|e| e.value().clone()).collect()
    }

    /// Remove an agent: its name is free at once; its work is cancelled and its
    /// processes killed before this returns.
    pub async fn delete(&self, agent: &str) -> Result<Arc<AgentHandle>, RegistryError> {
        let handle = self.get(agent)?;
        self.remove(&handle).await?;
        Ok(handle)
    }

    /// Delete every agent, in parallel. Returns how many.
    pub async fn delete_all(&self) -> usize {
        let all = self.all();
        let stops = all.iter().map(|h| async move {
            if let Err(e) = self.remove(h).await {
                tracing::error!(agent = %h.name(), "{e}");
            }
        });
        futures::future::join_all(stops).await;
        all.len()
    }

    /// Unregister an agent (its name is free at once), stop its worker and its
    /// processes, then remove its records.
    async fn remove(&self, handle: &AgentHandle) -> Result<(), RegistryError> {
        self.agents.remove(&handle.id);
        self.names
            .remove_if(handle.name(), |_, id| *id == handle.id);
        if !handle.shutdown(STOP_GRACE).await {
            tracing::warn!(agent = %handle.name(), "worker did not stop within {STOP_GRACE:?}");
        }
        self.store.delete_agent(&handle.id).await.map_err(|e| {
            RegistryError::Store(format!(
                "agent `{}` was stopped but its records could not be removed: {e}",
                handle.name()
            ))
        })?;
        tracing::info!(agent = %handle.name(), "agent deleted");
        Ok(())
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

    /// The requested work directory (default: the server's), made absolute, checked
    /// against the allowed roots, created if missing and canonicalized — off the
    /// async runtime.
    async fn workdir(&self, requested: Option<&str>) -> Result<PathBuf, String> {
        let dir = match requested {
            None => self.default_workdir.clone(),
            Some(w) if w.trim().is_empty() => {
                return Err(
                    "`workdir` is empty; omit it to use the server's working directory".into(),
                );
            }
            Some(w) => self.default_workdir.join(w),
        };
        let roots = self.workdir_roots.clone();
        tokio::task::spawn_blocking(move || crate::workdirs::prepare(&dir, &roots))
            .await
            .map_err(|e| format!("cannot prepare the work directory: {e}"))?
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

/// `[A-Za-z0-9_-]`, 1–64 characters.
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err(format!(
            "`name` must be 1–64 characters of letters, digits, `_` or `-`; got {} characters",
            name.chars().count()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(format!(
            "`name` may contain only letters, digits, `_` and `-`; `{name}` contains {c:?}. Try e.g. `scout-1`"
        ));
    }
    if looks_like_id(name) {
        return Err(format!(
            "`name` `{name}` has the form of an agent id (`ag-` and 10 hex digits), which would shadow ids; choose another name"
        ));
    }
    Ok(())
}

fn looks_like_id(s: &str) -> bool {
    s.strip_prefix("ag-")
        .is_some_and(|h| h.len() == 10 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Whether a status filter string is valid, for `list_agents`.
pub fn parse_status_filter(s: &str) -> Result<AgentStatus, RegistryError> {
    AgentStatus::parse(s).ok_or_else(|| {
        RegistryError::Invalid(format!(
            "unknown status `{s}`; use one of running, idle, failed, cancelled"
        ))
    })
}
