//! OpenTelemetry traces, end to end: the real binary exports to an OTLP/HTTP receiver
//! in the test (axum on `127.0.0.1:0`, protobuf bodies decoded with
//! `opentelemetry-proto`), and the spans must carry the GenAI conventions' names,
//! parents and attributes. Without an endpoint nothing is exported; with a dead one
//! the agents are not slowed and the log warns once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use prost::Message;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::common::{Flotilla, Step, eventually};

/// One span as the receiver got it, flattened.
#[derive(Debug, Clone)]
struct Got {
    name: String,
    trace_id: String,
    span_id: String,
    parent: String,
    attributes: HashMap<String, Any>,
    /// 0 unset, 1 ok, 2 error.
    status: i32,
    status_message: String,
    events: Vec<String>,
    service: String,
    start_ns: u64,
    end_ns: u64,
}

impl Got {
    fn str(&self, key: &str) -> &str {
        match self.attributes.get(key) {
            Some(Any::StringValue(s)) => s,
            other => panic!("{}: {key} is not a string: {other:?}", self.name),
        }
    }

    fn int(&self, key: &str) -> i64 {
        match self.attributes.get(key) {
            Some(Any::IntValue(n)) => *n,
            other => panic!("{}: {key} is not an int: {other:?}", self.name),
        }
    }

    fn double(&self, key: &str) -> f64 {
        match self.attributes.get(key) {
            Some(Any::DoubleValue(n)) => *n,
            other => panic!("{}: {key} is not a double: {other:?}", self.name),
        }
    }

    fn strings(&self, key: &str) -> Vec<String> {
        match self.attributes.get(key) {
            Some(Any::ArrayValue(a)) => a
                .values
                .iter()
                .map(|v| match &v.value {
                    Some(Any::StringValue(s)) => s.clone(),
                    other => panic!("{key}: not a string: {other:?}"),
                })
                .collect(),
            other => panic!("{}: {key} is not an array: {other:?}", self.name),
        }
    }
}

/// An OTLP/HTTP trace receiver: `POST /v1/traces` with protobuf bodies.
#[derive(Clone)]
struct Receiver {
    spans: Arc<Mutex<Vec<Got>>>,
    /// How many spans are in, for waiters.
    count: Arc<watch::Sender<usize>>,
    requests: Arc<Mutex<usize>>,
    addr: Option<std::net::SocketAddr>,
}

impl Receiver {
    async fn start() -> Self {
        let mut receiver = Receiver {
            spans: Arc::default(),
            count: Arc::new(watch::Sender::new(0)),
            requests: Arc::default(),
            addr: None,
        };
        let app = Router::new()
            .route("/v1/traces", post(receive))
            .with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind OTLP receiver");
        receiver.addr = Some(listener.local_addr().expect("receiver address"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        receiver
    }

    /// The base URL, as OTEL_EXPORTER_OTLP_ENDPOINT.
    fn url(&self) -> String {
        format!("http://{}", self.addr.expect("started"))
    }

    fn spans(&self) -> Vec<Got> {
        self.spans.lock().unwrap().clone()
    }

    fn requests(&self) -> usize {
        *self.requests.lock().unwrap()
    }

    /// Waits until `n` spans are in, or panics.
    async fn wait_spans(&self, n: usize, timeout: Duration) -> Vec<Got> {
        let mut count = self.count.subscribe();
        if tokio::time::timeout(timeout, count.wait_for(|c| *c >= n))
            .await
            .is_err()
        {
            let spans = self.spans();
            panic!(
                "the receiver got {} spans, not {n}: {:#?}",
                spans.len(),
                spans.iter().map(|s| &s.name).collect::<Vec<_>>()
            );
        }
        self.spans()
    }
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    *r.requests.lock().unwrap() += 1;
    assert_eq!(
        headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/x-protobuf")
    );
    let request = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf body");
    let mut got = Vec::new();
    for rs in request.resource_spans {
        let resource = attributes(rs.resource.map(|r| r.attributes).unwrap_or_default());
        let service = match resource.get("service.name") {
            Some(Any::StringValue(s)) => s.clone(),
            _ => String::new(),
        };
        for ss in rs.scope_spans {
            for s in ss.spans {
                let status = s.status.unwrap_or_default();
                got.push(Got {
                    name: s.name,
                    trace_id: hex(&s.trace_id),
                    span_id: hex(&s.span_id),
                    parent: hex(&s.parent_span_id),
                    attributes: attributes(s.attributes),
                    status: status.code,
                    status_message: status.message,
                    events: s.events.into_iter().map(|e| e.name).collect(),
                    service: service.clone(),
                    start_ns: s.start_time_unix_nano,
                    end_ns: s.end_time_unix_nano,
                });
            }
        }
    }
    let mut spans = r.spans.lock().unwrap();
    spans.extend(got);
    r.count.send_replace(spans.len());
    StatusCode::OK
}

fn attributes(kvs: Vec<KeyValue>) -> HashMap<String, Any> {
    kvs.into_iter()
        .filter_map(|kv| Some((kv.key, kv.value?.value?)))
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The trace ids in an agent's `started` event summaries, by command order.
async fn started_trace_ids(fl: &Flotilla, agent: &str) -> Vec<Option<String>> {
    let events = fl
        .call(
            "get_agent_events",
            json!({"agent": agent, "kinds": ["started"]}),
        )
        .await;
    events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let summary = e["summary"].as_str().unwrap();
            summary
                .split_once("(trace ")
                .map(|(_, rest)| rest.trim_end_matches(')').to_string())
        })
        .collect()
}

fn named<'a>(spans: &'a [Got], name: &str) -> Vec<&'a Got> {
    spans.iter().filter(|s| s.name == name).collect()
}

fn children<'a>(spans: &'a [Got], parent: &Got) -> Vec<&'a Got> {
    let mut kids: Vec<&Got> = spans
        .iter()
        .filter(|s| s.parent == parent.span_id && s.trace_id == parent.trace_id)
        .collect();
    kids.sort_by_key(|s| s.start_ns);
    kids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_agent_run_is_exported_as_genai_spans_with_parents_and_tokens() {
    let receiver = Receiver::start().await;
    // A long schedule delay: the spans reach the receiver only through the flush at
    // shutdown, which this test proves too.
    let fl = Flotilla::builder()
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.url())
        .env("OTEL_BSP_SCHEDULE_DELAY", "60000")
        .start()
        .await;
    assert!(
        fl.log_tail(50).contains("traces: exporting over OTLP"),
        "{}",
        fl.log_tail(50)
    );
    fl.mock.script(
        "[alpha]",
        vec![
            Step::tool("list_files", json!({})).usage(120, 30),
            Step::text("alpha done").usage(200, 10),
            // Its second command fails: a 400 is not retried.
            Step::fail(400),
        ],
    );
    fl.mock.script(
        "[beta]",
        vec![
            // Overloaded once: retried within the same chat span.
            Step::fail(529),
            Step::tool("read_file", json!({"path": "missing.txt"})).usage(50, 5),
            Step::text("beta done").usage(60, 6),
        ],
    );
    fl.create("alpha", "[alpha] list the files").await;
    fl.create("beta", "[beta] read a file").await;
    fl.wait_all(&["alpha", "beta"]).await;
    fl.command("alpha", "again").await;
    fl.wait_all(&["alpha"]).await;
    let alpha_ids = started_trace_ids(&fl, "alpha").await;
    let beta_ids = started_trace_ids(&fl, "beta").await;
    assert_eq!(receiver.requests(), 0, "exported before the flush");
    assert!(fl.shutdown(Duration::from_secs(20)).await);

    // 3 commands, 5 model calls, 2 tool calls.
    let spans = receiver.wait_spans(10, Duration::from_secs(10)).await;
    assert_eq!(spans.len(), 10, "{spans:#?}");
    assert!(spans.iter().all(|s| s.service == "flotilla"));
    assert!(spans.iter().all(|s| s.end_ns >= s.start_ns));
    // Content is not exported unless asked for.
    assert!(
        spans.iter().all(|s| !s
            .attributes
            .keys()
            .any(|k| k.ends_with(".messages") || k.starts_with("gen_ai.tool.call.a"))),
        "{spans:#?}"
    );

    let mut alpha = named(&spans, "invoke_agent alpha");
    alpha.sort_by_key(|s| s.int("flotilla.command"));
    assert_eq!(alpha.len(), 2);
    let [beta] = named(&spans, "invoke_agent beta")[..] else {
        panic!("one beta command span: {spans:#?}");
    };
    for (cmd, n) in alpha.iter().zip(1..) {
        assert_eq!(cmd.parent, "", "a command span is a root");
        assert_eq!(cmd.str("gen_ai.operation.name"), "invoke_agent");
        assert_eq!(cmd.str("gen_ai.agent.name"), "alpha");
        assert_eq!(
            cmd.str("gen_ai.agent.id").len(),
            alpha[0].str("gen_ai.agent.id").len()
        );
        assert_eq!(cmd.int("flotilla.command"), n);
    }
    assert_ne!(alpha[0].trace_id, alpha[1].trace_id, "a trace per command");
    assert_ne!(alpha[0].str("gen_ai.agent.id"), beta.str("gen_ai.agent.id"));
    // The started events name the traces the receiver saw.
    assert_eq!(
        alpha_ids,
        vec![
            Some(alpha[0].trace_id.clone()),
            Some(alpha[1].trace_id.clone())
        ]
    );
    assert_eq!(beta_ids, vec![Some(beta.trace_id.clone())]);

    // alpha, command 1: chat (tool call) → execute_tool → chat (final answer).
    let first = children(&spans, alpha[0]);
    let names: Vec<&str> = first.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "chat claude-sonnet-4-5",
            "execute_tool list_files",
            "chat claude-sonnet-4-5"
        ]
    );
    let (chat1, tool, chat2) = (first[0], first[1], first[2]);
    assert_eq!(chat1.str("gen_ai.operation.name"), "chat");
    assert_eq!(chat1.str("gen_ai.provider.name"), "anthropic");
    assert_eq!(chat1.str("gen_ai.request.model"), "claude-sonnet-4-5");
    assert_eq!(chat1.int("gen_ai.usage.input_tokens"), 120);
    assert_eq!(chat1.int("gen_ai.usage.output_tokens"), 30);
    assert_eq!(
        chat1.strings("gen_ai.response.finish_reasons"),
        ["tool_call"]
    );
    assert_eq!(chat2.int("gen_ai.usage.input_tokens"), 200);
    assert_eq!(chat2.int("gen_ai.usage.output_tokens"), 10);
    assert_eq!(chat2.strings("gen_ai.response.finish_reasons"), ["stop"]);
    assert_eq!(tool.str("gen_ai.operation.name"), "execute_tool");
    assert_eq!(tool.str("gen_ai.tool.name"), "list_files");
    assert!(!tool.str("gen_ai.tool.call.id").is_empty());
    assert_eq!(tool.status, 0, "{tool:?}");
    assert!(chat1.end_ns <= tool.start_ns && tool.end_ns <= chat2.start_ns);
    assert_eq!(alpha[0].status, 0);
    assert_eq!(alpha[0].str("flotilla.command.status"), "done");
    // Priced model: 320 input tokens at $3/M + 40 output at $15/M.
    let cost = alpha[0].double("flotilla.cost_usd");
    assert!((cost - 0.00156).abs() < 1e-9, "{cost}");

    // alpha, command 2: the model call failed, so did the command.
    let second = children(&spans, alpha[1]);
    assert_eq!(second.len(), 1, "{second:#?}");
    assert_eq!(second[0].status, 2, "{:?}", second[0]);
    assert_eq!(second[0].str("error.type"), "provider_error");
    assert_eq!(alpha[1].status, 2);
    assert!(alpha[1].status_message.contains("model call failed"));
    assert_eq!(alpha[1].str("error.type"), "model_call_failed");

    // beta: a tool that failed is an error span; the command still succeeded.
    let kids = children(&spans, beta);
    let tool = kids
        .iter()
        .find(|s| s.name == "execute_tool read_file")
        .expect("beta's tool span");
    assert_eq!(tool.status, 2, "{tool:?}");
    assert!(tool.status_message.contains("missing.txt"), "{tool:?}");
    assert_eq!(beta.status, 0);
    assert_eq!(kids[0].name, "chat claude-sonnet-4-5");
    assert_eq!(kids[0].events, ["retry"], "{:?}", kids[0]);
    let tokens: i64 = kids
        .iter()
        .filter(|s| s.name.starts_with("chat "))
        .map(|s| s.int("gen_ai.usage.input_tokens") + s.int("gen_ai.usage.output_tokens"))
        .sum();
    assert_eq!(tokens, 50 + 5 + 60 + 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_content_is_exported_only_when_asked_for() {
    let receiver = Receiver::start().await;
    let fl = Flotilla::builder()
        .env(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            &format!("{}/v1/traces", receiver.url()),
        )
        .env("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
        .env("OTEL_SERVICE_NAME", "fleet-under-test")
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .start()
        .await;
    fl.mock.script(
        "[gamma]",
        vec![
            Step::tool("list_files", json!({"path": "."})),
            Step::text("the secret answer"),
        ],
    );
    fl.create("gamma", "[gamma] the secret task").await;
    fl.wait_all(&["gamma"]).await;
    // Exported on the schedule (100 ms), without waiting for shutdown.
    let spans = receiver.wait_spans(4, Duration::from_secs(20)).await;
    assert!(spans.iter().all(|s| s.service == "fleet-under-test"));
    let cmd = named(&spans, "invoke_agent gamma")[0];
    assert!(cmd.str("gen_ai.input.messages").contains("the secret task"));
    let chats = named(&spans, "chat claude-sonnet-4-5");
    let last = chats.iter().max_by_key(|s| s.start_ns).unwrap();
    let input: Value = serde_json::from_str(last.str("gen_ai.input.messages")).unwrap();
    assert_eq!(input[0]["role"], "user");
    assert_eq!(input[1]["parts"][0]["type"], "tool_call");
    assert_eq!(input[2]["role"], "tool");
    let output: Value = serde_json::from_str(last.str("gen_ai.output.messages")).unwrap();
    assert_eq!(output[0]["parts"][0]["content"], "the secret answer");
    assert_eq!(output[0]["finish_reason"], "stop");
    assert!(last.str("gen_ai.system_instructions").starts_with("[{"));
    let tool = named(&spans, "execute_tool list_files")[0];
    assert_eq!(tool.str("gen_ai.tool.call.arguments"), r#"{"path":"."}"#);
    assert!(!tool.str("gen_ai.tool.call.result").is_empty());
    assert!(fl.shutdown(Duration::from_secs(20)).await);
}

/// Runs `agents` agents of `steps` tool calls each and returns how long they took.
async fn timed_run(fl: &Flotilla, agents: usize, steps: usize) -> Duration {
    let names: Vec<String> = (0..agents).map(|i| format!("a{i}")).collect();
    for name in &names {
        let mut script: Vec<Step> = (0..steps)
            .map(|_| Step::tool("list_files", json!({})))
            .collect();
        script.push(Step::text("done"));
        fl.mock.script(&format!("[{name}]"), script);
    }
    let started = Instant::now();
    for name in &names {
        fl.create(name, &format!("[{name}] work")).await;
    }
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    fl.wait_all(&refs).await;
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_endpoint_exports_nothing_and_a_dead_one_slows_nothing() {
    const AGENTS: usize = 4;
    const STEPS: usize = 10;
    // Nothing set: tracing is off, nothing reaches a receiver, no trace ids.
    let receiver = Receiver::start().await;
    let off = Flotilla::start().await;
    assert!(
        off.log_tail(50).contains("traces: off"),
        "{}",
        off.log_tail(50)
    );
    let without = timed_run(&off, AGENTS, STEPS).await;
    assert_eq!(started_trace_ids(&off, "a0").await, vec![None]);
    // Gone (and never told the receiver's address): nothing more can arrive.
    assert!(off.shutdown(Duration::from_secs(20)).await);
    assert_eq!(receiver.requests(), 0);

    // A closed port: every export fails, at once and all along the run.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let fl = Flotilla::builder()
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &format!("http://{dead}"))
        .env("OTEL_BSP_SCHEDULE_DELAY", "20")
        .start()
        .await;
    let with_dead = timed_run(&fl, AGENTS, STEPS).await;
    // The command still records its trace id (the span exists, its export fails).
    assert!(started_trace_ids(&fl, "a0").await[0].is_some());
    // Let more exports fail, then count the warnings.
    let log = eventually("another failed export in the log", async || {
        let log = fl.log_tail(400);
        log.contains("traces: export failed again").then_some(log)
    })
    .await;
    let warnings = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("traces: cannot export"))
        .count();
    let failures = log
        .lines()
        .filter(|l| l.contains("traces: export failed again"))
        .count();
    assert_eq!(warnings, 1, "{log}");
    assert!(failures >= 1, "only one export was tried: {log}");
    let shutdown = Instant::now();
    assert!(fl.shutdown(Duration::from_secs(20)).await);
    let shutdown = shutdown.elapsed();
    eprintln!(
        "{AGENTS} agents x {STEPS} tool steps: {:.3}s without an endpoint, {:.3}s with a dead one ({failures} more failed exports, one warning); shutdown {:.3}s",
        without.as_secs_f64(),
        with_dead.as_secs_f64(),
        shutdown.as_secs_f64()
    );
    assert!(
        with_dead <= without * 2 + Duration::from_secs(2),
        "a dead collector slowed the agents: {with_dead:?} vs {without:?}"
    );
    assert!(shutdown < Duration::from_secs(8), "{shutdown:?}");
}

/// A CLI agent's command is traced like a built-in one: its model turns and the CLI's
/// tool calls are spans under the command's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cli_session_is_traced_turn_by_turn() {
    let receiver = Receiver::start().await;
    let fake = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fake-claude");
    let root = Arc::new(tempfile::tempdir().unwrap());
    let state = root.path().join("claude-state");
    std::fs::create_dir_all(&state).unwrap();
    let config = format!(
        "[providers.fake]\nkind = \"claude-code\"\ncommand = \"{}\"\nenv = {{ CLAUDE_CONFIG_DIR = \"{}\" }}\n",
        fake.display(),
        state.display()
    );
    let fl = Flotilla::builder()
        .root(root)
        .config(&config)
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.url())
        .start()
        .await;
    fl.call(
        "create_agent",
        json!({"name": "cc", "model": "fake", "task": "write hello.txt"}),
    )
    .await;
    fl.wait_all(&["cc"]).await;
    assert!(fl.shutdown(Duration::from_secs(20)).await);
    // One command, two model turns, one tool call.
    let spans = receiver.wait_spans(4, Duration::from_secs(10)).await;
    let [command] = named(&spans, "invoke_agent cc")[..] else {
        panic!("one command span: {spans:#?}");
    };
    let chats: Vec<&Got> = spans
        .iter()
        .filter(|s| s.name.starts_with("chat "))
        .collect();
    assert_eq!(chats.len(), 2, "{spans:#?}");
    assert!(chats.iter().all(|c| c.parent == command.span_id));
    assert!(
        chats
            .iter()
            .all(|c| c.str("gen_ai.provider.name") == "claude-code")
    );
    let [tool] = named(&spans, "execute_tool Write")[..] else {
        panic!("one tool span: {spans:#?}");
    };
    assert_eq!(tool.parent, command.span_id);
}
