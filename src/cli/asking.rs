//! `ask_orchestrator` for CLI agents: a loopback MCP endpoint in the flotilla process
//! that serves that one tool to the CLI sessions flotilla starts.
//!
//! Started once, on the first CLI command that may ask, on `127.0.0.1:0`: rmcp's
//! Streamable HTTP at `/mcp`. Every CLI invocation gets a [`Grant`]: a random bearer
//! token bound to its agent and command, revoked when the grant is dropped (the
//! invocation ended). A request without a live token gets 401; nothing else of
//! flotilla is reachable there. A call is handed to the invocation's worker as an
//! [`AskCall`] on the grant's channel; the worker does what the built-in loop does
//! (journal, `needs_input`, no run slot, no stall timer) and sends the answer back,
//! which becomes the MCP tool's result.
//!
//! Why HTTP on loopback rather than a stdio `flotilla` subcommand as a proxy: the
//! question must reach the running flotilla process anyway (a proxy would need its own
//! channel back to it), every pinned CLI speaks Streamable HTTP, and the sandbox leaves
//! loopback reachable (the CLI's network namespace is the host's).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use dashmap::DashMap;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::Value;
use tokio::sync::{OnceCell, mpsc, oneshot};

use crate::tools::{Tool, ask};

/// The MCP server's name in the CLIs' configs: Claude Code calls the tool
/// `mcp__flotilla__ask_orchestrator`.
pub(crate) const SERVER: &str = "flotilla";
/// The variable Codex reads the bearer token from.
pub(crate) const TOKEN_VAR: &str = "FLOTILLA_ASK_TOKEN";
/// How long a CLI waits for one ask before giving up: as long as the CLIs allow
/// (a JavaScript timer holds at most 2^31-1 ms, about 24 days).
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_millis(2_000_000_000);
/// Random bytes in a token.
const TOKEN_BYTES: usize = 32;

/// One `ask_orchestrator` call from a CLI, for its worker to answer.
#[derive(Debug)]
pub(crate) struct AskCall {
    /// The CLI's id for the tool call, when it says (Claude Code's
    /// `_meta["claudecode/toolUseId"]`).
    pub call_id: Option<String>,
    pub question: String,
    pub options: Vec<String>,
    /// The answer (the tool's result), or an error the CLI's model reads.
    pub reply: oneshot::Sender<Result<String, String>>,
}

/// Who may call: token → the invocation's channel.
type Bindings = Arc<DashMap<String, mpsc::Sender<AskCall>>>;

/// The endpoint, once started.
struct Endpoint {
    url: String,
    bindings: Bindings,
}

static ENDPOINT: OnceCell<Result<Endpoint, String>> = OnceCell::const_new();

/// One CLI invocation's access to the endpoint: its URL and token, and the calls made
/// with it. Dropping it revokes the token.
pub(crate) struct Grant {
    pub url: String,
    pub token: String,
    pub calls: mpsc::Receiver<AskCall>,
    bindings: Bindings,
}

impl std::fmt::Debug for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grant").field("url", &self.url).finish()
    }
}

impl Drop for Grant {
    fn drop(&mut self) {
        self.bindings.remove(&self.token);
    }
}

/// The warning for an agent granted `ask_orchestrator` whose CLI cannot call
/// flotilla's endpoint (Gemini CLI: see docs/cli-agents.md).
pub(crate) fn unserved(cli: &super::CliProvider, tools: &[Tool]) -> Option<String> {
    if !tools.contains(&Tool::AskOrchestrator) || cli.kind.dialect().can_ask() {
        return None;
    }
    Some(format!(
        "{} sessions cannot call ask_orchestrator: it reads MCP servers only from settings files flotilla may not write (the user's, the work directory's, or a root-owned system file); this agent cannot ask and decides on its own",
        cli.kind.name()
    ))
}

/// A token for one invocation (the endpoint starts on first use).
pub(crate) async fn grant() -> Result<Grant, String> {
    let endpoint = ENDPOINT.get_or_init(start).await.as_ref()?;
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| format!("no randomness for a token: {e}"))?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let (tx, calls) = mpsc::channel(1);
    endpoint.bindings.insert(token.clone(), tx);
    Ok(Grant {
        url: endpoint.url.clone(),
        token,
        calls,
        bindings: endpoint.bindings.clone(),
    })
}

/// Bind `127.0.0.1:0` and serve the endpoint for the life of the process.
async fn start() -> Result<Endpoint, String> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(|e| format!("cannot open the ask endpoint on 127.0.0.1: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("cannot read the ask endpoint's address: {e}"))?;
    let bindings: Bindings = Arc::default();
    let service = AskService {
        bindings: bindings.clone(),
    };
    let mcp = StreamableHttpService::new(
        move || Ok(service.clone()),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default().with_sse_keep_alive(Some(Duration::from_secs(15))),
    );
    let app =
        axum::Router::new()
            .route_service("/mcp", mcp)
            .layer(axum::middleware::from_fn_with_state(
                bindings.clone(),
                require_token,
            ));
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("the ask endpoint stopped: {e}");
        }
    });
    tracing::info!("ask endpoint for CLI agents on {addr}");
    Ok(Endpoint {
        url: format!("http://{addr}/mcp"),
        bindings,
    })
}

/// 401 unless the request carries a live invocation's token.
async fn require_token(State(bindings): State<Bindings>, request: Request, next: Next) -> Response {
    match bearer(request.headers()) {
        Some(token) if bindings.contains_key(token) => next.run(request).await,
        _ => StatusCode::UNAUTHORIZED.into_response(),
    }
}

fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// The MCP server behind the endpoint: `ask_orchestrator` and nothing else.
#[derive(Clone)]
struct AskService {
    bindings: Bindings,
}

impl AskService {
    async fn ask(&self, request: CallToolRequestParams, parts: Option<&Parts>) -> CallToolResult {
        let tx = parts
            .and_then(|p| bearer(&p.headers))
            .and_then(|t| self.bindings.get(t).map(|tx| tx.clone()));
        let Some(tx) = tx else {
            return CallToolResult::error(vec![ContentBlock::text(
                "Error: this session's command has ended; its question cannot be asked.",
            )]);
        };
        let input = Value::Object(request.arguments.unwrap_or_default());
        let (question, options) = match ask::parse(input) {
            Ok(q) => q,
            Err(message) => return CallToolResult::error(vec![ContentBlock::text(message)]),
        };
        let call_id = request
            .meta
            .as_ref()
            .and_then(|m| m.0.0.get("claudecode/toolUseId"))
            .and_then(Value::as_str)
            .map(String::from);
        let (reply, answer) = oneshot::channel();
        let call = AskCall {
            call_id,
            question,
            options,
            reply,
        };
        if tx.send(call).await.is_err() {
            return CallToolResult::error(vec![ContentBlock::text(
                "Error: this session's command has ended.",
            )]);
        }
        match answer.await {
            Ok(Ok(text)) => CallToolResult::success(vec![ContentBlock::text(text)]),
            Ok(Err(text)) => CallToolResult::error(vec![ContentBlock::text(text)]),
            Err(_) => CallToolResult::error(vec![ContentBlock::text(
                "Error: the command was stopped before the question was answered.",
            )]),
        }
    }
}

impl ServerHandler for AskService {
    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        if request.name != Tool::AskOrchestrator.name() {
            return Err(ErrorData::invalid_params(
                format!(
                    "unknown tool `{}`; this server has only ask_orchestrator",
                    request.name
                ),
                None,
            ));
        }
        let parts = context.extensions.get::<Parts>();
        Ok(self.ask(request, parts).await.into())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(vec![tool()]))
    }

    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build()).with_server_info(
            Implementation::new("flotilla-ask", env!("CARGO_PKG_VERSION")),
        )
    }
}

/// `ask_orchestrator` as MCP lists it: the built-in loop's name, description and schema.
fn tool() -> rmcp::model::Tool {
    let spec = Tool::AskOrchestrator.spec();
    let schema = match spec.input_schema {
        Value::Object(map) => map,
        _ => serde_json::Map::new(),
    };
    rmcp::model::Tool::new(spec.name, spec.description, Arc::new(schema))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The HTTP status of an `initialize` sent with `token`.
    async fn post(url: &str, token: Option<&str>) -> reqwest::StatusCode {
        let mut request = reqwest::Client::new()
            .post(url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(
                r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#,
            );
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap().status()
    }

    #[tokio::test]
    async fn only_a_live_invocations_token_opens_the_endpoint() {
        let other = grant().await.unwrap();
        let grant = grant().await.unwrap();
        assert_ne!(grant.token, other.token);
        assert!(grant.url.starts_with("http://127.0.0.1:"), "{}", grant.url);
        assert_eq!(post(&grant.url, None).await, 401);
        assert_eq!(post(&grant.url, Some("not-a-token")).await, 401);
        assert_eq!(post(&grant.url, Some(&grant.token)).await, 200);
        let (url, token) = (grant.url.clone(), grant.token.clone());
        drop(grant);
        assert_eq!(
            post(&url, Some(&token)).await,
            401,
            "revoked with its invocation"
        );
        assert_eq!(post(&url, Some(&other.token)).await, 200);
    }

    #[test]
    fn the_one_tool_is_the_built_in_loops_ask_orchestrator() {
        let t = tool();
        assert_eq!(t.name, "ask_orchestrator");
        assert_eq!(t.description.as_deref(), Some(ask::DESCRIPTION));
        assert_eq!(
            Value::Object((*t.input_schema).clone()),
            Tool::AskOrchestrator.spec().input_schema
        );
    }
}
