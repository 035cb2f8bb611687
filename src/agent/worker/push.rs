//! A worktree agent with a git remote hands its work over at the end of every
//! command: committed onto its branch and pushed (see `worktree/remote.rs`), before
//! the command's end is recorded, so whoever waits for it finds the branch there.
//! After each tool call that may have changed files, before its result is journaled,
//! the work in progress is pushed too: a node that takes the agent over finds the
//! files as the journaled results left them.

use super::super::AgentHandle;
use super::super::state::Activity;
use super::turn::Turn;
use crate::store::event::Event;

impl Turn<'_> {
    /// Push the work in progress (nothing when the files did not change since the
    /// last push of this command). A failure is logged; the command goes on.
    pub(super) async fn push_progress(&mut self) {
        let agent = self.agent;
        let Some(wt) = agent.settings.remote_worktree() else {
            return;
        };
        if !holds_lease(agent).await {
            return;
        }
        match crate::worktree::checkpoint(wt, agent.name(), self.pushed_tree.as_deref()).await {
            Ok(Some(tree)) => self.pushed_tree = Some(tree),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(agent = %agent.name(), branch = %wt.branch, "could not push the work in progress: {e}");
            }
        }
    }
}

/// Commit and push the agent's work after command `index`; a failure is recorded
/// (`pushed` with its error) and logged, and the command ends as it would have.
pub(super) async fn push_work(agent: &AgentHandle, index: u32) {
    let Some(wt) = agent.settings.remote_worktree() else {
        return;
    };
    agent.update(|s| {
        s.activity = Some(Activity::now(format!(
            "pushing its work to {} in the remote",
            wt.branch
        )));
    });
    if !holds_lease(agent).await {
        tracing::warn!(agent = %agent.name(), "not pushing: this node no longer holds the agent's lease");
        return;
    }
    let message = format!("flotilla: agent {}, command {index}", agent.name());
    let (commit, error) = match crate::worktree::publish(wt, agent.name(), &message).await {
        Ok(commit) => (Some(commit), None),
        Err(e) => {
            tracing::warn!(agent = %agent.name(), branch = %wt.branch, "could not push the agent's work: {e}");
            (None, Some(e))
        }
    };
    agent.record(Event::Pushed {
        index,
        branch: wt.branch.clone(),
        commit,
        error,
    });
}

/// This node still holds the agent's lease (checked in the store just before a push:
/// a node that lost it must not move the branch the new owner works on).
async fn holds_lease(agent: &AgentHandle) -> bool {
    match agent.fleet.store.shared() {
        Some(shared) => shared.holds(&agent.id).await,
        None => true,
    }
}
