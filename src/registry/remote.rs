//! Worktree agents through a git remote, in a fleet of several nodes (see
//! `worktree/remote.rs`): which remote a new agent's repository goes through, its
//! base fetched from there, and its worktree brought to the node that takes it over.

use std::path::PathBuf;

use super::Registry;
use super::create::Isolate;
use crate::store::AgentLog;
use crate::store::event::Event;
use crate::worktree::{self, Pinned, RemoteRepo, RemoteSpec, Worktree};

/// A node in a fleet: its clones of the fleet's remotes, and the remote its new
/// worktree agents go through (`None`: no remote of its own; it still runs agents
/// whose remote another node resolved).
pub(crate) struct Remotes {
    pub(super) pinned: Option<Pinned>,
    pub(super) clones: worktree::Clones,
}

impl Registry {
    /// A node of a fleet with a shared store: worktree agents go through `pinned`
    /// (`[cluster] remote`, settled at start). Clones go under the worktrees root.
    pub fn with_git_remote(mut self, pinned: Option<Pinned>) -> Self {
        let clones = worktree::Clones::new(&self.worktrees_root);
        self.remotes = Some(Remotes { pinned, clones });
        self
    }

    /// The remote a new worktree agent working in `workdir` (a directory asked for,
    /// relative to this node's) goes through, and where in the repository it works;
    /// `None`: no remote, it works in the repository of its work directory. A remote
    /// read from a repository's config applies to agents in that repository only.
    pub async fn remote_for(&self, workdir: Option<&str>) -> Result<Option<RemoteSpec>, String> {
        let Some(pinned) = self.remotes.as_ref().and_then(|r| r.pinned.as_ref()) else {
            return Ok(None);
        };
        let repo = match self.workdir(workdir, false).await {
            Ok(dir) => worktree::repo_of(&dir).await.ok(),
            // A work directory asked for that this node cannot use: placed by it, on
            // a node that serves it (which resolves its remote), or refused with why.
            Err(_) if workdir.is_some() || pinned.repo.is_some() => return Ok(None),
            Err(_) => None,
        };
        if let Some(only) = &pinned.repo {
            let same = repo.as_ref().is_some_and(|r| {
                r.common_dir
                    .canonicalize()
                    .unwrap_or_else(|_| r.common_dir.clone())
                    == *only
            });
            if !same {
                return Ok(None);
            }
        }
        Ok(Some(RemoteSpec {
            url: pinned.url.clone(),
            prefix: repo.map(|r| r.prefix).unwrap_or_default(),
        }))
    }

    /// The clone of `spec`'s remote on this node, for a worktree at `path`.
    pub(super) async fn isolate_remote(
        &self,
        spec: &RemoteSpec,
        path: PathBuf,
        base: String,
    ) -> Result<Isolate, String> {
        let Some(remotes) = &self.remotes else {
            return Err("this node is not part of a fleet (--store): it cannot run a worktree agent through a git remote".into());
        };
        spec.check()?;
        let clone = remotes.clones.open(&spec.url, &spec.prefix).await?;
        Ok(Isolate {
            repo: clone.repo,
            path,
            base,
            remote: Some(spec.url.clone()),
        })
    }

    /// The commit a worktree agent with a remote starts from: `base` fetched from the
    /// remote. An agent of this node starts from its work as it is (as without a
    /// remote); one another node runs, from what it last pushed.
    pub(super) async fn remote_base(&self, iso: &Isolate, url: &str) -> Result<String, String> {
        let Some(remotes) = &self.remotes else {
            return Err("no git remote on this node".into());
        };
        let clone = RemoteRepo {
            repo: iso.repo.clone(),
            url: url.to_string(),
        };
        remotes.clones.fetch_all(&clone).await?;
        let Ok(h) = self.get(&iso.base) else {
            return clone.resolve(&iso.base).await;
        };
        let Some(wt) = &h.settings.worktree else {
            return Err(format!(
                "base `{}` is an agent without a worktree of its own (created without isolation \"worktree\"); give a git ref instead (default HEAD)",
                iso.base
            ));
        };
        if wt.remote.as_deref() != Some(url) {
            return Err(format!(
                "base `{}` is an agent working in another repository than the remote {url}",
                iso.base
            ));
        }
        if !h.is_mirror() {
            return Ok(worktree::snapshot_commit(wt, h.name()).await?.0);
        }
        clone.resolve(&wt.branch).await.map_err(|_| {
            format!(
                "base `{}` runs on another node and its branch {} is not in the remote {url} yet",
                iso.base, wt.branch
            )
        })
    }

    /// A new branch for the agent: refused when the remote has it already.
    pub(super) async fn remote_branch_free(
        &self,
        iso: &Isolate,
        url: &str,
        branch: &str,
    ) -> Result<(), String> {
        RemoteRepo {
            repo: iso.repo.clone(),
            url: url.to_string(),
        }
        .check_branch_free(branch)
        .await
    }

    /// Mark a new worktree and push its branch, so the remote has it from the start
    /// (another node can start from it, and take it over, before its first command
    /// ends).
    pub(super) async fn publish_new(&self, wt: &mut Worktree, name: &str) -> Result<(), String> {
        worktree::stamp(wt, &self.node_name()).await?;
        worktree::publish(wt, name, &format!("flotilla: agent {name} created"))
            .await
            .map(|_| ())
    }

    /// This node's name in the fleet (for stamps).
    fn node_name(&self) -> String {
        self.store()
            .shared()
            .map(|s| s.node.clone())
            .unwrap_or_else(|| "local".into())
    }

    /// The worktree to make on this node before it takes over the agent of `log`
    /// ([`Registry::bring_worktree`]): the one its log names, when that one goes
    /// through a git remote and this node cannot reach it. `None`: nothing to move.
    pub fn worktree_to_bring(&self, log: &AgentLog) -> Option<Worktree> {
        latest_worktree(log).filter(|wt| wt.remote.is_some() && !worktree::reachable(wt))
    }

    /// Before this node runs an agent another node ran (a takeover): the worktree
    /// `wt` (from [`Registry::worktree_to_bring`]) made here from its branch in the
    /// remote.
    pub async fn bring_worktree(&self, wt: &Worktree) -> Result<Worktree, String> {
        let Some(remotes) = &self.remotes else {
            return Err(
                "the agent works through a git remote, and this node is not part of a fleet".into(),
            );
        };
        RemoteSpec {
            url: wt.remote.clone().unwrap_or_default(),
            prefix: wt.prefix.clone(),
        }
        .check()?;
        let name = wt.branch.trim_start_matches("flotilla/").to_string();
        let path = self.worktrees_root.join(&name);
        tokio::fs::create_dir_all(&self.worktrees_root)
            .await
            .map_err(|e| format!("cannot create `{}`: {e}", self.worktrees_root.display()))?;
        worktree::rebuild(&remotes.clones, wt, &path, &self.node_name()).await
    }

    /// Push the work of every agent this node runs in a worktree with a remote (at
    /// shutdown, once their workers stopped), so the node that takes them over
    /// starts from it.
    pub(super) async fn publish_all(&self) {
        for h in self.local_agents() {
            let Some(wt) = h.settings.remote_worktree() else {
                continue;
            };
            let message = format!(
                "flotilla: agent {}, work so far (its node stopped)",
                h.name()
            );
            match worktree::publish(wt, h.name(), &message).await {
                Ok(commit) => {
                    tracing::info!(agent = %h.name(), branch = %wt.branch, %commit, "pushed the agent's work before stopping")
                }
                Err(e) => {
                    tracing::warn!(agent = %h.name(), branch = %wt.branch, "could not push the agent's work before stopping: {e}")
                }
            }
        }
    }
}

/// The worktree an agent's log leaves it in: its creation's, or the last node's that
/// rebuilt it.
fn latest_worktree(log: &AgentLog) -> Option<Worktree> {
    log.events.iter().rev().find_map(|e| match &e.event {
        Event::Relocated { worktree, .. } => Some(worktree.clone()),
        Event::Created { settings } => settings.worktree.clone(),
        _ => None,
    })
}
