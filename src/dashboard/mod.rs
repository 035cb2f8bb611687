//! The dashboard and `/metrics`: a live view of the fleet for the human who started
//! it, served by flotilla itself on the `--listen` listener (or, in stdio mode, on the
//! `--dashboard` listener) behind the same token and Host/Origin guard.
//!
//! - [`observer`]: one tracked task reading the event bus: counters and timelines.
//! - [`api`]: the JSON snapshot, an agent's detail, the timeline, the controls.
//! - [`sse`]: the live feed (Server-Sent Events from the bus).
//! - [`metrics`]: the Prometheus text.
//! - [`redacted`]: the middleware every response leaves through, redacting secrets.
//! - `page.html`: the page — HTML, CSS and JS in one file embedded in the binary; no
//!   CDN, no build step.
//!
//! In a fleet of several nodes (`crate::cluster`) the snapshot, the live feed and
//! `/metrics` also show each node and its health, rows carry their node, and controls
//! of an agent another node runs are done on that node.
//!
//! Routes (all behind [`crate::http::auth`]; POSTs need the `Origin` check too):
//! `GET /`, `/api/fleet`, `/api/timeline`, `/api/events`, `/api/agents/{name}`,
//! `/metrics`; `POST /api/agents/{name}/{pause|resume|interrupt|delete}`,
//! `/api/fleet/{pause|resume}`.

pub mod api;
pub mod metrics;
pub mod observer;
pub mod redacted;
pub mod sse;

use std::sync::Arc;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::registry::Registry;
use observer::Seen;

/// The page, embedded.
const PAGE: &str = include_str!("page.html");

/// The dashboard's shared state: the registry, what the observer has seen, and the
/// tokens that stop the observer and the live streams.
pub struct Dashboard {
    pub registry: Arc<Registry>,
    pub seen: Arc<Seen>,
    /// Ends every live stream (the HTTP server is shutting down).
    pub stop: CancellationToken,
    observer: CancellationToken,
    tracker: TaskTracker,
    /// This node's fleet of several nodes, if any: the nodes and their health, and
    /// the server that sends controls of agents other nodes run to those nodes.
    pub cluster: std::sync::OnceLock<(Arc<crate::cluster::Cluster>, crate::server::FleetServer)>,
}

impl Dashboard {
    /// Show the fleet's nodes (a fleet of several nodes).
    pub fn set_cluster(
        &self,
        cluster: Arc<crate::cluster::Cluster>,
        server: crate::server::FleetServer,
    ) {
        let _ = self.cluster.set((cluster, server));
    }

    /// The server that routes a control to the node that must run it (a fleet of
    /// several nodes).
    pub fn router(&self) -> Option<&crate::server::FleetServer> {
        self.cluster.get().map(|(_, s)| s)
    }

    /// Every node of the fleet and its health as last read (a fleet of several nodes;
    /// `None` with one node).
    pub fn nodes(&self) -> Option<Vec<crate::cluster::NodeRow>> {
        self.cluster.get().map(|(c, _)| c.nodes())
    }

    /// Subscribe to the bus now (before any agent is restored or started, so nothing
    /// is missed) and start the observer.
    pub fn start(registry: Arc<Registry>) -> Arc<Self> {
        let seen = Arc::new(Seen::default());
        let rx = registry.fleet().bus.subscribe();
        let observer = CancellationToken::new();
        let tracker = TaskTracker::new();
        tracker.spawn(observer::run(seen.clone(), rx, observer.clone()));
        Arc::new(Self {
            registry,
            seen,
            stop: CancellationToken::new(),
            observer,
            tracker,
            cluster: std::sync::OnceLock::new(),
        })
    }

    /// End the live streams and the observer, and wait for it.
    pub async fn shutdown(&self) {
        self.stop.cancel();
        self.observer.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }

    /// The dashboard's routes (the caller adds auth, guard and limits).
    pub fn routes(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/", get(page))
            .route("/api/fleet", get(api::fleet))
            .route("/api/timeline", get(api::timeline))
            .route("/api/events", get(sse::events))
            .route("/api/agents/{name}", get(api::agent))
            .route("/api/agents/{name}/answer", post(api::answer_question))
            .route("/api/agents/{name}/{action}", post(api::control))
            .route("/api/fleet/{action}", post(api::fleet_control))
            .route("/metrics", get(metrics::metrics))
            // Every response leaves through the redactor.
            .layer(axum::middleware::from_fn_with_state(
                self.clone(),
                redacted::layer,
            ))
            .with_state(self.clone())
    }
}

async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
            ),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        PAGE,
    )
}
