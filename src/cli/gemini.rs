//! Gemini CLI (`gemini -p "" --output-format stream-json`), 0.61.x.
//!
//! Arguments: `-p ""` (headless; the prompt comes on standard input, which `-p` is
//! appended to), `--skip-trust` (else it refuses an untrusted work directory), `-m`
//! always — the model after `gemini-cli:`, or `pro` for bare `gemini-cli` (without
//! `-m` it first asks a router model to pick one, a call a custom endpoint may not
//! answer) — and the session by `--session-id` (first command, an id flotilla chooses
//! and journals before the process starts) or `--resume`.
//!
//! Tools: gemini has no allow-list flag besides the deprecated `--allowed-tools`; its
//! approval mode decides which tools a headless session even offers the model. An
//! agent that may run commands gets `--approval-mode yolo` (every tool, no prompt); one
//! that may only write or edit files gets `auto_edit` (`write_file`, `replace`, no
//! shell); any other — a scout — gets `default`, which in headless mode registers only
//! the read-only tools (`read_file`, `list_directory`, `glob`, `grep_search`, web
//! search): writes and the shell are not offered at all.
//!
//! Instructions: gemini has no `--append-system-prompt`, and `GEMINI_SYSTEM_MD` would
//! replace its whole system prompt (its tool instructions with it), so the role's and
//! the orchestrator's instructions are put before the first command's prompt; a
//! resumed session has them in its history.
//!
//! Credentials: gemini needs `security.auth.selectedType` in its `settings.json` even
//! when `GEMINI_API_KEY` is set; when the file is missing and a key variable is set,
//! flotilla writes `{"security":{"auth":{"selectedType":"gemini-api-key"}}}` there (an
//! existing file, e.g. a Google login's, is never touched).
//!
//! Stream: `init` names the session; `message` lines from the assistant are chunks of
//! its text; `tool_use` / `tool_result` pairs are the tools it ran (a model turn ends
//! at its first tool result); `result` ends the command with its token count (gemini
//! reports tokens per command, not per model call, and no cost).

use std::path::Path;

use serde_json::Value;

use super::{CliEvent, CliProvider, Dialect, Invocation, Outcome, SessionRef, Turn};
use crate::model::Usage;
use crate::sandbox::SandboxMode;
use crate::tools::Tool;

/// The model bare `gemini-cli` asks for: gemini's own alias for its pro model.
pub(crate) const DEFAULT_MODEL: &str = "pro";

/// What `settings.json` needs for gemini to use an API key from its environment.
const API_KEY_SETTINGS: &str = r#"{"security":{"auth":{"selectedType":"gemini-api-key"}}}"#;

/// The variables holding a key gemini uses with [`API_KEY_SETTINGS`].
const KEY_VARS: [&str; 2] = ["GEMINI_API_KEY", "GOOGLE_API_KEY"];

/// The Gemini CLI tools standing for each flotilla tool.
fn mapped(tool: Tool) -> &'static [&'static str] {
    match tool {
        Tool::ReadFile => &["read_file"],
        Tool::WriteFile => &["write_file"],
        Tool::EditFile => &["replace"],
        Tool::ListFiles => &["list_directory", "glob"],
        Tool::SearchFiles => &["grep_search", "glob"],
        Tool::RunCommand => &["run_shell_command"],
        // Not one of the CLI's own tools: flotilla serves it (see cli::asking).
        Tool::AskOrchestrator => &[],
    }
}

/// The approval mode for an agent with `tools` under `sandbox`.
fn approval_mode(tools: &[Tool], sandbox: SandboxMode) -> &'static str {
    let writes = sandbox != SandboxMode::ReadOnly;
    if tools.contains(&Tool::RunCommand) {
        "yolo"
    } else if writes && (tools.contains(&Tool::WriteFile) || tools.contains(&Tool::EditFile)) {
        "auto_edit"
    } else {
        "default"
    }
}

#[derive(Debug, Default)]
pub(crate) struct Gemini {
    /// The model turn being read.
    pending: Option<Turn>,
    /// The text of the last model turn: the answer when the command ends.
    last_text: String,
}

impl Dialect for Gemini {
    fn args(&self, run: &Invocation<'_>, _provider: &CliProvider) -> Vec<String> {
        let model = if run.model.is_empty() {
            DEFAULT_MODEL
        } else {
            run.model
        };
        let mut args: Vec<String> = vec![
            "-p".into(),
            String::new(),
            "--output-format".into(),
            "stream-json".into(),
            "--skip-trust".into(),
            "-m".into(),
            model.into(),
        ];
        match &run.session {
            SessionRef::New(id) => args.extend(["--session-id".into(), id.clone()]),
            SessionRef::Resume(id) => args.extend(["--resume".into(), id.clone()]),
            SessionRef::Fresh => {}
        }
        args.extend([
            "--approval-mode".into(),
            approval_mode(run.tools, run.sandbox).into(),
        ]);
        args
    }

    fn prompt(&self, run: &Invocation<'_>, prompt: &str) -> String {
        match &run.session {
            SessionRef::New(_) | SessionRef::Fresh if !run.system_prompt.trim().is_empty() => {
                format!(
                    "<instructions>\n{}\n</instructions>\n\n{prompt}",
                    run.system_prompt.trim()
                )
            }
            _ => prompt.to_string(),
        }
    }

    fn prepare(&self, provider: &CliProvider) -> Result<(), String> {
        let Some(dir) = &provider.state_dir else {
            return Ok(());
        };
        let has_key = provider
            .env
            .iter()
            .any(|(k, v)| KEY_VARS.contains(&k.as_str()) && !v.is_empty());
        write_settings(dir, has_key)
    }

    fn line(&mut self, line: &str, out: &mut Vec<CliEvent>) -> Result<(), String> {
        let v: Value = serde_json::from_str(line)
            .map_err(|e| format!("Gemini CLI printed a line that is not JSON ({e})"))?;
        match v["type"].as_str().unwrap_or_default() {
            "init" => {
                if let Some(id) = v["session_id"].as_str() {
                    out.push(CliEvent::Session(id.to_string()));
                }
            }
            "message" if v["role"] == "assistant" => {
                let text = v["content"].as_str().unwrap_or_default();
                self.pending
                    .get_or_insert_with(Turn::default)
                    .text
                    .push_str(text);
            }
            "tool_use" => self.pending.get_or_insert_with(Turn::default).calls.push((
                v["tool_id"].as_str().unwrap_or_default().to_string(),
                v["tool_name"].as_str().unwrap_or_default().to_string(),
                v["parameters"].clone(),
            )),
            "tool_result" => {
                self.flush(out);
                let failed = v["status"] != "success";
                let content = match (v["output"].as_str(), v["error"]["message"].as_str()) {
                    (_, Some(error)) if failed => error.to_string(),
                    (Some(output), _) => output.to_string(),
                    _ => String::new(),
                };
                out.push(CliEvent::ToolResult {
                    id: v["tool_id"].as_str().unwrap_or_default().to_string(),
                    content,
                    is_error: failed,
                });
            }
            "result" => {
                self.flush(out);
                let error = (v["status"] != "success").then(|| {
                    v["error"]["message"]
                        .as_str()
                        .unwrap_or("the command failed")
                        .to_string()
                });
                out.push(CliEvent::Result(Outcome {
                    text: std::mem::take(&mut self.last_text),
                    error,
                    usage: v["stats"].is_object().then(|| usage(&v["stats"])),
                    ..Outcome::default()
                }));
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

impl Gemini {
    /// The model turn being read is complete.
    fn flush(&mut self, out: &mut Vec<CliEvent>) {
        if let Some(turn) = self.pending.take() {
            self.last_text.clone_from(&turn.text);
            out.push(CliEvent::Turn(turn));
        }
    }
}

/// `settings.json` selecting the API key, in the state directory `dir`, when it has
/// none and a key is set.
fn write_settings(dir: &Path, has_key: bool) -> Result<(), String> {
    let file = dir.join("settings.json");
    if !has_key || file.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot make {}: {e}", dir.display()))?;
    std::fs::write(&file, API_KEY_SETTINGS)
        .map_err(|e| format!("cannot write {}: {e}", file.display()))
}

/// The command's tokens (`stats`): cached input is part of the input.
fn usage(stats: &Value) -> Usage {
    let n = |k: &str| stats[k].as_u64().unwrap_or(0);
    Usage {
        input_tokens: n("input_tokens"),
        output_tokens: n("output_tokens"),
        cache_read_tokens: n("cached"),
        cache_write_tokens: 0,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<CliEvent> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/gemini-cli")
            .join(name);
        let text = std::fs::read_to_string(path).unwrap();
        let mut d = Gemini::default();
        let mut out = Vec::new();
        for l in text.lines().filter(|l| !l.trim().is_empty()) {
            d.line(l, &mut out).unwrap();
        }
        d.finish(&mut out);
        out
    }

    fn invocation<'a>(tools: &'a [Tool], session: SessionRef) -> Invocation<'a> {
        Invocation {
            model: "",
            session,
            system_prompt: "be a scout",
            tools,
            workdir: Path::new("/w"),
            sandbox: SandboxMode::WorkspaceWrite,
            network: true,
            confined: true,
            output_schema: None,
            max_budget_usd: None,
            ask: None,
        }
    }

    /// As Gemini CLI 0.61.0 printed it against a mock: a shell command, then the answer.
    #[test]
    fn a_tool_call_and_an_answer() {
        let events = fixture("tool-call-yolo.jsonl");
        assert_eq!(events.len(), 5, "{events:?}");
        assert_eq!(
            events[0],
            CliEvent::Session("b3b2010f-dc82-4873-ba44-022664ce1acc".into())
        );
        let CliEvent::Turn(call) = &events[1] else {
            panic!("{events:?}")
        };
        assert_eq!(call.calls[0].1, "run_shell_command");
        assert_eq!(call.calls[0].2["command"], "echo hello > out.txt");
        let CliEvent::ToolResult { id, is_error, .. } = &events[2] else {
            panic!("{events:?}")
        };
        assert_eq!((id.as_str(), *is_error), (call.calls[0].0.as_str(), false));
        let CliEvent::Turn(last) = &events[3] else {
            panic!("{events:?}")
        };
        assert_eq!(last.text, "done: [g3] WRITEFILE");
        let CliEvent::Result(o) = &events[4] else {
            panic!("{events:?}")
        };
        assert_eq!(
            (o.text.as_str(), o.error.as_deref()),
            ("done: [g3] WRITEFILE", None)
        );
        let u = o.usage.unwrap();
        assert_eq!((u.input_tokens, u.output_tokens), (200, 40));
        assert_eq!(o.total_cost_usd, None, "gemini reports no cost");
    }

    #[test]
    fn a_resumed_command_answers() {
        let events = fixture("resume.jsonl");
        let CliEvent::Result(o) = events.last().unwrap() else {
            panic!("{events:?}")
        };
        assert_eq!(o.text, "done: [g5] second");
    }

    #[test]
    fn an_api_error_fails_the_command() {
        let events = fixture("http-404.jsonl");
        let CliEvent::Result(o) = events.last().unwrap() else {
            panic!("{events:?}")
        };
        assert!(
            o.error.as_deref().unwrap().starts_with("[API Error:"),
            "{o:?}"
        );
    }

    #[test]
    fn a_refused_tool_is_an_error_result() {
        let mut d = Gemini::default();
        let mut out = Vec::new();
        d.line(
            r#"{"type":"tool_use","tool_name":"write_file","tool_id":"w1","parameters":{}}"#,
            &mut out,
        )
        .unwrap();
        d.line(r#"{"type":"tool_result","tool_id":"w1","status":"error","output":"x","error":{"type":"policy_violation","message":"denied by policy"}}"#, &mut out).unwrap();
        assert!(matches!(
            &out[1],
            CliEvent::ToolResult { content, is_error: true, .. } if content == "denied by policy"
        ));
    }

    #[test]
    fn the_mode_follows_the_tools_and_a_scout_gets_no_writes() {
        let provider = super::super::setup::build(
            "gemini-cli",
            super::super::CliKind::Gemini,
            &Default::default(),
            &|_| None,
        )
        .unwrap();
        let scout = [Tool::ReadFile, Tool::ListFiles, Tool::SearchFiles];
        let run = invocation(&scout, SessionRef::New("id".into()));
        let args = Gemini::default().args(&run, &provider).join(" ");
        assert!(args.contains("--approval-mode default"), "{args}");
        assert!(args.contains("-m pro"), "{args}");
        assert!(args.contains("--session-id id"), "{args}");
        assert!(args.contains("--skip-trust"), "{args}");
        let editor = [Tool::ReadFile, Tool::WriteFile];
        let run = invocation(&editor, SessionRef::Resume("id".into()));
        let args = Gemini::default().args(&run, &provider).join(" ");
        assert!(args.contains("--approval-mode auto_edit"), "{args}");
        assert!(args.contains("--resume id"), "{args}");
        let builder = [Tool::ReadFile, Tool::WriteFile, Tool::RunCommand];
        let mut run = invocation(&builder, SessionRef::Fresh);
        assert!(
            Gemini::default()
                .args(&run, &provider)
                .join(" ")
                .contains("yolo")
        );
        run.sandbox = SandboxMode::ReadOnly;
        run.tools = &editor;
        let args = Gemini::default().args(&run, &provider).join(" ");
        assert!(args.contains("--approval-mode default"), "{args}");
    }

    #[test]
    fn instructions_go_before_the_first_prompt_only() {
        let d = Gemini::default();
        let first = d.prompt(&invocation(&[], SessionRef::New("id".into())), "do it");
        assert_eq!(
            first,
            "<instructions>\nbe a scout\n</instructions>\n\ndo it"
        );
        let later = d.prompt(&invocation(&[], SessionRef::Resume("id".into())), "again");
        assert_eq!(later, "again");
    }

    #[test]
    fn settings_are_written_only_when_missing_and_a_key_is_set() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join(".gemini");
        write_settings(&state, false).unwrap();
        assert!(!state.join("settings.json").exists());
        write_settings(&state, true).unwrap();
        let text = std::fs::read_to_string(state.join("settings.json")).unwrap();
        assert!(text.contains("gemini-api-key"));
        std::fs::write(state.join("settings.json"), "{\"mine\":1}").unwrap();
        write_settings(&state, true).unwrap();
        let text = std::fs::read_to_string(state.join("settings.json")).unwrap();
        assert_eq!(text, "{\"mine\":1}");
    }
}
