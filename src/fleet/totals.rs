//! Fleet totals kept as agents change, so `list_agents` answers in constant time at
//! any fleet size: agents by status, tokens and known cost of the live agents.
//! [`crate::agent::AgentHandle::update`] reports each change of an agent's counted
//! fields as a before/after pair.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::status::AgentStatus;
use crate::sync::lock;

/// The fields of one agent that totals count.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Counted {
    pub status: AgentStatus,
    pub input: u64,
    pub output: u64,
    /// `None`: unpriced.
    pub cost_usd: Option<f64>,
    pub live: bool,
}

/// What the totals say now.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub agents: usize,
    pub by_status: BTreeMap<String, usize>,
    pub input: u64,
    pub output: u64,
    pub cost_usd: f64,
    pub unpriced_agents: usize,
}

#[derive(Debug, Default)]
struct Sums {
    agents: i64,
    by_status: BTreeMap<&'static str, i64>,
    input: i64,
    output: i64,
    cost_usd: f64,
    unpriced: i64,
}

#[derive(Debug, Default)]
pub struct Totals {
    sums: Mutex<Sums>,
}

impl Totals {
    /// An agent joins the fleet.
    pub fn add(&self, c: Counted) {
        self.apply(None, Some(c));
    }

    /// An agent changed (either side `None`: it joined or left).
    pub fn apply(&self, before: Option<Counted>, after: Option<Counted>) {
        let before = before.filter(|c| c.live);
        let after = after.filter(|c| c.live);
        if before == after {
            return;
        }
        let mut sums = lock(&self.sums);
        for (c, sign) in [(before, -1_i64), (after, 1)] {
            let Some(c) = c else { continue };
            sums.agents += sign;
            *sums.by_status.entry(c.status.as_str()).or_insert(0) += sign;
            sums.input += sign * c.input as i64;
            sums.output += sign * c.output as i64;
            match c.cost_usd {
                Some(cost) => sums.cost_usd += sign as f64 * cost,
                None => sums.unpriced += sign,
            }
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        let sums = lock(&self.sums);
        Snapshot {
            agents: sums.agents.max(0) as usize,
            by_status: sums
                .by_status
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(s, n)| (s.to_string(), *n as usize))
                .collect(),
            input: sums.input.max(0) as u64,
            output: sums.output.max(0) as u64,
            cost_usd: sums.cost_usd.max(0.0),
            unpriced_agents: sums.unpriced.max(0) as usize,
        }
    }
}
