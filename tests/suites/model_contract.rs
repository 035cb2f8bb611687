//! What the sub-agent's model is told and how its calls are bounded (issue 16): a checked
//! command's schema in its instruction, budget reservations, first-byte timeouts, empty
//! answers, aliases and prices, and the operator's consent for `sandbox: "off"`.

use std::time::Duration;

use crate::common::*;
use serde_json::json;


#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checked_commands_first_request_carries_its_schema_and_passes_at_once() {
    let fl = Flotilla::start().await;
    let schema = json!({
        "type": "object",
        "required": ["verdict"],
        "properties": {"verdict": {"type": "string", "enum": ["ship-it", "hold"]}},
    });
    fl.mock.script(
        "[schema]",
        vec![
            Step::text("{\"verdict\": \"ship-it\"}"),
            Step::text("{\"n\": 3}"),
        ],
    );
    fl.call(
        "create_agent",
        json!({"name": "s", "task": "[schema] judge the change", "output_schema": schema}),
    )
    .await;
    fl.wait_all(&["s"]).await;
    let out = fl.output("s").await;
    assert_eq!(out["output_json"], json!({"verdict": "ship-it"}), "{out}");
    let requests = fl.mock.requests_for("[schema]");
    assert_eq!(
        requests.len(),
        1,
        "one model call for a model that follows it"
    );
    let first = requests[0].first_user_text();
    assert!(
        first.contains("must be a JSON value that validates against this JSON Schema"),
        "{first}"
    );
    assert!(
        first.contains("ship-it") && first.contains("\"verdict\""),
        "{first}"
    );

    // A later command with its own schema: the schema is in that command's instruction.
    fl.call(
        "command_agent",
        json!({"agent": "s", "task": "count them",
               "output_schema": {"type": "object", "required": ["n"],
                                 "properties": {"n": {"type": "integer", "minimum": 1}}}}),
    )
    .await;
    fl.wait_all(&["s"]).await;
    let out = fl.output("s").await;
    assert_eq!(out["output_json"], json!({"n": 3}), "{out}");
    let requests = fl.mock.requests_for("[schema]");
    assert_eq!(requests.len(), 2, "one model call per command");
    let body = requests[1].body_text();
    assert!(body.contains("\\\"minimum\\\": 1"), "{body}");
}
