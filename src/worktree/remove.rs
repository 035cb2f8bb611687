//! Removing an isolated agent's worktree on delete: its uncommitted work committed to
//! its branch, what that commit leaves out kept (see `keep.rs`), and the directory
//! removed from the repository's side even when the agent rewrote its `.git` file.

use std::path::Path;

use super::git::git;
use super::{Kept, Worktree, WtGit, commit_to_branch, keep, max_file_bytes, repository_of};

/// What [`remove`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed {
    /// The branch that keeps the work.
    pub branch: String,
    /// Uncommitted work was committed onto the branch first.
    pub committed: bool,
    /// What the commit left out, moved out of the worktree before it went.
    pub kept: Kept,
    /// The worktree could not be removed by git (e.g. the agent rewrote its `.git`
    /// file): flotilla deleted the directory itself and pruned it from the repository.
    pub forced: bool,
    /// An agent with a remote: the branch pushed there (`Ok`), or why not.
    pub pushed: Option<Result<String, String>>,
}

impl Removed {
    /// What happened, for the delete result.
    pub fn describe(&self) -> String {
        let mut s = if self.committed {
            format!(
                "its uncommitted work was committed to {}; the worktree was removed, the branch stays",
                self.branch
            )
        } else {
            format!(
                "the worktree was removed; its work stays on {}",
                self.branch
            )
        };
        match &self.pushed {
            Some(Ok(url)) => s.push_str(&format!(" and was pushed to {url}")),
            Some(Err(e)) => s.push_str(&format!(
                " (NOT pushed to the remote: {e}; the branch is in this node's clone of it)"
            )),
            None => {}
        }
        if self.forced {
            s.push_str(" (git refused to remove it, its `.git` file was changed: flotilla deleted the directory and pruned it)");
        }
        if let Some(kept) = self.kept.describe() {
            s.push_str("; ");
            s.push_str(&kept);
        }
        s
    }
}

/// Commit uncommitted work onto the branch, move what the commit leaves out (ignored
/// files, files over the size limit, nested repositories) into a kept directory, then
/// remove the worktree (the branch stays). A worktree that is already gone is pruned.
pub async fn remove(wt: &Worktree, agent: &str) -> Result<Removed, String> {
    let common = repository_of(wt)?;
    let git_dir = format!("--git-dir={}", common.display());
    let mut removed = Removed {
        branch: wt.branch.clone(),
        committed: false,
        kept: Kept::default(),
        forced: false,
        pushed: None,
    };
    if !wt.path.is_dir() {
        let _ = git(&[&git_dir, "worktree", "prune"], &common, &[]).await;
        return Ok(removed);
    }
    let g = WtGit::new(wt).await?;
    let message = format!("flotilla: uncommitted work of agent {agent}");
    let reflog = "flotilla: agent deleted; its uncommitted work committed";
    let (_, snap) = commit_to_branch(&g, &common, agent, &message, reflog).await?;
    removed.committed = snap.dirty;
    if let Some(url) = &wt.remote {
        let pushed = super::remote::push(&common, url, &wt.branch).await;
        if pushed.is_ok() {
            super::remote::drop_wip(&common, url, &wt.branch).await;
        }
        removed.pushed = Some(pushed.map(|()| url.clone()));
    }
    let ignored = g
        .run(
            &[
                "ls-files",
                "-z",
                "--others",
                "--ignored",
                "--exclude-standard",
                "--directory",
            ],
            &[],
        )
        .await?;
    let mut leftovers: Vec<String> = ignored
        .split('\0')
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect();
    leftovers.extend(snap.left_out);
    removed.kept = keep::keep(&wt.path, agent, leftovers, max_file_bytes()).await;
    drop(g);
    removed.forced = remove_dir(wt, &common, &git_dir).await?;
    Ok(removed)
}

/// Remove the worktree's directory from the repository's side (never through the
/// `.git` file inside it, which the agent may have rewritten): `git worktree remove`,
/// else delete it and prune. Whether the fallback was needed.
async fn remove_dir(wt: &Worktree, common: &Path, git_dir: &str) -> Result<bool, String> {
    let shown = wt.path.display().to_string();
    let by_git = git(
        &[git_dir, "worktree", "remove", "--force", "--force", &shown],
        common,
        &[],
    )
    .await;
    let Err(e) = by_git else {
        return Ok(false);
    };
    tracing::info!(worktree = %shown, "git could not remove the worktree ({e}); deleting it");
    let path = wt.path.clone();
    tokio::task::spawn_blocking(move || std::fs::remove_dir_all(path))
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()))
        .map_err(|e2| format!("cannot remove the worktree `{shown}`: {e}; {e2}"))?;
    git(&[git_dir, "worktree", "prune"], common, &[])
        .await
        .map_err(|e| {
            format!("the worktree `{shown}` was deleted, but git could not prune it: {e}")
        })?;
    Ok(true)
}
