//! The sub-agent tools: what an agent's model calls to read, write, edit, list and
//! search files and to run commands, all jailed to the agent's work directory.
//!
//! The worker calls three functions:
//! - [`tool_specs`] — name, description and input JSON Schema of the tools an agent may use;
//! - [`run_tool`] — run one tool call and get a [`ToolOutcome`] (never panics, never hangs
//!   past cancellation);
//! - [`describe_call`] — a one-line label for status display.
//!
//! Layout: `jail` opens every path the model gives from a handle on the work directory,
//! one component at a time (race-free), and refuses anything outside it; `fs` holds
//! `read_file`/`write_file`/`edit_file`; `list` and `search` walk the tree on directory
//! handles (`walk`: gitignore-aware, never following symlinks); `command` runs `sh -c`
//! through [`crate::sandbox`] in its own process group and kills the whole group on
//! timeout or cancel; `text` has the output-capping helpers they share. Tests drive the
//! tools through [`run_tool`].

mod command;
mod fs;
mod jail;
mod list;
mod search;
mod text;
mod walk;

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::model::ToolSpec;

/// Every tool name, in the order specs are returned.
pub const ALL_TOOLS: [&str; 6] = [
    "read_file",
    "write_file",
    "edit_file",
    "list_files",
    "search_files",
    "run_command",
];

/// The tools that never change anything.
pub const READ_ONLY_TOOLS: [&str; 3] = ["read_file", "list_files", "search_files"];

/// Maximum characters of any tool output given back to the model.
pub const MAX_OUTPUT_CHARS: usize = 30_000;

/// Where and under what cancellation a tool call runs.
#[derive(Debug, Clone)]
pub struct ToolContext {
    /// Canonical absolute work directory (the caller canonicalizes it).
    pub root: PathBuf,
    /// Fires on interrupt, delete or shutdown; a running tool stops promptly.
    pub cancel: CancellationToken,
    /// What `run_command` may change (see [`crate::sandbox`]).
    pub sandbox: crate::sandbox::Sandbox,
}

/// The result of one tool call.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ToolOutcome {
    /// What the model reads (already capped, with a note saying how much was cut).
    pub content: String,
    pub is_error: bool,
    /// Paths relative to root, `/` separated, whose content this call showed the model.
    pub files_read: Vec<String>,
    /// Paths relative to root that this call created or modified.
    pub files_written: Vec<String>,
}

impl ToolOutcome {
    /// A successful outcome with no file bookkeeping.
    pub fn ok(content: impl Into<String>) -> Self {
        Self {
            content: content.into(),
            ..Self::default()
        }
    }

    /// An error outcome the model reads and can act on.
    pub fn error(content: impl Into<String>) -> Self {
        Self {
            content: content.into(),
            is_error: true,
            ..Self::default()
        }
    }
}

/// Why a tool call failed; the `Display` text is what the model reads.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error(transparent)]
    Jail(#[from] jail::JailError),
    #[error("could not {action} `{path}`: {source}")]
    Io {
        action: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// Any other failure, phrased for the model (what was wrong, what to do).
    #[error("{0}")]
    Model(String),
}

impl ToolError {
    pub(crate) fn io(action: &'static str, path: &str, source: std::io::Error) -> Self {
        Self::Io {
            action,
            path: path.to_string(),
            source,
        }
    }
}

type ToolResult = Result<ToolOutcome, ToolError>;

/// Specs for the given tool names, in [`ALL_TOOLS`] order; unknown names are skipped.
pub fn tool_specs(names: &[String]) -> Vec<ToolSpec> {
    ALL_TOOLS
        .iter()
        .filter(|t| names.iter().any(|n| n == *t))
        .map(|t| spec(t))
        .collect()
}

fn spec(name: &str) -> ToolSpec {
    let (description, input_schema) = match name {
        "read_file" => (fs::READ_DESCRIPTION, schema::<fs::ReadFileInput>()),
        "write_file" => (fs::WRITE_DESCRIPTION, schema::<fs::WriteFileInput>()),
        "edit_file" => (fs::EDIT_DESCRIPTION, schema::<fs::EditFileInput>()),
        "list_files" => (list::DESCRIPTION, schema::<list::ListFilesInput>()),
        "search_files" => (search::DESCRIPTION, schema::<search::SearchFilesInput>()),
        _ => (command::DESCRIPTION, schema::<command::RunCommandInput>()),
    };
    ToolSpec {
        name: name.to_string(),
        description: description.to_string(),
        input_schema,
    }
}

/// The JSON Schema of an input struct, as the model should read it: no `$schema`,
/// `title` or struct-level description, optional fields typed plainly (`"integer"`, not
/// `["integer", "null"]`, no `"default": null`, no Rust `format`), and descriptions on
/// one line (doc comments wrap).
fn schema<T: JsonSchema>() -> Value {
    let mut value = schemars::schema_for!(T).to_value();
    let Some(obj) = value.as_object_mut() else {
        return value;
    };
    for noise in ["$schema", "title", "description"] {
        obj.remove(noise);
    }
    if let Some(Value::Object(props)) = obj.get_mut("properties") {
        for prop in props.values_mut() {
            let Some(p) = prop.as_object_mut() else {
                continue;
            };
            if let Some(Value::Array(types)) = p.get("type") {
                let non_null: Vec<&Value> = types.iter().filter(|t| *t != "null").collect();
                if let [single] = non_null.as_slice() {
                    let single = (*single).clone();
                    p.insert("type".into(), single);
                }
            }
            if p.get("default").is_some_and(Value::is_null) {
                p.remove("default");
            }
            p.remove("format");
            if let Some(Value::String(d)) = p.get_mut("description") {
                *d = d.split_whitespace().collect::<Vec<_>>().join(" ");
            }
        }
    }
    value
}

/// Run one tool call. Unknown tools, bad input and failures come back as `is_error`
/// outcomes the model can act on; cancellation returns promptly.
pub async fn run_tool(name: &str, input: Value, ctx: &ToolContext) -> ToolOutcome {
    if ctx.cancel.is_cancelled() {
        return cancelled(name);
    }
    let result = match name {
        "read_file" => match parse(name, input) {
            Ok(i) => guard(name, ctx, fs::read_file(i, ctx)).await,
            Err(e) => Err(e),
        },
        "write_file" => match parse(name, input) {
            Ok(i) => guard(name, ctx, fs::write_file(i, ctx)).await,
            Err(e) => Err(e),
        },
        "edit_file" => match parse(name, input) {
            Ok(i) => guard(name, ctx, fs::edit_file(i, ctx)).await,
            Err(e) => Err(e),
        },
        "list_files" => match parse(name, input) {
            Ok(i) => guard(name, ctx, list::list_files(i, ctx)).await,
            Err(e) => Err(e),
        },
        "search_files" => match parse(name, input) {
            Ok(i) => guard(name, ctx, search::search_files(i, ctx)).await,
            Err(e) => Err(e),
        },
        // run_command watches the token itself: it must kill its process group first.
        "run_command" => match parse(name, input) {
            Ok(i) => command::run_command(i, ctx).await,
            Err(e) => Err(e),
        },
        _ => Err(ToolError::Model(format!(
            "unknown tool `{name}`; the available tools are: {}",
            ALL_TOOLS.join(", ")
        ))),
    };
    let mut outcome = result.unwrap_or_else(|e| ToolOutcome::error(e.to_string()));
    outcome.content = text::cap_middle(&outcome.content, MAX_OUTPUT_CHARS);
    outcome
}

/// Run `fut` unless the call is cancelled first.
async fn guard(name: &str, ctx: &ToolContext, fut: impl Future<Output = ToolResult>) -> ToolResult {
    tokio::select! {
        biased;
        () = ctx.cancel.cancelled() => Ok(cancelled(name)),
        r = fut => r,
    }
}

fn cancelled(what: &str) -> ToolOutcome {
    ToolOutcome::error(format!("{what} was cancelled before it finished"))
}

/// Deserialize a tool's input, or say what was wrong and which arguments are expected.
fn parse<T: DeserializeOwned + JsonSchema>(name: &str, input: Value) -> Result<T, ToolError> {
    // Some models send `null` or nothing for a tool without required arguments.
    let input = if input.is_null() {
        Value::Object(Default::default())
    } else {
        input
    };
    serde_json::from_value(input).map_err(|e| {
        ToolError::Model(format!(
            "invalid arguments for {name}: {e}. Expected a JSON object with: {}",
            expected_args(&schema::<T>())
        ))
    })
}

/// `path (string, required), offset (integer)` from a schema.
fn expected_args(schema: &Value) -> String {
    let required: Vec<&str> = schema["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let Some(props) = schema["properties"].as_object() else {
        return "no arguments".into();
    };
    props
        .iter()
        .map(|(k, v)| {
            let ty = v["type"].as_str().unwrap_or("value");
            if required.contains(&k.as_str()) {
                format!("{k} ({ty}, required)")
            } else {
                format!("{k} ({ty})")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A short one-line label for status display, e.g. `run_command: cargo test`.
pub fn describe_call(name: &str, input: &Value) -> String {
    let key = match name {
        "run_command" => "command",
        "search_files" => "pattern",
        _ => "path",
    };
    let arg = input.get(key).and_then(Value::as_str).map(|s| {
        // One line: collapse all whitespace runs (newlines included) into single spaces.
        s.split_whitespace().collect::<Vec<_>>().join(" ")
    });
    let label = match arg {
        Some(a) if !a.is_empty() => format!("{name}: {a}"),
        _ => name.split_whitespace().collect::<Vec<_>>().join(" "),
    };
    text::truncate_chars(&label, 80)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
pub(crate) mod tests;
