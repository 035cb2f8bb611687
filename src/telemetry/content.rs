//! Prompt and completion text as span attributes, only with
//! `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true`: the GenAI conventions'
//! JSON shapes (`gen_ai.system_instructions`, `gen_ai.input.messages`,
//! `gen_ai.output.messages`: messages of `{role, parts}`), size-capped. Each text is cut
//! to [`PART_CAP`] characters and a message list keeps its newest messages within
//! [`LIST_CAP`] bytes, so an attribute stays valid JSON however long the conversation.

use serde_json::{Value, json};

use crate::model::{Block, Message, Role};
use crate::text::truncate_chars;

/// Characters kept of one text, tool argument list or tool result.
pub const PART_CAP: usize = 4096;
/// Bytes kept of one message list (its newest messages).
pub const LIST_CAP: usize = 32 * 1024;

/// `s` cut to [`PART_CAP`] characters.
pub fn capped(s: &str) -> String {
    truncate_chars(s, PART_CAP)
}

/// The command's task as the conventions' input message list.
pub fn task_message(task: &str) -> String {
    json!([{"role": "user", "parts": [text_part(task)]}]).to_string()
}

/// The system prompt as `gen_ai.system_instructions`.
pub fn system(system: &str) -> String {
    json!([text_part(system)]).to_string()
}

/// The conversation sent to the model, newest messages kept within [`LIST_CAP`].
pub fn messages(messages: &[Message]) -> String {
    let mut kept: Vec<String> = Vec::new();
    let mut size = 2;
    for m in messages.iter().rev() {
        let one = message(m).to_string();
        if size + one.len() + 1 > LIST_CAP && !kept.is_empty() {
            break;
        }
        size += one.len() + 1;
        kept.push(one);
    }
    kept.reverse();
    format!("[{}]", kept.join(","))
}

/// The model's answer as `gen_ai.output.messages`.
pub fn output(answer: &Message, finish_reason: &str) -> String {
    let mut m = message(answer);
    m["finish_reason"] = json!(finish_reason);
    json!([m]).to_string()
}

fn message(m: &Message) -> Value {
    let only_results = !m.content.is_empty()
        && m.content
            .iter()
            .all(|b| matches!(b, Block::ToolResult { .. }));
    let role = match m.role {
        Role::Assistant => "assistant",
        Role::User if only_results => "tool",
        Role::User => "user",
    };
    let parts: Vec<Value> = m.content.iter().map(part).collect();
    json!({"role": role, "parts": parts})
}

fn part(block: &Block) -> Value {
    match block {
        Block::Text { text } => text_part(text),
        Block::ToolUse { id, name, input } => {
            let raw = input.to_string();
            let arguments = if raw.len() > PART_CAP {
                json!(capped(&raw))
            } else {
                input.clone()
            };
            json!({"type": "tool_call", "id": id, "name": name, "arguments": arguments})
        }
        Block::ToolResult {
            tool_use_id,
            content,
            ..
        } => json!({"type": "tool_call_response", "id": tool_use_id, "response": capped(content)}),
    }
}

fn text_part(text: &str) -> Value {
    json!({"type": "text", "content": capped(text)})
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn a_long_conversation_keeps_its_newest_messages_as_valid_json() {
        let history: Vec<Message> = (0..100)
            .map(|i| Message::user_text(format!("{i} {}", "x".repeat(2000))))
            .collect();
        let list = messages(&history);
        assert!(list.len() <= LIST_CAP, "{}", list.len());
        let parsed: Vec<Value> = serde_json::from_str(&list).unwrap();
        let last = parsed.last().unwrap()["parts"][0]["content"]
            .as_str()
            .unwrap();
        assert!(last.starts_with("99 "));
        assert!(parsed.len() < 100);
    }

    #[test]
    fn tool_calls_and_results_take_the_conventions_shape() {
        let call = Message {
            role: Role::Assistant,
            content: vec![Block::ToolUse {
                id: "c1".into(),
                name: "read_file".into(),
                input: json!({"path": "a"}),
            }],
        };
        let result = Message {
            role: Role::User,
            content: vec![Block::ToolResult {
                tool_use_id: "c1".into(),
                content: "y".repeat(PART_CAP * 2),
                is_error: false,
            }],
        };
        let list: Value = serde_json::from_str(&messages(&[call, result])).unwrap();
        assert_eq!(list[0]["parts"][0]["type"], "tool_call");
        assert_eq!(list[0]["parts"][0]["arguments"]["path"], "a");
        assert_eq!(list[1]["role"], "tool");
        assert_eq!(
            list[1]["parts"][0]["response"]
                .as_str()
                .unwrap()
                .chars()
                .count(),
            PART_CAP
        );
    }
}
