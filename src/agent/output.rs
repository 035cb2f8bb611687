//! The record of each command an agent was given: its task, how it ended, its final
//! answer and the files it touched. `get_agent_output` reads these.

use std::collections::BTreeSet;
use std::time::SystemTime;

pub use crate::status::CommandStatus;

/// One command and what came of it.
#[derive(Debug, Clone)]
pub struct CommandRecord {
    pub task: String,
    pub status: CommandStatus,
    /// The model's final answer (or the last text it wrote, if it never finished).
    pub text: String,
    pub error: Option<String>,
    pub files_read: BTreeSet<String>,
    pub files_written: BTreeSet<String>,
    pub queued_at: SystemTime,
    pub started_at: Option<SystemTime>,
    pub finished_at: Option<SystemTime>,
    /// The final answer must be JSON valid against this schema (`output_schema`).
    pub output_schema: Option<serde_json::Value>,
    /// The validated answer, once it passed.
    pub output_json: Option<serde_json::Value>,
}

impl CommandRecord {
    /// Take the text of a model reply as the answer so far: it replaces the previous
    /// one, or (after a reply cut off by the output limit) continues it.
    pub fn take_answer(&mut self, text: &str, continues: bool) {
        if continues {
            self.text.push_str(text);
        } else if !text.is_empty() {
            self.text = text.to_string();
        }
    }

    pub fn queued(task: String) -> Self {
        Self {
            task,
            status: CommandStatus::Queued,
            text: String::new(),
            error: None,
            files_read: BTreeSet::new(),
            files_written: BTreeSet::new(),
            queued_at: SystemTime::now(),
            started_at: None,
            finished_at: None,
            output_schema: None,
            output_json: None,
        }
    }
}

/// A character-based slice of `text`: `(slice, total_chars, next_offset)`.
/// Offsets count Unicode scalar values, so a slice never splits a character.
pub fn slice_chars(text: &str, offset: usize, max_chars: usize) -> (String, usize, Option<usize>) {
    let total = text.chars().count();
    let start = offset.min(total);
    let slice: String = text.chars().skip(start).take(max_chars).collect();
    let end = start + slice.chars().count();
    (slice, total, (end < total).then_some(end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_by_characters_and_reports_the_rest() {
        let text = "héllo wörld";
        assert_eq!(slice_chars(text, 0, 5), ("héllo".into(), 11, Some(5)));
        assert_eq!(slice_chars(text, 5, 100), (" wörld".into(), 11, None));
        assert_eq!(slice_chars(text, 50, 10), (String::new(), 11, None));
        assert_eq!(slice_chars("", 0, 10), (String::new(), 0, None));
    }
}
