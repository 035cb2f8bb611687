//! Cancelling one command by its index (MCP `tasks/cancel`): the one running is
//! interrupted (the worker journals its end, `cancelled`); one still queued is taken
//! out of the inbox and journaled `cancelled` at once, so a restart agrees (the
//! replay drops a queued command that has a `finished` event); a task still held for
//! its dependencies is dropped the same way. A command that has ended is left alone.

use std::time::SystemTime;

use super::output::CommandStatus;
use super::{AgentHandle, lock};
use crate::store::event::Event;

/// The error a command cancelled this way carries.
pub const CANCELLED_BY_CLIENT: &str = "cancelled by the client (tasks/cancel)";

impl AgentHandle {
    /// Cancel command `index` (1-based): interrupt it if it is the one running, or
    /// drop it (journaled `cancelled`) if it is queued or held for dependencies.
    /// Returns whether anything was cancelled; `false` when it has already ended
    /// (or does not exist).
    pub fn cancel_command(&self, index: u32) -> bool {
        // The held task becomes the next command when the dependencies are done.
        if self.peek(|s| s.commands + 1) == index
            && self.deferred().is_some()
            && self
                .drop_deferred(CANCELLED_BY_CLIENT.to_string(), None)
                .is_some()
        {
            return true;
        }
        let status = self.with_outputs(|o| {
            (index as usize)
                .checked_sub(1)
                .and_then(|i| o.get(i))
                .map(|r| r.status)
        });
        if !matches!(status, Some(CommandStatus::Queued | CommandStatus::Running)) {
            return false;
        }
        let mut inbox = lock(&self.inbox);
        if let Some(pos) = inbox.queue.iter().position(|c| c.index == index) {
            inbox.queue.remove(pos);
            // Under the inbox lock, so the worker cannot start it meanwhile; its record
            // first, so whoever hears of the event reads it ended.
            self.with_record(index, |r| {
                r.status = CommandStatus::Cancelled;
                r.error = Some(CANCELLED_BY_CLIENT.to_string());
                r.finished_at = Some(SystemTime::now());
            });
            self.record(Event::Finished {
                index,
                status: CommandStatus::Cancelled,
                error: Some(CANCELLED_BY_CLIENT.to_string()),
                failure: None,
            });
            drop(inbox);
            self.update(|s| s.pending = s.pending.saturating_sub(1));
            return true;
        }
        // Not queued and not ended: it is the command the worker runs now (it leaves
        // the queue and becomes `current` under the same lock).
        inbox.current.as_ref().inspect(|t| t.cancel()).is_some()
    }
}
