//! Creating agents: one (`create_agent`) or a whole plan at once (`create_agents`).
//!
//! Creation is two-phase so a plan is all or nothing: [`Registry::prepare`] checks
//! every argument and resolves the model, role, tools and work directory without
//! touching the fleet; [`Registry::commit`] then claims the name, saves the agent and
//! starts its worker. A plan is checked whole (names, dependencies, cycles) before the
//! first agent is committed.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use dashmap::mapref::entry::Entry;
use serde_json::Value;

use super::policy::check_output_schema;
use super::{CreateSpec, DEFAULT_MAX_STEPS, MAX_MAX_STEPS, Registry, RegistryError, write};
use crate::agent::state::AgentStatus;
use crate::agent::{AgentHandle, AgentSettings, Deferred, Initial, worker};
use crate::fleet::budget::Caps;
use crate::plan::graph;
use crate::sandbox::{Sandbox, SandboxMode};
use crate::store::Ack;
use crate::store::event::{Event, StoredSettings};
use crate::tools::ALL_TOOLS;
use crate::worktree;

/// Most retries of a failed command.
pub const MAX_RETRIES: u32 = 5;

/// An agent checked and ready to register.
pub(crate) struct Prepared {
    pub(super) settings: AgentSettings,
    task: Option<String>,
    output_schema: Option<Value>,
    /// With `isolation: "worktree"`: where its worktree goes, made by
    /// [`Registry::make_worktree`] once every argument is checked.
    isolate: Option<Isolate>,
    /// What the orchestrator should know (an unenforceable sandbox, a shared work
    /// directory).
    warnings: Vec<String>,
}

/// A worktree to make: in `repo`, at `path`, from `base`.
pub(crate) struct Isolate {
    repo: worktree::Repo,
    path: PathBuf,
    base: String,
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
        for (i, spec) in specs.into_iter().enumerate() {
            let name = spec.name.clone();
            let refuse = |e: String| {
                RegistryError::Invalid(format!("agents[{i}] (`{name}`): {e}; nothing was created"))
            };
            let (workdir, isolate) = self.placement(&spec).await.map_err(refuse)?;
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
        let writers: Vec<(String, PathBuf)> = prepared
            .iter()
            .filter(|p| p.isolate.is_none() && p.settings.can_write())
            .map(|p| (p.settings.name.clone(), p.settings.workdir.clone()))
            .collect();
        for p in prepared.iter_mut() {
            if p.isolate.is_some() || !p.settings.can_write() {
                continue;
            }
            let dir = &p.settings.workdir;
            let mut others = self.overlapping_writers(dir, &p.settings.name);
            others.extend(
                writers
                    .iter()
                    .filter(|(n, d)| {
                        *n != p.settings.name && (d.starts_with(dir) || dir.starts_with(d))
                    })
                    .map(|(n, _)| n.clone()),
            );
            if !others.is_empty() {
                p.warnings.push(shared_workdir_warning(&others));
            }
        }
    }

    /// The agent's work directory and, with `isolation: "worktree"`, where its
    /// worktree goes (the work directory is then its copy of the one asked for).
    async fn placement(&self, spec: &CreateSpec) -> Result<(PathBuf, Option<Isolate>), String> {
        let isolation = spec.isolation.as_deref();
        if spec.base.is_some() && isolation.is_none() {
            return Err("`base` needs isolation: \"worktree\" (it names what the agent's new branch starts from)".into());
        }
        match isolation {
            None => Ok((self.workdir(spec.workdir.as_deref(), true).await?, None)),
            Some("worktree") => {
                validate_name(&spec.name)?;
                let base = spec.base.clone().unwrap_or_else(|| "HEAD".into());
                if base.trim().is_empty() {
                    return Err("`base` is empty; omit it to start from HEAD, or give a git ref or an agent's name".into());
                }
                let dir = self.workdir(spec.workdir.as_deref(), false).await?;
                let repo = worktree::repo_of(&dir).await?;
                let root = self.worktrees_root().to_path_buf();
                tokio::fs::create_dir_all(&root).await.map_err(|e| {
                    format!("cannot create `{}` for worktrees: {e}", root.display())
                })?;
                let root = tokio::fs::canonicalize(&root).await.unwrap_or(root);
                let path = root.join(&spec.name);
                Ok((
                    within(&path, &repo.prefix),
                    Some(Isolate { repo, path, base }),
                ))
            }
            Some(other) => Err(format!(
                "isolation must be \"worktree\" (a git worktree of its own), or left out; got \"{other}\""
            )),
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
        worktree::check_branch_free(&iso.repo, &branch).await?;
        let wt = worktree::add(&iso.repo, &iso.path, &branch, &commit, &iso.base).await?;
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

    /// Check every argument and build the agent's settings; changes nothing.
    /// `workdir`: the agent's work directory, resolved with [`Registry::workdir`].
    pub(crate) fn prepare(
        &self,
        spec: CreateSpec,
        workdir: PathBuf,
    ) -> Result<Prepared, RegistryError> {
        let invalid = |m: String| RegistryError::Invalid(m);
        validate_name(&spec.name).map_err(invalid)?;
        if self.names.contains_key(&spec.name) {
            return Err(RegistryError::DuplicateName(spec.name));
        }
        let task = checked_task(spec.task)?;
        if task.is_some() {
            self.fleet_may_start()?;
        }
        let caps = checked_caps(spec.max_cost_usd, spec.max_tokens).map_err(invalid)?;
        let retries = spec.retries.unwrap_or(0);
        if retries > MAX_RETRIES {
            return Err(invalid(format!(
                "retries must be between 0 and {MAX_RETRIES}; got {retries}"
            )));
        }
        let depends_on =
            checked_depends_on(&spec.name, &spec.depends_on, task.is_some()).map_err(invalid)?;
        if let Some(schema) = &spec.output_schema {
            check_output_schema(schema)?;
            if task.is_none() {
                return Err(invalid(
                    "output_schema checks the answer to `task`, but no task was given; pass output_schema with command_agent instead".into(),
                ));
            }
        }
        let role = self.role(spec.role.as_deref()).map_err(invalid)?;
        let tools = tools_of(spec.tools.as_deref(), role).map_err(invalid)?;
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
        let sandbox = self
            .sandbox_of(spec.sandbox.as_deref(), spec.network, role)
            .map_err(invalid)?;
        let warnings = unenforced_sandbox(&spec.name, sandbox, &tools)
            .into_iter()
            .collect();
        let stored = StoredSettings {
            name: spec.name,
            role: spec.role,
            model: model.id.clone(),
            extra_prompt: spec.system_prompt.filter(|e| !e.trim().is_empty()),
            tools,
            workdir,
            max_steps,
            max_cost_usd: caps.max_cost_usd,
            max_tokens: caps.max_tokens,
            depends_on,
            deferred_task: None,
            deferred_schema: None,
            retries,
            sandbox: Some(sandbox),
            worktree: None,
        };
        Ok(Prepared {
            settings: self.resolve(stored, model),
            task,
            output_schema: spec.output_schema,
            isolate: None,
            warnings,
        })
    }

    /// The role profile named, if any.
    fn role(&self, name: Option<&str>) -> Result<Option<&crate::prompts::Role>, String> {
        let Some(r) = name else {
            return Ok(None);
        };
        self.prompts.role(r).map(Some).ok_or_else(|| {
            format!(
                "unknown role `{r}`; known roles: {}",
                self.prompts.role_names().join(", ")
            )
        })
    }

    /// The sandbox asked for, else the role's, else the fleet's default.
    fn sandbox_of(
        &self,
        mode: Option<&str>,
        network: Option<bool>,
        role: Option<&crate::prompts::Role>,
    ) -> Result<Sandbox, String> {
        let mode = match mode {
            Some(s) => SandboxMode::parse(s).ok_or_else(|| {
                format!(
                    "sandbox must be \"workspace-write\" (write only in the work directory and temp directories), \"read-only\" or \"off\"; got \"{s}\""
                )
            })?,
            None => role
                .and_then(|r| r.sandbox)
                .unwrap_or(self.sandbox_default.mode),
        };
        Ok(Sandbox {
            mode,
            network: network
                .or(role.and_then(|r| r.network))
                .unwrap_or(self.sandbox_default.network),
        })
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
            let mut state = crate::agent::state::AgentState::new(p.settings.model.price.is_some());
            state.status = AgentStatus::Waiting;
            state.waiting_on = p.settings.depends_on.clone();
            initial.state = Some(state);
            initial.deferred = deferred.clone();
        }
        let handle = AgentHandle::new(
            id.clone(),
            p.settings,
            SystemTime::now(),
            &self.cancel,
            self.fleet.clone(),
            initial,
        );
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
fn within(dir: &std::path::Path, prefix: &std::path::Path) -> PathBuf {
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

fn shared_workdir_warning(others: &[String]) -> String {
    let names: Vec<String> = others.iter().map(|n| format!("`{n}`")).collect();
    format!(
        "{} can also write in this work directory (or one holding or inside it): they may overwrite each other's changes. Give each writer a git worktree of its own with isolation: \"worktree\"",
        names.join(", ")
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

/// `task`, refused when given but empty.
fn checked_task(task: Option<String>) -> Result<Option<String>, RegistryError> {
    match task {
        Some(t) if t.trim().is_empty() => Err(RegistryError::Invalid(
            "`task` is empty: give the agent its first instruction, or omit `task` and use command_agent later".into(),
        )),
        t => Ok(t),
    }
}

/// An agent's own caps, each positive when set.
fn checked_caps(max_cost_usd: Option<f64>, max_tokens: Option<u64>) -> Result<Caps, String> {
    if let Some(c) = max_cost_usd
        && !(c.is_finite() && c > 0.0)
    {
        return Err(format!(
            "max_cost_usd must be a positive number of US dollars, e.g. 0.5; got {c}"
        ));
    }
    if max_tokens == Some(0) {
        return Err(
            "max_tokens must be at least 1 (input + output tokens over all the agent's commands); omit it for no cap".into(),
        );
    }
    Ok(Caps {
        max_cost_usd,
        max_tokens,
    })
}

/// `depends_on` without repeats: names, not itself, and only with a task to hold.
fn checked_depends_on(
    name: &str,
    depends_on: &[String],
    has_task: bool,
) -> Result<Vec<String>, String> {
    let depends_on = dedup(depends_on);
    if let Some(bad) = depends_on.iter().find(|d| d.trim().is_empty()) {
        return Err(format!(
            "depends_on has an empty name ({bad:?}); list agent names"
        ));
    }
    if depends_on.iter().any(|d| d == name) {
        return Err(format!(
            "agent `{name}` depends on itself; remove it from its depends_on"
        ));
    }
    if !depends_on.is_empty() && !has_task {
        return Err(
            "depends_on needs a `task`: the task starts when the dependencies are done".into(),
        );
    }
    Ok(depends_on)
}

/// The tools asked for (each known, without repeats), else the role's, else all.
fn tools_of(
    tools: Option<&[String]>,
    role: Option<&crate::prompts::Role>,
) -> Result<Vec<String>, String> {
    match (tools, role.and_then(|r| r.tools.as_ref())) {
        (Some(tools), _) => {
            if let Some(bad) = tools.iter().find(|t| !ALL_TOOLS.contains(&t.as_str())) {
                return Err(format!(
                    "unknown tool `{bad}` in `tools`; the sub-agent tools are: {}",
                    ALL_TOOLS.join(", ")
                ));
            }
            Ok(dedup(tools))
        }
        (None, Some(role_tools)) => Ok(role_tools.clone()),
        (None, None) => Ok(ALL_TOOLS.iter().map(|t| t.to_string()).collect()),
    }
}

/// A warning when the agent's sandbox cannot be enforced on this system.
fn unenforced_sandbox(name: &str, sandbox: Sandbox, tools: &[String]) -> Option<String> {
    if sandbox.mode == SandboxMode::Off || !tools.iter().any(|t| t == "run_command") {
        return None;
    }
    let why = crate::sandbox::sandbox_status().err()?;
    let mode = sandbox.mode.as_str();
    tracing::warn!(agent = %name, "sandbox {mode} cannot be enforced: {why}");
    Some(format!(
        "sandbox \"{mode}\" cannot be enforced on this system ({why}): its run_command runs unconfined, as with sandbox \"off\""
    ))
}

/// The items in their first order, without repeats.
fn dedup(items: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for t in items {
        if !out.contains(t) {
            out.push(t.clone());
        }
    }
    out
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
