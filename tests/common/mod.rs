//! End-to-end harness: spawns the real `flotilla` binary over stdio with rmcp's client,
//! pointed at a [`MockModel`] for both providers, in a fresh temp directory.
//!
//! Layout of each test's temp directory:
//!
//! ```text
//! <root>/config.toml   retry settings (fast backoff), overridable
//! <root>/work/         the server's current directory
//! <root>/data/         the fleet's store (`--data-dir`); reused by a restarted server
//! ```
//!
//! `<root>` itself is outside the server's directory, so jail tests can put a secret
//! there and prove it is never read.
//!
//! Tests wait for events, never for a fixed time: [`eventually`] for state seen only
//! by looking again, the mock's own waits for model requests, the [`Recorder`]'s for
//! progress notifications. [`Flotilla::restart`] kills a server and starts it again
//! on the same store; [`Flotilla::event_kinds`] reads what happened to an agent.

pub mod client;
pub mod clis;
pub mod cluster;
pub mod gemini;
pub mod git;
pub mod http;
pub mod mock_model;
pub mod postgres;
pub mod procs;
pub mod reply;
pub mod responses;
pub mod script;
pub mod wait;
pub mod wire;

use std::future::{Future, IntoFuture};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientRequest, Request, ServerResult, Tool,
};
use rmcp::service::{PeerRequestOptions, RunningService};
use rmcp::transport::TokioChildProcess;
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;

pub use client::{Progress, Recorder};
pub use git::git;
pub use http::{HttpServer, TOKEN};
pub use mock_model::{MockModel, Recorded, Step};
pub use procs::{kill_quietly, pid_alive, read_pid_file, wait_pid_gone};
pub use wait::eventually;

/// How long a non-blocking tool call may take before the test calls it a hang.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Generous bound for "the agents settle" on a loaded CI machine.
pub const SETTLE_TIMEOUT_S: u64 = 120;

pub const DEFAULT_MODEL: &str = "anthropic:claude-sonnet-4-5";
pub const DEFAULT_CONFIG: &str =
    "[retry]\nmax_retries = 3\ninitial_backoff_ms = 50\nmax_backoff_ms = 200\n";

/// How to start a server.
#[derive(Clone)]
pub struct Builder {
    mock: Option<MockModel>,
    model: Option<String>,
    config: String,
    env: Vec<(String, String)>,
    root: Option<Arc<tempfile::TempDir>>,
    args: Vec<String>,
    user: Option<(u32, u32)>,
}

impl Builder {
    /// Default model for agents (`FLOTILLA_MODEL`).
    pub fn model(mut self, model: &str) -> Self {
        self.model = Some(model.to_string());
        self
    }

    /// Contents of `config.toml` (replaces the default retry settings).
    pub fn config(mut self, config: &str) -> Self {
        self.config = config.to_string();
        self
    }

    /// An extra (or overriding) environment variable.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Start on the directories (and so the store) of an earlier server.
    pub fn root(mut self, root: Arc<tempfile::TempDir>) -> Self {
        self.root = Some(root);
        self
    }

    /// Run the server as this uid and gid, without supplementary groups (the test
    /// must be root and the root directory usable by them).
    pub fn user(mut self, uid: u32, gid: u32) -> Self {
        self.user = Some((uid, gid));
        self
    }

    /// An extra command-line argument.
    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_string());
        self
    }

    /// The server command, ready to spawn, and the root it uses.
    fn command(&self, mock: &MockModel) -> (tokio::process::Command, Arc<tempfile::TempDir>) {
        let root = self
            .root
            .clone()
            .unwrap_or_else(|| Arc::new(tempfile::tempdir().expect("temp dir")));
        let work = root.path().join("work");
        std::fs::create_dir_all(&work).expect("create work dir");
        let config = root.path().join("config.toml");
        std::fs::write(&config, &self.config).expect("write config");
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_flotilla"));
        cmd.arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(root.path().join("data"))
            .args(&self.args)
            .current_dir(&work)
            .env("ANTHROPIC_BASE_URL", mock.url())
            .env("ANTHROPIC_API_KEY", "test-key")
            .env("OPENAI_BASE_URL", mock.openai_url())
            .env("OPENAI_API_KEY", "test-key")
            .env(
                "FLOTILLA_MODEL",
                self.model.as_deref().unwrap_or(DEFAULT_MODEL),
            )
            .env("RUST_LOG", "flotilla=debug")
            .kill_on_drop(true);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        if let Some((uid, gid)) = self.user {
            // std drops the supplementary groups when it sets the uid.
            cmd.uid(uid).gid(gid);
        }
        (cmd, root)
    }

    /// Run the server with stdin closed and expect it to exit by itself (e.g. on a
    /// start-up error). Returns its exit status and stderr.
    pub async fn run_to_exit(self) -> (std::process::ExitStatus, String) {
        let mock = match &self.mock {
            Some(m) => m.clone(),
            None => MockModel::start().await,
        };
        let (mut cmd, _root) = self.command(&mock);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let out = tokio::time::timeout(CALL_TIMEOUT, cmd.output())
            .await
            .expect("flotilla did not exit")
            .expect("run flotilla");
        (
            out.status,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Start the server with raw pipes (no MCP client): for tests that write lines to
    /// its stdin themselves. Returns the child (stdin, stdout and stderr piped), its
    /// root and its mock.
    pub async fn spawn_raw(self) -> (tokio::process::Child, Arc<tempfile::TempDir>, MockModel) {
        let mock = match &self.mock {
            Some(m) => m.clone(),
            None => MockModel::start().await,
        };
        let (mut cmd, root) = self.command(&mock);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        (cmd.spawn().expect("spawn flotilla"), root, mock)
    }

    /// Start the server with `stdin` as its standard input (e.g. a terminal), stdout
    /// discarded and stderr piped.
    pub async fn spawn_with_stdin(
        self,
        stdin: Stdio,
    ) -> (tokio::process::Child, Arc<tempfile::TempDir>, MockModel) {
        let mock = match &self.mock {
            Some(m) => m.clone(),
            None => MockModel::start().await,
        };
        let (mut cmd, root) = self.command(&mock);
        cmd.stdin(stdin)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        (cmd.spawn().expect("spawn flotilla"), root, mock)
    }

    /// Use this mock instead of a fresh one.
    pub fn mock(mut self, mock: MockModel) -> Self {
        self.mock = Some(mock);
        self
    }

    pub async fn start(self) -> Flotilla {
        let mock = match &self.mock {
            Some(m) => m.clone(),
            None => MockModel::start().await,
        };
        let (cmd, root) = self.command(&mock);
        let work = root.path().join("work");
        let requests_at_start = mock.requests().len();
        let (transport, stderr) = TokioChildProcess::builder(cmd)
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn flotilla");
        let pid = transport.id().expect("flotilla pid");
        let log = Arc::new(Mutex::new(Vec::new()));
        if let Some(stderr) = stderr {
            let log = log.clone();
            tokio::spawn(async move {
                let mut lines = tokio::io::BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    eprintln!("[flotilla] {line}");
                    let mut log = log.lock().expect("log lock");
                    log.push(line);
                    if log.len() > 400 {
                        log.remove(0);
                    }
                }
            });
        }
        let recorder = Recorder::default();
        let client = tokio::time::timeout(
            CALL_TIMEOUT,
            recorder.clone().serve(recorder.counting(transport)),
        )
        .await
        .expect("flotilla did not finish the MCP handshake in time")
        .expect("MCP handshake with flotilla");
        Flotilla {
            client,
            recorder,
            mock,
            root,
            work,
            pid,
            log,
            settings: Some(self),
            requests_at_start,
        }
    }
}

/// A running flotilla server, its MCP client and its mock model.
pub struct Flotilla {
    pub client: RunningService<RoleClient, Recorder>,
    pub recorder: Recorder,
    pub mock: MockModel,
    root: Arc<tempfile::TempDir>,
    work: PathBuf,
    /// The server process id.
    pub pid: u32,
    log: Arc<Mutex<Vec<String>>>,
    /// How it was started (to start it again); `None` for an HTTP client.
    settings: Option<Builder>,
    /// How many requests the mock had seen when this server started.
    requests_at_start: usize,
}

impl Flotilla {
    pub fn builder() -> Builder {
        Builder {
            mock: None,
            model: None,
            config: DEFAULT_CONFIG.to_string(),
            env: Vec::new(),
            root: None,
            args: Vec::new(),
            user: None,
        }
    }

    /// A server with the default settings and a fresh mock.
    pub async fn start() -> Self {
        Self::builder().start().await
    }

    /// The temp directory holding `config.toml` and `work/` (outside the server's cwd).
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// The server's current directory.
    pub fn work(&self) -> &Path {
        &self.work
    }

    /// The last lines the server logged to stderr.
    pub fn log_tail(&self, n: usize) -> String {
        let log = self.log.lock().expect("log lock");
        let start = log.len().saturating_sub(n);
        log[start..].join("\n")
    }

    /// Calls a tool and returns the raw result; panics on a protocol error or a hang.
    pub async fn call_raw(&self, tool: &str, args: Value) -> CallToolResult {
        let params = params(tool, args.clone());
        let limit = call_limit(tool, &args);
        match tokio::time::timeout(limit, self.client.call_tool(params)).await {
            Err(_) => panic!(
                "{tool}({args}) did not answer within {limit:?}\nserver log:\n{}",
                self.log_tail(40)
            ),
            Ok(Err(e)) => panic!(
                "{tool}({args}) failed at the protocol level: {e}\nserver log:\n{}",
                self.log_tail(40)
            ),
            Ok(Ok(result)) => result,
        }
    }

    /// Calls a tool that must succeed; returns its JSON result.
    pub async fn call(&self, tool: &str, args: Value) -> Value {
        let result = self.call_raw(tool, args.clone()).await;
        assert_ne!(
            result.is_error,
            Some(true),
            "{tool}({args}) returned an error: {}",
            text_of(&result)
        );
        json_of(&result)
    }

    /// Calls a tool that must fail with `isError: true`; returns the message.
    pub async fn call_err(&self, tool: &str, args: Value) -> String {
        let result = self.call_raw(tool, args.clone()).await;
        let text = text_of(&result);
        assert_eq!(
            result.is_error,
            Some(true),
            "{tool}({args}) should have failed with isError, got: {text}"
        );
        assert!(
            !text.trim().is_empty(),
            "{tool}({args}): empty error message"
        );
        text
    }

    /// Calls a tool with a progress token; returns its JSON result and every progress
    /// notification received for that token.
    pub async fn call_with_progress(&self, tool: &str, args: Value) -> (Value, Vec<Progress>) {
        let limit = call_limit(tool, &args);
        let request = ClientRequest::CallToolRequest(Request::new(params(tool, args.clone())));
        let handle = self
            .client
            .peer()
            .send_cancellable_request(request, PeerRequestOptions::no_options())
            .await
            .expect("send request");
        let token = handle.progress_token.clone();
        let response = tokio::time::timeout(limit, handle.await_response())
            .await
            .unwrap_or_else(|_| panic!("{tool}({args}) did not answer within {limit:?}"))
            .unwrap_or_else(|e| panic!("{tool}({args}) failed: {e}"));
        let ServerResult::CallToolResult(result) = response else {
            panic!("{tool}: unexpected response {response:?}");
        };
        assert_ne!(result.is_error, Some(true), "{tool}: {}", text_of(&result));
        // Notifications sent just before the response may still be in their handlers.
        self.recorder.caught_up().await;
        (json_of(&result), self.recorder.progress_for(&token))
    }

    /// The server's tools, sorted by name.
    pub async fn tools(&self) -> Vec<Tool> {
        let mut tools = tokio::time::timeout(CALL_TIMEOUT, self.client.list_all_tools())
            .await
            .expect("tools/list timed out")
            .expect("tools/list");
        tools.sort_by(|a, b| a.name.cmp(&b.name));
        tools
    }

    // ---- shorthands for the fleet tools ----

    pub async fn create(&self, name: &str, task: &str) -> Value {
        self.call("create_agent", json!({"name": name, "task": task}))
            .await
    }

    pub async fn command(&self, agent: &str, task: &str) -> Value {
        self.call("command_agent", json!({"agent": agent, "task": task}))
            .await
    }

    pub async fn status(&self, agent: &str) -> Value {
        self.call("get_agent_status", json!({"agent": agent})).await
    }

    pub async fn output(&self, agent: &str) -> Value {
        self.call("get_agent_output", json!({"agent": agent})).await
    }

    /// The work directory `create_agent` reported, made absolute.
    pub fn agent_dir(&self, created: &Value) -> PathBuf {
        let dir = created["workdir"]
            .as_str()
            .unwrap_or_else(|| panic!("create_agent result has no workdir: {created}"));
        let dir = Path::new(dir);
        if dir.is_absolute() {
            dir.to_path_buf()
        } else {
            self.work.join(dir)
        }
    }

    /// `get_agent_output` for one command (1-based).
    pub async fn output_of(&self, agent: &str, command: u64) -> Value {
        self.call(
            "get_agent_output",
            json!({"agent": agent, "command": command}),
        )
        .await
    }

    /// Waits (one `wait_for_agents` call) until all `agents` settle; panics on timeout.
    pub async fn wait_all(&self, agents: &[&str]) -> Value {
        let result = self
            .call(
                "wait_for_agents",
                json!({"agents": agents, "until": "all", "timeout_s": SETTLE_TIMEOUT_S}),
            )
            .await;
        assert_eq!(
            result["timed_out"],
            false,
            "agents {agents:?} did not settle: {result}\nserver log:\n{}",
            self.log_tail(40)
        );
        result
    }

    /// `get_agent_status` once `pred` holds for it ([`eventually`]).
    pub async fn status_until(
        &self,
        agent: &str,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        eventually(&format!("{agent}: {what}"), async || {
            let status = self.status(agent).await;
            if pred(&status) {
                Ok(status)
            } else {
                Err(format!("status {status}"))
            }
        })
        .await
    }

    /// The kinds of `agent`'s events, oldest first (up to 500); only those in `only`
    /// unless it is empty.
    pub async fn event_kinds(&self, agent: &str, only: &[&str]) -> Vec<String> {
        let mut args = json!({"agent": agent, "limit": 500});
        if !only.is_empty() {
            args["kinds"] = json!(only);
        }
        let page = self.call("get_agent_events", args).await;
        kinds(&page).into_iter().map(str::to_string).collect()
    }

    /// The mock's requests routed to `key` since this server started: for a
    /// restarted server, none of the previous one's.
    pub fn requests_since_start(&self, key: &str) -> Vec<Recorded> {
        self.mock
            .requests()
            .into_iter()
            .skip(self.requests_at_start)
            .filter(|r| r.key.as_deref() == Some(key))
            .collect()
    }

    /// A handle on the root directories, to start another server on them.
    pub fn root_handle(&self) -> Arc<tempfile::TempDir> {
        self.root.clone()
    }

    /// SIGKILL the server (no chance to clean up) and wait until it is gone. Returns
    /// its root and mock, to start a new server on the same store.
    pub async fn kill(self) -> (Arc<tempfile::TempDir>, MockModel) {
        kill_quietly(self.pid as i32);
        assert!(
            wait_pid_gone(self.pid as i32, Duration::from_secs(10)).await,
            "flotilla survived SIGKILL"
        );
        (self.root, self.mock)
    }

    /// Kill the server with SIGKILL and start it again on the same data directory and
    /// mock, with the same settings; see [`Restart`] for the variations.
    pub fn restart(self) -> Restart {
        let next = self
            .settings
            .clone()
            .expect("restart() is for stdio servers; an HTTP server restarts itself");
        Restart {
            old: self,
            next,
            close_within: None,
        }
    }

    /// Closes the MCP session (stdin) and waits for the server process to exit.
    pub async fn shutdown(self, timeout: Duration) -> bool {
        let pid = self.pid as i32;
        let _ = tokio::time::timeout(timeout, self.client.cancel()).await;
        wait_pid_gone(pid, timeout).await
    }
}

/// A restart on the same data directory and mock model, awaited to get the new
/// server: `fl.restart().await`. By default the old server is SIGKILLed (no chance
/// to clean up) and the new one starts with the same settings.
#[must_use = "nothing restarts until the restart is awaited"]
pub struct Restart {
    old: Flotilla,
    next: Builder,
    close_within: Option<Duration>,
}

impl Restart {
    /// An extra command-line argument for the new server.
    pub fn arg(mut self, arg: &str) -> Self {
        self.next = self.next.arg(arg);
        self
    }

    /// End the old server by closing its MCP session instead, and require it to exit
    /// by itself within `within`.
    pub fn after_closing(mut self, within: Duration) -> Self {
        self.close_within = Some(within);
        self
    }
}

impl IntoFuture for Restart {
    type Output = Flotilla;
    type IntoFuture = Pin<Box<dyn Future<Output = Flotilla>>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let Restart {
                old,
                next,
                close_within,
            } = self;
            let (root, mock) = match close_within {
                None => old.kill().await,
                Some(within) => {
                    let kept = (old.root.clone(), old.mock.clone());
                    assert!(
                        old.shutdown(within).await,
                        "flotilla did not exit within {within:?} of its session closing"
                    );
                    kept
                }
            };
            next.root(root).mock(mock).start().await
        })
    }
}

/// Builds `CallToolRequestParams` from a JSON object.
pub fn params(tool: &str, args: Value) -> CallToolRequestParams {
    let Value::Object(map) = args else {
        panic!("tool arguments must be a JSON object, got {args}");
    };
    CallToolRequestParams::new(tool.to_string()).with_arguments(map)
}

fn call_limit(tool: &str, args: &Value) -> Duration {
    if tool == "wait_for_agents" {
        let wait = args["timeout_s"].as_u64().unwrap_or(50).min(600);
        Duration::from_secs(wait + 60)
    } else {
        CALL_TIMEOUT
    }
}

/// All text content of a result, joined.
pub fn text_of(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text())
        .map(|t| t.text.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The JSON of a result: `structuredContent`, which must agree with the text content
/// when that is JSON too; or the text content parsed as JSON.
pub fn json_of(result: &CallToolResult) -> Value {
    let text = text_of(result);
    let from_text = serde_json::from_str::<Value>(&text).ok();
    match (&result.structured_content, from_text) {
        (Some(structured), Some(text_json)) => {
            assert_eq!(
                structured, &text_json,
                "structuredContent and text content disagree"
            );
            structured.clone()
        }
        (Some(structured), None) => structured.clone(),
        (None, Some(text_json)) => text_json,
        (None, None) => panic!("tool result is neither structured nor JSON text: {text}"),
    }
}

/// The names in a `list_agents`/`wait_for_agents` row list.
pub fn names(rows: &Value) -> Vec<String> {
    let mut names: Vec<String> = rows
        .as_array()
        .unwrap_or_else(|| panic!("expected an array of rows, got {rows}"))
        .iter()
        .map(|r| r["name"].as_str().unwrap_or_default().to_string())
        .collect();
    names.sort();
    names
}

/// The kinds in an event list (`get_agent_events`, or the dashboard's agent detail).
pub fn kinds(page: &Value) -> Vec<&str> {
    page["events"]
        .as_array()
        .unwrap_or_else(|| panic!("expected a list of events, got {page}"))
        .iter()
        .map(|e| {
            e["kind"]
                .as_str()
                .unwrap_or_else(|| panic!("an event without a kind: {e}"))
        })
        .collect()
}

/// The row for `name` in a row list.
pub fn row<'a>(rows: &'a Value, name: &str) -> &'a Value {
    rows.as_array()
        .and_then(|rs| rs.iter().find(|r| r["name"] == name))
        .unwrap_or_else(|| panic!("no row for {name} in {rows}"))
}

/// `name`'s row in the answer of a `wait_for_agents`.
pub fn row_of<'a>(waited: &'a Value, name: &str) -> &'a Value {
    row(&waited["agents"], name)
}

/// Whether a `files_written`/`files_read` list names `rel` (relative or absolute form).
pub fn lists_path(list: &Value, rel: &str) -> bool {
    list.as_array()
        .unwrap_or_else(|| panic!("expected a file list, got {list}"))
        .iter()
        .filter_map(Value::as_str)
        .any(|p| p.trim_start_matches("./") == rel || p.ends_with(&format!("/{rel}")))
}

/// Asserts `message` mentions every one of `needles` (case-insensitive).
#[track_caller]
pub fn assert_mentions(message: &str, needles: &[&str]) {
    let lower = message.to_lowercase();
    for needle in needles {
        assert!(
            lower.contains(&needle.to_lowercase()),
            "message should mention {needle:?}: {message}"
        );
    }
}
