//! The PostgreSQL writer: a tokio task that takes everything queued (up to the
//! SQLite writer's cap) and commits it in one transaction, acknowledges durable
//! events after the commit, and answers reads after the writes queued before them —
//! the SQLite writer's contract, plus the rules several nodes need:
//!
//! - Fencing: a `Created` event inserts the agent's lease (token 1) in the same
//!   transaction; every other append is written only if this node still holds the
//!   agent's lease with the token in [`Shared::leases`], checked once per batch with
//!   `FOR SHARE` (a takeover's `UPDATE leases` waits for our commit, so the new
//!   owner's replay sees everything we wrote). A refused append's ack is an error,
//!   the agent is reported once on the fenced channel; the rest of the batch commits.
//! - Wake-ups: `pg_notify('flotilla_events', agent_id)` once per agent written to or
//!   deleted, delivered on commit.
//! - Spend: [`Msg::Charge`] adds to the one-row `fleet_spend` and answers the total.

use std::collections::HashMap;
use std::collections::HashSet;
use std::sync::Arc;

use deadpool_postgres::{GenericClient, Pool, Transaction};
use tokio::sync::mpsc::UnboundedReceiver;

use super::Shared;
use crate::pricing::Spend;
use crate::store::event::Event;
use crate::store::writer::{MAX_BATCH, Msg, Row, group, parse};
use crate::store::{AgentLog, EventPage, StoredEvent};

/// The channel every node LISTENs on; the payload is the agent id.
pub const CHANNEL: &str = "flotilla_events";

/// The error an append gets when another node holds its agent's lease.
pub fn fenced_error(node: &str, agent_id: &str) -> String {
    format!(
        "node {node} no longer holds agent {agent_id}'s lease (another node took it over); this node stopped it"
    )
}

pub(in crate::store) async fn run(shared: Arc<Shared>, mut rx: UnboundedReceiver<Msg>) {
    let mut batch = Vec::with_capacity(64);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        if write_batch(&shared, &mut batch).await {
            break;
        }
    }
    tracing::debug!("store writer stopped");
}

/// What a committed batch changed beyond its rows.
#[derive(Default)]
struct Outcome {
    /// Agents whose appends were refused: another node holds their lease.
    fenced: HashSet<String>,
    /// Agents created here whose lease (token 1) this node now holds.
    created: Vec<String>,
    deleted: Vec<String>,
    /// The fleet's total after each charge, in batch order.
    totals: Vec<Spend>,
}

/// Commit the writes of `batch`, then answer everything in it. Returns true on Close.
async fn write_batch(shared: &Arc<Shared>, batch: &mut Vec<Msg>) -> bool {
    let result = commit(shared, batch).await;
    let (result, outcome) = match result {
        Ok(outcome) => (Ok(()), outcome),
        Err(e) => {
            tracing::error!("fleet store write failed: {e}");
            (Err(e), Outcome::default())
        }
    };
    for agent in &outcome.created {
        shared.leases.insert(agent.clone(), 1);
    }
    for agent in &outcome.deleted {
        shared.leases.remove(agent);
    }
    for agent in &outcome.fenced {
        shared.fence(agent);
    }
    let mut totals = outcome.totals.into_iter();
    let mut closing = false;
    for msg in batch.drain(..) {
        match msg {
            Msg::Append { agent_id, ack, .. } => {
                if let Some(ack) = ack {
                    let _ = ack.send(if outcome.fenced.contains(&agent_id) {
                        Err(fenced_error(&shared.node, &agent_id))
                    } else {
                        result.clone()
                    });
                }
            }
            Msg::Delete { ack, .. } => {
                let _ = ack.send(result.clone());
            }
            Msg::Charge { reply, .. } => {
                let total = result.clone().and_then(|()| {
                    totals
                        .next()
                        .ok_or_else(|| "the fleet's spend was not returned".to_string())
                });
                let _ = reply.send(total);
            }
            Msg::Events {
                agent_id,
                after,
                limit,
                kinds,
                reply,
            } => {
                let pool = shared.pool.clone();
                tokio::spawn(async move {
                    let page = read_events(&pool, &agent_id, after, limit, kinds).await;
                    let _ = reply.send(page);
                });
            }
            Msg::LoadAgent { agent_id, reply } => {
                let pool = shared.pool.clone();
                tokio::spawn(async move {
                    let _ = reply.send(load_agent(&pool, &agent_id).await);
                });
            }
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

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Appends waiting to be inserted together (one `INSERT … UNNEST` keeps their order).
#[derive(Default)]
struct Pending {
    agents: Vec<String>,
    seqs: Vec<i64>,
    ats: Vec<i64>,
    kinds: Vec<String>,
    datas: Vec<String>,
}

impl Pending {
    async fn flush(&mut self, tx: &Transaction<'_>, node: &str) -> Result<(), String> {
        if self.agents.is_empty() {
            return Ok(());
        }
        let insert = tx
            .prepare_cached(
                "INSERT INTO events (agent_id, seq, at_ms, kind, data, node)
                 SELECT a, s, t, k, d, $6
                 FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::text[])
                   AS u(a, s, t, k, d)",
            )
            .await
            .map_err(err)?;
        tx.execute(
            &insert,
            &[
                &self.agents,
                &self.seqs,
                &self.ats,
                &self.kinds,
                &self.datas,
                &node,
            ],
        )
        .await
        .map_err(err)?;
        *self = Self::default();
        Ok(())
    }
}

async fn commit(shared: &Shared, batch: &[Msg]) -> Result<Outcome, String> {
    if !batch.iter().any(|m| {
        matches!(
            m,
            Msg::Append { .. } | Msg::Delete { .. } | Msg::Charge { .. }
        )
    }) {
        return Ok(Outcome::default());
    }
    let mut client = shared.pool.get().await.map_err(err)?;
    let tx = client.transaction().await.map_err(err)?;
    super::bound_transaction(&tx, shared.lease)
        .await
        .map_err(err)?;
    let mut outcome = Outcome {
        created: create_leases(&tx, shared, batch).await?,
        ..Outcome::default()
    };
    let allowed = held_leases(&tx, shared, batch, &outcome.created).await?;
    let mut pending = Pending::default();
    let mut touched: Vec<String> = Vec::new();
    for msg in batch {
        match msg {
            Msg::Append {
                agent_id,
                seq,
                at_ms,
                event,
                ..
            } => {
                if !matches!(event, Event::Created { .. }) && !allowed.contains(agent_id) {
                    outcome.fenced.insert(agent_id.clone());
                    continue;
                }
                pending.agents.push(agent_id.clone());
                pending.seqs.push(*seq as i64);
                pending.ats.push(*at_ms);
                pending.kinds.push(event.kind().to_string());
                pending
                    .datas
                    .push(serde_json::to_string(event).map_err(err)?);
                touched.push(agent_id.clone());
            }
            Msg::Delete { agent_id, .. } => {
                pending.flush(&tx, &shared.node).await?;
                for sql in [
                    "DELETE FROM events WHERE agent_id = $1",
                    "DELETE FROM leases WHERE agent_id = $1",
                    // A claimed call is being answered (maybe this very delete): its
                    // caller reads the answer and removes the row.
                    "DELETE FROM requests WHERE agent_id = $1 AND claimed_by IS NULL",
                ] {
                    let stmt = tx.prepare_cached(sql).await.map_err(err)?;
                    tx.execute(&stmt, &[agent_id]).await.map_err(err)?;
                }
                outcome.deleted.push(agent_id.clone());
                touched.push(agent_id.clone());
            }
            Msg::Charge { delta, .. } => {
                let stmt = tx
                    .prepare_cached(
                        "INSERT INTO fleet_spend (id, cost_usd, tokens) VALUES (1, $1, $2)
                         ON CONFLICT (id) DO UPDATE
                         SET cost_usd = fleet_spend.cost_usd + excluded.cost_usd,
                             tokens = fleet_spend.tokens + excluded.tokens
                         RETURNING cost_usd, tokens",
                    )
                    .await
                    .map_err(err)?;
                let tokens = i64::try_from(delta.tokens).unwrap_or(i64::MAX);
                let row = tx
                    .query_one(&stmt, &[&delta.cost_usd, &tokens])
                    .await
                    .map_err(err)?;
                outcome.totals.push(Spend {
                    cost_usd: row.get(0),
                    tokens: u64::try_from(row.get::<_, i64>(1)).unwrap_or(0),
                });
            }
            _ => {}
        }
    }
    pending.flush(&tx, &shared.node).await?;
    touched.sort();
    touched.dedup();
    if !touched.is_empty() {
        tx.execute(
            "SELECT pg_notify($1, a) FROM UNNEST($2::text[]) AS a",
            &[&CHANNEL, &touched],
        )
        .await
        .map_err(err)?;
    }
    tx.commit().await.map_err(err)?;
    Ok(outcome)
}

/// Insert the lease (token 1) of every agent created in the batch; returns those
/// whose lease is new (an existing lease is someone's: left alone).
async fn create_leases(
    tx: &Transaction<'_>,
    shared: &Shared,
    batch: &[Msg],
) -> Result<Vec<String>, String> {
    let lease_ms = i64::try_from(shared.lease.as_millis()).unwrap_or(i64::MAX);
    let mut created = Vec::new();
    for msg in batch {
        let Msg::Append {
            agent_id,
            event: Event::Created { settings },
            ..
        } = msg
        else {
            continue;
        };
        let stmt = tx
            .prepare_cached(
                "INSERT INTO leases (agent_id, node, token, expires_at, workdir)
                 VALUES ($1, $2, 1, now() + $3::bigint * interval '1 millisecond', $4)
                 ON CONFLICT DO NOTHING",
            )
            .await
            .map_err(err)?;
        // A worktree agent with a git remote can run on any node: no directory to serve.
        let anywhere = settings
            .worktree
            .as_ref()
            .is_some_and(|w| w.remote.is_some());
        let workdir = if anywhere {
            String::new()
        } else {
            settings.workdir.to_string_lossy().into_owned()
        };
        let inserted = tx
            .execute(&stmt, &[agent_id, &shared.node, &lease_ms, &workdir])
            .await
            .map_err(err)?;
        if inserted == 1 {
            created.push(agent_id.clone());
        }
    }
    Ok(created)
}

/// The agents of the batch's appends this node holds with the token it knows,
/// locking their lease rows until the commit.
async fn held_leases(
    tx: &Transaction<'_>,
    shared: &Shared,
    batch: &[Msg],
    created: &[String],
) -> Result<HashSet<String>, String> {
    let mut agents: Vec<&str> = batch
        .iter()
        .filter_map(|m| match m {
            Msg::Append {
                agent_id, event, ..
            } if !matches!(event, Event::Created { .. }) => Some(agent_id.as_str()),
            _ => None,
        })
        .collect();
    agents.sort_unstable();
    agents.dedup();
    if agents.is_empty() {
        return Ok(HashSet::new());
    }
    let stmt = tx
        .prepare_cached(
            "SELECT agent_id, token FROM leases WHERE agent_id = ANY($1) AND node = $2 FOR SHARE",
        )
        .await
        .map_err(err)?;
    let rows = tx
        .query(&stmt, &[&agents, &shared.node])
        .await
        .map_err(err)?;
    let held: HashMap<String, i64> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    Ok(agents
        .into_iter()
        .filter(|a| {
            let known = if created.iter().any(|c| c == a) {
                Some(1)
            } else {
                shared.leases.get(*a).map(|t| *t)
            };
            known.is_some() && held.get(*a).copied() == known
        })
        .map(str::to_string)
        .collect())
}

async fn read_events(
    pool: &Pool,
    agent_id: &str,
    after: u64,
    limit: usize,
    kinds: Option<Vec<String>>,
) -> Result<EventPage, String> {
    let client = pool.get().await.map_err(err)?;
    let stmt = client
        .prepare_cached(
            "SELECT seq, at_ms, data FROM events
             WHERE agent_id = $1 AND seq > $2 AND ($3::text[] IS NULL OR kind = ANY($3))
             ORDER BY seq LIMIT $4",
        )
        .await
        .map_err(err)?;
    let after = i64::try_from(after).unwrap_or(i64::MAX);
    let fetch = i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1);
    let rows = client
        .query(&stmt, &[&agent_id, &after, &kinds, &fetch])
        .await
        .map_err(err)?;
    let more = rows.len() > limit;
    let mut events = Vec::with_capacity(rows.len().min(limit));
    for row in rows.iter().take(limit) {
        let seq: i64 = row.get(0);
        events.push(StoredEvent {
            seq: seq as u64,
            at_ms: row.get(1),
            event: parse(agent_id, seq, row.get(2))?,
        });
    }
    Ok(EventPage { events, more })
}

async fn select(
    client: &impl GenericClient,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Vec<AgentLog>, String> {
    let rows = client.query(sql, params).await.map_err(err)?;
    group(
        rows.into_iter()
            .map(|r| Row {
                agent_id: r.get(0),
                seq: r.get(1),
                at_ms: r.get(2),
                data: r.get(3),
                id: r.get(4),
            })
            .collect(),
    )
}

/// Every agent's log, in creation order.
pub async fn load_all(client: &impl GenericClient) -> Result<Vec<AgentLog>, String> {
    select(
        client,
        "SELECT agent_id, seq, at_ms, data, id FROM events ORDER BY agent_id, seq",
        &[],
    )
    .await
}

async fn load_agent(pool: &Pool, agent_id: &str) -> Result<Option<AgentLog>, String> {
    let client = pool.get().await.map_err(err)?;
    let logs = select(
        &client,
        "SELECT agent_id, seq, at_ms, data, id FROM events WHERE agent_id = $1 ORDER BY seq",
        &[&agent_id],
    )
    .await?;
    Ok(logs.into_iter().next())
}

/// The fleet's all-time spend (zero before the first charge).
pub async fn fleet_spend(client: &impl GenericClient) -> Result<Spend, String> {
    let row = client
        .query_opt("SELECT cost_usd, tokens FROM fleet_spend WHERE id = 1", &[])
        .await
        .map_err(err)?;
    Ok(row.map_or_else(Spend::default, |r| Spend {
        cost_usd: r.get(0),
        tokens: u64::try_from(r.get::<_, i64>(1)).unwrap_or(0),
    }))
}
