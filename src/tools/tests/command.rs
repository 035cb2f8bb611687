//! run_command: output, exit codes, stdin, caps, and that nothing it starts survives a
//! timeout, a cancel, a dropped call or the shell's own exit.

use std::time::{Duration, Instant};

use nix::sys::signal::kill;
use nix::unistd::Pid;
use serde_json::json;

use super::Fixture;
use crate::tools::Tool;

/// A command that starts a grandchild which records its pid in `name` and sleeps.
fn grandchild(name: &str) -> String {
    format!("sh -c 'echo $$ > {name}; exec sleep 100' & sleep 100")
}

/// Wait (up to 5s) for a pid file written by a grandchild.
async fn read_pid(f: &Fixture, name: &str) -> i32 {
    let path = f.root().join(name);
    for _ in 0..100 {
        if let Ok(s) = std::fs::read_to_string(&path)
            && let Ok(pid) = s.trim().parse()
        {
            return pid;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{name} was never written");
}

/// Alive = signalable and not a zombie waiting for some other reaper.
fn alive(pid: i32) -> bool {
    if kill(Pid::from_raw(pid), None).is_err() {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit(')')
                .next()
                .and_then(|s| s.split_whitespace().next());
            state != Some("Z")
        }
        Err(_) => false,
    }
}

/// Assert `pid` is gone within 3 seconds.
async fn assert_dies(pid: i32) {
    for _ in 0..60 {
        if !alive(pid) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = kill(Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    panic!("process {pid} survived");
}

#[tokio::test]
async fn reports_exit_code_and_combined_output() {
    let f = Fixture::new();
    let out = f
        .ok(
            "run_command",
            json!({"command": "echo hello; echo oops >&2"}),
        )
        .await;
    assert!(out.content.starts_with("Exit code 0.\n"), "{}", out.content);
    assert!(
        out.content.contains("hello") && out.content.contains("oops"),
        "{}",
        out.content
    );

    let out = f
        .err("run_command", json!({"command": "echo failing; exit 3"}))
        .await;
    assert_eq!(out.content, "Exit code 3.\nfailing");

    let out = f.ok("run_command", json!({"command": "true"})).await;
    assert_eq!(out.content, "Exit code 0.\n(no output)");

    let out = f.ok("run_command", json!({"command": "pwd"})).await;
    assert_eq!(out.content, format!("Exit code 0.\n{}", f.root().display()));

    let out = f.err("run_command", json!({"command": "kill -9 $$"})).await;
    assert!(out.content.contains("signal 9"), "{}", out.content);

    let out = f.err("run_command", json!({"command": "   "})).await;
    assert!(out.content.contains("empty"), "{}", out.content);
}

#[tokio::test]
async fn stdin_is_closed() {
    let f = Fixture::new();
    let start = Instant::now();
    let out = f
        .ok(
            "run_command",
            json!({"command": "cat; echo done", "timeout_s": 20}),
        )
        .await;
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(out.content, "Exit code 0.\ndone");
}

#[tokio::test]
async fn big_output_is_capped_without_deadlock() {
    let f = Fixture::new();
    let cmd = "i=0; while [ $i -lt 20000 ]; do echo \"line $i\"; i=$((i+1)); done; \
               yes err | head -c 200000 >&2; echo last-line";
    let out = f
        .ok("run_command", json!({"command": cmd, "timeout_s": 60}))
        .await;
    assert!(
        out.content.chars().count() <= 30_000,
        "{}",
        out.content.len()
    );
    assert!(
        out.content.starts_with("Exit code 0.\nline 0\nline 1\n"),
        "{}",
        &out.content[..50]
    );
    assert!(
        out.content.ends_with("last-line"),
        "{}",
        &out.content[out.content.len() - 50..]
    );
    assert!(
        out.content.contains("bytes of output cut from the middle"),
        "no cut note"
    );
}

#[tokio::test]
async fn timeout_kills_the_whole_group() {
    let f = Fixture::new();
    let start = Instant::now();
    let out = f
        .err(
            "run_command",
            json!({"command": grandchild("gc.pid"), "timeout_s": 1}),
        )
        .await;
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "{:?}",
        start.elapsed()
    );
    assert!(
        out.content.to_lowercase().contains("timed out after 1s"),
        "{}",
        out.content
    );
    let pid = read_pid(&f, "gc.pid").await;
    assert_dies(pid).await;
}

#[tokio::test]
async fn zero_timeout_is_clamped_to_one_second() {
    let f = Fixture::new();
    let out = f
        .err(
            "run_command",
            json!({"command": "sleep 30", "timeout_s": 0}),
        )
        .await;
    assert!(
        out.content.contains("Timed out after 1s"),
        "{}",
        out.content
    );
}

#[tokio::test]
async fn cancel_returns_promptly_and_kills_the_group() {
    let f = Fixture::new();
    let ctx = f.ctx.clone();
    let cmd = grandchild("gc.pid");
    let task =
        tokio::spawn(async move { Tool::RunCommand.run(json!({"command": cmd}), &ctx).await });
    let pid = read_pid(&f, "gc.pid").await;
    let start = Instant::now();
    f.ctx.cancel.cancel();
    let out = task.await.unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert!(out.is_error);
    assert!(out.content.starts_with("Cancelled"), "{}", out.content);
    assert_dies(pid).await;
}

#[tokio::test]
async fn dropping_the_call_kills_the_group() {
    let f = Fixture::new();
    let input = json!({"command": grandchild("gc.pid")});
    let fut = Tool::RunCommand.run(input, &f.ctx);
    assert!(
        tokio::time::timeout(Duration::from_millis(800), fut)
            .await
            .is_err()
    );
    let pid = read_pid(&f, "gc.pid").await;
    assert_dies(pid).await;
}

#[tokio::test]
async fn background_child_holding_the_pipes_does_not_hang_the_call() {
    let f = Fixture::new();
    let start = Instant::now();
    let out = f
        .ok(
            "run_command",
            json!({"command": "sleep 100 & echo $! > bg.pid; echo started"}),
        )
        .await;
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    assert!(
        out.content.starts_with("Exit code 0.\nstarted"),
        "{}",
        out.content
    );
    assert!(
        out.content.contains("Background processes"),
        "{}",
        out.content
    );
    let pid = read_pid(&f, "bg.pid").await;
    assert_dies(pid).await;
}

#[tokio::test]
async fn background_child_with_redirected_output_is_killed_too() {
    let f = Fixture::new();
    let out = f
        .ok(
            "run_command",
            json!({"command": "sleep 100 > /dev/null 2>&1 & echo $! > bg.pid"}),
        )
        .await;
    assert!(
        out.content.contains("Background processes"),
        "{}",
        out.content
    );
    let pid = read_pid(&f, "bg.pid").await;
    assert_dies(pid).await;
    // A command that leaves nothing behind gets no such note.
    let out = f.ok("run_command", json!({"command": "echo plain"})).await;
    assert_eq!(out.content, "Exit code 0.\nplain");
}
