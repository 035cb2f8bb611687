//! `[cluster] max_running`: run slots counted across the whole fleet, in the
//! `fleet_slots` table (one row per agent running a command). Taking one is a
//! transaction under an advisory lock — count, then insert — so two nodes never both
//! take the last slot. Slots of a node whose heartbeat stopped are freed by the next
//! taker; a freed slot wakes the waiters of every node (`NOTIFY flotilla_slots`).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::fleet::slots::{FleetSlot, FleetSlots};
use crate::provider::BoxFuture;
use crate::store::postgres::Shared;

/// The advisory lock that serialises taking fleet slots.
const SLOTS_LOCK: i64 = 0x666c_6f74_736c_6f74; // "flotslot"
/// A waiter looks again this often even without a notification (a dead node's slots
/// free up only by its heartbeat's age).
const RECHECK: Duration = Duration::from_secs(2);

/// The fleet's slots as this node takes them.
pub struct SharedSlots {
    shared: Arc<Shared>,
    max: usize,
    /// Woken by `NOTIFY flotilla_slots`.
    pub(super) freed: Notify,
}

impl SharedSlots {
    pub(super) fn new(shared: Arc<Shared>, max: usize) -> Arc<Self> {
        Arc::new(Self {
            shared,
            max,
            freed: Notify::new(),
        })
    }

    /// Forget this node's slots (at start: it runs nothing yet).
    pub(super) async fn clear_mine(&self) -> anyhow::Result<()> {
        let client = self.shared.pool.get().await?;
        client
            .execute(
                "DELETE FROM fleet_slots WHERE node = $1",
                &[&self.shared.node],
            )
            .await?;
        Ok(())
    }

    async fn attempt(self: &Arc<Self>, agent_id: &str) -> anyhow::Result<Option<FleetSlot>> {
        let mut client = self.shared.pool.get().await?;
        let tx = client.transaction().await?;
        crate::store::postgres::bound_transaction(&tx, self.shared.lease).await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SLOTS_LOCK])
            .await?;
        // Slots of nodes that stopped heartbeating are free.
        tx.execute(
            "DELETE FROM fleet_slots s USING nodes n WHERE s.node = n.node
               AND n.heartbeat_at < now() - make_interval(secs => $1)",
            &[&self.shared.lease.as_secs_f64()],
        )
        .await?;
        let held: i64 = tx
            .query_one("SELECT count(*) FROM fleet_slots", &[])
            .await?
            .get(0);
        if held as usize >= self.max {
            tx.commit().await?;
            return Ok(None);
        }
        tx.execute(
            "INSERT INTO fleet_slots (agent_id, node) VALUES ($1, $2)
             ON CONFLICT (agent_id) DO UPDATE SET node = excluded.node",
            &[&agent_id, &self.shared.node],
        )
        .await?;
        tx.commit().await?;
        Ok(Some(Box::new(Held {
            slots: self.clone(),
            agent_id: agent_id.to_string(),
        })))
    }
}

impl FleetSlots for Arc<SharedSlots> {
    fn max(&self) -> usize {
        self.max
    }

    fn try_take<'a>(&'a self, agent_id: &'a str) -> BoxFuture<'a, Option<FleetSlot>> {
        Box::pin(async move {
            match self.attempt(agent_id).await {
                Ok(slot) => slot,
                Err(e) => {
                    tracing::warn!(agent_id, "cannot take a fleet run slot: {e}");
                    None
                }
            }
        })
    }

    fn take<'a>(&'a self, agent_id: &'a str) -> BoxFuture<'a, FleetSlot> {
        Box::pin(async move {
            loop {
                let freed = self.freed.notified();
                if let Some(slot) = self.try_take(agent_id).await {
                    return slot;
                }
                tokio::select! {
                    _ = freed => {}
                    _ = tokio::time::sleep(RECHECK) => {}
                }
            }
        })
    }
}

/// One held fleet slot: freed (and the fleet told) when dropped.
struct Held {
    slots: Arc<SharedSlots>,
    agent_id: String,
}

impl Drop for Held {
    fn drop(&mut self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let slots = self.slots.clone();
        let agent_id = std::mem::take(&mut self.agent_id);
        runtime.spawn(async move {
            let freed = async {
                let client = slots.shared.pool.get().await?;
                client
                    .execute(
                        "DELETE FROM fleet_slots WHERE agent_id = $1 AND node = $2",
                        &[&agent_id, &slots.shared.node],
                    )
                    .await?;
                client
                    .execute("SELECT pg_notify('flotilla_slots', '')", &[])
                    .await?;
                anyhow::Ok(())
            };
            if let Err(e) = freed.await {
                tracing::warn!(agent_id, "cannot free a fleet run slot: {e}");
            }
        });
    }
}
