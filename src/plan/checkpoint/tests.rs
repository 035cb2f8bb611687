//! Tests for [`super`]: compiling schemas, checking answers, messages for the model.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;

use super::*;

fn report_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "summary": {"type": "string", "minLength": 1},
            "items": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"name": {"type": "string"}, "lines": {"type": "integer"}},
                    "required": ["name"]
                }
            }
        },
        "required": ["summary", "items"],
        "additionalProperties": false
    })
}

fn checkpoint() -> Checkpoint {
    Checkpoint::new(&report_schema()).unwrap()
}

#[test]
fn checkpoints_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<Checkpoint>();
    assert_send_sync::<CheckFailure>();
}

#[test]
fn bare_json_that_validates_passes() {
    let answer =
        r#"  {"summary": "2 modules", "items": [{"name": "a", "lines": 3}, {"name": "b"}]}  "#;
    let value = checkpoint().check(answer).unwrap();
    assert_eq!(value["items"][1]["name"], "b");
}

#[test]
fn a_fenced_json_block_among_prose_passes() {
    let answer =
        "I looked at the code.\n\n```json\n{\"summary\": \"ok\", \"items\": []}\n```\n\nDone.";
    assert_eq!(
        checkpoint().check(answer).unwrap(),
        json!({"summary": "ok", "items": []})
    );
    let plain = "```\n{\"summary\": \"ok\", \"items\": []}\n```";
    assert!(checkpoint().check(plain).is_ok());
}

#[test]
fn a_miss_with_two_errors_is_explained_then_the_corrected_answer_passes() {
    let cp = checkpoint();
    let miss = cp
        .check(r#"{"summary": "x", "items": [{"name": 5, "lines": 1}, {"lines": 2}]}"#)
        .unwrap_err();
    let CheckFailure::Schema { violations, total } = &miss else {
        panic!("expected schema violations, got {miss:?}");
    };
    assert_eq!(*total, 2);
    let paths: Vec<&str> = violations.iter().map(|v| v.path.as_str()).collect();
    assert_eq!(paths, ["/items/0/name", "/items/1"]);
    assert!(
        violations[0].reason.contains("not of type \"string\""),
        "{violations:?}"
    );
    assert!(
        violations[1]
            .reason
            .contains("\"name\" is a required property"),
        "{violations:?}"
    );

    let message = miss.to_model_message();
    assert!(message.starts_with("Your final answer does not match the output schema (2 problems):\n- at `/items/0/name`: 5 is not of type \"string\"\n- at `/items/1`: "), "{message}");
    assert!(
        message.ends_with(
            "Reply with only the corrected JSON (alone, or in one ```json block), no other text."
        ),
        "{message}"
    );
    let line = miss.to_string();
    assert!(line.starts_with("the final answer does not match output_schema: at `/items/0/name`: 5 is not of type \"string\"; at `/items/1`: "), "{line}");
    assert!(!line.contains('\n'), "{line}");

    let fixed = r#"```json
{"summary": "x", "items": [{"name": "5", "lines": 1}, {"name": "b", "lines": 2}]}
```"#;
    assert_eq!(cp.check(fixed).unwrap()["items"][0]["name"], "5");
}

#[test]
fn root_violations_and_long_lists_are_capped() {
    let cp = checkpoint();
    let miss = cp.check(r#"{"items": [], "extra": 1}"#).unwrap_err();
    let message = miss.to_model_message();
    assert!(message.contains("- at the root: "), "{message}");
    assert!(
        message.contains("\"summary\" is a required property"),
        "{message}"
    );

    let many: Vec<Value> = (0..25).map(|i| json!({"name": i})).collect();
    let miss = cp
        .check(&json!({"summary": "s", "items": many}).to_string())
        .unwrap_err();
    let CheckFailure::Schema { violations, total } = &miss else {
        panic!("{miss:?}");
    };
    assert_eq!((violations.len(), *total), (MAX_VIOLATIONS, 25));
    assert!(miss.to_model_message().contains("- … and 15 more\n"));
    assert!(miss.to_string().ends_with("; and 15 more"));
}

#[test]
fn no_json_several_blocks_and_parse_errors_are_told_apart() {
    let cp = checkpoint();
    assert_eq!(
        cp.check("I could not finish.").unwrap_err(),
        CheckFailure::NoJson
    );
    assert!(
        cp.check("Nothing to report.")
            .unwrap_err()
            .to_model_message()
            .contains("no JSON was found")
    );

    let two = "```json\n{\"summary\": \"a\", \"items\": []}\n```\nor\n```json\n{\"summary\": \"b\", \"items\": []}\n```";
    let several = cp.check(two).unwrap_err();
    assert_eq!(several, CheckFailure::SeveralBlocks { count: 2 });
    assert!(
        several
            .to_model_message()
            .starts_with("Your final answer has 2 ```json blocks")
    );

    let broken = cp
        .check("```json\n{\"summary\": \"a\",\n \"items\": [}\n```")
        .unwrap_err();
    let CheckFailure::Parse {
        line,
        column,
        in_block,
        ..
    } = &broken
    else {
        panic!("{broken:?}");
    };
    assert_eq!((*line, *column, *in_block), (2, 12, true));
    assert_eq!(
        broken.to_model_message(),
        "Your final answer's JSON does not parse: expected value at line 2, column 12 of the \
         ```json block. Reply with only the corrected JSON (alone, or in one ```json block), \
         no other text."
    );
    let bare = cp.check("{\"summary\": }").unwrap_err();
    assert_eq!(
        bare.to_string(),
        "the final answer's JSON does not parse: expected value at line 1, column 13"
    );
}

#[test]
fn invalid_schemas_are_refused_with_the_validators_message() {
    let e = Checkpoint::new(&json!({"type": "nope"})).unwrap_err();
    assert!(
        e.starts_with("output_schema is not a valid JSON Schema: "),
        "{e}"
    );
    assert!(e.contains("nope"), "{e}");
    let e = Checkpoint::new(&json!({"properties": {"a": {"minLength": -1}}})).unwrap_err();
    assert!(
        e.starts_with("output_schema is not a valid JSON Schema: at /properties/a/minLength: "),
        "{e}"
    );
    // No resolver is compiled in: a remote $ref cannot make flotilla fetch anything.
    let e = Checkpoint::new(&json!({"$ref": "https://example.com/schema.json"})).unwrap_err();
    assert!(
        e.starts_with("output_schema is not a valid JSON Schema: "),
        "{e}"
    );
}

#[test]
fn non_object_schemas_are_refused() {
    for (schema, kind) in [
        (json!(true), "a boolean"),
        (json!("object"), "a string"),
        (json!([{"type": "object"}]), "an array"),
        (Value::Null, "null"),
    ] {
        let e = Checkpoint::new(&schema).unwrap_err();
        assert!(
            e.starts_with(
                "output_schema must be a JSON Schema object, such as {\"type\": \"object\""
            ),
            "{e}"
        );
        assert!(e.ends_with(&format!("; got {kind}")), "{e}");
    }
}

#[test]
fn formats_are_checked_and_the_instruction_shows_the_schema() {
    let schema =
        json!({"type": "object", "properties": {"when": {"type": "string", "format": "date"}}});
    let cp = Checkpoint::new(&schema).unwrap();
    assert!(cp.check(r#"{"when": "2026-05-01"}"#).is_ok());
    let miss = cp.check(r#"{"when": "next tuesday"}"#).unwrap_err();
    assert!(
        miss.to_model_message().contains("- at `/when`: "),
        "{miss:?}"
    );

    let text = super::instruction(&schema);
    assert!(text.starts_with(
        "Your final answer must be a JSON value that validates against this JSON Schema"
    ));
    assert!(text.contains("\"format\": \"date\""), "{text}");
}

#[test]
fn long_reasons_are_capped() {
    let cp = Checkpoint::new(&json!({"type": "string"})).unwrap();
    let big = json!({"blob": "x".repeat(2_000)}).to_string();
    let CheckFailure::Schema { violations, .. } = cp.check(&big).unwrap_err() else {
        panic!("expected a schema violation");
    };
    assert!(
        violations[0].reason.chars().count() <= 300,
        "{}",
        violations[0].reason.len()
    );
    assert!(violations[0].reason.ends_with('…'));
}
