//! An agent's conversation and the rules for growing it. The worker and the journal
//! replay (`store::replay`) both go through these methods, so a conversation rebuilt
//! from the event log is the one the worker had.

use serde_json::Value;

use crate::model::{Block, Message, Role};
use crate::plan::checkpoint;

/// What the model reads when a tool call was started but the server stopped before
/// it finished.
pub const INTERRUPTED_TOOL: &str = "Interrupted: the flotilla server stopped while this tool was running, so its result is unknown and it was not run again. Check its effects (e.g. read the files it touched) before retrying it.";

/// What the model reads for a tool call its command ended before running.
pub const NOT_RUN: &str = "Not run: the previous instruction ended before this tool call was made.";

/// What the model reads after a reply the output-token limit cut off.
pub const CONTINUE: &str = "Your last reply was cut off by the output token limit. Continue exactly where it stopped, without repeating what you already wrote.";

/// A command's instruction as the model reads it: its task, and when the command has an
/// `output_schema`, the schema its final answer must validate against, so that a model
/// that follows it passes on the first call.
pub fn command_instruction(task: &str, output_schema: Option<&Value>) -> String {
    match output_schema {
        Some(schema) => format!("{task}\n\n{}", checkpoint::instruction(schema)),
        None => task.to_owned(),
    }
}

/// The instruction of a command's next attempt after a failed one (`retries`).
pub fn retry_instruction(task: &str, output_schema: Option<&Value>, error: &str) -> String {
    format!(
        "{}\n\nPrevious attempt failed: {error}",
        command_instruction(task, output_schema)
    )
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Conversation {
    messages: Vec<Message>,
}

impl Conversation {
    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// Append an instruction, merging into a trailing user message (left there by an
    /// interrupted or failed command) so user and assistant turns keep alternating.
    /// Tool calls left unanswered by a command that ended abruptly are answered first
    /// (as not run), so they are never run later and every call has its result.
    pub fn push_instruction(&mut self, text: String) {
        for (id, _, _) in self.unanswered_tool_calls() {
            self.push_tool_result(id, NOT_RUN.into(), true);
        }
        match self.messages.last_mut() {
            Some(last) if last.role == Role::User => last.content.push(Block::Text {
                text: format!(
                    "(Your previous instruction ended before you finished it: it was interrupted or failed.)\n\n{text}"
                ),
            }),
            _ => self.messages.push(Message::user_text(text)),
        }
    }

    pub fn push_assistant(&mut self, message: Message) {
        self.messages.push(message);
    }

    /// Ask the model to go on after a reply that was cut off (see
    /// [`crate::store::event::is_cut_off`]).
    pub fn push_continue(&mut self) {
        self.messages.push(Message::user_text(CONTINUE));
    }

    /// Append one tool result: to the user message that follows the assistant's tool
    /// calls, starting that message if needed.
    pub fn push_tool_result(&mut self, tool_use_id: String, content: String, is_error: bool) {
        let block = Block::ToolResult {
            tool_use_id,
            content,
            is_error,
        };
        match self.messages.last_mut() {
            Some(last) if last.role == Role::User && !has_text(last) => last.content.push(block),
            _ => self.messages.push(Message {
                role: Role::User,
                content: vec![block],
            }),
        }
    }

    /// Tool calls (id, name, input) of the last assistant message that have no
    /// result yet, in order.
    pub fn unanswered_tool_calls(&self) -> Vec<(String, String, Value)> {
        let Some(pos) = self
            .messages
            .iter()
            .rposition(|m| m.role == Role::Assistant)
        else {
            return Vec::new();
        };
        let answered: Vec<&str> = self.messages[pos + 1..]
            .iter()
            .flat_map(|m| m.content.iter())
            .filter_map(|b| match b {
                Block::ToolResult { tool_use_id, .. } => Some(tool_use_id.as_str()),
                _ => None,
            })
            .collect();
        self.messages[pos]
            .tool_uses()
            .filter(|(id, _, _)| !answered.contains(id))
            .map(|(id, name, input)| (id.to_string(), name.to_string(), input.clone()))
            .collect()
    }
}

fn has_text(m: &Message) -> bool {
    m.content.iter().any(|b| matches!(b, Block::Text { .. }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn assistant_calling(ids: &[&str]) -> Message {
        Message {
            role: Role::Assistant,
            content: ids
                .iter()
                .map(|id| Block::ToolUse {
                    id: id.to_string(),
                    name: "read_file".into(),
                    input: json!({"path": "a"}),
                })
                .collect(),
        }
    }

    #[test]
    fn tool_results_gather_in_one_user_message_and_instructions_merge() {
        let mut c = Conversation::default();
        c.push_instruction("first".into());
        c.push_assistant(assistant_calling(&["t1", "t2"]));
        c.push_tool_result("t1".into(), "one".into(), false);
        assert_eq!(
            c.unanswered_tool_calls(),
            [("t2".into(), "read_file".into(), json!({"path": "a"}))]
        );
        c.push_tool_result("t2".into(), "two".into(), true);
        assert!(c.unanswered_tool_calls().is_empty());
        assert_eq!(c.messages().len(), 3);
        // A command that ended after tool results: the next instruction joins them.
        c.push_instruction("second".into());
        assert_eq!(c.messages().len(), 3);
        assert_eq!(c.messages()[2].content.len(), 3);
        // Results after text start a new user message instead of mixing in.
        c.push_assistant(assistant_calling(&["t3"]));
        c.push_tool_result("t3".into(), "three".into(), false);
        assert_eq!(c.messages().len(), 5);
    }

    #[test]
    fn an_instruction_answers_calls_left_unanswered_before_its_text() {
        let mut c = Conversation::default();
        c.push_instruction("first".into());
        c.push_assistant(assistant_calling(&["t1", "t2"]));
        c.push_tool_result("t1".into(), "interrupted".into(), true);
        c.push_instruction("next".into());
        assert!(c.unanswered_tool_calls().is_empty());
        let last = &c.messages()[2];
        assert!(
            matches!(&last.content[1], Block::ToolResult { tool_use_id, content, is_error: true } if tool_use_id == "t2" && content == NOT_RUN)
        );
        assert!(matches!(&last.content[2], Block::Text { .. }));
    }
}
