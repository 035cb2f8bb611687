//! The CLI runtime: one command of an agent that is a Claude Code or Codex session.
//!
//! Each invocation starts the CLI (through the sandbox's launcher, in its own process
//! group) on the agent's session — a new one for its first command, resumed after —
//! and reads its JSON stream: every model turn becomes a `model` event with its usage
//! and cost (charged at once, so a cap reached mid-command stops the session), every
//! tool the CLI runs a `tool_call` / `tool_result` pair under the CLI's tool name. The
//! final answer is checked against the command's output_schema by flotilla itself; a
//! miss resumes the session with the reason, within `max_steps` model turns.
//!
//! Pause holds the agent at the next invocation: a CLI process already running its
//! command is not stopped (its run slot is kept until it ends). An interrupt, a delete,
//! a stall or a spent budget kills the process group at once.

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::Stop;
use super::session_ask::next_ask;
use super::step::{charge, check_budget, spend};
use super::turn::{check_answer, seated, stalled};
use crate::agent::AgentHandle;
use crate::agent::conversation::Conversation;
use crate::agent::state::Activity;
use crate::cli::asking::Grant;
use crate::cli::process::Process;
use crate::cli::{
    AskAccess, CliEvent, CliKind, CliProvider, CliSession, Dialect, Invocation, Outcome,
    SessionRef, Turn,
};
use crate::failure::Failure;
use crate::fleet::slots::SlotGuard;
use crate::model::{Block, Message, Role, StopReason, Usage};
use crate::plan::checkpoint::Checkpoint;
use crate::sandbox::{SandboxMode, SessionLaunch};
use crate::store::event::Event;
use crate::telemetry::{ChatSpan, CommandSpan, ToolSpan};
use crate::text::short;

/// Most characters of a tool result the CLI ran that are kept in the log.
const RESULT_CHARS: usize = 4000;

/// What a session is told when a command it was running is continued after flotilla
/// restarted.
pub(super) const RESTARTED_NOTE: &str = "[flotilla restarted while you were working on this command, and your session was stopped mid-way. Check what is already done (files may be partly written) and carry on from there; do not redo finished work.]";

pub(super) struct Session<'a> {
    pub(super) agent: &'a AgentHandle,
    pub(super) cli: &'a CliProvider,
    pub(super) conversation: &'a mut Conversation,
    pub(super) index: u32,
    pub(super) token: &'a CancellationToken,
    /// Model turns made for this command so far.
    pub(super) steps: u32,
    pub(super) ticket: u64,
    pub(super) checkpoint: Option<Checkpoint>,
    pub(super) schema: Option<&'a Value>,
    /// The session of earlier commands; set when one starts.
    pub(super) session: &'a mut Option<CliSession>,
    pub(super) slot: Option<SlotGuard>,
    /// The cost and tokens of this invocation's turns, beside the CLI's own count.
    turns_cost: f64,
    turns_usage: Usage,
    /// Tool calls under way: id → CLI tool name.
    pub(super) calls: Vec<(String, String)>,
    /// The command's trace span; the model turn and tool calls under way as spans of
    /// it (a turn's span starts when the CLI starts or its tools have answered).
    trace: &'a CommandSpan,
    chat: Option<ChatSpan>,
    tool_spans: Vec<(String, ToolSpan)>,
}

impl<'a> Session<'a> {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        agent: &'a AgentHandle,
        cli: &'a CliProvider,
        conversation: &'a mut Conversation,
        index: u32,
        token: &'a CancellationToken,
        steps: u32,
        ticket: u64,
        schema: Option<&'a Value>,
        session: &'a mut Option<CliSession>,
        trace: &'a CommandSpan,
    ) -> Self {
        Self {
            agent,
            cli,
            conversation,
            index,
            token,
            steps,
            ticket,
            checkpoint: schema.and_then(|s| Checkpoint::new(s).ok()),
            schema,
            session,
            slot: None,
            turns_cost: 0.0,
            turns_usage: Usage::default(),
            calls: Vec::new(),
            trace,
            chat: None,
            tool_spans: Vec::new(),
        }
    }

    /// Run the command: `prompt` first, then the output_schema's complaints until the
    /// answer passes.
    pub(super) async fn run(mut self, prompt: String) -> Result<(), Stop> {
        let mut prompt = self.asked_before_restart(prompt).await?;
        let max_steps = self.agent.settings.max_steps;
        loop {
            seated(self.agent, self.token, self.ticket, &mut self.slot).await?;
            check_budget(self.agent)?;
            let outcome = self.invoke(&prompt).await?;
            if let Some(error) = outcome.error {
                return Err(self.failed(error));
            }
            self.final_answer(&outcome.text);
            match self.checked(&outcome.text) {
                None => return Ok(()),
                Some((message, _)) if self.steps < max_steps => prompt = message,
                Some((_, last)) => {
                    return Err(Stop::Failed(Failure::OutputSchema { max_steps, last }));
                }
            }
        }
    }

    /// One run of the CLI on `prompt`, to its result.
    async fn invoke(&mut self, prompt: &str) -> Result<Outcome, Stop> {
        let mut dialect = self.cli.kind.dialect();
        let (mut process, mut grant) = self.start(prompt, dialect.as_ref()).await?;
        self.chat = Some(self.chat_span());
        self.turns_cost = 0.0;
        self.turns_usage = Usage::default();
        let limit = self.agent.fleet.stall_timeout;
        let waiting_on = format!("output from {}", self.cli.kind.name());
        let mut events = Vec::new();
        let mut outcome = None;
        loop {
            let line = tokio::select! {
                biased;
                _ = self.token.cancelled() => return Err(Stop::Cancelled),
                line = process.next_line() => line,
                Some(call) = next_ask(&mut grant) => {
                    // The CLI waits on its MCP call (and prints nothing): no stall
                    // timer, no run slot until it is answered.
                    self.cli_ask(call).await?;
                    continue;
                }
                _ = tokio::time::sleep(limit) => {
                    return Err(Stop::Failed(stalled(limit, &waiting_on)));
                }
            };
            let line = match line {
                Ok(Some(line)) => line,
                Ok(None) => break,
                Err(e) => return Err(self.failed(format!("{e}{}", process.stderr_tail()))),
            };
            if line.trim().is_empty() {
                continue;
            }
            dialect.line(&line, &mut events).map_err(|e| {
                self.failed(format!(
                    "{e}; it began: {}{}",
                    short(&line, 200),
                    process.stderr_tail()
                ))
            })?;
            for event in events.drain(..) {
                self.apply(event, &mut outcome)?;
            }
        }
        dialect.finish(&mut events);
        for event in events.drain(..) {
            self.apply(event, &mut outcome)?;
        }
        let exit = tokio::select! {
            biased;
            _ = self.token.cancelled() => return Err(Stop::Cancelled),
            exit = process.wait() => exit,
            _ = tokio::time::sleep(limit) => return Err(Stop::Failed(stalled(limit, &waiting_on))),
        };
        match (outcome, exit) {
            (Some(outcome), Ok(())) => Ok(outcome),
            (Some(Outcome { error: Some(e), .. }), Err(_)) => Err(self.failed(e)),
            (_, Err(e)) => Err(self.failed(e)),
            (None, Ok(())) => Err(self.failed(format!(
                "it exited without reporting a result{}",
                process.stderr_tail()
            ))),
        }
    }

    /// Start the CLI on `prompt` in the agent's session, confined by its sandbox.
    async fn start(
        &mut self,
        prompt: &str,
        dialect: &dyn Dialect,
    ) -> Result<(Process, Option<Grant>), Stop> {
        let agent = self.agent;
        let settings = &agent.settings;
        let (program, _) = self.cli.check().map_err(|e| self.failed(e))?;
        let session = self.session_ref().await?;
        let schema_file = match self.schema {
            Some(schema) => Some((schema, self.hand_over("schema.json", &schema.to_string())?)),
            None => None,
        };
        // An agent granted no tool that writes (a scout) gets a read-only session: the
        // sandbox, not the CLI's own permissions, keeps it from editing.
        let mode = match settings.sandbox.mode {
            SandboxMode::Off => SandboxMode::Off,
            _ if !settings.can_write() => SandboxMode::ReadOnly,
            mode => mode,
        };
        let grant = self.ask_grant(dialect).await?;
        let ask_config = self.ask_config(dialect, grant.as_ref())?;
        let run = Invocation {
            model: &settings.model.model,
            session,
            system_prompt: &settings.system_prompt,
            tools: &settings.tools,
            workdir: &settings.workdir,
            sandbox: mode,
            network: settings.sandbox.network,
            confined: mode != SandboxMode::Off && crate::sandbox::sandbox_status().is_ok(),
            output_schema: schema_file.as_ref().map(|(s, f)| (*s, f.as_path())),
            max_budget_usd: settings
                .caps
                .max_cost_usd
                .map(|cap| cap - agent.peek(|s| s.cost_usd.unwrap_or(0.0))),
            ask: grant.as_ref().map(|g| AskAccess {
                url: &g.url,
                token: &g.token,
                config: ask_config.as_deref(),
            }),
        };
        let prompt_file = self.hand_over("prompt.txt", &dialect.prompt(&run, prompt))?;
        dialect.prepare(self.cli).map_err(|e| self.failed(e))?;
        let mut argv = vec![program.display().to_string()];
        argv.extend(self.cli.args.iter().cloned());
        argv.extend(dialect.args(&run, self.cli));
        let writable: Vec<_> = self.cli.state_dir.iter().cloned().collect();
        // The invocation's own variables first: the provider's `env` may override them.
        let mut env = dialect.env(&run);
        env.extend(self.cli.env.iter().cloned());
        let launch = SessionLaunch {
            argv: &argv,
            cwd: &settings.workdir,
            mode,
            writable: &writable,
            env: &env,
            agent: &agent.id,
            stdin: &prompt_file,
        };
        let label = format!("starting {}", self.cli.kind.name());
        agent.update(|s| s.activity = Some(Activity::now(label)));
        let process = Process::start(&launch).map_err(|e| self.failed(e))?;
        Ok((process, grant))
    }

    /// The session this invocation runs in: the agent's, else a new one (Claude Code's
    /// id is chosen here and saved before the process starts).
    async fn session_ref(&mut self) -> Result<SessionRef, Stop> {
        if let Some(session) = self.session.as_ref() {
            return Ok(SessionRef::Resume(session.id.clone()));
        }
        match self.cli.kind {
            CliKind::Codex => Ok(SessionRef::Fresh),
            CliKind::ClaudeCode | CliKind::Gemini => {
                let id = new_session_id();
                self.save_session(&id).await?;
                Ok(SessionRef::New(id))
            }
        }
    }

    /// Journal the session's id, on disk before anything runs in it.
    async fn save_session(&mut self, id: &str) -> Result<(), Stop> {
        *self.session = Some(CliSession {
            id: id.to_string(),
            ..CliSession::default()
        });
        if self.agent.cancel.is_cancelled() {
            return Err(Stop::Cancelled);
        }
        if let Some(ack) = self.agent.record(Event::Session { id: id.to_string() }) {
            let saved = ack
                .await
                .unwrap_or_else(|_| Err("the fleet store is closed".into()));
            saved.map_err(|e| self.failed(format!("cannot save its session id: {e}")))?;
        }
        Ok(())
    }

    /// `text` in a file the CLI reads (its prompt, Codex's output schema): in the
    /// CLI's state directory, which the sandboxed session sees at the same path, under
    /// `flotilla/<agent id>/` (removed with the agent).
    pub(super) fn hand_over(&self, name: &str, text: &str) -> Result<std::path::PathBuf, Stop> {
        let dir = self.cli.handover_dir(&self.agent.id).ok_or_else(|| {
            self.failed("the CLI has no state directory (HOME is not set)".into())
        })?;
        std::fs::create_dir_all(&dir)
            .map_err(|e| self.failed(format!("cannot make {}: {e}", dir.display())))?;
        let file = dir.join(name);
        std::fs::write(&file, text)
            .map_err(|e| self.failed(format!("cannot write {}: {e}", file.display())))?;
        Ok(file)
    }

    /// Take one event of the stream into the agent.
    fn apply(&mut self, event: CliEvent, outcome: &mut Option<Outcome>) -> Result<(), Stop> {
        match event {
            CliEvent::Session(id) => {
                if self.session.as_ref().is_none_or(|s| s.id != id) {
                    *self.session = Some(CliSession {
                        id: id.clone(),
                        ..CliSession::default()
                    });
                    self.journal(Event::Session { id });
                }
            }
            CliEvent::Turn(turn) => self.turn(turn)?,
            CliEvent::ToolResult {
                id,
                content,
                is_error,
            } => self.tool_result(id, content, is_error),
            CliEvent::Result(result) => {
                self.settle(&result);
                *outcome = Some(result);
            }
        }
        Ok(())
    }

    /// The CLI's own count for the command (its tokens, or the session's running
    /// tokens and cost) beside what its turns showed: the difference is charged, and
    /// priced when the CLI gives no cost.
    fn settle(&mut self, result: &Outcome) {
        let Some(session) = self.session.as_mut() else {
            return;
        };
        let mut total_usd = None;
        let mut cost = None;
        if let Some(t) = result.total_cost_usd {
            cost = Some((t - session.reported_usd - self.turns_cost).max(0.0));
            session.reported_usd = t;
            total_usd = Some(t);
        }
        let command_usage = match (result.usage, result.session_usage) {
            (Some(u), _) => Some(u),
            (None, Some(total)) => {
                let used = minus(total, session.reported_usage);
                session.reported_usage = total;
                Some(used)
            }
            (None, None) => None,
        };
        let usage = command_usage.map_or_else(Usage::default, |u| minus(u, self.turns_usage));
        if cost.is_none() && usage != Usage::default() {
            cost = self.agent.settings.model.price.map(|p| p.cost(usage));
        }
        let cost = cost.filter(|c| *c > 1e-12 && self.agent.peek(|s| s.cost_usd.is_some()));
        if cost.is_none()
            && usage == Usage::default()
            && total_usd.is_none()
            && result.session_usage.is_none()
        {
            return;
        }
        self.journal(Event::Charged {
            cost_usd: cost.unwrap_or(0.0),
            usage,
            session_total_usd: total_usd,
            session_usage: result.session_usage,
        });
        spend(self.agent, Some(usage), cost, false);
    }

    /// A model turn: journaled, charged, its tool calls counted; past a cap or
    /// `max_steps` the session is stopped.
    fn turn(&mut self, turn: Turn) -> Result<(), Stop> {
        let agent = self.agent;
        self.steps += 1;
        let cost = turn.cost_usd.or_else(|| {
            let price = turn
                .model
                .as_deref()
                .and_then(|m| {
                    crate::pricing::builtin_price(&format!("{}:{m}", vendor(self.cli.kind)))
                })
                .or(agent.settings.model.price)?;
            Some(price.cost(turn.usage))
        });
        self.turns_cost += cost.unwrap_or(0.0);
        self.turns_usage += turn.usage;
        let mut content = Vec::new();
        if !turn.text.is_empty() {
            content.push(Block::Text {
                text: turn.text.clone(),
            });
        }
        for (id, name, input) in &turn.calls {
            content.push(Block::ToolUse {
                id: id.clone(),
                name: name.clone(),
                input: input.clone(),
            });
        }
        let message = Message {
            role: Role::Assistant,
            content,
        };
        let stop_reason = if turn.calls.is_empty() {
            StopReason::EndTurn
        } else {
            StopReason::ToolUse
        };
        let chat = self.chat.take().unwrap_or_else(|| self.chat_span());
        chat.answered(&message, turn.usage, &stop_reason, cost);
        self.journal(Event::Model {
            message: message.clone(),
            usage: turn.usage,
            stop_reason,
            cost_usd: cost,
        });
        self.conversation.push_assistant(message);
        charge(agent, turn.usage, cost);
        if !turn.text.is_empty() {
            agent.with_record(self.index, |r| r.take_answer(&turn.text, false));
        }
        for (id, name, input) in turn.calls {
            let label = crate::tools::describe_call(&name, &input);
            agent.update(|s| {
                s.tool_calls += 1;
                s.activity = Some(Activity::now(label));
            });
            self.tool_spans
                .push((id.clone(), self.trace.tool(&name, &id, &input)));
            self.journal(Event::ToolCall {
                id: id.clone(),
                name: name.clone(),
                input,
            });
            self.calls.push((id, name));
        }
        if self.calls.is_empty() && turn.usage != Usage::default() {
            let steps = self.steps;
            agent.update(|s| s.activity = Some(Activity::now(format!("model turn {steps}"))));
        }
        let max_steps = agent.settings.max_steps;
        if self.steps > max_steps {
            return Err(Stop::Failed(Failure::MaxSteps { max_steps }));
        }
        check_budget(agent)
    }

    /// A tool the CLI ran has answered.
    fn tool_result(&mut self, id: String, content: String, is_error: bool) {
        let name = match self.calls.iter().position(|(i, _)| *i == id) {
            Some(at) => self.calls.remove(at).1,
            None => "tool".to_string(),
        };
        let content = crate::text::truncate_chars(&content, RESULT_CHARS);
        if let Some(at) = self.tool_spans.iter().position(|(i, _)| *i == id) {
            self.tool_spans.remove(at).1.end(&content, is_error);
        }
        // Its tools have answered: the CLI's next model call is under way.
        if self.calls.is_empty() && self.chat.is_none() {
            self.chat = Some(self.chat_span());
        }
        self.journal(Event::ToolResult {
            id: id.clone(),
            name,
            content: content.clone(),
            is_error,
            files_read: Vec::new(),
            files_written: Vec::new(),
        });
        self.conversation.push_tool_result(id, content, is_error);
    }

    /// A span for the CLI's model call under way.
    fn chat_span(&self) -> ChatSpan {
        let settings = &self.agent.settings;
        let model = match settings.model.model.as_str() {
            "" => self.cli.kind.name(),
            model => model,
        };
        let request = crate::model::ModelRequest {
            model,
            system: "",
            messages: &[],
            tools: &[],
            max_tokens: 0,
        };
        self.trace.chat(self.cli.kind.name(), &request)
    }

    /// The CLI's final answer becomes the command's output; when it is not the last
    /// turn's text (a structured output), it is journaled as a turn of its own so a
    /// restart shows the same answer.
    fn final_answer(&mut self, text: &str) {
        let last = self
            .conversation
            .messages()
            .last()
            .filter(|m| m.role == Role::Assistant)
            .map(Message::text);
        if text.is_empty() || last.as_deref() == Some(text) {
            return;
        }
        let message = Message {
            role: Role::Assistant,
            content: vec![Block::Text {
                text: text.to_string(),
            }],
        };
        self.journal(Event::Model {
            message: message.clone(),
            usage: Usage::default(),
            stop_reason: StopReason::EndTurn,
            cost_usd: Some(0.0),
        });
        self.conversation.push_assistant(message);
        charge(self.agent, Usage::default(), Some(0.0));
        self.agent
            .with_record(self.index, |r| r.take_answer(text, false));
    }

    /// `None` when the answer passes the output_schema (or there is none); else what
    /// the session is told and the reason.
    fn checked(&mut self, answer: &str) -> Option<(String, String)> {
        let checkpoint = self.checkpoint.as_ref()?;
        check_answer(
            self.agent,
            self.index,
            checkpoint,
            self.conversation,
            answer,
        )
    }

    /// The session failed: the message, redacted of the CLI's own secrets.
    pub(super) fn failed(&self, message: String) -> Stop {
        let mut message = message;
        for secret in self.cli.secrets() {
            if secret.len() >= 8 {
                message = message.replace(&secret, "[REDACTED]");
            }
        }
        Stop::Failed(Failure::Session {
            cli: self.cli.kind.name().to_string(),
            message,
        })
    }

    /// Journal unless the whole agent is stopping.
    fn journal(&self, event: Event) {
        if !self.agent.cancel.is_cancelled() {
            self.agent.record(event);
        }
    }
}

/// `a - b`, field by field, never below zero.
fn minus(a: Usage, b: Usage) -> Usage {
    Usage {
        input_tokens: a.input_tokens.saturating_sub(b.input_tokens),
        output_tokens: a.output_tokens.saturating_sub(b.output_tokens),
        cache_read_tokens: a.cache_read_tokens.saturating_sub(b.cache_read_tokens),
        cache_write_tokens: a.cache_write_tokens.saturating_sub(b.cache_write_tokens),
    }
}

/// The vendor whose price table prices a CLI's turns.
fn vendor(kind: CliKind) -> &'static str {
    match kind {
        CliKind::ClaudeCode => "anthropic",
        CliKind::Codex => "openai",
        CliKind::Gemini => "google",
    }
}

/// A random version-4 UUID (Claude Code's session ids are UUIDs).
fn new_session_id() -> String {
    let mut b = [0u8; 16];
    let _ = getrandom::fill(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}
