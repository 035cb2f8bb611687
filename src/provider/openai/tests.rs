//! Wire conversion tests for the Chat Completions provider.

use super::*;

fn convo() -> Vec<Message> {
    vec![
        Message::user_text("fix it"),
        Message {
            role: Role::Assistant,
            content: vec![
                Block::ToolUse {
                    id: "call_a".into(),
                    name: "read_file".into(),
                    input: json!({"path": "a.rs"}),
                },
                Block::ToolUse {
                    id: "call_b".into(),
                    name: "run_command".into(),
                    input: json!({"command": "false"}),
                },
            ],
        },
        Message {
            role: Role::User,
            content: vec![
                Block::Text {
                    text: "also check b.rs".into(),
                },
                Block::ToolResult {
                    tool_use_id: "call_a".into(),
                    content: "fn main() {}".into(),
                    is_error: false,
                },
                Block::ToolResult {
                    tool_use_id: "call_b".into(),
                    content: "exit 1".into(),
                    is_error: true,
                },
            ],
        },
        Message {
            role: Role::Assistant,
            content: vec![Block::Text {
                text: "Done.".into(),
            }],
        },
    ]
}

#[test]
fn request_to_wire() {
    let messages = convo();
    let tools = vec![ToolSpec {
        name: "read_file".into(),
        description: "Read a file".into(),
        input_schema: json!({"type": "object"}),
    }];
    let request = ModelRequest {
        model: "gpt-5",
        system: "Be brief.",
        messages: &messages,
        tools: &tools,
        max_tokens: 500,
    };
    let wire =
        serde_json::to_value(to_wire(&request, MaxTokensField::MaxCompletionTokens)).unwrap();
    assert_eq!(
        wire,
        json!({
            "model": "gpt-5",
            "max_completion_tokens": 500,
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "fix it"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_a", "type": "function",
                     "function": {"name": "read_file", "arguments": "{\"path\":\"a.rs\"}"}},
                    {"id": "call_b", "type": "function",
                     "function": {"name": "run_command", "arguments": "{\"command\":\"false\"}"}}
                ]},
                {"role": "tool", "tool_call_id": "call_a", "content": "fn main() {}"},
                {"role": "tool", "tool_call_id": "call_b", "content": "Error: exit 1"},
                {"role": "user", "content": "also check b.rs"},
                {"role": "assistant", "content": "Done."}
            ],
            "tools": [{"type": "function", "function": {
                "name": "read_file", "description": "Read a file",
                "parameters": {"type": "object"}}}]
        })
    );
    let wire = serde_json::to_value(to_wire(&request, MaxTokensField::MaxTokens)).unwrap();
    assert_eq!(wire["max_tokens"], 500);
    assert_eq!(wire.get("max_completion_tokens"), None);
}

#[test]
fn max_tokens_field_default_depends_on_host() {
    use MaxTokensField::*;
    assert_eq!(
        MaxTokensField::default_for("https://api.openai.com/v1"),
        MaxCompletionTokens
    );
    assert_eq!(
        MaxTokensField::default_for("https://x.openai.azure.com/openai"),
        MaxCompletionTokens
    );
    assert_eq!(
        MaxTokensField::default_for("http://localhost:11434/v1"),
        MaxTokens
    );
    assert_eq!(
        MaxTokensField::default_for("https://notopenai.com/v1"),
        MaxTokens
    );
}

#[test]
fn response_from_wire() {
    let body = json!({
        "id": "chatcmpl-1", "object": "chat.completion",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": "Reading.",
            "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "read_file", "arguments": "{\"path\":\"x\"}"}},
                {"type": "function",
                 "function": {"name": "list_files", "arguments": ""}},
                {"id": "call_3", "type": "function",
                 "function": {"name": "write_file", "arguments": "{\"path\": \"y\""}}
            ]}}],
        "usage": {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150}
    });
    let response = from_wire(serde_json::from_value(body).unwrap()).unwrap();
    assert_eq!(response.stop_reason, StopReason::ToolUse);
    assert_eq!(
        response.usage,
        Usage {
            input_tokens: 120,
            output_tokens: 30,
            ..Default::default()
        }
    );
    assert_eq!(response.message.text(), "Reading.");
    let calls: Vec<_> = response.message.tool_uses().collect();
    assert_eq!(calls.len(), 3);
    assert_eq!(calls[0], ("call_1", "read_file", &json!({"path": "x"})));
    assert!(
        calls[1].0.starts_with("call_flotilla_"),
        "generated id: {}",
        calls[1].0
    );
    assert_eq!(calls[1].2, &json!({}));
    assert_eq!(
        calls[2].2,
        &json!({"_invalid_arguments": "{\"path\": \"y\""})
    );
}

#[test]
fn finish_reasons_and_odd_content() {
    let cases = [
        (
            json!({"content": "hi"}),
            Some("stop"),
            StopReason::EndTurn,
            "hi",
        ),
        (
            json!({"content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}),
            Some("content_filter"),
            StopReason::Other("content_filter".into()),
            "ab",
        ),
        (
            json!({"content": null, "refusal": "no"}),
            Some("stop"),
            StopReason::EndTurn,
            "no",
        ),
        (
            json!({"content": "", "tool_calls": [{"id": "c", "function":
            {"name": "t", "arguments": {"already": "object"}}}]}),
            Some("stop"),
            StopReason::ToolUse,
            "",
        ),
    ];
    for (message, finish, stop, text) in cases {
        let body = json!({"choices": [{"message": message, "finish_reason": finish}]});
        let response = from_wire(serde_json::from_value(body).unwrap()).unwrap();
        assert_eq!(response.stop_reason, stop);
        assert_eq!(response.message.text(), text);
        assert_eq!(response.usage, Usage::default());
    }
    // Nothing at all (even cut off) is a failed call, never an empty final answer.
    for finish in ["length", "stop"] {
        let body = json!({"choices": [{"message": {"content": null}, "finish_reason": finish}]});
        let e = from_wire(serde_json::from_value(body).unwrap()).unwrap_err();
        assert!(e.contains("no text or tool call"), "{e}");
    }
}

#[test]
fn no_choices_is_an_error() {
    let err = from_wire(serde_json::from_value(json!({"choices": []})).unwrap()).unwrap_err();
    assert!(err.contains("no choices"), "{err}");
}
