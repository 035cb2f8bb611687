//! `ask_orchestrator`: the one sub-agent tool that is not run in the work directory.
//! The worker answers it (see [`crate::agent::asking`]); this module owns what the
//! model reads about it and the check of its arguments.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

/// Most options a question may offer.
pub const MAX_OPTIONS: usize = 10;
/// Longest question, in characters.
pub const MAX_QUESTION_CHARS: usize = 2000;

pub const DESCRIPTION: &str = "Ask the orchestrator a question and wait for its answer, which comes back \
as this tool's result. Use it only for a real ambiguity that blocks progress and that you cannot settle \
from the task, the files or the project's conventions (e.g. which of two APIs to keep, whether a failing \
test is expected). Never ask for permission, confirmation or reassurance. The question must stand alone: \
the orchestrator has not seen your work, so give the context and the choices.";

/// Arguments of `ask_orchestrator`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AskInput {
    /// The question, standing alone: what you found, what is ambiguous, what you need decided.
    pub question: String,
    /// A short list of choices (at most 10), when the answer is one of them.
    #[serde(default)]
    pub options: Option<Vec<String>>,
}

/// A checked question: its text and options, or what the model must fix.
pub fn parse(input: Value) -> Result<(String, Vec<String>), String> {
    let AskInput { question, options } =
        super::parse::<AskInput>("ask_orchestrator", input).map_err(|e| e.to_string())?;
    let question = question.trim().to_string();
    if question.is_empty() {
        return Err("Error: `question` is empty; say what you need decided.".into());
    }
    if question.chars().count() > MAX_QUESTION_CHARS {
        return Err(format!(
            "Error: the question is longer than {MAX_QUESTION_CHARS} characters; ask it shorter."
        ));
    }
    let options: Vec<String> = options
        .unwrap_or_default()
        .into_iter()
        .map(|o| o.trim().to_string())
        .collect();
    if options.len() > MAX_OPTIONS {
        return Err(format!(
            "Error: {} options given; offer at most {MAX_OPTIONS}, or none and ask an open question.",
            options.len()
        ));
    }
    if options.iter().any(String::is_empty) {
        return Err("Error: an option is empty; give each option a few words.".into());
    }
    Ok((question, options))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn questions_are_checked() {
        let (q, o) = parse(json!({"question": " Keep v1? ", "options": ["v1", "v2"]})).unwrap();
        assert_eq!(
            (q.as_str(), o),
            ("Keep v1?", vec!["v1".to_string(), "v2".into()])
        );
        assert!(
            parse(json!({"question": "  "}))
                .unwrap_err()
                .contains("empty")
        );
        assert!(
            parse(json!({"question": "x", "options": [""]}))
                .unwrap_err()
                .contains("option is empty")
        );
        let many: Vec<String> = (0..11).map(|i| i.to_string()).collect();
        assert!(
            parse(json!({"question": "x", "options": many}))
                .unwrap_err()
                .contains("at most 10")
        );
        assert!(parse(json!({"q": "x"})).is_err());
    }
}
