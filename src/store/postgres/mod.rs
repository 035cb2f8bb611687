//! The fleet's store in PostgreSQL, shared by several flotilla nodes: opening it
//! (pool, schema, every agent's log), what the nodes share ([`Shared`]: the pool, this
//! node's name, the leases it holds and the agents it was fenced out of), and URLs
//! shown without their password.
//!
//! Driver: `tokio-postgres` with `deadpool-postgres` — maintained, async on the tokio
//! runtime flotilla already runs, pooled, and plain SQL strings (no macros, no
//! database needed at compile time).

pub mod schema;
pub(super) mod writer;

// For the cluster layer (it LISTENs on the channel and reports fenced agents).
#[allow(unused_imports)]
pub use writer::{CHANNEL, fenced_error};

use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio::sync::mpsc;

use super::{AgentLog, StoreError};
use crate::pricing::Spend;

/// Connections in a node's pool: the writer, reads, and the cluster layer's queries.
const POOL_SIZE: usize = 16;

/// How this node joins the shared store.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// This node's name (`--node`), written with every event and lease.
    pub node: String,
    /// How long a lease lasts without renewal (`[cluster] lease_s`).
    pub lease: Duration,
}

/// What the nodes of a fleet share, and this node's part in it.
pub struct Shared {
    pub pool: Pool,
    /// The database URL (with its password), for the cluster's own LISTEN connection.
    pub url: String,
    pub node: String,
    pub lease: Duration,
    /// Fencing tokens of the leases this node holds: agent_id → token.
    pub leases: dashmap::DashMap<String, i64>,
    /// Agents whose appends were refused because another node holds their lease.
    fenced: Mutex<Option<mpsc::UnboundedReceiver<String>>>,
    fenced_tx: mpsc::UnboundedSender<String>,
}

impl Shared {
    /// Whether this node still holds `agent_id`'s lease, unexpired, in the store: the
    /// fence for what the store cannot refuse itself (pushes to a git remote).
    pub async fn holds(&self, agent_id: &str) -> bool {
        let Some(token) = self.leases.get(agent_id).map(|t| *t) else {
            return false;
        };
        let Ok(client) = self.pool.get().await else {
            return false;
        };
        client
            .query_opt(
                "SELECT 1 FROM leases WHERE agent_id = $1 AND node = $2 AND token = $3
                   AND expires_at > now()",
                &[&agent_id, &self.node, &token],
            )
            .await
            .is_ok_and(|row| row.is_some())
    }

    /// The receiver of fenced agent ids (each once): the first call takes it.
    pub fn take_fenced(&self) -> Option<mpsc::UnboundedReceiver<String>> {
        self.fenced.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// The URL with its password hidden, for logs and errors.
    pub fn redacted_url(&self) -> String {
        redact(&self.url)
    }

    /// Stop holding `agent_id` (its lease is someone else's): report it once.
    pub(super) fn fence(&self, agent_id: &str) {
        if self.leases.remove(agent_id).is_some() {
            let _ = self.fenced_tx.send(agent_id.to_string());
        }
    }
}

/// Bound how long a transaction of this node may sit open while the node does not
/// answer (stopped, frozen, cut off): the server ends it after half a lease, so the
/// row locks it holds (a lease `FOR SHARE`, a takeover's `FOR UPDATE`, the fleet
/// slots' advisory lock) never stop another node from taking its agents over.
pub async fn bound_transaction(
    tx: &deadpool_postgres::Transaction<'_>,
    lease: Duration,
) -> Result<(), tokio_postgres::Error> {
    let ms = (lease.as_millis() / 2).max(1000);
    tx.batch_execute(&format!(
        "SET LOCAL idle_in_transaction_session_timeout = {ms}"
    ))
    .await
}

/// `url` with the password (in the authority or a `password=` parameter) replaced.
pub fn redact(url: &str) -> String {
    let mut out = url.to_string();
    if let Some(scheme_end) = out.find("://") {
        let rest = scheme_end + 3;
        let authority_end = out[rest..].find(['/', '?']).map_or(out.len(), |i| rest + i);
        if let Some(at) = out[rest..authority_end].rfind('@').map(|i| rest + i)
            && let Some(colon) = out[rest..at].find(':').map(|i| rest + i)
        {
            out.replace_range(colon + 1..at, "***");
        }
    }
    if let Some(q) = out.find('?') {
        let (head, query) = out.split_at(q + 1);
        let query: Vec<String> = query
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => kv.to_string(),
            })
            .collect();
        out = format!("{head}{}", query.join("&"));
    }
    out
}

/// Connect, create or check the schema, load every log, and read the fleet's spend.
pub(super) async fn open(
    url: &str,
    opts: PgOptions,
) -> Result<(Arc<Shared>, Vec<AgentLog>, Spend), StoreError> {
    let fail = |detail: String| StoreError::Postgres {
        url: redact(url),
        detail,
    };
    let config = tokio_postgres::Config::from_str(url)
        .map_err(|e| fail(format!("not a PostgreSQL URL ({e})")))?;
    let manager = Manager::from_config(
        config,
        tokio_postgres::NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(manager)
        .max_size(POOL_SIZE)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .map_err(|e| fail(e.to_string()))?;
    let mut client = pool.get().await.map_err(|e| fail(e.to_string()))?;
    schema::ensure(&mut client).await.map_err(fail)?;
    let logs = writer::load_all(&client).await.map_err(fail)?;
    let total = writer::fleet_spend(&client).await.map_err(fail)?;
    // A node restarted under its name resumes the leases it still holds (another
    // node that took one over changed its row's node, so that one stays lost).
    let held = client
        .query(
            "SELECT agent_id, token FROM leases WHERE node = $1",
            &[&opts.node],
        )
        .await
        .map_err(|e| fail(e.to_string()))?;
    drop(client);
    let leases = dashmap::DashMap::new();
    for row in held {
        leases.insert(row.get::<_, String>(0), row.get::<_, i64>(1));
    }
    let (fenced_tx, fenced) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        pool,
        url: url.to_string(),
        node: opts.node,
        lease: opts.lease,
        leases,
        fenced: Mutex::new(Some(fenced)),
        fenced_tx,
    });
    Ok((shared, logs, total))
}

#[cfg(test)]
mod tests;
