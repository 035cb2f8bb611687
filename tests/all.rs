//! The one integration-test binary: every suite drives the real `flotilla` binary
//! through one shared harness ([`common`]), compiled once.
//!
//! Suites run in one process, two or more at a time: a test never changes
//! process-wide state (environment variables, the current directory, global
//! counters); what differs between tests goes to the server it starts
//! ([`common::Builder::env`]) or into its own temp directory.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

mod suites {
    mod asking;
    mod bad_input;
    mod browser;
    mod budget;
    mod cli_agents;
    mod cli_asking;
    mod cli_fake;
    mod cli_gemini;
    mod cli_mock;
    mod cluster;
    mod cluster_dashboard;
    mod cluster_remote;
    mod commands;
    mod dashboard;
    mod delete;
    mod faults;
    mod fleet;
    mod front_door;
    mod guard_rails;
    mod harness;
    mod hostile;
    mod http;
    mod jail;
    mod listing;
    mod mock_streams;
    mod model_contract;
    mod output;
    mod pause;
    mod plans;
    mod postgres_store;
    mod providers;
    mod redaction;
    mod restart;
    mod sandbox;
    mod tasks;
    mod tool_access;
    mod tools_list;
    mod traces;
    mod wait;
    mod wire;
    mod worktree_safety;
    mod worktrees;
}
