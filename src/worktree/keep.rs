//! What a commit of a worktree leaves out, and keeping it when the worktree goes.
//!
//! flotilla commits an agent's work with `git add --all`, which skips `.gitignore`d
//! files; it also leaves out files over the size limit (`[worktrees] max_file_mib`) and
//! nested repositories (git would record only a link to their commit, or fail on one
//! without a commit). Removing the worktree would destroy all of that silently, so
//! [`keep`] moves it first into `<worktrees root>/kept/<agent>-<time>/`, at the same
//! relative paths, and says so.

use std::path::{Path, PathBuf};

/// What was not committed when an agent's worktree was removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Kept {
    /// Where the paths were moved to.
    pub dir: Option<PathBuf>,
    /// Paths moved there (relative to the worktree; directories end with `/`).
    pub moved: Vec<String>,
    /// Paths over the size limit among them.
    pub over_limit: Vec<String>,
    /// Paths that could not be moved, with why: they are gone with the worktree.
    pub lost: Vec<String>,
}

/// Of the paths git lists (NUL-separated, relative to `root`), those a commit must leave
/// out: regular files larger than `max_bytes`, and nested repositories (listed as
/// directories, `sub/`).
pub(super) async fn left_out(root: &Path, listed: &str, max_bytes: u64) -> Vec<String> {
    let root = root.to_path_buf();
    let listed: Vec<String> = listed
        .split('\0')
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect();
    let scan = move || {
        listed
            .into_iter()
            .filter(|p| {
                if p.ends_with('/') {
                    return true;
                }
                std::fs::symlink_metadata(root.join(p))
                    .is_ok_and(|m| m.is_file() && m.len() > max_bytes)
            })
            .collect::<Vec<_>>()
    };
    tokio::task::spawn_blocking(scan).await.unwrap_or_default()
}

/// Whether `p` (relative) is a file over the limit, as [`left_out`] decided.
fn is_large(root: &Path, p: &str, max_bytes: u64) -> bool {
    !p.ends_with('/')
        && std::fs::symlink_metadata(root.join(p)).is_ok_and(|m| m.is_file() && m.len() > max_bytes)
}

/// Move `paths` (relative to the worktree `root`) into a new directory
/// `<root's parent>/kept/<agent>-<seconds since the epoch>`.
pub(super) async fn keep(root: &Path, agent: &str, paths: Vec<String>, max_bytes: u64) -> Kept {
    if paths.is_empty() {
        return Kept::default();
    }
    let root = root.to_path_buf();
    let agent = agent.to_string();
    let work = move || {
        let mut kept = Kept::default();
        let Some(dir) = kept_dir(&root, &agent) else {
            kept.lost = paths
                .into_iter()
                .map(|p| format!("{p} (no directory to keep it in)"))
                .collect();
            return kept;
        };
        for p in paths {
            let rel = p.trim_end_matches('/');
            let (from, to) = (root.join(rel), dir.join(rel));
            let large = is_large(&root, &p, max_bytes);
            let moved = match to.parent() {
                Some(parent) => std::fs::create_dir_all(parent),
                None => Ok(()),
            }
            .and_then(|()| std::fs::rename(&from, &to));
            match moved {
                Ok(()) => {
                    if large {
                        kept.over_limit.push(p.clone());
                    }
                    kept.moved.push(p);
                }
                Err(e) => kept.lost.push(format!("{p} ({e})")),
            }
        }
        kept.dir = Some(dir);
        kept
    };
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| Kept {
            lost: vec![format!("everything not committed (the move failed: {e})")],
            ..Kept::default()
        })
}

/// A new directory for what `agent`'s worktree at `root` did not commit.
fn kept_dir(root: &Path, agent: &str) -> Option<PathBuf> {
    let base = root.parent()?.join("kept");
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    std::fs::create_dir_all(&base).ok()?;
    (0..100).find_map(|n| {
        let name = match n {
            0 => format!("{agent}-{secs}"),
            n => format!("{agent}-{secs}-{n}"),
        };
        let dir = base.join(name);
        std::fs::create_dir(&dir).ok().map(|()| dir)
    })
}

impl Kept {
    /// One sentence for the delete result, or none when everything was committed.
    pub fn describe(&self) -> Option<String> {
        if self.moved.is_empty() && self.lost.is_empty() {
            return None;
        }
        let mut parts = Vec::new();
        if let Some(dir) = self.dir.as_ref().filter(|_| !self.moved.is_empty()) {
            let mut s = format!(
                "{} path(s) not committed (ignored by .gitignore, nested repositories, or files over the size limit) were moved to {}: {}",
                self.moved.len(),
                dir.display(),
                list(&self.moved)
            );
            if !self.over_limit.is_empty() {
                s.push_str(&format!(
                    "; over the size limit ([worktrees] max_file_mib), not committed: {}",
                    list(&self.over_limit)
                ));
            }
            parts.push(s);
        }
        if !self.lost.is_empty() {
            parts.push(format!(
                "NOT kept (removed with the worktree): {}",
                list(&self.lost)
            ));
        }
        Some(parts.join("; "))
    }
}

/// The first few paths, and how many more.
fn list(paths: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut s = paths
        .iter()
        .take(SHOWN)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if paths.len() > SHOWN {
        s.push_str(&format!(" and {} more", paths.len() - SHOWN));
    }
    s
}
