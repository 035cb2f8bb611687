//! `notifications/tasks` for session peers (2025-11-25, `initialize`): one tracked,
//! cancellable watcher per task such a peer created, reading the fleet's event bus and
//! sending the task's full state (what `tasks/get` answers) whenever its status
//! changes. It looks again on every event of its agents (but model and tool steps)
//! and whenever an agent settles. It ends when the task ends, its agent goes, the peer goes or the server
//! stops. Stateless (2026-07-28) peers have no channel for it; they poll.

use rmcp::model::{
    GetTaskParams, Notification, ServerNotification, TaskStatus, TaskStatusNotificationParams,
};
use rmcp::{Peer, RoleServer};
use tokio::sync::broadcast::error::RecvError;

use super::TaskId;
use crate::server::FleetServer;
use crate::store::event::Event;

/// Watch task `id` for `peer`, whose status was `first` when it was created.
pub(super) fn watch(server: &FleetServer, id: TaskId, peer: Peer<RoleServer>, first: TaskStatus) {
    if first.is_terminal() {
        return;
    }
    // Subscribed before looking again, so no change falls between the two.
    let mut events = server.registry.fleet().bus.subscribe();
    // A command's end is published before its record says so; the settle signal
    // comes after (the agent's status is the last thing a command's end updates).
    let mut settle = server.registry.watch_fleet();
    let stop = server.stopping.child_token();
    let server = server.clone();
    tracing::debug!(task = %id, "watching the task for notifications/tasks");
    server.watchers.clone().spawn(async move {
        let mut last = first;
        let mut changed = true;
        loop {
            if changed {
                match super::view::look(&server, &id) {
                    Ok(look) if look.status() != last => {
                        last = look.status();
                        if !send(&server, &id, &peer).await {
                            return;
                        }
                        if last.is_terminal() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!(task = %id, "no more notifications/tasks: {e}");
                        return;
                    }
                }
            }
            changed = tokio::select! {
                () = stop.cancelled() => return,
                settled = settle.changed() => {
                    if settled.is_err() {
                        return;
                    }
                    true
                }
                event = events.recv() => match event {
                    Ok(e) => {
                        id.0.iter().any(|p| *p.agent_id == *e.agent_id) && matters(&e.event)
                    }
                    Err(RecvError::Lagged(_)) => true,
                    Err(RecvError::Closed) => return,
                },
            };
            if peer.is_transport_closed() {
                tracing::debug!(task = %id, "no more notifications/tasks: the peer is gone");
                return;
            }
        }
    });
}

/// Events that can change a command's status (not the steps inside it).
fn matters(event: &Event) -> bool {
    !matches!(
        event,
        Event::Model { .. }
            | Event::ToolCall { .. }
            | Event::ToolResult { .. }
            | Event::Retry { .. }
            | Event::Charged { .. }
            | Event::Session { .. }
    )
}

/// Send the task's state as `tasks/get` has it; `false` when the peer is gone (or
/// the task cannot be read any more).
async fn send(server: &FleetServer, id: &TaskId, peer: &Peer<RoleServer>) -> bool {
    let task = match super::get(server, GetTaskParams::new(id.to_string())).await {
        Ok(result) => result.task,
        Err(e) => {
            tracing::debug!(task = %id, "task status not sent: {}", e.message);
            return false;
        }
    };
    let notification = ServerNotification::TaskStatusNotification(Notification::new(
        TaskStatusNotificationParams::new(task),
    ));
    match peer.send_notification(notification).await {
        Ok(()) => {
            tracing::debug!(task = %id, "task status sent");
            true
        }
        Err(e) => {
            tracing::debug!(task = %id, "task status not sent: {e}");
            false
        }
    }
}
