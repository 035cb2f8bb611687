//! A generated git repository of realistic size for the remote scenario: `files` source
//! files of text (words, identifiers and numbers from a deterministic PRNG, so git's
//! compression does about as well as on real code) totalling about `mib` MiB, in one
//! commit on `main`, plus `data.txt` (what the mock's agents read); its bare clone (the
//! remote) and checkouts of either.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::mock::write_project;
use crate::stats::Rng;

const WORDS: [&str; 24] = [
    "let", "fn", "pub", "struct", "impl", "return", "match", "self", "config", "agent", "node",
    "value", "result", "error", "state", "index", "buffer", "request", "reply", "store", "lease",
    "branch", "commit", "worktree",
];

/// `git ARGS` in `dir`; panics with git's message when it fails.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "bench")
        .env("GIT_AUTHOR_EMAIL", "bench@example.invalid")
        .env("GIT_COMMITTER_NAME", "bench")
        .env("GIT_COMMITTER_EMAIL", "bench@example.invalid")
        .output()
        .unwrap_or_else(|e| panic!("cannot run git: {e}"));
    assert!(
        out.status.success(),
        "git {args:?} in {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The generated project: a checkout without a remote (`local`), its bare clone
/// (`bare`, the remote) and their sizes.
pub struct Repo {
    _dir: tempfile::TempDir,
    pub local: PathBuf,
    pub bare: PathBuf,
    pub files: usize,
    /// Bytes of the checked-out files.
    pub tree_bytes: u64,
    /// Bytes of the bare repository (its packed objects).
    pub pack_bytes: u64,
}

impl Repo {
    /// Generate the repository (a few seconds for 2,000 files, 20 MiB).
    pub fn generate(files: usize, mib: usize) -> Self {
        let dir = tempfile::tempdir().expect("repo dir");
        let local = dir.path().join("project");
        std::fs::create_dir_all(&local).expect("project dir");
        git(&local, &["init", "-q", "-b", "main"]);
        write_project(&local);
        let per_file = mib * 1024 * 1024 / files.max(1);
        let mut rng = Rng::new(0x5eed);
        let mut tree_bytes = 0;
        for i in 0..files {
            let path = local.join(format!("src/m{:02}/f{i:04}.rs", i % 40));
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            let text = source(&mut rng, per_file);
            tree_bytes += text.len() as u64;
            std::fs::write(path, text).expect("write source");
        }
        git(&local, &["add", "-A"]);
        git(&local, &["commit", "-q", "-m", "generated project"]);
        let bare = dir.path().join("project.git");
        git(
            dir.path(),
            &["clone", "-q", "--bare", "project", "project.git"],
        );
        git(&bare, &["gc", "-q"]);
        let pack_bytes = bytes_under(&bare);
        Self {
            _dir: dir,
            local,
            bare,
            files: files + 7,
            tree_bytes,
            pack_bytes,
        }
    }

    /// The remote's URL (a path on this machine's disk).
    pub fn url(&self) -> String {
        self.bare.display().to_string()
    }

    /// A checkout of the remote in `into` (an empty directory): its `origin` is the
    /// remote.
    pub fn clone_remote(&self, into: &Path) {
        git(
            into,
            &["clone", "-q", &self.url(), &into.display().to_string()],
        );
    }

    /// A checkout of the project in `into` (an empty directory) with no remote: a
    /// repository on one machine.
    pub fn clone_local(&self, into: &Path) {
        let from = self.local.display().to_string();
        git(into, &["clone", "-q", &from, &into.display().to_string()]);
        git(into, &["remote", "remove", "origin"]);
    }

    /// "2,007 files, 20.0 MiB checked out, 7.1 MiB packed".
    pub fn describe(&self) -> String {
        format!(
            "{} files, {:.1} MiB checked out, {:.1} MiB packed",
            self.files,
            self.tree_bytes as f64 / 1024.0 / 1024.0,
            self.pack_bytes as f64 / 1024.0 / 1024.0
        )
    }
}

/// About `bytes` of source-like text.
fn source(rng: &mut Rng, bytes: usize) -> String {
    let mut s = String::with_capacity(bytes + 80);
    while s.len() < bytes {
        let indent = rng.below(4) * 4;
        s.push_str(&" ".repeat(indent));
        for _ in 0..3 + rng.below(8) {
            match rng.below(3) {
                0 => s.push_str(WORDS[rng.below(WORDS.len())]),
                1 => {
                    let _ = write!(s, "v{:x}", rng.below(1 << 20));
                }
                _ => {
                    let _ = write!(s, "{}", rng.below(100_000));
                }
            }
            s.push(' ');
        }
        s.push_str(";\n");
    }
    s
}

/// Bytes of every file under `dir`.
pub fn bytes_under(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => bytes_under(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}
