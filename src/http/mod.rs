//! Serving the fleet over MCP Streamable HTTP (`--listen ADDR`): one registry, one
//! [`FleetServer`] per client session, every client sees the same agents.
//!
//! This module owns the listener, the axum router and the shutdown sequence. Every
//! route goes through the same layers, outermost first:
//! 1. [`guard`]: DNS-rebinding protection (`Host`, `Origin`) → 403;
//! 2. [`auth`]: `Authorization: Bearer <token>` (or, off `/mcp`, the dashboard's
//!    session cookie) → 401;
//! 3. [`limits`]: body cap and read timeout → 413 / 408; calls in flight counted.
//!
//! Routes: `/mcp` (rmcp's Streamable HTTP service), and the dashboard and `/metrics`
//! ([`crate::dashboard`]) with the same protection. In stdio mode a second listener
//! (`--dashboard ADDR`) serves the dashboard routes alone.
//! Connections and their timeouts live in [`conn`].
//!
//! Malformed JSON-RPC on `/mcp` is answered as on stdio ([`jsonrpc`]).
//!
//! Shutdown (SIGTERM/SIGINT): stop accepting; tell the sessions the server is
//! stopping (a `wait_for_agents` in flight answers at once, timed out, with a note);
//! let calls in flight finish (up to [`DRAIN_GRACE`]); then end every session and
//! stream. The caller then stops the agents and closes the store, as in stdio
//! mode.

pub mod auth;
pub mod conn;
pub mod guard;
pub mod jsonrpc;
pub mod limits;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::dashboard::Dashboard;
use crate::server::{FleetServer, MAX_WAIT_S};
use auth::{Auth, Token};
use guard::Guard;
use limits::Calls;

/// The path of the MCP endpoint.
pub const MCP_PATH: &str = "/mcp";
/// How long shutdown waits for calls in flight.
pub const DRAIN_GRACE: Duration = Duration::from_secs(10);
/// How long shutdown then waits for connections to close.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// A session with no traffic this long is closed (its client, if it comes back, gets
/// 404 and starts a new session). Longer than the longest `wait_for_agents`, which
/// may send nothing while it waits.
pub const SESSION_IDLE: Duration = Duration::from_secs(MAX_WAIT_S as u64 + 300);

/// Why the HTTP server cannot start; messages say what to do.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error(
        "cannot listen on `{addr}`: {source}; choose another address or port (e.g. 127.0.0.1:7777)"
    )]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Guard(#[from] guard::GuardError),
    #[error(
        "listening on {0}, which is not a loopback address, needs an explicit token: set {env} to a long random value (e.g. `openssl rand -hex 32`) and give it to your clients",
        env = auth::TOKEN_ENV
    )]
    PublicWithoutToken(SocketAddr),
    #[error(
        "--ephemeral keeps nothing on disk, so there is nowhere to keep a generated token: set {env} (e.g. `export {env}=$(openssl rand -hex 32)`)",
        env = auth::TOKEN_ENV
    )]
    EphemeralWithoutToken,
}

/// A bound listener with its Host/Origin policy, ready to serve.
pub struct Listener {
    listener: TcpListener,
    addr: SocketAddr,
    guard: Arc<Guard>,
}

impl Listener {
    /// Bind `addr` (`IP:PORT` or `HOST:PORT`; port 0 picks a free one).
    pub async fn bind(
        addr: &str,
        allow_hosts: &[String],
        allow_origins: &[String],
    ) -> Result<Self, HttpError> {
        let bind_err = |source| HttpError::Bind {
            addr: addr.to_string(),
            source,
        };
        let listener = TcpListener::bind(addr).await.map_err(bind_err)?;
        let local = listener.local_addr().map_err(bind_err)?;
        let guard = Guard::new(local, allow_hosts, allow_origins)?;
        Ok(Self {
            listener,
            addr: local,
            guard: Arc::new(guard),
        })
    }

    /// The dashboard's address, e.g. `http://127.0.0.1:7777/`.
    pub fn dashboard_url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Check the token rules before anything starts: a non-loopback listener needs
    /// `FLOTILLA_TOKEN`, and so does an ephemeral fleet (no data directory to keep a
    /// generated token in).
    pub fn check_token_rules(&self, env_token: bool, ephemeral: bool) -> Result<(), HttpError> {
        let public = !self.addr.ip().is_loopback();
        if public && !env_token {
            return Err(HttpError::PublicWithoutToken(self.addr));
        }
        if ephemeral && !env_token {
            return Err(HttpError::EphemeralWithoutToken);
        }
        if public {
            tracing::warn!(
                addr = %self.addr,
                "listening on a non-loopback address: traffic (token included) is plain HTTP; put TLS in front of it with a reverse proxy"
            );
        }
        Ok(())
    }

    /// Serve until `shutdown` completes, then drain and close (see the module docs).
    /// `server`: serve MCP at `/mcp` too; `None`: the dashboard alone.
    pub async fn serve(
        self,
        server: Option<FleetServer>,
        dashboard: Arc<Dashboard>,
        token: Token,
        shutdown: impl Future<Output = ()>,
    ) {
        let calls = Calls::default();
        let sessions_cancel = CancellationToken::new();
        let stopping = CancellationToken::new();
        let auth = Auth::new(token, self.addr.port());
        let mcp = server.is_some();
        let url = self.dashboard_url();
        let app = router(
            server,
            &dashboard,
            url.clone(),
            auth,
            self.guard,
            calls.clone(),
            Sessions {
                cancel: sessions_cancel.clone(),
                stopping: stopping.clone(),
            },
        );
        let conns = conn::Connections::default();
        if mcp {
            tracing::info!("listening on http://{}{MCP_PATH}", self.addr);
        }
        tracing::info!("dashboard at {url} (open it once as {url}?token=<the token>)");
        conn::accept_until(self.listener, app, shutdown, &conns).await;
        // Live dashboard streams never end by themselves.
        dashboard.stop.cancel();

        tracing::info!(
            calls_in_flight = calls.in_flight(),
            "shutting down: no new connections; letting calls in flight finish"
        );
        conns.closing.cancel();
        stopping.cancel();
        if !calls.drain(DRAIN_GRACE).await {
            tracing::warn!(
                calls_in_flight = calls.in_flight(),
                "calls still running after {DRAIN_GRACE:?}; ending them"
            );
        }
        sessions_cancel.cancel();
        conns.tracker.close();
        if tokio::time::timeout(CLOSE_GRACE, conns.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("some connections did not close within {CLOSE_GRACE:?}");
        }
        tracing::info!("HTTP server stopped");
    }
}

/// The tokens that end the MCP sessions: `stopping` first (waits answer), then
/// `cancel` (every session and stream ends).
#[derive(Clone, Default)]
pub struct Sessions {
    pub cancel: CancellationToken,
    pub stopping: CancellationToken,
}

/// The application: every route behind the guard, the token and the limits. Without
/// a server, the dashboard alone.
pub fn router(
    server: Option<FleetServer>,
    dashboard: &Arc<Dashboard>,
    dashboard_url: String,
    auth: Auth,
    guard: Arc<Guard>,
    calls: Calls,
    sessions: Sessions,
) -> Router {
    let mut app = dashboard.routes();
    if let Some(server) = server {
        let mcp = Router::new()
            .route_service(MCP_PATH, mcp_service(server, sessions, dashboard_url))
            .layer(axum::middleware::from_fn(jsonrpc::check));
        app = app.merge(mcp);
    }
    app.fallback(|| async { StatusCode::NOT_FOUND })
        .layer(from_fn_with_state(calls, limits::limit))
        .layer(from_fn_with_state(auth, auth::require_auth))
        .layer(from_fn_with_state(guard, guard::check))
}

/// rmcp's Streamable HTTP service over the fleet.
fn mcp_service(
    server: FleetServer,
    sessions: Sessions,
    dashboard_url: String,
) -> StreamableHttpService<FleetServer, LocalSessionManager> {
    // Built once: a session's server is a clone (an Arc and the tool table).
    let server = server
        .with_dashboard(dashboard_url)
        .with_stopping(sessions.stopping);
    let mut manager = LocalSessionManager::default();
    manager.session_config.keep_alive = Some(SESSION_IDLE);
    let config = StreamableHttpServerConfig::default()
        // Host and Origin are checked by `guard` for every route.
        .disable_allowed_hosts()
        .with_max_request_body_bytes(limits::MAX_BODY_BYTES)
        .with_cancellation_token(sessions.cancel);
    StreamableHttpService::new(move || Ok(server.clone()), Arc::new(manager), config)
}
