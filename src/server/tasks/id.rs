//! Task ids: the `(agent, command)` pairs a task stands for, written
//! `<agent_id>/<command>` (e.g. `ag-0123456789/2`) and, for a `create_agents` batch,
//! several joined by `+`. The id is the whole state a task needs besides the store,
//! so anything a client sends back is checked here first.

use std::fmt;
use std::str::FromStr;

/// The most `(agent, command)` pairs one task id may name.
const MAX_PARTS: usize = 1000;

/// One agent command a task stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub agent_id: String,
    /// 1-based command index.
    pub command: u32,
}

impl Part {
    pub fn new(agent_id: &str, command: u32) -> Self {
        Self {
            agent_id: agent_id.to_string(),
            command,
        }
    }
}

/// A task id (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskId(pub Vec<Part>);

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("+")?;
            }
            write!(f, "{}/{}", p.agent_id, p.command)?;
        }
        Ok(())
    }
}

/// An agent id as the registry makes them: `ag-` and hex digits.
fn agent_id_ok(id: &str) -> bool {
    id.strip_prefix("ag-").is_some_and(|hex| {
        (1..=16).contains(&hex.len()) && hex.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

impl FromStr for TaskId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            let shown: String = s.chars().take(80).collect();
            format!(
                "task id `{shown}` is not one flotilla gave out ({why}): a task id is `<agent_id>/<command>`, e.g. `ag-0123456789/1`, or several joined by `+`"
            )
        };
        if s.is_empty() {
            return Err(bad("it is empty"));
        }
        let mut parts = Vec::new();
        for piece in s.split('+') {
            if parts.len() == MAX_PARTS {
                return Err(bad(&format!("it names more than {MAX_PARTS} commands")));
            }
            let (agent, command) = piece
                .split_once('/')
                .ok_or_else(|| bad(&format!("`{piece}` has no `/`")))?;
            if !agent_id_ok(agent) {
                return Err(bad(&format!("`{agent}` is not an agent id")));
            }
            let command = command
                .parse::<u32>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| bad(&format!("`{command}` is not a command number")))?;
            let part = Part::new(agent, command);
            if parts.contains(&part) {
                return Err(bad(&format!("`{piece}` appears twice")));
            }
            parts.push(part);
        }
        Ok(Self(parts))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        for s in ["ag-0123456789/1", "ag-00000000aa/3+ag-00000000bb/1"] {
            assert_eq!(s.parse::<TaskId>().unwrap().to_string(), s);
        }
        let id: TaskId = "ag-0a/2".parse().unwrap();
        assert_eq!(id.0, vec![Part::new("ag-0a", 2)]);
    }

    #[test]
    fn garbled_ids_say_what_is_wrong() {
        for (s, why) in [
            ("", "empty"),
            ("ag-0123456789", "no `/`"),
            ("xx-0123456789/1", "not an agent id"),
            ("ag-zz/1", "not an agent id"),
            ("ag-0123456789/0", "not a command number"),
            ("ag-0123456789/x", "not a command number"),
            ("ag-01/1+ag-01/1", "twice"),
            ("ag-01/1+", "no `/`"),
        ] {
            let e = s.parse::<TaskId>().unwrap_err();
            assert!(e.contains(why), "{s}: {e}");
            assert!(e.contains("<agent_id>/<command>"), "{e}");
        }
    }
}
