//! The store's one thread: it owns the SQLite connection, commits appends in batches
//! (one transaction for everything queued, up to a cap), acknowledges durable events
//! once committed, and answers reads after the writes queued before them. The
//! messages ([`Msg`]) and the grouping of rows into logs ([`group`]) are shared with
//! the PostgreSQL writer.

use std::collections::BTreeMap;

use tokio::sync::mpsc::UnboundedReceiver;

use rusqlite::{Connection, params};
use tokio::sync::oneshot;

use super::event::Event;
use super::{AgentLog, EventPage, StoredEvent};
use crate::pricing::Spend;

const RETIRED_COST: &str = "retired_cost_usd";
const RETIRED_TOKENS: &str = "retired_tokens";

/// What deleted agents had spent (see [`Msg::Delete`]).
pub(super) fn retired(conn: &Connection) -> Spend {
    let get = |key: &str| -> f64 {
        conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| {
            r.get::<_, String>(0)
        })
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
    };
    Spend {
        cost_usd: get(RETIRED_COST),
        tokens: get(RETIRED_TOKENS) as u64,
    }
}

/// Most messages committed in one transaction.
pub(super) const MAX_BATCH: usize = 4096;

pub(super) enum Msg {
    Append {
        agent_id: String,
        seq: u64,
        at_ms: i64,
        event: Event,
        ack: Option<oneshot::Sender<Result<(), String>>>,
    },
    Delete {
        agent_id: String,
        /// What the agent spent: added to the fleet's retired spend, so deleting an
        /// agent does not give its spend back to the fleet's budget.
        spent: Spend,
        ack: oneshot::Sender<Result<(), String>>,
    },
    Events {
        agent_id: String,
        after: u64,
        limit: usize,
        kinds: Option<Vec<String>>,
        reply: oneshot::Sender<Result<EventPage, String>>,
    },
    /// One agent's whole log (`None` without events), after every earlier write.
    LoadAgent {
        agent_id: String,
        reply: oneshot::Sender<Result<Option<AgentLog>, String>>,
    },
    /// Add to the fleet's shared spend (PostgreSQL only); answers the new total.
    Charge {
        delta: Spend,
        reply: oneshot::Sender<Result<Spend, String>>,
    },
    /// Commit what is queued, answer `done`, and stop.
    Close(Option<oneshot::Sender<()>>),
}

pub(super) fn run(mut conn: Connection, mut rx: UnboundedReceiver<Msg>) {
    let mut batch = Vec::with_capacity(64);
    loop {
        let Some(first) = rx.blocking_recv() else {
            break;
        };
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        let closing = write_batch(&mut conn, &mut batch);
        if closing {
            break;
        }
    }
    tracing::debug!("store writer stopped");
}

/// Commit the writes of `batch`, then answer everything in it. Returns true on Close.
fn write_batch(conn: &mut Connection, batch: &mut Vec<Msg>) -> bool {
    let result = commit(conn, batch).map_err(|e| e.to_string());
    if let Err(e) = &result {
        tracing::error!("fleet store write failed: {e}");
    }
    let mut closing = false;
    for msg in batch.drain(..) {
        match msg {
            Msg::Append { ack, .. } => {
                if let Some(ack) = ack {
                    let _ = ack.send(result.clone());
                }
            }
            Msg::Delete { ack, .. } => {
                let _ = ack.send(result.clone());
            }
            Msg::Events {
                agent_id,
                after,
                limit,
                kinds,
                reply,
            } => {
                let _ = reply.send(
                    read_events(conn, &agent_id, after, limit, kinds.as_deref())
                        .map_err(|e| e.to_string()),
                );
            }
            Msg::LoadAgent { agent_id, reply } => {
                let _ = reply.send(load_agent(conn, &agent_id));
            }
            // Never sent to SQLite (`Store::charge` answers None); dropping the
            // reply tells a caller the store cannot charge.
            Msg::Charge { .. } => {}
            Msg::Close(done) => {
                closing = true;
                if let Some(done) = done {
                    let _ = done.send(());
                }
            }
        }
    }
    closing
}

fn commit(conn: &mut Connection, batch: &[Msg]) -> rusqlite::Result<()> {
    if !batch
        .iter()
        .any(|m| matches!(m, Msg::Append { .. } | Msg::Delete { .. }))
    {
        return Ok(());
    }
    let tx = conn.transaction()?;
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO events (agent_id, seq, at_ms, kind, data) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        let mut delete = tx.prepare_cached("DELETE FROM events WHERE agent_id = ?1")?;
        let mut retire = tx.prepare_cached(
            "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE
             SET value = CAST(CAST(value AS REAL) + CAST(excluded.value AS REAL) AS TEXT)",
        )?;
        for msg in batch {
            match msg {
                Msg::Append {
                    agent_id,
                    seq,
                    at_ms,
                    event,
                    ..
                } => {
                    let data = serde_json::to_string(event)
                        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
                    insert.execute(params![agent_id, *seq as i64, at_ms, event.kind(), data])?;
                }
                Msg::Delete {
                    agent_id, spent, ..
                } => {
                    delete.execute([agent_id])?;
                    if spent.cost_usd > 0.0 {
                        retire.execute(params![RETIRED_COST, spent.cost_usd.to_string()])?;
                    }
                    if spent.tokens > 0 {
                        retire.execute(params![RETIRED_TOKENS, spent.tokens.to_string()])?;
                    }
                }
                _ => {}
            }
        }
    }
    tx.commit()
}

pub(super) fn parse(agent_id: &str, seq: i64, data: &str) -> Result<Event, String> {
    serde_json::from_str(data)
        .map_err(|e| format!("event {seq} of agent {agent_id} cannot be read ({e})"))
}

fn read_events(
    conn: &Connection,
    agent_id: &str,
    after: u64,
    limit: usize,
    kinds: Option<&[String]>,
) -> rusqlite::Result<EventPage> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, at_ms, kind, data FROM events WHERE agent_id = ?1 AND seq > ?2 ORDER BY seq",
    )?;
    let mut rows = stmt.query(params![agent_id, after as i64])?;
    let mut events = Vec::new();
    let mut more = false;
    while let Some(row) = rows.next()? {
        let kind: String = row.get(2)?;
        if kinds.is_some_and(|k| !k.contains(&kind)) {
            continue;
        }
        if events.len() == limit {
            more = true;
            break;
        }
        let seq: i64 = row.get(0)?;
        let data: String = row.get(3)?;
        let event = parse(agent_id, seq, &data)
            .map_err(|e| rusqlite::Error::InvalidColumnType(3, e, rusqlite::types::Type::Text))?;
        events.push(StoredEvent {
            seq: seq as u64,
            at_ms: row.get(1)?,
            event,
        });
    }
    Ok(EventPage { events, more })
}

/// One row of the events table, as [`group`] reads it.
pub(super) struct Row {
    pub agent_id: String,
    pub seq: i64,
    pub at_ms: i64,
    pub data: String,
    /// The row's place in the table: its insertion order.
    pub id: i64,
}

/// Every agent's log, for replay at start-up.
pub(super) fn load(conn: &Connection) -> Result<Vec<AgentLog>, String> {
    select(
        conn,
        "SELECT agent_id, seq, at_ms, data, id FROM events ORDER BY agent_id, seq",
        [],
    )
}

/// One agent's whole log, `None` when it has no events.
fn load_agent(conn: &Connection, agent_id: &str) -> Result<Option<AgentLog>, String> {
    let logs = select(
        conn,
        "SELECT agent_id, seq, at_ms, data, id FROM events WHERE agent_id = ?1 ORDER BY seq",
        [agent_id],
    )?;
    Ok(logs.into_iter().next())
}

fn select(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<AgentLog>, String> {
    let get = |e: rusqlite::Error| e.to_string();
    let mut stmt = conn.prepare_cached(sql).map_err(get)?;
    let mut rows = stmt.query(params).map_err(get)?;
    let mut all = Vec::new();
    while let Some(row) = rows.next().map_err(get)? {
        all.push(Row {
            agent_id: row.get(0).map_err(get)?,
            seq: row.get(1).map_err(get)?,
            at_ms: row.get(2).map_err(get)?,
            data: row.get(3).map_err(get)?,
            id: row.get(4).map_err(get)?,
        });
    }
    group(all)
}

/// Rows (ordered by agent and seq) into logs, in creation order: restored agents
/// line up for run slots as they did.
pub(super) fn group(rows: Vec<Row>) -> Result<Vec<AgentLog>, String> {
    let mut logs: BTreeMap<String, Vec<StoredEvent>> = BTreeMap::new();
    // Where each agent's log starts in the table: its creation order.
    let mut first: BTreeMap<String, i64> = BTreeMap::new();
    for row in rows {
        let event = parse(&row.agent_id, row.seq, &row.data)?;
        let start = first.entry(row.agent_id.clone()).or_insert(row.id);
        *start = (*start).min(row.id);
        logs.entry(row.agent_id).or_default().push(StoredEvent {
            seq: row.seq as u64,
            at_ms: row.at_ms,
            event,
        });
    }
    let mut logs: Vec<AgentLog> = logs
        .into_iter()
        .map(|(agent_id, events)| AgentLog { agent_id, events })
        .collect();
    logs.sort_by_key(|l| first.get(&l.agent_id).copied().unwrap_or(i64::MAX));
    Ok(logs)
}
