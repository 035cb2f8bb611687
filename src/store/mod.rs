//! The durable fleet: an append-only event log per agent in SQLite (WAL mode), written
//! by one dedicated thread so that persisting never slows an agent step.
//!
//! - [`Store::open`] takes an exclusive lock on the store directory (a second server
//!   gets a clear error, never a second writer), checks the database, and loads every
//!   agent's log, which the registry replays into live agents.
//! - Appends go through a channel to the writer thread, which commits them in batches
//!   (group commit). Events the caller must not lose — creation, commands, finished
//!   commands — come with an acknowledgement that resolves once committed.
//! - Reads (`get_agent_events`) are served by the same thread, after every earlier
//!   write, so they always see the log as the agent left it.
//! - [`Store::open_postgres`] puts the same log in a PostgreSQL database shared by
//!   several nodes ([`postgres`]): the same messages, a tokio task as the writer, and
//!   fencing of appends by the agent's lease.

pub mod event;
pub mod location;
pub mod postgres;
mod writer;

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use crate::pricing::Spend;
use event::Event;
pub use postgres::{PgOptions, Shared};
use writer::Msg;

/// The store's file name inside its directory.
pub const DB_FILE: &str = "fleet.db";
const LOCK_FILE: &str = "fleet.lock";
const SCHEMA_VERSION: i64 = 1;
/// How long to wait for the store's lock before reporting another server.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "another flotilla server (pid {pid}) is using the fleet store in {dir}. One server owns a project's fleet: stop the other one, or give this one its own store with --data-dir"
    )]
    InUse { dir: PathBuf, pid: String },
    #[error(
        "the fleet store {path} is unreadable: {detail}. Nothing was changed. Move it aside (e.g. `mv {path} {path}.broken`) to start an empty fleet, or point --data-dir at another directory"
    )]
    Corrupt { path: PathBuf, detail: String },
    #[error("cannot use the fleet store directory {dir}: {source}")]
    Io {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("the fleet store is closed")]
    Closed,
    #[error("the fleet store failed to write: {0}")]
    Write(String),
    #[error("cannot start the fleet store's writer thread: {0}")]
    Thread(std::io::Error),
    /// The PostgreSQL store cannot be used (`url` has its password hidden).
    #[error("cannot use the fleet store {url}: {detail}")]
    Postgres { url: String, detail: String },
}

/// One stored event with its place in the log.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub seq: u64,
    pub at_ms: i64,
    pub event: Event,
}

/// Everything stored about one agent, in log order.
#[derive(Debug, Clone)]
pub struct AgentLog {
    pub agent_id: String,
    pub events: Vec<StoredEvent>,
}

/// A page of events for `get_agent_events`.
#[derive(Debug, Clone)]
pub struct EventPage {
    pub events: Vec<StoredEvent>,
    /// Whether more events match after the last one.
    pub more: bool,
}

/// Resolves when an event is committed (or the store failed).
pub type Ack = oneshot::Receiver<Result<(), String>>;

pub struct Store {
    tx: mpsc::UnboundedSender<Msg>,
    /// SQLite's writer thread (PostgreSQL's writer is a tokio task).
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    _lock: Option<File>,
    /// What deleted agents had spent, as of opening (PostgreSQL: the fleet's whole
    /// spend, see [`Store::retired_spend`]).
    retired: Spend,
    /// The database and the leases several nodes share (PostgreSQL only).
    shared: Option<Arc<Shared>>,
}

impl Store {
    /// Open (or create) the store in `dir` and load every agent's log.
    pub fn open(dir: &Path) -> Result<(Self, Vec<AgentLog>), StoreError> {
        let io = |source| StoreError::Io {
            dir: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let lock = lock_dir(dir)?;
        let path = dir.join(DB_FILE);
        let corrupt = |e: rusqlite::Error| StoreError::Corrupt {
            path: path.clone(),
            detail: e.to_string(),
        };
        let conn = Connection::open(&path).map_err(corrupt)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(corrupt)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(corrupt)?;
        // Checkpoint the WAL every ~16 MiB instead of every ~4 MiB: fewer stalls of
        // the writer thread under a busy fleet.
        conn.pragma_update(None, "wal_autocheckpoint", 4000)
            .map_err(corrupt)?;
        let check: String = conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(corrupt)?;
        if check != "ok" {
            return Err(StoreError::Corrupt {
                path,
                detail: format!("integrity check failed: {check}"),
            });
        }
        init_schema(&conn).map_err(|detail| StoreError::Corrupt {
            path: path.clone(),
            detail,
        })?;
        let logs = writer::load(&conn).map_err(|detail| StoreError::Corrupt {
            path: path.clone(),
            detail,
        })?;
        let retired = writer::retired(&conn);
        let store = Self::start(conn, Some(lock), retired)?;
        Ok((store, logs))
    }

    /// A store that keeps nothing after the process ends (`--ephemeral`).
    pub fn in_memory() -> Result<Self, StoreError> {
        let conn = Connection::open_in_memory().map_err(|e| StoreError::Write(e.to_string()))?;
        init_schema(&conn).map_err(StoreError::Write)?;
        Self::start(conn, None, Spend::default())
    }

    /// Open (or create) the fleet's store in the PostgreSQL database at `url`, as
    /// node `opts.node`, and load every agent's log.
    pub async fn open_postgres(
        url: &str,
        opts: PgOptions,
    ) -> Result<(Self, Vec<AgentLog>), StoreError> {
        let (shared, logs, total) = postgres::open(url, opts).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(postgres::writer::run(shared.clone(), rx));
        let store = Self {
            tx,
            thread: Mutex::new(None),
            _lock: None,
            retired: total,
            shared: Some(shared),
        };
        Ok((store, logs))
    }

    fn start(conn: Connection, lock: Option<File>, retired: Spend) -> Result<Self, StoreError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let thread = std::thread::Builder::new()
            .name("flotilla-store".into())
            .spawn(move || writer::run(conn, rx))
            .map_err(StoreError::Thread)?;
        Ok(Self {
            tx,
            thread: Mutex::new(Some(thread)),
            _lock: lock,
            retired,
            shared: None,
        })
    }

    /// What agents deleted before this process started had spent: the fleet's
    /// budget keeps counting it. On PostgreSQL, the fleet's whole spend at opening
    /// (`fleet_spend`, which deletes never lower).
    pub fn retired_spend(&self) -> Spend {
        self.retired
    }

    /// The database and leases shared with other nodes; `None` on SQLite.
    pub fn shared(&self) -> Option<&Arc<Shared>> {
        self.shared.as_ref()
    }

    /// Add `delta` to the fleet's spend in the shared store, atomically across nodes;
    /// resolves to the fleet's new total. `None` on SQLite (one node: its own
    /// counters are the fleet's).
    pub fn charge(&self, delta: Spend) -> Option<oneshot::Receiver<Result<Spend, String>>> {
        self.shared.as_ref()?;
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Msg::Charge { delta, reply }).is_err() {
            tracing::error!("store closed; spend not charged");
        }
        Some(rx)
    }

    /// One agent's whole log, after every earlier write; `None` when it has no events.
    pub async fn load_agent(&self, agent_id: &str) -> Result<Option<AgentLog>, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::LoadAgent {
                agent_id: agent_id.to_string(),
                reply,
            })
            .map_err(|_| StoreError::Closed)?;
        rx.await
            .map_err(|_| StoreError::Closed)?
            .map_err(StoreError::Write)
    }

    /// Append an event. Returns an [`Ack`] for durable events (see
    /// [`Event::is_durable`]), `None` otherwise.
    pub fn append(&self, agent_id: &str, seq: u64, event: Event) -> Option<Ack> {
        let (ack, rx) = if event.is_durable() {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let msg = Msg::Append {
            agent_id: agent_id.to_string(),
            seq,
            at_ms: now_ms(),
            event,
            ack,
        };
        if self.tx.send(msg).is_err() {
            tracing::error!(agent = agent_id, seq, "store closed; event dropped");
        }
        rx
    }

    /// Remove every record of an agent, keeping what it spent in the fleet's
    /// retired spend.
    pub async fn delete_agent(&self, agent_id: &str, spent: Spend) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Msg::Delete {
                agent_id: agent_id.to_string(),
                spent,
                ack: tx,
            })
            .map_err(|_| StoreError::Closed)?;
        rx.await
            .map_err(|_| StoreError::Closed)?
            .map_err(StoreError::Write)
    }

    /// Remove an agent's records without waiting for it.
    pub fn forget(&self, agent_id: &str) {
        let (tx, _rx) = oneshot::channel();
        let _ = self.tx.send(Msg::Delete {
            agent_id: agent_id.to_string(),
            spent: Spend::default(),
            ack: tx,
        });
    }

    /// Events of one agent with `seq > after`, oldest first, optionally only `kinds`.
    pub async fn events(
        &self,
        agent_id: &str,
        after: u64,
        limit: usize,
        kinds: Option<Vec<String>>,
    ) -> Result<EventPage, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Msg::Events {
                agent_id: agent_id.to_string(),
                after,
                limit,
                kinds,
                reply: tx,
            })
            .map_err(|_| StoreError::Closed)?;
        rx.await
            .map_err(|_| StoreError::Closed)?
            .map_err(StoreError::Write)
    }

    /// Commit what is queued and stop the writer.
    pub async fn close(&self) {
        let (done, rx) = oneshot::channel();
        if self.tx.send(Msg::Close(Some(done))).is_ok() {
            let _ = rx.await;
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        let _ = self.tx.send(Msg::Close(None));
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Take the directory's lock file, or say who holds it.
fn lock_dir(dir: &Path) -> Result<File, StoreError> {
    let io = |source| StoreError::Io {
        dir: dir.to_path_buf(),
        source,
    };
    let mut file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join(LOCK_FILE))
        .map_err(io)?;
    // A client that restarts its server may start the new one while the old one is
    // still exiting (its files close only when its last thread is gone): give the
    // lock a moment before calling it taken.
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    let mut result = file.try_lock();
    while matches!(result, Err(std::fs::TryLockError::WouldBlock))
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(50));
        result = file.try_lock();
    }
    match result {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            let pid = pid.trim();
            return Err(StoreError::InUse {
                dir: dir.to_path_buf(),
                pid: if pid.is_empty() {
                    "unknown".into()
                } else {
                    pid.to_string()
                },
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
    }
    file.set_len(0).map_err(io)?;
    file.rewind().map_err(io)?;
    write!(file, "{}", std::process::id()).map_err(io)?;
    Ok(file)
}

fn init_schema(conn: &Connection) -> Result<(), String> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
         -- Rows append at the end of the table (rowid order); the index finds an
         -- agent's log. Cheaper to insert into than a table keyed by random ids.
         CREATE TABLE IF NOT EXISTS events (
             id INTEGER PRIMARY KEY,
             agent_id TEXT NOT NULL,
             seq INTEGER NOT NULL,
             at_ms INTEGER NOT NULL,
             kind TEXT NOT NULL,
             data TEXT NOT NULL
         );
         CREATE UNIQUE INDEX IF NOT EXISTS events_by_agent ON events (agent_id, seq);",
    )
    .map_err(|e| e.to_string())?;
    let version: Option<String> = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .ok();
    match version.as_deref().map(str::parse::<i64>) {
        None => {
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?1)",
                [SCHEMA_VERSION.to_string()],
            )
            .map_err(|e| e.to_string())?;
        }
        Some(Ok(v)) if v == SCHEMA_VERSION => {}
        Some(Ok(v)) => {
            return Err(format!(
                "it has schema version {v}, this flotilla understands {SCHEMA_VERSION} (was it written by a newer flotilla?)"
            ));
        }
        Some(Err(_)) => return Err("its schema_version is not a number".into()),
    }
    Ok(())
}

/// The throwaway PostgreSQL of the tests (one copy, shared with the integration tests).
#[cfg(test)]
#[path = "../../tests/common/postgres.rs"]
pub(crate) mod test_postgres;
#[cfg(test)]
mod tests;
