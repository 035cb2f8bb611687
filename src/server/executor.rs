//! The other side of [`routed`](super::routed): running the calls other nodes forward
//! to this one — the forwardable tools by name, and the operations that are not tools
//! (answers, interrupts, cancelling one command) — without an MCP request around them.

use std::sync::Arc;

use rmcp::handler::server::tool::IntoCallToolResult;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResponse, CallToolResult};
use serde_json::Value;

use super::FleetServer;
use super::routed::{ANSWER, CANCEL_COMMAND, INTERRUPT};
use crate::cluster::Executor;

impl FleetServer {
    /// Run a forwardable tool on this node, as a forwarded call would.
    pub(super) async fn execute_here(&self, tool: &str, args: Value) -> Value {
        let mut here = self.clone();
        here.forwarded = true;
        here.dispatch(tool, args).await
    }

    /// `_remote` (a git remote resolved by the node that placed an agent) comes from
    /// another node of the fleet, never from a client.
    pub(super) fn between_nodes_only(&self, remote_given: bool) -> Result<(), String> {
        if remote_given && !self.forwarded {
            return Err("unknown field `_remote`: it is set by flotilla between the nodes of a fleet; leave it out".into());
        }
        Ok(())
    }

    /// What runs the calls other nodes forward to this one.
    pub fn executor(&self) -> Arc<dyn Executor> {
        let mut here = self.clone();
        here.forwarded = true;
        Arc::new(here)
    }

    /// The forwardable tools by name, without an MCP request around them.
    pub(super) async fn dispatch(&self, tool: &str, args: Value) -> Value {
        fn p<T: serde::de::DeserializeOwned>(args: Value) -> Result<Parameters<T>, String> {
            serde_json::from_value(args)
                .map(Parameters)
                .map_err(|e| e.to_string())
        }
        fn out<R: IntoCallToolResult>(r: R) -> Value {
            match r.into_call_tool_result() {
                Ok(CallToolResponse::Complete(c)) => serde_json::to_value(c).unwrap_or(Value::Null),
                Ok(_) => crate::cluster::refusal("unexpected answer"),
                Err(e) => crate::cluster::refusal(&e.message),
            }
        }
        let bad = |e: String| crate::cluster::refusal(&e);
        match tool {
            "create_agent" => match p(args) {
                Ok(a) => out(self.create_agent(a).await),
                Err(e) => bad(e),
            },
            "create_agents" => match p(args) {
                Ok(a) => out(self.create_agents(a).await),
                Err(e) => bad(e),
            },
            "command_agent" => match p(args) {
                Ok(a) => out(self.command_agent(a).await),
                Err(e) => bad(e),
            },
            "delete_agent" => match p(args) {
                Ok(a) => out(self.delete_agent(a).await),
                Err(e) => bad(e),
            },
            "pause_agents" => match p(args) {
                Ok(a) => out(self.pause_agents(a).await),
                Err(e) => bad(e),
            },
            "resume_agents" => match p(args) {
                Ok(a) => out(self.resume_agents(a).await),
                Err(e) => bad(e),
            },
            "delete_all_agents" => match p(args) {
                Ok(a) => out(self.delete_all_agents(a).await),
                Err(e) => bad(e),
            },
            ANSWER | INTERRUPT | CANCEL_COMMAND => self.internal(tool, &args).await,
            other => bad(format!("`{other}` cannot be forwarded to another node")),
        }
    }
}

impl FleetServer {
    /// The forwarded operations that are not tools ([`ANSWER`], [`INTERRUPT`],
    /// [`CANCEL_COMMAND`]), run on the node that runs the agent.
    async fn internal(&self, op: &str, args: &Value) -> Value {
        let agent = args["agent"].as_str().unwrap_or_default();
        let handle = match self.registry.get(agent) {
            Ok(h) => h,
            Err(e) => return crate::cluster::refusal(&e.to_string()),
        };
        let changed = match op {
            INTERRUPT => handle.interrupt_current(),
            CANCEL_COMMAND => {
                let index = args["command"].as_u64().unwrap_or(0) as u32;
                handle.cancel_command(index)
            }
            _ => {
                let by = match args["by"].as_str() {
                    Some("dashboard") => crate::agent::asking::Answerer::Dashboard,
                    Some("client") => crate::agent::asking::Answerer::Client,
                    _ => crate::agent::asking::Answerer::Orchestrator,
                };
                let text = args["answer"].as_str().unwrap_or_default().to_string();
                return match self.registry.answer(agent, text, by).await {
                    Ok(a) => serde_json::to_value(CallToolResult::structured(
                        serde_json::json!({ "agent_id": handle.id, "command": a.index, "answered": true }),
                    ))
                    .unwrap_or(Value::Null),
                    Err(e) => crate::cluster::refusal(&e.to_string()),
                };
            }
        };
        serde_json::to_value(CallToolResult::structured(
            serde_json::json!({ "agent_id": handle.id, "changed": changed }),
        ))
        .unwrap_or(Value::Null)
    }
}

impl Executor for FleetServer {
    fn execute(&self, tool: String, args: Value) -> crate::provider::BoxFuture<'static, Value> {
        let me = self.clone();
        Box::pin(async move {
            let mut answer = me.dispatch(&tool, args).await;
            me.registry.fleet().redactor.redact_json(&mut answer);
            answer
        })
    }
}
