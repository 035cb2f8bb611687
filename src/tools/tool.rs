//! [`Tool`]: the one list of sub-agent tools. Each variant knows its spec (what the
//! model reads), whether it can change files, its activity label and how it runs, so
//! nothing else matches a tool by its name. A name from outside (`create_agent`'s
//! `tools`, a role's front matter, the store, a model's tool call) becomes a `Tool`
//! once, where it arrives.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::{ToolContext, ToolOutcome, ask, command, fs, guard, list, parse, schema, search, text};
use crate::model::ToolSpec;
use crate::sandbox::{Sandbox, SandboxMode};

// A sub-agent tool. On the wire (arguments, store, model) it is its snake_case name.
// (A `//` comment: a doc comment would be repeated in every `tools` schema the
// orchestrator reads, where the argument's own description already says it all.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(inline)]
pub enum Tool {
    ReadFile,
    WriteFile,
    EditFile,
    ListFiles,
    SearchFiles,
    RunCommand,
    AskOrchestrator,
}

impl Tool {
    /// Every tool, in the order specs are given to the model.
    pub const ALL: [Tool; 7] = [
        Tool::ReadFile,
        Tool::WriteFile,
        Tool::EditFile,
        Tool::ListFiles,
        Tool::SearchFiles,
        Tool::RunCommand,
        Tool::AskOrchestrator,
    ];

    /// Its wire name, e.g. `read_file`.
    pub fn name(self) -> &'static str {
        match self {
            Tool::ReadFile => "read_file",
            Tool::WriteFile => "write_file",
            Tool::EditFile => "edit_file",
            Tool::ListFiles => "list_files",
            Tool::SearchFiles => "search_files",
            Tool::RunCommand => "run_command",
            Tool::AskOrchestrator => "ask_orchestrator",
        }
    }

    /// `read_file, write_file, …`: every name, for messages.
    pub fn all_names() -> String {
        Self::ALL.map(Tool::name).join(", ")
    }

    /// `a, b`: the names of `tools`, in their order.
    pub fn join(tools: &[Tool]) -> String {
        tools
            .iter()
            .map(|t| t.name())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Whether it only reads (never changes anything, whatever the sandbox).
    pub fn is_read_only(self) -> bool {
        match self {
            Tool::ReadFile | Tool::ListFiles | Tool::SearchFiles | Tool::AskOrchestrator => true,
            Tool::WriteFile | Tool::EditFile | Tool::RunCommand => false,
        }
    }

    /// Whether it can change files under `sandbox`: the file-writing tools always,
    /// `run_command` unless the sandbox is read-only.
    pub fn writes(self, sandbox: Sandbox) -> bool {
        match self {
            Tool::WriteFile | Tool::EditFile => true,
            Tool::RunCommand => sandbox.mode != SandboxMode::ReadOnly,
            Tool::ReadFile | Tool::ListFiles | Tool::SearchFiles | Tool::AskOrchestrator => false,
        }
    }

    /// Name, description and input JSON Schema, as the model reads them.
    pub fn spec(self) -> ToolSpec {
        let (description, input_schema) = match self {
            Tool::ReadFile => (fs::READ_DESCRIPTION, schema::<fs::ReadFileInput>()),
            Tool::WriteFile => (fs::WRITE_DESCRIPTION, schema::<fs::WriteFileInput>()),
            Tool::EditFile => (fs::EDIT_DESCRIPTION, schema::<fs::EditFileInput>()),
            Tool::ListFiles => (list::DESCRIPTION, schema::<list::ListFilesInput>()),
            Tool::SearchFiles => (search::DESCRIPTION, schema::<search::SearchFilesInput>()),
            Tool::RunCommand => (command::DESCRIPTION, schema::<command::RunCommandInput>()),
            Tool::AskOrchestrator => (ask::DESCRIPTION, schema::<ask::AskInput>()),
        };
        ToolSpec {
            name: self.name().to_string(),
            description: description.to_string(),
            input_schema,
        }
    }

    /// A short one-line label for status display, e.g. `run_command: cargo test`.
    pub fn label(self, input: &Value) -> String {
        let key = match self {
            Tool::RunCommand => "command",
            Tool::SearchFiles => "pattern",
            Tool::AskOrchestrator => "question",
            Tool::ReadFile | Tool::WriteFile | Tool::EditFile | Tool::ListFiles => "path",
        };
        let arg = input.get(key).and_then(Value::as_str).map(one_line);
        let label = match arg {
            Some(a) if !a.is_empty() => format!("{}: {a}", self.name()),
            _ => self.name().to_string(),
        };
        text::truncate_chars(&label, 80)
    }

    /// Run one call. Bad input and failures come back as `is_error` outcomes the model
    /// can act on (never a panic); cancellation returns promptly. Output is capped.
    pub async fn run(self, input: Value, ctx: &ToolContext) -> ToolOutcome {
        let name = self.name();
        if ctx.cancel.is_cancelled() {
            return super::cancelled(name);
        }
        let result = match self {
            Tool::ReadFile => match parse(name, input) {
                Ok(i) => guard(name, ctx, fs::read_file(i, ctx)).await,
                Err(e) => Err(e),
            },
            Tool::WriteFile => match parse(name, input) {
                Ok(i) => guard(name, ctx, fs::write_file(i, ctx)).await,
                Err(e) => Err(e),
            },
            Tool::EditFile => match parse(name, input) {
                Ok(i) => guard(name, ctx, fs::edit_file(i, ctx)).await,
                Err(e) => Err(e),
            },
            Tool::ListFiles => match parse(name, input) {
                Ok(i) => guard(name, ctx, list::list_files(i, ctx)).await,
                Err(e) => Err(e),
            },
            Tool::SearchFiles => match parse(name, input) {
                Ok(i) => guard(name, ctx, search::search_files(i, ctx)).await,
                Err(e) => Err(e),
            },
            // run_command watches the token itself: it must kill its process group first.
            Tool::RunCommand => match parse(name, input) {
                Ok(i) => command::run_command(i, ctx).await,
                Err(e) => Err(e),
            },
            // The worker answers it (a question waits for the orchestrator, not for
            // the work directory); reaching here means a caller skipped the worker.
            Tool::AskOrchestrator => Ok(ToolOutcome::error(
                "ask_orchestrator is answered by the agent's worker, not run as a tool",
            )),
        };
        let mut outcome = result.unwrap_or_else(|e| ToolOutcome::error(e.to_string()));
        outcome.content = text::cap_middle(&outcome.content, super::MAX_OUTPUT_CHARS);
        outcome
    }
}

/// Collapse every whitespace run (newlines included) into one space.
pub(super) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl fmt::Display for Tool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not a sub-agent tool; says which ones are.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown tool `{0}` in `tools`; the sub-agent tools are: {list}", list = Tool::all_names())]
pub struct UnknownTool(pub String);

impl FromStr for Tool {
    type Err = UnknownTool;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Tool::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| UnknownTool(s.to_string()))
    }
}

/// By name, with [`UnknownTool`]'s message for anything else (serde's own would only
/// say "unknown variant").
impl<'de> Deserialize<'de> for Tool {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}
