//! The MCP surface: nine tools over one [`Registry`]. This layer owns no state;
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
}

impl FleetServer {
    pub fn new(registry: Arc<Registry>) -> Self {
        Self {
            registry,
            tool_router: Self::tool_router(),
        }
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
        let handle = self
            .registry
            .create(CreateSpec {
                name: p.name,
                task: p.task,
                system_prompt: p.system_prompt,
                role: p.role,
                model: p.model,
                tools: p.tools,
                workdir: p.workdir,
                max_steps: p.max_steps,
            })
            .await
            .map_err(|e| e.to_string())?;
        let state = handle.state();
        Ok(Json(CreateAgentResult {
            agent_id: handle.id.clone(),
            name: handle.name().to_string(),
            status: if state.pending > 0 {
                AgentStatus::Running
            } else {
                state.status
            },
            model: handle.settings.model.id.clone(),
            workdir: handle.settings.workdir.display().to_string(),
        }))
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
        let queued = handle.enqueue(p.task, p.interrupt.unwrap_or(false))?;
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
            status: AgentStatus::Running,
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
        Ok(Json(AgentStatusRow::of(&handle)))
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
                    slice_chars(&record.text, offset, max_chars as usize);
                Ok(AgentOutputResult {
                    command: index,
                    command_status: record.status,
                    text,
                    offset: offset.min(total_chars),
                    total_chars,
                    next_offset,
                    error: record.error.clone(),
                    files_written: record.files_written.iter().cloned().collect(),
                    files_read: record.files_read.iter().cloned().collect(),
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
                    summary: e.event.summary(),
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
        let handle = self
            .registry
            .delete(&p.agent)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Json(DeleteAgentResult {
            deleted: handle.name().to_string(),
            agent_id: handle.id.clone(),
        }))
    }

    /// One compact row per agent (optionally only those with `status`), plus fleet
    /// totals: agents by status, tokens and cost.
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
        let all = self.registry.unsorted();
        let mut totals = FleetTotals {
            agents: all.len(),
            by_status: Default::default(),
            tokens: crate::agent::state::Tokens {
                input: 0,
                output: 0,
            },
            cost_usd: 0.0,
            unpriced_agents: 0,
        };
        let mut shown = Vec::new();
        for h in &all {
            let status = h.peek(|s| {
                *totals
                    .by_status
                    .entry(s.status.as_str().to_string())
                    .or_insert(0) += 1;
                totals.tokens.input += s.tokens.input_tokens;
                totals.tokens.output += s.tokens.output_tokens;
                match s.cost_usd {
                    Some(c) => totals.cost_usd += c,
                    None => totals.unpriced_agents += 1,
                }
                s.status
            });
            if filter.is_none_or(|f| f == status) {
                shown.push(h);
            }
        }
        totals.cost_usd = round_cost(totals.cost_usd);
        shown.sort_by(|a, b| a.name().cmp(b.name()));
        let agents = shown
            .into_iter()
            .map(|h| AgentRow::of(h, true, 0))
            .collect();
        Ok(Json(ListAgentsResult { agents, totals }))
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
        Ok(Json(WaitResult {
            timed_out,
            waited_s: (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
            agents: agents
                .iter()
                .map(|h| AgentRow::of(h, false, output_max_chars as usize))
                .collect(),
            note,
        }))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for FleetServer {
    /// Arguments are checked against the tool's schema first ([`check_arguments`]), so
    /// unknown or mistyped arguments get a plain-words `isError` result.
    async fn call_tool(
        &self,
        request: rmcp::model::CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::CallToolResponse, rmcp::ErrorData> {
        if let Some(tool) = self.tool_router.get(&request.name)
            && let Err(message) = check_arguments(
                &request.name,
                &tool.input_schema,
                request.arguments.as_ref(),
            )
        {
            tracing::debug!(tool = %request.name, "refused arguments: {message}");
            return Ok(
                rmcp::model::CallToolResult::error(vec![rmcp::model::ContentBlock::text(message)])
                    .into(),
            );
        }
        let tcc = rmcp::handler::server::tool::ToolCallContext::new(self, request, context);
        self.tool_router.call(tcc).await
    }

    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("flotilla", env!("CARGO_PKG_VERSION")))
            .with_instructions(INSTRUCTIONS)
    }
}
