//! Claude Code (`claude -p --output-format stream-json --verbose`), 2.1.x.
//!
//! Arguments: the session by `--session-id` (first command, an id flotilla chooses and
//! journals before the process starts) or `--resume`; the role and orchestrator
//! instructions through `--append-system-prompt`; the agent's tools as
//! `--allowedTools` (they run without a permission prompt) and the tools that write or
//! run commands it does not have as `--disallowedTools` (a scout cannot edit);
//! `WebFetch`/`WebSearch` disallowed without `network`; `--json-schema` for an
//! output_schema; `--max-budget-usd` for what is left of the agent's dollar cap;
//! `--strict-mcp-config` so a session loads only the provider's `mcp_config` (and,
//! for an agent that may ask, flotilla's ask endpoint as a second `--mcp-config`, its
//! tool `mcp__flotilla__ask_orchestrator` allowed). Never
//! `--dangerously-skip-permissions` (refused as root, and not needed).
//!
//! Stream: `system`/`init` names the session; each `assistant` line is one content
//! block of a model message (lines of one message share its id and usage, so a turn
//! ends when another message or a tool result begins); `user` lines carry tool
//! results; `result` ends the command with the answer and the total cost.

use serde_json::Value;

use super::{CliEvent, CliProvider, Dialect, Invocation, Outcome, SessionRef, Turn};
use crate::model::Usage;
use crate::sandbox::SandboxMode;
use crate::tools::Tool;

/// `ask_orchestrator` as Claude Code names flotilla's MCP tool.
pub(crate) const ASK_TOOL: &str = "mcp__flotilla__ask_orchestrator";

/// The Claude Code tools standing for each flotilla tool.
fn mapped(tool: Tool) -> &'static [&'static str] {
    match tool {
        Tool::ReadFile => &["Read"],
        Tool::WriteFile => &["Write"],
        Tool::EditFile => &["Edit", "MultiEdit", "NotebookEdit"],
        Tool::ListFiles => &["Glob", "LS"],
        Tool::SearchFiles => &["Grep", "Glob"],
        Tool::RunCommand => &["Bash", "BashOutput", "KillShell"],
        // Not one of the CLI's own tools: flotilla serves it (see cli::asking).
        Tool::AskOrchestrator => &[],
    }
}

#[derive(Debug, Default)]
pub(crate) struct ClaudeCode {
    /// The model message being read: its id and what it said so far.
    pending: Option<(String, Turn)>,
}

impl Dialect for ClaudeCode {
    fn args(&self, run: &Invocation<'_>, provider: &CliProvider) -> Vec<String> {
        let mut args: Vec<String> = ["-p", "--output-format", "stream-json", "--verbose"]
            .map(String::from)
            .to_vec();
        if !run.model.is_empty() {
            args.extend(["--model".into(), run.model.to_string()]);
        }
        match &run.session {
            SessionRef::New(id) => args.extend(["--session-id".into(), id.clone()]),
            SessionRef::Resume(id) => args.extend(["--resume".into(), id.clone()]),
            SessionRef::Fresh => {}
        }
        if !run.system_prompt.trim().is_empty() {
            args.extend([
                "--append-system-prompt".into(),
                run.system_prompt.to_string(),
            ]);
        }
        let mut allowed = self.tool_names(run.tools);
        if run.ask.is_some() {
            allowed.push(ASK_TOOL);
        }
        if !allowed.is_empty() {
            args.push("--allowedTools".into());
            args.push(allowed.join(","));
        }
        let mut denied: Vec<&str> = Vec::new();
        let writes = run.sandbox != SandboxMode::ReadOnly;
        for tool in [Tool::WriteFile, Tool::EditFile, Tool::RunCommand] {
            if !run.tools.contains(&tool) || (!writes && tool != Tool::RunCommand) {
                denied.extend(mapped(tool));
            }
        }
        if !run.network {
            denied.extend(["WebFetch", "WebSearch"]);
        }
        if !denied.is_empty() {
            args.push("--disallowedTools".into());
            args.push(denied.join(","));
        }
        if let Some((schema, _)) = run.output_schema {
            args.extend(["--json-schema".into(), schema.to_string()]);
        }
        if let Some(usd) = run.max_budget_usd {
            args.extend(["--max-budget-usd".into(), format!("{:.4}", usd.max(0.0))]);
        }
        args.push("--strict-mcp-config".into());
        if let Some(file) = &provider.mcp_config {
            args.extend(["--mcp-config".into(), file.display().to_string()]);
        }
        // flotilla's ask endpoint, beside the provider's servers (several
        // `--mcp-config` add up; `--strict-mcp-config` keeps out everything else).
        if let Some(file) = run.ask.and_then(|a| a.config) {
            args.extend(["--mcp-config".into(), file.display().to_string()]);
        }
        args
    }

    fn can_ask(&self) -> bool {
        true
    }

    fn ask_config(&self, url: &str, token: &str) -> Option<String> {
        let timeout_ms = super::asking::CALL_TIMEOUT.as_millis();
        let config = serde_json::json!({"mcpServers": {super::asking::SERVER: {
            "type": "http",
            "url": url,
            "headers": {"Authorization": format!("Bearer {token}")},
            "timeout": timeout_ms,
        }}});
        Some(config.to_string())
    }

    fn env(&self, run: &Invocation<'_>) -> Vec<(String, String)> {
        // A question may wait for hours: the per-call limit (the config's `timeout`
        // covers this server; the variable is the fallback 2.1.x also reads).
        match run.ask {
            Some(_) => vec![(
                "MCP_TOOL_TIMEOUT".into(),
                super::asking::CALL_TIMEOUT.as_millis().to_string(),
            )],
            None => Vec::new(),
        }
    }

    fn line(&mut self, line: &str, out: &mut Vec<CliEvent>) -> Result<(), String> {
        let v: Value = serde_json::from_str(line)
            .map_err(|e| format!("Claude Code printed a line that is not JSON ({e})"))?;
        match v["type"].as_str().unwrap_or_default() {
            "system" if v["subtype"] == "init" => {
                if let Some(id) = v["session_id"].as_str() {
                    out.push(CliEvent::Session(id.to_string()));
                }
            }
            "assistant" if v["parent_tool_use_id"].is_null() => self.assistant(&v["message"], out),
            "user" if v["parent_tool_use_id"].is_null() => {
                self.flush(out);
                tool_results(&v["message"], out);
            }
            "result" => {
                self.flush(out);
                out.push(CliEvent::Result(outcome(&v)));
            }
            _ => {}
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<CliEvent>) {
        self.flush(out);
    }

    fn tool_names(&self, tools: &[Tool]) -> Vec<&'static str> {
        super::mapped_names(tools, mapped)
    }
}

impl ClaudeCode {
    /// One content block of a model message.
    fn assistant(&mut self, message: &Value, out: &mut Vec<CliEvent>) {
        let id = message["id"].as_str().unwrap_or_default().to_string();
        if self.pending.as_ref().is_some_and(|(p, _)| *p != id) {
            self.flush(out);
        }
        let (_, turn) = self.pending.get_or_insert_with(|| (id, Turn::default()));
        turn.model = message["model"].as_str().map(String::from);
        // Every line of a message repeats its usage so far: the last one counts.
        turn.usage = usage(&message["usage"]);
        for block in message["content"].as_array().into_iter().flatten() {
            match block["type"].as_str().unwrap_or_default() {
                "text" => {
                    let text = block["text"].as_str().unwrap_or_default();
                    if !turn.text.is_empty() && !text.is_empty() {
                        turn.text.push_str("\n\n");
                    }
                    turn.text.push_str(text);
                }
                "tool_use" => turn.calls.push((
                    block["id"].as_str().unwrap_or_default().to_string(),
                    block["name"].as_str().unwrap_or_default().to_string(),
                    block["input"].clone(),
                )),
                _ => {}
            }
        }
    }

    /// The message being read is complete.
    fn flush(&mut self, out: &mut Vec<CliEvent>) {
        if let Some((_, turn)) = self.pending.take() {
            out.push(CliEvent::Turn(turn));
        }
    }
}

/// The tool results in a `user` line.
fn tool_results(message: &Value, out: &mut Vec<CliEvent>) {
    for block in message["content"].as_array().into_iter().flatten() {
        if block["type"] != "tool_result" {
            continue;
        }
        let content = match &block["content"] {
            Value::String(s) => s.clone(),
            Value::Array(parts) => parts
                .iter()
                .filter_map(|p| p["text"].as_str())
                .collect::<Vec<_>>()
                .join("\n"),
            _ => String::new(),
        };
        out.push(CliEvent::ToolResult {
            id: block["tool_use_id"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            content,
            is_error: block["is_error"].as_bool().unwrap_or(false),
        });
    }
}

/// Anthropic usage, cache reads and writes counted in the input as flotilla does.
fn usage(u: &Value) -> Usage {
    let n = |k: &str| u[k].as_u64().unwrap_or(0);
    Usage {
        input_tokens: n("input_tokens")
            + n("cache_creation_input_tokens")
            + n("cache_read_input_tokens"),
        output_tokens: n("output_tokens"),
        cache_read_tokens: n("cache_read_input_tokens"),
        cache_write_tokens: n("cache_creation_input_tokens"),
    }
}

/// The `result` line.
fn outcome(v: &Value) -> Outcome {
    let text = match &v["structured_output"] {
        Value::Null => v["result"].as_str().unwrap_or_default().to_string(),
        structured => structured.to_string(),
    };
    let error = v["is_error"].as_bool().unwrap_or(false).then(|| {
        let errors: Vec<&str> = v["errors"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        // An API error ends with subtype "success" and is_error: say "error".
        let subtype = match v["subtype"].as_str() {
            Some("success") | None => "error",
            Some(subtype) => subtype,
        };
        match (errors.is_empty(), text.is_empty()) {
            (false, _) => format!("{subtype}: {}", errors.join("; ")),
            (true, false) => format!("{subtype}: {text}"),
            (true, true) => subtype.to_string(),
        }
    });
    Outcome {
        text,
        error,
        total_cost_usd: v["total_cost_usd"].as_f64(),
        usage: v["usage"].is_object().then(|| usage(&v["usage"])),
        session_usage: None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn read(lines: &[Value]) -> Vec<CliEvent> {
        let mut d = ClaudeCode::default();
        let mut out = Vec::new();
        for l in lines {
            d.line(&l.to_string(), &mut out).unwrap();
        }
        d.finish(&mut out);
        out
    }

    #[test]
    fn a_message_split_over_lines_is_one_turn() {
        let usage = serde_json::json!({"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 90});
        let events = read(&[
            serde_json::json!({"type": "system", "subtype": "init", "session_id": "s1"}),
            serde_json::json!({"type": "assistant", "parent_tool_use_id": null, "message": {"id": "m1", "model": "claude-sonnet-5-5", "usage": usage, "content": [{"type": "text", "text": "I will write it."}]}}),
            serde_json::json!({"type": "assistant", "parent_tool_use_id": null, "message": {"id": "m1", "model": "claude-sonnet-5-5", "usage": usage, "content": [{"type": "tool_use", "id": "t1", "name": "Write", "input": {"file_path": "a"}}]}}),
            serde_json::json!({"type": "user", "parent_tool_use_id": null, "message": {"content": [{"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "ok"}]}]}}),
            serde_json::json!({"type": "result", "subtype": "success", "is_error": false, "result": "done", "total_cost_usd": 0.01}),
        ]);
        assert_eq!(events.len(), 4, "{events:?}");
        assert_eq!(events[0], CliEvent::Session("s1".into()));
        let CliEvent::Turn(turn) = &events[1] else {
            panic!("{events:?}")
        };
        assert_eq!(turn.text, "I will write it.");
        assert_eq!(turn.calls[0].1, "Write");
        assert_eq!(turn.usage.input_tokens, 100);
        assert_eq!(turn.usage.cache_read_tokens, 90);
        assert!(matches!(&events[2], CliEvent::ToolResult { content, .. } if content == "ok"));
        let CliEvent::Result(o) = &events[3] else {
            panic!()
        };
        assert_eq!(
            (o.text.as_str(), o.error.as_deref(), o.total_cost_usd),
            ("done", None, Some(0.01))
        );
    }

    #[test]
    fn an_error_result_says_why() {
        let events = read(&[
            serde_json::json!({"type": "result", "subtype": "error_max_budget_usd", "is_error": true, "errors": ["budget reached"]}),
        ]);
        let CliEvent::Result(o) = &events[0] else {
            panic!()
        };
        assert_eq!(
            o.error.as_deref(),
            Some("error_max_budget_usd: budget reached")
        );
    }

    #[test]
    fn a_scout_cannot_edit_and_without_network_cannot_fetch() {
        let provider = super::super::setup::build(
            "claude-code",
            super::super::CliKind::ClaudeCode,
            &Default::default(),
            &|_| None,
        )
        .unwrap();
        let run = Invocation {
            model: "sonnet",
            session: SessionRef::New("id".into()),
            system_prompt: "be a scout",
            tools: &[Tool::ReadFile, Tool::ListFiles, Tool::SearchFiles],
            workdir: std::path::Path::new("/w"),
            sandbox: SandboxMode::WorkspaceWrite,
            network: false,
            confined: true,
            output_schema: None,
            max_budget_usd: Some(0.5),
            ask: None,
        };
        let args = ClaudeCode::default().args(&run, &provider).join(" ");
        assert!(args.contains("--allowedTools Read,Glob,LS,Grep"), "{args}");
        assert!(args.contains("--disallowedTools Write,Edit,MultiEdit,NotebookEdit,Bash,BashOutput,KillShell,WebFetch,WebSearch"), "{args}");
        assert!(args.contains("--session-id id"), "{args}");
        assert!(args.contains("--max-budget-usd 0.5000"), "{args}");
        assert!(!args.contains("dangerously"), "{args}");
    }
}
