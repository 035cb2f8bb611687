//! What an agent is doing, readable at any time without waiting on its worker.
//!
//! The worker publishes an [`AgentState`] through a `watch` channel; readers take a
//! snapshot ([`AgentState::row`]) and `wait_for_agents` awaits changes.

use std::time::{Instant, SystemTime};

use schemars::JsonSchema;
use serde::Serialize;

use crate::model::Usage;

pub use crate::status::AgentStatus;

impl AgentState {
    /// The fields the fleet's totals count.
    pub fn counted(&self) -> crate::fleet::totals::Counted {
        crate::fleet::totals::Counted {
            status: self.status,
            input: self.tokens.input_tokens,
            output: self.tokens.output_tokens,
            cost_usd: self.cost_usd,
            live: !self.deleted,
        }
    }
}

/// What the agent is doing right now, e.g. `run_command: cargo test`.
#[derive(Debug, Clone)]
pub struct Activity {
    pub label: String,
    pub since: Instant,
}

impl Activity {
    /// An activity starting now.
    pub fn now(label: impl Into<String>) -> Self {
        Self {
            label: label.into(),
            since: Instant::now(),
        }
    }
}

/// The live state of one agent. Cheap to clone; written only by its worker (and by
/// the handle when a command is queued).
#[derive(Debug, Clone)]
pub struct AgentState {
    pub status: AgentStatus,
    /// Commands given so far (the next one gets index `commands + 1`).
    pub commands: u32,
    /// Commands queued and not yet started.
    pub pending: u32,
    pub steps: u64,
    pub tool_calls: u64,
    pub activity: Option<Activity>,
    pub last_activity_at: SystemTime,
    pub tokens: Usage,
    pub context_tokens: u64,
    pub cost_usd: Option<f64>,
    pub last_error: Option<String>,
    /// Held by `pause_agents`: takes no new step until `resume_agents`.
    pub paused: bool,
    /// Dependencies not yet done (status `waiting`).
    pub waiting_on: Vec<String>,
    /// Attempt of the current (or last) command: 1, or more after evictions.
    pub attempt: u32,
    /// What the status was when the agent was held, to restore on resume.
    pub before_pause: Option<AgentStatus>,
    /// Set when the agent has been deleted; its worker is gone.
    pub deleted: bool,
    /// The question it waits on (status `needs_input`).
    pub question: Option<super::asking::Question>,
}

impl AgentState {
    pub fn new(priced: bool) -> Self {
        Self {
            status: AgentStatus::Idle,
            commands: 0,
            pending: 0,
            steps: 0,
            tool_calls: 0,
            activity: None,
            last_activity_at: SystemTime::now(),
            tokens: Usage::default(),
            context_tokens: 0,
            cost_usd: priced.then_some(0.0),
            last_error: None,
            paused: false,
            waiting_on: Vec::new(),
            attempt: 1,
            before_pause: None,
            deleted: false,
            question: None,
        }
    }

    /// Settled: nothing running and nothing queued, or held (paused: it cannot move
    /// until resumed; needs_input: it waits for an answer, so nobody should sleep on
    /// it), or deleted.
    pub fn settled(&self) -> bool {
        self.deleted
            || matches!(self.status, AgentStatus::Paused | AgentStatus::NeedsInput)
            || (!matches!(
                self.status,
                AgentStatus::Running | AgentStatus::Queued | AgentStatus::Waiting
            ) && self.pending == 0)
    }

    /// Input + output tokens, what budgets count.
    pub fn spent(&self) -> crate::fleet::budget::Spend {
        crate::fleet::budget::Spend {
            cost_usd: self.cost_usd.unwrap_or(0.0),
            tokens: self.tokens.input_tokens + self.tokens.output_tokens,
        }
    }

    /// `label (12s)`: the activity with how long it has been going.
    pub fn activity_text(&self) -> Option<String> {
        self.activity.as_ref().map(|a| {
            let secs = a.since.elapsed().as_secs();
            if secs == 0 {
                a.label.clone()
            } else {
                format!("{} ({secs}s)", a.label)
            }
        })
    }
}

/// Token counts.
#[derive(Debug, Clone, Copy, Serialize, JsonSchema)]
pub struct Tokens {
    pub input: u64,
    pub output: u64,
}

impl From<Usage> for Tokens {
    fn from(u: Usage) -> Self {
        Self {
            input: u.input_tokens,
            output: u.output_tokens,
        }
    }
}

/// Seconds since the Unix epoch, as an RFC 3339 UTC timestamp.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}Z")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        assert_eq!(rfc3339(t), "2026-11-18T11:06:40Z");
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn settled_needs_no_running_and_no_pending() {
        let mut s = AgentState::new(false);
        assert!(s.settled());
        s.pending = 1;
        assert!(!s.settled());
        s.pending = 0;
        s.status = AgentStatus::Running;
        assert!(!s.settled());
        s.status = AgentStatus::Queued;
        assert!(!s.settled());
        s.status = AgentStatus::Paused;
        s.pending = 2;
        assert!(s.settled(), "a paused agent cannot move: settled");
        s.status = AgentStatus::NeedsInput;
        assert!(s.settled(), "an agent waiting for an answer is settled");
        s.status = AgentStatus::Running;
        s.pending = 0;
        s.deleted = true;
        assert!(s.settled());
        assert_eq!(AgentStatus::parse("failed"), Some(AgentStatus::Failed));
        assert_eq!(AgentStatus::parse("paused"), Some(AgentStatus::Paused));
        assert_eq!(AgentStatus::parse("nope"), None);
    }
}
