//! Plan graphs: checking a `create_agents` call before anything is created.
//!
//! - [`validate`] takes the call's agents as `(name, depends_on)` in order and refuses
//!   the whole plan on a duplicate name, a name already taken, an unknown or self
//!   dependency, or a cycle (spelled out, `a -> b -> a`); otherwise it returns the order
//!   to create them in: dependencies first, input order kept wherever the graph allows.
//!
//! Every error says what was wrong and what to change, for the orchestrator to read.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use thiserror::Error;

/// At most this many close names are suggested for an unknown dependency.
const MAX_SUGGESTIONS: usize = 3;

/// Why a plan was refused. Nothing has been created when one of these is returned.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PlanError {
    /// Two agents of the same call share a name.
    #[error(
        "the name `{name}` is given to more than one agent in this plan; give each agent its own name"
    )]
    DuplicateName { name: String },
    /// An agent of the call is named like a live agent.
    #[error(
        "an agent named `{name}` already exists; choose another name, or delete_agent `{name}` first"
    )]
    NameTaken { name: String },
    /// A `depends_on` entry names neither a live agent nor one of the call.
    #[error(
        "`{agent}` depends on `{dependency}`, which is neither an existing agent nor in this plan{}; \
         fix the name in its depends_on, or add `{dependency}` to the plan",
        did_you_mean(.close)
    )]
    UnknownDependency {
        agent: String,
        dependency: String,
        /// Names close to `dependency` (see [`close_names`]); a caller that knows the
        /// live fleet's names may add its own.
        close: Vec<String>,
    },
    /// An agent lists itself in its `depends_on`.
    #[error("`{agent}` depends on itself; remove `{agent}` from its depends_on")]
    SelfDependency { agent: String },
    /// The call's agents depend on each other in a loop.
    #[error(
        "dependency cycle: {} (each agent depends on the next); remove one of these depends_on entries",
        spell_cycle(.cycle)
    )]
    Cycle {
        /// The agents of the loop in order, each depending on the next and the last on the
        /// first; starts with the one given first in the call.
        cycle: Vec<String>,
    },
}

fn did_you_mean(close: &[String]) -> String {
    match close {
        [] => String::new(),
        [one] => format!(" (did you mean `{one}`?)"),
        many => format!(" (did you mean one of `{}`?)", many.join("`, `")),
    }
}

fn spell_cycle(cycle: &[String]) -> String {
    let mut names: Vec<&str> = cycle.iter().map(String::as_str).collect();
    if let Some(first) = names.first().copied() {
        names.push(first);
    }
    names.join(" -> ")
}

/// Checks the agents of one `create_agents` call, `(name, depends_on)` in the given order,
/// against each other and the live fleet (`exists(name)` is true for a live agent).
/// A dependency may name an agent of the call or a live agent; repeated entries in one
/// `depends_on` are harmless.
///
/// Returns the indices into `new` in an order where every agent comes after the agents of
/// the call it depends on; among agents whose dependencies are met, the earliest in `new`
/// comes first, so a plan already in order comes back as `0, 1, 2, …`.
///
/// Checks, in this order, stopping at the first problem: duplicate names, names already
/// taken, then each agent's dependencies in order (itself, unknown), then cycles.
pub fn validate(
    new: &[(String, Vec<String>)],
    exists: impl Fn(&str) -> bool,
) -> Result<Vec<usize>, PlanError> {
    let mut index: HashMap<&str, usize> = HashMap::with_capacity(new.len());
    for (i, (name, _)) in new.iter().enumerate() {
        if index.insert(name.as_str(), i).is_some() {
            return Err(PlanError::DuplicateName { name: name.clone() });
        }
    }
    if let Some((name, _)) = new.iter().find(|(name, _)| exists(name)) {
        return Err(PlanError::NameTaken { name: name.clone() });
    }

    // Edges inside the plan: deps[i] are the agents of the call that i depends on.
    let mut deps: Vec<Vec<usize>> = vec![Vec::new(); new.len()];
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); new.len()];
    for (i, (name, depends_on)) in new.iter().enumerate() {
        for dep in depends_on {
            if dep == name {
                return Err(PlanError::SelfDependency {
                    agent: name.clone(),
                });
            }
            match index.get(dep.as_str()) {
                Some(&j) if !deps[i].contains(&j) => {
                    deps[i].push(j);
                    dependents[j].push(i);
                }
                Some(_) => {}
                None if exists(dep) => {}
                None => {
                    return Err(PlanError::UnknownDependency {
                        agent: name.clone(),
                        dependency: dep.clone(),
                        close: close_names(dep, new.iter().map(|(n, _)| n.as_str())),
                    });
                }
            }
        }
    }

    // Kahn's algorithm, always taking the earliest ready agent.
    let mut waiting_on: Vec<usize> = deps.iter().map(Vec::len).collect();
    let mut ready: BinaryHeap<Reverse<usize>> = (0..new.len())
        .filter(|&i| waiting_on[i] == 0)
        .map(Reverse)
        .collect();
    let mut order = Vec::with_capacity(new.len());
    while let Some(Reverse(i)) = ready.pop() {
        order.push(i);
        for &d in &dependents[i] {
            waiting_on[d] -= 1;
            if waiting_on[d] == 0 {
                ready.push(Reverse(d));
            }
        }
    }
    if order.len() == new.len() {
        return Ok(order);
    }
    let cycle = find_cycle(&deps, &waiting_on);
    Err(PlanError::Cycle {
        cycle: cycle.into_iter().map(|i| new[i].0.clone()).collect(),
    })
}

/// A cycle among the agents Kahn's algorithm could not order (`waiting_on > 0`). Each of
/// them still waits on another of them, so following the first such dependency from the
/// earliest one must loop. The loop is rotated to start at its earliest agent, so the
/// report does not depend on where the walk began.
fn find_cycle(deps: &[Vec<usize>], waiting_on: &[usize]) -> Vec<usize> {
    let stuck = |i: usize| waiting_on[i] > 0;
    let mut seen_at: Vec<Option<usize>> = vec![None; deps.len()];
    let mut path = Vec::new();
    let mut cur = (0..deps.len()).find(|&i| stuck(i));
    while let Some(i) = cur {
        if let Some(at) = seen_at[i] {
            let mut cycle = path.split_off(at);
            if let Some(min_pos) = (0..cycle.len()).min_by_key(|&p| cycle[p]) {
                cycle.rotate_left(min_pos);
            }
            return cycle;
        }
        seen_at[i] = Some(path.len());
        path.push(i);
        cur = deps[i].iter().copied().find(|&d| stuck(d));
    }
    // Unreachable when called after a failed sort; an empty cycle still reads sensibly.
    path
}

/// Up to three of `candidates` that look like a mistyped `target` (case-insensitive edit
/// distance of at most a third of its length, at least 1), closest first.
pub fn close_names<'a>(target: &str, candidates: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let target_lower = target.to_lowercase();
    let limit = (target.chars().count() / 3).max(1);
    let mut scored: Vec<(usize, &str)> = candidates
        .into_iter()
        .filter(|c| *c != target)
        .filter_map(|c| {
            let d = edit_distance(&target_lower, &c.to_lowercase());
            (d <= limit).then_some((d, c))
        })
        .collect();
    scored.sort_unstable();
    scored.dedup();
    scored
        .into_iter()
        .take(MAX_SUGGESTIONS)
        .map(|(_, c)| c.to_string())
        .collect()
}

/// Edit distance over chars where swapping two neighbours counts as one edit (optimal
/// string alignment), so `scuot` is one edit from `scout`.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let width = b.len() + 1;
    // d[i * width + j]: distance between a[..i] and b[..j].
    let mut d: Vec<usize> = vec![0; (a.len() + 1) * width];
    for (i, row) in d.chunks_mut(width).enumerate() {
        row[0] = i;
    }
    for (j, cell) in d.iter_mut().take(width).enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[(i - 1) * width + j] + 1)
                .min(d[i * width + j - 1] + 1)
                .min(d[(i - 1) * width + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[(i - 2) * width + j - 2] + 1);
            }
            d[i * width + j] = best;
        }
    }
    d[a.len() * width + b.len()]
}

#[cfg(test)]
mod tests;
