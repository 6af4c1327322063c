//! The SQLite files of the receiver side (inbox, copy): WAL with `synchronous = FULL`, so
//! that what was written before answering survives a crash of the app or the machine.

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;
use std::path::Path;

/// Opens (creating if needed) the durable SQLite file at `path`: a few connections (WAL
/// lets readers run beside the one writer; writers wait their turn up to 5 s).
pub(crate) async fn open_durable(path: &Path) -> Result<SqlitePool, sqlx::Error> {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(std::time::Duration::from_secs(5));
    SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await
}
