//! The fleet in PostgreSQL (`--store`): the real binary over stdio on a throwaway
//! database keeps agents, outputs and in-flight commands across a SIGKILL exactly as
//! with SQLite, and refuses a store URL it cannot use.

use std::time::Duration;

use crate::common::postgres::database;
use crate::common::*;
use serde_json::json;

const LONG: Duration = Duration::from_secs(60);

fn on(url: &str) -> Builder {
    Flotilla::builder()
        .arg("--store")
        .arg(url)
        .arg("--node")
        .arg("node-a")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_and_their_output_survive_a_sigkill_on_postgres() {
    let url = database();
    let fl = on(&url).start().await;
    let m = fl.mock.clone();
    m.script(
        "[p]",
        vec![
            Step::tool("run_command", json!({"command": "echo ran >> runs.txt"})),
            Step::text("P final"),
        ],
    );
    m.script(
        "[q]",
        vec![
            Step::text("never delivered").delay(Duration::from_secs(30)),
            Step::text("Q final"),
        ],
    );
    fl.create("pg-p", "[p] run it").await;
    fl.wait_all(&["pg-p"]).await;
    fl.create("pg-q", "[q] wait").await;
    m.wait_requests("[q]", 1, LONG).await;
    // Its start is in the store (events are read after every earlier write): killed
    // now, it is a command in progress, which the restart resumes.
    eventually("pg-q's start in the store", async || {
        !fl.event_kinds("pg-q", &["started"]).await.is_empty()
    })
    .await;
    let log = fl.log_tail(200);
    assert!(
        log.contains("fleet store opened: postgres postgresql://postgres@/")
            && log.contains("as node node-a"),
        "{log}"
    );
    assert!(
        !fl.root().join("data").join("fleet.db").exists(),
        "the log went to PostgreSQL, not SQLite"
    );

    let fl = fl.restart().await;

    let p = fl.output("pg-p").await;
    assert_eq!(p["text"], "P final", "{p}");
    assert_eq!(p["command_status"], "done");
    let runs = std::fs::read_to_string(fl.work().join("runs.txt")).unwrap();
    assert_eq!(runs, "ran\n", "the command ran once");
    // The command cut short resumes on the restarted node (it still holds the lease).
    let waited = fl
        .call("wait_for_agents", json!({"timeout_s": SETTLE_TIMEOUT_S}))
        .await;
    assert_eq!(waited["timed_out"], false, "{waited}");
    let q = fl.output("pg-q").await;
    assert_eq!(
        (q["text"].as_str(), q["command_status"].as_str()),
        (Some("Q final"), Some("done")),
        "{q}"
    );
    let kinds = fl.event_kinds("pg-q", &["resumed"]).await;
    assert_eq!(kinds, ["resumed"]);
    // What the restarted node wrote is in the store too (not only in its memory).
    let fl = fl.restart().await;
    let q = fl.output("pg-q").await;
    assert_eq!(q["text"], "Q final", "{q}");
    let kinds = fl.event_kinds("pg-q", &["finished"]).await;
    assert_eq!(kinds, ["finished"]);
    fl.mock.assert_no_protocol_problems();
}

#[tokio::test]
async fn a_store_that_is_not_postgres_is_refused_with_the_default_named() {
    let (status, stderr) = Flotilla::builder()
        .arg("--store")
        .arg("mysql://me:hunter2@db/fleet")
        .run_to_exit()
        .await;
    assert!(!status.success());
    assert_mentions(&stderr, &["postgres://", "SQLite in the data directory"]);
    assert!(!stderr.contains("hunter2"), "{stderr}");
}
