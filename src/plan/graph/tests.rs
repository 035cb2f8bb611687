//! Tests for [`super`]: plan validation and cycle reports.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

/// `("c", "a b")` → `("c", ["a", "b"])`.
fn plan(agents: &[(&str, &str)]) -> Vec<(String, Vec<String>)> {
    agents
        .iter()
        .map(|(name, deps)| {
            let deps = deps.split_whitespace().map(String::from).collect();
            (name.to_string(), deps)
        })
        .collect()
}

fn none(_: &str) -> bool {
    false
}

fn err(agents: &[(&str, &str)], exists: impl Fn(&str) -> bool) -> String {
    validate(&plan(agents), exists).unwrap_err().to_string()
}

#[test]
fn orders_dependencies_first_and_keeps_input_order_when_it_can() {
    let diamond = [("a", ""), ("b", ""), ("c", "a b"), ("d", "c")];
    assert_eq!(validate(&plan(&diamond), none).unwrap(), [0, 1, 2, 3]);

    let reversed = [("d", "c"), ("c", "a b"), ("a", ""), ("b", "")];
    assert_eq!(validate(&plan(&reversed), none).unwrap(), [2, 3, 1, 0]);

    // Independent agents keep their order; a dependent waits only for what it needs.
    let mixed = [("z", "y"), ("x", ""), ("y", ""), ("w", "")];
    assert_eq!(validate(&plan(&mixed), none).unwrap(), [1, 2, 0, 3]);

    assert_eq!(validate(&[], none).unwrap(), Vec::<usize>::new());
}

#[test]
fn existing_agents_may_be_depended_on_and_repeats_are_harmless() {
    let live = |n: &str| matches!(n, "scout-1" | "scout-2");
    let agents = [
        ("planner", "scout-1 scout-2 scout-1"),
        ("builder", "planner planner"),
    ];
    assert_eq!(validate(&plan(&agents), live).unwrap(), [0, 1]);
}

#[test]
fn duplicate_and_taken_names_are_refused() {
    assert_eq!(
        err(&[("a", ""), ("b", ""), ("a", "b")], none),
        "the name `a` is given to more than one agent in this plan; give each agent its own name"
    );
    assert_eq!(
        err(&[("a", ""), ("b", "a")], |n| n == "b"),
        "an agent named `b` already exists; choose another name, or delete_agent `b` first"
    );
}

#[test]
fn unknown_dependencies_name_the_agent_and_suggest_close_names() {
    let live = |n: &str| n == "reviewer";
    assert_eq!(
        err(&[("scout", ""), ("planner", "scuot")], live),
        "`planner` depends on `scuot`, which is neither an existing agent nor in this plan \
         (did you mean `scout`?); fix the name in its depends_on, or add `scuot` to the plan"
    );
    assert_eq!(
        err(
            &[("build-1", ""), ("build-2", ""), ("test", "Build-3")],
            none
        ),
        "`test` depends on `Build-3`, which is neither an existing agent nor in this plan \
         (did you mean one of `build-1`, `build-2`?); fix the name in its depends_on, or add \
         `Build-3` to the plan"
    );
    let e = validate(&plan(&[("a", "nothing-like-it")]), live).unwrap_err();
    assert_eq!(
        e,
        PlanError::UnknownDependency {
            agent: "a".into(),
            dependency: "nothing-like-it".into(),
            close: vec![]
        }
    );
    assert!(!e.to_string().contains("did you mean"), "{e}");
}

#[test]
fn self_dependency_is_refused() {
    assert_eq!(
        err(&[("a", ""), ("b", "a b")], none),
        "`b` depends on itself; remove `b` from its depends_on"
    );
}

#[test]
fn cycles_are_spelled_out_in_order_from_the_earliest_agent() {
    let expected = "dependency cycle: a -> b -> c -> a (each agent depends on the next); \
                    remove one of these depends_on entries";
    assert_eq!(err(&[("a", "b"), ("b", "c"), ("c", "a")], none), expected);
    // Same loop given in another order: reported from the earliest agent of the call.
    assert_eq!(
        err(&[("b", "c"), ("c", "a"), ("a", "b")], none),
        "dependency cycle: b -> c -> a -> b (each agent depends on the next); \
         remove one of these depends_on entries"
    );
    // Agents outside the loop (before it, after it, hanging off it) are not part of it.
    let agents = [
        ("root", ""),
        ("x", "a"),
        ("a", "root b"),
        ("b", "a"),
        ("y", "x"),
    ];
    assert_eq!(
        validate(&plan(&agents), none).unwrap_err(),
        PlanError::Cycle {
            cycle: vec!["a".into(), "b".into()]
        }
    );
    assert!(err(&agents, none).starts_with("dependency cycle: a -> b -> a ("));
}

#[test]
fn a_long_chain_validates_quickly() {
    let agents: Vec<(String, Vec<String>)> = (0..5_000)
        .map(|i| {
            let deps = if i == 0 {
                vec![]
            } else {
                vec![format!("n{}", i - 1)]
            };
            (format!("n{i}"), deps)
        })
        .collect();
    let order = validate(&agents, none).unwrap();
    assert_eq!(order, (0..5_000).collect::<Vec<_>>());

    // Closing the chain into one big loop is reported whole.
    let mut looped = agents;
    looped[0].1.push("n4999".into());
    let PlanError::Cycle { cycle } = validate(&looped, none).unwrap_err() else {
        panic!("expected a cycle");
    };
    assert_eq!(cycle.len(), 5_000);
    assert_eq!((cycle[0].as_str(), cycle[1].as_str()), ("n0", "n4999"));
}

#[test]
fn close_names_are_case_insensitive_bounded_and_sorted() {
    let names = ["scout", "Scout", "scouts", "planner", "sc"];
    assert_eq!(close_names("scout", names), ["Scout", "scouts"]);
    assert_eq!(close_names("plannr", names), ["planner"]);
    assert!(close_names("x", ["y", "abc"]).len() == 1);
    assert!(close_names("reviewer", names).is_empty());
}

#[test]
fn edit_distance_counts_swaps_as_one() {
    assert_eq!(edit_distance("scout", "scout"), 0);
    assert_eq!(edit_distance("scuot", "scout"), 1);
    assert_eq!(edit_distance("", "abc"), 3);
    assert_eq!(edit_distance("kitten", "sitting"), 3);
    assert_eq!(edit_distance("été", "ete"), 2);
}
