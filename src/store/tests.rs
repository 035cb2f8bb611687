//! Store and replay tests: round trip, paging and loading one agent on both backends
//! ([`Backend::each`]: SQLite and a throwaway PostgreSQL), SQLite's locking and
//! corruption, and rebuilding an agent from its log.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use serde_json::json;

use super::event::{Event, StoredSettings};
use super::{AgentLog, Store, StoreError};
use crate::agent::output::CommandStatus;
use crate::agent::state::AgentStatus;
use crate::model::{Block, Message, Role, StopReason, Usage};
use crate::registry::replay::replay;

pub(super) fn settings() -> StoredSettings {
    StoredSettings {
        name: "a".into(),
        role: None,
        model: "anthropic:claude-sonnet-4-5".into(),
        extra_prompt: Some("extra".into()),
        tools: vec![crate::tools::Tool::ReadFile],
        workdir: PathBuf::from("/tmp"),
        max_steps: 5,
        max_cost_usd: None,
        max_tokens: Some(1000),
        depends_on: Vec::new(),
        deferred_task: None,
        deferred_schema: None,
        retries: 0,
        sandbox: None,
        worktree: None,
    }
}

fn model_calling(id: &str) -> Event {
    Event::Model {
        message: Message {
            role: Role::Assistant,
            content: vec![Block::ToolUse {
                id: id.into(),
                name: "read_file".into(),
                input: json!({"path": "x"}),
            }],
        },
        usage: Usage {
            input_tokens: 10,
            output_tokens: 2,
            ..Default::default()
        },
        stop_reason: StopReason::ToolUse,
        cost_usd: None,
    }
}

pub(super) fn command(index: u32, task: &str) -> Event {
    Event::Command {
        index,
        task: task.into(),
        interrupt: false,
        output_schema: None,
    }
}

/// A log ending mid-command: command 1 done, command 2 running with one tool
/// finished and one started, command 3 queued.
fn log_events() -> Vec<Event> {
    vec![
        Event::Created {
            settings: Box::new(settings()),
        },
        command(1, "one"),
        Event::Started {
            index: 1,
            trace_id: None,
        },
        Event::Model {
            message: Message {
                role: Role::Assistant,
                content: vec![Block::Text {
                    text: "answer one".into(),
                }],
            },
            usage: Usage {
                input_tokens: 5,
                output_tokens: 1,
                ..Default::default()
            },
            stop_reason: StopReason::EndTurn,
            cost_usd: None,
        },
        Event::Finished {
            index: 1,
            status: CommandStatus::Done,
            error: None,
            failure: None,
        },
        command(2, "two"),
        command(3, "three"),
        Event::Started {
            index: 2,
            trace_id: None,
        },
        model_calling("t1"),
        Event::ToolCall {
            id: "t1".into(),
            name: "read_file".into(),
            input: json!({"path": "x"}),
        },
        Event::ToolResult {
            id: "t1".into(),
            name: "read_file".into(),
            content: "x body".into(),
            is_error: false,
            files_read: vec!["x".into()],
            files_written: vec![],
        },
        model_calling("t2"),
        Event::ToolCall {
            id: "t2".into(),
            name: "read_file".into(),
            input: json!({"path": "x"}),
        },
    ]
}

/// Where a test's store lives; opening it again gives the same log.
pub(super) enum Backend {
    Sqlite(tempfile::TempDir),
    Postgres(String),
}

impl Backend {
    /// A fresh store of each kind: the tests that take it run on both.
    pub(super) fn each() -> [Backend; 2] {
        [
            Backend::Sqlite(tempfile::tempdir().unwrap()),
            Backend::Postgres(super::test_postgres::database()),
        ]
    }

    pub(super) async fn open(&self) -> (Store, Vec<AgentLog>) {
        match self {
            Backend::Sqlite(dir) => Store::open(dir.path()).unwrap(),
            Backend::Postgres(url) => Store::open_postgres(url, pg_options("n1")).await.unwrap(),
        }
    }
}

pub(super) fn pg_options(node: &str) -> super::PgOptions {
    super::PgOptions {
        node: node.into(),
        lease: std::time::Duration::from_secs(15),
    }
}

fn append_all(store: &Store, agent: &str, events: Vec<Event>) -> Vec<super::Ack> {
    events
        .into_iter()
        .enumerate()
        .filter_map(|(i, e)| store.append(agent, i as u64 + 1, e))
        .collect()
}

#[tokio::test]
async fn events_round_trip_through_the_store_and_replay_mid_command() {
    for backend in Backend::each() {
        round_trip_and_replay(&backend).await;
    }
}

async fn round_trip_and_replay(backend: &Backend) {
    {
        let (store, logs) = backend.open().await;
        assert!(logs.is_empty());
        for ack in append_all(&store, "ag-1", log_events()) {
            ack.await.unwrap().unwrap();
        }
        store.close().await;
    }
    let (store, logs) = backend.open().await;
    assert_eq!(logs.len(), 1);
    let events: Vec<Event> = logs[0].events.iter().map(|e| e.event.clone()).collect();
    assert_eq!(events, log_events());

    let r = replay(logs.into_iter().next().unwrap()).unwrap();
    assert_eq!(r.settings, settings());
    assert_eq!(r.status, AgentStatus::Running);
    assert_eq!(r.in_progress, Some(2));
    assert_eq!(r.queued.iter().map(|c| c.index).collect::<Vec<_>>(), [3]);
    assert_eq!(
        r.interrupted_tools,
        [("t2".to_string(), "read_file".to_string())]
    );
    assert_eq!((r.steps, r.tool_calls), (3, 2));
    assert_eq!(r.tokens.input_tokens, 25);
    assert_eq!(r.next_seq, 14);
    assert_eq!(r.outputs.len(), 3);
    assert_eq!(r.outputs[0].status, CommandStatus::Done);
    assert_eq!(r.outputs[0].text, "answer one");
    assert_eq!(r.outputs[1].status, CommandStatus::Running);
    assert!(r.outputs[1].files_read.contains("x"));
    assert_eq!(r.outputs[2].status, CommandStatus::Queued);
    // "one", "answer one", "two", call t1, result t1, call t2 (unanswered).
    let roles: Vec<Role> = r.conversation.messages().iter().map(|m| m.role).collect();
    assert_eq!(
        roles,
        [
            Role::User,
            Role::Assistant,
            Role::User,
            Role::Assistant,
            Role::User,
            Role::Assistant
        ]
    );
    assert_eq!(r.conversation.unanswered_tool_calls().len(), 1);
    store.close().await;
}

#[tokio::test]
async fn a_second_server_on_the_same_store_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (first, _) = Store::open(dir.path()).unwrap();
    let err = Store::open(dir.path()).err().unwrap();
    assert!(matches!(err, StoreError::InUse { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains(&std::process::id().to_string()), "{msg}");
    assert!(msg.contains("--data-dir"), "{msg}");
    first.close().await;
    drop(first);
    assert!(Store::open(dir.path()).is_ok());
}

#[test]
fn a_corrupt_store_is_named_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join(super::DB_FILE);
    let garbage = b"this is not a database, not at all; ".repeat(200);
    std::fs::write(&db, &garbage).unwrap();
    let err = Store::open(dir.path()).err().unwrap();
    let msg = err.to_string();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{msg}");
    assert!(msg.contains(&db.display().to_string()), "{msg}");
    assert!(msg.contains("Move it aside"), "{msg}");
    assert_eq!(
        std::fs::read(&db).unwrap(),
        garbage,
        "the file must not be touched"
    );
}

#[tokio::test]
async fn an_unreadable_event_is_an_error_not_a_silent_gap() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, _) = Store::open(dir.path()).unwrap();
        for ack in append_all(&store, "ag-1", log_events()) {
            ack.await.unwrap().unwrap();
        }
        store.close().await;
    }
    let conn = rusqlite::Connection::open(dir.path().join(super::DB_FILE)).unwrap();
    conn.execute(
        "UPDATE events SET data = '{\"kind\":\"bogus\"}' WHERE seq = 3",
        [],
    )
    .unwrap();
    drop(conn);
    let msg = Store::open(dir.path()).err().unwrap().to_string();
    assert!(msg.contains("event 3 of agent ag-1"), "{msg}");
}

#[tokio::test]
async fn events_page_with_after_limit_and_kinds_and_delete_removes_them() {
    for backend in Backend::each() {
        let (store, _) = backend.open().await;
        page_and_delete(&store).await;
    }
    page_and_delete(&Store::in_memory().unwrap()).await;
}

#[tokio::test]
async fn one_agents_whole_log_loads_after_earlier_writes() {
    for backend in Backend::each() {
        let (store, _) = backend.open().await;
        assert!(store.load_agent("ag-1").await.unwrap().is_none());
        // Not awaited: the load comes after them anyway.
        append_all(&store, "ag-1", log_events());
        append_all(&store, "ag-2", log_events()[..3].to_vec());
        let log = store.load_agent("ag-1").await.unwrap().unwrap();
        assert_eq!(log.agent_id, "ag-1");
        let events: Vec<Event> = log.events.iter().map(|e| e.event.clone()).collect();
        assert_eq!(events, log_events());
        assert_eq!(
            store
                .load_agent("ag-2")
                .await
                .unwrap()
                .unwrap()
                .events
                .len(),
            3
        );
        store.close().await;
    }
}

async fn page_and_delete(store: &Store) {
    append_all(store, "ag-1", log_events());
    append_all(store, "ag-2", log_events());
    let page = store.events("ag-1", 0, 5, None).await.unwrap();
    assert_eq!(
        page.events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    assert!(page.more);
    let page = store.events("ag-1", 10, 5, None).await.unwrap();
    assert_eq!(
        page.events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [11, 12, 13]
    );
    assert!(!page.more);
    let kinds = Some(vec!["command".to_string(), "finished".to_string()]);
    let page = store.events("ag-1", 0, 2, kinds.clone()).await.unwrap();
    assert_eq!(
        page.events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [2, 5]
    );
    assert!(page.more);
    let page = store.events("ag-1", 5, 10, kinds).await.unwrap();
    assert_eq!(
        page.events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [6, 7]
    );
    assert!(!page.more);

    store
        .delete_agent("ag-1", crate::fleet::budget::Spend::default())
        .await
        .unwrap();
    assert!(
        store
            .events("ag-1", 0, 50, None)
            .await
            .unwrap()
            .events
            .is_empty()
    );
    assert_eq!(
        store
            .events("ag-2", 0, 50, None)
            .await
            .unwrap()
            .events
            .len(),
        13
    );
}

#[test]
fn a_log_without_creation_is_not_restored() {
    let log = AgentLog {
        agent_id: "x".into(),
        events: vec![super::StoredEvent {
            seq: 1,
            at_ms: 0,
            event: command(1, "orphan"),
        }],
    };
    assert!(replay(log).is_none());
}

#[test]
fn an_interrupt_recorded_before_the_crash_is_honoured_by_replay() {
    let events = vec![
        Event::Created {
            settings: Box::new(settings()),
        },
        command(1, "long"),
        Event::Started {
            index: 1,
            trace_id: None,
        },
        model_calling("t1"),
        Event::Command {
            index: 2,
            task: "instead".into(),
            interrupt: true,
            output_schema: None,
        },
    ];
    let r = replay(log_of(events)).unwrap();
    assert_eq!(r.in_progress, Some(1));
    assert!(r.in_progress_interrupted);
    assert_eq!(r.in_progress_steps, 1);
    assert_eq!(r.queued.front().map(|c| c.index), Some(2));
}

/// A log as the store gives it back, numbered from 1.
fn log_of(events: Vec<Event>) -> AgentLog {
    AgentLog {
        agent_id: "ag-1".into(),
        events: events
            .into_iter()
            .enumerate()
            .map(|(i, event)| super::StoredEvent {
                seq: i as u64 + 1,
                at_ms: 1_000,
                event,
            })
            .collect(),
    }
}

#[test]
fn an_open_question_comes_back_needs_input_and_an_answer_not_taken_comes_back_with_it() {
    let asked = || {
        vec![
            Event::Created {
                settings: Box::new(settings()),
            },
            command(1, "decide"),
            Event::Started {
                index: 1,
                trace_id: None,
            },
            model_calling("ask-1"),
            Event::Asked {
                index: 1,
                id: "ask-1".into(),
                question: "v1 or v2?".into(),
                options: vec!["v1".into(), "v2".into()],
            },
        ]
    };
    let open = replay(log_of(asked())).unwrap();
    assert_eq!(open.status, AgentStatus::NeedsInput);
    assert_eq!(open.in_progress, Some(1));
    let q = open.question.as_ref().unwrap();
    assert_eq!(
        (q.index, q.call_id.as_str(), q.question.as_str()),
        (1, "ask-1", "v1 or v2?")
    );
    assert_eq!(q.options, ["v1", "v2"]);
    assert!(open.answer.is_none());
    assert!(
        open.interrupted_tools.is_empty(),
        "a question is not a tool cut short"
    );
    assert_eq!(open.tool_calls, 1);

    // Answered (journaled) but the worker had not taken it: it goes on with it.
    let mut events = asked();
    events.push(Event::Answered {
        index: 1,
        id: "ask-1".into(),
        answer: "v2".into(),
        by: crate::status::Answerer::Orchestrator,
    });
    let answered = replay(log_of(events.clone())).unwrap();
    assert_eq!(answered.status, AgentStatus::Running);
    assert_eq!(
        answered.answer.as_ref().map(|a| a.text.as_str()),
        Some("v2")
    );

    // The answer reached the model: nothing is open any more.
    events.push(Event::ToolResult {
        id: "ask-1".into(),
        name: "ask_orchestrator".into(),
        content: "v2".into(),
        is_error: false,
        files_read: Vec::new(),
        files_written: Vec::new(),
    });
    let went_on = replay(log_of(events.clone())).unwrap();
    assert!(went_on.question.is_none() && went_on.answer.is_none());
    assert_eq!(went_on.status, AgentStatus::Running);

    // A CLI session shows its ask as a tool call too, before or after the question:
    // it counts once.
    let cli_call = || Event::ToolCall {
        id: "ask-1".into(),
        name: "mcp__flotilla__ask_orchestrator".into(),
        input: json!({"question": "v1 or v2?"}),
    };
    let mut after = asked();
    after.push(cli_call());
    let mut before = asked();
    before.insert(before.len() - 1, cli_call());
    for events in [after, before] {
        assert_eq!(replay(log_of(events)).unwrap().tool_calls, 1);
    }

    // The command ended while asking (interrupted): no question survives it.
    let mut ended = asked();
    ended.push(Event::Finished {
        index: 1,
        status: CommandStatus::Cancelled,
        error: None,
        failure: None,
    });
    let r = replay(log_of(ended)).unwrap();
    assert!(r.question.is_none());
    assert_eq!(r.status, AgentStatus::Cancelled);
}

#[tokio::test]
async fn deleted_agents_spend_stays_with_the_fleet_across_restarts() {
    use crate::fleet::budget::Spend;
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, _) = Store::open(dir.path()).unwrap();
        assert_eq!(store.retired_spend(), Spend::default());
        for (id, cost, tokens) in [("ag-1", 0.25, 1000), ("ag-2", 0.5, 24)] {
            let ack = store.append(
                id,
                1,
                Event::Created {
                    settings: Box::new(settings()),
                },
            );
            ack.unwrap().await.unwrap().unwrap();
            store
                .delete_agent(
                    id,
                    Spend {
                        cost_usd: cost,
                        tokens,
                    },
                )
                .await
                .unwrap();
        }
        store.close().await;
    }
    let (store, logs) = Store::open(dir.path()).unwrap();
    assert!(logs.is_empty());
    let retired = store.retired_spend();
    assert!((retired.cost_usd - 0.75).abs() < 1e-9, "{retired:?}");
    assert_eq!(retired.tokens, 1024);
}

#[test]
fn started_events_from_before_traces_still_load_and_untraced_ones_stay_as_they_were() {
    let old: Event = serde_json::from_str(r#"{"kind":"started","index":3}"#).unwrap();
    assert_eq!(
        old,
        Event::Started {
            index: 3,
            trace_id: None
        }
    );
    assert_eq!(
        serde_json::to_string(&old).unwrap(),
        r#"{"kind":"started","index":3}"#
    );
    let traced = Event::Started {
        index: 3,
        trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
    };
    assert!(
        traced
            .summary()
            .ends_with("(trace 4bf92f3577b34da6a3ce929d0e0e4736)")
    );
}

#[test]
fn finished_events_from_before_failure_kinds_still_load() {
    let old: Event = serde_json::from_str(
        r#"{"kind":"finished","index":2,"status":"failed","error":"budget: spent"}"#,
    )
    .unwrap();
    assert_eq!(
        old,
        Event::Finished {
            index: 2,
            status: CommandStatus::Failed,
            error: Some("budget: spent".into()),
            failure: None,
        }
    );
    let typed = Event::Finished {
        index: 2,
        status: CommandStatus::Failed,
        error: Some("stalled: no progress".into()),
        failure: Some(crate::failure::FailureKind::Stalled),
    };
    let line = serde_json::to_string(&typed).unwrap();
    assert!(line.ends_with(r#""failure":"stalled"}"#), "{line}");
    assert_eq!(serde_json::from_str::<Event>(&line).unwrap(), typed);
}
