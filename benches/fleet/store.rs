//! Which store a one-node scenario keeps its fleet in: SQLite in the data directory
//! (flotilla's default) or a fresh database on the throwaway PostgreSQL cluster that
//! `tests/common/postgres.rs` starts for this process (`--store URL --node solo`).

use crate::postgres;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    Sqlite,
    Postgres,
}

impl Store {
    /// Parse `--stores sqlite,postgres`.
    pub fn parse(name: &str) -> Result<Self, String> {
        match name.trim() {
            "sqlite" => Ok(Self::Sqlite),
            "postgres" | "postgresql" | "pg" => Ok(Self::Postgres),
            other => Err(format!("unknown store {other}; known: sqlite, postgres")),
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Sqlite => "SQLite",
            Self::Postgres => "PostgreSQL",
        }
    }

    /// The server's extra arguments: none for SQLite, a fresh database for PostgreSQL.
    pub fn args(self) -> Vec<String> {
        match self {
            Self::Sqlite => Vec::new(),
            Self::Postgres => [
                "--store".to_string(),
                database(),
                "--node".into(),
                "solo".into(),
            ]
            .into(),
        }
    }
}

/// A fresh database on this process's throwaway PostgreSQL (started on first use,
/// stopped and removed when the bench exits).
pub fn database() -> String {
    postgres::database()
}
