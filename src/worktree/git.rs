//! Running flotilla's own git, so that nothing an agent can write is executed by it.
//!
//! An agent that can write the repository's `.git` (one working in the checkout itself,
//! not isolated) can put programs into `.git/config` and `.git/info/attributes`: filters
//! (`clean`, `smudge`, `process`), `core.fsmonitor`, `diff.external`, textconv and merge
//! drivers, `gpg.program` with `commit.gpgSign`, `core.sshCommand`, `core.pager`, hooks,
//! `core.hooksPath`, `include.path` pulling in more of the same. flotilla's git runs
//! unconfined, so it must never start any of them. Two layers:
//!
//! - Every git run gets command-line overrides (which win over every config file) for
//!   the programs git could start on the commands flotilla uses, refuses every transport
//!   (`protocol.allow=never`, no lazy fetch of a partial clone) and never prompts.
//! - Git that reads or hashes the work tree (checkout, `add`, `diff`, `commit-tree`)
//!   does not read the repository's config, attributes or hooks at all: it runs against
//!   a [`Shadow`] common directory flotilla makes for that run — symlinks to the
//!   repository's objects and refs, and a config of flotilla's own holding only the
//!   repository format. Filter drivers and the rest named by an agent's attributes are
//!   then undefined, and git ignores them. No list of dangerous keys has to be complete,
//!   and an agent racing to add a new one between two runs gains nothing.
//!
//! Git that must write the repository itself (`worktree add --no-checkout`,
//! `update-ref`, `worktree remove`, `branch -D`) runs none of those programs besides
//! hooks, which the overrides disable.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Longest a single git command may take.
pub(super) const GIT_TIMEOUT: Duration = Duration::from_secs(60);

/// Variables of flotilla's environment that would point git elsewhere.
const GIT_ENV: [&str; 12] = [
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_CEILING_DIRECTORIES",
    "GIT_CONFIG",
    "GIT_CONFIG_PARAMETERS",
    "GIT_CONFIG_COUNT",
    "GIT_EXTERNAL_DIFF",
];

/// Command-line config on every run: no program git could start from config on the
/// commands flotilla uses, and no transport at all.
const OVERRIDES: [&str; 10] = [
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "commit.gpgSign=false",
    "tag.gpgSign=false",
    "diff.external=",
    "core.pager=cat",
    "core.sshCommand=false",
    "core.askPass=false",
    "credential.helper=",
    "protocol.allow=never",
];

/// Run git in `cwd`; its trimmed stdout, or its stderr as the error.
pub(super) async fn git(
    args: &[&str],
    cwd: &Path,
    env: &[(&str, &Path)],
) -> Result<String, String> {
    git_within(GIT_TIMEOUT, args, cwd, env).await
}

/// [`git`] with a deadline of its own.
pub(super) async fn git_within(
    limit: Duration,
    args: &[&str],
    cwd: &Path,
    env: &[(&str, &Path)],
) -> Result<String, String> {
    run(&OVERRIDES, limit, args, cwd, env).await
}

/// Longest a fetch from or a push to a git remote may take.
pub(super) const REMOTE_TIMEOUT: Duration = Duration::from_secs(300);

/// Command-line config of git talking to a remote (fetch, push) from a clone only
/// flotilla writes: still no hooks and nothing a repository could name, but the user's
/// own ssh, credential helpers and `insteadOf` rules apply, and only the transports
/// that run no program of the URL's choosing (`ext::` and the like stay refused).
const REMOTE_OVERRIDES: [&str; 12] = [
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "commit.gpgSign=false",
    "push.gpgSign=false",
    "core.pager=cat",
    "protocol.allow=never",
    "protocol.file.allow=always",
    "protocol.git.allow=always",
    "protocol.ssh.allow=always",
    "protocol.http.allow=always",
    "protocol.https.allow=always",
    "submodule.recurse=false",
];

/// Git that fetches from or pushes to `url`, in the clone `cwd`.
pub(super) async fn git_remote(args: &[&str], cwd: &Path) -> Result<String, String> {
    run(&REMOTE_OVERRIDES, REMOTE_TIMEOUT, args, cwd, &[]).await
}

async fn run(
    overrides: &[&str],
    limit: Duration,
    args: &[&str],
    cwd: &Path,
    env: &[(&str, &Path)],
) -> Result<String, String> {
    let mut cmd = tokio::process::Command::new("git");
    for o in overrides {
        cmd.args(["-c", o]);
    }
    cmd.args(args)
        .current_dir(cwd)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_NO_LAZY_FETCH", "1")
        .env("GIT_OPTIONAL_LOCKS", "0")
        .env("LC_ALL", "C");
    for var in GIT_ENV {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = match tokio::time::timeout(limit, cmd.output()).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(
                "git is not installed (isolation: \"worktree\" needs the git CLI on PATH)".into(),
            );
        }
        Ok(Err(e)) => return Err(format!("cannot run git: {e}")),
        Err(_) => {
            return Err(format!(
                "`git {}` took longer than {limit:?}",
                args.join(" ")
            ));
        }
    };
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        let err = err
            .trim()
            .trim_start_matches("fatal: ")
            .trim_start_matches("error: ");
        Err(if err.is_empty() {
            format!("`git {}` failed ({})", args.join(" "), out.status)
        } else {
            err.to_string()
        })
    }
}

/// Entries of a common git directory the shadow links to: what git needs to read and
/// write objects and read refs. Not `config`, `info` (attributes), `hooks`, `modules`.
const SHARED: [&str; 7] = [
    "HEAD",
    "objects",
    "refs",
    "packed-refs",
    "reftable",
    "logs",
    "shallow",
];

/// Keys of the repository's config the shadow copies: its format, nothing that runs.
const FORMAT_KEYS: &str =
    r"^(core\.repositoryformatversion|extensions\.(objectformat|compatobjectformat|refstorage))$";

static NEXT_SHADOW: AtomicU64 = AtomicU64::new(0);

/// A common git directory of flotilla's own for one piece of work: the repository's
/// objects and refs (symlinked), none of its config, attributes or hooks. Removed on
/// drop.
pub(super) struct Shadow {
    dir: PathBuf,
}

impl Shadow {
    /// Make one for the repository whose common directory is `common`, in `under` (a
    /// directory only flotilla writes: the worktrees root).
    pub(super) async fn new(common: &Path, under: &Path) -> Result<Shadow, String> {
        let dir = under.join(format!(
            ".git-shadow-{}-{}",
            std::process::id(),
            NEXT_SHADOW.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = tokio::fs::remove_dir_all(&dir).await;
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| format!("cannot create `{}`: {e}", dir.display()))?;
        let shadow = Shadow { dir };
        for name in SHARED {
            let target = common.join(name);
            if tokio::fs::symlink_metadata(&target).await.is_ok() {
                tokio::fs::symlink(&target, shadow.dir.join(name))
                    .await
                    .map_err(|e| format!("cannot link `{}`: {e}", target.display()))?;
            }
        }
        // The real config file alone, includes not followed: nothing in it runs.
        let file = common.join("config");
        let shown = file.display().to_string();
        let format = git(
            &["config", "--file", &shown, "--get-regexp", FORMAT_KEYS],
            under,
            &[],
        )
        .await
        .unwrap_or_default();
        let mut config = String::from("[core]\n\tbare = false\n");
        for line in format.lines() {
            if let Some((key, value)) = line.split_once(' ') {
                let (section, name) = key.split_once('.').unwrap_or(("core", key));
                config.push_str(&format!("[{section}]\n\t{name} = {value}\n"));
            }
        }
        tokio::fs::write(shadow.dir.join("config"), config)
            .await
            .map_err(|e| format!("cannot write `{}`: {e}", shadow.dir.display()))?;
        Ok(shadow)
    }

    pub(super) fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Shadow {
    fn drop(&mut self) {
        // Symlinks and one file: removing them does not follow the links.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
