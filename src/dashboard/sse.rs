//! `GET /api/events`: the live feed, as Server-Sent Events, fed by the fleet's event
//! bus (never by polling the store).
//!
//! - `event: agent` — one per journaled event: agent, seq, kind, summary, detail (tool
//!   arguments, short results) and the agent's fresh row.
//! - `event: header` — the fleet header, at most every [`HEADER_EVERY`] while
//!   anything happens.
//! - `event: resync` — this client fell behind the bus and missed events: refetch
//!   the snapshot.
//!
//! A stream ends when the server shuts down.

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
}

impl Feed {
    /// The next message; `None` ends the stream (shutdown).
    async fn next(&mut self) -> Option<SseEvent> {
        loop {
            let event = tokio::select! {
                () = self.d.stop.cancelled() => return None,
                _ = self.tick.tick() => {
                    if std::mem::take(&mut self.dirty) {
                        let header = Header::of(&self.d, &self.d.registry.all());
                        return Some(sse("header", &json!(header)));
                    }
                    continue;
                }
                e = self.rx.recv() => e,
            };
            return match event {
                Ok(e) => {
                    self.dirty = true;
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
