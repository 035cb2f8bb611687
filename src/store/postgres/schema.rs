//! The shared store's tables, created by the first node to open the database and
//! checked by every other: nodes opening at once are serialised by a transaction-level
//! advisory lock, so the schema is created once.

use deadpool_postgres::Object;

/// The schema this flotilla reads and writes.
pub const SCHEMA_VERSION: i64 = 1;
/// The advisory lock key serialising first opens ("flotilla" in ASCII).
const SCHEMA_LOCK: i64 = 0x666c_6f74_696c_6c61;

const TABLES: &str = "
CREATE TABLE IF NOT EXISTS flotilla_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
  id BIGSERIAL PRIMARY KEY, agent_id TEXT NOT NULL, seq BIGINT NOT NULL,
  at_ms BIGINT NOT NULL, kind TEXT NOT NULL, data TEXT NOT NULL,
  node TEXT NOT NULL,
  UNIQUE (agent_id, seq));
CREATE TABLE IF NOT EXISTS leases (
  agent_id TEXT PRIMARY KEY, node TEXT NOT NULL, token BIGINT NOT NULL,
  expires_at TIMESTAMPTZ NOT NULL, workdir TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS nodes (
  node TEXT PRIMARY KEY, heartbeat_at TIMESTAMPTZ NOT NULL, started_at TIMESTAMPTZ NOT NULL,
  max_running INT NOT NULL, running INT NOT NULL, agents INT NOT NULL,
  roots TEXT[] NOT NULL, url TEXT);
CREATE TABLE IF NOT EXISTS fleet_spend (id INT PRIMARY KEY CHECK (id = 1),
  cost_usd DOUBLE PRECISION NOT NULL, tokens BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS requests (
  id BIGSERIAL PRIMARY KEY, node TEXT NOT NULL, agent_id TEXT, tool TEXT NOT NULL,
  args TEXT NOT NULL, result TEXT, claimed_by TEXT, created_at TIMESTAMPTZ NOT NULL DEFAULT now());
-- Which process writes a node's row: two live processes under one --node are told.
ALTER TABLE nodes ADD COLUMN IF NOT EXISTS instance TEXT;
-- Agents by name (a node looks up one it has not heard of, and checks a new name).
CREATE INDEX IF NOT EXISTS events_created_by_name
  ON events (((data::jsonb) -> 'settings' ->> 'name')) WHERE kind = 'created';
CREATE TABLE IF NOT EXISTS fleet_slots (
  agent_id TEXT PRIMARY KEY, node TEXT NOT NULL, since TIMESTAMPTZ NOT NULL DEFAULT now());
";

/// Create the tables if missing and check the schema version.
pub async fn ensure(client: &mut Object) -> Result<(), String> {
    let err = |e: tokio_postgres::Error| e.to_string();
    let tx = client.transaction().await.map_err(err)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
        .await
        .map_err(err)?;
    tx.batch_execute(TABLES).await.map_err(err)?;
    let version = tx
        .query_opt(
            "SELECT value FROM flotilla_meta WHERE key = 'schema_version'",
            &[],
        )
        .await
        .map_err(err)?
        .map(|row| row.get::<_, String>(0));
    match version.as_deref().map(str::parse::<i64>) {
        None => {
            tx.execute(
                "INSERT INTO flotilla_meta (key, value) VALUES ('schema_version', $1)",
                &[&SCHEMA_VERSION.to_string()],
            )
            .await
            .map_err(err)?;
        }
        Some(Ok(v)) if v == SCHEMA_VERSION => {}
        Some(Ok(v)) => {
            return Err(format!(
                "it has schema version {v}, this flotilla understands {SCHEMA_VERSION} (was it written by a newer flotilla?)"
            ));
        }
        Some(Err(_)) => return Err("its schema_version is not a number".into()),
    }
    tx.commit().await.map_err(err)
}
