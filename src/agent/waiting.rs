//! An agent created with `depends_on` waits, status `waiting`, holding its task
//! until the scheduler (`registry::schedule`) either starts it — the task plus its
//! dependencies' answers becomes command 1 — or cancels it because a dependency
//! failed for good.

use serde_json::Value;

use super::output::{CommandRecord, CommandStatus};
use super::state::AgentStatus;
use super::{AgentHandle, Deferred, lock};
use crate::failure::{Failure, FailureKind};
use crate::store::Ack;
use crate::store::event::Event;

impl AgentHandle {
    /// The held task, if it still waits.
    pub fn deferred(&self) -> Option<Deferred> {
        lock(&self.deferred).clone()
    }

    /// Take the held task to start it; `None` when another pass took it first.
    pub fn take_deferred(&self) -> Option<Deferred> {
        lock(&self.deferred).take()
    }

    /// Its dependencies are done: start `task` (the held task, taken with
    /// [`Self::take_deferred`], followed by their answers).
    pub fn start_deferred(
        &self,
        task: String,
        output_schema: Option<Value>,
    ) -> Result<Option<Ack>, String> {
        let queued = self.enqueue(task, false, output_schema)?;
        self.update(|s| {
            s.waiting_on.clear();
            if s.status == AgentStatus::Waiting {
                s.status = AgentStatus::Running;
            } else if s.before_pause == Some(AgentStatus::Waiting) {
                s.before_pause = Some(AgentStatus::Idle);
            }
        });
        Ok(queued.ack)
    }

    /// A dependency failed for good: the held task never runs. It is recorded as
    /// command 1, cancelled, with `why` (naming the dependency) as its error.
    pub fn cancel_deferred(&self, why: &Failure) -> Option<Ack> {
        self.drop_deferred(why.to_string(), Some(why.kind()))
    }

    /// The held task never runs: recorded as the next command, cancelled with
    /// `error`. `None` when there is no held task (it started, or was dropped).
    pub(super) fn drop_deferred(&self, error: String, failure: Option<FailureKind>) -> Option<Ack> {
        let deferred = lock(&self.deferred).take()?;
        let _inbox = lock(&self.inbox);
        let mut index = 0;
        self.update(|s| {
            s.commands += 1;
            index = s.commands;
        });
        self.record(Event::Command {
            index,
            task: deferred.task.clone(),
            interrupt: false,
            output_schema: deferred.output_schema.clone(),
        });
        let ack = self.record(Event::Finished {
            index,
            status: CommandStatus::Cancelled,
            error: Some(error.clone()),
            failure,
        });
        let mut record = CommandRecord::queued(deferred.task);
        record.status = CommandStatus::Cancelled;
        record.error = Some(error.clone());
        record.output_schema = deferred.output_schema;
        lock(&self.outputs).push(record);
        self.update(|s| {
            s.waiting_on.clear();
            s.last_error = Some(error);
            if s.status == AgentStatus::Paused {
                s.before_pause = Some(AgentStatus::Cancelled);
            } else {
                s.status = AgentStatus::Cancelled;
            }
        });
        ack
    }

    /// Show which dependencies it still waits on.
    pub(crate) fn set_waiting_on(&self, names: Vec<String>) {
        if self.peek(|s| s.waiting_on != names) {
            self.update(|s| s.waiting_on = names);
        }
    }
}
