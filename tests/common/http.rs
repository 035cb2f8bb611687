//! The HTTP side of the harness: the real binary started with `--listen 127.0.0.1:0`,
//! its bound address read from its log, and rmcp Streamable HTTP clients connected to
//! it. Each client is a [`Flotilla`], so every shorthand (`call`, `create`,
//! `wait_all`, `call_with_progress`, …) works over HTTP as over stdio.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::ServiceExt;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use tokio::io::AsyncBufReadExt;

use super::{Builder, CALL_TIMEOUT, Flotilla, MockModel, Recorder, wait_pid_gone};

/// The token the HTTP tests give the server in `FLOTILLA_TOKEN`.
pub const TOKEN: &str = "test-token-0123456789abcdef";

/// A flotilla process serving HTTP.
pub struct HttpServer {
    pub child: tokio::process::Child,
    pub pid: u32,
    /// `http://127.0.0.1:PORT/mcp`
    pub url: String,
    pub addr: SocketAddr,
    pub mock: MockModel,
    pub root: Arc<tempfile::TempDir>,
    /// Every line it logged (the last 400).
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Builder {
    /// `FLOTILLA_TOKEN` set to [`TOKEN`].
    pub fn with_test_token(self) -> Self {
        self.env("FLOTILLA_TOKEN", TOKEN)
    }

    /// Start the server with `--listen 127.0.0.1:0` (unless another `--listen` was
    /// given) and wait for the address it logs.
    pub async fn start_http(mut self) -> HttpServer {
        if !self.args.iter().any(|a| a == "--listen") {
            self.args.push("--listen".into());
            self.args.push("127.0.0.1:0".into());
        }
        let mock = match &self.mock {
            Some(m) => m.clone(),
            None => MockModel::start().await,
        };
        let (mut cmd, root) = self.command(&mock);
        if !self.env.iter().any(|(k, _)| k == "FLOTILLA_TOKEN") {
            // Only the test decides whether there is a token.
            cmd.env_remove("FLOTILLA_TOKEN");
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn flotilla");
        let pid = child.id().expect("flotilla pid");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = tokio::sync::oneshot::channel();
        {
            let log = log.clone();
            tokio::spawn(async move {
                let mut tx = Some(tx);
                let mut lines = tokio::io::BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    eprintln!("[flotilla {pid}] {line}");
                    if let Some(at) = line.find("listening on http://") {
                        let url = line[at + "listening on ".len()..]
                            .split_whitespace()
                            .next()
                            .unwrap_or_default()
                            .to_string();
                        if let Some(tx) = tx.take() {
                            let _ = tx.send(url);
                        }
                    }
                    let mut log = log.lock().expect("log lock");
                    log.push(line);
                    if log.len() > 400 {
                        log.remove(0);
                    }
                }
            });
        }
        let url = match tokio::time::timeout(CALL_TIMEOUT, rx).await {
            Ok(Ok(url)) => url,
            _ => panic!(
                "flotilla did not log its address\n{}",
                log.lock().expect("log lock").join("\n")
            ),
        };
        let addr = url
            .trim_start_matches("http://")
            .trim_end_matches("/mcp")
            .parse()
            .unwrap_or_else(|e| panic!("bad address in {url}: {e}"));
        HttpServer {
            child,
            pid,
            url,
            addr,
            mock,
            root,
            log,
        }
    }
}

impl HttpServer {
    /// A server with the test token and a fresh mock.
    pub async fn start() -> Self {
        Flotilla::builder().with_test_token().start_http().await
    }

    /// An MCP client connected with [`TOKEN`].
    pub async fn client(&self) -> Flotilla {
        self.client_with(Recorder::default()).await
    }

    /// An MCP client with its own recorder (to read its progress notifications).
    pub async fn client_with(&self, recorder: Recorder) -> Flotilla {
        let transport = StreamableHttpClientTransport::from_config(
            StreamableHttpClientTransportConfig::with_uri(self.url.clone()).auth_header(TOKEN),
        );
        let client = tokio::time::timeout(
            CALL_TIMEOUT,
            recorder.clone().serve(recorder.counting(transport)),
        )
        .await
        .expect("MCP handshake over HTTP timed out")
        .expect("MCP handshake over HTTP");
        Flotilla {
            client,
            recorder,
            mock: self.mock.clone(),
            root: self.root.clone(),
            work: self.root.path().join("work"),
            pid: self.pid,
            log: self.log.clone(),
            settings: None,
            requests_at_start: 0,
        }
    }

    /// The last lines the server logged.
    pub fn log_tail(&self, n: usize) -> String {
        let log = self.log.lock().expect("log lock");
        let start = log.len().saturating_sub(n);
        log[start..].join("\n")
    }

    /// Whether the server has logged a line containing `needle`.
    pub fn logged(&self, needle: &str) -> bool {
        self.log
            .lock()
            .expect("log lock")
            .iter()
            .any(|l| l.contains(needle))
    }

    /// Send SIGTERM; wait for the process to exit and return its status.
    pub async fn terminate(mut self, timeout: Duration) -> std::process::ExitStatus {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .expect("send SIGTERM");
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(status) => status.expect("wait for flotilla"),
            Err(_) => {
                let tail = self.log_tail(40);
                let _ = self.child.kill().await;
                panic!("flotilla did not exit within {timeout:?} of SIGTERM\n{tail}");
            }
        }
    }

    /// SIGKILL and wait until gone.
    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
        assert!(wait_pid_gone(self.pid as i32, Duration::from_secs(10)).await);
    }
}
