//! Spend caps: the fleet's (`--max-cost-usd`, `--max-tokens`) and each agent's
//! (`create_agent`'s `max_cost_usd`, `max_tokens`), checked before every model call.
//!
//! Tokens are input + output of every model call. Dollars add up the calls of priced
//! models only: an unpriced model counts against `max_tokens` alone. Before a model call
//! the fleet reserves the call's worst case ([`Budget::reserve`]: input estimate at the
//! input price plus the output limit at the output price); a call may start only while
//! spend plus the reservations of calls in flight is under the cap, and settles to its
//! real cost after. A burst of agents therefore overshoots a fleet cap by at most one
//! call's worst case, not by every call in flight. An agent makes one call at a time,
//! so its own caps, checked before each call, are bounded the same way.
//! At 80 % of a cap a note is raised once, so the orchestrator can switch to cheaper
//! models before the work stops.

use std::sync::Mutex;

use crate::failure::{BudgetExhausted, Cap, Spender};
use crate::sync::lock;

pub use crate::pricing::Spend;

/// Spend caps; `None` is no cap.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Caps {
    pub max_cost_usd: Option<f64>,
    pub max_tokens: Option<u64>,
}

impl Caps {
    pub fn is_set(&self) -> bool {
        self.max_cost_usd.is_some() || self.max_tokens.is_some()
    }
}

/// The share of a cap at which the orchestrator is told.
pub const NOTE_AT: f64 = 0.8;

/// Whose caps: names the cap and how to raise it in messages.
#[derive(Debug, Clone, Copy)]
pub enum Owner<'a> {
    Fleet,
    Agent(&'a str),
}

/// The cap `spent` has reached, if any (the dollar cap first).
pub fn exhausted(owner: Owner<'_>, caps: &Caps, spent: Spend) -> Option<BudgetExhausted> {
    let cap = if let Some(cap) = caps.max_cost_usd
        && spent.cost_usd >= cap
    {
        Cap::CostUsd {
            cap,
            spent: spent.cost_usd,
        }
    } else if let Some(cap) = caps.max_tokens
        && spent.tokens >= cap
    {
        Cap::Tokens {
            cap,
            spent: spent.tokens,
        }
    } else {
        return None;
    };
    Some(BudgetExhausted {
        owner: owner.into(),
        cap,
    })
}

/// The note for crossing [`NOTE_AT`] of a cap between `before` and `after`, if any.
pub fn crossing(owner: Owner<'_>, caps: &Caps, before: Spend, after: Spend) -> Option<String> {
    let crossed = |cap: f64, b: f64, a: f64| b < cap * NOTE_AT && a >= cap * NOTE_AT;
    let what = if let Some(cap) = caps.max_cost_usd
        && crossed(cap, before.cost_usd, after.cost_usd)
    {
        format!(
            "{:.0}% of its max_cost_usd cap (${:.4} of ${cap})",
            100.0 * after.cost_usd / cap,
            after.cost_usd
        )
    } else if let Some(cap) = caps.max_tokens
        && crossed(cap as f64, before.tokens as f64, after.tokens as f64)
    {
        format!(
            "{:.0}% of its max_tokens cap ({} of {cap} tokens)",
            100.0 * after.tokens as f64 / cap as f64,
            after.tokens
        )
    } else {
        return None;
    };
    Some(format!(
        "budget: {} has used {what}; consider cheaper models (e.g. `haiku`) or smaller tasks before it stops",
        subject(owner)
    ))
}

fn subject(owner: Owner<'_>) -> String {
    match owner {
        Owner::Fleet => "the fleet".to_string(),
        Owner::Agent(name) => format!("agent `{name}`"),
    }
}

impl From<Owner<'_>> for Spender {
    fn from(owner: Owner<'_>) -> Self {
        match owner {
            Owner::Fleet => Spender::Fleet,
            Owner::Agent(name) => Spender::Agent(name.to_string()),
        }
    }
}

/// Where a fleet of several nodes keeps its spend: each charge is sent there too.
pub type ChargeSink = Box<dyn Fn(Spend) + Send + Sync>;

/// The fleet's caps and spend, including agents since deleted.
#[derive(Default)]
pub struct Budget {
    caps: Caps,
    spent: Mutex<Spend>,
    /// Worst cases of the model calls in flight ([`Reservation`]s).
    reserved: Mutex<Spend>,
    note: Mutex<Option<String>>,
    /// A fleet of several nodes: the shared store that adds up every node's spend.
    sink: std::sync::OnceLock<ChargeSink>,
}

impl std::fmt::Debug for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Budget")
            .field("caps", &self.caps)
            .field("spent", &self.spent())
            .field("shared", &self.sink.get().is_some())
            .finish()
    }
}

impl Budget {
    /// `spent`: what the fleet had spent before this process (from the store).
    pub fn new(caps: Caps, spent: Spend) -> Self {
        Self {
            caps,
            spent: Mutex::new(spent),
            reserved: Mutex::new(Spend::default()),
            note: Mutex::new(None),
            sink: std::sync::OnceLock::new(),
        }
    }

    /// Send every charge to `sink` as well (once): the shared store of a fleet of
    /// several nodes, which answers with the fleet's total ([`Budget::observe`]).
    pub fn send_charges_to(&self, sink: ChargeSink) {
        let _ = self.sink.set(sink);
    }

    /// The fleet's spend as the shared store counts it (every node's calls). Spend
    /// only grows: a total older than this node's latest charge changes nothing.
    pub fn observe(&self, total: Spend) {
        let (before, after) = {
            let mut spent = lock(&self.spent);
            let before = *spent;
            spent.cost_usd = spent.cost_usd.max(total.cost_usd);
            spent.tokens = spent.tokens.max(total.tokens);
            (before, *spent)
        };
        self.note_crossing(before, after);
    }

    pub fn caps(&self) -> &Caps {
        &self.caps
    }

    pub fn spent(&self) -> Spend {
        *lock(&self.spent)
    }

    /// Add one model call's spend (`cost_usd` is `None` for an unpriced model).
    pub fn charge(&self, cost_usd: Option<f64>, tokens: u64) {
        let (before, after) = {
            let mut spent = lock(&self.spent);
            let before = *spent;
            spent.cost_usd += cost_usd.unwrap_or(0.0);
            spent.tokens += tokens;
            (before, *spent)
        };
        if let Some(sink) = self.sink.get() {
            sink(Spend {
                cost_usd: cost_usd.unwrap_or(0.0),
                tokens,
            });
        }
        self.note_crossing(before, after);
    }

    fn note_crossing(&self, before: Spend, after: Spend) {
        if let Some(note) = crossing(Owner::Fleet, &self.caps, before, after) {
            tracing::warn!("{note}");
            *lock(&self.note) = Some(note);
        }
    }

    /// The fleet's cap that is reached, if any: no model call may start.
    pub fn check(&self) -> Result<(), BudgetExhausted> {
        match exhausted(Owner::Fleet, &self.caps, self.spent()) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Reserve one model call's worst case, or refuse when the fleet's spend plus the
    /// reservations already held reach a cap. The reservation ends when the returned
    /// guard drops; [`Budget::charge`] the real cost before that.
    pub fn reserve(&self, worst: Spend) -> Result<Reservation<'_>, BudgetExhausted> {
        // Lock order: `spent` then `reserved`, here only.
        let spent = lock(&self.spent);
        let mut reserved = lock(&self.reserved);
        let committed = Spend {
            cost_usd: spent.cost_usd + reserved.cost_usd,
            tokens: spent.tokens + reserved.tokens,
        };
        if let Some(e) = exhausted(Owner::Fleet, &self.caps, committed) {
            return Err(e);
        }
        reserved.cost_usd += worst.cost_usd;
        reserved.tokens += worst.tokens;
        Ok(Reservation {
            budget: self,
            worst,
        })
    }

    /// The 80 % note, once: the first reader gets it.
    pub fn take_note(&self) -> Option<String> {
        lock(&self.note).take()
    }
}

/// A model call's worst case held against the fleet's caps while it runs; released on
/// drop (answered, failed or cancelled alike).
#[derive(Debug)]
pub struct Reservation<'a> {
    budget: &'a Budget,
    worst: Spend,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        let mut reserved = lock(&self.budget.reserved);
        reserved.cost_usd = (reserved.cost_usd - self.worst.cost_usd).max(0.0);
        reserved.tokens = reserved.tokens.saturating_sub(self.worst.tokens);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn fleet_cap_stops_at_the_cap_and_notes_once_at_80_percent() {
        let b = Budget::new(
            Caps {
                max_cost_usd: Some(1.0),
                max_tokens: None,
            },
            Spend::default(),
        );
        b.charge(Some(0.5), 10);
        assert!(b.check().is_ok());
        assert!(b.take_note().is_none());
        b.charge(Some(0.35), 10);
        let note = b.take_note().unwrap();
        assert!(note.starts_with("budget: the fleet has used 85%"), "{note}");
        assert!(b.take_note().is_none(), "the note comes once");
        b.charge(Some(0.1), 10);
        assert!(b.take_note().is_none(), "crossed once only");
        assert!(b.check().is_ok());
        b.charge(Some(0.06), 10);
        let e = b.check().unwrap_err().to_string();
        assert!(
            e.starts_with("budget: the fleet's max_cost_usd cap of $1"),
            "{e}"
        );
        assert!(e.contains("--max-cost-usd"), "{e}");
    }

    #[test]
    fn unpriced_calls_count_against_tokens_only() {
        let b = Budget::new(
            Caps {
                max_cost_usd: Some(1.0),
                max_tokens: Some(1000),
            },
            Spend {
                cost_usd: 0.0,
                tokens: 500,
            },
        );
        b.charge(None, 499);
        assert!(b.check().is_ok());
        assert_eq!(b.spent().cost_usd, 0.0);
        b.charge(None, 1);
        let e = b.check().unwrap_err().to_string();
        assert!(e.contains("max_tokens cap of 1000 tokens"), "{e}");
    }

    #[test]
    fn agent_messages_name_the_agent_and_how_to_go_on() {
        let caps = Caps {
            max_cost_usd: None,
            max_tokens: Some(100),
        };
        let spent = Spend {
            cost_usd: 0.0,
            tokens: 120,
        };
        let e = exhausted(Owner::Agent("a"), &caps, spent)
            .unwrap()
            .to_string();
        assert!(e.starts_with("budget: agent `a`'s max_tokens cap"), "{e}");
        assert!(
            e.contains("create a new agent with a higher max_tokens"),
            "{e}"
        );
        let n = crossing(Owner::Agent("a"), &caps, Spend::default(), spent).unwrap();
        assert!(n.starts_with("budget: agent `a` has used 120%"), "{n}");
    }

    #[test]
    fn reservations_admit_calls_only_while_spend_plus_held_is_under_the_cap() {
        let b = Budget::new(
            Caps {
                max_cost_usd: Some(1.0),
                max_tokens: None,
            },
            Spend::default(),
        );
        let worst = Spend {
            cost_usd: 0.3,
            tokens: 100,
        };
        let held: Vec<_> = (0..4).map(|_| b.reserve(worst).unwrap()).collect();
        // 1.2 held: the fifth call is refused although nothing is spent yet.
        assert!(b.reserve(worst).is_err());
        drop(held);
        // Settled low: room again.
        b.charge(Some(0.5), 10);
        let r = b.reserve(worst).unwrap();
        assert!(b.reserve(worst).unwrap().worst.tokens == 100);
        drop(r);
        b.charge(Some(0.5), 10);
        assert!(b.reserve(worst).is_err());
    }
}
