//! PostgreSQL-only store rules, on a throwaway cluster: fencing by lease token, a
//! takeover waiting for a writer's commit, NOTIFY on commit, the fleet's spend charged
//! atomically from two nodes, concurrent first opens, and URLs without passwords.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;

use super::redact;
use crate::pricing::Spend;
use crate::store::Store;
use crate::store::event::Event;
use crate::store::test_postgres::database;
use crate::store::tests::{command, pg_options, settings};

fn created() -> Event {
    Event::Created {
        settings: Box::new(settings()),
    }
}

/// A plain connection of the test's own (another node, or the cluster layer).
async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
}

/// A connection LISTENing on the events channel; its notifications' payloads.
async fn listen(url: &str) -> (tokio_postgres::Client, mpsc::UnboundedReceiver<String>) {
    let (client, mut conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let mut messages = futures::stream::poll_fn(move |cx| conn.poll_message(cx));
    tokio::spawn(async move {
        while let Some(Ok(msg)) = messages.next().await {
            if let tokio_postgres::AsyncMessage::Notification(n) = msg {
                assert_eq!(n.channel(), super::CHANNEL);
                let _ = tx.send(n.payload().to_string());
            }
        }
    });
    client
        .batch_execute(&format!("LISTEN {}", super::CHANNEL))
        .await
        .unwrap();
    (client, rx)
}

async fn open(url: &str, node: &str) -> Store {
    Store::open_postgres(url, pg_options(node)).await.unwrap().0
}

async fn create(store: &Store, agent: &str) {
    store
        .append(agent, 1, created())
        .unwrap()
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn an_append_with_a_stale_lease_is_refused_reported_once_and_the_rest_commit() {
    let url = database();
    let store = open(&url, "n1").await;
    let shared = store.shared().unwrap().clone();
    let mut fenced = shared.take_fenced().unwrap();
    assert!(shared.take_fenced().is_none(), "the receiver is taken once");
    for agent in ["ag-1", "ag-2", "ag-3"] {
        create(&store, agent).await;
        assert_eq!(shared.leases.get(agent).map(|t| *t), Some(1));
    }
    let other = connect(&url).await;
    // ag-1 taken over by n2; ag-3's token moved on (this node's copy is stale).
    other
        .batch_execute(
            "UPDATE leases SET node = 'n2', token = token + 1 WHERE agent_id = 'ag-1';
             UPDATE leases SET token = token + 1 WHERE agent_id = 'ag-3'",
        )
        .await
        .unwrap();
    let acks: Vec<_> = ["ag-1", "ag-2", "ag-3"]
        .iter()
        .map(|a| store.append(a, 2, command(1, "go")).unwrap())
        .collect();
    let results: Vec<_> = futures::future::join_all(acks).await;
    let err = results[0].clone().unwrap().unwrap_err();
    assert_eq!(
        err,
        "node n1 no longer holds agent ag-1's lease (another node took it over); this node stopped it"
    );
    results[1].clone().unwrap().unwrap();
    assert!(results[2].clone().unwrap().is_err());
    let mut reported = vec![fenced.recv().await.unwrap(), fenced.recv().await.unwrap()];
    reported.sort();
    assert_eq!(reported, ["ag-1", "ag-3"]);
    assert!(!shared.leases.contains_key("ag-1"));
    assert!(!shared.leases.contains_key("ag-3"));
    // Refused again, but reported only once.
    let again = store.append("ag-1", 3, command(2, "again")).unwrap();
    assert!(again.await.unwrap().is_err());
    let len = |log: Option<crate::store::AgentLog>| log.unwrap().events.len();
    assert_eq!(len(store.load_agent("ag-1").await.unwrap()), 1);
    assert_eq!(len(store.load_agent("ag-2").await.unwrap()), 2);
    assert_eq!(len(store.load_agent("ag-3").await.unwrap()), 1);
    assert!(fenced.try_recv().is_err(), "ag-1 reported twice");
    let node: String = other
        .query_one(
            "SELECT node FROM events WHERE agent_id = 'ag-2' AND seq = 2",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(node, "n1");
    store.close().await;
}

#[tokio::test]
async fn a_restarted_node_keeps_its_leases_and_another_node_is_fenced_out() {
    let url = database();
    let first = open(&url, "n1").await;
    create(&first, "ag-1").await;
    first.close().await;
    drop(first);
    let again = open(&url, "n1").await;
    assert_eq!(
        again.shared().unwrap().leases.get("ag-1").map(|t| *t),
        Some(1)
    );
    let ack = again.append("ag-1", 2, command(1, "go")).unwrap();
    ack.await.unwrap().unwrap();
    let stranger = open(&url, "n2").await;
    assert!(stranger.shared().unwrap().leases.is_empty());
    let ack = stranger.append("ag-1", 3, command(2, "no")).unwrap();
    assert!(
        ack.await
            .unwrap()
            .unwrap_err()
            .contains("node n2 no longer holds")
    );
    let log = stranger.load_agent("ag-1").await.unwrap().unwrap();
    assert_eq!(log.events.len(), 2);
}

#[tokio::test]
async fn a_takeover_waits_for_the_writers_commit_and_then_sees_its_events() {
    let url = database();
    let store = open(&url, "n1").await;
    create(&store, "ag-1").await;
    store
        .charge(Spend::default())
        .unwrap()
        .await
        .unwrap()
        .unwrap();
    // Hold fleet_spend's row: the writer's next batch (an append, then a charge)
    // takes ag-1's lease FOR SHARE, then waits here with its transaction open.
    let mut holder = connect(&url).await;
    let hold = holder.transaction().await.unwrap();
    hold.execute("SELECT 1 FROM fleet_spend FOR UPDATE", &[])
        .await
        .unwrap();
    let ack = store.append("ag-1", 2, command(1, "go")).unwrap();
    let charged = store.charge(Spend {
        cost_usd: 0.5,
        tokens: 1,
    });
    let watcher = connect(&url).await;
    until(async || waiting_on_locks(&watcher).await == 1).await;
    let taker = connect(&url).await;
    let takeover = tokio::spawn(async move {
        taker
            .execute(
                "UPDATE leases SET node = 'n2', token = token + 1 WHERE agent_id = 'ag-1'",
                &[],
            )
            .await
            .unwrap();
        let rows = taker
            .query(
                "SELECT seq FROM events WHERE agent_id = 'ag-1' ORDER BY seq",
                &[],
            )
            .await
            .unwrap();
        rows.iter().map(|r| r.get::<_, i64>(0)).collect::<Vec<_>>()
    });
    until(async || waiting_on_locks(&watcher).await == 2).await;
    assert!(!takeover.is_finished(), "the takeover did not wait");
    hold.commit().await.unwrap();
    ack.await.unwrap().unwrap();
    charged.unwrap().await.unwrap().unwrap();
    assert_eq!(
        takeover.await.unwrap(),
        [1, 2],
        "the new owner saw every event"
    );
    // And from now on this node is fenced out.
    let late = store.append("ag-1", 3, command(2, "late")).unwrap();
    assert!(late.await.unwrap().is_err());
    drop(holder);
}

/// Waits (polling, up to 30 s) until `check` holds.
async fn until(mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Backends of this database waiting for a lock.
async fn waiting_on_locks(client: &tokio_postgres::Client) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn every_agent_written_or_deleted_is_notified_on_commit() {
    let url = database();
    let (_client, mut notes) = listen(&url).await;
    let store = open(&url, "n1").await;
    create(&store, "ag-1").await;
    assert_eq!(notes.recv().await.unwrap(), "ag-1");
    // A batch of several events for two agents: one notification per agent.
    let acks: Vec<_> = [("ag-1", 2), ("ag-1", 3), ("ag-2", 1)]
        .into_iter()
        .filter_map(|(a, seq)| {
            let event = if a == "ag-2" {
                created()
            } else {
                command(seq as u32, "x")
            };
            store.append(a, seq, event)
        })
        .collect();
    for ack in acks {
        ack.await.unwrap().unwrap();
    }
    let mut seen = Vec::new();
    while seen.len() < 2 || !seen.contains(&"ag-2".to_string()) {
        seen.push(notes.recv().await.unwrap());
    }
    create(&store, "ag-9").await;
    while seen.last().map(String::as_str) != Some("ag-9") {
        seen.push(notes.recv().await.unwrap());
    }
    // ag-1 and ag-2, once per batch that wrote them (ag-1's two events may or may
    // not have shared one), then the marker.
    assert!(seen.len() <= 4, "{seen:?}");
    store.delete_agent("ag-1", Spend::default()).await.unwrap();
    assert_eq!(notes.recv().await.unwrap(), "ag-1");
    let lease: i64 = connect(&url)
        .await
        .query_one("SELECT count(*) FROM leases WHERE agent_id = 'ag-1'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(lease, 0, "a delete removes the lease");
}

#[tokio::test]
async fn charges_from_two_nodes_add_up_exactly() {
    let url = database();
    let a = open(&url, "n1").await;
    let b = open(&url, "n2").await;
    let delta = Spend {
        cost_usd: 0.25,
        tokens: 3,
    };
    let charges: Vec<_> = (0..50)
        .flat_map(|_| [a.charge(delta).unwrap(), b.charge(delta).unwrap()])
        .collect();
    let mut totals: Vec<u64> = futures::future::join_all(charges)
        .await
        .into_iter()
        .map(|r| r.unwrap().unwrap().tokens)
        .collect();
    totals.sort_unstable();
    // Every charge saw a total of its own: none lost, none doubled.
    assert_eq!(totals, (1..=100).map(|i| i * 3).collect::<Vec<u64>>());
    a.close().await;
    let (c, _) = Store::open_postgres(&url, pg_options("n3")).await.unwrap();
    assert_eq!(
        c.retired_spend(),
        Spend {
            cost_usd: 25.0,
            tokens: 300
        }
    );
    assert!(
        Store::in_memory().unwrap().charge(delta).is_none(),
        "SQLite does not charge"
    );
}

#[tokio::test]
async fn three_nodes_opening_a_new_database_at_once_create_the_schema_once() {
    let url = database();
    let opens = ["n1", "n2", "n3"].map(|n| Store::open_postgres(&url, pg_options(n)));
    for opened in futures::future::join_all(opens).await {
        let (store, logs) = opened.unwrap();
        assert!(logs.is_empty());
        store.close().await;
    }
    let client = connect(&url).await;
    let versions: i64 = client
        .query_one("SELECT count(*) FROM flotilla_meta", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(versions, 1);
    client
        .execute(
            "UPDATE flotilla_meta SET value = '99' WHERE key = 'schema_version'",
            &[],
        )
        .await
        .unwrap();
    let err = Store::open_postgres(&url, pg_options("n1"))
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("schema version 99"), "{err}");
}

#[tokio::test]
async fn a_bad_url_is_named_without_its_password() {
    let err = Store::open_postgres(
        "postgres://me:hunter2@/nope?host=/nonexistent-dir&connect_timeout=2",
        pg_options("n1"),
    )
    .await
    .err()
    .unwrap()
    .to_string();
    assert!(!err.contains("hunter2"), "{err}");
    assert!(err.contains("postgres://me:***@/nope"), "{err}");
}

#[test]
fn passwords_never_show() {
    assert_eq!(
        redact("postgres://u:secret@db:5432/fleet"),
        "postgres://u:***@db:5432/fleet"
    );
    assert_eq!(
        redact("postgresql://u@/f?host=/tmp/x&password=secret"),
        "postgresql://u@/f?host=/tmp/x&password=***"
    );
    assert_eq!(redact("postgres://db/fleet"), "postgres://db/fleet");
    assert_eq!(
        redact("postgres://u:p@ss@db/f"),
        "postgres://u:***@db/f",
        "an @ in the password"
    );
}
