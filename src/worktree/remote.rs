//! Worktree agents any node of a fleet can run: their repository is reached through a
//! git remote (`[cluster] remote`, else the repository's own), not through a shared
//! filesystem.
//!
//! Each node keeps a bare clone of the remote of its own, written only by flotilla
//! (`<worktrees root>/.clones/<name>-<hash>.git`). The remote's branches, tags and
//! `HEAD` are fetched under `refs/fleet/` in it, so nothing fetched ever moves a branch
//! an agent works on. An agent's worktree is made in that clone on `flotilla/<name>`,
//! and [`publish`] commits its work onto the branch and pushes it to the remote at the
//! end of every command: another node can start an agent from it (`base: "<agent>"`),
//! the user sees it in the remote, and a node that takes the agent over [`rebuild`]s
//! the worktree from it. Pushes are fast-forward only: a branch someone else moved in
//! the remote is never overwritten.
//!
//! Between those pushes, [`checkpoint`] pushes the work in progress after every tool
//! call that may have changed files, before its result is journaled, to a ref of the
//! agent's own outside the branches (`refs/flotilla-wip/<name>`, overwritten each
//! time): a node that takes the agent over in the middle of a command finds its files
//! as the journaled tool results left them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use dashmap::DashMap;
use serde::{Deserialize, Serialize};

use super::git::{GIT_TIMEOUT, git, git_remote};
use super::{
    Repo, Worktree, WtGit, add_as, commit_snapshot_as, commit_to_branch, repository_of,
    snapshot_within,
};

/// Where the agents' fetched refs go in a clone.
const FLEET: &str = "refs/fleet";

/// `[cluster] remote`: which git remote worktree agents go through.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum GitRemote {
    /// `remote = ""`: none; worktree agents run on nodes serving their repository.
    Off,
    /// Unset: the own remote of the repository flotilla runs in (its branch's
    /// upstream remote, else `origin`, else its only one), read when the node starts;
    /// none there works as with `Off`.
    #[default]
    Own,
    /// A remote of the repository flotilla runs in, by name, read when the node starts.
    Named(String),
    /// A URL (`https://…`, `ssh://…`, `git@host:path`, or an absolute path): every
    /// worktree agent of the fleet goes through it.
    Url(String),
}

/// The remote worktree agents of this node go through, settled when it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pinned {
    pub url: String,
    /// Read from this repository's config (its common directory): only agents working
    /// in it go through the remote. `None` (a configured URL): every worktree agent.
    pub repo: Option<PathBuf>,
}

impl GitRemote {
    /// The configured value, checked: what was wrong and how to fix it.
    pub fn parse(value: Option<&str>) -> Result<Self, String> {
        let Some(v) = value else {
            return Ok(Self::Own);
        };
        let v = v.trim();
        if v.is_empty() {
            return Ok(Self::Off);
        }
        if is_url(v) {
            check_url(v).map_err(|e| format!("[cluster] remote = {v:?}: {e}"))?;
            return Ok(Self::Url(v.to_string()));
        }
        if !v.starts_with(['-', '.', '/'])
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'))
        {
            return Ok(Self::Named(v.to_string()));
        }
        Err(format!(
            "[cluster] remote = {v:?} is neither a git URL (https://…, ssh://…, git@host:path, /absolute/path) nor a remote's name (such as \"origin\")"
        ))
    }

    /// Settle the remote when the node starts. A name (or the default) is read from
    /// the config of the repository `dir` (flotilla's working directory) is in, now,
    /// before any agent could have changed it; later creates never read a repository's
    /// config for a URL. `None`: no remote.
    pub async fn pin(&self, dir: &Path) -> Result<Option<Pinned>, String> {
        let repo = || async { super::repo_of(dir).await.ok() };
        let (url, repo) = match self {
            Self::Off => return Ok(None),
            Self::Url(url) => (Some(url.clone()), None),
            Self::Own => match repo().await {
                Some(r) => (own_remote(&r).await, Some(r)),
                None => return Ok(None),
            },
            Self::Named(name) => {
                let Some(r) = repo().await else {
                    return Err(format!(
                        "[cluster] remote = \"{name}\" names a remote of the repository flotilla runs in, but `{}` is not in one: start flotilla in the checkout, or set [cluster] remote to the remote's URL",
                        dir.display()
                    ));
                };
                let Some(url) = remote_url(&r, name).await else {
                    return Err(format!(
                        "[cluster] remote = \"{name}\" is not a remote of the repository at `{}`; add it (`git remote add {name} URL`) or set [cluster] remote to a URL",
                        r.toplevel.display()
                    ));
                };
                (Some(url), Some(r))
            }
        };
        let Some(url) = url else { return Ok(None) };
        check_url(&url).map_err(|e| format!("the git remote {}: {e}", shown_url(&url)))?;
        Ok(Some(Pinned {
            url,
            repo: repo.map(|r| r.common_dir.canonicalize().unwrap_or(r.common_dir)),
        }))
    }
}

/// A URL rather than a remote's name: a scheme, a path, or scp-like `[user@]host:path`.
fn is_url(v: &str) -> bool {
    if v.contains("://") || v.starts_with(['/', '.']) {
        return true;
    }
    match v.split_once(':') {
        Some((host, _)) => !host.is_empty() && !host.contains('/'),
        None => false,
    }
}

/// A URL flotilla's git may fetch from and push to: not an option, no control
/// characters, an absolute path if a path, and no password in it (stored and shown
/// with every agent: use a credential helper or an ssh key instead).
pub fn check_url(url: &str) -> Result<(), String> {
    if url.starts_with('-') || url.chars().any(char::is_control) {
        return Err("not a usable git URL".into());
    }
    if url.starts_with('.') {
        return Err("a relative path: give the repository's absolute path".into());
    }
    if let Some((_, rest)) = url.split_once("://")
        && let Some((userinfo, _)) = rest.split('/').next().unwrap_or("").rsplit_once('@')
        && userinfo.contains(':')
    {
        return Err("the URL holds a password, which flotilla would store and show with every agent: leave it out and let a credential helper or an ssh key supply it".into());
    }
    Ok(())
}

/// The URL for messages, any user part left out.
fn shown_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((_, host)) if !rest.split('/').next().unwrap_or("").is_empty() => {
                format!("{scheme}://…@{host}")
            }
            _ => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// `remote.<name>.url` of the repository's own config file (includes not followed).
async fn remote_url(repo: &Repo, name: &str) -> Option<String> {
    let key = format!("remote.{name}.url");
    config_get(repo, &["--get", &key]).await
}

async fn config_get(repo: &Repo, args: &[&str]) -> Option<String> {
    let file = repo.common_dir.join("config");
    let shown = file.display().to_string();
    let mut all = vec!["config", "--file", &shown];
    all.extend_from_slice(args);
    git(&all, &repo.common_dir, &[])
        .await
        .ok()
        .filter(|s| !s.is_empty())
}

/// The remote of the checked-out branch's upstream, else `origin`, else the only one.
async fn own_remote(repo: &Repo) -> Option<String> {
    let branch = git(
        &["symbolic-ref", "--quiet", "--short", "HEAD"],
        &repo.toplevel,
        &[],
    )
    .await
    .unwrap_or_default();
    if !branch.is_empty() {
        let key = format!("branch.{branch}.remote");
        if let Some(name) = config_get(repo, &["--get", &key]).await
            && let Some(url) = remote_url(repo, &name).await
        {
            return Some(url);
        }
    }
    if let Some(url) = remote_url(repo, "origin").await {
        return Some(url);
    }
    let all = config_get(repo, &["--get-regexp", r"^remote\..*\.url$"])
        .await
        .unwrap_or_default();
    let urls: Vec<&str> = all
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(_, url)| url))
        .collect();
    match urls.as_slice() {
        [one] => Some((*one).to_string()),
        _ => None,
    }
}

/// The remote a node that placed an agent on another resolved for it, and where in
/// the repository the agent works.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteSpec {
    pub url: String,
    #[serde(default)]
    pub prefix: PathBuf,
}

impl RemoteSpec {
    /// One that came from another node (or the store): its URL usable, and its prefix
    /// a path inside the repository (no `..`, not absolute).
    pub fn check(&self) -> Result<(), String> {
        check_url(&self.url).map_err(|e| format!("git remote {}: {e}", shown_url(&self.url)))?;
        if !self
            .prefix
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)))
        {
            return Err(format!(
                "`{}` is not a directory inside the repository",
                self.prefix.display()
            ));
        }
        Ok(())
    }
}

/// The file in a worktree's administrative directory holding its stamp.
const STAMP_FILE: &str = "flotilla-stamp";

/// Give the worktree a stamp of its own, written beside it (see [`Worktree::stamp`]).
pub async fn stamp(wt: &mut Worktree, node: &str) -> Result<(), String> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mark = format!("{node}-{}-{nanos:x}", std::process::id());
    tokio::fs::write(wt.admin_dir.join(STAMP_FILE), &mark)
        .await
        .map_err(|e| format!("cannot write `{}`: {e}", wt.admin_dir.display()))?;
    wt.stamp = Some(mark);
    Ok(())
}

/// This node reaches the very worktree `wt` describes (its own, or another node's
/// on a shared filesystem).
pub fn reachable(wt: &Worktree) -> bool {
    wt.path.is_dir()
        && wt.stamp.as_deref().is_some_and(|mark| {
            std::fs::read_to_string(wt.admin_dir.join(STAMP_FILE)).is_ok_and(|s| s == mark)
        })
}

/// This node's clones of the fleet's remotes, one per URL.
pub struct Clones {
    root: PathBuf,
    /// One fetch at a time per clone (two would race for the same refs).
    fetching: DashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>,
}

/// The clone of one remote, ready to use.
pub struct RemoteRepo {
    pub repo: Repo,
    pub url: String,
}

impl Clones {
    /// Clones under `<worktrees_root>/.clones`.
    pub fn new(worktrees_root: &Path) -> Self {
        Self {
            root: worktrees_root.join(".clones"),
            fetching: DashMap::new(),
        }
    }

    /// The clone of `url` (made, empty, when missing); the agent works at `prefix`
    /// in it.
    pub async fn open(&self, url: &str, prefix: &Path) -> Result<RemoteRepo, String> {
        let dir = self.root.join(clone_name(url));
        // One at a time: two creates making the same clone would race in `git init`.
        let lock = self.lock(&dir);
        let _one = lock.lock().await;
        if !dir.join("HEAD").is_file() {
            tokio::fs::create_dir_all(&self.root)
                .await
                .map_err(|e| format!("cannot create `{}`: {e}", self.root.display()))?;
            let shown = dir.display().to_string();
            git(&["init", "--quiet", "--bare", &shown], &self.root, &[])
                .await
                .map_err(|e| format!("cannot make a clone of {url} at `{shown}`: {e}"))?;
        }
        Ok(RemoteRepo {
            repo: Repo {
                toplevel: dir.clone(),
                common_dir: dir,
                prefix: prefix.to_path_buf(),
            },
            url: url.to_string(),
        })
    }

    /// The lock of the clone at `dir` (held while it is made, and while it fetches).
    fn lock(&self, dir: &Path) -> Arc<tokio::sync::Mutex<()>> {
        self.fetching.entry(dir.to_path_buf()).or_default().clone()
    }

    /// Fetch `refspecs` from the clone's remote, one fetch at a time per clone.
    async fn fetch(&self, clone: &RemoteRepo, refspecs: &[&str]) -> Result<(), String> {
        let lock = self.lock(&clone.repo.common_dir);
        let _one = lock.lock().await;
        let git_dir = format!("--git-dir={}", clone.repo.common_dir.display());
        let mut args = vec![
            git_dir.as_str(),
            "fetch",
            "--quiet",
            "--no-tags",
            "--prune",
            "--no-write-fetch-head",
            "--no-recurse-submodules",
            "--end-of-options",
            &clone.url,
        ];
        args.extend_from_slice(refspecs);
        remote_git(&clone.repo.common_dir, &clone.url, &args)
            .await
            .map(|_| ())
            .map_err(|e| format!("cannot fetch from {}: {e}", clone.url))
    }

    /// Fetch the remote's branches, tags and `HEAD` (an empty remote has none).
    pub async fn fetch_all(&self, clone: &RemoteRepo) -> Result<(), String> {
        let heads = format!("+refs/heads/*:{FLEET}/heads/*");
        let tags = format!("+refs/tags/*:{FLEET}/tags/*");
        let head = format!("+HEAD:{FLEET}/HEAD");
        match self.fetch(clone, &[&head, &heads, &tags]).await {
            Err(e) if e.contains("remote ref HEAD") => self.fetch(clone, &[&heads, &tags]).await,
            other => other,
        }
    }

    /// Fetch one branch of the remote: its commit, or `None` when the remote has no
    /// such branch.
    pub async fn fetch_branch(
        &self,
        clone: &RemoteRepo,
        branch: &str,
    ) -> Result<Option<String>, String> {
        let spec = format!("+refs/heads/{branch}:{FLEET}/heads/{branch}");
        match self.fetch(clone, &[&spec]).await {
            Ok(()) => Ok(Some(
                rev(&clone.repo, &format!("{FLEET}/heads/{branch}")).await?,
            )),
            Err(e) if e.contains("couldn't find remote ref") => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl Clones {
    /// The agent's work in progress in the remote, when it continues `head` (the
    /// branch's commit): pushed during the command that was running. An older one (from
    /// before the branch last moved) is `None`.
    async fn fetch_wip(
        &self,
        clone: &RemoteRepo,
        branch: &str,
        head: &str,
    ) -> Result<Option<String>, String> {
        let local = format!(
            "{FLEET}/wip/{}",
            branch.strip_prefix("flotilla/").unwrap_or(branch)
        );
        let spec = format!("+{}:{local}", wip_ref(branch));
        match self.fetch(clone, &[&spec]).await {
            Ok(()) => {}
            Err(e) if e.contains("couldn't find remote ref") => return Ok(None),
            Err(e) => return Err(e),
        }
        let wip = rev(&clone.repo, &local).await?;
        let git_dir = format!("--git-dir={}", clone.repo.common_dir.display());
        let continues = git(
            &[&git_dir, "merge-base", "--is-ancestor", head, &wip],
            &clone.repo.common_dir,
            &[],
        )
        .await
        .is_ok();
        Ok(continues.then_some(wip))
    }
}

impl RemoteRepo {
    /// The commit `base` (a git ref of the remote: `HEAD`, a branch, a tag, a commit,
    /// with `~n`/`^` after it) names, once fetched.
    pub async fn resolve(&self, base: &str) -> Result<String, String> {
        for candidate in candidates(base) {
            if let Ok(commit) = rev(&self.repo, &candidate).await {
                return Ok(commit);
            }
        }
        if base == "HEAD" {
            return Err(format!(
                "the remote {} has no commit yet (no HEAD): push a first commit to it, then create the agent",
                self.url
            ));
        }
        Err(format!(
            "base `{base}` is neither an agent nor a git ref (branch, tag or commit) of the remote {}. Give a ref the remote has (default HEAD, its default branch) or the name of an agent created with isolation \"worktree\"",
            self.url
        ))
    }

    /// Refuse a branch the remote has already (fetched by [`Clones::fetch_all`]); a
    /// stale one of this clone alone (deleted in the remote since) is dropped.
    pub async fn check_branch_free(&self, branch: &str) -> Result<(), String> {
        if rev(&self.repo, &format!("{FLEET}/heads/{branch}"))
            .await
            .is_ok()
        {
            return Err(format!(
                "branch `{branch}` already exists in the remote {} (left by an earlier agent of this name?). Review and merge it, then delete it (`git push {0} --delete {branch}`), or choose another name",
                self.url
            ));
        }
        let full = format!("refs/heads/{branch}");
        if rev(&self.repo, &full).await.is_ok() {
            let git_dir = format!("--git-dir={}", self.repo.common_dir.display());
            git(
                &[&git_dir, "update-ref", "-d", &full],
                &self.repo.common_dir,
                &[],
            )
            .await
            .map_err(|e| {
                format!(
                    "branch `{branch}` is left in this node's clone `{}` and cannot be dropped: {e}",
                    self.repo.common_dir.display()
                )
            })?;
        }
        Ok(())
    }
}

/// Where in the clone a base may be: `HEAD` is the remote's; a name is first one of
/// its branches, then one of its tags, then anything git resolves (a commit).
fn candidates(base: &str) -> Vec<String> {
    let cut = base.find(['~', '^']).unwrap_or(base.len());
    let (name, rest) = base.split_at(cut);
    if name == "HEAD" {
        return vec![format!("{FLEET}/HEAD{rest}")];
    }
    let name = name.strip_prefix("refs/heads/").unwrap_or(name);
    vec![
        format!("{FLEET}/heads/{name}{rest}"),
        format!("{FLEET}/tags/{name}{rest}"),
        base.to_string(),
    ]
}

/// The commit `spec` names in `repo`.
async fn rev(repo: &Repo, spec: &str) -> Result<String, String> {
    let git_dir = format!("--git-dir={}", repo.common_dir.display());
    let spec = format!("{spec}^{{commit}}");
    git(
        &[
            &git_dir,
            "rev-parse",
            "--verify",
            "--quiet",
            "--end-of-options",
            &spec,
        ],
        &repo.common_dir,
        &[],
    )
    .await
    .and_then(|c| {
        if c.is_empty() {
            Err("no such commit".into())
        } else {
            Ok(c)
        }
    })
}

/// `<last part of the URL>-<hash of the URL>.git`: stable, readable, one per URL.
fn clone_name(url: &str) -> String {
    let last = url
        .trim_end_matches('/')
        .rsplit(['/', ':'])
        .next()
        .unwrap_or("repo")
        .trim_end_matches(".git");
    let readable: String = last
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        .take(40)
        .collect();
    let readable = readable.trim_start_matches('.');
    let readable = if readable.is_empty() {
        "repo"
    } else {
        readable
    };
    format!("{readable}-{:016x}.git", fnv1a(url.as_bytes()))
}

/// FNV-1a, 64 bits: stable across builds (the std hasher is not promised to be).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Commit the agent's work (everything in its worktree, as on delete) onto its branch
/// with `message`, and push the branch to its remote. The pushed commit.
pub async fn publish(wt: &Worktree, agent: &str, message: &str) -> Result<String, String> {
    let Some(url) = &wt.remote else {
        return Err("the worktree has no remote".into());
    };
    let common = repository_of(wt)?;
    let g = WtGit::new(wt).await?;
    let (commit, snap) = commit_to_branch(&g, &common, agent, message, message).await?;
    if snap.dirty {
        // The worktree's index follows its new head: the work shows as committed.
        g.run(&["read-tree", "HEAD"], &[]).await?;
    }
    drop(g);
    push(&common, url, &wt.branch).await?;
    Ok(commit)
}

/// The config of every clone: the repository format, nothing else.
const CLONE_CONFIG: &str =
    "[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = true\n";

/// Git that talks to `url`, in the clone at `common`, which must be this node's clone
/// of `url` (a worktree's `commondir` file can be rewritten by an agent that is not
/// confined); its config is written afresh first, so nothing an agent put there
/// (`url.*.insteadOf`, `protocol.*.allow`, `credential.helper`, `include.path`, …)
/// reaches git while it runs with flotilla's environment.
async fn remote_git(common: &Path, url: &str, args: &[&str]) -> Result<String, String> {
    let ours = common.file_name().and_then(|n| n.to_str()) == Some(clone_name(url).as_str())
        && common
            .parent()
            .and_then(Path::file_name)
            .is_some_and(|p| p == ".clones");
    if !ours {
        return Err(format!(
            "`{}` is not this node's clone of {} (was the worktree's `commondir` changed?); nothing was fetched or pushed",
            common.display(),
            shown_url(url)
        ));
    }
    tokio::fs::write(common.join("config"), CLONE_CONFIG)
        .await
        .map_err(|e| format!("cannot write `{}`: {e}", common.display()))?;
    git_remote(args, common).await
}

/// The agent's work-in-progress ref, in the remote and fetched (a ref, not a branch:
/// the remote's branch list shows only `flotilla/<name>`).
fn wip_ref(branch: &str) -> String {
    format!(
        "refs/flotilla-wip/{}",
        branch.strip_prefix("flotilla/").unwrap_or(branch)
    )
}

/// Push the worktree as it is now (a commit on top of its head; the head itself when
/// nothing is uncommitted) to the agent's work-in-progress ref, unless its tree is
/// `last`, the one pushed before. The tree pushed, or `None` when it was `last`.
pub async fn checkpoint(
    wt: &Worktree,
    agent: &str,
    last: Option<&str>,
) -> Result<Option<String>, String> {
    let Some(url) = &wt.remote else {
        return Ok(None);
    };
    let g = WtGit::new(wt).await?;
    let snap = snapshot_within(&g, GIT_TIMEOUT).await?;
    if last == Some(snap.tree.as_str()) {
        return Ok(None);
    }
    let commit = if snap.dirty {
        let (commit, _) = commit_snapshot_as(
            &g,
            agent,
            &format!("flotilla: agent {agent}, work in progress"),
        )
        .await?;
        commit
    } else {
        snap.head.clone()
    };
    drop(g);
    let common = repository_of(wt)?;
    let spec = format!("+{commit}:{}", wip_ref(&wt.branch));
    push_refspec(&common, url, &spec)
        .await
        .map_err(|e| format!("cannot push the work in progress to {url}: {e}"))?;
    Ok(Some(snap.tree))
}

/// Delete the agent's work-in-progress ref in the remote (its work is on its branch
/// now); one that is not there is no error.
pub(super) async fn drop_wip(common: &Path, url: &str, branch: &str) {
    let spec = format!(":{}", wip_ref(branch));
    if let Err(e) = push_refspec(common, url, &spec).await
        && !e.contains("does not exist")
    {
        tracing::debug!(%branch, "could not delete the work-in-progress ref: {e}");
    }
}

/// `git push url spec` from the clone at `common`: no hooks, no submodules.
async fn push_refspec(common: &Path, url: &str, spec: &str) -> Result<(), String> {
    let git_dir = format!("--git-dir={}", common.display());
    remote_git(
        common,
        url,
        &[
            &git_dir,
            "push",
            "--quiet",
            "--no-verify",
            "--no-recurse-submodules",
            "--end-of-options",
            url,
            spec,
        ],
    )
    .await
    .map(|_| ())
}

/// Push `branch` of the clone at `common` to `url`, fast-forward only.
pub(super) async fn push(common: &Path, url: &str, branch: &str) -> Result<(), String> {
    let spec = format!("refs/heads/{branch}:refs/heads/{branch}");
    push_refspec(common, url, &spec).await.map_err(|e| {
        if e.contains("non-fast-forward") || e.contains("fetch first") || e.contains("rejected") {
            format!(
                "{url} has commits on {branch} that this agent's branch does not (pushed by someone else?); they were not overwritten. Merge them into the agent's work by hand, or delete the agent and create one with base \"{branch}\" to go on from the remote's: {e}"
            )
        } else {
            format!("cannot push {branch} to {url}: {e}")
        }
    })
}

/// Make the worktree of an agent another node ran, on this node at `path`, from its
/// branch in the remote (what it pushed at the end of its last command). A worktree
/// left at `path` by an earlier stay of the agent here goes: the remote's is newer.
pub async fn rebuild(
    clones: &Clones,
    wt: &Worktree,
    path: &Path,
    node: &str,
) -> Result<Worktree, String> {
    let Some(url) = &wt.remote else {
        return Err("the worktree has no remote".into());
    };
    let clone = clones.open(url, &wt.prefix).await?;
    let commit = clones
        .fetch_branch(&clone, &wt.branch)
        .await?
        .ok_or_else(|| {
            format!(
                "the remote {url} has no branch {} (deleted there?): the agent's work cannot be brought to this node",
                wt.branch
            )
        })?;
    let wip = clones.fetch_wip(&clone, &wt.branch, &commit).await?;
    let git_dir = format!("--git-dir={}", clone.repo.common_dir.display());
    if tokio::fs::symlink_metadata(path).await.is_ok() {
        let shown = path.display().to_string();
        let by_git = git(
            &[&git_dir, "worktree", "remove", "--force", "--force", &shown],
            &clone.repo.common_dir,
            &[],
        )
        .await;
        if by_git.is_err() {
            let p = path.to_path_buf();
            tokio::task::spawn_blocking(move || std::fs::remove_dir_all(p))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("cannot clear `{shown}` for the agent's worktree: {e}"))?;
        }
    }
    let _ = git(
        &[&git_dir, "worktree", "prune"],
        &clone.repo.common_dir,
        &[],
    )
    .await;
    let mut made = add_as(&clone.repo, path, &wt.branch, &commit, &wt.base, "-B").await?;
    if let Some(wip) = wip {
        // The files as the last checkpoint left them, uncommitted on top of the head.
        let g = WtGit::new(&made).await?;
        g.run(&["read-tree", "--reset", "-u", &wip], &[]).await?;
        g.run(&["read-tree", "HEAD"], &[]).await?;
    }
    made.base_commit.clone_from(&wt.base_commit);
    made.remote = Some(url.clone());
    made.prefix.clone_from(&wt.prefix);
    stamp(&mut made, node).await?;
    let workdir = made.path.join(&made.prefix);
    tokio::fs::create_dir_all(&workdir)
        .await
        .map_err(|e| format!("cannot create `{}`: {e}", workdir.display()))?;
    Ok(made)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn remotes_parse_as_urls_names_or_off() {
        assert_eq!(GitRemote::parse(None).unwrap(), GitRemote::Own);
        assert_eq!(GitRemote::parse(Some("  ")).unwrap(), GitRemote::Off);
        for url in [
            "https://example.invalid/org/repo.git",
            "ssh://git@host/repo",
            "git@host:org/repo.git",
            "/srv/git/repo.git",
            "file:///srv/git/repo.git",
        ] {
            assert_eq!(
                GitRemote::parse(Some(url)).unwrap(),
                GitRemote::Url(url.into()),
                "{url}"
            );
        }
        assert_eq!(
            GitRemote::parse(Some("origin")).unwrap(),
            GitRemote::Named("origin".into())
        );
        for bad in [
            "--upload-pack=x",
            "a b",
            "x\ny",
            "../up.git",
            "https://me:hunter2@example.invalid/r.git",
        ] {
            let e = GitRemote::parse(Some(bad)).unwrap_err();
            assert!(e.contains("[cluster] remote"), "{e}");
            assert!(!e.contains("hunter2") || e.contains("password"), "{e}");
        }
        // A user without a password (ssh, tokens from a helper) is fine.
        check_url("https://me@example.invalid/r.git").unwrap();
        check_url("ssh://git@example.invalid:22/r.git").unwrap();
    }

    #[test]
    fn a_remote_from_another_node_is_checked_again() {
        let ok = RemoteSpec {
            url: "/srv/git/r.git".into(),
            prefix: "sub/dir".into(),
        };
        ok.check().unwrap();
        for prefix in ["../../home/u", "/etc", "a/../../b"] {
            let bad = RemoteSpec {
                prefix: prefix.into(),
                ..ok.clone()
            };
            assert!(bad.check().unwrap_err().contains("inside the repository"));
        }
        let bad = RemoteSpec {
            url: "-oProxyCommand=x".into(),
            ..ok
        };
        assert!(bad.check().is_err());
    }

    #[test]
    fn bases_are_looked_up_among_the_remotes_refs_first() {
        assert_eq!(candidates("HEAD"), ["refs/fleet/HEAD"]);
        assert_eq!(candidates("HEAD~2"), ["refs/fleet/HEAD~2"]);
        assert_eq!(
            candidates("main^"),
            ["refs/fleet/heads/main^", "refs/fleet/tags/main^", "main^"]
        );
        assert_eq!(
            candidates("refs/heads/flotilla/a"),
            [
                "refs/fleet/heads/flotilla/a",
                "refs/fleet/tags/flotilla/a",
                "refs/heads/flotilla/a"
            ]
        );
    }

    #[test]
    fn clones_are_named_after_their_remote_and_stable() {
        let a = clone_name("git@host:org/project.git");
        assert!(a.starts_with("project-") && a.ends_with(".git"), "{a}");
        assert_eq!(a, clone_name("git@host:org/project.git"));
        assert_ne!(a, clone_name("https://host/org/project.git"));
        assert!(clone_name("/").starts_with("repo-"));
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
    }
}
