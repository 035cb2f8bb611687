//! MCP Tasks (SEP-2663) through rmcp's own client declaring the extension, against the
//! real binary: agent commands answered as tasks, `tasks/get` mapping their state
//! (working → completed with the output, failed, cancelled), `tasks/cancel` for a
//! running and a queued command, task ids after a SIGKILL and restart, the TTL,
//! `notifications/tasks` for a session peer, both protocol generations over HTTP,
//! and a client without the extension getting today's results.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::model::{
    CallToolResponse, CallToolResult, CancelTaskParams, ClientCapabilities, ClientConfig,
    DetailedTask, ErrorCode, GetTaskParams, Implementation, ProtocolVersion, TaskPayload,
    TaskStatus, TaskStatusNotificationParams, UpdateTaskParams,
};
use rmcp::service::{ClientLifecycleMode, ClientServiceExt, NotificationContext, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientHandler, RoleClient, ServiceError, ServiceExt};
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;

use crate::common::*;

/// A client that declares the Tasks extension and records `notifications/tasks`.
#[derive(Clone, Default)]
struct TasksClient {
    notified: Arc<Mutex<Vec<DetailedTask>>>,
}

impl ClientHandler for TasksClient {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::builder().enable_tasks().build(),
            Implementation::new("tasks-test", "0"),
        )
    }

    async fn on_task_status(
        &self,
        params: TaskStatusNotificationParams,
        _: NotificationContext<RoleClient>,
    ) {
        self.notified.lock().unwrap().push(params.task);
    }
}

type Client = RunningService<RoleClient, TasksClient>;

/// A stdio server with a [`TasksClient`] (the harness's client does not declare the
/// extension). Dropping it kills the server.
struct TasksServer {
    client: Client,
    builder: Builder,
    handler: TasksClient,
    child: tokio::process::Child,
    root: Arc<tempfile::TempDir>,
    mock: MockModel,
}

impl TasksServer {
    async fn start(builder: Builder) -> Self {
        let (mut child, root, mock) = builder.clone().spawn_raw().await;
        let stdout = child.stdout.take().unwrap();
        let stdin = child.stdin.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("[flotilla] {line}");
            }
        });
        let handler = TasksClient::default();
        let client = tokio::time::timeout(CALL_TIMEOUT, handler.clone().serve((stdout, stdin)))
            .await
            .expect("handshake timed out")
            .expect("handshake");
        Self {
            client,
            builder,
            handler,
            child,
            root,
            mock,
        }
    }

    /// A plain tool call that must succeed (it does not start work): its JSON.
    async fn call(&self, tool: &str, args: Value) -> Value {
        let result = tokio::time::timeout(CALL_TIMEOUT, self.client.call_tool(params(tool, args)))
            .await
            .expect("tools/call timed out")
            .expect("tools/call");
        json_of(&result)
    }

    /// SIGKILL it and start another on the same store and mock.
    async fn restart(mut self) -> Self {
        let pid = self.child.id().unwrap() as i32;
        kill_quietly(pid);
        assert!(wait_pid_gone(pid, Duration::from_secs(10)).await);
        let _ = self.child.wait().await;
        let builder = self.builder.root(self.root.clone()).mock(self.mock.clone());
        Self::start(builder).await
    }
}

async fn call_once(client: &Client, tool: &str, args: Value) -> CallToolResponse {
    tokio::time::timeout(CALL_TIMEOUT, client.call_tool_once(params(tool, args)))
        .await
        .expect("tools/call timed out")
        .expect("tools/call")
}

/// Calls a tool that must answer with a task; returns its id and its seed status.
async fn call_task(client: &Client, tool: &str, args: Value) -> (String, TaskStatus) {
    match call_once(client, tool, args.clone()).await {
        CallToolResponse::Task(t) => {
            assert_eq!(t.task.poll_interval_ms, Some(1500));
            assert!(t.task.ttl_ms.is_some_and(|ttl| ttl > 0), "{t:?}");
            (t.task.task_id, t.task.status)
        }
        other => panic!("{tool}({args}) did not answer with a task: {other:?}"),
    }
}

async fn get(client: &Client, id: &str) -> Result<DetailedTask, ServiceError> {
    tokio::time::timeout(CALL_TIMEOUT, client.get_task(GetTaskParams::new(id)))
        .await
        .expect("tasks/get timed out")
        .map(|r| r.task)
}

/// `tasks/get` until the task has `status`.
async fn until(client: &Client, id: &str, status: TaskStatus) -> DetailedTask {
    eventually(&format!("task {id} is {status:?}"), async || {
        let task = get(client, id).await.unwrap();
        if task.status() == status {
            Ok(task)
        } else {
            Err(format!("{task:?}"))
        }
    })
    .await
}

/// A completed task's result as JSON (its structuredContent, which its text repeats).
fn result_of(task: &DetailedTask) -> Value {
    let TaskPayload::Completed { result } = &task.payload else {
        panic!("not completed: {task:?}");
    };
    let result: CallToolResult = serde_json::from_value(Value::Object(result.clone())).unwrap();
    json_of(&result)
}

fn invalid_params(e: ServiceError) -> String {
    match e {
        ServiceError::McpError(e) => {
            assert_eq!(e.code, ErrorCode::INVALID_PARAMS, "{e:?}");
            e.message.to_string()
        }
        other => panic!("expected invalid params, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_agent_as_a_task_works_then_completes_with_its_output() {
    let fl = TasksServer::start(Flotilla::builder()).await;
    fl.mock.script(
        "[t1]",
        vec![Step::text("the answer is 42").delay(Duration::from_millis(1500))],
    );
    let (id, seed) = call_task(
        &fl.client,
        "create_agent",
        json!({"name": "t1", "task": "[t1] compute"}),
    )
    .await;
    assert_eq!(seed, TaskStatus::Working);
    let created = fl.call("get_agent_status", json!({"agent": "t1"})).await;
    let agent_id = created["agent_id"].as_str().unwrap().to_string();
    assert_eq!(id, format!("{agent_id}/1"));

    let working = get(&fl.client, &id).await.unwrap();
    assert_eq!(working.status(), TaskStatus::Working, "{working:?}");
    assert!(working.task.status_message.is_some(), "{working:?}");

    let done = until(&fl.client, &id, TaskStatus::Completed).await;
    let output = result_of(&done);
    assert_eq!(output["text"], "the answer is 42", "{output}");
    assert_eq!(output["command"], 1);
    assert_eq!(output["command_status"], "done");

    // The session peer was told: completed, with the same result.
    let notified = eventually("a completed notification", async || {
        fl.handler
            .notified
            .lock()
            .unwrap()
            .iter()
            .find(|t| t.task.task_id == id && t.status() == TaskStatus::Completed)
            .cloned()
    })
    .await;
    assert_eq!(result_of(&notified)["text"], "the answer is 42");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_agent_and_a_batch_answer_with_tasks_create_without_task_does_not() {
    let fl = TasksServer::start(Flotilla::builder()).await;
    // Nothing started: today's result.
    let CallToolResponse::Complete(plain) =
        call_once(&fl.client, "create_agent", json!({"name": "cmd"})).await
    else {
        panic!("create_agent without a task should answer at once");
    };
    let agent_id = json_of(&plain)["agent_id"].as_str().unwrap().to_string();
    fl.mock
        .script("[cmd]", vec![Step::text("first"), Step::text("second")]);
    let (first, _) = call_task(
        &fl.client,
        "command_agent",
        json!({"agent": "cmd", "task": "[cmd] one"}),
    )
    .await;
    assert_eq!(first, format!("{agent_id}/1"));
    assert_eq!(
        result_of(&until(&fl.client, &first, TaskStatus::Completed).await)["text"],
        "first"
    );
    let (second, _) = call_task(
        &fl.client,
        "command_agent",
        json!({"agent": "cmd", "task": "[cmd] two"}),
    )
    .await;
    assert_eq!(second, format!("{agent_id}/2"));
    let out = result_of(&until(&fl.client, &second, TaskStatus::Completed).await);
    assert_eq!(
        (out["text"].as_str(), out["command"].as_u64()),
        (Some("second"), Some(2))
    );

    // A plan: one task naming every command; completed once all are done.
    fl.mock.script("[pa]", vec![Step::text("plan a")]);
    fl.mock.script("[pb]", vec![Step::text("plan b")]);
    let (batch, _) = call_task(
        &fl.client,
        "create_agents",
        json!({"agents": [
            {"name": "pa", "task": "[pa] go"},
            {"name": "pb", "task": "[pb] go", "depends_on": ["pa"]},
            {"name": "idle"},
        ]}),
    )
    .await;
    assert_eq!(
        batch.split('+').count(),
        2,
        "{batch}: only agents with a task"
    );
    assert!(batch.split('+').all(|p| p.ends_with("/1")), "{batch}");
    let out = result_of(&until(&fl.client, &batch, TaskStatus::Completed).await);
    let texts: Vec<&str> = out["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["plan a", "plan b"], "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_command_is_a_failed_task_with_its_error() {
    let fl = TasksServer::start(Flotilla::builder()).await;
    fl.mock
        .script("[bad]", vec![Step::fail_with(400, "this model refuses")]);
    let (id, _) = call_task(
        &fl.client,
        "create_agent",
        json!({"name": "bad", "task": "[bad] go"}),
    )
    .await;
    let failed = until(&fl.client, &id, TaskStatus::Failed).await;
    let TaskPayload::Failed { error } = &failed.payload else {
        panic!("{failed:?}");
    };
    assert_mentions(error["message"].as_str().unwrap(), &["this model refuses"]);
    assert!(error["code"].is_i64(), "{error:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_cancel_cancels_the_running_and_a_queued_command_and_a_restart_agrees() {
    let fl = TasksServer::start(Flotilla::builder()).await;
    // The first command holds its model call; the second queues behind it.
    fl.mock.script(
        "[hold]",
        vec![Step::stall(), Step::stall(), Step::text("third")],
    );
    let (running, _) = call_task(
        &fl.client,
        "create_agent",
        json!({"name": "hold", "task": "[hold] one"}),
    )
    .await;
    fl.mock
        .wait_requests("[hold]", 1, Duration::from_secs(30))
        .await;
    let (queued, _) = call_task(
        &fl.client,
        "command_agent",
        json!({"agent": "hold", "task": "two"}),
    )
    .await;
    let waiting = get(&fl.client, &queued).await.unwrap();
    assert_eq!(waiting.status(), TaskStatus::Working);
    assert_mentions(
        waiting.task.status_message.as_deref().unwrap(),
        &["queued behind 1"],
    );

    // The queued one: dropped at once, journaled.
    fl.client
        .cancel_task(CancelTaskParams::new(queued.clone()))
        .await
        .unwrap();
    assert_eq!(
        get(&fl.client, &queued).await.unwrap().status(),
        TaskStatus::Cancelled
    );
    assert_eq!(
        get(&fl.client, &running).await.unwrap().status(),
        TaskStatus::Working
    );
    // Cancelling what has ended is refused.
    let e = fl
        .client
        .cancel_task(CancelTaskParams::new(queued.clone()))
        .await
        .unwrap_err();
    assert_mentions(&invalid_params(e), &["already ended", "cancelled"]);

    // After a SIGKILL the ids still answer, from the store.
    let fl = fl.restart().await;
    assert_eq!(
        get(&fl.client, &queued).await.unwrap().status(),
        TaskStatus::Cancelled
    );
    assert_eq!(
        get(&fl.client, &running).await.unwrap().status(),
        TaskStatus::Working
    );

    // The running one (resumed after the restart): interrupted.
    fl.mock
        .wait_requests("[hold]", 2, Duration::from_secs(30))
        .await;
    fl.client
        .cancel_task(CancelTaskParams::new(running.clone()))
        .await
        .unwrap();
    until(&fl.client, &running, TaskStatus::Cancelled).await;
    let status = fl.call("get_agent_status", json!({"agent": "hold"})).await;
    assert_eq!(status["status"], "cancelled", "{status}");
    assert_eq!(status["pending"], 0, "{status}");
    assert_eq!(status["commands"], 2, "{status}");
    let out = fl
        .call("get_agent_output", json!({"agent": "hold", "command": 2}))
        .await;
    assert_eq!(out["command_status"], "cancelled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completed_task_survives_a_restart_and_is_forgotten_after_its_ttl() {
    let fl = TasksServer::start(Flotilla::builder().env("FLOTILLA_TASK_TTL_S", "2")).await;
    fl.mock.script("[keep]", vec![Step::text("kept")]);
    let (id, _) = call_task(
        &fl.client,
        "create_agent",
        json!({"name": "keep", "task": "[keep] go"}),
    )
    .await;
    until(&fl.client, &id, TaskStatus::Completed).await;
    let fl = fl.restart().await;
    let task = get(&fl.client, &id).await.unwrap();
    assert_eq!(result_of(&task)["text"], "kept");
    assert!(task.task.ttl_ms.unwrap() >= 2000, "{task:?}");
    let gone = eventually("the task is forgotten after its TTL", async || {
        match get(&fl.client, &id).await {
            Ok(task) => Err(format!("{task:?}")),
            Err(e) => Ok(e),
        }
    })
    .await;
    assert_mentions(&invalid_params(gone), &["TTL", "get_agent_output"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbled_and_unknown_task_ids_are_invalid_params_that_say_why() {
    let fl = TasksServer::start(Flotilla::builder()).await;
    for (id, why) in [
        ("nope", "<agent_id>/<command>"),
        ("ag-0123456789/0", "not a command number"),
        ("ag-0123456789/1", "does not exist"),
    ] {
        let e = get(&fl.client, id).await.unwrap_err();
        assert_mentions(&invalid_params(e), &[why]);
    }
    let created = call_once(&fl.client, "create_agent", json!({"name": "few"})).await;
    let CallToolResponse::Complete(created) = created else {
        panic!("{created:?}");
    };
    let agent_id = json_of(&created)["agent_id"].as_str().unwrap().to_string();
    let e = get(&fl.client, &format!("{agent_id}/3")).await.unwrap_err();
    assert_mentions(&invalid_params(e), &["has had 0 command"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_the_extension_gets_todays_results() {
    let fl = Flotilla::start().await;
    fl.mock.script("[plain]", vec![Step::text("plain")]);
    let created = fl.create("plain", "[plain] go").await;
    assert!(created["agent_id"].is_string(), "{created}");
    let commanded = fl.command("plain", "[plain] again").await;
    assert_eq!(commanded["command"], 2, "{commanded}");
    let tools = fl.tools().await;
    let marked: Vec<&str> = tools
        .iter()
        .filter(|t| {
            t.meta
                .as_ref()
                .is_some_and(|m| m.get("io.modelcontextprotocol/tasks").is_some())
        })
        .map(|t| t.name.as_ref())
        .collect();
    assert_eq!(marked, ["command_agent", "create_agent", "create_agents"]);
    // tasks/* need the extension declared (rmcp answers -32021).
    let e = fl
        .client
        .get_task(GetTaskParams::new(format!(
            "{}/1",
            created["agent_id"].as_str().unwrap()
        )))
        .await
        .unwrap_err();
    assert!(
        matches!(e, ServiceError::McpError(ref e) if e.code.0 == -32021),
        "{e:?}"
    );
}

/// A tasks client over HTTP: a 2025-11-25 session (`initialize`), or the stateless
/// 2026-07-28 generation (`server/discover`, per-request metadata).
async fn http_client(server: &HttpServer, stateless: bool) -> Client {
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(server.url.clone()).auth_header(TOKEN),
    );
    let lifecycle = if stateless {
        ClientLifecycleMode::Discover {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        }
    } else {
        ClientLifecycleMode::Initialize
    };
    tokio::time::timeout(
        CALL_TIMEOUT,
        TasksClient::default().serve_with_lifecycle(transport, lifecycle),
    )
    .await
    .expect("HTTP handshake timed out")
    .expect("HTTP handshake")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_protocol_generations_over_http_answer_with_tasks() {
    let server = HttpServer::start().await;
    for (stateless, name) in [(false, "session"), (true, "stateless")] {
        let client = http_client(&server, stateless).await;
        let key = format!("[{name}]");
        server
            .mock
            .script(&key, vec![Step::text(format!("{name} done"))]);
        let (id, _) = call_task(
            &client,
            "create_agent",
            json!({"name": name, "task": format!("{key} go")}),
        )
        .await;
        let task = until(&client, &id, TaskStatus::Completed).await;
        assert_eq!(result_of(&task)["text"], format!("{name} done"));
        if !stateless {
            // A session hears of it over its SSE stream.
            eventually("a completed notification over HTTP", async || {
                client
                    .service()
                    .notified
                    .lock()
                    .unwrap()
                    .iter()
                    .any(|t| t.task.task_id == id && t.status() == TaskStatus::Completed)
            })
            .await;
        }
        // The generation really is what was asked for: only 2026-07-28 results carry
        // `resultType`.
        let CallToolResponse::Complete(status) =
            call_once(&client, "get_agent_status", json!({"agent": name})).await
        else {
            panic!("get_agent_status answered with a task");
        };
        assert_eq!(status.result_type.is_some(), stateless, "{status:?}");
        // Another connection of the same generation reads the same task.
        let other = http_client(&server, stateless).await;
        assert_eq!(
            get(&other, &id).await.unwrap().status(),
            TaskStatus::Completed
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_batch_interrupts_the_running_agent_and_drops_the_waiting_one() {
    let fl = TasksServer::start(Flotilla::builder()).await;
    fl.mock.script("[first]", vec![Step::stall()]);
    let (batch, _) = call_task(
        &fl.client,
        "create_agents",
        json!({"agents": [
            {"name": "first", "task": "[first] go"},
            {"name": "then", "task": "[then] go", "depends_on": ["first"]},
        ]}),
    )
    .await;
    fl.mock
        .wait_requests("[first]", 1, Duration::from_secs(30))
        .await;
    let working = get(&fl.client, &batch).await.unwrap();
    assert_mentions(
        working.task.status_message.as_deref().unwrap(),
        &["0 of 2 ended", "then: waiting for its dependencies"],
    );
    fl.client
        .cancel_task(CancelTaskParams::new(batch.clone()))
        .await
        .unwrap();
    let cancelled = until(&fl.client, &batch, TaskStatus::Cancelled).await;
    assert_mentions(
        cancelled.task.status_message.as_deref().unwrap(),
        &["then: cancelled by the client"],
    );
    let then = fl
        .call("get_agent_output", json!({"agent": "then", "command": 1}))
        .await;
    assert_eq!(then["command_status"], "cancelled");
    assert!(
        fl.mock.requests_for("[then]").is_empty(),
        "the waiting agent never ran"
    );
}

/// The one input request of an `input_required` task: its key and the elicitation.
fn input_request(task: &DetailedTask) -> (String, Value) {
    let TaskPayload::InputRequired { input_requests } = &task.payload else {
        panic!("not input_required: {task:?}");
    };
    assert_eq!(input_requests.len(), 1, "{input_requests:?}");
    let (key, request) = input_requests.iter().next().unwrap();
    (key.clone(), serde_json::to_value(request).unwrap())
}

async fn update(client: &Client, id: &str, key: &str, response: Value) -> Result<(), ServiceError> {
    let responses = [(key.to_string(), response)].into_iter().collect();
    tokio::time::timeout(
        CALL_TIMEOUT,
        client.update_task(UpdateTaskParams::new(id, responses)),
    )
    .await
    .expect("tasks/update timed out")
}

/// The content of the tool result the model got for its first tool call.
fn answer_seen(request: &Recorded) -> String {
    let id = &request.tool_call_ids()[0];
    let results = request.tool_results();
    results
        .iter()
        .find(|r| &r.id == id)
        .unwrap_or_else(|| panic!("no result for {id}: {results:?}"))
        .content
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_question_is_input_required_and_tasks_update_answers_it_across_a_restart() {
    let fl = TasksServer::start(Flotilla::builder()).await;
    fl.mock.script(
        "[ask]",
        vec![
            Step::tool(
                "ask_orchestrator",
                json!({"question": "Two parsers: keep v1 or v2?", "options": ["v1", "v2"]}),
            ),
            Step::text("Kept v2, as answered."),
        ],
    );
    let (id, _) = call_task(
        &fl.client,
        "create_agent",
        json!({"name": "asker", "task": "[ask] clean up the parsers"}),
    )
    .await;
    let asked = until(&fl.client, &id, TaskStatus::InputRequired).await;
    let (key, request) = input_request(&asked);
    assert!(key.starts_with(&format!("{id}/")), "{key}");
    assert_eq!(request["method"], "elicitation/create");
    assert_mentions(
        request["params"]["message"].as_str().unwrap(),
        &["asker", "Two parsers: keep v1 or v2?"],
    );
    let answer = &request["params"]["requestedSchema"]["properties"]["answer"];
    assert_eq!(answer["enum"], json!(["v1", "v2"]), "{request}");
    assert_mentions(
        asked.task.status_message.as_deref().unwrap(),
        &["keep v1 or v2"],
    );
    // The session heard it too.
    eventually("an input_required notification", async || {
        fl.handler
            .notified
            .lock()
            .unwrap()
            .iter()
            .any(|t| t.task.task_id == id && t.status() == TaskStatus::InputRequired)
    })
    .await;

    // The question survives a SIGKILL; so does the task.
    let fl = fl.restart().await;
    let again = get(&fl.client, &id).await.unwrap();
    assert_eq!(input_request(&again).0, key);

    // A key that is not this task's is refused; then the real answer.
    let e = update(
        &fl.client,
        &id,
        "ag-0000000000/1/x",
        json!({"action": "accept"}),
    )
    .await
    .unwrap_err();
    assert_mentions(&invalid_params(e), &["not one of task", "inputRequests"]);
    let e = update(
        &fl.client,
        &id,
        &key,
        json!({"action": "accept", "content": {}}),
    )
    .await
    .unwrap_err();
    assert_mentions(&invalid_params(e), &["content.answer"]);
    update(
        &fl.client,
        &id,
        &key,
        json!({"action": "accept", "content": {"answer": "v2"}}),
    )
    .await
    .unwrap();
    let done = until(&fl.client, &id, TaskStatus::Completed).await;
    let out = result_of(&done);
    assert_eq!(
        (out["command"].as_u64(), out["text"].as_str()),
        (Some(1), Some("Kept v2, as answered.")),
        "{out}"
    );
    let requests = fl.mock.requests_for("[ask]");
    assert_eq!(answer_seen(requests.last().unwrap()), "v2");
    // A late response to the answered question is ignored.
    update(
        &fl.client,
        &id,
        &key,
        json!({"action": "accept", "content": {"answer": "v1"}}),
    )
    .await
    .unwrap();
    let answered = fl
        .call(
            "get_agent_events",
            json!({"agent": "asker", "kinds": ["answered"]}),
        )
        .await;
    assert_eq!(
        answered["events"].as_array().unwrap().len(),
        1,
        "{answered}"
    );
    assert_mentions(
        answered["events"][0]["summary"].as_str().unwrap(),
        &["client"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declining_lets_the_agent_go_on_and_cancelling_cancels_the_command() {
    let fl = TasksServer::start(Flotilla::builder()).await;
    let ask = |q: &str| Step::tool("ask_orchestrator", json!({"question": q}));
    fl.mock
        .script("[dec]", vec![ask("Which port?"), Step::text("used 8080")]);
    fl.mock.script("[can]", vec![ask("Delete the tests?")]);
    let (declined, _) = call_task(
        &fl.client,
        "create_agent",
        json!({"name": "dec", "task": "[dec] serve it"}),
    )
    .await;
    let (cancelled, _) = call_task(
        &fl.client,
        "create_agent",
        json!({"name": "can", "task": "[can] tidy"}),
    )
    .await;
    let (key, request) =
        input_request(&until(&fl.client, &declined, TaskStatus::InputRequired).await);
    let answer = &request["params"]["requestedSchema"]["properties"]["answer"];
    assert!(answer.get("enum").is_none(), "free text: {request}");
    update(&fl.client, &declined, &key, json!({"action": "decline"}))
        .await
        .unwrap();
    until(&fl.client, &declined, TaskStatus::Completed).await;
    let requests = fl.mock.requests_for("[dec]");
    assert_mentions(
        &answer_seen(requests.last().unwrap()),
        &["declined", "best judgement"],
    );

    let (key, _) = input_request(&until(&fl.client, &cancelled, TaskStatus::InputRequired).await);
    update(&fl.client, &cancelled, &key, json!({"action": "cancel"}))
        .await
        .unwrap();
    until(&fl.client, &cancelled, TaskStatus::Cancelled).await;
    assert_eq!(
        fl.mock.requests_for("[can]").len(),
        1,
        "no model call after the cancel"
    );
}

/// Claude Code 2.1.328 as the orchestrator, over HTTP (it negotiates 2026-07-28). In
/// `-p` mode it does not declare the Tasks extension (its bundle enables MCP Tasks for
/// the interactive entrypoint only, behind a feature flag), so it must get, and use,
/// today's result from a server that advertises the extension.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_code_in_print_mode_gets_todays_results_from_a_tasks_server() {
    let server = HttpServer::start().await;
    let mock = server.mock.clone();
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let config = dir.path().join("mcp.json");
    let mcp = json!({"mcpServers": {"flotilla": {"type": "http", "url": server.url,
        "headers": {"Authorization": format!("Bearer {TOKEN}")}}}});
    std::fs::write(&config, mcp.to_string()).unwrap();
    mock.script(
        "[cc-orch]",
        vec![
            Step::tool(
                "mcp__flotilla__create_agent",
                json!({"name": "sub", "task": "[cc-sub] say hi"}),
            ),
            Step::text("orchestrator done"),
        ],
    );
    mock.script("[cc-sub]", vec![Step::text("hi from the sub-agent")]);
    let mut cmd = clis::claude(&mock, &dir.path().join("home"), &work);
    cmd.args(["-p", "[cc-orch] start a sub-agent"])
        .args(["--output-format", "stream-json", "--verbose"])
        .arg("--mcp-config")
        .arg(&config)
        .args([
            "--strict-mcp-config",
            "--allowedTools",
            "mcp__flotilla__create_agent",
        ]);
    let run = clis::run(cmd).await;
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert_eq!(
        run.of_type("result")[0]["result"],
        "orchestrator done",
        "{run:#?}"
    );
    let requests = mock.requests_for("[cc-orch]");
    let result = &requests.last().unwrap().tool_results()[0];
    assert_eq!(result.is_error, Some(false), "{result:?}");
    let created: Value = serde_json::from_str(&result.content).unwrap();
    assert_eq!(created["name"], "sub", "{created}");
    assert!(server.logged("did not declare the Tasks extension"));
}
