//! The server under test: the real release `flotilla` binary, spawned over stdio (or,
//! with [`Server::start_http`], serving Streamable HTTP) and driven by rmcp's client. Its stdout is wrapped to count the bytes it sends (what a
//! client receives on the wire); `/proc` gives its resident memory and CPU time.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ClientRequest, PingRequest,
    ProgressNotificationParam,
};
use rmcp::service::{NotificationContext, Peer, RunningService};
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, ReadBuf};

use crate::store::Store;

/// The binary cargo built for this bench (same profile: `cargo bench` builds it).
pub const FLOTILLA: &str = env!("CARGO_BIN_EXE_flotilla");

/// Which server binary to run and with which extra arguments (`--server`,
/// `--server-arg`): by default the one cargo built, with none.
pub static COMMAND: std::sync::OnceLock<(PathBuf, Vec<String>)> = std::sync::OnceLock::new();

pub fn command() -> (PathBuf, Vec<String>) {
    COMMAND
        .get()
        .cloned()
        .unwrap_or_else(|| (PathBuf::from(FLOTILLA), Vec::new()))
}

/// The environment for a fleet without run slots (`--max-running 0`; flotilla's default
/// is 16). An environment variable rather than the flag, so that `--server-arg
/// --max-running N` still wins and an older `--server` binary is not refused.
pub const UNLIMITED: &[(&str, &str)] = &[("FLOTILLA_MAX_RUNNING", "0")];

/// Counts progress notifications and their bytes (they reach the client, but MCP
/// clients show them in the UI rather than feed them to the model).
#[derive(Clone, Default)]
pub struct Handler {
    pub progress: Arc<AtomicU64>,
    pub progress_bytes: Arc<AtomicU64>,
}

impl ClientHandler for Handler {
    async fn on_progress(
        &self,
        param: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.progress.fetch_add(1, Ordering::Relaxed);
        let n = param.message.as_deref().map_or(0, str::len) + 60;
        self.progress_bytes.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// An `AsyncRead` that counts what passes through it.
struct Counting<R> {
    inner: R,
    bytes: Arc<AtomicU64>,
}

impl<R: AsyncRead + Unpin> AsyncRead for Counting<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &r {
            let n = (buf.filled().len() - before) as u64;
            self.bytes.fetch_add(n, Ordering::Relaxed);
        }
        r
    }
}

pub struct Server {
    pub client: RunningService<RoleClient, Handler>,
    pub handler: Handler,
    pub pid: u32,
    child: tokio::process::Child,
    /// Bytes the server wrote to stdout so far (stdio only).
    pub wire_bytes: Arc<AtomicU64>,
    /// Serving HTTP: stopped with SIGTERM, not by closing the session.
    http: bool,
    _dir: tempfile::TempDir,
    pub work: PathBuf,
    /// Where the fleet store lives (`FLOTILLA_DATA_DIR`).
    pub data: PathBuf,
}

impl Server {
    /// Start flotilla in a fresh temp directory (`setup` may put files in its work
    /// directory first), pointed at the mock model at `mock_url`.
    pub async fn start(mock_url: &str, setup: impl FnOnce(&Path)) -> Self {
        Self::start_env(mock_url, setup, &[]).await
    }

    /// Like [`Server::start`], with extra environment variables, e.g. [`UNLIMITED`].
    pub async fn start_env(
        mock_url: &str,
        setup: impl FnOnce(&Path),
        env: &[(&str, &str)],
    ) -> Self {
        Self::start_on(Store::Sqlite, mock_url, setup, env).await
    }

    /// Like [`Server::start_env`], keeping its fleet in `store` (one node).
    pub async fn start_on(
        store: Store,
        mock_url: &str,
        setup: impl FnOnce(&Path),
        env: &[(&str, &str)],
    ) -> Self {
        let (program, mut extra) = command();
        extra.extend(store.args());
        Self::start_with(&program, &extra, env, mock_url, setup).await
    }

    /// One node of a fleet on PostgreSQL: `--store db --node name`, working in the
    /// shared directory `work` (so every node serves the same agents), with `config`
    /// (e.g. a `[cluster]` table) as its config file.
    pub async fn start_node(
        mock_url: &str,
        db: &str,
        name: &str,
        work: &Path,
        config: &str,
        env: &[(&str, &str)],
    ) -> Self {
        let (program, mut extra) = command();
        extra.extend(["--store", db, "--node", name].map(String::from));
        let config = config.to_string();
        let setup = move |own: &Path| {
            let dir = own.parent().expect("the server's temp dir");
            std::fs::write(dir.join("config.toml"), config).expect("node config");
        };
        Self::start_in(&program, &extra, env, mock_url, Some(work), setup).await
    }

    /// Like [`Server::start_env`], with an explicit binary and extra arguments.
    pub async fn start_with(
        program: &Path,
        extra: &[String],
        env: &[(&str, &str)],
        mock_url: &str,
        setup: impl FnOnce(&Path),
    ) -> Self {
        Self::start_in(program, extra, env, mock_url, None, setup).await
    }

    /// Like [`Server::start_with`], working in `shared` (when given) rather than in a
    /// work directory of its own.
    async fn start_in(
        program: &Path,
        extra: &[String],
        env: &[(&str, &str)],
        mock_url: &str,
        shared: Option<&Path>,
        setup: impl FnOnce(&Path),
    ) -> Self {
        let (dir, work, mut cmd) = command_in(program, extra, mock_url, setup);
        if let Some(shared) = shared {
            cmd.current_dir(shared);
        }
        let work = shared.map_or(work, Path::to_path_buf);
        cmd.envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        let pid = child.id().expect("flotilla pid");
        let stdout = child.stdout.take().expect("stdout");
        let stdin = child.stdin.take().expect("stdin");
        let stderr = child.stderr.take().expect("stderr");
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("[flotilla {pid}] {line}");
            }
        });
        let wire_bytes = Arc::new(AtomicU64::new(0));
        let reader = Counting {
            inner: stdout,
            bytes: wire_bytes.clone(),
        };
        let handler = Handler::default();
        let client = tokio::time::timeout(
            Duration::from_secs(30),
            handler.clone().serve((reader, stdin)),
        )
        .await
        .expect("MCP handshake timed out")
        .expect("MCP handshake");
        Self {
            client,
            handler,
            pid,
            child,
            wire_bytes,
            http: false,
            data: dir.path().join("data"),
            _dir: dir,
            work,
        }
    }

    /// Like [`Server::start_on`], but serving MCP Streamable HTTP on a free loopback port
    /// (`--listen 127.0.0.1:0`, a bearer token), driven by rmcp's HTTP client.
    pub async fn start_http_on(store: Store, mock_url: &str, setup: impl FnOnce(&Path)) -> Self {
        const TOKEN: &str = "bench-token-0123456789abcdef";
        let (program, mut extra) = command();
        extra.extend(store.args());
        extra.extend(["--listen".to_string(), "127.0.0.1:0".to_string()]);
        let (dir, work, mut cmd) = command_in(&program, &extra, mock_url, setup);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .env("FLOTILLA_TOKEN", TOKEN)
            .env("RUST_LOG", "warn,flotilla::http=info");
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        let pid = child.id().expect("flotilla pid");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let mut tx = Some(tx);
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(at) = line.find("listening on http://") {
                    let url = line[at + "listening on ".len()..]
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_string();
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(url);
                    }
                    continue;
                }
                eprintln!("[flotilla {pid}] {line}");
            }
        });
        let url = tokio::time::timeout(Duration::from_secs(30), rx)
            .await
            .expect("flotilla did not log its address")
            .expect("flotilla exited before listening");
        let transport = rmcp::transport::StreamableHttpClientTransport::from_config(
            rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig::with_uri(
                url,
            )
            .auth_header(TOKEN),
        );
        let handler = Handler::default();
        let client =
            tokio::time::timeout(Duration::from_secs(30), handler.clone().serve(transport))
                .await
                .expect("MCP handshake timed out")
                .expect("MCP handshake");
        Self {
            client,
            handler,
            pid,
            child,
            wire_bytes: Arc::new(AtomicU64::new(0)),
            http: true,
            data: dir.path().join("data"),
            _dir: dir,
            work,
        }
    }

    pub fn peer(&self) -> Peer<RoleClient> {
        self.client.peer().clone()
    }

    /// Call a tool; panics on a protocol error or after `timeout`.
    pub async fn call(&self, tool: &str, args: Value) -> CallToolResult {
        call(&self.peer(), tool, args).await
    }

    /// Call a tool that must succeed; its JSON.
    pub async fn call_ok(&self, tool: &str, args: Value) -> Value {
        let r = self.call(tool, args.clone()).await;
        assert_ne!(
            r.is_error,
            Some(true),
            "{tool}({args}) failed: {}",
            text_of(&r)
        );
        json_of(&r)
    }

    pub async fn ping(&self) {
        self.client
            .send_request(ClientRequest::PingRequest(PingRequest::default()))
            .await
            .expect("ping");
    }

    pub async fn tool_names(&self) -> Vec<String> {
        self.tools()
            .await
            .into_iter()
            .map(|t| t.name.to_string())
            .collect()
    }

    /// The server's `tools/list`.
    pub async fn tools(&self) -> Vec<rmcp::model::Tool> {
        self.client.list_all_tools().await.expect("tools/list")
    }

    /// Resident memory (VmRSS) and its peak (VmHWM), in bytes.
    pub fn rss(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .expect("read /proc/PID/status");
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
                * 1024
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// Threads of the server process.
    pub fn threads(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("Threads:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse().ok())
            })
            .unwrap_or(0)
    }

    /// CPU time (user + system, all threads) the server has used, in seconds.
    pub fn cpu_s(&self) -> f64 {
        cpu_s_of(&format!("/proc/{}/stat", self.pid))
    }

    /// Bytes of every file under the data directory (the store and its WAL).
    pub fn data_bytes(&self) -> u64 {
        fn walk(p: &Path) -> u64 {
            let Ok(rd) = std::fs::read_dir(p) else {
                return 0;
            };
            rd.flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => walk(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        }
        walk(&self.data)
    }

    /// CPU seconds per thread name (`tokio-rt-worker`, `flotilla-store`, ...).
    pub fn cpu_by_thread(&self) -> std::collections::BTreeMap<String, f64> {
        let mut by = std::collections::BTreeMap::new();
        let Ok(dir) = std::fs::read_dir(format!("/proc/{}/task", self.pid)) else {
            return by;
        };
        for task in dir.flatten() {
            let stat = task.path().join("stat");
            let text = std::fs::read_to_string(&stat).unwrap_or_default();
            let name = text
                .split_once('(')
                .and_then(|(_, r)| r.rsplit_once(')'))
                .map_or("?", |(n, _)| n)
                .to_string();
            *by.entry(name).or_insert(0.0) += cpu_s_of(&stat.to_string_lossy());
        }
        by
    }

    /// SIGKILL the process (a node dying mid-work) and reap it.
    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.client.cancel()).await;
    }

    /// Close the session (stdin EOF) and wait for the process to exit.
    pub async fn stop(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(5), self.client.cancel()).await;
        if self.http {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        if tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .is_err()
        {
            eprintln!("flotilla {} did not exit within 20 s; killing it", self.pid);
            let _ = self.child.kill().await;
        }
    }
}

/// A temp directory (with `work/` prepared by `setup` and an empty config) and the
/// server command for it; stdin and stdout are for the caller to set.
fn command_in(
    program: &Path,
    extra: &[String],
    mock_url: &str,
    setup: impl FnOnce(&Path),
) -> (tempfile::TempDir, PathBuf, tokio::process::Command) {
    let dir = tempfile::tempdir().expect("temp dir");
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).expect("work dir");
    setup(&work);
    // `setup` may have written one beside the work directory.
    let config = dir.path().join("config.toml");
    if !config.exists() {
        std::fs::write(&config, "").expect("config");
    }

    let mut cmd = tokio::process::Command::new(program);
    cmd.arg("--config")
        .arg(&config)
        .args(extra)
        .current_dir(&work)
        .env("ANTHROPIC_BASE_URL", mock_url)
        .env("ANTHROPIC_API_KEY", "bench")
        .env("FLOTILLA_MODEL", "anthropic:claude-sonnet-4-5")
        .env("RUST_LOG", "warn")
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .env_remove("FLOTILLA_PROMPTS_DIR")
        .env_remove("FLOTILLA_CONFIG")
        .env_remove("FLOTILLA_LISTEN")
        .env_remove("FLOTILLA_TOKEN")
        .env_remove("FLOTILLA_MAX_RUNNING")
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // The fleet store goes in the temp dir too, never in the user's data dir.
    if !extra
        .iter()
        .any(|a| a == "--ephemeral" || a.starts_with("--data-dir"))
    {
        cmd.env("FLOTILLA_DATA_DIR", dir.path().join("data"));
    }
    (dir, work, cmd)
}

/// CPU seconds (utime + stime, USER_HZ = 100) from a `/proc/.../stat` file.
pub fn cpu_s_of(path: &str) -> f64 {
    stat_seconds(path, 14, 15)
}

/// Fields `a` + `b` (1-based, clock ticks, USER_HZ = 100) of a `/proc/.../stat` file, in
/// seconds: utime/stime are 14/15, the waited-for children's cutime/cstime 16/17.
pub fn stat_seconds(path: &str, a: usize, b: usize) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    let Some((_, rest)) = stat.rsplit_once(") ") else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the command name: state is field 3 (1-based).
    let ticks = |i: usize| {
        f.get(i - 3)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (ticks(a) + ticks(b)) as f64 / 100.0
}

pub fn params(tool: &str, args: Value) -> CallToolRequestParams {
    let Value::Object(map) = args else {
        panic!("tool arguments must be an object");
    };
    CallToolRequestParams::new(tool.to_string()).with_arguments(map)
}

/// One tool call through a (cloneable) peer.
pub async fn call(peer: &Peer<RoleClient>, tool: &str, args: Value) -> CallToolResult {
    let limit = if tool == "wait_for_agents" {
        Duration::from_secs(args["timeout_s"].as_u64().unwrap_or(50) + 60)
    } else {
        Duration::from_secs(120)
    };
    let response = tokio::time::timeout(limit, peer.call_tool_once(params(tool, args.clone())))
        .await
        .unwrap_or_else(|_| panic!("{tool}({args}) did not answer within {limit:?}"))
        .unwrap_or_else(|e| panic!("{tool}({args}) failed at the protocol level: {e}"));
    match response {
        CallToolResponse::Complete(r) => r,
        _ => panic!("{tool}: unexpected non-complete response"),
    }
}

/// The text content of a result (what MCP clients usually give the model).
pub fn text_of(r: &CallToolResult) -> String {
    r.content
        .iter()
        .filter_map(|c| c.as_text())
        .map(|t| t.text.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Bytes of `structuredContent`, compact JSON (0 when absent).
pub fn structured_bytes(r: &CallToolResult) -> usize {
    r.structured_content
        .as_ref()
        .map_or(0, |v| serde_json::to_string(v).map_or(0, |s| s.len()))
}

pub fn json_of(r: &CallToolResult) -> Value {
    match &r.structured_content {
        Some(v) => v.clone(),
        None => serde_json::from_str(&text_of(r)).unwrap_or(Value::Null),
    }
}
