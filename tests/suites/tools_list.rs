//! The MCP surface: `tools/list` pinned as a snapshot (executable documentation), the
//! fixed argument names checked independently of it, and the server's instructions.

use crate::common::*;
use serde_json::{Value, json};

/// The tools DESIGN.md fixes (the server may offer more).
const TOOLS: [&str; 11] = [
    "command_agent",
    "create_agent",
    "create_agents",
    "delete_agent",
    "delete_all_agents",
    "get_agent_output",
    "get_agent_status",
    "list_agents",
    "pause_agents",
    "resume_agents",
    "wait_for_agents",
];

fn args(tools: &[rmcp::model::Tool], name: &str) -> Vec<String> {
    let tool = tools.iter().find(|t| t.name == name).unwrap();
    let mut props: Vec<String> = tool
        .input_schema
        .get("properties")
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default();
    props.sort();
    props
}

fn required(tools: &[rmcp::model::Tool], name: &str) -> Vec<String> {
    let tool = tools.iter().find(|t| t.name == name).unwrap();
    let mut req: Vec<String> = tool
        .input_schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| {
            r.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    req.sort();
    req
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_and_their_fixed_arguments() {
    let fl = Flotilla::start().await;
    let tools = fl.tools().await;
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    for tool in TOOLS {
        assert!(names.contains(&tool), "missing tool {tool}: {names:?}");
    }
    for t in &tools {
        let description = t.description.as_deref().unwrap_or_default();
        assert!(description.len() >= 20, "{}: description too thin", t.name);
        assert!(
            t.output_schema.is_some(),
            "{}: results are JSON, declare an outputSchema",
            t.name
        );
    }
    let expect = [
        (
            "create_agent",
            &[
                "base",
                "depends_on",
                "isolation",
                "max_cost_usd",
                "max_steps",
                "max_tokens",
                "model",
                "name",
                "network",
                "output_schema",
                "retries",
                "role",
                "sandbox",
                "system_prompt",
                "task",
                "tools",
                "workdir",
            ][..],
        ),
        ("create_agents", &["agents"]),
        (
            "command_agent",
            &["agent", "interrupt", "output_schema", "task"],
        ),
        ("get_agent_status", &["agent"]),
        (
            "get_agent_output",
            &["agent", "command", "max_chars", "offset"],
        ),
        ("delete_agent", &["agent"]),
        ("list_agents", &["after", "limit", "status"]),
        ("delete_all_agents", &[]),
        ("pause_agents", &["agents"]),
        ("resume_agents", &["agents"]),
        // DESIGN.md's arguments plus one optional extension: output_max_chars.
        (
            "wait_for_agents",
            &["agents", "output_max_chars", "timeout_s", "until"],
        ),
    ];
    for (tool, want) in expect {
        assert_eq!(args(&tools, tool), want, "{tool} arguments");
    }
    assert_eq!(required(&tools, "create_agent"), ["name"]);
    assert_eq!(required(&tools, "command_agent"), ["agent", "task"]);
    assert_eq!(required(&tools, "get_agent_output"), ["agent"]);
    assert!(required(&tools, "wait_for_agents").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_list_snapshot() {
    let fl = Flotilla::start().await;
    let tools: Vec<Value> = fl
        .tools()
        .await
        .into_iter()
        .map(|t| {
            json!({
                "name": t.name,
                "description": t.description,
                "inputSchema": t.input_schema,
                "outputSchema": t.output_schema,
            })
        })
        .collect();
    insta::assert_json_snapshot!("tools_list", tools);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instructions_teach_the_pattern() {
    let fl = Flotilla::start().await;
    let info = fl.client.peer_info().expect("server info");
    let instructions = info.instructions.clone().unwrap_or_default();
    for tool in [
        "create_agent",
        "wait_for_agents",
        "get_agent_output",
        "delete_agent",
    ] {
        assert!(
            instructions.contains(tool),
            "instructions do not mention {tool}: {instructions}"
        );
    }
}

/// Every `type` array and `format` in a schema, with where it is.
fn portability_issues(v: &Value, at: &str, inputs: bool, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(f)) = m.get("format")
                && !["date-time", "uri", "email", "uuid"].contains(&f.as_str())
            {
                out.push(format!("{at}: format {f}"));
            }
            if inputs && let Some(Value::Array(types)) = m.get("type") {
                out.push(format!("{at}: nullable type {types:?}"));
            }
            if inputs && m.get("default").is_some_and(Value::is_null) {
                out.push(format!("{at}: default null"));
            }
            for (k, child) in m {
                portability_issues(child, &format!("{at}/{k}"), inputs, out);
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                portability_issues(child, &format!("{at}/{i}"), inputs, out);
            }
        }
        _ => {}
    }
}

/// The schemas are portable (no nullable type arrays or `default: null` in inputs, no
/// Rust `format`s anywhere), `create_agents` does not repeat `create_agent`'s schema, and
/// everything the orchestrator's model carries (name, description, input schema of every
/// tool) stays under 8,000 bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemas_are_lean_and_portable() {
    let fl = Flotilla::start().await;
    let tools = fl.tools().await;
    let mut issues = Vec::new();
    let mut model_visible = 0;
    for t in &tools {
        let input = Value::Object((*t.input_schema).clone());
        portability_issues(&input, &format!("{}/input", t.name), true, &mut issues);
        if let Some(output) = &t.output_schema {
            let output = Value::Object((**output).clone());
            portability_issues(&output, &format!("{}/output", t.name), false, &mut issues);
        }
        let visible = json!({"name": t.name, "description": t.description, "inputSchema": input});
        model_visible += serde_json::to_string(&visible).unwrap().len();
    }
    assert!(issues.is_empty(), "portability issues: {issues:#?}");
    let plan = tools.iter().find(|t| t.name == "create_agents").unwrap();
    let single = tools.iter().find(|t| t.name == "create_agent").unwrap();
    let plan_bytes = serde_json::to_string(&*plan.input_schema).unwrap().len();
    let single_bytes = serde_json::to_string(&*single.input_schema).unwrap().len();
    assert!(
        plan_bytes * 3 < single_bytes,
        "create_agents' schema ({plan_bytes} B) repeats create_agent's ({single_bytes} B)"
    );
    eprintln!(
        "model-visible tool definitions: {model_visible} bytes over {} tools",
        tools.len()
    );
    assert!(
        model_visible < 8_000,
        "the tool definitions the orchestrator carries grew to {model_visible} bytes (limit 8,000)"
    );
}
