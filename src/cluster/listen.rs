//! The node's `LISTEN` connection: wake-ups come as notifications, not polling.
//! `flotilla_events` (payload: an agent id) refreshes that agent's mirror;
//! `flotilla_requests` (payload: a node) serves the calls forwarded to this node;
//! `flotilla_replies` (payload: a request id) wakes the caller waiting for it;
//! `flotilla_slots` wakes agents waiting for a run slot of the fleet.
//! When the connection drops it is made again, and everything a lost notification
//! could have changed is read afresh.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio_postgres::AsyncMessage;

use super::Cluster;

/// Listen until shutdown, reconnecting after a failure.
pub(super) async fn listen(cluster: Arc<Cluster>) {
    let mut first = true;
    loop {
        match session(&cluster, first).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!("the store's notification connection failed: {e}; reconnecting")
            }
        }
        first = false;
        tokio::select! {
            _ = cluster.cancel.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// One connection's life. `Ok` only on shutdown.
async fn session(cluster: &Arc<Cluster>, first: bool) -> anyhow::Result<()> {
    let (client, mut connection) =
        tokio_postgres::connect(&cluster.shared.url, tokio_postgres::NoTls).await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let driver = cluster.tracker.spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(m) = messages.next().await {
            match m {
                Ok(AsyncMessage::Notification(n)) => {
                    if tx.send(n).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!("store notifications: {e}");
                    return;
                }
            }
        }
    });
    client
        .batch_execute(
            "LISTEN flotilla_events; LISTEN flotilla_requests; LISTEN flotilla_replies; LISTEN flotilla_slots",
        )
        .await?;
    if !first {
        cluster.resync().await?;
    }
    cluster.serve_requests().await;
    loop {
        let n = tokio::select! {
            _ = cluster.cancel.cancelled() => {
                driver.abort();
                return Ok(());
            }
            n = rx.recv() => n,
        };
        let Some(n) = n else {
            anyhow::bail!("the connection closed");
        };
        match n.channel() {
            "flotilla_events" => cluster.refresh(n.payload()),
            "flotilla_requests" if n.payload() == cluster.node() => cluster.serve_requests().await,
            "flotilla_slots" => {
                if let Some(slots) = &cluster.slots {
                    slots.freed.notify_waiters();
                }
            }
            "flotilla_replies" => {
                if let Ok(id) = n.payload().parse() {
                    cluster.answered(id);
                }
            }
            _ => {}
        }
    }
}

impl Cluster {
    /// Read every agent afresh (notifications may have been missed).
    async fn resync(self: &Arc<Self>) -> anyhow::Result<()> {
        let owners = self.owners().await?;
        for h in self.registry.unsorted() {
            if h.is_mirror() && !owners.contains_key(&h.id) {
                self.registry.unmirror(&h.id);
            }
        }
        for id in owners.keys() {
            self.refresh(id);
        }
        Ok(())
    }
}
