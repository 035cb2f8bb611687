//! The MCP surface: twelve tools over one [`Registry`]. This layer owns no state;
//! it checks arguments, calls the registry, and shapes compact JSON results.
//! A mistake the orchestrator can fix comes back as a tool result with
//! `isError: true` whose message says what was wrong and how to fix it.

pub mod params;
pub mod results;
pub mod wait;

use std::sync::Arc;
use std::time::{Duration, Instant};

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{Implementation, ProgressNotificationParam, ServerCapabilities, ServerConfig};
use rmcp::service::RequestContext;
use rmcp::{Json, RoleServer, ServerHandler, tool, tool_handler, tool_router};

use crate::agent::output::slice_chars;
use crate::agent::state::AgentStatus;
use crate::prompts::INSTRUCTIONS;
use crate::registry::{CreateSpec, Registry, parse_status_filter};
use crate::store::event::KINDS;
use params::*;
use results::*;
use wait::{Progress, Until};

pub const DEFAULT_WAIT_S: f64 = 50.0;
pub const MAX_WAIT_S: f64 = 600.0;
pub const DEFAULT_MAX_CHARS: u64 = 4000;
pub const MAX_MAX_CHARS: u64 = 100_000;
pub const DEFAULT_EVENTS: u32 = 50;
pub const DEFAULT_LIST: u32 = 100;
pub const MAX_LIST: u32 = 1000;
pub const MAX_EVENTS: u32 = 500;

fn rfc3339_ms(ms: i64) -> String {
    crate::agent::state::rfc3339(
        std::time::UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0)),
    )
}

/// The MCP server: a cheap clone over the shared registry.
#[derive(Clone)]
pub struct FleetServer {
    registry: Arc<Registry>,
    tool_router: ToolRouter<Self>,
    /// The MCP `instructions`: the fixed text, plus where the dashboard is.
    instructions: Arc<str>,
}

impl FleetServer {
    pub fn new(registry: Arc<Registry>) -> Self {
        Self {
            registry,
            tool_router: Self::tool_router(),
            instructions: INSTRUCTIONS.into(),
        }
    }

    /// Tell the orchestrator where the dashboard is (in the MCP `instructions`), so it
    /// can point the user there.
    pub fn with_dashboard(mut self, url: String) -> Self {
        self.instructions = format!(
            "{INSTRUCTIONS}\n\nDashboard: the user can watch and steer the fleet live at {url} (opened once as {url}?token=<the flotilla token>, from FLOTILLA_TOKEN or the token file in the fleet's data directory). Tell the user this address when they ask how to see the agents.\n"
        )
        .into();
        self
    }

    /// A warning when a dollar cap is set and the agent's model has no price.
    fn unpriced_warning(&self, h: &crate::agent::AgentHandle) -> Option<String> {
        let dollar_cap = h.settings.caps.max_cost_usd.is_some()
            || self.registry.fleet().budget.caps().max_cost_usd.is_some();
        (dollar_cap && h.settings.model.price.is_none()).then(|| {
            format!(
                "model {} has no known price: a max_cost_usd cap cannot see its spend (only max_tokens can); add its price under [prices] in the config",
                h.settings.model.id
            )
        })
    }

    /// The status of an agent that has just been given work: `paused` when held,
    /// `queued` when it must wait for a run slot, else `running`.
    fn start_status(&self, h: &crate::agent::AgentHandle) -> AgentStatus {
        let status = h.peek(|s| s.status);
        let slots = &self.registry.fleet().slots;
        if h.is_paused() {
            AgentStatus::Paused
        } else if status == AgentStatus::Queued
            || (status != AgentStatus::Running && slots.max() > 0 && slots.running() >= slots.max())
        {
            AgentStatus::Queued
        } else {
            AgentStatus::Running
        }
    }

    /// Pause or let go the agents named (default: the whole fleet), each saved
    /// before this returns.
    async fn hold(&self, agents: Option<Vec<String>>, pause: bool) -> Result<PauseResult, String> {
        let handles = self
            .registry
            .select(agents.as_deref())
            .map_err(|e| e.to_string())?;
        let mut result = PauseResult {
            changed: Vec::new(),
            unchanged: Vec::new(),
        };
        let mut acks = Vec::new();
        for h in &handles {
            let moved = if pause { h.pause() } else { h.resume() };
            match moved {
                Some(ack) => {
                    result.changed.push(h.name().to_string());
                    acks.extend(ack);
                }
                None => result.unchanged.push(h.name().to_string()),
            }
        }
        for ack in acks {
            match ack.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    return Err(format!(
                        "the change is in effect but could not be saved: {e}"
                    ));
                }
                Err(_) => return Err("the server is stopping".into()),
            }
        }
        tracing::info!(
            pause,
            changed = result.changed.len(),
            "agents {}",
            if pause { "paused" } else { "resumed" }
        );
        Ok(result)
    }
}

#[tool_router]
impl FleetServer {
    /// Create a sub-agent with its own conversation, model, tools and work directory.
    /// With `task` it starts working at once; this call returns immediately.
    #[tool]
    async fn create_agent(
        &self,
        Parameters(p): Parameters<CreateAgentParams>,
    ) -> Result<Json<CreateAgentResult>, String> {
        if p.model.as_deref().is_some_and(|m| m.trim().is_empty()) {
            return Err(
                "`model` is empty; omit it to use the default model, or give \
                        `provider:model` or an alias such as \"sonnet\""
                    .into(),
            );
        }
        let (handle, warnings) = self
            .registry
            .create(spec_of(p))
            .await
            .map_err(|e| e.to_string())?;
        let state = handle.state();
        let warning = join_notes(
            std::iter::once(self.unpriced_warning(&handle)).chain(warnings.into_iter().map(Some)),
        );
        Ok(Json(CreateAgentResult {
            agent_id: handle.id.clone(),
            name: handle.name().to_string(),
            status: if state.pending > 0 {
                self.start_status(&handle)
            } else {
                state.status
            },
            model: handle.settings.model.id.clone(),
            workdir: handle.settings.workdir.display().to_string(),
            branch: handle.settings.worktree.as_ref().map(|w| w.branch.clone()),
            warning,
        }))
    }

    /// Create a whole plan in one call: every element takes create_agent's arguments,
    /// and `depends_on` may name agents of the same call. Each agent starts when its
    /// dependencies are done, with their answers handed over; a failed dependency
    /// cancels its dependents. All or nothing: nothing is created if any agent, name,
    /// dependency or cycle is wrong. Then sleep with wait_for_agents.
    #[tool]
    async fn create_agents(
        &self,
        Parameters(p): Parameters<CreateAgentsParams>,
    ) -> Result<Json<CreateAgentsResult>, String> {
        let specs = p.agents.into_iter().map(spec_of).collect();
        let handles = self
            .registry
            .create_plan(specs)
            .await
            .map_err(|e| e.to_string())?;
        let warnings = handles
            .iter()
            .flat_map(|(h, warnings)| {
                self.unpriced_warning(h)
                    .into_iter()
                    .chain(warnings.iter().cloned())
                    .map(|w| format!("{}: {w}", h.name()))
            })
            .collect();
        let agents = handles
            .iter()
            .map(|(h, _)| {
                let s = h.state();
                CreatedRow {
                    name: h.name().to_string(),
                    agent_id: h.id.clone(),
                    status: if s.pending > 0 {
                        self.start_status(h)
                    } else {
                        s.status
                    },
                    waiting_on: s.waiting_on,
                    branch: h.settings.worktree.as_ref().map(|w| w.branch.clone()),
                }
            })
            .collect();
        Ok(Json(CreateAgentsResult { agents, warnings }))
    }

    /// Give an agent its next instruction; it keeps its whole conversation. Returns at
    /// once. Queued behind the current command unless `interrupt` is true.
    #[tool]
    async fn command_agent(
        &self,
        Parameters(p): Parameters<CommandAgentParams>,
    ) -> Result<Json<CommandAgentResult>, String> {
        if p.task.trim().is_empty() {
            return Err("`task` is empty: say what the agent should do next".into());
        }
        let handle = self.registry.get(&p.agent).map_err(|e| e.to_string())?;
        self.registry
            .fleet()
            .budget
            .check()
            .map_err(|e| e.to_string())?;
        if let Some(e) = crate::fleet::budget::exhausted(
            crate::fleet::budget::Owner::Agent(handle.name()),
            &handle.settings.caps,
            handle.peek(|s| s.spent()),
        ) {
            return Err(e.to_string());
        }
        if let Some(schema) = &p.output_schema {
            crate::plan::checkpoint::Checkpoint::new(schema)?;
        }
        if handle.deferred().is_some() {
            return Err(format!(
                "agent `{}` is waiting for its dependencies ({}); its task starts when they are done. Command it after that, or delete it",
                handle.name(),
                handle.settings.depends_on.join(", ")
            ));
        }
        let queued = handle.enqueue(p.task, p.interrupt.unwrap_or(false), p.output_schema)?;
        // Acknowledge only what is on disk: a command is never lost to a crash. If the
        // store fails the command still runs (it is queued): say so, but do not
        // report an error an orchestrator would answer by sending it again.
        let warning = match queued.ack {
            None => None,
            Some(ack) => match ack.await {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(format!(
                    "the command is queued and will run, but could not be saved ({e}); it would be lost if the server restarted"
                )),
                Err(_) => Some("the server is stopping; the command may not run".into()),
            },
        };
        Ok(Json(CommandAgentResult {
            agent_id: handle.id.clone(),
            name: handle.name().to_string(),
            command: queued.index,
            status: self.start_status(&handle),
            pending: queued.waiting,
            warning,
        }))
    }

    /// One agent's compact status: status, counters, current activity, tokens, cost,
    /// last error. Do not poll this in a loop: use wait_for_agents to sleep.
    #[tool]
    async fn get_agent_status(
        &self,
        Parameters(p): Parameters<AgentParams>,
    ) -> Result<Json<AgentStatusRow>, String> {
        let handle = self.registry.get(&p.agent).map_err(|e| e.to_string())?;
        let mut row = AgentStatusRow::of(&handle);
        row.isolation = Isolation::of(&handle).await;
        Ok(Json(row))
    }

    /// An agent's final answer to a command (default the latest), in slices of
    /// `max_chars`, with the files it read and wrote while working on it.
    #[tool]
    async fn get_agent_output(
        &self,
        Parameters(p): Parameters<GetAgentOutputParams>,
    ) -> Result<Json<AgentOutputResult>, String> {
        let max_chars = p.max_chars.unwrap_or(DEFAULT_MAX_CHARS);
        if !(1..=MAX_MAX_CHARS).contains(&max_chars) {
            return Err(format!(
                "max_chars must be between 1 and {MAX_MAX_CHARS}; got {max_chars}"
            ));
        }
        let handle = self.registry.get(&p.agent).map_err(|e| e.to_string())?;
        let offset = usize::try_from(p.offset.unwrap_or(0)).unwrap_or(usize::MAX);
        let isolation = Isolation::of(&handle).await;
        handle
            .with_outputs(|outputs| {
                let count = outputs.len() as u32;
                if count == 0 {
                    return Err(format!(
                        "agent `{}` has not been given a command yet; use command_agent",
                        handle.name()
                    ));
                }
                let index = p.command.unwrap_or(count);
                if index == 0 || index > count {
                    return Err(format!(
                        "command must be between 1 and {count} (agent `{}` has had {count} command{}); got {index}",
                        handle.name(),
                        if count == 1 { "" } else { "s" }
                    ));
                }
                let record = &outputs[index as usize - 1];
                let (text, total_chars, next_offset) =
                    slice_chars(&redact(&handle, &record.text), offset, max_chars as usize);
                Ok(AgentOutputResult {
                    command: index,
                    command_status: record.status,
                    text,
                    offset: offset.min(total_chars),
                    total_chars,
                    next_offset,
                    error: record.error.as_deref().map(|e| redact(&handle, e)),
                    output_json: record.output_json.clone(),
                    files_written: record.files_written.iter().cloned().collect(),
                    files_read: record.files_read.iter().cloned().collect(),
                    isolation,
                })
            })
            .map(Json)
    }

    /// An agent's event log, oldest first, one summarised row per event (commands,
    /// model calls, tool calls and results, status changes): how to see what it did
    /// without reading its transcript. Page with `after`/`limit`, filter with `kinds`.
    #[tool]
    async fn get_agent_events(
        &self,
        Parameters(p): Parameters<GetAgentEventsParams>,
    ) -> Result<Json<AgentEventsResult>, String> {
        let limit = p.limit.unwrap_or(DEFAULT_EVENTS);
        if !(1..=MAX_EVENTS).contains(&limit) {
            return Err(format!(
                "limit must be between 1 and {MAX_EVENTS}; got {limit}"
            ));
        }
        if p.kinds.as_ref().is_some_and(Vec::is_empty) {
            return Err(format!(
                "`kinds` is an empty list; omit it for every kind, or name some of: {}",
                KINDS.join(", ")
            ));
        }
        if let Some(bad) = p
            .kinds
            .iter()
            .flatten()
            .find(|k| !KINDS.contains(&k.as_str()))
        {
            return Err(format!(
                "unknown event kind `{bad}`; kinds are: {}",
                KINDS.join(", ")
            ));
        }
        let handle = self.registry.get(&p.agent).map_err(|e| e.to_string())?;
        let page = handle
            .store()
            .events(&handle.id, p.after.unwrap_or(0), limit as usize, p.kinds)
            .await
            .map_err(|e| e.to_string())?;
        let next_after = if page.more {
            page.events.last().map(|e| e.seq)
        } else {
            None
        };
        Ok(Json(AgentEventsResult {
            agent_id: handle.id.clone(),
            name: handle.name().to_string(),
            events: page
                .events
                .into_iter()
                .map(|e| EventRow {
                    seq: e.seq,
                    at: rfc3339_ms(e.at_ms),
                    kind: e.event.kind().to_string(),
                    summary: redact(&handle, &e.event.summary()),
                })
                .collect(),
            next_after,
        }))
    }

    /// Delete an agent: cancels its model call or tool in flight and kills its child
    /// processes before returning. Its files in the work directory stay; its records
    /// (conversation, outputs, events) are removed from the store.
    #[tool]
    async fn delete_agent(
        &self,
        Parameters(p): Parameters<AgentParams>,
    ) -> Result<Json<DeleteAgentResult>, String> {
        let (handle, worktree) = self
            .registry
            .delete(&p.agent)
            .await
            .map_err(|e| e.to_string())?;
        let branch = handle.settings.worktree.as_ref().map(|w| w.branch.clone());
        let note = worktree.map(|r| match r {
            Ok(removed) if removed.committed => format!(
                "its uncommitted work was committed to {}; the worktree was removed, the branch stays",
                removed.branch
            ),
            Ok(removed) => format!(
                "the worktree was removed; its work stays on {}",
                removed.branch
            ),
            Err(e) => format!("the agent was deleted, but its worktree could not be removed: {e}"),
        });
        Ok(Json(DeleteAgentResult {
            deleted: handle.name().to_string(),
            agent_id: handle.id.clone(),
            branch,
            note,
        }))
    }

    /// One compact row per agent (optionally only those with `status`), a page at a
    /// time in name order (`limit`, `after` = the previous page's `next_after`), plus
    /// totals over the whole fleet: agents by status, tokens and cost.
    #[tool]
    async fn list_agents(
        &self,
        Parameters(p): Parameters<ListAgentsParams>,
    ) -> Result<Json<ListAgentsResult>, String> {
        let filter = p
            .status
            .as_deref()
            .map(parse_status_filter)
            .transpose()
            .map_err(|e| e.to_string())?;
        let limit = p.limit.unwrap_or(DEFAULT_LIST);
        if !(1..=MAX_LIST).contains(&limit) {
            return Err(format!(
                "limit must be between 1 and {MAX_LIST} rows; got {limit}. Page with `after`"
            ));
        }
        if p.after.as_deref().is_some_and(|a| a.trim().is_empty()) {
            return Err("`after` is empty: pass the `next_after` of the previous page, or omit it for the first page".into());
        }
        let (page, more) = self.registry.page(p.after.as_deref(), limit as usize, |h| {
            filter.is_none_or(|f| h.peek(|s| s.status) == f)
        });
        let next_after = more
            .then(|| page.last().map(|h| h.name().to_string()))
            .flatten();
        let agents = page.iter().map(|h| AgentRow::of(h, true, 0)).collect();
        let totals = self.totals();
        Ok(Json(ListAgentsResult {
            agents,
            next_after,
            totals,
        }))
    }

    /// Totals over the whole fleet, in constant time.
    fn totals(&self) -> FleetTotals {
        let fleet = self.registry.fleet();
        let t = fleet.totals.snapshot();
        let budget = &fleet.budget;
        FleetTotals {
            agents: t.agents,
            by_status: t.by_status,
            tokens: crate::agent::state::Tokens {
                input: t.input,
                output: t.output,
            },
            cost_usd: round_cost(t.cost_usd),
            unpriced_agents: t.unpriced_agents,
            budget: budget.caps().is_set().then(|| {
                let spent = budget.spent();
                BudgetRow {
                    max_cost_usd: budget.caps().max_cost_usd,
                    cost_usd: round_cost(spent.cost_usd),
                    max_tokens: budget.caps().max_tokens,
                    tokens: spent.tokens,
                }
            }),
        }
    }

    /// Pause agents (default: the whole fleet): each finishes the model call or tool
    /// it is in, then holds before its next step; queued commands stay queued; nothing
    /// is lost, even across a restart. Paused agents count as settled for
    /// wait_for_agents. Undo with resume_agents.
    #[tool]
    async fn pause_agents(
        &self,
        Parameters(p): Parameters<AgentsParams>,
    ) -> Result<Json<PauseResult>, String> {
        self.hold(p.agents, true).await.map(Json)
    }

    /// Resume paused agents (default: the whole fleet): each continues exactly where
    /// it stopped.
    #[tool]
    async fn resume_agents(
        &self,
        Parameters(p): Parameters<AgentsParams>,
    ) -> Result<Json<PauseResult>, String> {
        self.hold(p.agents, false).await.map(Json)
    }

    /// Delete every agent (cancelling all work and killing their processes). Returns
    /// how many were deleted.
    #[tool]
    async fn delete_all_agents(
        &self,
        Parameters(NoParams {}): Parameters<NoParams>,
    ) -> Result<Json<DeleteAllResult>, String> {
        let deleted = self.registry.delete_all().await;
        Ok(Json(DeleteAllResult { deleted }))
    }

    /// Sleep until the agents have settled (`until`: all, or any), or `timeout_s`
    /// passes, with progress notifications meanwhile. One call, no polling. Returns
    /// `timed_out` and a compact row per agent; on timed_out, call again.
    #[tool]
    async fn wait_for_agents(
        &self,
        Parameters(p): Parameters<WaitForAgentsParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<Json<WaitResult>, String> {
        let until = match p.until.as_deref().unwrap_or("all") {
            "all" => Until::All,
            "any" => Until::Any,
            other => {
                return Err(format!(
                    "`until` must be \"all\" or \"any\"; got \"{other}\""
                ));
            }
        };
        let output_max_chars = p.output_max_chars.unwrap_or(0);
        if output_max_chars > MAX_MAX_CHARS {
            return Err(format!(
                "output_max_chars must be between 0 and {MAX_MAX_CHARS}; got {output_max_chars}"
            ));
        }
        let timeout_s = p.timeout_s.unwrap_or(DEFAULT_WAIT_S);
        if !(0.0..=MAX_WAIT_S).contains(&timeout_s) {
            return Err(format!(
                "timeout_s must be between 0 and {MAX_WAIT_S} seconds; got {timeout_s}. For longer waits, call again when it returns timed_out"
            ));
        }
        let (agents, note) = match &p.agents {
            Some(names) if names.is_empty() => {
                return Err(
                    "`agents` is an empty list; omit it to wait for every agent with work pending"
                        .into(),
                );
            }
            Some(names) => {
                let mut handles = Vec::with_capacity(names.len());
                for n in names {
                    let h = self.registry.get(n).map_err(|e| e.to_string())?;
                    if !handles.iter().any(|x: &Arc<_>| Arc::ptr_eq(x, &h)) {
                        handles.push(h);
                    }
                }
                (handles, None)
            }
            None => {
                let busy: Vec<_> = self
                    .registry
                    .all()
                    .into_iter()
                    .filter(|h| !h.state().settled())
                    .collect();
                let note = busy
                    .is_empty()
                    .then(|| "no agent has work running or queued".to_string());
                (busy, note)
            }
        };
        let started = Instant::now();
        let token = ctx.meta.get_progress_token();
        let peer = ctx.peer.clone();
        let progress = move |p: Progress| -> crate::provider::BoxFuture<'static, ()> {
            let token = token.clone();
            let peer = peer.clone();
            Box::pin(async move {
                if let Some(token) = token {
                    let param = ProgressNotificationParam::new(token, p.elapsed_s)
                        .with_total(p.timeout_s)
                        .with_message(p.message);
                    if let Err(e) = peer.notify_progress(param).await {
                        tracing::debug!("progress notification failed: {e}");
                    }
                }
            })
        };
        let timed_out = wait::wait(
            &agents,
            until,
            Duration::from_secs_f64(timeout_s),
            self.registry.watch_fleet(),
            &ctx.ct,
            progress,
        )
        .await
        .ok_or_else(|| "the wait was cancelled by the client".to_string())?;
        let note = join_notes(
            std::iter::once(note)
                .chain(std::iter::once(self.registry.fleet().budget.take_note()))
                .chain(agents.iter().map(|h| h.take_note())),
        );
        // Rows for the agents named; without names, at most a page of them (the
        // rest counted), so a huge fleet cannot flood the orchestrator's context.
        let shown = if p.agents.is_some() {
            agents.len()
        } else {
            agents.len().min(DEFAULT_LIST as usize)
        };
        let more = agents.len() - shown;
        Ok(Json(WaitResult {
            timed_out,
            waited_s: (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
            agents: agents[..shown]
                .iter()
                .map(|h| AgentRow::of(h, false, output_max_chars as usize))
                .collect(),
            more_agents: more,
            note,
        }))
    }
}

/// A create_agent call's arguments, as the registry takes them.
fn spec_of(p: CreateAgentParams) -> CreateSpec {
    CreateSpec {
        name: p.name,
        task: p.task,
        system_prompt: p.system_prompt,
        role: p.role,
        model: p.model,
        tools: p.tools,
        workdir: p.workdir,
        max_steps: p.max_steps,
        max_cost_usd: p.max_cost_usd,
        max_tokens: p.max_tokens,
        depends_on: p.depends_on.unwrap_or_default(),
        retries: p.retries,
        output_schema: p.output_schema,
        isolation: p.isolation,
        base: p.base,
        sandbox: p.sandbox,
        network: p.network,
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for FleetServer {
    /// Arguments are checked against the tool's schema first ([`check_arguments`]), so
    /// unknown or mistyped arguments get a plain-words `isError` result. A value the
    /// schema allows but the typed parameters refuse (an unknown tool in `tools`, a
    /// `sandbox` or `isolation` that is no choice) is an `isError` result too, with the
    /// parameter type's own message.
    async fn call_tool(
        &self,
        request: rmcp::model::CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::CallToolResponse, rmcp::ErrorData> {
        let refused = |tool: &str, message: String| {
            tracing::debug!(tool, "refused arguments: {message}");
            Ok(
                rmcp::model::CallToolResult::error(vec![rmcp::model::ContentBlock::text(message)])
                    .into(),
            )
        };
        let Some(tool) = self.tool_router.get(&request.name) else {
            let tcc = rmcp::handler::server::tool::ToolCallContext::new(self, request, context);
            return self.tool_router.call(tcc).await;
        };
        if let Err(message) = check_arguments(
            &request.name,
            &tool.input_schema,
            request.arguments.as_ref(),
        ) {
            return refused(&request.name, message);
        }
        let name = request.name.clone();
        let tcc = rmcp::handler::server::tool::ToolCallContext::new(self, request, context);
        match self.tool_router.call(tcc).await {
            // rmcp's `Parameters` reports a deserialization failure as invalid params.
            Err(e) if e.code == rmcp::model::ErrorCode::INVALID_PARAMS => {
                let message = e.message.as_ref();
                let message = message
                    .strip_prefix("failed to deserialize parameters: ")
                    .unwrap_or(message);
                refused(&name, message.to_string())
            }
            answer => answer,
        }
    }

    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("flotilla", env!("CARGO_PKG_VERSION")))
            .with_instructions(self.instructions.to_string())
    }
}
