//! Process checks for tests that prove flotilla kills what it started: is a pid alive,
//! wait for it to go, read a pid a shell command wrote to a file.

use std::path::Path;
use std::time::Duration;

use super::wait::{eventually, poll};

/// True while `pid` names a live process (a zombie counts as gone: it has exited and
/// only waits to be reaped).
pub fn pid_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name, which may contain spaces.
        Ok(stat) => stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X'),
        Err(_) if Path::new("/proc/self").exists() => false,
        Err(_) => nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok(),
    }
}

/// Waits up to `timeout` for `pid` to be gone; returns whether it went. (How soon is
/// what the callers assert, so the limit is theirs.)
pub async fn wait_pid_gone(pid: i32, timeout: Duration) -> bool {
    poll(timeout, async || !pid_alive(pid)).await.is_ok()
}

/// Waits for `path` to hold a pid (one line, written by e.g. `echo $$ > pid.txt`) and
/// returns it as this test sees it. flotilla runs commands in their own PID namespace,
/// where `$$` is a small number: the process is found by its namespace pid (the last
/// `NSpid` entry) and its working directory, the directory of `path`.
pub async fn read_pid_file(path: &Path) -> i32 {
    let cwd = path
        .parent()
        .and_then(|d| std::fs::canonicalize(d).ok())
        .expect("pid file directory");
    let what = format!("a running process's pid in {}", path.display());
    eventually(&what, async || {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let pid = text.trim().parse::<i32>().ok();
        pid.and_then(|pid| host_pid(pid, &cwd))
            .ok_or_else(|| format!("{text:?}"))
    })
    .await
}

/// Kills `pid` if a test leaves it behind (cleanup only, never part of an assertion).
pub fn kill_quietly(pid: i32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// The pid, in this test's namespace, of the process that is `inner` in its own PID
/// namespace (or in ours) and runs in `cwd`.
pub fn host_pid(inner: i32, cwd: &Path) -> Option<i32> {
    let mut plain = None;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        let Some(nspids) = status.lines().find_map(|l| l.strip_prefix("NSpid:")) else {
            continue;
        };
        let nspids: Vec<i32> = nspids
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        if nspids.last() != Some(&inner) {
            continue;
        }
        if std::fs::read_link(entry.path().join("cwd")).ok().as_deref() != Some(cwd) {
            continue;
        }
        if nspids.len() > 1 {
            return Some(pid);
        }
        plain = Some(pid);
    }
    plain
}
