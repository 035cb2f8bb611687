//! The tool definitions the orchestrator's model carries on every turn: each tool's
//! name, description and input schema as `tools/list` gives them (the output schemas
//! are for the client, not the model), in bytes of compact JSON, per tool and in total.

use serde_json::{Value, json};

use crate::server::Server;
use crate::stats::table;

/// The goal for all tools together (issue 17).
const GOAL_BYTES: usize = 8_000;

pub async fn run(server: &Server) -> Value {
    let mut tools: Vec<(String, usize, usize)> = server
        .tools()
        .await
        .into_iter()
        .map(|t| {
            let visible = json!({
                "name": t.name,
                "description": t.description,
                "inputSchema": Value::Object((*t.input_schema).clone()),
            });
            let bytes = visible.to_string().len();
            let schema = Value::Object((*t.input_schema).clone()).to_string().len();
            (t.name.to_string(), bytes, schema)
        })
        .collect();
    tools.sort_by_key(|t| std::cmp::Reverse(t.1));
    let total: usize = tools.iter().map(|t| t.1).sum();
    let mut rows: Vec<Vec<String>> = tools
        .iter()
        .map(|(name, bytes, schema)| vec![name.clone(), bytes.to_string(), schema.to_string()])
        .collect();
    rows.push(vec![
        format!("total ({} tools; goal ≤ {GOAL_BYTES})", tools.len()),
        total.to_string(),
        String::new(),
    ]);
    table(
        "Tool definitions the orchestrator carries (name + description + input schema, compact JSON)",
        &["tool", "bytes", "of which input schema"],
        &rows,
    );
    json!({
        "tools": tools.len(),
        "total_bytes": total,
        "bytes_by_tool": tools.iter().map(|(n, b, _)| (n.clone(), json!(b))).collect::<serde_json::Map<_, _>>(),
    })
}
