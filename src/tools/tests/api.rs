//! The public surface: specs, argument errors, unknown tools, labels, cancellation.

use serde_json::json;

use super::Fixture;
use crate::sandbox::{Sandbox, SandboxMode};
use crate::tools::{Tool, describe_call, tool_specs};

#[test]
fn specs_follow_all_tools_order() {
    let specs = tool_specs(&[Tool::RunCommand, Tool::ReadFile]);
    let got: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(got, ["read_file", "run_command"]);
    assert_eq!(tool_specs(&Tool::ALL).len(), 7);
    let read_only: Vec<Tool> = Tool::ALL.into_iter().filter(|t| t.is_read_only()).collect();
    assert_eq!(
        Tool::join(&read_only),
        "read_file, list_files, search_files, ask_orchestrator"
    );
    assert!(tool_specs(&[]).is_empty());
}

#[test]
fn names_parse_and_unknown_names_list_the_tools() {
    for tool in Tool::ALL {
        assert_eq!(tool.name().parse::<Tool>(), Ok(tool));
        assert_eq!(serde_json::to_value(tool).unwrap(), tool.name());
        assert_eq!(
            serde_json::from_value::<Tool>(json!(tool.name())).unwrap(),
            tool
        );
    }
    let e = serde_json::from_value::<Vec<Tool>>(json!(["read_file", "teleport"])).unwrap_err();
    assert_eq!(
        e.to_string(),
        "unknown tool `teleport` in `tools`; the sub-agent tools are: read_file, write_file, edit_file, list_files, search_files, run_command, ask_orchestrator"
    );
    assert!("Read_File".parse::<Tool>().is_err());
}

#[test]
fn what_writes_depends_on_the_tool_and_the_sandbox() {
    let mode = |mode| Sandbox {
        mode,
        network: false,
    };
    for tool in Tool::ALL {
        let always = matches!(tool, Tool::WriteFile | Tool::EditFile);
        assert_eq!(tool.writes(mode(SandboxMode::ReadOnly)), always, "{tool}");
        let writes = always || tool == Tool::RunCommand;
        assert_eq!(
            tool.writes(mode(SandboxMode::WorkspaceWrite)),
            writes,
            "{tool}"
        );
        assert_eq!(tool.writes(mode(SandboxMode::Off)), writes, "{tool}");
        assert_eq!(tool.is_read_only(), !writes, "{tool}");
    }
}

/// Executable documentation: the argument names, required lists and types of every
/// tool's schema, pinned.
#[test]
fn schemas_are_clean_and_pinned() {
    let specs = tool_specs(&Tool::ALL);
    let expected = [
        (
            "read_file",
            vec!["path"],
            vec![
                ("path", "string"),
                ("offset", "integer"),
                ("limit", "integer"),
            ],
        ),
        (
            "write_file",
            vec!["path", "content"],
            vec![("path", "string"), ("content", "string")],
        ),
        (
            "edit_file",
            vec!["path", "old_text", "new_text"],
            vec![
                ("path", "string"),
                ("old_text", "string"),
                ("new_text", "string"),
            ],
        ),
        (
            "list_files",
            vec![],
            vec![("path", "string"), ("pattern", "string")],
        ),
        (
            "search_files",
            vec!["pattern"],
            vec![
                ("pattern", "string"),
                ("path", "string"),
                ("glob", "string"),
            ],
        ),
        (
            "run_command",
            vec!["command"],
            vec![("command", "string"), ("timeout_s", "integer")],
        ),
        (
            "ask_orchestrator",
            vec!["question"],
            vec![("question", "string"), ("options", "array")],
        ),
    ];
    assert_eq!(specs.len(), expected.len());
    for (spec, (name, required, props)) in specs.iter().zip(expected) {
        assert_eq!(spec.name, name);
        assert!(!spec.description.is_empty());
        let s = &spec.input_schema;
        assert!(
            s.get("$schema").is_none() && s.get("title").is_none(),
            "{s}"
        );
        assert_eq!(s["type"], "object", "{name}");
        assert_eq!(s["additionalProperties"], false, "{name}");
        let req: Vec<&str> = s["required"]
            .as_array()
            .map(|r| r.iter().map(|v| v.as_str().unwrap()).collect())
            .unwrap_or_default();
        assert_eq!(req, required, "{name}");
        let p = s["properties"].as_object().unwrap();
        assert_eq!(p.len(), props.len(), "{name}: {s}");
        for (prop, ty) in props {
            assert_eq!(p[prop]["type"], ty, "{name}.{prop}: {s}");
            let desc = p[prop]["description"].as_str().unwrap_or("");
            assert!(!desc.is_empty(), "{name}.{prop} has no description");
            assert!(!desc.contains('\n'), "{name}.{prop}: {desc:?}");
            assert!(p[prop].get("default").is_none(), "{name}.{prop}: {s}");
            assert!(p[prop].get("format").is_none(), "{name}.{prop}: {s}");
        }
    }
}

#[tokio::test]
async fn unknown_tool_and_bad_input_are_actionable_errors() {
    let f = Fixture::new();
    let out = f.err("delete_everything", json!({})).await;
    assert!(
        out.content.contains("unknown tool `delete_everything`"),
        "{}",
        out.content
    );
    assert!(out.content.contains("read_file"), "{}", out.content);

    let out = f.err("read_file", json!({"file": "x"})).await;
    assert!(
        out.content.contains("invalid arguments for read_file"),
        "{}",
        out.content
    );
    assert!(
        out.content.contains("path (string, required)"),
        "{}",
        out.content
    );

    let out = f.err("run_command", json!({"command": 5})).await;
    assert!(
        out.content.contains("command (string, required)"),
        "{}",
        out.content
    );

    let out = f.err("write_file", json!("not an object")).await;
    assert!(
        out.content.contains("content (string, required)"),
        "{}",
        out.content
    );

    // `null` input is an empty object: list_files needs no arguments.
    f.write("a.txt", "a");
    let out = f.ok("list_files", serde_json::Value::Null).await;
    assert_eq!(out.content, "a.txt");
}

#[tokio::test]
async fn cancelled_context_returns_at_once() {
    let f = Fixture::new();
    f.ctx.cancel.cancel();
    let out = f.err("read_file", json!({"path": "x"})).await;
    assert!(out.content.contains("cancelled"), "{}", out.content);
}

#[test]
fn describe_call_is_one_short_line() {
    assert_eq!(
        describe_call("run_command", &json!({"command": "cargo test"})),
        "run_command: cargo test"
    );
    assert_eq!(
        describe_call("read_file", &json!({"path": "src/main.rs"})),
        "read_file: src/main.rs"
    );
    assert_eq!(
        describe_call("search_files", &json!({"pattern": "fn main"})),
        "search_files: fn main"
    );
    assert_eq!(describe_call("list_files", &json!({})), "list_files");
    let long = describe_call(
        "run_command",
        &json!({"command": format!("echo one\n  echo two\t{}", "x".repeat(200))}),
    );
    assert!(
        long.starts_with("run_command: echo one echo two x"),
        "{long}"
    );
    assert_eq!(long.chars().count(), 80);
    assert!(!long.contains('\n'));
    let weird = describe_call(&"n".repeat(100), &json!(null));
    assert!(weird.chars().count() <= 80);
    // A CLI session's tools: the name and the first telling field.
    assert_eq!(
        describe_call(
            "Bash",
            &json!({"command": "cargo test", "description": "run"})
        ),
        "Bash: cargo test"
    );
    assert_eq!(
        describe_call("Write", &json!({"file_path": "/w/a.rs", "content": "x"})),
        "Write: /w/a.rs"
    );
    assert_eq!(
        describe_call("shell", &json!({"command": ["bash", "-lc", "ls"]})),
        "shell: bash -lc ls"
    );
    assert_eq!(
        describe_call("TodoWrite", &json!({"todos": []})),
        "TodoWrite"
    );
}
