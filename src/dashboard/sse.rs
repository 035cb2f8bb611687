//! `GET /api/events`: the live feed, as Server-Sent Events, fed by the fleet's event
//! bus (never by polling the store).
//!
//! - `event: agent` — one per journaled event: agent, seq, kind, summary, detail (tool
//!   arguments, short results) and the agent's fresh row.
//! - `event: header` — the fleet header, and `event: rows` — the fresh rows of the
//!   agents that had events, at most every [`HEADER_EVERY`] while anything happens.
//!   An agent's state changes just after it journals an event (a command's end is
//!   journaled, then its status set), so the row sent with the event can be a step
//!   behind; this catches it up.
//! - `event: nodes` — in a fleet of several nodes, every [`NODES_EVERY`]: each node and
//!   its health, then (`event: rows`) the rows of agents other nodes run that changed
//!   since (their mirrors change without events on this node's bus).
//! - `event: resync` — this client fell behind the bus and missed events: refetch
//!   the snapshot.
//!
//! A stream ends when the server shuts down.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::Stream;
use serde_json::json;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use crate::fleet::bus::FleetEvent;

use super::Dashboard;
use super::api::{Header, Row, event_json};

/// How often the header is sent while events arrive.
const HEADER_EVERY: Duration = Duration::from_millis(500);
/// How often the nodes (and the changed rows of other nodes' agents) are sent.
const NODES_EVERY: Duration = Duration::from_secs(1);

/// What a mirror's row shows that changes (a changed one is sent again).
type Look = (
    &'static str,
    u32,
    u32,
    u64,
    u64,
    SystemTime,
    Option<Arc<str>>,
);

pub async fn events(
    State(d): State<Arc<Dashboard>>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let feed = Feed {
        rx: d.registry.fleet().bus.subscribe(),
        tick: tokio::time::interval(HEADER_EVERY),
        dirty: true,
        touched: HashSet::new(),
        last: HashSet::new(),
        pending: None,
        nodes_tick: d.cluster.get().map(|_| tokio::time::interval(NODES_EVERY)),
        mirrors: HashMap::new(),
        d,
    };
    let stream = futures::stream::unfold(feed, |mut feed| async move {
        let next = feed.next().await?;
        Some((Ok(next), feed))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// One client's position in the feed.
struct Feed {
    d: Arc<Dashboard>,
    rx: broadcast::Receiver<FleetEvent>,
    tick: tokio::time::Interval,
    /// Something happened since the last header.
    dirty: bool,
    /// Agents (ids) with events since the last header.
    touched: HashSet<Arc<str>>,
    /// Those of the tick before.
    last: HashSet<Arc<str>>,
    /// The `rows` message to send after the header.
    pending: Option<SseEvent>,
    /// A fleet of several nodes: when to send the nodes next.
    nodes_tick: Option<tokio::time::Interval>,
    /// Each mirror as last sent, by id.
    mirrors: HashMap<String, Look>,
}

impl Feed {
    /// The next message; `None` ends the stream (shutdown).
    async fn next(&mut self) -> Option<SseEvent> {
        if let Some(rows) = self.pending.take() {
            return Some(rows);
        }
        loop {
            let event = tokio::select! {
                () = self.d.stop.cancelled() => return None,
                _ = self.tick.tick() => {
                    // Send on the tick after events, and once more on the next one:
                    // a state set just after the last event is caught by the second.
                    let dirty = std::mem::take(&mut self.dirty);
                    let last = std::mem::replace(&mut self.last, std::mem::take(&mut self.touched));
                    if dirty || !last.is_empty() {
                        let header = Header::of(&self.d, &self.d.registry.all());
                        let rows: Vec<Row> = self
                            .last
                            .union(&last)
                            .filter_map(|id| self.d.registry.get(id).ok())
                            .map(|h| Row::of(&h))
                            .collect();
                        if !rows.is_empty() {
                            self.pending = Some(sse("rows", &json!(rows)));
                        }
                        return Some(sse("header", &json!(header)));
                    }
                    continue;
                }
                () = next_tick(self.nodes_tick.as_mut()) => {
                    if let Some(nodes) = self.d.nodes() {
                        self.pending = self.changed_mirrors();
                        return Some(sse("nodes", &json!(nodes)));
                    }
                    continue;
                }
                e = self.rx.recv() => e,
            };
            return match event {
                Ok(e) => {
                    self.dirty = true;
                    self.touched.insert(e.agent_id.clone());
                    // A deleted agent has no row; its events still go out.
                    let handle = self.d.registry.get(&e.agent_id).ok();
                    let mut v = match &handle {
                        Some(h) => event_json(h, e.seq, e.at_ms, &e.event),
                        None => json!({ "seq": e.seq, "at_ms": e.at_ms, "kind": e.event.kind() }),
                    };
                    v["agent"] = json!(&*e.name);
                    v["row"] = json!(handle.map(|h| Row::of(&h)));
                    Some(sse("agent", &v))
                }
                Err(RecvError::Lagged(n)) => {
                    self.dirty = true;
                    Some(sse("resync", &json!({ "missed": n })))
                }
                Err(RecvError::Closed) => None,
            };
        }
    }
}

impl Feed {
    /// The `rows` message with the mirrors that changed since they were last sent.
    fn changed_mirrors(&mut self) -> Option<SseEvent> {
        let mut rows = Vec::new();
        let mut seen = HashMap::with_capacity(self.mirrors.len());
        for h in self.d.registry.unsorted() {
            if !h.is_mirror() {
                continue;
            }
            let look: Look = h.peek(|s| {
                (
                    s.status.as_str(),
                    s.commands,
                    s.pending,
                    s.steps,
                    s.tool_calls,
                    s.last_activity_at,
                    h.node(),
                )
            });
            if self.mirrors.get(&h.id) != Some(&look) {
                rows.push(Row::of(&h));
            }
            seen.insert(h.id.clone(), look);
        }
        self.mirrors = seen;
        (!rows.is_empty()).then(|| sse("rows", &json!(rows)))
    }
}

/// The next tick of `tick`; never without one.
async fn next_tick(tick: Option<&mut tokio::time::Interval>) {
    match tick {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}

fn sse(name: &str, data: &serde_json::Value) -> SseEvent {
    SseEvent::default().event(name).data(data.to_string())
}
