//! Regression tests for the holes a hostile probe found (issue #9), through the real
//! binary: provider keys read through `/proc`, detached processes outliving a SIGKILLed
//! server, the jail under a symlink-swap race, FIFOs, and work directories outside the
//! allowed roots.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::json;

const KEY: &str = "sk-ant-PROBE-7f3a91c4";
const EXTRA_KEY: &str = "sk-extra-PROBE-55e2d0b8";

/// Every byte under `dir`, for "the key is nowhere in the store" checks.
fn all_bytes(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(all_bytes(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.extend(bytes);
        }
    }
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_cannot_read_provider_keys_by_any_route() {
    let config = format!(
        "{DEFAULT_CONFIG}[providers.extra]\nkind = \"openai\"\n\
         base_url = \"http://127.0.0.1:9/v1\"\napi_key_env = \"EXTRA_PROVIDER_KEY\"\n"
    );
    let fl = Flotilla::builder()
        .env("ANTHROPIC_API_KEY", KEY)
        .env("EXTRA_PROVIDER_KEY", EXTRA_KEY)
        .config(&config)
        .start()
        .await;
    // Every route a command has: its own environment, its parent's, every process in
    // /proc (flotilla's pid by number too), after trying to unmount the private /proc.
    let probe = format!(
        "env; echo ppid=$PPID; echo procs=$(ls /proc | grep -c '^[0-9]'); \
         for f in /proc/self/environ /proc/$PPID/environ /proc/1/environ /proc/{pid}/environ \
         /proc/[0-9]*/environ; do tr '\\0' '\\n' < \"$f\" 2>/dev/null; done; \
         cat /proc/{pid}/cmdline 2>/dev/null; umount /proc 2>&1; umount -l /proc 2>&1; \
         for f in /proc/[0-9]*/environ; do tr '\\0' '\\n' < \"$f\" 2>/dev/null; done; \
         grep -r PROBE /proc/{pid}/ 2>/dev/null | head -3; echo end-of-probe",
        pid = fl.pid
    );
    fl.mock.script(
        "[keys]",
        vec![
            Step::tool("run_command", json!({"command": probe})),
            Step::text("done"),
        ],
    );
    fl.create("prober", "[keys] look for keys").await;
    fl.wait_all(&["prober"]).await;

    let requests = fl.mock.requests_for("[keys]");
    assert_eq!(requests.len(), 2, "{requests:#?}");
    let result = &requests[1].tool_results()[0];
    assert!(
        result.content.contains("end-of-probe"),
        "the probe did not run: {result:?}"
    );
    for key in [KEY, EXTRA_KEY] {
        assert!(
            !result.content.contains(key),
            "a command read a provider key: {}",
            result.content
        );
        for r in fl.mock.requests() {
            assert!(!r.body_text().contains(key), "a key reached the model");
        }
        assert!(
            !contains(&all_bytes(&fl.root().join("data")), key),
            "a key is in the store"
        );
        assert!(!fl.log_tail(400).contains(key), "a key is in the log");
    }
    // The command saw only its own namespace.
    let procs: usize = result
        .content
        .lines()
        .find_map(|l| l.strip_prefix("procs="))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(usize::MAX);
    assert!(procs < 10, "the command sees {procs} processes: {result:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_server_kills_its_commands_and_detached_grandchildren() {
    let fl = Flotilla::start().await;
    let script = "setsid sleep 1000 & echo $! > detached.txt; echo $$ > shell.txt; sleep 1000";
    fl.mock.script(
        "[kill9]",
        vec![Step::tool(
            "run_command",
            json!({"command": script, "timeout_s": 3600}),
        )],
    );
    let created = fl.create("victim", "[kill9] sleep").await;
    let dir = fl.agent_dir(&created);
    let shell = read_pid_file(&dir.join("shell.txt")).await;
    let detached = read_pid_file(&dir.join("detached.txt")).await;
    assert!(pid_alive(shell) && pid_alive(detached));

    let _ = fl.kill().await;
    let shell_gone = wait_pid_gone(shell, Duration::from_secs(10)).await;
    let detached_gone = wait_pid_gone(detached, Duration::from_secs(10)).await;
    kill_quietly(shell);
    kill_quietly(detached);
    assert!(
        shell_gone,
        "the command's shell {shell} outlived a SIGKILLed server"
    );
    assert!(
        detached_gone,
        "the detached (setsid) grandchild {detached} outlived a SIGKILLed server"
    );
}

const SECRET: &str = "OUTSIDE-SECRET-93c1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_tools_never_escape_under_a_symlink_swap_race() {
    let fl = Flotilla::start().await;
    let created = fl.call("create_agent", json!({"name": "racer"})).await;
    let work = fl.agent_dir(&created);
    let outside = fl.root().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("f.txt"), SECRET).unwrap();
    std::fs::create_dir_all(work.join("d")).unwrap();
    std::fs::write(work.join("d/f.txt"), "inside\n").unwrap();
    std::os::unix::fs::symlink(&outside, work.join("lnk")).unwrap();

    // `d` flips between a real directory and a symlink to `outside`, as fast as it can.
    let stop = Arc::new(AtomicBool::new(false));
    let swaps = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let swapper = {
        let (work, stop, swaps) = (work.clone(), stop.clone(), swaps.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(20);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let _ = std::fs::rename(work.join("d"), work.join("hold"));
                let _ = std::fs::rename(work.join("lnk"), work.join("d"));
                let _ = std::fs::rename(work.join("d"), work.join("lnk"));
                let _ = std::fs::rename(work.join("hold"), work.join("d"));
                swaps.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let batch = || {
        Step::tools(vec![
            ("read_file", json!({"path": "d/f.txt"})),
            ("write_file", json!({"path": "d/new.txt", "content": "x"})),
            (
                "write_file",
                json!({"path": "d/f.txt", "content": "inside\n"}),
            ),
            (
                "edit_file",
                json!({"path": "d/f.txt", "old_text": "inside", "new_text": "inside!"}),
            ),
            ("list_files", json!({"path": "d"})),
            (
                "search_files",
                json!({"pattern": "SECRET|inside", "path": "d"}),
            ),
        ])
    };
    let rounds = 40;
    let mut steps: Vec<Step> = (0..rounds).map(|_| batch()).collect();
    steps.push(Step::text("done"));
    fl.mock.script("[race]", steps);
    fl.command("racer", "[race] read and write through d").await;
    fl.wait_all(&["racer"]).await;
    stop.store(true, Ordering::Relaxed);
    swapper.join().unwrap();

    let requests = fl.mock.requests_for("[race]");
    assert_eq!(
        requests.len(),
        rounds + 1,
        "the agent did not run every round"
    );
    let results = requests.last().unwrap().tool_results();
    assert_eq!(results.len(), rounds * 6);
    let ok = results.iter().filter(|r| !r.failed()).count();
    for r in &results {
        assert!(!r.content.contains(SECRET), "read outside: {r:?}");
        assert!(
            !r.content.contains(outside.to_str().unwrap()),
            "revealed the outside path: {r:?}"
        );
    }
    let mut names: Vec<String> = std::fs::read_dir(&outside)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["f.txt"], "something was written outside");
    assert_eq!(
        std::fs::read_to_string(outside.join("f.txt")).unwrap(),
        SECRET
    );
    assert!(
        swaps.load(Ordering::Relaxed) > 100,
        "the swapper barely ran"
    );
    assert!(ok > 0, "no call succeeded at all: {results:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifos_and_devices_are_refused_at_once() {
    let fl = Flotilla::start().await;
    let created = fl.call("create_agent", json!({"name": "piper"})).await;
    let work = fl.agent_dir(&created);
    let made = std::process::Command::new("mkfifo")
        .arg(work.join("pipe"))
        .status()
        .unwrap();
    assert!(made.success());
    std::os::unix::fs::symlink("/dev/zero", work.join("zero")).unwrap();
    let outside = fl.root().join("hidden-place");
    std::fs::create_dir_all(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, work.join("out")).unwrap();
    fl.mock.script(
        "[fifo]",
        vec![
            Step::tools(vec![
                ("read_file", json!({"path": "pipe"})),
                ("write_file", json!({"path": "pipe", "content": "x"})),
                (
                    "edit_file",
                    json!({"path": "pipe", "old_text": "a", "new_text": "b"}),
                ),
                ("search_files", json!({"pattern": "x", "path": "pipe"})),
                ("read_file", json!({"path": "zero"})),
                ("read_file", json!({"path": "out/x"})),
            ]),
            Step::text("done"),
        ],
    );
    let started = Instant::now();
    fl.command("piper", "[fifo] read the pipe").await;
    fl.wait_all(&["piper"]).await;
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "a tool blocked"
    );
    let results = fl.mock.requests_for("[fifo]")[1].tool_results();
    for (i, r) in results.iter().take(3).enumerate() {
        assert!(r.failed(), "#{i} {r:?}");
        assert_mentions(&r.content, &["not a regular file"]);
    }
    assert!(!results[3].failed() && results[3].content.contains("No matches"));
    assert!(results[4].failed(), "{:?}", results[4]);
    assert!(results[5].failed(), "{:?}", results[5]);
    for r in &results {
        assert!(
            !r.content.contains("hidden-place"),
            "revealed a target: {r:?}"
        );
        assert!(!r.content.contains("/dev/zero"), "revealed a target: {r:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workdirs_must_lie_under_the_allowed_roots() {
    // Outside the default roots; named for this test alone (the suites share a process).
    let extra_dir = tempfile::Builder::new()
        .prefix("flotilla-roots-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let extra = extra_dir.path().to_path_buf();
    let fl = Flotilla::start().await;
    let tmp = std::env::temp_dir().canonicalize().unwrap();
    for (name, workdir) in [
        ("root", "/".to_string()),
        ("etc", "/etc".to_string()),
        ("extra", extra.join("new").display().to_string()),
    ] {
        let err = fl
            .call_err("create_agent", json!({"name": name, "workdir": workdir}))
            .await;
        assert_mentions(
            &err,
            &[
                "outside",
                "workdir_roots",
                fl.work().canonicalize().unwrap().to_str().unwrap(),
                tmp.to_str().unwrap(),
            ],
        );
    }
    assert!(!extra.join("new").exists(), "a refused workdir was created");
    let list = fl.call("list_agents", json!({})).await;
    assert!(names(&list["agents"]).is_empty(), "{list}");
    // Inside the defaults: the server's directory and the temp directory.
    fl.call(
        "create_agent",
        json!({"name": "here", "workdir": "sub/dir"}),
    )
    .await;
    let in_tmp = fl.root().join("elsewhere");
    fl.call(
        "create_agent",
        json!({"name": "tmp", "workdir": in_tmp.to_str().unwrap()}),
    )
    .await;

    // `[limits] workdir_roots` widens it.
    let config = format!(
        "{DEFAULT_CONFIG}[limits]\nworkdir_roots = [\"{}\"]\n",
        extra.display()
    );
    let wide = Flotilla::builder().config(&config).start().await;
    let created = wide
        .call(
            "create_agent",
            json!({"name": "extra", "workdir": extra.join("new").to_str().unwrap()}),
        )
        .await;
    assert_eq!(created["workdir"], extra.join("new").to_str().unwrap());
}
