//! The SQLite files of the receiver side: the inbox with WAL and `synchronous = FULL`, so
//! that what was answered survives a crash of the app or the machine; and the worker's
//! own file with `synchronous = NORMAL`, whose commits cost no fsync (they survive a crash
//! of the app; after a power failure the last of them may be lost, which makes the worker
//! take those entries in and apply those changes again — never lose them).

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;
use std::path::Path;

/// Opens (creating if needed) the durable SQLite file at `path`: a few connections (WAL
/// lets readers run beside the one writer; writers wait their turn up to 5 s).
pub(crate) async fn open_durable(path: &Path) -> Result<SqlitePool, sqlx::Error> {
    open(path, SqliteSynchronous::Full, 2).await
}

/// Opens the worker's file (`synchronous = NORMAL`).
#[cfg(feature = "worker")]
pub(crate) async fn open_worker_state(path: &Path) -> Result<SqlitePool, sqlx::Error> {
    open(path, SqliteSynchronous::Normal, 4).await
}

async fn open(
    path: &Path,
    synchronous: SqliteSynchronous,
    connections: u32,
) -> Result<SqlitePool, sqlx::Error> {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(synchronous)
        .busy_timeout(std::time::Duration::from_secs(5));
    SqlitePoolOptions::new()
        .max_connections(connections)
        .connect_with(options)
        .await
}
