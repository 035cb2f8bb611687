//! The fleet context: what every agent shares, built once at start and handed to each
//! agent as one `Arc<Fleet>` instead of a growing list of constructor arguments.
//!
//! - [`Fleet::store`]: the durable event log.
//! - [`bus`]: the fleet's event bus. Every journaled event is also published here, so
//!   observers (a dashboard, traces, the dependency scheduler) read one stream.
//! - [`budget`]: fleet-wide spend and caps (`--max-cost-usd`, `--max-tokens`).
//! - [`slots`]: run slots (`--max-running`): at most N agents run a command at once,
//!   first come, first served.
//! - [`circuit`]: one gate per provider: a cap on calls in flight
//!   (`max_concurrent_requests`) and a circuit breaker that turns an outage into one
//!   probe call per interval instead of agents × retries requests.
//! - [`totals`]: agents by status, tokens and cost, kept as agents change.
//! - A settle signal that wakes `wait_for_agents` whenever any agent settles or gets work.

pub mod budget;
pub mod bus;
pub use crate::provider::calls;
pub use crate::provider::circuit;
pub mod limits;
pub mod slots;
pub mod totals;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::plan::redact::Redactor;
use crate::store::Store;
use budget::Budget;
use bus::EventBus;
use circuit::{CircuitPolicy, Gate};
use slots::RunSlots;
use totals::Totals;

/// Default for `--max-running`.
pub const DEFAULT_MAX_RUNNING: usize = 16;
/// Default for the config's `handoff_max_chars`.
pub const DEFAULT_HANDOFF_MAX_CHARS: usize = 8000;
/// Default for `--stall-timeout-s`.
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(600);

/// Everything agents share.
pub struct Fleet {
    pub store: Arc<Store>,
    pub bus: EventBus,
    pub budget: Budget,
    pub slots: Arc<RunSlots>,
    /// Agents by status, tokens and cost of the live fleet, kept as agents change.
    pub totals: Totals,
    /// A command with no progress (model answer, tool result) for this long fails.
    pub stall_timeout: Duration,
    /// A question unanswered this long is answered for the agent (`None`: it waits).
    pub ask_timeout: Option<Duration>,
    /// Replaces provider keys and common key shapes in text handed onward.
    pub redactor: Redactor,
    /// Most characters of each dependency's answer handed to a dependent.
    pub handoff_max_chars: usize,
    /// `[cluster] max_running` across every node (a fleet of several nodes).
    pub fleet_slots: std::sync::OnceLock<Arc<dyn slots::FleetSlots>>,
    gates: BTreeMap<String, Arc<Gate>>,
    default_gate: Arc<Gate>,
    settle: watch::Sender<u64>,
}

/// How to build a [`Fleet`].
pub struct FleetOptions {
    pub budget: Budget,
    /// 0: no limit.
    pub max_running: usize,
    pub stall_timeout: Duration,
    pub ask_timeout: Option<Duration>,
    pub circuit: CircuitPolicy,
    /// Provider name → `max_concurrent_requests` (absent: no limit).
    pub provider_limits: BTreeMap<String, Option<usize>>,
    pub redactor: Redactor,
    pub handoff_max_chars: usize,
}

impl Default for FleetOptions {
    fn default() -> Self {
        Self {
            budget: Budget::default(),
            max_running: DEFAULT_MAX_RUNNING,
            stall_timeout: DEFAULT_STALL_TIMEOUT,
            ask_timeout: None,
            circuit: CircuitPolicy::default(),
            provider_limits: BTreeMap::new(),
            redactor: Redactor::default(),
            handoff_max_chars: DEFAULT_HANDOFF_MAX_CHARS,
        }
    }
}

impl Fleet {
    pub fn new(store: Arc<Store>, options: FleetOptions) -> Arc<Self> {
        let gates = options
            .provider_limits
            .iter()
            .map(|(name, limit)| {
                (
                    name.clone(),
                    Arc::new(Gate::new(name, *limit, options.circuit)),
                )
            })
            .collect();
        Arc::new(Self {
            store,
            bus: EventBus::new(),
            budget: options.budget,
            slots: Arc::new(RunSlots::new(options.max_running)),
            totals: Totals::default(),
            stall_timeout: options.stall_timeout,
            ask_timeout: options.ask_timeout,
            redactor: options.redactor,
            handoff_max_chars: options.handoff_max_chars,
            fleet_slots: std::sync::OnceLock::new(),
            gates,
            default_gate: Arc::new(Gate::new("model", None, options.circuit)),
            settle: watch::Sender::new(0),
        })
    }

    /// A fleet with default limits over `store` (tests, benchmarks).
    pub fn with_store(store: Arc<Store>) -> Arc<Self> {
        Self::new(store, FleetOptions::default())
    }

    /// The gate of a model id's provider (`anthropic:claude-…` → `anthropic`).
    pub fn gate(&self, model_id: &str) -> Arc<Gate> {
        let provider = model_id.split_once(':').map_or(model_id, |(p, _)| p);
        self.gates
            .get(provider)
            .unwrap_or(&self.default_gate)
            .clone()
    }

    /// Every provider gate (the default one last), for `/metrics`.
    pub fn gates(&self) -> Vec<Arc<Gate>> {
        let mut all: Vec<Arc<Gate>> = self.gates.values().cloned().collect();
        all.push(self.default_gate.clone());
        all
    }

    /// Wake every `wait_for_agents` (an agent settled or got work).
    pub fn notify_settle(&self) {
        self.settle.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// A receiver that wakes whenever any agent settles or gets new work.
    pub fn watch_settle(&self) -> watch::Receiver<u64> {
        self.settle.subscribe()
    }
}
