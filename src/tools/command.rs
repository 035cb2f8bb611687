//! `run_command`: `sh -c` in the work directory, in its own process group, with stdin
//! closed, stdout and stderr read concurrently into one capped buffer, a timeout, and
//! cancellation.
//!
//! Lifetime rule: nothing the command starts outlives the call. On timeout or cancel the
//! whole process group is killed (SIGKILL) before the shell is reaped; when the shell
//! exits normally, output is drained for a moment and then the group is killed too, so a
//! background grandchild holding the pipes can neither hang the call nor linger. A drop
//! guard kills the group if the future is dropped midway.
//!
//! The process is started by [`crate::sandbox`]: in the server, through flotilla's
//! launcher, in its own PID namespace (processes that leave the group with `setsid` die
//! with the namespace, and with flotilla) with a private `/proc`, and always without the
//! provider key variables in its environment.

use std::collections::VecDeque;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use schemars::JsonSchema;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::task::JoinSet;

use super::text::thousands;
use super::{ToolContext, ToolError, ToolOutcome, ToolResult};

pub const DEFAULT_TIMEOUT_S: u64 = 120;
pub const MAX_TIMEOUT_S: u64 = 3600;
/// Bytes of output kept from the start and from the end.
const HEAD_BYTES: usize = 14_000;
const TAIL_BYTES: usize = 14_000;
/// How long to keep reading after the shell exits before killing what is left.
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(500);
/// How long to wait for the pipes to close after the group was killed.
const DRAIN_AFTER_KILL: Duration = Duration::from_secs(1);

pub const DESCRIPTION: &str = "Run a shell command with `sh -c` in the work directory and return its exit \
code and combined stdout+stderr. stdin is closed (no interactive input). Default timeout 120 s, max 3600 s; \
on timeout the command and all its child processes are killed. Background processes do not outlive the \
command. Output over about 28,000 characters keeps the start and the end. A nonzero exit code is \
reported as an error result.";

/// Arguments of `run_command`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunCommandInput {
    /// The shell command line, e.g. `cargo test 2>&1 | tail -50`.
    pub command: String,
    /// Seconds before the command is killed (default 120, max 3600).
    #[serde(default)]
    #[schemars(range(min = 1, max = 3600))]
    pub timeout_s: Option<u64>,
}

/// Combined output: the first and last bytes, and how many there were in all.
#[derive(Debug, Default)]
struct Capture {
    head: Vec<u8>,
    tail: VecDeque<u8>,
    total: usize,
}

impl Capture {
    fn push(&mut self, mut chunk: &[u8]) {
        self.total += chunk.len();
        if self.head.len() < HEAD_BYTES {
            let n = chunk.len().min(HEAD_BYTES - self.head.len());
            self.head.extend_from_slice(&chunk[..n]);
            chunk = &chunk[n..];
        }
        if chunk.len() >= TAIL_BYTES {
            self.tail.clear();
            self.tail.extend(&chunk[chunk.len() - TAIL_BYTES..]);
        } else {
            self.tail.extend(chunk);
            let excess = self.tail.len().saturating_sub(TAIL_BYTES);
            self.tail.drain(..excess);
        }
    }

    fn render(&self) -> String {
        let head = String::from_utf8_lossy(&self.head);
        let tail: Vec<u8> = self.tail.iter().copied().collect();
        let kept = self.head.len() + tail.len();
        if kept == self.total {
            return format!("{head}{}", String::from_utf8_lossy(&tail));
        }
        // Cut points may split a UTF-8 sequence: drop the partial pieces.
        let head = head.trim_end_matches('\u{FFFD}');
        let start = tail.iter().position(|b| b & 0xC0 != 0x80).unwrap_or(0);
        let tail = String::from_utf8_lossy(&tail[start..]);
        format!(
            "{head}\n\n[... {} bytes of output cut from the middle ({} total) ...]\n\n{tail}",
            thousands(self.total - kept),
            thousands(self.total)
        )
    }
}

type Shared = Arc<Mutex<Capture>>;

fn lock(c: &Shared) -> std::sync::MutexGuard<'_, Capture> {
    c.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn pump(mut reader: impl AsyncRead + Unpin, capture: Shared) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => lock(&capture).push(&buf[..n]),
        }
    }
}

/// Kills the command's process group when told to, and on drop (if the call's future
/// is dropped, `kill_on_drop` alone would only kill the shell).
struct GroupKiller(Option<Pid>);

impl GroupKiller {
    /// SIGKILL the group (once); true if anything in it was still alive.
    fn kill(&mut self) -> bool {
        // ESRCH (nobody left in the group) is the normal case after a clean exit.
        self.0
            .take()
            .is_some_and(|pgid| killpg(pgid, Signal::SIGKILL).is_ok())
    }
}

impl Drop for GroupKiller {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// Wait until both pipes reach EOF, or `limit` passes.
async fn drain(readers: &mut JoinSet<()>, limit: Duration) -> bool {
    tokio::time::timeout(limit, async {
        while readers.join_next().await.is_some() {}
    })
    .await
    .is_ok()
}

enum End {
    Exited(ExitStatus),
    WaitFailed(std::io::Error),
    TimedOut,
    Cancelled,
}

/// `sh -c command` in the agent's work directory, in its sandbox and a process group
/// of its own, its output piped.
fn spawn(command: &str, ctx: &ToolContext) -> Result<tokio::process::Child, ToolError> {
    crate::sandbox::shell_command(command, &ctx.root, ctx.sandbox, &ctx.agent, &ctx.visible)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            ToolError::Model(format!(
                "could not start `sh -c` in the work directory: {e}"
            ))
        })
}

/// `run_command`: run, capture, enforce the timeout and cancellation.
pub async fn run_command(input: RunCommandInput, ctx: &ToolContext) -> ToolResult {
    if input.command.trim().is_empty() {
        return Err(ToolError::Model(
            "`command` is empty; give a shell command line, e.g. `ls -la`".into(),
        ));
    }
    let timeout_s = input
        .timeout_s
        .unwrap_or(DEFAULT_TIMEOUT_S)
        .clamp(1, MAX_TIMEOUT_S);
    let mut child = spawn(&input.command, ctx)?;
    let mut group = GroupKiller(
        child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw),
    );
    let capture: Shared = Arc::default();
    let mut readers = JoinSet::new();
    if let Some(out) = child.stdout.take() {
        readers.spawn(pump(out, capture.clone()));
    }
    if let Some(err) = child.stderr.take() {
        readers.spawn(pump(err, capture.clone()));
    }

    let end = tokio::select! {
        r = child.wait() => match r {
            Ok(status) => End::Exited(status),
            Err(e) => End::WaitFailed(e),
        },
        () = tokio::time::sleep(Duration::from_secs(timeout_s)) => End::TimedOut,
        () = ctx.cancel.cancelled() => End::Cancelled,
    };

    let mut lingering = false;
    match end {
        End::Exited(_) | End::WaitFailed(_) => {
            tokio::select! {
                _ = drain(&mut readers, DRAIN_AFTER_EXIT) => {}
                () = ctx.cancel.cancelled() => {}
            }
            lingering = group.kill();
        }
        End::TimedOut | End::Cancelled => {
            let _ = group.kill();
            // Reap the shell; SIGKILL makes this immediate.
            let _ = tokio::time::timeout(DRAIN_AFTER_KILL, child.wait()).await;
        }
    }
    drain(&mut readers, DRAIN_AFTER_KILL).await;
    drop(readers); // aborts a reader still blocked on a pipe someone outside the group holds

    let output = lock(&capture).render();
    let output = if output.trim().is_empty() {
        "(no output)".to_string()
    } else {
        output.trim_end().to_string()
    };
    let (status_line, is_error) = match end {
        End::Exited(status) => match (status.code(), status_signal(&status)) {
            (Some(0), _) => ("Exit code 0.".to_string(), false),
            (Some(code), _) => (format!("Exit code {code}."), true),
            (None, Some(sig)) => (format!("Killed by signal {sig}."), true),
            (None, None) => ("Exited abnormally.".to_string(), true),
        },
        End::WaitFailed(e) => (format!("Could not wait for the command: {e}."), true),
        End::TimedOut => (
            format!(
                "Timed out after {timeout_s}s; the command and all its child processes were \
                 killed. Raise `timeout_s` (max {MAX_TIMEOUT_S}) if it needs longer."
            ),
            true,
        ),
        End::Cancelled => (
            "Cancelled; the command and all its child processes were killed.".to_string(),
            true,
        ),
    };
    let mut content = format!("{status_line}\n{output}");
    if lingering {
        content.push('\n');
        content.push_str(crate::sandbox::LINGERING_NOTE);
    }
    Ok(ToolOutcome {
        content,
        is_error,
        ..ToolOutcome::default()
    })
}

fn status_signal(status: &ExitStatus) -> Option<i32> {
    use std::os::unix::process::ExitStatusExt;
    status.signal()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn capture_keeps_head_and_tail() {
        let mut c = Capture::default();
        c.push(b"hello ");
        c.push(b"world");
        assert_eq!(c.render(), "hello world");

        let mut c = Capture::default();
        c.push(&vec![b'a'; HEAD_BYTES]);
        for _ in 0..100 {
            c.push(&vec![b'm'; 1000]);
        }
        c.push(&vec![b'z'; TAIL_BYTES - 10]);
        c.push(b"0123456789");
        let r = c.render();
        assert!(r.starts_with(&"a".repeat(HEAD_BYTES)));
        assert!(r.ends_with("zzz0123456789"), "{}", &r[r.len() - 40..]);
        assert!(r.contains("100,000 bytes of output cut"), "{r}");
        assert_eq!(c.total, HEAD_BYTES + 100_000 + TAIL_BYTES);
    }

    #[test]
    fn capture_handles_one_huge_chunk() {
        let mut c = Capture::default();
        let mut big = vec![b'x'; HEAD_BYTES + 50_000];
        big.extend_from_slice(b"END");
        c.push(&big);
        assert_eq!(c.head.len(), HEAD_BYTES);
        assert_eq!(c.tail.len(), TAIL_BYTES);
        assert!(c.render().ends_with("xEND"));
    }
}
