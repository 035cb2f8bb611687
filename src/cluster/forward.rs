//! Tool calls for an agent another node runs (and creates placed on another node) go to
//! that node through the store: a row in `requests`, a `NOTIFY flotilla_requests` with
//! the node's name; the node runs the call as its own, writes the answer into the row
//! and `NOTIFY flotilla_replies` with the row's id. When the owner dies first, the node
//! that takes its agents over takes its unanswered requests too, so a command is not
//! lost; the caller waits up to three leases for the answer.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::Cluster;
use crate::provider::BoxFuture;

/// Runs a forwarded tool call on this node and returns its MCP `CallToolResult` as JSON.
pub trait Executor: Send + Sync {
    fn execute(&self, tool: String, args: Value) -> BoxFuture<'static, Value>;
}

/// Where a forwarded call goes.
pub enum Forwarded<'a> {
    /// To the node that runs this agent (its lease holder, whoever that is then).
    Agent(&'a str),
    /// To this node.
    Node(&'a str),
}

/// A `CallToolResult` that refuses the call, with `message`.
pub fn refusal(message: &str) -> Value {
    serde_json::json!({
        "content": [{"type": "text", "text": message}],
        "isError": true,
    })
}

/// How often a caller looks for its answer in case a notification was lost.
const RECHECK: Duration = Duration::from_secs(2);

impl Cluster {
    /// Run `tool` with `args` on the node `to` names and return its `CallToolResult`.
    pub async fn forward(&self, to: Forwarded<'_>, tool: &str, args: Value) -> Value {
        match self.send(to, tool, &args).await {
            Ok(answer) => answer,
            Err(e) => refusal(&format!("{e}")),
        }
    }

    async fn send(&self, to: Forwarded<'_>, tool: &str, args: &Value) -> anyhow::Result<Value> {
        let client = self.shared.pool.get().await?;
        let body = serde_json::to_string(args)?;
        let row = match to {
            Forwarded::Agent(agent_id) => client
                .query_opt(
                    "INSERT INTO requests (node, agent_id, tool, args)
                     SELECT node, $1, $2, $3 FROM leases WHERE agent_id = $1
                     RETURNING id, node",
                    &[&agent_id, &tool, &body],
                )
                .await?
                .ok_or_else(|| {
                    anyhow::anyhow!("agent `{agent_id}` is not in the fleet any more (deleted on its node); list_agents shows the agents there are")
                })?,
            Forwarded::Node(node) => {
                client
                    .query_one(
                        "INSERT INTO requests (node, agent_id, tool, args)
                         VALUES ($1, NULL, $2, $3) RETURNING id, node",
                        &[&node, &tool, &body],
                    )
                    .await?
            }
        };
        let id: i64 = row.get(0);
        let node: String = row.get(1);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let mut rx = Some(rx);
        self.waiting.insert(id, tx);
        client
            .execute("SELECT pg_notify('flotilla_requests', $1)", &[&node])
            .await?;
        drop(client);
        tracing::debug!(id, tool, node = %node, "forwarded");
        let limit = self.lease() * 3 + Duration::from_secs(15);
        let deadline = tokio::time::Instant::now() + limit;
        let answer = loop {
            if let Some(answer) = self.answer_of(id).await? {
                break Some(answer);
            }
            let woken = async {
                match rx.as_mut() {
                    Some(r) => {
                        let _ = r.await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = woken => rx = None,
                _ = tokio::time::sleep(RECHECK) => {}
                _ = tokio::time::sleep_until(deadline) => break None,
                _ = self.cancel.cancelled() => break None,
            }
            if tokio::time::Instant::now() >= deadline {
                break None;
            }
        };
        self.waiting.remove(&id);
        let client = self.shared.pool.get().await?;
        client
            .execute("DELETE FROM requests WHERE id = $1", &[&id])
            .await?;
        tracing::debug!(
            id,
            tool,
            answered = answer.is_some(),
            "forwarded call ended"
        );
        match answer {
            Some(a) => Ok(serde_json::from_str(&a)?),
            None => anyhow::bail!(
                "node `{node}` did not answer `{tool}` within {}s; it may be down: its agents move to another node {}s after its last heartbeat. Check list_agents, then try again",
                limit.as_secs(),
                self.lease().as_secs()
            ),
        }
    }

    async fn answer_of(&self, id: i64) -> anyhow::Result<Option<String>> {
        let client = self.shared.pool.get().await?;
        let row = client
            .query_opt("SELECT result FROM requests WHERE id = $1", &[&id])
            .await?;
        Ok(match row {
            Some(r) => r.get::<_, Option<String>>(0),
            // Removed with its agent, which was deleted before it could be answered.
            None => Some(
                refusal("the agent was deleted on its node before this call could run").to_string(),
            ),
        })
    }

    /// A forwarded call's answer came (`NOTIFY flotilla_replies`).
    pub(super) fn answered(&self, id: i64) {
        if let Some((_, tx)) = self.waiting.remove(&id) {
            let _ = tx.send(());
        }
    }

    /// Claim the calls forwarded to this node and run them, in order, in a tracked task.
    pub(super) async fn serve_requests(self: &Arc<Self>) {
        let claimed = match self.claim().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("cannot read the calls forwarded to this node: {e}");
                return;
            }
        };
        if claimed.is_empty() {
            return;
        }
        // In the order they were sent: two commands to one agent keep their order.
        let me = self.clone();
        self.tracker.spawn(async move {
            for (id, tool, args) in claimed {
                tracing::debug!(id, tool, "answering a call another node forwarded");
                let args: Value = serde_json::from_str(&args).unwrap_or(Value::Null);
                let answer = me.execute(&tool, args).await;
                if let Err(e) = me.reply(id, &answer).await {
                    tracing::warn!(id, tool, "cannot answer a forwarded call: {e}");
                }
            }
        });
    }

    async fn claim(&self) -> anyhow::Result<Vec<(i64, String, String)>> {
        let client = self.shared.pool.get().await?;
        let rows = client
            .query(
                "UPDATE requests SET claimed_by = $1 WHERE id IN (
                     SELECT id FROM requests
                     WHERE node = $1 AND claimed_by IS NULL AND result IS NULL
                     ORDER BY id FOR UPDATE SKIP LOCKED)
                 RETURNING id, tool, args",
                &[&self.node()],
            )
            .await?;
        let mut calls: Vec<(i64, String, String)> = rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        calls.sort_by_key(|c| c.0);
        Ok(calls)
    }

    async fn reply(&self, id: i64, answer: &Value) -> anyhow::Result<()> {
        let client = self.shared.pool.get().await?;
        client
            .execute(
                "UPDATE requests SET result = $2 WHERE id = $1",
                &[&id, &serde_json::to_string(answer)?],
            )
            .await?;
        client
            .execute(
                "SELECT pg_notify('flotilla_replies', $1)",
                &[&id.to_string()],
            )
            .await?;
        Ok(())
    }
}
