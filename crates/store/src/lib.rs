//! Ledgerhook's storage.
//!
//! One concrete [`Store`] over two backends — embedded SQLite for one machine and
//! PostgreSQL for several — chosen by the `database-url`. Business code calls typed
//! methods on `Store`; SQL lives only in this crate and is checked at run time (no
//! compile-time macros, so building needs no live database).
//!
//! The SQL is written once for both backends through sqlx's `Any` driver: every time is a
//! `BIGINT` of milliseconds and every flag a `BIGINT`, so values decode the same way from
//! either. Where the dialects truly differ (row locking, identity columns) the [`Backend`]
//! says which text to run.

mod apps;
pub mod cdc;
pub mod closing;
pub(crate) mod configs;
mod connections;
mod counts;
mod error;
pub mod fanout;
mod faults;
pub mod ingest;
mod meta;
mod migrate;
pub mod model;
pub mod notifications;
mod open;
pub mod queue;
mod realms;
mod retention;
pub mod signals;
mod sql;
mod url;
pub mod windows;

pub use error::StoreError;
pub use open::{Backend, SqliteSynchronous, StoreOptions};
pub use url::{BadDatabaseUrl, DatabaseUrl};

use sqlx::AnyPool;
use std::sync::Arc;

/// A handle to the database: cheap to clone, shared by every part of the server.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Backend,
    /// Pool for statements that write. On SQLite it has one connection, because SQLite
    /// has one writer at a time and queueing in the pool is cheaper than `SQLITE_BUSY`;
    /// on PostgreSQL a few, so that writes never wait behind reads.
    write: AnyPool,
    /// Pool for reads. On SQLite (WAL) readers run beside the writer.
    read: AnyPool,
    /// Held for the life of the store: the exclusive lock on the SQLite file.
    _lock: Option<std::fs::File>,
    /// The database URL (PostgreSQL's listener opens its own connection).
    url: String,
    /// The tag on this store's announcements (see `signals`).
    origin: String,
    /// Announcements waiting to be sent (PostgreSQL; see `signals`).
    outbox: Arc<signals::Outbox>,
}

impl Store {
    /// Which backend this store runs on.
    pub fn backend(&self) -> Backend {
        self.inner.backend
    }

    /// Checks that the database answers (for `/readyz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.inner.read).await?;
        Ok(())
    }

    /// Closes every connection; pending work on the pools finishes first.
    pub async fn close(&self) {
        self.inner.write.close().await;
        self.inner.read.close().await;
    }

    pub(crate) fn writer(&self) -> &AnyPool {
        &self.inner.write
    }

    pub(crate) fn reader(&self) -> &AnyPool {
        &self.inner.read
    }
}
