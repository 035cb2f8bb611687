//! The `run_command` sandbox through the real binary: in `workspace-write`, writes to
//! the user's home, to `../`, through a symlink pointing out and from a grandchild all
//! fail while the work directory and `$TMPDIR` take writes; `network: false` cannot
//! reach a TCP server on 127.0.0.1 that `network: true` can; `read-only` refuses every
//! write; `off` is today's behaviour; roles and the config set defaults (and extra
//! writable roots), which an agent's own arguments override.
//!
//! The server's directories live under the target directory here, not under `/tmp`
//! (every sandboxed command may write the temp directories). Each test skips, saying
//! why, only when the kernel cannot enforce the sandbox (no Landlock).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::common::*;
use serde_json::{Value, json};

/// A root outside the temp directories, with `home/`, `tmpdir/` and `outside/`.
fn root_outside_tmp() -> Arc<tempfile::TempDir> {
    let root = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    for dir in ["home", "tmpdir", "outside", "work"] {
        std::fs::create_dir_all(root.path().join(dir)).unwrap();
    }
    Arc::new(root)
}

async fn start(root: &Arc<tempfile::TempDir>, config: &str) -> Flotilla {
    start_with(root, config, &[]).await
}

async fn start_with(root: &Arc<tempfile::TempDir>, config: &str, args: &[&str]) -> Flotilla {
    let path = |d: &str| root.path().join(d).display().to_string();
    let mut builder = Flotilla::builder();
    for a in args {
        builder = builder.arg(a);
    }
    builder
        .root(root.clone())
        .config(&format!("{DEFAULT_CONFIG}{config}"))
        .env("HOME", &path("home"))
        .env("TMPDIR", &path("tmpdir"))
        .start()
        .await
}

/// Whether the sandbox is enforced here; prints why not (and the test then skips).
fn enforced(created: &Value) -> bool {
    match created["warning"].as_str() {
        Some(w) if w.contains("cannot be enforced") => {
            eprintln!("SKIPPED: this kernel cannot enforce the sandbox: {w}");
            false
        }
        _ => true,
    }
}

/// Run `command` as agent `name` (created with `extra` arguments); the tool result.
async fn run_as(fl: &Flotilla, name: &str, extra: Value, command: &str) -> (Value, String) {
    let key = format!("[{name}]");
    fl.mock.script(
        &key,
        vec![
            Step::tool("run_command", json!({"command": command})),
            Step::text("done"),
        ],
    );
    let mut args = json!({"name": name, "task": format!("{key} run it")});
    args.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let created = fl.call("create_agent", args).await;
    fl.wait_all(&[name]).await;
    let requests = fl.mock.requests_for(&key);
    let result = requests[1].tool_results()[0].content.clone();
    (created, result)
}

fn exists(p: PathBuf) -> bool {
    p.exists()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workspace_write_confines_writes_to_the_work_directory_and_temp() {
    let root = root_outside_tmp();
    let cache = root.path().join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    let config = format!(
        "[sandbox]\nwritable_roots = [{:?}]\n",
        cache.display().to_string()
    );
    let fl = start(&root, &config).await;
    let r = root.path();
    std::os::unix::fs::symlink(r.join("outside"), fl.work().join("out-link")).unwrap();
    let script = "echo w > in-work.txt && echo WORK_OK; \
         mkdir -p sub/deep && echo d > sub/deep/f.txt && echo SUBDIR_OK; \
         echo t > \"$TMPDIR/t.txt\" && echo TMP_OK; \
         echo h > \"$HOME/h.txt\" || echo HOME_DENIED; \
         echo p > ../parent.txt || echo PARENT_DENIED; \
         echo s > out-link/s.txt || echo LINK_DENIED; \
         sh -c 'bash -c \"echo g > ../grand.txt\"' || echo GRAND_DENIED; \
         (sleep 0.1; echo b > ../background.txt || echo BG_DENIED) & wait; \
         echo c > ../cache/c.txt && echo CACHE_OK; \
         echo x > /dev/null && echo DEVNULL_OK";
    let (created, out) = run_as(&fl, "builder", json!({}), script).await;
    if !enforced(&created) {
        return;
    }
    for marker in [
        "WORK_OK",
        "SUBDIR_OK",
        "TMP_OK",
        "HOME_DENIED",
        "PARENT_DENIED",
        "LINK_DENIED",
        "GRAND_DENIED",
        "BG_DENIED",
        "CACHE_OK",
        "DEVNULL_OK",
    ] {
        assert!(out.contains(marker), "no {marker} in: {out}");
    }
    // The model reads the command's own error.
    assert!(out.contains("Permission denied"), "{out}");
    let work = fl.work().to_path_buf();
    assert!(exists(work.join("in-work.txt")) && exists(work.join("sub/deep/f.txt")));
    assert!(exists(r.join("tmpdir/t.txt")));
    // [sandbox] writable_roots are writable too.
    assert!(exists(cache.join("c.txt")));
    for denied in [
        r.join("home/h.txt"),
        r.join("parent.txt"),
        r.join("outside/s.txt"),
        r.join("grand.txt"),
        r.join("background.txt"),
    ] {
        assert!(!exists(denied.clone()), "{} was written", denied.display());
    }
    let status = fl.status("builder").await;
    assert_eq!(status["sandbox"], "workspace-write", "{status}");
    // The model is told its limits up front.
    let system = fl.mock.requests_for("[builder]")[0].system_text();
    assert!(
        system.contains("run_command is sandboxed") && system.contains("have no network"),
        "{system}"
    );
}

/// A TCP server on 127.0.0.1 that counts the connections it accepts.
async fn tcp_server() -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            use tokio::io::AsyncWriteExt;
            let _ = socket.write_all(b"PONG\n").await;
        }
    });
    (port, accepted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_network_is_closed_unless_allowed() {
    let root = root_outside_tmp();
    // A role whose front matter opens the network.
    let prompts = root.path().join("prompts");
    std::fs::create_dir_all(prompts.join("agents")).unwrap();
    std::fs::write(
        prompts.join("agents/fetcher.md"),
        "---\ndescription: fetches things\nnetwork: true\n---\nFetch.",
    )
    .unwrap();
    let fl = start_with(
        &root,
        "",
        &["--prompts-dir", &prompts.display().to_string()],
    )
    .await;
    let (port, accepted) = tcp_server().await;
    // bash's /dev/tcp: no tool needed, no file opened.
    let probe = format!(
        "bash -c 'exec 3<>/dev/tcp/127.0.0.1/{port} && head -1 <&3' && echo CONNECTED || echo NO_NETWORK"
    );
    let (created, out) = run_as(&fl, "offline", json!({}), &probe).await;
    if !enforced(&created) {
        return;
    }
    assert!(out.contains("NO_NETWORK") && !out.contains("PONG"), "{out}");
    assert_eq!(accepted.load(Ordering::SeqCst), 0);
    // Its own servers on loopback still work (e.g. a test suite's).
    let local = "python3 -c 'import socket; s=socket.socket(); s.bind((\"127.0.0.1\", 0)); s.listen(); \
                 c=socket.create_connection(s.getsockname()); print(\"LOOPBACK_OK\")' 2>&1 || true";
    let (_, out) = run_as(&fl, "local", json!({}), local).await;
    assert!(
        out.contains("LOOPBACK_OK") || out.contains("python3: not found"),
        "{out}"
    );

    let (_, out) = run_as(&fl, "online", json!({"network": true}), &probe).await;
    assert!(out.contains("PONG") && out.contains("CONNECTED"), "{out}");
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    assert_eq!(
        fl.status("online").await["sandbox"],
        "workspace-write+network"
    );
    let (_, out) = run_as(&fl, "by-role", json!({"role": "fetcher"}), &probe).await;
    assert!(out.contains("PONG"), "{out}");
    // The agent's own argument wins over its role.
    let (_, out) = run_as(
        &fl,
        "overridden",
        json!({"role": "fetcher", "network": false}),
        &probe,
    )
    .await;
    assert!(out.contains("NO_NETWORK"), "{out}");
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_refuses_every_write_and_off_is_unconfined() {
    let root = root_outside_tmp();
    // The config's default is read-only; agents may still ask for another mode
    // (`off` with the operator's consent).
    let fl = start(&root, "[sandbox]\nmode = \"read-only\"\nallow_off = true\n").await;
    let r = root.path();
    let script = "cat /etc/hostname >/dev/null && echo READ_OK; \
         echo w > ro.txt || echo WORK_DENIED; \
         echo t > \"$TMPDIR/ro.txt\" || echo TMP_DENIED; \
         echo t > /tmp/flotilla-ro-probe.txt || echo SLASH_TMP_DENIED; \
         mkdir newdir || echo MKDIR_DENIED; \
         echo x > /dev/null && echo DEVNULL_OK";
    let (created, out) = run_as(&fl, "reader", json!({}), script).await;
    if !enforced(&created) {
        return;
    }
    for marker in [
        "READ_OK",
        "WORK_DENIED",
        "TMP_DENIED",
        "SLASH_TMP_DENIED",
        "MKDIR_DENIED",
        "DEVNULL_OK",
    ] {
        assert!(out.contains(marker), "no {marker} in: {out}");
    }
    assert!(!fl.work().join("ro.txt").exists() && !fl.work().join("newdir").exists());
    assert!(!r.join("tmpdir/ro.txt").exists());
    assert!(!Path::new("/tmp/flotilla-ro-probe.txt").exists());
    assert_eq!(fl.status("reader").await["sandbox"], "read-only");

    // `off`: today's behaviour, nothing confined.
    let (_, out) = run_as(
        &fl,
        "free",
        json!({"sandbox": "off"}),
        "echo o > ../off.txt && echo OFF_OK",
    )
    .await;
    assert!(out.contains("OFF_OK"), "{out}");
    assert!(r.join("off.txt").exists());
    assert_eq!(fl.status("free").await["sandbox"], "off");
    let e = fl
        .call_err("create_agent", json!({"name": "bad", "sandbox": "strict"}))
        .await;
    assert_mentions(
        &e,
        &["sandbox", "workspace-write", "read-only", "off", "strict"],
    );
}
