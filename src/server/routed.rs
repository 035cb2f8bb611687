//! In a fleet of several nodes (`crate::cluster`), any node answers any tool. Reads are
//! answered here from the mirrors; a call that changes an agent another node runs goes
//! to that node, and a new agent goes to the node placement picks. Once the other node
//! has answered, the agents the call touched are read back from the store before this
//! node answers, so the caller's next read here sees what it just did.
//!
//! The other side: [`FleetServer::executor`] runs calls forwarded to this node.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use rmcp::model::{CallToolResult, JsonObject};
use serde_json::Value;

use super::FleetServer;
use crate::agent::AgentHandle;
use crate::cluster::{Cluster, Forwarded};

/// Forwarded operations that are not MCP tools: answering a question (the dashboard,
/// `tasks/update`), interrupting the command in hand (the dashboard), cancelling one
/// command (`tasks/cancel`).
pub(crate) const ANSWER: &str = "flotilla/answer";
pub(crate) const INTERRUPT: &str = "flotilla/interrupt";
pub(crate) const CANCEL_COMMAND: &str = "flotilla/cancel_command";

impl FleetServer {
    /// Answer `tool` on the node that must: `None` when that is this one.
    pub(super) async fn route(
        &self,
        tool: &str,
        args: Option<&JsonObject>,
    ) -> Option<CallToolResult> {
        let cluster = self.cluster.as_ref()?;
        let args = args.cloned().unwrap_or_default();
        self.learn(cluster, &args).await;
        self.freshen(cluster, tool, &args).await;
        let answer = match tool {
            "create_agent" if !self.forwarded => {
                self.place(cluster, tool, args, Clone::clone).await?
            }
            "create_agents" if !self.forwarded => {
                let first = args
                    .get("agents")
                    .and_then(Value::as_array)
                    .and_then(|a| a.first())
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                self.place(cluster, tool, args, move |_| first).await?
            }
            "command_agent" | "delete_agent" | ANSWER | INTERRUPT | CANCEL_COMMAND => {
                let agent = args.get("agent").and_then(Value::as_str)?;
                let handle = self.registry.get(agent).ok()?;
                if !handle.is_mirror() {
                    return None;
                }
                let id = handle.id.clone();
                cluster
                    .forward(Forwarded::Agent(&id), tool, Value::Object(args))
                    .await
            }
            "pause_agents" | "resume_agents" => {
                return self.hold_everywhere(cluster, tool, args).await;
            }
            "delete_all_agents" if !self.forwarded => {
                return Some(self.delete_everywhere(cluster).await);
            }
            _ => return None,
        };
        let result = parse(answer);
        cluster.sync(&touched(&result)).await;
        Some(result)
    }

    /// Run `op` for `handle` on the node that runs it, when that is another node
    /// (`None`: this node runs it; do it here).
    pub(crate) async fn on_owner(
        &self,
        handle: &AgentHandle,
        op: &str,
        args: Value,
    ) -> Option<CallToolResult> {
        if !handle.is_mirror() {
            return None;
        }
        let Value::Object(args) = args else {
            return None;
        };
        self.route(op, Some(&args)).await
    }

    /// Cancel one command of an agent, on whichever node runs it. Whether it ran.
    pub(crate) async fn cancel_command(&self, handle: &AgentHandle, index: u32) -> bool {
        let args = serde_json::json!({ "agent": handle.id, "command": index });
        match self.on_owner(handle, CANCEL_COMMAND, args).await {
            Some(r) => r
                .structured_content
                .as_ref()
                .and_then(|s| s["changed"].as_bool())
                .unwrap_or(false),
            None => handle.cancel_command(index),
        }
    }

    /// A call as a client's would be answered (routed to the node that must), for the
    /// dashboard's controls.
    pub(crate) async fn call_routed(&self, tool: &str, args: Value) -> CallToolResult {
        let object = args.as_object().cloned();
        if let Some(r) = self.route(tool, object.as_ref()).await {
            return r;
        }
        parse(self.dispatch(tool, args).await)
    }

    /// Agents the call names that this node has not heard of yet (created on another
    /// node a moment ago: a client behind a load balancer may ask here next) are read
    /// from the store first.
    async fn learn(&self, cluster: &Arc<Cluster>, args: &JsonObject) {
        fn named<'a>(args: &'a JsonObject, names: &mut Vec<&'a str>) {
            // `name`: a new agent's, which must not exist on any node either.
            for key in ["agent", "name", "base"] {
                names.extend(args.get(key).and_then(Value::as_str));
            }
            for key in ["agents", "depends_on"] {
                for item in args
                    .get(key)
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    match item {
                        Value::String(s) => names.push(s),
                        Value::Object(spec) => named(spec, names),
                        _ => {}
                    }
                }
            }
        }
        let mut names: Vec<&str> = Vec::new();
        named(args, &mut names);
        for name in names {
            if self.registry.get(name).is_err() {
                cluster.learn(name).await;
            }
        }
    }

    /// Before a read of agents other nodes run, their mirrors catch up with the log.
    async fn freshen(&self, cluster: &Arc<Cluster>, tool: &str, args: &JsonObject) {
        /// A default wait over more mirrors than this relies on notifications alone.
        const MOST: usize = 200;
        let ids: Vec<String> = match tool {
            "get_agent_status" | "get_agent_output" | "get_agent_events" => args
                .get("agent")
                .and_then(Value::as_str)
                .and_then(|a| self.registry.get(a).ok())
                .map(|h| vec![h.id.clone()])
                .unwrap_or_default(),
            "wait_for_agents" => match args.get("agents").and_then(Value::as_array) {
                Some(names) => names
                    .iter()
                    .filter_map(Value::as_str)
                    .filter_map(|n| self.registry.get(n).ok())
                    .map(|h| h.id.clone())
                    .collect(),
                None => {
                    let mirrors: Vec<String> = self
                        .registry
                        .unsorted()
                        .iter()
                        .filter(|h| h.is_mirror())
                        .map(|h| h.id.clone())
                        .collect();
                    if mirrors.len() > MOST {
                        Vec::new()
                    } else {
                        mirrors
                    }
                }
            },
            _ => Vec::new(),
        };
        cluster.freshen(&ids).await;
    }

    /// A new agent (or a plan, placed by its first agent) goes to the node with the
    /// most free run slots among those serving its work directory.
    async fn place(
        &self,
        cluster: &Arc<Cluster>,
        tool: &str,
        mut args: JsonObject,
        spec_of: impl FnOnce(&JsonObject) -> JsonObject,
    ) -> Option<Value> {
        // `_remote` is the nodes' own: a client's would pass through to the chosen node.
        let from_client = args.contains_key("_remote")
            || args
                .get("agents")
                .and_then(Value::as_array)
                .is_some_and(|a| a.iter().any(|s| s.get("_remote").is_some()));
        if from_client && !self.forwarded {
            return Some(crate::cluster::refusal(
                "unknown field `_remote`: it is set by flotilla between the nodes of a fleet; leave it out",
            ));
        }
        let spec = spec_of(&args);
        let dir = match spec.get("workdir").and_then(Value::as_str) {
            Some(w) => self.registry.default_workdir().join(w),
            None => self.registry.default_workdir().to_path_buf(),
        };
        let runs = tool == "create_agents" || spec.get("task").is_some_and(Value::is_string);
        // A worktree agent with a git remote can run on any node: the node it goes to
        // is told the remote (it may not have the work directory).
        let remote = match self.remote_of(tool, &spec).await {
            Ok(r) => r,
            Err(e) => return Some(crate::cluster::refusal(&e)),
        };
        let Some(node) = cluster.place(remote.is_none().then_some(dir.as_path()), runs) else {
            return Some(crate::cluster::refusal(&format!(
                "no node of the fleet serves the work directory {} (this node serves {}); give a workdir under a node's roots, or start a node that serves it",
                dir.display(),
                self.registry
                    .workdir_roots()
                    .iter()
                    .map(|r| r.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        if node == cluster.node() {
            return None;
        }
        // The other node resolves paths against its own directory: send them absolute.
        if let Some(remote) = remote {
            args.insert("_remote".into(), serde_json::json!(remote));
        } else if tool == "create_agent" {
            args.insert("workdir".into(), Value::String(dir.display().to_string()));
        } else if let Some(Value::Array(agents)) = args.get_mut("agents") {
            for a in agents.iter_mut().filter_map(Value::as_object_mut) {
                let d: PathBuf = match a.get("workdir").and_then(Value::as_str) {
                    Some(w) => self.registry.default_workdir().join(w),
                    None => self.registry.default_workdir().to_path_buf(),
                };
                a.insert("workdir".into(), Value::String(d.display().to_string()));
            }
        }
        tracing::info!(tool, node = %node, "placed on node {node}");
        Some(
            cluster
                .forward(Forwarded::Node(&node), tool, Value::Object(args))
                .await,
        )
    }

    /// The git remote a new worktree agent (`create_agent` with isolation) goes
    /// through, as this node resolves it; `None`: none (or another tool).
    async fn remote_of(
        &self,
        tool: &str,
        spec: &JsonObject,
    ) -> Result<Option<crate::worktree::RemoteSpec>, String> {
        if tool != "create_agent"
            || spec.get("isolation").and_then(Value::as_str) != Some("worktree")
        {
            return Ok(None);
        }
        self.registry
            .remote_for(spec.get("workdir").and_then(Value::as_str))
            .await
    }

    /// pause_agents / resume_agents: each node holds the agents it runs.
    async fn hold_everywhere(
        &self,
        cluster: &Arc<Cluster>,
        tool: &str,
        args: JsonObject,
    ) -> Option<CallToolResult> {
        let named: Option<Vec<String>> = args.get("agents").and_then(|a| {
            a.as_array().map(|v| {
                v.iter()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect()
            })
        });
        // A forwarded hold names exactly the agents this node runs.
        if self.forwarded {
            return None;
        }
        let handles = match self.registry.select(named.as_deref()) {
            Ok(h) => h,
            Err(_) => return None,
        };
        let mut by_node: BTreeMap<Option<String>, Vec<String>> = BTreeMap::new();
        for h in &handles {
            let node = h
                .is_mirror()
                .then(|| h.node().map(|n| n.to_string()))
                .flatten();
            by_node.entry(node).or_default().push(h.id.clone());
        }
        let mut changed = Vec::new();
        let mut unchanged = Vec::new();
        let mut errors = Vec::new();
        for (node, ids) in by_node {
            let body = serde_json::json!({ "agents": ids });
            let answer = match &node {
                None => self.execute_here(tool, body).await,
                Some(n) => cluster.forward(Forwarded::Node(n), tool, body).await,
            };
            let result = parse(answer);
            if result.is_error == Some(true) {
                errors.push(text_of(&result));
                continue;
            }
            let s = result.structured_content.unwrap_or_default();
            for (key, into) in [("changed", &mut changed), ("unchanged", &mut unchanged)] {
                if let Some(v) = s[key].as_array() {
                    into.extend(v.iter().filter_map(Value::as_str).map(String::from));
                }
            }
        }
        let ids: Vec<String> = handles.iter().map(|h| h.id.clone()).collect();
        cluster.sync(&ids).await;
        if let Some(e) = errors.first() {
            return Some(refused(e));
        }
        let mut out = serde_json::json!({ "changed": changed });
        if !unchanged.is_empty() {
            out["unchanged"] = serde_json::json!(unchanged);
        }
        Some(CallToolResult::structured(out))
    }

    /// delete_all_agents: every node deletes the agents it runs.
    async fn delete_everywhere(&self, cluster: &Arc<Cluster>) -> CallToolResult {
        let mut deleted = 0u64;
        let mut errors = Vec::new();
        let here = parse(
            self.execute_here("delete_all_agents", serde_json::json!({}))
                .await,
        );
        deleted += here
            .structured_content
            .as_ref()
            .and_then(|s| s["deleted"].as_u64())
            .unwrap_or(0);
        for node in cluster
            .nodes()
            .into_iter()
            .filter(|n| n.node != cluster.node() && n.agents > 0)
        {
            let answer = parse(
                cluster
                    .forward(
                        Forwarded::Node(&node.node),
                        "delete_all_agents",
                        serde_json::json!({}),
                    )
                    .await,
            );
            if answer.is_error == Some(true) {
                errors.push(format!("node {}: {}", node.node, text_of(&answer)));
            }
            deleted += answer
                .structured_content
                .as_ref()
                .and_then(|s| s["deleted"].as_u64())
                .unwrap_or(0);
        }
        let ids: Vec<String> = self
            .registry
            .unsorted()
            .iter()
            .map(|h| h.id.clone())
            .collect();
        cluster.sync(&ids).await;
        if !errors.is_empty() {
            return refused(&format!("deleted {deleted} agents; {}", errors.join("; ")));
        }
        CallToolResult::structured(serde_json::json!({ "deleted": deleted }))
    }
}

/// An error result saying `message`.
pub(super) fn refused(message: &str) -> CallToolResult {
    CallToolResult::error(vec![rmcp::model::ContentBlock::text(message.to_string())])
}

fn parse(answer: Value) -> CallToolResult {
    serde_json::from_value(answer)
        .unwrap_or_else(|e| refused(&format!("another node's answer could not be read: {e}")))
}

pub(crate) fn text_of(r: &CallToolResult) -> String {
    r.content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The agents a result names (`agent_id`, or each row's).
fn touched(r: &CallToolResult) -> Vec<String> {
    let Some(s) = &r.structured_content else {
        return Vec::new();
    };
    let mut ids: Vec<String> = s["agent_id"]
        .as_str()
        .map(String::from)
        .into_iter()
        .collect();
    if let Some(rows) = s["agents"].as_array() {
        ids.extend(
            rows.iter()
                .filter_map(|r| r["agent_id"].as_str())
                .map(String::from),
        );
    }
    ids
}
