//! Checked outputs: a command's `output_schema` as a [`Checkpoint`] its final answer must
//! pass.
//!
//! [`Checkpoint::new`] compiles the schema once (refusing a non-object or invalid schema
//! with a message for the orchestrator). [`Checkpoint::check`] finds the JSON value in a
//! final answer — the whole answer, or the one fenced ```` ```json ```` block, or a single
//! plain ```` ``` ```` block that parses — and validates it. A [`CheckFailure`] has a short
//! `Display` for events and `last_error`, and [`CheckFailure::to_model_message`] for the
//! model: what failed, where and why, and to reply with only the corrected JSON.
//!
//! Validation uses the `jsonschema` crate (drafts 4 to 2020-12, `format` checked) built
//! without its HTTP and file resolvers: a schema cannot make flotilla fetch anything, and
//! a remote `$ref` is refused as unresolvable.

mod extract;

use serde_json::Value;
use thiserror::Error;

use extract::{FoundIn, extract_json};

/// At most this many schema violations are reported.
pub const MAX_VIOLATIONS: usize = 10;

/// Longest reason kept per violation, in chars (reasons quote the offending value).
const MAX_REASON_CHARS: usize = 300;

/// What the model is told to do after any miss.
const REPLY_AGAIN: &str =
    "Reply with only the corrected JSON (alone, or in one ```json block), no other text.";

/// A compiled `output_schema`. Cheap to share behind an `Arc`; `Send + Sync`.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    validator: jsonschema::Validator,
}

/// One way the answer's JSON breaks the schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// JSON Pointer to the offending value, e.g. `/items/0/name`; empty for the root.
    pub path: String,
    /// What is wrong with it, as the validator words it.
    pub reason: String,
}

/// Why a final answer did not pass its checkpoint. `Display` is one line for events and
/// `last_error`; [`CheckFailure::to_model_message`] is what the model reads.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CheckFailure {
    /// Neither the whole answer nor a fenced block holds JSON.
    #[error("no JSON value found in the final answer")]
    NoJson,
    /// More than one ```` ```json ```` block: which one is the answer is ambiguous.
    #[error("the final answer has {count} ```json blocks; exactly one is expected")]
    SeveralBlocks { count: usize },
    /// The JSON (bare or fenced) does not parse.
    #[error(
        "the final answer's JSON does not parse: {message} at line {line}, column {column}{}",
        of_block(.in_block)
    )]
    Parse {
        message: String,
        line: usize,
        column: usize,
        /// Whether `line`/`column` count from the start of the fenced block's content.
        in_block: bool,
    },
    /// The JSON parses but does not validate.
    #[error("the final answer does not match output_schema: {}", summary(.violations, .total))]
    Schema {
        /// The first [`MAX_VIOLATIONS`] violations.
        violations: Vec<Violation>,
        /// How many there were in all.
        total: usize,
    },
}

impl Checkpoint {
    /// Compiles an `output_schema`. Refuses anything but a JSON object, and a schema the
    /// validator rejects, with a message for the orchestrator.
    pub fn new(schema: &Value) -> Result<Self, String> {
        if !schema.is_object() {
            return Err(format!(
                "output_schema must be a JSON Schema object, such as {{\"type\": \"object\", \
                 \"properties\": {{\"summary\": {{\"type\": \"string\"}}}}, \"required\": \
                 [\"summary\"]}}; got {}",
                crate::text::json_kind(schema)
            ));
        }
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .build(schema)
            .map_err(|e| {
                let at = e.instance_path().to_string();
                let at = if at.is_empty() {
                    String::new()
                } else {
                    format!("at {at}: ")
                };
                let hint = if matches!(
                    e.kind(),
                    jsonschema::error::ValidationErrorKind::Referencing(_)
                ) {
                    "; flotilla fetches no schemas: put referenced schemas under `$defs` and \
                     point to them with `#/$defs/…`"
                } else {
                    ""
                };
                format!("output_schema is not a valid JSON Schema: {at}{e}{hint}")
            })?;
        Ok(Self { validator })
    }

    /// Finds the JSON value in a final answer and validates it; returns the value.
    pub fn check(&self, answer: &str) -> Result<Value, CheckFailure> {
        let value = match extract_json(answer) {
            FoundIn::Value(v) => v,
            FoundIn::Nothing => return Err(CheckFailure::NoJson),
            FoundIn::SeveralBlocks(count) => return Err(CheckFailure::SeveralBlocks { count }),
            FoundIn::ParseError { error, in_block } => {
                return Err(CheckFailure::Parse {
                    message: parse_message(&error),
                    line: error.line(),
                    column: error.column(),
                    in_block,
                });
            }
        };
        let mut total = 0;
        let mut violations = Vec::new();
        for error in self.validator.iter_errors(&value) {
            total += 1;
            if violations.len() < MAX_VIOLATIONS {
                violations.push(Violation {
                    path: error.instance_path().to_string(),
                    reason: cap(&error.to_string()),
                });
            }
        }
        if total == 0 {
            Ok(value)
        } else {
            Err(CheckFailure::Schema { violations, total })
        }
    }
}

/// What a checked command's instruction ends with, so that the model knows the contract
/// up front and a model that follows it passes on the first call.
pub fn instruction(schema: &Value) -> String {
    let schema = serde_json::to_string_pretty(schema).unwrap_or_default();
    format!(
        "Your final answer must be a JSON value that validates against this JSON Schema, \
         alone or in one ```json block:\n```json\n{schema}\n```"
    )
}

impl CheckFailure {
    /// What the model is told so that it can answer again: what failed, where and why,
    /// and to reply with only the corrected JSON.
    pub fn to_model_message(&self) -> String {
        match self {
            Self::NoJson => format!(
                "Your final answer must be a JSON value matching the output schema, but no \
                 JSON was found in it. {REPLY_AGAIN}"
            ),
            Self::SeveralBlocks { count } => format!(
                "Your final answer has {count} ```json blocks, but it must hold exactly one \
                 JSON value. {REPLY_AGAIN}"
            ),
            Self::Parse {
                message,
                line,
                column,
                in_block,
            } => format!(
                "Your final answer's JSON does not parse: {message} at line {line}, column \
                 {column}{}. {REPLY_AGAIN}",
                if *in_block {
                    " of the ```json block"
                } else {
                    ""
                }
            ),
            Self::Schema { violations, total } => {
                let mut out = format!(
                    "Your final answer does not match the output schema ({}):\n",
                    problems(*total)
                );
                for v in violations {
                    out.push_str(&format!("- at {}: {}\n", path_label(&v.path), v.reason));
                }
                if *total > violations.len() {
                    out.push_str(&format!("- … and {} more\n", total - violations.len()));
                }
                out.push_str("Fix every problem listed. ");
                out.push_str(REPLY_AGAIN);
                out
            }
        }
    }
}

fn problems(n: usize) -> String {
    if n == 1 {
        "1 problem".to_string()
    } else {
        format!("{n} problems")
    }
}

fn path_label(path: &str) -> String {
    if path.is_empty() {
        "the root".to_string()
    } else {
        format!("`{path}`")
    }
}

fn of_block(in_block: &bool) -> &'static str {
    if *in_block {
        " of its ```json block"
    } else {
        ""
    }
}

/// `at /a: reason; at /b: reason; and 3 more`.
fn summary(violations: &[Violation], total: &usize) -> String {
    let total = *total;
    let mut parts: Vec<String> = violations
        .iter()
        .map(|v| format!("at {}: {}", path_label(&v.path), v.reason))
        .collect();
    if total > violations.len() {
        parts.push(format!("and {} more", total - violations.len()));
    }
    parts.join("; ")
}

/// serde_json's message without its ` at line L column C` suffix (reported separately).
fn parse_message(error: &serde_json::Error) -> String {
    let full = error.to_string();
    let suffix = format!(" at line {} column {}", error.line(), error.column());
    full.strip_suffix(&suffix).unwrap_or(&full).to_string()
}

fn cap(reason: &str) -> String {
    if reason.chars().count() <= MAX_REASON_CHARS {
        return reason.to_string();
    }
    let mut out: String = reason.chars().take(MAX_REASON_CHARS - 1).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests;
