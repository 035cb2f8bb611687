//! The CLI runtime's seam, driven through a scripted stand-in for Claude Code
//! (tests/fixtures/fake-claude) where the real CLI cannot be made to fail on demand:
//! its stream becomes flotilla's events, its session carries across commands, and a
//! crash, garbage, a hang, a spent budget, an interrupt, a delete and a SIGKILL of
//! flotilla each end the way a user needs (never a hang, never an orphan process).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::*;
use serde_json::{Value, json};

/// The fake CLI.
fn fake() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fake-claude")
}

/// A server whose provider `fake` is the fake CLI, with a stall timeout of `stall_s`.
async fn start(stall_s: u64, extra_env: &[(&str, &str)]) -> (Flotilla, PathBuf) {
    let script = fake();
    let root = std::sync::Arc::new(tempfile::tempdir().unwrap());
    // In the CLI's state directory: the one place besides its work directory that
    // the sandboxed session may write.
    let state = root.path().join("claude-state");
    let log = state.join("fake-cli.log");
    std::fs::create_dir_all(&state).unwrap();
    let config = format!(
        "[limits]\nstall_timeout_s = {stall_s}\n\n[providers.fake]\nkind = \"claude-code\"\ncommand = \"{}\"\nenv = {{ FAKE_CLI_LOG = \"{}\", CLAUDE_CONFIG_DIR = \"{}\" }}\n",
        script.display(),
        log.display(),
        state.display()
    );
    let mut builder = Flotilla::builder().root(root).config(&config);
    for (k, v) in extra_env {
        builder = builder.env(k, v);
    }
    (builder.start().await, log)
}

fn read_log(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}

/// The argument after `flag` in the `n`th (0-based) logged invocation.
fn arg_of(log: &Path, n: usize, flag: &str) -> Option<String> {
    let text = read_log(log);
    let line = text.lines().filter(|l| l.starts_with("ARGS")).nth(n)?;
    let words: Vec<&str> = line
        .split(" [")
        .skip(1)
        .map(|w| w.trim_end_matches(']'))
        .collect();
    let at = words.iter().position(|w| *w == flag)?;
    words.get(at + 1).map(|w| w.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cli_agent_runs_commands_in_one_session() {
    let (fl, log) = start(60, &[]).await;
    let created = fl
        .call(
            "create_agent",
            json!({"name": "cc", "model": "fake", "task": "write hello.txt", "role": "builder"}),
        )
        .await;
    assert_eq!(created["status"], "running", "{created}");
    let done = fl.wait_all(&["cc"]).await;
    let row = row(&done["agents"], "cc");
    assert_eq!(row["status"], "idle", "{done}");
    let dir = fl.agent_dir(&created);
    assert_eq!(
        std::fs::read_to_string(dir.join("hello.txt")).unwrap(),
        "hi from the fake CLI\n"
    );
    let status = fl.status("cc").await;
    assert_eq!(status["model"], "fake", "{status}");
    assert_eq!(status["steps"], 2, "{status}");
    assert_eq!(status["tool_calls"], 1, "{status}");
    // Claude Code's own total (0.0021) is what the command cost.
    let cost = status["cost_usd"].as_f64().unwrap();
    assert!((cost - 0.0021).abs() < 1e-6, "{status}");
    let output = fl.output("cc").await;
    assert!(
        output.to_string().contains("done: wrote hello.txt"),
        "{output}"
    );
    let kinds = fl.event_kinds("cc", &[]).await;
    for kind in [
        "session",
        "model",
        "tool_call",
        "tool_result",
        "charged",
        "finished",
    ] {
        assert!(kinds.iter().any(|k| k == kind), "no {kind} in {kinds:?}");
    }

    // The flags the session ran with.
    let session = arg_of(&log, 0, "--session-id").expect("a new session id");
    assert_eq!(
        arg_of(&log, 0, "--output-format").as_deref(),
        Some("stream-json")
    );
    let allowed = arg_of(&log, 0, "--allowedTools").unwrap();
    assert!(
        allowed.contains("Write") && allowed.contains("Bash"),
        "{allowed}"
    );
    let system = arg_of(&log, 0, "--append-system-prompt").unwrap();
    assert!(system.contains("Your name: cc"), "{system}");
    assert!(read_log(&log).contains("--strict-mcp-config"));
    assert!(!read_log(&log).contains("dangerously"));

    // The second command resumes the same session.
    fl.command("cc", "and again").await;
    fl.wait_all(&["cc"]).await;
    assert_eq!(arg_of(&log, 1, "--resume"), Some(session));
    assert_eq!(arg_of(&log, 1, "--session-id"), None);
    assert!(read_log(&log).contains("PROMPT and again"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scout_session_cannot_edit() {
    let (fl, log) = start(60, &[]).await;
    fl.call(
        "create_agent",
        json!({"name": "sc", "model": "fake", "task": "look around", "role": "scout"}),
    )
    .await;
    fl.wait_all(&["sc"]).await;
    let denied = arg_of(&log, 0, "--disallowedTools").unwrap();
    for tool in ["Write", "Edit", "Bash", "WebFetch"] {
        assert!(denied.contains(tool), "{tool} not denied: {denied}");
    }
    let allowed = arg_of(&log, 0, "--allowedTools").unwrap();
    assert!(!allowed.contains("Write"), "{allowed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_and_garbage_fail_with_what_the_cli_said() {
    let (fl, _) = start(60, &[]).await;
    fl.call(
        "create_agent",
        json!({"name": "crash", "model": "fake", "task": "CRASH"}),
    )
    .await;
    fl.call(
        "create_agent",
        json!({"name": "junk", "model": "fake", "task": "GARBAGE"}),
    )
    .await;
    let done = fl.wait_all(&["crash", "junk"]).await;
    let crash = row(&done["agents"], "crash");
    assert_eq!(crash["status"], "failed", "{done}");
    let error = crash["last_error"].as_str().unwrap();
    assert_mentions(
        error,
        &[
            "claude-code session failed",
            "exited with code 3",
            "fake CLI crashed",
        ],
    );
    // Its credential never comes back out.
    assert!(!error.contains("test-key"), "{error}");
    let junk = row(&done["agents"], "junk");
    assert_eq!(junk["status"], "failed", "{done}");
    assert_mentions(
        junk["last_error"].as_str().unwrap(),
        &["not JSON", "this is not json"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_session_is_a_stall_and_its_process_dies() {
    let (fl, _) = start(2, &[]).await;
    let created = fl
        .call(
            "create_agent",
            json!({"name": "mute", "model": "fake", "task": "HANG"}),
        )
        .await;
    let pid = hang_pid(&fl, &created).await;
    let done = fl.wait_all(&["mute"]).await;
    let mute = row(&done["agents"], "mute");
    assert_eq!(mute["status"], "failed", "{done}");
    assert_mentions(
        mute["last_error"].as_str().unwrap(),
        &["stalled", "output from claude-code"],
    );
    assert!(
        wait_pid_gone(pid, Duration::from_secs(10)).await,
        "the CLI survived its stall"
    );
}

/// The host pid of the fake CLI's `HANG` process, once it is up.
async fn hang_pid(fl: &Flotilla, created: &Value) -> i32 {
    read_pid_file(&fl.agent_dir(created).join("hang.pid")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_budget_stops_the_session() {
    let (fl, _) = start(60, &[]).await;
    fl.call(
        "create_agent",
        json!({"name": "spender", "model": "fake", "task": "SPEND", "max_cost_usd": 1.0}),
    )
    .await;
    let done = fl.wait_all(&["spender"]).await;
    let row = row(&done["agents"], "spender");
    assert_eq!(row["status"], "failed", "{done}");
    assert!(
        row["last_error"].as_str().unwrap().starts_with("budget:"),
        "{done}"
    );
    let status = fl.status("spender").await;
    // Each turn costs $0.615 at sonnet's price: stopped at the second, not the fiftieth.
    assert!(status["steps"].as_u64().unwrap() <= 3, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupt_and_delete_kill_the_session() {
    let (fl, _) = start(600, &[]).await;
    // Each in a directory of its own, so each leaves its own pid file.
    for dir in ["a", "b"] {
        std::fs::create_dir_all(fl.work().join(dir)).unwrap();
    }
    let a = fl
        .call(
            "create_agent",
            json!({"name": "a", "model": "fake", "task": "HANG", "workdir": "a"}),
        )
        .await;
    let b = fl
        .call(
            "create_agent",
            json!({"name": "b", "model": "fake", "task": "HANG", "workdir": "b"}),
        )
        .await;
    let pid_a = hang_pid(&fl, &a).await;
    let pid_b = hang_pid(&fl, &b).await;
    fl.call(
        "command_agent",
        json!({"agent": "a", "task": "never mind", "interrupt": true}),
    )
    .await;
    assert!(
        wait_pid_gone(pid_a, Duration::from_secs(10)).await,
        "interrupt left the CLI running"
    );
    fl.call("delete_agent", json!({"agent": "b"})).await;
    assert!(
        wait_pid_gone(pid_b, Duration::from_secs(10)).await,
        "delete left the CLI running"
    );
    let done = fl.wait_all(&["a"]).await;
    assert_eq!(row(&done["agents"], "a")["status"], "idle", "{done}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_crash_of_flotilla_the_session_is_resumed_not_rerun() {
    let (fl, log) = start(600, &[]).await;
    let created = fl
        .call(
            "create_agent",
            json!({"name": "long", "model": "fake", "task": "HANG then finish"}),
        )
        .await;
    let pid = hang_pid(&fl, &created).await;
    let session = arg_of(&log, 0, "--session-id").unwrap();
    std::fs::remove_file(fl.agent_dir(&created).join("hang.pid")).unwrap();
    let fl = fl.restart().await;
    assert!(
        wait_pid_gone(pid, Duration::from_secs(10)).await,
        "the CLI outlived flotilla"
    );
    // The restarted server resumes the same session, telling it what happened.
    eventually("the resumed invocation", async || {
        let log = read_log(&log);
        if log.lines().filter(|l| l.starts_with("PROMPT")).count() >= 2 {
            Ok(())
        } else {
            Err(log)
        }
    })
    .await;
    assert_eq!(arg_of(&log, 1, "--resume"), Some(session));
    assert!(
        read_log(&log).contains("flotilla restarted while you were working"),
        "{}",
        read_log(&log)
    );
    let status = fl.status("long").await;
    assert_eq!(status["status"], "running", "{status}");
    fl.call("delete_agent", json!({"agent": "long"})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flotilla_checks_a_session_answer_against_the_schema() {
    let (fl, log) = start(60, &[]).await;
    fl.call(
        "create_agent",
        json!({"name": "typed", "model": "fake", "task": "SCHEMA",
               "output_schema": {"type": "object", "required": ["file"], "properties": {"file": {"type": "string"}}}}),
    )
    .await;
    let done = fl.wait_all(&["typed"]).await;
    assert_eq!(row(&done["agents"], "typed")["status"], "idle", "{done}");
    let out = fl.output("typed").await;
    assert_eq!(out["output_json"], json!({"file": "a.txt"}), "{out}");
    // The schema went to the CLI too, and the miss was sent back in the same session.
    assert!(
        arg_of(&log, 0, "--json-schema")
            .unwrap()
            .contains("\"file\"")
    );
    assert!(arg_of(&log, 1, "--resume").is_some(), "{}", read_log(&log));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_unsupported_cli_is_refused_at_create() {
    let fl = Flotilla::builder()
        .config("[providers.gone]\nkind = \"codex\"\ncommand = \"/nonexistent/codex\"\n")
        .start()
        .await;
    let err = fl
        .call_err("create_agent", json!({"name": "x", "model": "gone"}))
        .await;
    assert_mentions(&err, &["was not found", "npm install -g @openai/codex"]);

    let script = fake();
    let fl = Flotilla::builder()
        .config(&format!(
            "[providers.old]\nkind = \"claude-code\"\ncommand = \"{}\"\nenv = {{ FAKE_CLI_VERSION = \"1.0.3\" }}\n",
            script.display()
        ))
        .start()
        .await;
    let err = fl
        .call_err("create_agent", json!({"name": "x", "model": "old"}))
        .await;
    assert_mentions(&err, &["version 1.0.3", "supports 2.1.0"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scout_session_runs_read_only() {
    let (fl, _) = start(60, &[]).await;
    // The fake writes hello.txt in its work directory whatever it is told: the
    // read-only sandbox of an agent with no writing tool refuses it.
    let created = fl
        .call(
            "create_agent",
            json!({"name": "ro", "model": "fake", "task": "write hello.txt", "role": "scout"}),
        )
        .await;
    fl.wait_all(&["ro"]).await;
    assert!(
        !fl.agent_dir(&created).join("hello.txt").exists(),
        "a scout's session wrote in its work directory"
    );
}
