//! The tools' JSON Schemas as the orchestrator's client reads them: lean and portable.
//!
//! schemars describes an optional field as a nullable type array (`["integer", "null"]`)
//! with `"default": null`, and Rust integer and float widths as `format`s (`uint32`,
//! `double`) that are not JSON Schema formats: clients warn about them (Claude Code's
//! "unknown format … ignored", the MCP Inspector's `--strict` portability warnings), and
//! every byte is carried in the orchestrator's context. [`lean`] rewrites a schema in
//! place: an optional field is typed plainly (its absence from `required` already says it
//! is optional), `"default": null`, `nullable` and non-standard formats go, a `null`
//! alternative of an `anyOf` goes, and descriptions lose the line breaks of doc comments.
//! Property names are never touched: only schema keywords are.

use serde_json::{Map, Value};

/// The `format` values JSON Schema defines; any other is dropped.
const STANDARD_FORMATS: [&str; 17] = [
    "date-time",
    "date",
    "time",
    "duration",
    "email",
    "idn-email",
    "hostname",
    "idn-hostname",
    "ipv4",
    "ipv6",
    "uri",
    "uri-reference",
    "iri",
    "iri-reference",
    "uuid",
    "json-pointer",
    "regex",
];

/// Keywords whose value is one schema.
const ONE: [&str; 5] = [
    "items",
    "additionalProperties",
    "not",
    "contains",
    "propertyNames",
];
/// Keywords whose value is a list of schemas.
const LIST: [&str; 4] = ["anyOf", "oneOf", "allOf", "prefixItems"];
/// Keywords whose value maps names to schemas.
const MAP: [&str; 4] = ["properties", "$defs", "definitions", "patternProperties"];

/// What [`lean`] does with `null`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nulls {
    /// Inputs: an optional argument is typed plainly; leaving it out is how it is omitted.
    Drop,
    /// Outputs: results do carry `null` (e.g. `cost_usd` of an unpriced model), and
    /// clients validate structured results against the output schema.
    Keep,
}

/// Rewrite `schema` (a schema object) and every schema inside it.
pub(crate) fn lean(schema: &mut Map<String, Value>, nulls: Nulls) {
    schema.remove("$schema");
    if schema.get("default").is_some_and(Value::is_null) {
        schema.remove("default");
    }
    if let Some(Value::String(f)) = schema.get("format")
        && !STANDARD_FORMATS.contains(&f.as_str())
    {
        schema.remove("format");
    }
    if nulls == Nulls::Drop {
        drop_null(schema);
    }
    if let Some(Value::String(d)) = schema.get_mut("description") {
        *d = d.split_whitespace().collect::<Vec<_>>().join(" ");
    }
    let lean = |s: &mut Map<String, Value>| lean(s, nulls);
    for key in ONE {
        if let Some(Value::Object(inner)) = schema.get_mut(key) {
            lean(inner);
        }
    }
    for key in LIST {
        if let Some(Value::Array(list)) = schema.get_mut(key) {
            list.iter_mut()
                .filter_map(Value::as_object_mut)
                .for_each(lean);
        }
    }
    for key in MAP {
        if let Some(Value::Object(map)) = schema.get_mut(key) {
            map.values_mut()
                .filter_map(Value::as_object_mut)
                .for_each(lean);
        }
    }
}

/// An optional input typed plainly: no `null` in its type, no `nullable`, no `null`
/// alternative.
fn drop_null(schema: &mut Map<String, Value>) {
    schema.remove("nullable");
    if let Some(Value::Array(values)) = schema.get_mut("enum") {
        values.retain(|v| !v.is_null());
    }
    if let Some(Value::Array(types)) = schema.get("type") {
        let kept: Vec<Value> = types.iter().filter(|t| *t != "null").cloned().collect();
        match kept.len() {
            0 => {}
            1 => {
                schema.insert("type".into(), kept.into_iter().next().unwrap_or_default());
            }
            _ => {
                schema.insert("type".into(), Value::Array(kept));
            }
        }
    }
    drop_null_alternative(schema);
}

/// `create_agents`' schema without a second copy of `create_agent`'s: an item is "an
/// object with create_agent's arguments", which the description of `agents` says and
/// `create_agent`'s own schema, in the same list, spells out.
pub(crate) fn items_by_reference(schema: &mut Map<String, Value>, array: &str, item: &str) {
    let Some(Value::Object(props)) = schema.get_mut("properties") else {
        return;
    };
    let Some(Value::Object(list)) = props.get_mut(array) else {
        return;
    };
    list.insert(
        "items".into(),
        serde_json::json!({"type": "object", "description": item, "required": ["name"]}),
    );
    let uses_defs = serde_json::to_string(props).is_ok_and(|s| s.contains("\"$ref\""));
    if !uses_defs {
        schema.remove("$defs");
        schema.remove("definitions");
    }
}

/// `anyOf: [X, {"type": "null"}]` (how schemars writes an optional enum or struct)
/// becomes X, merged into the schema that held the `anyOf`.
fn drop_null_alternative(schema: &mut Map<String, Value>) {
    let Some(Value::Array(alternatives)) = schema.get("anyOf") else {
        return;
    };
    let is_null = |v: &Value| {
        v.get("type").is_some_and(|t| t == "null") && v.as_object().is_some_and(|o| o.len() == 1)
    };
    if !alternatives.iter().any(is_null) {
        return;
    }
    let mut rest: Vec<Value> = alternatives
        .iter()
        .filter(|v| !is_null(v))
        .cloned()
        .collect();
    if rest.len() == 1
        && let Some(Value::Object(only)) = rest.pop()
    {
        schema.remove("anyOf");
        for (k, v) in only {
            schema.entry(k).or_insert(v);
        }
    } else {
        schema.insert("anyOf".into(), Value::Array(rest));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn leaned(v: Value) -> Value {
        let mut m = v.as_object().unwrap().clone();
        lean(&mut m, Nulls::Drop);
        Value::Object(m)
    }

    #[test]
    fn optional_fields_are_typed_plainly_and_formats_go() {
        let v = leaned(json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": {
                "max_steps": {"type": ["integer", "null"], "format": "uint32", "minimum": 0, "default": null},
                "at": {"type": "string", "format": "date-time"},
                "format": {"type": ["string", "null"], "description": "a field named\n   format"},
                "sandbox": {"anyOf": [{"$ref": "#/$defs/Mode"}, {"type": "null"}], "description": "how"},
                "isolation": {"type": ["string", "null"], "enum": ["worktree", null]},
                "tags": {"type": ["array", "null"], "items": {"type": "number", "format": "double"}}
            },
            "$defs": {"Mode": {"type": "string", "enum": ["a", "b"]}}
        }));
        assert_eq!(
            v,
            json!({
                "type": "object",
                "properties": {
                    "max_steps": {"type": "integer", "minimum": 0},
                    "at": {"type": "string", "format": "date-time"},
                    "format": {"type": "string", "description": "a field named format"},
                    "sandbox": {"$ref": "#/$defs/Mode", "description": "how"},
                    "isolation": {"type": "string", "enum": ["worktree"]},
                    "tags": {"type": "array", "items": {"type": "number"}}
                },
                "$defs": {"Mode": {"type": "string", "enum": ["a", "b"]}}
            })
        );
    }

    #[test]
    fn outputs_keep_null() {
        let mut m =
            json!({"properties": {"cost_usd": {"type": ["number", "null"], "format": "double"}}})
                .as_object()
                .unwrap()
                .clone();
        lean(&mut m, Nulls::Keep);
        assert_eq!(
            Value::Object(m),
            json!({"properties": {"cost_usd": {"type": ["number", "null"]}}})
        );
    }

    #[test]
    fn several_alternatives_keep_all_but_null() {
        let v =
            leaned(json!({"anyOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}]}));
        assert_eq!(
            v,
            json!({"anyOf": [{"type": "string"}, {"type": "integer"}]})
        );
    }
}
