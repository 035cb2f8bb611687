//! Typed arguments of the MCP tools. The `///` comments are the descriptions the
//! orchestrator reads in `tools/list`, so they say what each argument does and its
//! limits. [`check_arguments`] checks a call's arguments against a tool's schema first,
//! so mistakes are reported in plain words (argument, JSON type, range), not serde's.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use crate::registry::CreateSpec;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAgentParams {
    /// Unique name: 1-64 of letters, digits, `_`, `-`.
    pub name: String,
    /// First instruction; the agent starts at once. Brief fully: goal, context, what to report.
    #[serde(default)]
    pub task: Option<String>,
    /// Extra instructions for its system prompt.
    #[serde(default)]
    pub system_prompt: Option<String>,
    /// scout, planner, builder, reviewer or a custom role: its instructions and defaults.
    #[serde(default)]
    pub role: Option<String>,
    /// `provider:model` or an alias (e.g. `sonnet`); `claude-code[:model]` or
    /// `codex[:model]` for a CLI session. Default: the server's.
    #[serde(default)]
    pub model: Option<String>,
    /// Tools it may use. Default: the role's, else all.
    #[serde(default)]
    pub tools: Option<Vec<crate::tools::Tool>>,
    /// Its directory, created if missing, under the server's, temp or a configured root.
    #[serde(default)]
    pub workdir: Option<String>,
    /// Model calls per command. Default: the role's, else 50.
    #[serde(default)]
    #[schemars(range(min = 1, max = 1000))]
    pub max_steps: Option<u32>,
    /// Spend cap in USD over all its commands.
    #[serde(default)]
    pub max_cost_usd: Option<f64>,
    /// Token cap (input + output) over all its commands.
    #[serde(default)]
    pub max_tokens: Option<u64>,
    /// Agents to finish first; its `task` then starts with their answers.
    #[serde(default)]
    pub depends_on: Option<Vec<String>>,
    /// Restarts of a failed command, 0-5. Default 0.
    #[serde(default)]
    pub retries: Option<u32>,
    /// JSON Schema its answer must satisfy; returned as `output_json`.
    #[serde(default)]
    pub output_schema: Option<serde_json::Value>,
    /// `worktree`: its own git worktree on branch `flotilla/<name>`.
    #[serde(default)]
    pub isolation: Option<crate::worktree::Isolation>,
    /// With isolation: a git ref or isolated agent to branch from. Default HEAD.
    #[serde(default)]
    pub base: Option<String>,
    /// What run_command may write. Default: the role's, config's, else workspace-write.
    #[serde(default)]
    pub sandbox: Option<crate::sandbox::SandboxMode>,
    /// Network for its commands. Default: the role's, config's, else false.
    #[serde(default)]
    pub network: Option<bool>,
    /// Between nodes only (not in the schema): the git remote the placing node
    /// resolved for a worktree agent.
    #[serde(default, rename = "_remote")]
    #[schemars(skip)]
    pub remote: Option<crate::worktree::RemoteSpec>,
}

/// A create_agent call's arguments, as the registry takes them: the one place they
/// become a [`CreateSpec`].
impl From<CreateAgentParams> for CreateSpec {
    fn from(p: CreateAgentParams) -> Self {
        Self {
            name: p.name,
            task: p.task,
            system_prompt: p.system_prompt,
            role: p.role,
            model: p.model,
            tools: p.tools,
            workdir: p.workdir,
            max_steps: p.max_steps,
            max_cost_usd: p.max_cost_usd,
            max_tokens: p.max_tokens,
            depends_on: p.depends_on.unwrap_or_default(),
            retries: p.retries,
            output_schema: p.output_schema,
            isolation: p.isolation,
            base: p.base,
            sandbox: p.sandbox,
            network: p.network,
            remote: p.remote,
        }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAgentsParams {
    /// The agents; `depends_on` may name agents of this call.
    #[serde(deserialize_with = "plan_agents")]
    pub agents: Vec<CreateAgentParams>,
}

/// The agents of a plan, each refused as the registry refuses one
/// (`agents[1] (`b`): …; nothing was created`) when a value does not parse.
fn plan_agents<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<CreateAgentParams>, D::Error> {
    Vec::<Value>::deserialize(deserializer)?
        .into_iter()
        .enumerate()
        .map(|(i, agent)| {
            let name = agent.get("name").and_then(Value::as_str).unwrap_or("");
            let name = name.to_string();
            serde_json::from_value(agent).map_err(|e| {
                serde::de::Error::custom(format!(
                    "agents[{i}] (`{name}`): {e}; nothing was created"
                ))
            })
        })
        .collect()
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandAgentParams {
    /// The agent's name or id.
    pub agent: String,
    /// The next instruction; for a needs_input agent, the answer to its question.
    pub task: String,
    /// Cancel the current command first. Default false: queue.
    #[serde(default)]
    pub interrupt: Option<bool>,
    /// JSON Schema its answer must satisfy.
    #[serde(default)]
    pub output_schema: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentParams {
    /// The agent's name or id.
    pub agent: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetAgentOutputParams {
    /// The agent's name or id.
    pub agent: String,
    /// 1-based command index. Default: the latest.
    #[serde(default)]
    pub command: Option<u32>,
    /// Start character (a previous `next_offset`). Default 0.
    #[serde(default)]
    pub offset: Option<u64>,
    /// Most characters. Default 4000.
    #[serde(default)]
    #[schemars(range(min = 1, max = 100_000))]
    pub max_chars: Option<u64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentsParams {
    /// Names or ids. Default: all.
    #[serde(default)]
    pub agents: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListAgentsParams {
    /// Only agents with this status.
    #[serde(default)]
    #[schemars(extend("enum" = ["running", "queued", "waiting", "needs_input", "paused", "idle", "failed", "cancelled"]))]
    pub status: Option<String>,
    /// Most rows, 1-1000. Default 100.
    #[serde(default)]
    pub limit: Option<u32>,
    /// The previous page's `next_after`.
    #[serde(default)]
    pub after: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WaitForAgentsParams {
    /// Names or ids. Default: all with work pending.
    #[serde(default)]
    pub agents: Option<Vec<String>>,
    /// Until all (default) or any have settled.
    #[serde(default)]
    #[schemars(extend("enum" = ["all", "any"]))]
    pub until: Option<String>,
    /// Most seconds to wait. Default 50.
    #[serde(default)]
    #[schemars(range(min = 0, max = 600))]
    pub timeout_s: Option<f64>,
    /// Characters of each settled agent's latest answer to return. Default 0.
    #[serde(default)]
    #[schemars(range(min = 0, max = 100_000))]
    pub output_max_chars: Option<u64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetAgentEventsParams {
    /// The agent's name or id.
    pub agent: String,
    /// Events after this `seq` (a previous `next_after`). Default 0.
    #[serde(default)]
    pub after: Option<u64>,
    /// Most events. Default 50.
    #[serde(default)]
    #[schemars(range(min = 1, max = 500))]
    pub limit: Option<u32>,
    /// Only these kinds.
    #[serde(default)]
    #[schemars(extend("items" = {"type": "string", "enum": crate::store::event::KINDS}))]
    pub kinds: Option<Vec<String>>,
}

/// No arguments (`delete_all_agents`): anything given is refused.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

/// Check a tool call's `arguments` against the tool's input schema before they are
/// deserialized, so a mistake is reported in plain words: which argument, what JSON
/// type and range it takes, what it got (`max_steps must be an integer from 1 to 1000,
/// got the string "5"`), and unknown arguments by name. What the schema does not
/// describe is left to the typed parameters.
pub fn check_arguments(
    tool: &str,
    schema: &serde_json::Map<String, Value>,
    arguments: Option<&serde_json::Map<String, Value>>,
) -> Result<(), String> {
    let empty = serde_json::Map::new();
    let props = schema
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let arguments = arguments.unwrap_or(&empty);
    for key in arguments.keys() {
        if !props.contains_key(key) {
            return Err(if props.is_empty() {
                format!("unknown argument `{key}`: {tool} takes no arguments")
            } else {
                format!(
                    "unknown argument `{key}` for {tool}; its arguments are: {}",
                    props.keys().cloned().collect::<Vec<_>>().join(", ")
                )
            });
        }
    }
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for name in &required {
        if !arguments.contains_key(*name) {
            let wants = props.get(*name).and_then(|p| expected(p, false));
            return Err(match wants {
                Some(w) => format!("{tool} needs `{name}` ({w})"),
                None => format!("{tool} needs `{name}`"),
            });
        }
    }
    for (name, value) in arguments {
        let Some(prop) = props.get(name) else {
            continue;
        };
        if value.is_null() && !required.contains(&name.as_str()) {
            continue;
        }
        if let Some(problem) = mismatch(prop, value) {
            let wants = expected(prop, false).unwrap_or_else(|| "another value".into());
            return Err(format!("{name} must be {wants}, got {problem}"));
        }
    }
    Ok(())
}

/// The schema's JSON type other than `null`.
fn json_type(prop: &Value) -> Option<&str> {
    match prop.get("type")? {
        Value::String(t) => Some(t),
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).find(|t| *t != "null"),
        _ => None,
    }
}

/// Bounds of an integer or number property (`format` bounds included).
fn bounds(prop: &Value) -> (Option<f64>, Option<f64>) {
    let format_max = match prop.get("format").and_then(Value::as_str) {
        Some("uint8") => Some(f64::from(u8::MAX)),
        Some("uint16") => Some(f64::from(u16::MAX)),
        Some("uint32") => Some(f64::from(u32::MAX)),
        Some("uint64" | "uint") => Some(u64::MAX as f64),
        _ => None,
    };
    let min = prop.get("minimum").and_then(Value::as_f64);
    let max = prop.get("maximum").and_then(Value::as_f64).or(format_max);
    (min, max)
}

/// `an integer from 1 to 1000`, `a string`, … (plural: `integers`, for array items).
fn expected(prop: &Value, plural: bool) -> Option<String> {
    let (a, s) = if plural { ("", "s") } else { ("a ", "") };
    let range = |kind: &str, an: &str| {
        let (min, max) = bounds(prop);
        let big = |v: f64| v >= f64::from(u32::MAX);
        match (min, max) {
            (Some(min), Some(max)) if !big(max) => format!("{an}{kind}{s} from {min} to {max}"),
            (Some(0.0), _) => format!("{a}non-negative {kind}{s}"),
            (Some(min), _) => format!("{an}{kind}{s} of at least {min}"),
            (None, Some(max)) if !big(max) => format!("{an}{kind}{s} of at most {max}"),
            _ => format!("{an}{kind}{s}"),
        }
    };
    Some(match json_type(prop)? {
        "integer" => range("integer", if plural { "" } else { "an " }),
        "number" => range("number", a),
        "string" => format!("{a}string{s}"),
        "boolean" if plural => "true or false values".into(),
        "boolean" => "true or false".into(),
        "object" => format!("{a}JSON object{s}"),
        "array" => match prop.get("items").and_then(|i| expected(i, true)) {
            Some(items) => format!("{a}list{s} of {items}"),
            None => format!("{a}list{s}"),
        },
        other => format!("{a}{other}"),
    })
}

/// What is wrong with `value` for `prop`, described (`the string "5"`), or `None`.
fn mismatch(prop: &Value, value: &Value) -> Option<String> {
    let ty = json_type(prop)?;
    let fits = match ty {
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        _ => true,
    };
    if !fits {
        return Some(describe(value));
    }
    if matches!(ty, "integer" | "number") {
        let (min, max) = bounds(prop);
        let v = value.as_f64()?;
        if min.is_some_and(|m| v < m) || max.is_some_and(|m| v > m) {
            return Some(value.to_string());
        }
    }
    if let (Some(items), Some(values)) = (prop.get("items"), value.as_array()) {
        for item in values {
            if let Some(problem) = mismatch(items, item) {
                return Some(format!("a list containing {problem}"));
            }
        }
    }
    None
}

/// A JSON value in words: `the string "5"`, `the number 5.5`, `null`, `a list`, …
fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("{b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => {
            let shown: String = s.chars().take(40).collect();
            let more = if shown.len() < s.len() { "…" } else { "" };
            format!("the string {}{more}", Value::String(shown))
        }
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "a JSON object".into(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema<T: JsonSchema>() -> serde_json::Map<String, Value> {
        schemars::schema_for!(T)
            .to_value()
            .as_object()
            .unwrap()
            .clone()
    }

    fn check<T: JsonSchema>(args: Value) -> Result<(), String> {
        check_arguments("tool", &schema::<T>(), args.as_object())
    }

    #[test]
    fn type_errors_name_the_argument_and_the_json_type() {
        let e = check::<CreateAgentParams>(json!({"name": "a", "max_steps": "5"})).unwrap_err();
        assert_eq!(
            e,
            "max_steps must be an integer from 1 to 1000, got the string \"5\""
        );
        let e = check::<CreateAgentParams>(json!({"name": "a", "max_steps": 0})).unwrap_err();
        assert_eq!(e, "max_steps must be an integer from 1 to 1000, got 0");
        let e = check::<CreateAgentParams>(json!({"name": 5})).unwrap_err();
        assert_eq!(e, "name must be a string, got the number 5");
        let e = check::<CreateAgentParams>(json!({"name": "a", "tools": "read_file"})).unwrap_err();
        assert_eq!(
            e,
            "tools must be a list of strings, got the string \"read_file\""
        );
        let e = check::<CreateAgentParams>(json!({"name": "a", "tools": [1]})).unwrap_err();
        assert_eq!(
            e,
            "tools must be a list of strings, got a list containing the number 1"
        );
        let e = check::<CommandAgentParams>(json!({"agent": "a", "task": "t", "interrupt": "yes"}))
            .unwrap_err();
        assert_eq!(e, "interrupt must be true or false, got the string \"yes\"");
        let e = check::<GetAgentOutputParams>(json!({"agent": "a", "offset": -1})).unwrap_err();
        assert_eq!(e, "offset must be a non-negative integer, got -1");
        let e = check::<WaitForAgentsParams>(json!({"timeout_s": "x"})).unwrap_err();
        assert!(e.starts_with("timeout_s must be a number"), "{e}");
        for bad in [
            json!({"name": "a", "max_steps": 5.5}),
            json!({"name": null}),
        ] {
            let e = check::<CreateAgentParams>(bad).unwrap_err();
            assert!(!e.contains("u32") && !e.contains("f64"), "{e}");
        }
    }

    /// Values the schema lists but serde would refuse in its own words keep the
    /// registry's messages, for one agent and for an agent of a plan.
    #[test]
    fn bad_choices_are_refused_in_plain_words() {
        let e = serde_json::from_value::<CreateAgentParams>(
            json!({"name": "t", "tools": ["read_file", "teleport"]}),
        )
        .unwrap_err();
        assert!(
            e.to_string().starts_with(
                "unknown tool `teleport` in `tools`; the sub-agent tools are: read_file,"
            ),
            "{e}"
        );
        let e = serde_json::from_value::<CreateAgentParams>(
            json!({"name": "x", "isolation": "branch"}),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "isolation must be \"worktree\" (a git worktree of its own), or left out; got \"branch\""
        );
        let e = serde_json::from_value::<CreateAgentsParams>(
            json!({"agents": [{"name": "a"}, {"name": "b", "sandbox": "strict"}]}),
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("agents[1] (`b`): sandbox must be \"workspace-write\""),
            "{e}"
        );
        assert!(
            e.to_string()
                .ends_with("got \"strict\"; nothing was created"),
            "{e}"
        );
        let ok = serde_json::from_value::<CreateAgentParams>(
            json!({"name": "a", "tools": ["run_command"], "sandbox": "read-only", "isolation": "worktree"}),
        )
        .unwrap();
        assert_eq!(ok.tools, Some(vec![crate::tools::Tool::RunCommand]));
        assert_eq!(ok.sandbox, Some(crate::sandbox::SandboxMode::ReadOnly));
        assert_eq!(ok.isolation, Some(crate::worktree::Isolation::Worktree));
    }

    #[test]
    fn unknown_and_missing_arguments_are_named() {
        let e = check::<NoParams>(json!({"agent": "x"})).unwrap_err();
        assert_eq!(e, "unknown argument `agent`: tool takes no arguments");
        let e = check::<CreateAgentParams>(json!({"name": "a", "bogus": 1})).unwrap_err();
        assert!(
            e.starts_with("unknown argument `bogus` for tool; its arguments are: "),
            "{e}"
        );
        let e = check::<CreateAgentParams>(json!({})).unwrap_err();
        assert_eq!(e, "tool needs `name` (a string)");
        assert!(check::<NoParams>(json!({})).is_ok());
        assert!(check::<CreateAgentParams>(json!({"name": "a", "model": null})).is_ok());
    }
}
