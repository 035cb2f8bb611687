//! The MCP surface: twelve tools over one [`Registry`]. This layer owns no state;
//! it checks arguments, calls the registry, and shapes compact JSON results.
//! A mistake the orchestrator can fix comes back as a tool result with
//! `isError: true` whose message says what was wrong and how to fix it. Every result
//! and progress message is redacted on its way out ([`redacted`]).

mod executor;
pub mod params;
pub mod redacted;
pub mod results;
pub(crate) mod routed;
mod schema;
pub mod tasks;
pub mod wait;

use std::sync::Arc;
use std::time::{Duration, Instant};

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{Implementation, ProgressNotificationParam, ServerCapabilities, ServerConfig};
use rmcp::service::RequestContext;
use rmcp::{Json, RoleServer, ServerHandler, tool, tool_handler, tool_router};
use tokio_util::sync::CancellationToken;

use crate::agent::output::slice_chars;
use crate::plan::redact::Redactor;
use crate::prompts::INSTRUCTIONS;
use crate::registry::{CreateSpec, Held, Registry, RegistryError, parse_status_filter};
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
    /// Cancelled when the server starts shutting down: waits in flight answer.
    stopping: CancellationToken,
    /// The `notifications/tasks` watchers ([`tasks`]).
    watchers: tokio_util::task::TaskTracker,
    /// This node's fleet of several nodes, if any ([`routed`]).
    cluster: Option<Arc<crate::cluster::Cluster>>,
    /// Answering calls another node forwarded: no placement, no fan-out.
    forwarded: bool,
}

impl FleetServer {
    pub fn new(registry: Arc<Registry>) -> Self {
        let instructions = match registry.models().default_cli() {
            Some((model, source)) => format!(
                "{INSTRUCTIONS}\n\nDefault model: `{model}` ({source}; no API key is set): agents created without `model` are {model} sessions.\n"
            ),
            None => INSTRUCTIONS.to_string(),
        };
        Self {
            registry,
            tool_router: Self::lean_router(),
            instructions: instructions.into(),
            stopping: CancellationToken::new(),
            watchers: tokio_util::task::TaskTracker::new(),
            cluster: None,
            forwarded: false,
        }
    }

    /// Serve as one node of a fleet of several: calls for agents other nodes run go
    /// there ([`routed`]).
    pub fn with_cluster(mut self, cluster: Option<Arc<crate::cluster::Cluster>>) -> Self {
        self.cluster = cluster;
        self
    }

    /// The tool router with lean, portable schemas ([`schema::lean`]), built once per
    /// process: every HTTP session clones it.
    fn lean_router() -> ToolRouter<Self> {
        static ROUTER: std::sync::OnceLock<ToolRouter<FleetServer>> = std::sync::OnceLock::new();
        ROUTER
            .get_or_init(|| {
                let mut router = Self::tool_router();
                for route in router.map.values_mut() {
                    let tool = &mut route.attr;
                    let mut input = (*tool.input_schema).clone();
                    schema::lean(&mut input, schema::Nulls::Drop);
                    if tool.name == "create_agents" {
                        schema::items_by_reference(
                            &mut input,
                            "agents",
                            "One agent: an object of create_agent's arguments",
                        );
                    }
                    tool.input_schema = Arc::new(input);
                    tasks::mark(tool);
                    if let Some(output) = &tool.output_schema {
                        let mut output = (**output).clone();
                        schema::lean(&mut output, schema::Nulls::Keep);
                        tool.output_schema = Some(Arc::new(output));
                    }
                }
                router
            })
            .clone()
    }

    /// The token the transport cancels when the server starts shutting down, before
    /// it closes the sessions: `wait_for_agents` calls in flight then answer.
    pub fn with_stopping(mut self, stopping: CancellationToken) -> Self {
        self.stopping = stopping;
        self
    }

    /// Tell the orchestrator where the dashboard is (in the MCP `instructions`), so it
    /// can point the user there.
    pub fn with_dashboard(mut self, url: String) -> Self {
        self.instructions = format!(
            "{}\n\nDashboard: the user can watch and steer the fleet live at {url} (opened once as {url}?token=<the flotilla token>, from FLOTILLA_TOKEN or the token file in the fleet's data directory). Tell the user this address when they ask how to see the agents.\n",
            self.instructions.trim_end()
        )
        .into();
        self
    }

    /// The agents `wait_for_agents` waits on: those named, or every agent with work
    /// pending (with a note when there is none).
    fn wait_targets(
        &self,
        names: Option<&[String]>,
    ) -> Result<(Vec<Arc<crate::agent::AgentHandle>>, Option<String>), String> {
        match names {
            Some([]) => Err(
                "`agents` is an empty list; omit it to wait for every agent with work pending"
                    .into(),
            ),
            Some(names) => {
                let mut handles = Vec::with_capacity(names.len());
                for n in names {
                    let h = self.registry.get(n)?;
                    if !handles.iter().any(|x: &Arc<_>| Arc::ptr_eq(x, &h)) {
                        handles.push(h);
                    }
                }
                Ok((handles, None))
            }
            None => {
                let busy: Vec<_> = self
                    .registry
                    .all()
                    .into_iter()
                    // A question is work pending too: the orchestrator must answer it.
                    .filter(|h| {
                        h.peek(|s| {
                            !s.settled() || s.status == crate::agent::state::AgentStatus::NeedsInput
                        })
                    })
                    .collect();
                let note = busy
                    .is_empty()
                    .then(|| "no agent has work running or queued".to_string());
                Ok((busy, note))
            }
        }
    }
}

/// Sends `wait_for_agents`' progress to the client, when it asked for progress.
fn progress_notifier(
    ctx: &RequestContext<RoleServer>,
    redactor: Redactor,
) -> impl Fn(Progress) -> crate::provider::BoxFuture<'static, ()> + use<> {
    let token = ctx.meta.get_progress_token();
    let peer = ctx.peer.clone();
    move |p: Progress| -> crate::provider::BoxFuture<'static, ()> {
        let token = token.clone();
        let peer = peer.clone();
        let message = redactor.redact_string(p.message);
        Box::pin(async move {
            if let Some(token) = token {
                let param = ProgressNotificationParam::new(token, p.elapsed_s)
                    .with_total(p.timeout_s)
                    .with_message(message);
                if let Err(e) = peer.notify_progress(param).await {
                    tracing::debug!("progress notification failed: {e}");
                }
            }
        })
    }
}

#[tool_router]
impl FleetServer {
    /// Create a sub-agent with its own conversation, model, tools and directory.
    /// Returns at once; with `task` it starts working.
    #[tool]
    async fn create_agent(
        &self,
        Parameters(p): Parameters<CreateAgentParams>,
    ) -> Result<Json<CreateAgentResult>, String> {
        self.between_nodes_only(p.remote.is_some())?;
        let (handle, warnings) = self.registry.create(p.into()).await?;
        let state = handle.state();
        let warning = join_notes(
            std::iter::once(self.registry.unpriced_warning(&handle))
                .chain(warnings.into_iter().map(Some)),
        );
        Ok(Json(CreateAgentResult {
            agent_id: handle.id.clone(),
            name: handle.name().to_string(),
            status: if state.pending > 0 {
                self.registry.start_status(&handle)
            } else {
                state.status
            },
            model: handle.settings.model.id.clone(),
            workdir: handle.settings.workdir.display().to_string(),
            branch: handle.settings.worktree.as_ref().map(|w| w.branch.clone()),
            warning,
        }))
    }

    /// Create a whole plan in one call, all or nothing. Each agent takes create_agent's
    /// arguments and starts when its `depends_on` are done, with their answers.
    #[tool]
    async fn create_agents(
        &self,
        Parameters(p): Parameters<CreateAgentsParams>,
    ) -> Result<Json<CreateAgentsResult>, String> {
        self.between_nodes_only(p.agents.iter().any(|a| a.remote.is_some()))?;
        let specs = p.agents.into_iter().map(CreateSpec::from).collect();
        let handles = self.registry.create_plan(specs).await?;
        let warnings = handles
            .iter()
            .flat_map(|(h, warnings)| {
                self.registry
                    .unpriced_warning(h)
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
                        self.registry.start_status(h)
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

    /// Give an agent its next instruction; it keeps its conversation. Returns at once.
    #[tool]
    async fn command_agent(
        &self,
        Parameters(p): Parameters<CommandAgentParams>,
    ) -> Result<Json<CommandAgentResult>, String> {
        let commanded = self
            .registry
            .command(
                &p.agent,
                p.task,
                p.interrupt.unwrap_or(false),
                p.output_schema,
            )
            .await?;
        let handle = &commanded.handle;
        Ok(Json(CommandAgentResult {
            agent_id: handle.id.clone(),
            name: handle.name().to_string(),
            command: commanded.index,
            status: self.registry.start_status(handle),
            pending: commanded.waiting,
            warning: commanded.warning,
            answered: commanded.answered,
        }))
    }

    /// One agent's compact status. Do not poll it: sleep with wait_for_agents.
    #[tool]
    async fn get_agent_status(
        &self,
        Parameters(p): Parameters<AgentParams>,
    ) -> Result<Json<AgentStatusRow>, String> {
        let handle = self.registry.get(&p.agent)?;
        let mut row = AgentStatusRow::of(&handle);
        row.isolation = Isolation::of(&handle).await;
        Ok(Json(row))
    }

    /// An agent's answer to a command, sliced, with the files it read and wrote.
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
        let handle = self.registry.get(&p.agent)?;
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

    /// An agent's event log, oldest first, one short row per event: what it did.
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
        let handle = self.registry.get(&p.agent)?;
        let page = handle
            .store()
            .events(&handle.id, p.after.unwrap_or(0), limit as usize, p.kinds)
            .await
            .map_err(RegistryError::from)?;
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

    /// Delete an agent: cancel its work, kill its processes, forget its records.
    /// Its files stay.
    #[tool]
    async fn delete_agent(
        &self,
        Parameters(p): Parameters<AgentParams>,
    ) -> Result<Json<DeleteAgentResult>, String> {
        let (handle, worktree) = self.registry.delete(&p.agent).await?;
        let branch = handle.settings.worktree.as_ref().map(|w| w.branch.clone());
        let note = worktree.map(|r| match r {
            Ok(removed) => removed.describe(),
            Err(e) => format!("the agent was deleted, but its worktree could not be removed: {e}"),
        });
        Ok(Json(DeleteAgentResult {
            deleted: handle.name().to_string(),
            agent_id: handle.id.clone(),
            branch,
            note,
        }))
    }

    /// A page of compact agent rows in name order, plus whole-fleet totals.
    #[tool]
    async fn list_agents(
        &self,
        Parameters(p): Parameters<ListAgentsParams>,
    ) -> Result<Json<ListAgentsResult>, String> {
        let filter = p.status.as_deref().map(parse_status_filter).transpose()?;
        let limit = p.limit.unwrap_or(DEFAULT_LIST);
        if !(1..=MAX_LIST).contains(&limit) {
            return Err(format!(
                "limit must be between 1 and {MAX_LIST} rows; got {limit}. Page with `after`"
            ));
        }
        if p.after.as_deref().is_some_and(|a| a.trim().is_empty()) {
            return Err("`after` is empty: pass the `next_after` of the previous page, or omit it for the first page".into());
        }
        let (page, next_after) = match filter {
            Some(status) => self
                .registry
                .page_in(status, p.after.as_deref(), limit as usize),
            None => {
                let (page, more) = self.registry.page(p.after.as_deref(), limit as usize);
                let next = more.then(|| page.last().map(|h| h.name().to_string()));
                (page, next.flatten())
            }
        };
        let agents = page.iter().map(|h| AgentRow::of(h, true, 0)).collect();
        let totals = self.totals();
        Ok(Json(ListAgentsResult {
            agents,
            next_after,
            totals,
            nodes: self.cluster.as_ref().map(|c| c.nodes()).unwrap_or_default(),
        }))
    }

    /// Totals over the whole fleet, in constant time.
    fn totals(&self) -> FleetTotals {
        let fleet = self.registry.fleet();
        let t = fleet.totals.snapshot();
        FleetTotals {
            agents: t.agents,
            by_status: t.by_status,
            tokens: crate::agent::state::Tokens {
                input: t.input,
                output: t.output,
            },
            cost_usd: round_cost(t.cost_usd),
            unpriced_agents: t.unpriced_agents,
            budget: self.registry.budget_row(),
        }
    }

    /// Hold agents after their current step; nothing is lost. Undo with resume_agents.
    #[tool]
    async fn pause_agents(
        &self,
        Parameters(p): Parameters<AgentsParams>,
    ) -> Result<Json<PauseResult>, String> {
        let held = self.registry.hold(p.agents.as_deref(), true).await?;
        Ok(Json(PauseResult::from(held)))
    }

    /// Resume paused agents where they stopped.
    #[tool]
    async fn resume_agents(
        &self,
        Parameters(p): Parameters<AgentsParams>,
    ) -> Result<Json<PauseResult>, String> {
        let held = self.registry.hold(p.agents.as_deref(), false).await?;
        Ok(Json(PauseResult::from(held)))
    }

    /// Delete every agent, as delete_agent does. Returns how many.
    #[tool]
    async fn delete_all_agents(
        &self,
        Parameters(NoParams {}): Parameters<NoParams>,
    ) -> Result<Json<DeleteAllResult>, String> {
        let deleted = self.registry.delete_all().await;
        Ok(Json(DeleteAllResult { deleted }))
    }

    /// Sleep until agents settle, one asks a question (needs_input), or `timeout_s`
    /// passes (then call again). One call, no polling; returns a row per agent.
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
        let (mut agents, note) = self.wait_targets(p.agents.as_deref())?;
        let started = Instant::now();
        let progress = progress_notifier(&ctx, self.registry.fleet().redactor.clone());
        let stops = wait::Stops {
            client: &ctx.ct,
            server: &self.stopping,
        };
        let registry = self.registry.clone();
        let outcome = wait::wait(
            &mut agents,
            |h| registry.get(&h.id).ok().filter(|now| !Arc::ptr_eq(now, h)),
            until,
            Duration::from_secs_f64(timeout_s),
            self.registry.watch_fleet(),
            stops,
            progress,
        )
        .await
        .ok_or_else(|| "the wait was cancelled by the client".to_string())?;
        let timed_out = outcome.timed_out();
        let note = join_notes(
            [note, outcome.note()]
                .into_iter()
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

/// A mistake the orchestrator can fix, as the tool's `isError` result: the registry's
/// message, word for word.
impl From<RegistryError> for String {
    fn from(e: RegistryError) -> Self {
        e.to_string()
    }
}

impl From<Held> for PauseResult {
    fn from(held: Held) -> Self {
        Self {
            changed: held.changed,
            unchanged: held.unchanged,
        }
    }
}

impl FleetServer {
    /// A tool call, its arguments checked against the tool's schema first
    /// ([`check_arguments`]): unknown or mistyped arguments get a plain-words `isError`
    /// result. A value the schema allows but the typed parameters refuse (an unknown tool
    /// in `tools`, a `sandbox` or `isolation` that is no choice) is an `isError` result
    /// too, with the parameter type's own message.
    async fn call_checked(
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
        if let Some(answer) = self.route(&request.name, request.arguments.as_ref()).await {
            return Ok(answer.into());
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
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for FleetServer {
    /// [`FleetServer::call_checked`]; every answer, whatever the tool, leaves through [`redacted::answer`].
    async fn call_tool(
        &self,
        request: rmcp::model::CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::CallToolResponse, rmcp::ErrorData> {
        let answer = tasks::call_tool(self, request, context).await;
        redacted::answer(&self.registry.fleet().redactor, answer)
    }

    async fn get_task(
        &self,
        request: rmcp::model::GetTaskParams,
        _: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::GetTaskResult, rmcp::ErrorData> {
        tasks::get(self, request).await
    }

    async fn update_task(
        &self,
        request: rmcp::model::UpdateTaskParams,
        _: RequestContext<RoleServer>,
    ) -> Result<(), rmcp::ErrorData> {
        tasks::update(self, request).await
    }

    async fn cancel_task(
        &self,
        request: rmcp::model::CancelTaskParams,
        _: RequestContext<RoleServer>,
    ) -> Result<(), rmcp::ErrorData> {
        tasks::cancel(self, request).await
    }

    fn get_info(&self) -> ServerConfig {
        let capabilities = ServerCapabilities::builder().enable_tools().enable_tasks();
        ServerConfig::new(capabilities.build())
            .with_server_info(Implementation::new("flotilla", env!("CARGO_PKG_VERSION")))
            .with_instructions(self.instructions.to_string())
    }
}
