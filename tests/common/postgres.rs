//! A throwaway PostgreSQL for tests, shared by the unit tests (included with
//! `#[path]` from `src/store/mod.rs`) and the integration tests: one copy.
//!
//! The first [`database`] call of a test process starts a cluster: `initdb` into a
//! fresh temp directory, `pg_ctl start` listening only on a unix socket in that
//! directory (no TCP port, nothing off the machine), as the `postgres` user when the
//! tests run as root (initdb refuses root). Every call then creates a fresh database,
//! so parallel tests never share one. A watchdog `sh` waits for the test process to
//! go (also after a panic or a kill) and then stops the cluster and removes its
//! directory.

#![allow(clippy::expect_used, clippy::unwrap_used, dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

const MISSING: &str = "install PostgreSQL: apt-get install postgresql (or .ci/run does it)";

struct Cluster {
    /// Holds `data/`, the socket and the server log.
    dir: PathBuf,
    bin: PathBuf,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();
static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A URL of a fresh, empty database on this process's throwaway cluster.
pub fn database() -> String {
    let cluster = CLUSTER.get_or_init(start);
    let name = format!("t_{}", NEXT.fetch_add(1, Ordering::SeqCst));
    let out = Command::new(cluster.bin.join("createdb"))
        .args([
            "-h",
            &cluster.dir.to_string_lossy(),
            "-U",
            "postgres",
            &name,
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run createdb");
    assert!(
        out.status.success(),
        "createdb {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    url(&cluster.dir, &name)
}

/// The URL of `db` on the cluster whose socket is in `dir` (tokio-postgres reads a
/// `host` that is an absolute path as a unix socket directory).
fn url(dir: &Path, db: &str) -> String {
    format!("postgresql://postgres@/{db}?host={}", dir.display())
}

/// Where `initdb` and friends are: on PATH, else Debian's versioned directory.
fn binaries() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .find(|d| d.join("initdb").is_file() && d.join("pg_ctl").is_file());
    if let Some(dir) = on_path {
        // Debian's /usr/bin wrappers need a cluster config; the real binaries do not.
        if let Ok(real) = std::fs::canonicalize(dir.join("initdb"))
            && let Some(parent) = real.parent()
            && parent.join("pg_ctl").is_file()
        {
            return parent.to_path_buf();
        }
        return dir;
    }
    let mut versioned: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("initdb").is_file())
        .collect();
    versioned.sort_by_key(|b| {
        b.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    versioned.pop().unwrap_or_else(|| panic!("{MISSING}"))
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A command that runs as the cluster's owner: `postgres` when we are root.
fn as_owner(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn run(mut cmd: Command, what: &str) {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn start() -> Cluster {
    let bin = binaries();
    let dir = tempfile::Builder::new()
        .prefix("flotilla-pg-")
        .tempdir()
        .expect("temp dir for PostgreSQL")
        .keep();
    if is_root() {
        let user = nix::unistd::User::from_name("postgres")
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("no postgres user: {MISSING}"));
        std::os::unix::fs::chown(&dir, Some(user.uid.as_raw()), Some(user.gid.as_raw()))
            .expect("chown the cluster directory");
    }
    // The watchdog first: whatever happens next, the directory goes with us.
    watchdog(&dir, &bin);
    let data = dir.join("data");
    let mut initdb = as_owner(&bin.join("initdb"));
    initdb
        .args(["-D"])
        .arg(&data)
        .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
        .args(["--no-locale"]);
    run(initdb, "initdb");
    let options = format!(
        "-c listen_addresses='' -k {} -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300 -c shared_buffers=16MB",
        dir.display()
    );
    let mut pg_ctl = as_owner(&bin.join("pg_ctl"));
    pg_ctl
        .arg("-D")
        .arg(&data)
        .arg("-l")
        .arg(dir.join("server.log"))
        .args(["-w", "-o", &options, "start"]);
    // pg_ctl's server keeps its stdout: give it none, or it holds the test's pipes.
    pg_ctl.stdout(Stdio::null()).stderr(Stdio::piped());
    run(pg_ctl, "pg_ctl start");
    Cluster { dir, bin }
}

/// A detached shell that waits for this process to exit, then stops the cluster at
/// once and removes its directory.
fn watchdog(dir: &Path, bin: &Path) {
    let pg_ctl = bin.join("pg_ctl");
    let stop = if is_root() {
        format!("runuser -u postgres -- '{}'", pg_ctl.display())
    } else {
        format!("'{}'", pg_ctl.display())
    };
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 0.2; done; \
         [ -f '{dir}/data/postmaster.pid' ] && {stop} -D '{dir}/data' stop -m immediate >/dev/null 2>&1; \
         rm -rf '{dir}'",
        pid = std::process::id(),
        dir = dir.display(),
    );
    // Backgrounded by an `sh` that exits at once: the watchdog is nobody's child to
    // reap, and holds none of the test's pipes.
    let status = Command::new("sh")
        .args(["-c", &format!("({script}) &")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("start the PostgreSQL watchdog");
    assert!(status.success(), "start the PostgreSQL watchdog: {status}");
}
