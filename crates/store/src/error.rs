//! The storage error type.

use std::path::PathBuf;

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process holds the SQLite database.
    #[error("the SQLite database {path} is already in use by another ledgerhook process (lock file {lock} is held); stop it or use another database")]
    Locked {
        /// The database file.
        path: PathBuf,
        /// The lock file held by the other process.
        lock: PathBuf,
    },
    /// The SQLite file or its lock file could not be opened.
    #[error("cannot open {path}: {source}")]
    Io {
        /// The file that could not be opened.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A migration failed; the schema is left at the previous version.
    #[error("migration {version} failed: {source}")]
    Migration {
        /// The migration's version number.
        version: i64,
        /// The database's error.
        #[source]
        source: sqlx::Error,
    },
    /// The database holds a schema newer than this build knows.
    #[error(
        "the database schema is at version {found}, newer than this ledgerhook ({known}); upgrade ledgerhook"
    )]
    SchemaTooNew {
        /// The version found in the database.
        found: i64,
        /// The newest version this build knows.
        known: i64,
    },
    /// A unique key already exists.
    #[error("already exists: {0}")]
    Conflict(String),
    /// A grouped write (attempt results) failed; the source is the group's error, shared
    /// by every attempt of the group.
    #[error("recording attempts failed")]
    Recording(#[source] std::sync::Arc<StoreError>),
    /// Any other database error.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl StoreError {
    /// Whether the database could not be reached or could not take the write (it went
    /// away, did not answer in time, is shutting down, or its disk is full): worth
    /// trying again later, and nothing was committed.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Database(err) | StoreError::Migration { source: err, .. } => sqlx_unavailable(err),
            StoreError::Recording(inner) => inner.is_unavailable(),
            StoreError::Io { .. } => true,
            _ => false,
        }
    }

    /// Whether the database rolled the transaction back because it conflicted with
    /// another one (PostgreSQL: a deadlock, `40P01`, or a serialization failure,
    /// `40001`): nothing of it was committed, and running it again is safe.
    pub fn is_conflict_between_transactions(&self) -> bool {
        match self {
            StoreError::Database(sqlx::Error::Database(db)) => {
                matches!(db.code().as_deref(), Some("40P01" | "40001"))
            }
            StoreError::Recording(inner) => inner.is_conflict_between_transactions(),
            _ => false,
        }
    }

    /// Turns a unique-constraint violation into [`StoreError::Conflict`] with `what`.
    pub(crate) fn unique_as_conflict(err: sqlx::Error, what: &str) -> StoreError {
        match &err {
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(what.to_owned()),
            _ => StoreError::Database(err),
        }
    }
}

/// Whether `err` says the database is unreachable or cannot write now.
fn sqlx_unavailable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_) => {
            true
        }
        sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            // PostgreSQL: connection exceptions (08…), operator intervention (57P01–57P03:
            // shutting down, cannot connect now), disk full (53100). SQLite: 13 (full), 10
            // (I/O error), 14 (cannot open), 5 (busy past its timeout).
            code.starts_with("08")
                || code.starts_with("57P")
                || code == "53100"
                || matches!(code.as_ref(), "13" | "10" | "14" | "5")
                || db.message().contains("database or disk is full")
        }
        _ => false,
    }
}
