//! Self-tests of the mock's streamed formats (no flotilla involved): Anthropic Messages
//! with `"stream": true` and the OpenAI Responses API answer the scripted steps as SSE,
//! record what the client sent, and flag what the real APIs refuse. The real CLIs
//! against the same mock are in `cli_mock`.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::*;

/// `(event name, data)` of each SSE event in `body`.
fn sse_events(body: &str) -> Vec<(String, Value)> {
    body.split("\n\n")
        .filter_map(|block| {
            let mut name = None;
            let mut data = None;
            for line in block.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = Some(n.to_string());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data = serde_json::from_str(d).ok();
                }
            }
            Some((name?, data?))
        })
        .collect()
}

async fn post(url: String, headers: &[(&str, &str)], body: Value) -> (u16, String) {
    let mut req = reqwest::Client::new().post(url).json(&body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.expect("mock answers");
    let status = r.status().as_u16();
    let ctype = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let text = r.text().await.expect("body");
    if body["stream"] == true && status == 200 {
        assert_eq!(ctype, "text/event-stream", "{text}");
    }
    (status, text)
}

fn names(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(n, _)| n.as_str()).collect()
}

const BEARER: (&str, &str) = ("authorization", "Bearer k");

#[tokio::test]
async fn responses_api_streams_text_and_tool_calls() {
    let mock = MockModel::start().await;
    mock.script(
        "[rx]",
        vec![
            Step::tool("exec_command", json!({"cmd": "ls"}))
                .with_text("looking")
                .usage(7, 3),
            Step::tool("apply_patch", json!("*** Begin Patch\n*** End Patch")),
            Step::text("all done"),
        ],
    );
    let url = format!("{}/responses", mock.openai_url());
    let tools = json!([
        {"type": "function", "name": "exec_command",
         "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}}},
        {"type": "custom", "name": "apply_patch", "format": {"type": "grammar"}},
        {"type": "web_search"}]);
    let env = json!({"type": "message", "role": "user",
                     "content": [{"type": "input_text", "text": "<environment_context/>"}]});
    let prompt = json!({"type": "message", "role": "user",
                        "content": [{"type": "input_text", "text": "[rx] go"}]});
    let dev = json!({"type": "message", "role": "developer",
                     "content": [{"type": "input_text", "text": "be brief"}]});
    let mut input = vec![dev, env, prompt];
    let body = json!({"model": "gpt-5.5", "stream": true, "tools": tools, "input": input,
                      "instructions": "sys"});
    let (status, text) = post(url.clone(), &[BEARER], body).await;
    assert_eq!(status, 200, "{text}");
    let ev = sse_events(&text);
    assert_eq!(
        names(&ev),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    assert_eq!(ev[4].1["delta"], "looking");
    let call = &ev[11].1["item"];
    assert_eq!(call["type"], "function_call");
    assert_eq!(call["name"], "exec_command");
    assert_eq!(call["arguments"], json!({"cmd": "ls"}).to_string());
    let usage = &ev[12].1["response"]["usage"];
    assert_eq!(
        (
            usage["input_tokens"].as_u64(),
            usage["output_tokens"].as_u64()
        ),
        (Some(7), Some(3))
    );
    let rec = &mock.requests()[0];
    assert_eq!(rec.format, mock_model::Format::Responses);
    assert_eq!(
        rec.key.as_deref(),
        Some("[rx]"),
        "routed past codex's environment message"
    );
    assert_eq!(
        rec.tool_names(),
        ["apply_patch", "exec_command", "web_search"]
    );
    assert_eq!(rec.system_text(), "sys\nbe brief");
    assert_eq!(
        rec.issued_ids,
        [call["call_id"].as_str().unwrap_or_default()]
    );

    // The client replays the call and its output; the custom tool gets a custom call.
    input.push(call.clone());
    input.push(
        json!({"type": "function_call_output", "call_id": call["call_id"],
                      "output": "Process exited with code 0"}),
    );
    let body = json!({"model": "gpt-5.5", "stream": true, "tools": tools, "input": input});
    let (_, text) = post(url.clone(), &[BEARER], body).await;
    let ev = sse_events(&text);
    assert!(
        names(&ev).contains(&"response.custom_tool_call_input.delta"),
        "{text}"
    );
    let custom = &ev
        .iter()
        .find(|(n, _)| n == "response.output_item.done")
        .expect("item")
        .1["item"];
    assert_eq!(custom["type"], "custom_tool_call");
    assert_eq!(custom["input"], "*** Begin Patch\n*** End Patch");
    let rec = &mock.requests()[1];
    assert_eq!(rec.tool_results()[0].content, "Process exited with code 0");
    assert_eq!(
        rec.tool_call_ids(),
        [call["call_id"].as_str().unwrap_or_default()]
    );

    // Not streamed: the response object as JSON.
    input.push(custom.clone());
    input.push(
        json!({"type": "custom_tool_call_output", "call_id": custom["call_id"],
                      "output": "patched"}),
    );
    let body = json!({"model": "gpt-5.5", "input": input});
    let (_, text) = post(url.clone(), &[BEARER], body).await;
    let resp: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(resp["output"][0]["content"][0]["text"], "all done");
    mock.assert_no_protocol_problems();
}

#[tokio::test]
async fn responses_api_refuses_what_openai_refuses() {
    let mock = MockModel::start().await;
    let url = format!("{}/responses", mock.openai_url());
    let body = json!({"model": "gpt-5.5", "stream": true, "input": [
        {"type": "message", "role": "user", "content": "hi"},
        {"type": "function_call", "call_id": "c1", "name": "x", "arguments": "{"},
        {"type": "function_call_output", "call_id": "c9", "output": "?"}]});
    let (status, text) = post(url.clone(), &[], body).await;
    assert_eq!(status, 400, "{text}");
    let p = mock.requests()[0].problems.join("\n");
    for want in [
        "Bearer",
        "JSON string",
        "unknown call_id \"c9\"",
        "no tool output found",
    ] {
        assert!(p.contains(want), "{want} missing from {p}");
    }
    // Errors, a reply cut off by the token limit, and a stream that stops after its first event.
    mock.script(
        "[e]",
        vec![
            Step::fail(500),
            Step::rate_limit(3),
            Step::cut_off("trunc"),
            Step::stall(),
        ],
    );
    let ok = json!({"model": "m", "stream": true, "input": "[e] hi"});
    let (status, text) = post(url.clone(), &[BEARER], ok.clone()).await;
    assert_eq!(status, 500);
    assert!(text.contains("mock provider failure"), "{text}");
    let (status, _) = post(url.clone(), &[BEARER], ok.clone()).await;
    assert_eq!(status, 429);
    let (_, text) = post(url.clone(), &[BEARER], ok.clone()).await;
    let ev = sse_events(&text);
    let (last, data) = ev.last().expect("events");
    assert_eq!(last, "response.incomplete", "{text}");
    assert_eq!(
        data["response"]["incomplete_details"]["reason"],
        "max_output_tokens"
    );
    let r = reqwest::Client::new()
        .post(url)
        .header(BEARER.0, BEARER.1)
        .json(&ok)
        .send()
        .await
        .expect("headers");
    let mut r = r;
    let first = tokio::time::timeout(Duration::from_secs(5), r.chunk())
        .await
        .expect("first event in time")
        .expect("chunk")
        .expect("some bytes");
    let first = String::from_utf8_lossy(&first).to_string();
    assert_eq!(names(&sse_events(&first)), ["response.created"], "{first}");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), r.chunk())
            .await
            .is_err(),
        "a stalled stream sends nothing more"
    );
}

#[tokio::test]
async fn anthropic_streams_when_asked_and_takes_system_turns() {
    let mock = MockModel::start().await;
    mock.script(
        "[ax]",
        vec![
            Step::tool("Bash", json!({"command": "ls"}))
                .with_text("hm")
                .usage(11, 5),
            Step::cut_off("trunc").delay(Duration::from_millis(250)),
        ],
    );
    let url = format!("{}/v1/messages?beta=true", mock.url());
    let hdr = [("x-api-key", "k"), ("anthropic-version", "2023-06-01")];
    let tools = json!([{"name": "Bash", "input_schema": {"type": "object"}}]);
    let mut messages = vec![
        json!({"role": "user", "content": [
            {"type": "text", "text": "<system-reminder>x</system-reminder>"},
            {"type": "text", "text": "[ax] go"}]}),
        json!({"role": "system", "content": [{"type": "text", "text": "# Environment"}]}),
    ];
    let body = json!({"model": "claude-opus-5-5", "max_tokens": 100, "stream": true,
                      "tools": tools, "messages": messages});
    let (status, text) = post(url.clone(), &hdr, body).await;
    assert_eq!(status, 200, "{text}");
    let ev = sse_events(&text);
    assert_eq!(
        names(&ev),
        [
            "message_start",
            "ping",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
    );
    assert_eq!(ev[0].1["message"]["usage"]["input_tokens"], 11);
    assert_eq!(
        ev[3].1["delta"],
        json!({"type": "text_delta", "text": "hm"})
    );
    assert_eq!(ev[5].1["content_block"]["name"], "Bash");
    assert_eq!(
        ev[6].1["delta"]["partial_json"],
        json!({"command": "ls"}).to_string()
    );
    assert_eq!(ev[8].1["delta"]["stop_reason"], "tool_use");
    assert_eq!(ev[8].1["usage"]["output_tokens"], 5);
    let id = ev[5].1["content_block"]["id"].clone();
    messages.push(json!({"role": "assistant", "content": [
        {"type": "text", "text": "hm"},
        {"type": "tool_use", "id": id, "name": "Bash", "input": {"command": "ls"}}]}));
    messages.push(json!({"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": id, "content": "a b"}]}));
    let body = json!({"model": "claude-opus-5-5", "max_tokens": 100, "stream": true,
                      "tools": tools, "messages": messages});
    let (_, text) = post(url, &hdr, body).await;
    let ev = sse_events(&text);
    assert_eq!(
        ev.last().map(|(n, _)| n.as_str()),
        Some("message_stop"),
        "{text}"
    );
    assert_eq!(ev[ev.len() - 2].1["delta"]["stop_reason"], "max_tokens");
    let reqs = mock.requests_for("[ax]");
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[1].tool_results()[0].content, "a b");
    mock.assert_no_protocol_problems();
}
