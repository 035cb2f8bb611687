//! One CLI process: started through the sandbox's launcher in its own process group,
//! its prompt read from a file as its standard input (so it ends: Codex waits for more
//! input otherwise), its standard output read line by line, the tail of its standard error
//! kept for the error message. Dropping it kills the whole group: nothing outlives
//! the command.

use std::process::Stdio;
use std::sync::{Arc, Mutex};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout};
use tokio::task::JoinHandle;

use crate::sandbox::{SessionLaunch, session_command};

/// Most bytes of standard error kept (the end of it).
const STDERR_TAIL: usize = 4096;

/// A running CLI process.
pub(crate) struct Process {
    child: Child,
    group: Option<Pid>,
    lines: Lines<BufReader<ChildStdout>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    pump: JoinHandle<()>,
}

impl Process {
    /// Start `launch` (its prompt is in the file it reads as standard input).
    pub(crate) fn start(launch: &SessionLaunch<'_>) -> Result<Self, String> {
        let program = launch.argv.first().map_or("", String::as_str);
        let mut child = session_command(launch)
            .map_err(|e| format!("cannot open its prompt file: {e}"))?
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start `{program}`: {e}"))?;
        let group = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw);
        let stdout = child
            .stdout
            .take()
            .ok_or("the CLI has no standard output")?;
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let pump = match child.stderr.take() {
            Some(err) => tokio::spawn(keep_tail(err, stderr.clone())),
            None => tokio::spawn(async {}),
        };
        Ok(Process {
            child,
            group,
            lines: BufReader::new(stdout).lines(),
            stderr,
            pump,
        })
    }

    /// The next line of standard output; `None` at its end.
    pub(crate) async fn next_line(&mut self) -> Result<Option<String>, String> {
        self.lines
            .next_line()
            .await
            .map_err(|e| format!("cannot read the CLI's output: {e}"))
    }

    /// Wait for it to exit (its output has ended): `Ok` for exit code 0, else what
    /// happened with the tail of its standard error.
    pub(crate) async fn wait(&mut self) -> Result<(), String> {
        let status = self
            .child
            .wait()
            .await
            .map_err(|e| format!("cannot wait for the CLI: {e}"))?;
        self.kill();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), &mut self.pump).await;
        if status.success() {
            return Ok(());
        }
        use std::os::unix::process::ExitStatusExt;
        let how = match (status.code(), status.signal()) {
            (Some(code), _) => format!("exited with code {code}"),
            (None, Some(sig)) => format!("was killed by signal {sig}"),
            _ => "exited abnormally".to_string(),
        };
        Err(format!("the CLI {how}{}", self.stderr_tail()))
    }

    /// `: <the end of its standard error>`, or nothing when it printed none.
    pub(crate) fn stderr_tail(&self) -> String {
        let tail = crate::sync::lock(&self.stderr);
        let text = String::from_utf8_lossy(&tail);
        let text = text.trim();
        if text.is_empty() {
            String::new()
        } else {
            format!("; its last output on stderr: {text}")
        }
    }

    /// SIGKILL its whole process group (once).
    pub(crate) fn kill(&mut self) {
        if let Some(group) = self.group.take() {
            let _ = killpg(group, Signal::SIGKILL);
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
        self.pump.abort();
    }
}

/// Read `from` to its end, keeping its last [`STDERR_TAIL`] bytes.
async fn keep_tail(mut from: impl tokio::io::AsyncRead + Unpin, into: Arc<Mutex<Vec<u8>>>) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 {
            break;
        }
        let mut tail = crate::sync::lock(&into);
        tail.extend_from_slice(&buf[..n]);
        if tail.len() > STDERR_TAIL {
            let cut = tail.len() - STDERR_TAIL;
            tail.drain(..cut);
        }
    }
}
