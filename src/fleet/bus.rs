//! The fleet's event bus: every event an agent journals is also published here, in
//! journal order per agent, for observers that watch the whole fleet (the dashboard's
//! live feed, traces, the dependency scheduler). A broadcast channel: a slow observer
//! misses events (and is told how many) rather than slowing an agent down. Nothing is
//! built for the bus while nobody listens.

use std::sync::Arc;

use tokio::sync::broadcast;

use crate::store::event::Event;

/// How many events a lagging observer may fall behind before it misses some.
const CAPACITY: usize = 4096;

/// One published event.
#[derive(Debug, Clone)]
pub struct FleetEvent {
    pub agent_id: Arc<str>,
    pub name: Arc<str>,
    /// Its sequence number in the agent's log.
    pub seq: u64,
    pub at_ms: i64,
    pub event: Arc<Event>,
}

pub struct EventBus {
    tx: broadcast::Sender<FleetEvent>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

impl EventBus {
    pub fn new() -> Self {
        Self {
            tx: broadcast::Sender::new(CAPACITY),
        }
    }

    /// Whether anyone listens (so publishers can skip building events).
    pub fn has_listeners(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    pub fn publish(&self, event: FleetEvent) {
        // No receiver is not an error: nobody is watching.
        let _ = self.tx.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<FleetEvent> {
        self.tx.subscribe()
    }
}
