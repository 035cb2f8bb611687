//! The messages are contract: each is checked against today's literal text.

#![allow(clippy::unwrap_used)]

use super::*;

fn fleet_cost() -> Failure {
    Failure::Budget(BudgetExhausted {
        owner: Spender::Fleet,
        cap: Cap::CostUsd {
            cap: 1.0,
            spent: 1.06,
        },
    })
}

#[test]
fn budget_messages_are_todays() {
    assert_eq!(
        fleet_cost().to_string(),
        "budget: the fleet's max_cost_usd cap of $1 is reached ($1.0600 spent). Raise it with --max-cost-usd / FLOTILLA_MAX_COST_USD / [limits] max_cost_usd and restart the server (spend so far is kept), or wait for a person to do so."
    );
    let agent = BudgetExhausted {
        owner: Spender::Agent("a".into()),
        cap: Cap::Tokens {
            cap: 100,
            spent: 120,
        },
    };
    assert_eq!(
        Failure::from(agent).to_string(),
        "budget: agent `a`'s max_tokens cap of 100 tokens is reached (120 input + output tokens used). An agent's caps are fixed when it is created: to go on, create a new agent with a higher max_tokens (this agent's files stay)."
    );
}

#[test]
fn worker_messages_are_todays() {
    let stalled = Failure::Stalled {
        limit_s: 3,
        waiting_on: "the tool run_command".into(),
    };
    assert_eq!(
        stalled.to_string(),
        "stalled: no progress for 3s while waiting on the tool run_command; it was stopped (and its processes killed). Command the agent again to retry, or raise --stall-timeout-s / [limits] stall_timeout_s"
    );
    assert_eq!(
        Failure::MaxSteps { max_steps: 4 }.to_string(),
        "stopped after max_steps (4) model calls without a final answer; command the agent to continue, or create it with a higher max_steps"
    );
    let schema = Failure::OutputSchema {
        max_steps: 4,
        last: "no JSON".into(),
    };
    assert_eq!(
        schema.to_string(),
        "the answer never satisfied the output_schema within max_steps (4) model calls; last problem: no JSON"
    );
    assert_eq!(
        Failure::ModelCall("400 bad".into()).to_string(),
        "model call failed: 400 bad"
    );
    let store = Failure::Store {
        tool: "write_file".into(),
        error: "disk full".into(),
    };
    assert_eq!(
        store.to_string(),
        "the tool call write_file was not run because it could not be saved (disk full); the server may be stopping"
    );
    assert_eq!(
        Failure::Panicked.to_string(),
        "internal error: the agent's worker panicked (see the server log)"
    );
    let escalated = Failure::Escalated {
        attempts: 3,
        last: Box::new(Failure::MaxSteps { max_steps: 4 }),
    };
    assert!(
        escalated
            .to_string()
            .starts_with("escalated after 3 attempts: stopped after max_steps (4)"),
        "{escalated}"
    );
}

#[test]
fn dependency_messages_are_todays() {
    let dep = |fate| Failure::Dependency {
        name: "a".into(),
        fate,
    };
    assert_eq!(
        dep(DependencyFate::Deleted).to_string(),
        "cancelled before it started: its dependency `a` was deleted"
    );
    assert_eq!(
        dep(DependencyFate::Failed(Some("budget: x".into()))).to_string(),
        "cancelled before it started: its dependency `a` failed: budget: x"
    );
    assert_eq!(
        dep(DependencyFate::Cancelled(None)).to_string(),
        "cancelled before it started: its dependency `a` was cancelled"
    );
}

#[test]
fn kinds_are_short_stable_words() {
    assert_eq!(fleet_cost().kind().as_str(), "budget");
    let stalled = Failure::Stalled {
        limit_s: 1,
        waiting_on: String::new(),
    };
    assert_eq!(stalled.kind().as_str(), "stalled");
    let escalated = Failure::Escalated {
        attempts: 2,
        last: Box::new(stalled),
    };
    assert_eq!(escalated.kind().as_str(), "escalated");
    assert_eq!(
        Failure::ModelCall(String::new()).kind().as_str(),
        "model_call_failed"
    );
    assert_eq!(Failure::Panicked.kind().as_str(), "internal");
    // The store's spelling is the same word.
    for kind in [FailureKind::MaxSteps, FailureKind::WorkspaceMissing] {
        let json = serde_json::to_value(kind).unwrap();
        assert_eq!(json, kind.as_str());
    }
    let unknown: FailureKind = serde_json::from_str("\"something_new\"").unwrap();
    assert_eq!(unknown.as_str(), "_OTHER");
}

#[test]
fn only_failures_that_could_go_differently_are_retried() {
    assert!(!fleet_cost().retryable());
    let store = Failure::Store {
        tool: "t".into(),
        error: "e".into(),
    };
    assert!(!store.retryable());
    assert!(Failure::MaxSteps { max_steps: 1 }.retryable());
    assert!(Failure::ModelCall("x".into()).retryable());
    assert!(Failure::Panicked.retryable());
    let stalled = Failure::Stalled {
        limit_s: 1,
        waiting_on: String::new(),
    };
    assert!(stalled.retryable());
}
