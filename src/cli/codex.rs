//! Codex (`codex exec --json`), 0.16x.
//!
//! Arguments: `exec -C <workdir> --sandbox <mode>` then, after the first command,
//! `resume <thread>` (the thread id comes from the stream's `thread.started` and is
//! journaled; `resume` takes no `-C`/`--sandbox` of its own, so they come before it);
//! `--json`, `-m`, the role's and orchestrator's instructions as
//! `-c developer_instructions=…`, `--output-schema FILE` for an output_schema,
//! flotilla's ask endpoint as `-c mcp_servers.flotilla.*` (its token in a variable)
//! for an agent that may ask, and `-`
//! (the prompt is
//! read from standard input, which ends). The provider's `args` (`-c` overrides) come
//! first.
//!
//! Sandbox: where flotilla's launcher confines the session, codex runs with
//! `--sandbox danger-full-access` inside it — codex's own sandbox (bubblewrap) cannot
//! start in flotilla's read-only mount namespace, and flotilla's Landlock rules hold
//! its commands to the work directory, the private temp and `CODEX_HOME`. Where
//! flotilla cannot confine (no Landlock, or `sandbox: "off"` is not asked for but the
//! kernel lacks it), codex's own sandbox takes the agent's mode, with `network` as
//! `sandbox_workspace_write.network_access`.
//!
//! Stream: `thread.started`, then `item.started`/`item.completed` for each command,
//! file change or tool call the model makes and each message it writes, then
//! `turn.completed` with the thread's running usage (codex reports no cost, and no
//! tokens per model call: the worker charges the difference at the end of each
//! command) or `turn.failed` / `error`.

use serde_json::Value;

use super::{CliEvent, CliProvider, Dialect, Invocation, Outcome, SessionRef, Turn, asking};
use crate::model::Usage;
use crate::sandbox::SandboxMode;
use crate::tools::Tool;

#[derive(Debug, Default)]
pub(crate) struct Codex {
    /// The last message the model wrote: the answer when the turn ends.
    last_message: String,
    /// The last `error` line (retries announce themselves so too): the failure only if
    /// the stream ends without the turn ending.
    error: Option<String>,
    /// The turn ended (completed or failed).
    ended: bool,
}

impl Dialect for Codex {
    fn args(&self, run: &Invocation<'_>, _provider: &CliProvider) -> Vec<String> {
        // Codex's own sandbox (bubblewrap) cannot start inside flotilla's: it must
        // write /proc/self/uid_map, which flotilla's read-only view refuses. Where
        // flotilla confines the session, that confinement stands in for it.
        let sandbox = match run.sandbox {
            _ if run.confined => "danger-full-access",
            SandboxMode::WorkspaceWrite => "workspace-write",
            SandboxMode::ReadOnly => "read-only",
            SandboxMode::Off => "danger-full-access",
        };
        // `exec resume` has no -C or --sandbox of its own: given before it, they hold.
        let mut args: Vec<String> = vec![
            "exec".into(),
            "-C".into(),
            run.workdir.display().to_string(),
            "--sandbox".into(),
            sandbox.into(),
        ];
        if let SessionRef::Resume(thread) = &run.session {
            args.push("resume".into());
            args.push(thread.clone());
        }
        args.push("--json".into());
        args.push("--skip-git-repo-check".into());
        if !run.model.is_empty() {
            args.extend(["-m".into(), run.model.to_string()]);
        }
        args.extend([
            "-c".into(),
            format!("sandbox_workspace_write.network_access={}", run.network),
        ]);
        // The role's and the orchestrator's instructions (a JSON string is a TOML one).
        if !run.system_prompt.trim().is_empty() {
            args.extend([
                "-c".into(),
                format!(
                    "developer_instructions={}",
                    serde_json::Value::from(run.system_prompt)
                ),
            ]);
        }
        if let Some((_, file)) = run.output_schema {
            args.extend(["--output-schema".into(), file.display().to_string()]);
        }
        if let Some(ask) = run.ask {
            args.extend(ask_server(ask.url));
        }
        // The prompt comes on standard input.
        args.push("-".into());
        args
    }

    fn line(&mut self, line: &str, out: &mut Vec<CliEvent>) -> Result<(), String> {
        let v: Value = serde_json::from_str(line)
            .map_err(|e| format!("Codex printed a line that is not JSON ({e})"))?;
        match v["type"].as_str().unwrap_or_default() {
            "thread.started" => {
                if let Some(id) = v["thread_id"].as_str() {
                    out.push(CliEvent::Session(id.to_string()));
                }
            }
            "item.started" => {
                if let Some(call) = tool_call(&v["item"]) {
                    out.push(CliEvent::Turn(Turn {
                        calls: vec![call],
                        ..Turn::default()
                    }));
                }
            }
            "item.completed" => self.item_completed(&v["item"], out),
            "turn.completed" => {
                self.ended = true;
                // Its usage counts the whole thread: the worker takes the difference.
                out.push(CliEvent::Turn(Turn {
                    text: self.last_message.clone(),
                    ..Turn::default()
                }));
                self.error = None;
                out.push(CliEvent::Result(Outcome {
                    text: std::mem::take(&mut self.last_message),
                    session_usage: Some(usage(&v["usage"])),
                    ..Outcome::default()
                }));
            }
            "turn.failed" => {
                self.ended = true;
                let message = v["error"]["message"].as_str().unwrap_or("the turn failed");
                out.push(CliEvent::Result(Outcome {
                    text: std::mem::take(&mut self.last_message),
                    error: Some(message.to_string()),
                    ..Outcome::default()
                }));
            }
            "error" => {
                let message = v["message"].as_str().unwrap_or("an error").to_string();
                self.error = Some(message);
            }
            _ => {}
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<CliEvent>) {
        if !self.ended && self.error.is_some() {
            out.push(CliEvent::Result(Outcome {
                error: self.error.take(),
                ..Outcome::default()
            }));
        }
    }

    fn can_ask(&self) -> bool {
        true
    }

    fn env(&self, run: &Invocation<'_>) -> Vec<(String, String)> {
        // The token goes by a variable (`bearer_token_env_var`), not on the command line.
        run.ask
            .map(|a| vec![(asking::TOKEN_VAR.to_string(), a.token.to_string())])
            .unwrap_or_default()
    }

    fn tool_names(&self, tools: &[Tool]) -> Vec<&'static str> {
        let mut names = Vec::new();
        if tools.contains(&Tool::RunCommand) {
            names.push("shell");
        }
        if tools.contains(&Tool::WriteFile) || tools.contains(&Tool::EditFile) {
            names.push("apply_patch");
        }
        names
    }
}

impl Codex {
    fn item_completed(&mut self, item: &Value, out: &mut Vec<CliEvent>) {
        match item["type"].as_str().unwrap_or_default() {
            "agent_message" => {
                self.last_message = item["text"].as_str().unwrap_or_default().to_string();
            }
            "command_execution" => out.push(CliEvent::ToolResult {
                id: item["id"].as_str().unwrap_or_default().to_string(),
                content: format!(
                    "Exit code {}.\n{}",
                    item["exit_code"],
                    item["aggregated_output"].as_str().unwrap_or_default()
                ),
                is_error: item["exit_code"].as_i64() != Some(0),
            }),
            "file_change" | "mcp_tool_call" | "web_search" => out.push(CliEvent::ToolResult {
                id: item["id"].as_str().unwrap_or_default().to_string(),
                content: item["status"].as_str().unwrap_or("completed").to_string(),
                is_error: item["status"] == "failed",
            }),
            // Warnings (an unknown model's metadata, a model switch on resume).
            "error" => {
                let message = item["message"].as_str().unwrap_or_default();
                tracing::debug!("codex: {message}");
            }
            _ => {}
        }
    }
}

/// flotilla's ask endpoint as one more MCP server of this run: its URL, the variable
/// holding the token, a tool timeout long enough for a question, and `required`.
fn ask_server(url: &str) -> Vec<String> {
    let server = format!("mcp_servers.{}", asking::SERVER);
    [
        format!("{server}.url={}", Value::from(url)),
        format!(
            "{server}.bearer_token_env_var={}",
            Value::from(asking::TOKEN_VAR)
        ),
        format!(
            "{server}.tool_timeout_sec={}",
            asking::CALL_TIMEOUT.as_secs()
        ),
        // Started before the first model turn, or the run fails saying so: never a
        // session that silently lacks the tool.
        format!("{server}.required=true"),
    ]
    .into_iter()
    .flat_map(|c| ["-c".to_string(), c])
    .collect()
}

/// A command, file change or tool call codex started: (id, name, input).
fn tool_call(item: &Value) -> Option<(String, String, Value)> {
    let id = item["id"].as_str().unwrap_or_default().to_string();
    let (name, input) = match item["type"].as_str()? {
        "command_execution" => ("shell", serde_json::json!({"command": item["command"]})),
        "file_change" => (
            "apply_patch",
            serde_json::json!({"changes": item["changes"]}),
        ),
        "mcp_tool_call" => (
            "mcp",
            serde_json::json!({"server": item["server"], "tool": item["tool"]}),
        ),
        "web_search" => ("web_search", serde_json::json!({"query": item["query"]})),
        _ => return None,
    };
    Some((id, name.to_string(), input))
}

/// Codex's usage: cached input is part of the input.
fn usage(u: &Value) -> Usage {
    let n = |k: &str| u[k].as_u64().unwrap_or(0);
    Usage {
        input_tokens: n("input_tokens"),
        output_tokens: n("output_tokens"),
        cache_read_tokens: n("cached_input_tokens"),
        cache_write_tokens: 0,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn read(lines: &[&str]) -> Vec<CliEvent> {
        let mut d = Codex::default();
        let mut out = Vec::new();
        for l in lines {
            d.line(l, &mut out).unwrap();
        }
        d.finish(&mut out);
        out
    }

    /// As Codex 0.169.0 printed it against the mock (a command, then the answer).
    #[test]
    fn a_command_and_an_answer() {
        let events = read(&[
            r#"{"type":"thread.started","thread_id":"t-1"}"#,
            r#"{"type":"item.completed","item":{"id":"item_9","type":"error","message":"Model metadata for `x` not found."}}"#,
            r#"{"type":"turn.started"}"#,
            r#"{"type":"error","message":"Reconnecting... 1/5 (busy)"}"#,
            r#"{"type":"item.started","item":{"id":"item_0","type":"command_execution","command":"/bin/bash -lc 'echo hello > out.txt'","aggregated_output":"","exit_code":null,"status":"in_progress"}}"#,
            r#"{"type":"item.completed","item":{"id":"item_0","type":"command_execution","command":"/bin/bash -lc 'echo hello > out.txt'","aggregated_output":"","exit_code":0,"status":"completed"}}"#,
            r#"{"type":"item.completed","item":{"id":"item_1","type":"agent_message","text":"done"}}"#,
            r#"{"type":"turn.completed","usage":{"input_tokens":100,"cached_input_tokens":10,"output_tokens":20}}"#,
        ]);
        assert_eq!(events[0], CliEvent::Session("t-1".into()));
        let CliEvent::Turn(call) = &events[1] else {
            panic!("{events:?}")
        };
        assert_eq!(call.calls[0].1, "shell");
        assert!(matches!(
            &events[2],
            CliEvent::ToolResult {
                is_error: false,
                ..
            }
        ));
        let CliEvent::Turn(last) = &events[3] else {
            panic!("{events:?}")
        };
        assert_eq!(last.text, "done");
        let CliEvent::Result(o) = &events[4] else {
            panic!("{events:?}")
        };
        assert_eq!((o.text.as_str(), o.error.as_deref()), ("done", None));
        // The thread's running usage, for the worker to take the difference.
        let usage = o.session_usage.unwrap();
        assert_eq!((usage.input_tokens, usage.cache_read_tokens), (100, 10));
    }

    #[test]
    fn a_failed_turn_is_an_error() {
        let events = read(&[
            r#"{"type":"thread.started","thread_id":"t-2"}"#,
            r#"{"type":"error","message":"Missing environment variable: `MOCK_KEY`."}"#,
            r#"{"type":"turn.failed","error":{"message":"Missing environment variable: `MOCK_KEY`."}}"#,
        ]);
        let CliEvent::Result(o) = events.last().unwrap() else {
            panic!("{events:?}")
        };
        assert_eq!(
            o.error.as_deref(),
            Some("Missing environment variable: `MOCK_KEY`.")
        );
    }
}
