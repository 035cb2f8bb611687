//! The sub-agent tools: what an agent's model calls to read, write, edit, list and
//! search files and to run commands, all jailed to the agent's work directory.
//!
//! Every tool is a variant of [`Tool`] (`tool.rs`), which knows its spec, whether it
//! writes, its activity label and how it runs ([`Tool::run`]: never panics, never hangs
//! past cancellation, gives a [`ToolOutcome`]). [`tool_specs`] gives the specs of an
//! allow-list; [`describe_call`] labels a journaled call known only by name.
//!
//! Layout: `jail` opens every path the model gives from a handle on the work directory,
//! one component at a time (race-free), and refuses anything outside it; `fs` holds
//! `read_file`/`write_file`/`edit_file`; `list` and `search` walk the tree on directory
//! handles (`walk`: gitignore-aware, never following symlinks); `command` runs `sh -c`
//! through [`crate::sandbox`] in its own process group and kills the whole group on
//! timeout or cancel; `text` has the output-capping helpers they share. Tests drive the
//! tools through [`Tool::run`].

pub mod ask;
mod command;
mod fs;
mod jail;
mod list;
mod search;
mod text;
mod tool;
mod walk;

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::model::ToolSpec;
pub use tool::{Tool, UnknownTool};

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
    /// The agent's id (its commands' private temp directory is named after it).
    pub agent: String,
    /// Places a confined command still sees (read-only) where flotilla's data
    /// directory is hidden: the git directory of a worktree agent's clone, so git
    /// works in its worktree.
    pub visible: Vec<PathBuf>,
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

/// Specs of the given tools, in [`Tool::ALL`] order.
pub fn tool_specs(tools: &[Tool]) -> Vec<ToolSpec> {
    Tool::ALL
        .into_iter()
        .filter(|t| tools.contains(t))
        .map(Tool::spec)
        .collect()
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

/// The activity label of a call known only by its name (a journaled call, a CLI
/// session's tool): the tool's [`Tool::label`], or the name with the first telling
/// field of its input (`Bash: cargo test`, `Write: src/main.rs`), on one short line.
pub fn describe_call(name: &str, input: &Value) -> String {
    if let Ok(tool) = name.parse::<Tool>() {
        return tool.label(input);
    }
    const TELLING: [&str; 8] = [
        "command",
        "cmd",
        "file_path",
        "path",
        "pattern",
        "query",
        "url",
        "description",
    ];
    let detail = TELLING.iter().find_map(|k| match &input[k] {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Array(words) if !words.is_empty() => Some(
            words
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" "),
        ),
        _ => None,
    });
    let line = match detail {
        Some(d) => format!("{name}: {d}"),
        None => name.to_string(),
    };
    text::truncate_chars(&tool::one_line(&line), 80)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
pub(crate) mod tests;
