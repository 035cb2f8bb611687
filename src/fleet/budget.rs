//! Spend caps: the fleet's (`--max-cost-usd`, `--max-tokens`) and each agent's
//! (`create_agent`'s `max_cost_usd`, `max_tokens`), checked before every model call.
//!
//! Tokens are input + output of every model call. Dollars add up the calls of priced
//! models only: an unpriced model counts against `max_tokens` alone. A cap is checked
//! before a call, so a fleet overshoots it by at most the calls already in flight.
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

/// The fleet's caps and spend, including agents since deleted.
#[derive(Debug, Default)]
pub struct Budget {
    caps: Caps,
    spent: Mutex<Spend>,
    note: Mutex<Option<String>>,
}

impl Budget {
    /// `spent`: what the fleet had spent before this process (from the store).
    pub fn new(caps: Caps, spent: Spend) -> Self {
        Self {
            caps,
            spent: Mutex::new(spent),
            note: Mutex::new(None),
        }
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

    /// The 80 % note, once: the first reader gets it.
    pub fn take_note(&self) -> Option<String> {
        lock(&self.note).take()
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
}
