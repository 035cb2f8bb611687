//! The `run_command` sandbox through the real binary: in `workspace-write`, writes to
//! the user's home, to `../`, through a symlink pointing out and from a grandchild all
//! fail while the work directory and `$TMPDIR` take writes; `network: false` cannot
//! reach a TCP server on 127.0.0.1 that `network: true` can; `read-only` refuses every
//! write; `off` is today's behaviour; roles and the config set defaults (and extra
//! writable roots), which an agent's own arguments override.
//!
//! Most servers' directories live under the target directory here; the private temp
//! directory test puts its root under `/tmp` (where an agent's `/tmp` is its own).
//! Each test skips, saying why, only when the kernel cannot enforce the sandbox (no
//! Landlock) or a tool it needs (python3, ipcmk) is missing. The metadata, temp,
//! hiding and terminal checks run again under an ordinary uid when the suite runs as
//! root.

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
    let id = created["agent_id"].as_str().unwrap().to_string();
    for marker in [
        "WORK_OK",
        "SUBDIR_OK",
        "TMP_OK",
        "HOME_DENIED",
        "LINK_DENIED",
        "CACHE_OK",
        "DEVNULL_OK",
    ] {
        assert!(out.contains(marker), "no {marker} in: {out}");
    }
    // Outside /tmp the work directory's parent is read-only. In a checkout under /tmp
    // the command's /tmp is the agent's private temp directory with the work directory
    // bound back at its path, so `..` is that private directory: the write lands there.
    // Either way the real parent is never written (checked below).
    let in_tmp = ["/tmp", "/var/tmp"].iter().any(|t| r.starts_with(t))
        || std::env::temp_dir()
            .canonicalize()
            .is_ok_and(|t| r.canonicalize().is_ok_and(|r| r.starts_with(t)));
    if !in_tmp {
        for marker in ["PARENT_DENIED", "GRAND_DENIED", "BG_DENIED"] {
            assert!(out.contains(marker), "no {marker} in: {out}");
        }
    }
    // The model reads the command's own error (the read-only mount's, or Landlock's;
    // under /tmp, a path that does not exist in the agent's private /tmp).
    assert!(
        out.contains("Read-only file system")
            || out.contains("Permission denied")
            || (in_tmp && out.contains("Directory nonexistent")),
        "{out}"
    );
    let work = fl.work().to_path_buf();
    assert!(exists(work.join("in-work.txt")) && exists(work.join("sub/deep/f.txt")));
    // $TMPDIR is the agent's private temp directory (kept in the data directory),
    // not the server's.
    assert!(exists(r.join("data/tmp").join(&id).join("t.txt")));
    assert!(!exists(r.join("tmpdir/t.txt")));
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

/// Ask the terminal-injection questions: session id, whether /dev/tty opens, and the
/// errno of `TIOCSTI` / `TIOCLINUX` on a pty made the controlling terminal of a new
/// session (the kernel itself would allow `TIOCSTI` there).
const TERMINAL_PROBE: &str = r#"(: </dev/tty) 2>/dev/null && echo TTY_OPEN || echo NO_TTY
python3 - <<'PY' 2>&1 || echo NO_PYTHON
import os, sys, fcntl, termios, pty
print("SID", os.getsid(0))
m, s = pty.openpty()
name = os.ttyname(s)
pid = os.fork()
if pid == 0:
    os.setsid()
    fd = os.open(name, os.O_RDWR)
    for req, nm, arg in ((termios.TIOCSTI, "STI", b"x"), (0x541C, "LINUX", b"\x06")):
        try:
            fcntl.ioctl(fd, req, arg)
            print(nm, "ALLOWED")
        except OSError as e:
            print(nm, "ERRNO", e.errno)
    sys.stdout.flush()
    os._exit(0)
os.waitpid(pid, 0)
PY"#;

fn assert_no_terminal(out: &str) {
    assert!(out.contains("NO_TTY"), "{out}");
    if out.contains("NO_PYTHON") || out.contains("python3: not found") {
        eprintln!("SKIPPED (the ioctl part): no python3 here");
        return;
    }
    // pid 1 of the namespace (init) leads the command's own session.
    for marker in ["SID 1", "STI ERRNO 1", "LINUX ERRNO 1"] {
        assert!(out.contains(marker), "no {marker} in: {out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_have_no_terminal_and_cannot_inject_input() {
    let root = root_outside_tmp();
    let fl = start(&root, "[sandbox]\nallow_off = true\n").await;
    let (created, out) = run_as(&fl, "typist", json!({}), TERMINAL_PROBE).await;
    if !enforced(&created) {
        return;
    }
    assert_no_terminal(&out);
    // Refused whatever the sandbox mode.
    let (_, out) = run_as(&fl, "free", json!({"sandbox": "off"}), TERMINAL_PROBE).await;
    assert_no_terminal(&out);
}

/// Changes of every kind to `../outside/f.txt` (out of sight when the root is under
/// `/tmp`), harmless ones (same mode, same time) to `/etc/passwd`, and changes to
/// `mine.txt` in the work directory.
const METADATA_PROBE: &str = "chmod \"$(stat -c %a /etc/passwd)\" /etc/passwd || echo SYS_CHMOD_DENIED; \
     touch -m -r /etc/passwd /etc/passwd || echo SYS_UTIME_DENIED; \
     chmod 600 ../outside/f.txt || echo CHMOD_DENIED; \
     chmod u+s ../outside/f.txt || echo SETUID_DENIED; \
     touch -m -d @0 ../outside/f.txt || echo UTIME_DENIED; \
     chown 65534:65534 ../outside/f.txt || echo CHOWN_DENIED; \
     python3 -c \"import os; os.setxattr('../outside/f.txt', 'user.flotilla', b'1')\" || echo XATTR_DENIED; \
     chmod 600 mine.txt && echo MINE_CHMOD_OK || echo MINE_CHMOD_DENIED; \
     touch -m -d @0 mine.txt && echo MINE_UTIME_OK || echo MINE_UTIME_DENIED";

/// The metadata probe as `name` with `extra` arguments; checks `../outside/f.txt`
/// is untouched. Returns the output, or `None` when the sandbox is not enforced.
async fn metadata_probe(fl: &Flotilla, name: &str, extra: Value) -> Option<String> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let outside = fl.root().join("outside/f.txt");
    std::fs::write(&outside, "keep").unwrap();
    std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mine = fl.work().join("mine.txt");
    std::fs::write(&mine, "mine").unwrap();
    std::fs::set_permissions(&mine, std::fs::Permissions::from_mode(0o644)).unwrap();
    // Owned by whoever runs the server, so only the sandbox can refuse the changes.
    let owner = std::fs::metadata(fl.work()).unwrap();
    for file in [&outside, &mine] {
        std::os::unix::fs::chown(file, Some(owner.uid()), Some(owner.gid())).unwrap();
    }
    let before = std::fs::metadata(&outside).unwrap();
    let (created, out) = run_as(fl, name, extra, METADATA_PROBE).await;
    if !enforced(&created) {
        return None;
    }
    for marker in [
        "SYS_CHMOD_DENIED",
        "SYS_UTIME_DENIED",
        "CHMOD_DENIED",
        "SETUID_DENIED",
        "UTIME_DENIED",
        "CHOWN_DENIED",
    ] {
        assert!(out.contains(marker), "no {marker} in: {out}");
    }
    assert!(out.contains("Read-only file system"), "{out}");
    assert!(
        out.contains("XATTR_DENIED") || out.contains("No module"),
        "{out}"
    );
    let after = std::fs::metadata(&outside).unwrap();
    assert_eq!(after.mode(), before.mode(), "{out}");
    assert_eq!(after.mtime(), before.mtime(), "{out}");
    assert_eq!(after.uid(), before.uid(), "{out}");
    Some(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_outside_the_writable_places_changes_not_even_metadata() {
    use std::os::unix::fs::PermissionsExt;
    let root = root_outside_tmp();
    let fl = start(&root, "").await;
    let Some(out) = metadata_probe(&fl, "toucher", json!({})).await else {
        return;
    };
    assert!(
        out.contains("MINE_CHMOD_OK") && out.contains("MINE_UTIME_OK"),
        "{out}"
    );
    // read-only: the work directory is read-only at the mount level too.
    let out = metadata_probe(&fl, "reader", json!({"sandbox": "read-only"}))
        .await
        .unwrap();
    assert!(
        out.contains("MINE_CHMOD_DENIED") && out.contains("MINE_UTIME_DENIED"),
        "{out}"
    );
    let mode = std::fs::metadata(fl.work().join("mine.txt"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o644);
    // The host's SysV shared memory is out of sight (IPC namespace).
    let Ok(made) = std::process::Command::new("ipcmk")
        .args(["-M", "4096"])
        .output()
    else {
        eprintln!("SKIPPED (the IPC part): no ipcmk here");
        return;
    };
    let text = String::from_utf8_lossy(&made.stdout).to_string();
    let id = text
        .split(':')
        .nth(1)
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let (_, out) = run_as(&fl, "ipc", json!({}), "ipcs -m; echo IPCS_DONE").await;
    let _ = std::process::Command::new("ipcrm")
        .args(["-m", &id])
        .output();
    assert!(!id.is_empty(), "ipcmk said: {text}");
    assert!(out.contains("IPCS_DONE"), "{out}");
    assert!(
        !out.lines()
            .any(|l| l.split_whitespace().nth(1) == Some(id.as_str())),
        "segment {id} visible: {out}"
    );
}

/// A root directory under the system temp directory, with `work/` and `outside/`.
fn root_in_tmp() -> Arc<tempfile::TempDir> {
    let root = tempfile::tempdir().expect("temp dir");
    for dir in ["work", "outside", "home"] {
        std::fs::create_dir_all(root.path().join(dir)).unwrap();
    }
    Arc::new(root)
}

/// Two agents, a server whose work directory lies under `/tmp`: each has its own
/// `/tmp`, the work directory still works, and a deleted agent's temp goes with it.
async fn private_temp_checks(fl: &Flotilla) -> bool {
    let unique = format!("flotilla-private-{}.txt", std::process::id());
    let script = format!(
        "echo a > /tmp/{unique} && echo TMP_OK; echo t > \"$TMPDIR/t.txt\" && echo TMPDIR_OK; \
         echo w > in-work-a.txt && echo WORK_OK; echo p > ../escape.txt; echo \"TMPDIR=$TMPDIR\""
    );
    let (created, out) = run_as(fl, "first", json!({}), &script).await;
    if !enforced(&created) {
        return false;
    }
    for marker in ["TMP_OK", "TMPDIR_OK", "WORK_OK", "TMPDIR=/tmp"] {
        assert!(out.contains(marker), "no {marker} in: {out}");
    }
    let id = created["agent_id"].as_str().unwrap().to_string();
    let temp = fl.root().join("data/tmp").join(&id);
    assert!(temp.join(&unique).exists() && temp.join("t.txt").exists());
    assert!(!std::path::Path::new("/tmp").join(&unique).exists());
    assert!(fl.work().join("in-work-a.txt").exists());
    assert!(!fl.root().join("escape.txt").exists(), "{out}");
    let script =
        format!("cat /tmp/{unique} || echo NOT_SEEN; echo w > in-work-b.txt && echo WORK_OK");
    let (_, out) = run_as(fl, "second", json!({}), &script).await;
    assert!(out.contains("NOT_SEEN") && out.contains("WORK_OK"), "{out}");
    fl.call("delete_agent", json!({"agent": "first"})).await;
    assert!(!temp.exists(), "{} is left", temp.display());
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_agent_has_a_private_temp_directory_even_under_tmp() {
    let root = root_in_tmp();
    let fl = Flotilla::builder().root(root.clone()).start().await;
    private_temp_checks(&fl).await;
}

/// What a command prints of the data directory and the config file.
async fn hidden_checks(fl: &Flotilla) -> bool {
    let data = fl.root().join("data");
    let config = fl.root().join("config.toml");
    assert!(std::fs::read_dir(&data).unwrap().next().is_some());
    let script = format!(
        // 2>&1: ls's complaint and the markers on one pipe, in order.
        "echo LIST_START; ls -A {d} 2>&1; echo LIST_END; cat {c}; echo CONFIG_END; \
         echo x > {d}/planted || echo PLANT_DENIED",
        d = data.display(),
        c = config.display()
    );
    let (created, out) = run_as(fl, "snoop", json!({"network": true}), &script).await;
    if !enforced(&created) {
        return false;
    }
    let listing = out
        .split("LIST_START")
        .nth(1)
        .and_then(|s| s.split("LIST_END").next())
        .unwrap_or("?");
    // Empty, or out of sight altogether when the root is under /tmp.
    assert!(
        listing.trim().is_empty() || listing.contains("No such file"),
        "the data directory shows: {out}"
    );
    assert!(
        !out.contains("[retry]") && out.contains("CONFIG_END"),
        "{out}"
    );
    assert!(
        out.contains("PLANT_DENIED") && !data.join("planted").exists(),
        "{out}"
    );
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_cannot_read_the_data_directory_or_the_config() {
    let root = root_outside_tmp();
    let fl = start(&root, "").await;
    hidden_checks(&fl).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_get_a_minimal_environment_with_an_allow_list() {
    let root = root_outside_tmp();
    let fl = Flotilla::builder()
        .root(root.clone())
        .config(&format!(
            "{DEFAULT_CONFIG}[sandbox]\nenv = [\"LISTED_TOKEN\"]\nallow_off = true\n"
        ))
        .env(
            "OTEL_EXPORTER_OTLP_HEADERS",
            "authorization=Bearer otel-sekrit",
        )
        .env("GITHUB_TOKEN", "gh-sekrit")
        .env("PLAIN_VAR", "plain")
        .env("LISTED_TOKEN", "listed-ok")
        .env("LC_ALL", "C")
        .start()
        .await;
    let (_, out) = run_as(&fl, "env", json!({}), "env; echo ENV_END").await;
    assert!(out.contains("ENV_END") && out.contains("PATH="), "{out}");
    for gone in [
        "otel-sekrit",
        "OTEL_EXPORTER_OTLP_HEADERS",
        "gh-sekrit",
        "PLAIN_VAR",
        "test-key",
    ] {
        assert!(!out.contains(gone), "{gone} reached the command: {out}");
    }
    assert!(
        out.contains("LISTED_TOKEN=listed-ok") && out.contains("LC_ALL=C"),
        "{out}"
    );
    // `off` commands get the same environment.
    let (_, out) = run_as(&fl, "env-off", json!({"sandbox": "off"}), "env").await;
    assert!(
        !out.contains("otel-sekrit") && out.contains("LISTED_TOKEN=listed-ok"),
        "{out}"
    );
}

/// Give `dir` and everything in it to `uid`:`gid`.
fn chown_tree(dir: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(dir, Some(uid), Some(gid)).unwrap();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            chown_tree(&path, uid, gid);
        } else {
            std::os::unix::fs::chown(&path, Some(uid), Some(gid)).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_holds_for_an_ordinary_user() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("SKIPPED: not root; the other tests already ran as an ordinary user");
        return;
    }
    const NOBODY: u32 = 65534;
    let root = root_in_tmp();
    std::fs::write(root.path().join("config.toml"), DEFAULT_CONFIG).unwrap();
    std::fs::create_dir_all(root.path().join("data")).unwrap();
    chown_tree(root.path(), NOBODY, NOBODY);
    let fl = Flotilla::builder()
        .root(root.clone())
        .user(NOBODY, NOBODY)
        .env("HOME", &root.path().join("home").display().to_string())
        .start()
        .await;
    // The files the probes make must be nobody's too (they run as nobody).
    let Some(out) = metadata_probe(&fl, "toucher", json!({})).await else {
        return;
    };
    assert!(out.contains("MINE_CHMOD_OK"), "{out}");
    assert!(private_temp_checks(&fl).await);
    assert!(hidden_checks(&fl).await);
    let (_, out) = run_as(&fl, "typist", json!({}), TERMINAL_PROBE).await;
    assert_no_terminal(&out);
}
