//! Fleet totals kept as agents change, so `list_agents` answers in constant time at
//! any fleet size: agents by status, tokens and known cost of the live agents.
//! [`crate::agent::AgentHandle::update`] reports each change of an agent's counted
//! fields as a before/after pair.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
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
    /// The live agents' names by status, so a status filter reads only matching rows.
    names: BTreeMap<&'static str, BTreeSet<String>>,
}

#[derive(Debug, Default)]
pub struct Totals {
    sums: Mutex<Sums>,
}

impl Totals {
    /// An agent joins the fleet.
    pub fn add(&self, name: &str, c: Counted) {
        self.apply(name, None, Some(c));
    }

    /// Agent `name` changed (either side `None`: it joined or left).
    pub fn apply(&self, name: &str, before: Option<Counted>, after: Option<Counted>) {
        let before = before.filter(|c| c.live);
        let after = after.filter(|c| c.live);
        if before == after {
            return;
        }
        let mut sums = lock(&self.sums);
        let (was, is) = (before.map(|c| c.status), after.map(|c| c.status));
        if was != is {
            if let Some(status) = was
                && let Some(names) = sums.names.get_mut(status.as_str())
            {
                names.remove(name);
            }
            if let Some(status) = is {
                let names = sums.names.entry(status.as_str()).or_default();
                names.insert(name.to_string());
            }
        }
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

    /// Up to `limit` names of live agents in `status`, in name order after `after`; and
    /// whether more follow. O(log n + limit).
    pub fn names_in(
        &self,
        status: AgentStatus,
        after: Option<&str>,
        limit: usize,
    ) -> (Vec<String>, bool) {
        let sums = lock(&self.sums);
        let Some(names) = sums.names.get(status.as_str()) else {
            return (Vec::new(), false);
        };
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut page: Vec<String> = names
            .range::<str, _>((start, Bound::Unbounded))
            .take(limit + 1)
            .cloned()
            .collect();
        let more = page.len() > limit;
        page.truncate(limit);
        (page, more)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn counted(status: AgentStatus, live: bool) -> Counted {
        Counted {
            status,
            input: 0,
            output: 0,
            cost_usd: None,
            live,
        }
    }

    #[test]
    fn names_by_status_follow_every_change() {
        let t = Totals::default();
        for n in ["a", "b", "c", "d"] {
            t.add(n, counted(AgentStatus::Idle, true));
        }
        t.apply(
            "b",
            Some(counted(AgentStatus::Idle, true)),
            Some(counted(AgentStatus::Running, true)),
        );
        t.apply(
            "d",
            Some(counted(AgentStatus::Idle, true)),
            Some(counted(AgentStatus::Idle, false)),
        );
        assert_eq!(
            t.names_in(AgentStatus::Idle, None, 10),
            (vec!["a".into(), "c".into()], false)
        );
        assert_eq!(
            t.names_in(AgentStatus::Idle, None, 1),
            (vec!["a".into()], true)
        );
        assert_eq!(
            t.names_in(AgentStatus::Idle, Some("a"), 1),
            (vec!["c".into()], false)
        );
        assert_eq!(
            t.names_in(AgentStatus::Running, None, 10),
            (vec!["b".into()], false)
        );
        assert_eq!(t.names_in(AgentStatus::Failed, None, 10), (vec![], false));
        assert_eq!(t.snapshot().by_status.get("idle"), Some(&2));
    }
}
