//! Creating agents: one (`create_agent`) or a whole plan at once (`create_agents`).
//!
//! Creation is two-phase so a plan is all or nothing: `Registry::prepare` (in
//! `spec`) checks every argument and resolves the model, role, tools and work
//! directory without touching the fleet; [`Registry::commit`] then claims the name,
//! saves the agent and starts its worker. A plan is checked whole (names, dependencies, cycles) before the
//! first agent is committed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use dashmap::mapref::entry::Entry;
use serde_json::Value;

use super::spec::validate_name;
use super::{CreateSpec, Overlap, Registry, RegistryError, write};
use crate::agent::state::AgentStatus;
use crate::agent::{AgentHandle, AgentSettings, Deferred, Initial, worker};
use crate::plan::graph;
use crate::store::Ack;
use crate::store::event::Event;
use crate::worktree;

/// An agent checked and ready to register.
pub(crate) struct Prepared {
    pub(super) settings: AgentSettings,
    pub(super) task: Option<String>,
    pub(super) output_schema: Option<Value>,
    /// With `isolation: "worktree"`: where its worktree goes, made by
    /// [`Registry::make_worktree`] once every argument is checked.
    pub(super) isolate: Option<Isolate>,
    /// What the orchestrator should know (an unenforceable sandbox, a shared work
    /// directory).
    pub(super) warnings: Vec<String>,
}

/// A worktree to make: in `repo`, at `path`, from `base`; with `remote` (a URL),
/// `repo` is this node's clone of it and the branch is pushed there.
pub(crate) struct Isolate {
    pub(super) repo: worktree::Repo,
    pub(super) path: PathBuf,
    pub(super) base: String,
    pub(super) remote: Option<String>,
}

/// A created agent and what the orchestrator should know about it.
pub type Created = (Arc<AgentHandle>, Vec<String>);

impl Registry {
    /// Validate, register, save and start an agent. Returns as soon as it is
    /// running and its creation (and first command) are on disk, with warnings.
    pub async fn create(&self, spec: CreateSpec) -> Result<Created, RegistryError> {
        if spec.model.as_deref().is_some_and(|m| m.trim().is_empty()) {
            return Err(RegistryError::Invalid(
                "`model` is empty; omit it to use the default model, or give \
                        `provider:model` or an alias such as \"sonnet\""
                    .into(),
            ));
        }
        if let Some(missing) = spec.depends_on.iter().find(|d| self.get(d).is_err()) {
            return Err(RegistryError::Invalid(format!(
                "depends_on names `{missing}`, which is not an agent; create it first, or create the whole plan in one create_agents call"
            )));
        }
        let (workdir, isolate) = self
            .placement(&spec)
            .await
            .map_err(RegistryError::Invalid)?;
        let mut prepared = self.prepare(spec, workdir)?;
        prepared.isolate = isolate;
        if prepared.isolate.is_none() && prepared.settings.can_write() {
            let others =
                self.overlapping_writers(&prepared.settings.workdir, &prepared.settings.name);
            if !others.is_empty() {
                prepared.warnings.push(shared_workdir_warning(&others));
            }
        }
        self.make_worktree(&mut prepared, &[])
            .await
            .map_err(RegistryError::Invalid)?;
        let made = made_worktree(&prepared);
        let warnings = std::mem::take(&mut prepared.warnings);
        let (handle, acks) = match self.commit(prepared, true) {
            Ok(done) => done,
            Err(e) => {
                if let Some((repo, wt)) = made {
                    worktree::discard(&repo, &wt).await;
                }
                return Err(e);
            }
        };
        await_acks(&handle, acks).await?;
        if !handle.settings.depends_on.is_empty() {
            self.fleet().notify_settle();
        }
        Ok((handle, warnings))
    }

    /// Create a whole plan: every agent is checked (arguments, names, dependencies —
    /// which may name agents of the same plan — and cycles) before any exists.
    pub async fn create_plan(&self, specs: Vec<CreateSpec>) -> Result<Vec<Created>, RegistryError> {
        if specs.is_empty() {
            return Err(RegistryError::Invalid(
                "`agents` is empty: give at least one agent (the same arguments as create_agent)"
                    .into(),
            ));
        }
        let shape: Vec<(String, Vec<String>)> = specs
            .iter()
            .map(|s| (s.name.clone(), s.depends_on.clone()))
            .collect();
        graph::validate(&shape, |n| self.names.contains_key(n))
            .map_err(|e| RegistryError::Invalid(e.to_string()))?;
        let mut prepared = Vec::with_capacity(specs.len());
        // Work directories this plan has already checked and created, by the `workdir`
        // asked for: most agents of a plan share one, and preparing it (a blocking
        // task, mkdir, canonicalize) was a tenth of the CPU of a large plan.
        let mut placed: BTreeMap<Option<String>, PathBuf> = BTreeMap::new();
        for (i, spec) in specs.into_iter().enumerate() {
            let name = spec.name.clone();
            let refuse = |e: String| {
                RegistryError::Invalid(format!("agents[{i}] (`{name}`): {e}; nothing was created"))
            };
            let plain = spec.isolation.is_none() && spec.base.is_none();
            let (workdir, isolate) = match placed.get(&spec.workdir).filter(|_| plain) {
                Some(dir) => (dir.clone(), None),
                None => {
                    let (dir, isolate) = self.placement(&spec).await.map_err(refuse)?;
                    if plain {
                        placed.insert(spec.workdir.clone(), dir.clone());
                    }
                    (dir, isolate)
                }
            };
            let mut p = self
                .prepare(spec, workdir)
                .map_err(|e| refuse(e.to_string()))?;
            p.isolate = isolate;
            prepared.push(p);
        }
        self.warn_shared_workdirs(&mut prepared);
        // Worktrees last, once every argument of every agent is known to be good.
        let plan_names: Vec<String> = prepared.iter().map(|p| p.settings.name.clone()).collect();
        let mut made = Vec::new();
        for (i, p) in prepared.iter_mut().enumerate() {
            if let Err(e) = self.make_worktree(p, &plan_names).await {
                for (repo, wt) in &made {
                    worktree::discard(repo, wt).await;
                }
                return Err(RegistryError::Invalid(format!(
                    "agents[{i}] (`{}`): {e}; nothing was created",
                    p.settings.name
                )));
            }
            made.extend(made_worktree(p));
        }
        let mut created: Vec<Created> = Vec::with_capacity(prepared.len());
        let mut acks = Vec::new();
        for mut p in prepared {
            let warnings = std::mem::take(&mut p.warnings);
            match self.commit(p, false) {
                Ok((handle, a)) => {
                    created.push((handle, warnings));
                    acks.extend(a);
                }
                Err(e) => {
                    // Lost a race for a name: undo, so the plan is all or nothing.
                    for (h, _) in &created {
                        let _ = self.remove(h).await;
                    }
                    for (repo, wt) in &made {
                        worktree::discard(repo, wt).await;
                    }
                    return Err(RegistryError::Invalid(format!("{e}; nothing was created")));
                }
            }
        }
        let created_handles: Vec<&Arc<AgentHandle>> = created.iter().map(|(h, _)| h).collect();
        // Only now, with every agent of the plan in the fleet, may the scheduler look
        // at them (a dependency of the same plan must not look deleted).
        for h in created_handles.iter().filter(|h| h.deferred().is_some()) {
            self.wait_for_dependencies(h);
        }
        self.fleet().notify_settle();
        for ack in acks {
            if let Some(first) = created_handles.first() {
                await_acks(first, vec![ack]).await?;
            }
        }
        Ok(created)
    }

    /// Warn every writing agent of a plan (without isolation) whose work directory
    /// overlaps another writer's, in the plan or in the fleet.
    fn warn_shared_workdirs(&self, prepared: &mut [Prepared]) {
        let shared = |p: &Prepared| p.isolate.is_none() && p.settings.can_write();
        let mut plan: BTreeMap<PathBuf, BTreeSet<String>> = BTreeMap::new();
        for p in prepared.iter().filter(|p| shared(p)) {
            let names = plan.entry(p.settings.workdir.clone()).or_default();
            names.insert(p.settings.name.clone());
        }
        for p in prepared.iter_mut().filter(|p| shared(p)) {
            let (dir, name) = (&p.settings.workdir, &p.settings.name);
            let mut others = self.overlapping_writers(dir, name);
            others.add(&plan, dir, name);
            if !others.is_empty() {
                p.warnings.push(shared_workdir_warning(&others));
            }
        }
    }

    /// The agent's work directory and, with `isolation: "worktree"`, where its
    /// worktree goes (the work directory is then its copy of the one asked for).
    async fn placement(&self, spec: &CreateSpec) -> Result<(PathBuf, Option<Isolate>), String> {
        if spec.base.is_some() && spec.isolation.is_none() {
            return Err("`base` needs isolation: \"worktree\" (it names what the agent's new branch starts from)".into());
        }
        match spec.isolation {
            None => Ok((self.workdir(spec.workdir.as_deref(), true).await?, None)),
            Some(worktree::Isolation::Worktree) => {
                validate_name(&spec.name)?;
                let base = spec.base.clone().unwrap_or_else(|| "HEAD".into());
                if base.trim().is_empty() {
                    return Err("`base` is empty; omit it to start from HEAD, or give a git ref or an agent's name".into());
                }
                let root = self.worktrees_root().to_path_buf();
                tokio::fs::create_dir_all(&root).await.map_err(|e| {
                    format!("cannot create `{}` for worktrees: {e}", root.display())
                })?;
                let root = tokio::fs::canonicalize(&root).await.unwrap_or(root);
                let path = root.join(&spec.name);
                // Through a git remote: resolved by the node that placed it here, or now.
                let remote = match &spec.remote {
                    Some(r) => Some(r.clone()),
                    None => self.remote_for(spec.workdir.as_deref()).await?,
                };
                if let Some(remote) = remote {
                    let workdir = within(&path, &remote.prefix);
                    let iso = self.isolate_remote(&remote, path, base).await?;
                    return Ok((workdir, Some(iso)));
                }
                let dir = self.workdir(spec.workdir.as_deref(), false).await?;
                let repo = worktree::repo_of(&dir).await?;
                Ok((
                    within(&path, &repo.prefix),
                    Some(Isolate {
                        repo,
                        path,
                        base,
                        remote: None,
                    }),
                ))
            }
        }
    }

    /// Make the agent's worktree (with isolation): resolve its base — an agent's work,
    /// committed or not, or a git ref — check its branch is new, and add it.
    /// `plan`: names of the agents being created with it (not a valid base: they have
    /// no work yet).
    pub(crate) async fn make_worktree(
        &self,
        p: &mut Prepared,
        plan: &[String],
    ) -> Result<(), String> {
        let Some(iso) = &p.isolate else {
            return Ok(());
        };
        let name = p.settings.name.clone();
        let commit = if plan.contains(&iso.base) {
            return Err(format!(
                "base `{}` is an agent created in this same call, which has no work yet; create `{name}` once `{0}` is done (wait_for_agents), with base \"{0}\"",
                iso.base
            ));
        } else if let Some(url) = &iso.remote {
            self.remote_base(iso, url).await?
        } else if let Ok(h) = self.get(&iso.base) {
            let Some(wt) = &h.settings.worktree else {
                return Err(format!(
                    "base `{}` is an agent without a worktree of its own (created without isolation \"worktree\"); give a git ref instead (default HEAD)",
                    iso.base
                ));
            };
            if !worktree::same_repo(wt, &iso.repo) {
                return Err(format!(
                    "base `{}` is an agent working in another repository than `{}`",
                    iso.base,
                    iso.repo.toplevel.display()
                ));
            }
            worktree::snapshot_commit(wt, h.name()).await?.0
        } else {
            worktree::resolve_ref(&iso.repo, &iso.base).await?
        };
        let branch = worktree::branch_of(&name);
        match &iso.remote {
            Some(url) => self.remote_branch_free(iso, url, &branch).await?,
            None => worktree::check_branch_free(&iso.repo, &branch).await?,
        }
        let mut wt = worktree::add(&iso.repo, &iso.path, &branch, &commit, &iso.base).await?;
        if iso.remote.is_some() {
            wt.remote.clone_from(&iso.remote);
            if let Err(e) = self.publish_new(&mut wt, &name).await {
                worktree::discard(&iso.repo, &wt).await;
                return Err(e);
            }
        }
        let workdir = within(&wt.path, &iso.repo.prefix);
        if let Err(e) = tokio::fs::create_dir_all(&workdir).await {
            worktree::discard(&iso.repo, &wt).await;
            return Err(format!("cannot create `{}`: {e}", workdir.display()));
        }
        // The spec now names its worktree: resolve it again (prompt, work directory).
        let mut spec = p.settings.stored();
        spec.workdir = workdir;
        spec.worktree = Some(wt);
        p.settings = self.resolve(spec, p.settings.model.clone());
        Ok(())
    }

    /// Claim the name, save the agent (and its first command) and start its worker.
    /// An agent with dependencies is registered `waiting`: the scheduler gives it its
    /// task later.
    /// `schedule`: hand a waiting agent to the scheduler now (a plan does so once all
    /// its agents exist).
    pub(crate) fn commit(
        &self,
        p: Prepared,
        schedule: bool,
    ) -> Result<(Arc<AgentHandle>, Vec<Ack>), RegistryError> {
        let name = p.settings.name.clone();
        // Claim the name atomically; no guard outlives this block.
        let id = self.new_id();
        match self.names.entry(name.clone()) {
            Entry::Occupied(_) => return Err(RegistryError::DuplicateName(name)),
            Entry::Vacant(v) => {
                v.insert(id.clone());
            }
        }
        write(&self.order).insert(name);
        let waiting = !p.settings.depends_on.is_empty();
        let deferred = if waiting {
            p.task.clone().map(|task| Deferred {
                task,
                output_schema: p.output_schema.clone(),
            })
        } else {
            None
        };
        let mut initial = Initial::default();
        if waiting {
            let mut state = crate::agent::state::AgentState::new(p.settings.model.priced());
            state.status = AgentStatus::Waiting;
            state.waiting_on = p.settings.depends_on.clone();
            initial.state = Some(state);
            initial.deferred = deferred.clone();
        }
        let handle = AgentHandle::new(
            id.clone(),
            p.settings,
            &self.cancel,
            self.fleet.clone(),
            initial,
        );
        if let Some(shared) = self.store().shared() {
            handle.set_node(&shared.node);
        }
        let mut stored = handle.settings.stored();
        if let Some(d) = &deferred {
            stored.deferred_task = Some(d.task.clone());
            stored.deferred_schema.clone_from(&d.output_schema);
        }
        let mut acks = Vec::new();
        acks.extend(handle.record(Event::Created {
            settings: Box::new(stored),
        }));
        self.agents.insert(id, handle.clone());
        self.track_writer(&handle.settings);
        if waiting {
            if schedule {
                self.wait_for_dependencies(&handle);
            }
        } else if let Some(task) = p.task {
            acks.extend(
                handle
                    .enqueue(task, false, p.output_schema)
                    .map_err(RegistryError::Invalid)?
                    .ack,
            );
        }
        self.tracker
            .spawn(worker::run(handle.clone(), worker::Start::default()));
        tracing::info!(agent = %handle.name(), id = %handle.id, model = %handle.settings.model.id, waiting, "agent created");
        Ok((handle, acks))
    }

    /// The requested work directory (default: the server's), made absolute, checked
    /// against the allowed roots, created if missing (with `create`) and
    /// canonicalized — off the async runtime.
    pub(crate) async fn workdir(
        &self,
        requested: Option<&str>,
        create: bool,
    ) -> Result<PathBuf, String> {
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
        tokio::task::spawn_blocking(move || crate::workdirs::prepare(&dir, &roots, create))
            .await
            .map_err(|e| format!("cannot prepare the work directory: {e}"))?
    }
}

/// `dir/prefix`, without the trailing `/` that joining an empty prefix would add.
pub(super) fn within(dir: &std::path::Path, prefix: &std::path::Path) -> PathBuf {
    if prefix.as_os_str().is_empty() {
        dir.to_path_buf()
    } else {
        dir.join(prefix)
    }
}

/// The worktree a prepared agent got, to undo it if the creation fails after all.
fn made_worktree(p: &Prepared) -> Option<(worktree::Repo, worktree::Worktree)> {
    Some((
        p.isolate.as_ref()?.repo.clone(),
        p.settings.worktree.clone()?,
    ))
}

fn shared_workdir_warning(others: &Overlap) -> String {
    let mut who: Vec<String> = others.names.iter().map(|n| format!("`{n}`")).collect();
    let rest = others.count.saturating_sub(others.names.len());
    if rest > 0 {
        who.push(format!(
            "{rest} other agent{}",
            if rest == 1 { "" } else { "s" }
        ));
    }
    format!(
        "{} can also write in this work directory (or one holding or inside it): they may overwrite each other's changes. Give each writer a git worktree of its own with isolation: \"worktree\"",
        who.join(", ")
    )
}

/// Wait for the records of a creation to be on disk.
async fn await_acks(handle: &AgentHandle, acks: Vec<Ack>) -> Result<(), RegistryError> {
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
    Ok(())
}
