//! Git worktrees for isolated agents (`isolation: "worktree"`): each such agent works
//! in a worktree of its own on a new branch `flotilla/<name>`, outside the user's
//! checkout (under the data directory), so parallel builders never overwrite each
//! other and the user's files stay as they were.
//!
//! Everything goes through the `git` CLI, run off the async runtime's threads by
//! `tokio::process` (`git.rs`): no program named in the repository's config,
//! attributes or hooks ever runs, and the `GIT_*` variables of flotilla's own
//! environment are removed. On an existing worktree git is always pointed at its
//! administrative directory explicitly (`--git-dir`, `--work-tree`), never through
//! the `.git` file inside it, which the agent's commands can rewrite.
//!
//! Agents in a sandbox cannot write the repository's `.git` (hooks, config, other
//! branches), so they usually leave their work uncommitted. flotilla takes it as it is:
//! a snapshot stages the work tree (`git add -A`, `.gitignore` honoured; files over
//! `[worktrees] max_file_mib` and nested repositories left out) into a temporary
//! index, never the worktree's own, and writes a tree. [`diff_stat`] compares that
//! tree with the merge base of the branch and the base commit recorded at creation;
//! [`remove`] (`remove.rs`) commits it onto the branch and keeps what it left out
//! (`keep.rs`) before the worktree goes, so no work is lost; an agent started with
//! `base: "<agent>"` starts from it.

mod git;
mod keep;
mod remote;
mod remove;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use self::git::{Shadow, git, git_within};
pub use self::keep::Kept;
pub use self::remote::{
    Clones, GitRemote, Pinned, RemoteRepo, RemoteSpec, checkpoint, publish, reachable, rebuild,
    stamp,
};
pub use self::remove::{Removed, remove};

/// Longest counting an agent's changes for its status may take.
const STATUS_TIMEOUT: Duration = Duration::from_secs(10);

/// Files larger than this are neither counted in `diff_stat` nor committed on delete
/// (`[worktrees] max_file_mib`, default 10 MiB).
static MAX_FILE_BYTES: AtomicU64 = AtomicU64::new(DEFAULT_MAX_FILE_MIB << 20);
/// The default of `[worktrees] max_file_mib`.
pub const DEFAULT_MAX_FILE_MIB: u64 = 10;

/// Set the largest file counted and committed (from `[worktrees] max_file_mib`).
pub fn set_max_file_mib(mib: u64) {
    MAX_FILE_BYTES.store(mib.saturating_mul(1 << 20), Ordering::Relaxed);
}

fn max_file_bytes() -> u64 {
    MAX_FILE_BYTES.load(Ordering::Relaxed)
}

/// `isolation` of `create_agent`: how an agent is kept apart from other writers.
/// `worktree`: a git worktree of its own on branch `flotilla/<name>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(inline)]
pub enum Isolation {
    Worktree,
}

/// By name; anything else is refused with what the one choice does.
impl<'de> Deserialize<'de> for Isolation {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match String::deserialize(deserializer)?.as_str() {
            "worktree" => Ok(Self::Worktree),
            other => Err(serde::de::Error::custom(format!(
                "isolation must be \"worktree\" (a git worktree of its own), or left out; got \"{other}\""
            ))),
        }
    }
}

/// An agent's worktree, as stored with its settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Worktree {
    /// The worktree's top directory (flotilla-made).
    pub path: PathBuf,
    /// `flotilla/<name>`.
    pub branch: String,
    /// Its administrative directory (`<repo>/.git/worktrees/<id>`).
    pub admin_dir: PathBuf,
    /// The commit the branch started from.
    pub base_commit: String,
    /// The base as given: a git ref, or an agent's name.
    pub base: String,
    /// The git remote (URL) its branch is pushed to at the end of every command, so
    /// any node of a fleet can run it (see `remote.rs`); `None`: it works in the
    /// repository of its work directory, on a node that serves it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    /// Its work directory relative to the worktree's top (`""` at the top): where
    /// it works again when another node rebuilds the worktree.
    #[serde(default, skip_serializing_if = "crate::worktree::is_top")]
    pub prefix: PathBuf,
    /// With a remote: the mark of this very worktree, also written in its
    /// administrative directory. A node that takes the agent over and finds the same
    /// mark there reaches this worktree (a shared filesystem) and keeps it; else it
    /// rebuilds the worktree from the remote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stamp: Option<String>,
}

/// The top of a worktree (an empty prefix).
fn is_top(prefix: &Path) -> bool {
    prefix.as_os_str().is_empty()
}

/// Files changed, lines inserted and deleted: the agent's work against its base,
/// committed or not (untracked files included, ignored ones not).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, JsonSchema)]
pub struct DiffStat {
    pub files: u64,
    pub insertions: u64,
    pub deletions: u64,
}

/// The repository a work directory belongs to.
#[derive(Debug, Clone)]
pub struct Repo {
    /// Top of the checkout the directory is in.
    pub toplevel: PathBuf,
    /// The common git directory (shared by every worktree).
    pub common_dir: PathBuf,
    /// The directory relative to `toplevel` (`""` at the top).
    pub prefix: PathBuf,
}

/// The branch of agent `name`.
pub fn branch_of(name: &str) -> String {
    format!("flotilla/{name}")
}

/// Git on an existing worktree, addressed by its administrative directory, against a
/// [`Shadow`] of its repository: none of the repository's config, attributes or hooks
/// apply (see `git.rs`).
struct WtGit<'a> {
    wt: &'a Worktree,
    shadow: Shadow,
}

impl<'a> WtGit<'a> {
    async fn new(wt: &'a Worktree) -> Result<WtGit<'a>, String> {
        let common = repository_of(wt)?;
        let under = wt.path.parent().unwrap_or(&wt.path);
        Ok(WtGit {
            wt,
            shadow: Shadow::new(&common, under).await?,
        })
    }

    async fn run(&self, args: &[&str], env: &[(&str, &Path)]) -> Result<String, String> {
        self.run_within(git::GIT_TIMEOUT, args, env).await
    }

    async fn run_within(
        &self,
        limit: Duration,
        args: &[&str],
        env: &[(&str, &Path)],
    ) -> Result<String, String> {
        let git_dir = format!("--git-dir={}", self.wt.admin_dir.display());
        let work_tree = format!("--work-tree={}", self.wt.path.display());
        let mut all = vec![git_dir.as_str(), work_tree.as_str()];
        all.extend_from_slice(args);
        let mut env = env.to_vec();
        env.push(("GIT_COMMON_DIR", self.shadow.path()));
        git_within(limit, &all, &self.wt.path, &env).await
    }
}

/// The repository `dir` is in, or an error saying how to get one.
pub async fn repo_of(dir: &Path) -> Result<Repo, String> {
    let out = git(
        &[
            "rev-parse",
            "--path-format=absolute",
            "--show-toplevel",
            "--git-common-dir",
            "--show-prefix",
        ],
        dir,
        &[],
    )
    .await
    .map_err(|e| {
        if e.contains("not a git repository") {
            format!(
                "isolation \"worktree\" needs a git repository, but workdir `{}` is not in one. Run `git init` and commit there, pass a workdir inside a repository, or leave out `isolation`",
                dir.display()
            )
        } else {
            format!("cannot use the git repository at `{}`: {e}", dir.display())
        }
    })?;
    let mut lines = out.lines();
    let (Some(top), Some(common)) = (lines.next(), lines.next()) else {
        return Err(format!(
            "`{}` is not inside a git work tree (a bare repository?); isolation \"worktree\" needs a checkout",
            dir.display()
        ));
    };
    Ok(Repo {
        toplevel: PathBuf::from(top),
        common_dir: PathBuf::from(common),
        prefix: PathBuf::from(lines.next().unwrap_or("")),
    })
}

/// The commit a git ref (branch, tag, commit, `HEAD~2`, …) names in `repo`.
pub async fn resolve_ref(repo: &Repo, base: &str) -> Result<String, String> {
    let spec = format!("{base}^{{commit}}");
    match git(
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            "--end-of-options",
            &spec,
        ],
        &repo.toplevel,
        &[],
    )
    .await
    {
        Ok(commit) if !commit.is_empty() => Ok(commit),
        _ if base == "HEAD" => Err(format!(
            "the repository at `{}` has no commit yet: commit something first, then create the agent",
            repo.toplevel.display()
        )),
        _ => Err(format!(
            "base `{base}` is neither an agent nor a git ref (branch, tag or commit) of the repository at `{}`. Give an existing ref (default HEAD) or the name of an agent created with isolation \"worktree\"",
            repo.toplevel.display()
        )),
    }
}

/// Refuse a branch that exists already.
pub async fn check_branch_free(repo: &Repo, branch: &str) -> Result<(), String> {
    let full = format!("refs/heads/{branch}");
    if git(
        &["show-ref", "--verify", "--quiet", &full],
        &repo.toplevel,
        &[],
    )
    .await
    .is_ok()
    {
        return Err(format!(
            "branch `{branch}` already exists in the repository at `{}` (left by an earlier agent of this name?). Review and merge it, then delete it (`git branch -D {branch}`), or choose another name",
            repo.toplevel.display()
        ));
    }
    Ok(())
}

/// Create the worktree at `path` on a new branch at `commit`.
pub async fn add(
    repo: &Repo,
    path: &Path,
    branch: &str,
    commit: &str,
    base: &str,
) -> Result<Worktree, String> {
    add_as(repo, path, branch, commit, base, "-b").await
}

/// [`add`], with `-b` (a new branch) or `-B` (the branch reset to `commit`).
async fn add_as(
    repo: &Repo,
    path: &Path,
    branch: &str,
    commit: &str,
    base: &str,
    new_branch: &str,
) -> Result<Worktree, String> {
    if path.exists() {
        return Err(format!(
            "`{}` exists already (left from an earlier agent?); remove it (`git worktree remove {0}` or delete the directory), or choose another name",
            path.display()
        ));
    }
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|e| format!("cannot create `{}`: {e}", parent.display()))?;
    }
    let shown = path.display().to_string();
    // No checkout by the repository's git: its filters would run. The files are
    // checked out below, against a shadow of the repository.
    git(
        &[
            "worktree",
            "add",
            "--quiet",
            "--no-checkout",
            new_branch,
            branch,
            &shown,
            commit,
        ],
        &repo.toplevel,
        &[],
    )
    .await
    .map_err(|e| format!("cannot create the worktree: {e}"))?;
    let admin = git(&["rev-parse", "--absolute-git-dir"], path, &[]).await?;
    let wt = Worktree {
        path: path.canonicalize().unwrap_or_else(|_| path.to_path_buf()),
        branch: branch.to_string(),
        admin_dir: PathBuf::from(admin),
        base_commit: commit.to_string(),
        base: base.to_string(),
        remote: None,
        prefix: repo.prefix.clone(),
        stamp: None,
    };
    let checkout = async {
        WtGit::new(&wt)
            .await?
            .run(&["read-tree", "--reset", "-u", "HEAD"], &[])
            .await
    };
    if let Err(e) = checkout.await {
        discard(repo, &wt).await;
        return Err(format!("cannot check out the worktree: {e}"));
    }
    Ok(wt)
}

/// Undo [`add`] (a creation that could not be completed): the worktree and the new
/// branch go; nothing was done in them yet.
pub async fn discard(repo: &Repo, wt: &Worktree) {
    let path = wt.path.display().to_string();
    let removed = git(
        &["worktree", "remove", "--force", &path],
        &repo.toplevel,
        &[],
    )
    .await;
    let deleted = git(&["branch", "-D", &wt.branch], &repo.toplevel, &[]).await;
    if let Err(e) = removed.and(deleted) {
        tracing::warn!(worktree = %path, "could not undo a worktree: {e}");
    }
}

/// The work tree as git sees it: its tree (what a commit of everything would hold) and
/// the commit checked out.
pub struct Snapshot {
    pub tree: String,
    pub head: String,
    /// The tree differs from the head commit's: there is uncommitted work.
    pub dirty: bool,
    /// Paths left out of the tree (relative to the worktree): files over the size
    /// limit, and nested repositories (git would keep only a link to their commit).
    pub left_out: Vec<String>,
}

static NEXT_INDEX: AtomicU64 = AtomicU64::new(0);

/// Stage everything in a temporary index (the worktree's own is left alone) and
/// write its tree. Files over the size limit and nested repositories are left out.
async fn snapshot_within(g: &WtGit<'_>, limit: Duration) -> Result<Snapshot, String> {
    let wt = g.wt;
    if !wt.path.is_dir() {
        return Err(gone(wt));
    }
    let index = wt.admin_dir.join(format!(
        "flotilla-index-{}-{}",
        std::process::id(),
        NEXT_INDEX.fetch_add(1, Ordering::Relaxed)
    ));
    // Starting from the worktree's index lets git skip files whose stat is unchanged.
    if tokio::fs::copy(wt.admin_dir.join("index"), &index)
        .await
        .is_err()
    {
        let _ = tokio::fs::remove_file(&index).await;
    }
    let env = [("GIT_INDEX_FILE", index.as_path())];
    let result = async {
        let listed = g
            .run_within(
                limit,
                &[
                    "ls-files",
                    "-z",
                    "--cached",
                    "--others",
                    "--exclude-standard",
                ],
                &env,
            )
            .await?;
        let left_out = keep::left_out(&wt.path, &listed, max_file_bytes()).await;
        let mut args = vec!["add", "--all", "--", "."];
        let excluded: Vec<String> = left_out
            .iter()
            .map(|p| format!(":(exclude,literal){p}"))
            .collect();
        args.extend(excluded.iter().map(String::as_str));
        g.run_within(limit, &args, &env).await?;
        let tree = g.run(&["write-tree"], &env).await?;
        let head = g.run(&["rev-parse", "HEAD"], &[]).await?;
        let head_tree = g.run(&["rev-parse", "HEAD^{tree}"], &[]).await?;
        Ok(Snapshot {
            dirty: tree != head_tree,
            tree,
            head,
            left_out,
        })
    }
    .await;
    let _ = tokio::fs::remove_file(&index).await;
    result
}

/// Everything in the worktree as a commit: the head itself when nothing is
/// uncommitted, else a new commit on top of it (on no branch) holding the work tree.
pub async fn snapshot_commit(wt: &Worktree, agent: &str) -> Result<(String, Snapshot), String> {
    commit_snapshot(&WtGit::new(wt).await?, agent).await
}

async fn commit_snapshot(g: &WtGit<'_>, agent: &str) -> Result<(String, Snapshot), String> {
    let message = format!("flotilla: uncommitted work of agent {agent}");
    commit_snapshot_as(g, agent, &message).await
}

/// Commit everything in the worktree onto its branch (`message` for the commit,
/// `reflog` for the branch's log) when there is uncommitted work, from the repository's
/// side (`common`: its common directory). The commit the branch is at now, and the
/// snapshot (`dirty`: the branch moved).
async fn commit_to_branch(
    g: &WtGit<'_>,
    common: &Path,
    agent: &str,
    message: &str,
    reflog: &str,
) -> Result<(String, Snapshot), String> {
    let (commit, snap) = commit_snapshot_as(g, agent, message).await?;
    if snap.dirty {
        let git_dir = format!("--git-dir={}", common.display());
        let branch = &g.wt.branch;
        let full = format!("refs/heads/{branch}");
        git(
            &[
                &git_dir,
                "update-ref",
                "-m",
                reflog,
                &full,
                &commit,
                &snap.head,
            ],
            common,
            &[],
        )
        .await
        .map_err(|e| format!("cannot commit the agent's work to {branch}: {e}"))?;
    }
    Ok((commit, snap))
}

/// [`commit_snapshot`] with a message of its own.
async fn commit_snapshot_as(
    g: &WtGit<'_>,
    agent: &str,
    message: &str,
) -> Result<(String, Snapshot), String> {
    let snap = snapshot_within(g, git::GIT_TIMEOUT).await?;
    if !snap.dirty {
        return Ok((snap.head.clone(), snap));
    }
    let who = PathBuf::from(format!("flotilla agent {agent}"));
    let email = PathBuf::from(format!("{agent}@flotilla.invalid"));
    let env = [
        ("GIT_AUTHOR_NAME", who.as_path()),
        ("GIT_AUTHOR_EMAIL", email.as_path()),
        ("GIT_COMMITTER_NAME", who.as_path()),
        ("GIT_COMMITTER_EMAIL", email.as_path()),
    ];
    let commit = g
        .run(
            &[
                "commit-tree",
                "--no-gpg-sign",
                &snap.tree,
                "-p",
                &snap.head,
                "-m",
                message,
            ],
            &env,
        )
        .await?;
    Ok((commit, snap))
}

/// The agent's work against its base: the snapshot's tree against the merge base of
/// the head and the base commit (so base commits made since do not count). Bounded:
/// files over the size limit are not counted, and counting that takes longer than
/// [`STATUS_TIMEOUT`] is given up with an error saying so.
pub async fn diff_stat(wt: &Worktree) -> Result<DiffStat, String> {
    let g = WtGit::new(wt).await?;
    let snap = snapshot_within(&g, STATUS_TIMEOUT).await?;
    let base = g
        .run_within(
            STATUS_TIMEOUT,
            &["merge-base", &wt.base_commit, &snap.head],
            &[],
        )
        .await
        .unwrap_or_else(|_| wt.base_commit.clone());
    let out = g
        .run_within(
            STATUS_TIMEOUT,
            &[
                "diff",
                "--no-ext-diff",
                "--no-textconv",
                "--shortstat",
                &base,
                &snap.tree,
            ],
            &[],
        )
        .await?;
    Ok(parse_shortstat(&out))
}

/// ` 3 files changed, 10 insertions(+), 2 deletions(-)` (any part may be missing).
fn parse_shortstat(line: &str) -> DiffStat {
    let mut stat = DiffStat::default();
    for part in line.split(',') {
        let mut words = part.split_whitespace();
        let (Some(n), Some(what)) = (words.next(), words.next()) else {
            continue;
        };
        let Ok(n) = n.parse::<u64>() else { continue };
        if what.starts_with("file") {
            stat.files = n;
        } else if what.starts_with("insertion") {
            stat.insertions = n;
        } else if what.starts_with("deletion") {
            stat.deletions = n;
        }
    }
    stat
}

/// [`common_dir`], or the error saying it cannot be found.
fn repository_of(wt: &Worktree) -> Result<PathBuf, String> {
    common_dir(wt).ok_or_else(|| {
        format!(
            "cannot find the repository of the worktree `{}`",
            wt.path.display()
        )
    })
}

/// The repository's common directory, from the worktree's administrative one.
fn common_dir(wt: &Worktree) -> Option<PathBuf> {
    let text = std::fs::read_to_string(wt.admin_dir.join("commondir")).ok()?;
    let common = wt.admin_dir.join(text.trim());
    common.canonicalize().ok()
}

/// The git directory (shared by its worktrees) of the repository `wt` is in.
pub fn git_dir_of(wt: &Worktree) -> Option<PathBuf> {
    common_dir(wt)
}

/// The repository's common directory of an existing worktree, for comparing repos.
pub fn same_repo(wt: &Worktree, repo: &Repo) -> bool {
    common_dir(wt).is_some_and(|c| repo.common_dir.canonicalize().is_ok_and(|r| r == c))
}

/// The message for a worktree that is no longer there.
pub fn gone(wt: &Worktree) -> String {
    format!(
        "the agent's git worktree `{}` no longer exists (deleted outside flotilla?), so it has nowhere to work. Its committed work is on branch `{}`. Delete this agent; to go on from that branch, create one with isolation \"worktree\" and base \"{1}\"",
        wt.path.display(),
        wt.branch
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn shortstat_lines_parse() {
        assert_eq!(
            parse_shortstat(" 3 files changed, 10 insertions(+), 2 deletions(-)"),
            DiffStat {
                files: 3,
                insertions: 10,
                deletions: 2
            }
        );
        assert_eq!(
            parse_shortstat(" 1 file changed, 1 deletion(-)"),
            DiffStat {
                files: 1,
                insertions: 0,
                deletions: 1
            }
        );
        assert_eq!(parse_shortstat(""), DiffStat::default());
    }
}
