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
//! - `event: resync` — this client fell behind the bus and missed events: refetch
//!   the snapshot.
//!
//! A stream ends when the server shuts down.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

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

fn sse(name: &str, data: &serde_json::Value) -> SseEvent {
    SseEvent::default().event(name).data(data.to_string())
}
