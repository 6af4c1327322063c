//! Opening a store: URL parsing, the SQLite single-process lock, pool set-up, migrations.

use crate::{migrate, DatabaseUrl, Inner, Store, StoreError};
use ledgerhook_background::{Status, Step, WorkError, Worker};
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Executor};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Once};
use std::time::Duration;

/// The database engine behind a [`Store`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite in WAL mode: one process, one machine.
    Sqlite,
    /// PostgreSQL: several processes may share it.
    Postgres,
}

/// SQLite's `synchronous` pragma, the `sqlite-synchronous` setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SqliteSynchronous {
    /// Every commit is fsynced before it is acknowledged: nothing acknowledged is lost,
    /// even on power failure.
    #[default]
    Full,
    /// WAL commits are fsynced at checkpoints: a crash of the process loses nothing, a
    /// power failure may lose the last commits.
    Normal,
}

impl FromStr for SqliteSynchronous {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "full" => Ok(SqliteSynchronous::Full),
            "normal" => Ok(SqliteSynchronous::Normal),
            other => Err(format!("\"{other}\" is not one of full, normal")),
        }
    }
}

/// What [`Store::open`] needs.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// The database.
    pub url: DatabaseUrl,
    /// Durability of SQLite commits (ignored on PostgreSQL).
    pub sqlite_synchronous: SqliteSynchronous,
    /// Largest number of connections in the read pool (PostgreSQL's has at most this
    /// many, SQLite's at most 8); PostgreSQL's write pool has 6 more.
    pub max_connections: u32,
}

impl StoreOptions {
    /// Options for `url` with the shipped defaults.
    pub fn new(url: DatabaseUrl) -> StoreOptions {
        StoreOptions {
            url,
            sqlite_synchronous: SqliteSynchronous::Full,
            max_connections: 16,
        }
    }
}

fn install_drivers() {
    static ONCE: Once = Once::new();
    ONCE.call_once(sqlx::any::install_default_drivers);
}

/// Takes the exclusive lock `PATH.lock`, so that a second process is refused with a
/// clear message instead of competing for SQLite's write lock.
fn lock_sqlite_file(path: &Path) -> Result<std::fs::File, StoreError> {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock_path = PathBuf::from(lock_path);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|source| StoreError::Io {
            path: lock_path.clone(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked {
            path: path.to_owned(),
            lock: lock_path,
        }),
        Err(std::fs::TryLockError::Error(source)) => Err(StoreError::Io {
            path: lock_path,
            source,
        }),
    }
}

impl Store {
    /// Opens (creating if needed) the database at `options.url` and brings its schema to
    /// the newest version.
    pub async fn open(options: &StoreOptions) -> Result<Store, StoreError> {
        install_drivers();
        let store = match &options.url {
            DatabaseUrl::Sqlite { path, .. } => open_sqlite(path, options).await?,
            DatabaseUrl::Postgres(url) => open_postgres(url, options).await?,
        };
        migrate::run(&store).await?;
        Ok(store)
    }
}

async fn open_sqlite(path: &Path, options: &StoreOptions) -> Result<Store, StoreError> {
    let lock = lock_sqlite_file(path)?;
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let synchronous = match options.sqlite_synchronous {
        SqliteSynchronous::Full => "FULL",
        SqliteSynchronous::Normal => "NORMAL",
    };
    let pragmas = format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = {synchronous}; PRAGMA busy_timeout = 10000; \
         PRAGMA foreign_keys = ON;"
    );
    let pool = |max: u32, extra: &'static str| {
        let pragmas = format!("{pragmas} {extra}");
        AnyPoolOptions::new()
            .max_connections(max)
            .min_connections(1)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .after_connect(move |conn, _meta| {
                let pragmas = pragmas.clone();
                Box::pin(async move {
                    conn.execute(pragmas.as_str()).await?;
                    Ok(())
                })
            })
            .connect(&url)
    };
    // The writer first: it creates the file and switches it to WAL.
    // Checkpoints run beside the writer (see `checkpoint_loop`), not inside its commits.
    let write: AnyPool = pool(1, "PRAGMA wal_autocheckpoint = 0;").await?;
    let read: AnyPool = pool(options.max_connections.clamp(1, 8), "").await?;
    let checkpointer: AnyPool = pool(1, "").await?;
    let inner = Arc::new(Inner {
        backend: crate::Backend::Sqlite,
        write,
        read,
        _lock: Some(lock),
        url: options.url.as_str().to_owned(),
        origin: crate::signals::new_origin(),
        outbox: Arc::default(),
    });
    tokio::spawn(checkpoint_loop(Arc::downgrade(&inner), checkpointer));
    Ok(Store { inner })
}

/// How often the WAL is copied back into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// The WAL's length, in pages, past which a checkpoint also starts it over (256 MiB at
/// SQLite's 4 KiB pages).
const RESTART_WAL_AT_PAGES: i64 = 65_536;

/// Pages a `TRUNCATE` checkpoint is left to copy at most, when passive rounds get there.
const LEFT_FOR_TRUNCATE_PAGES: i64 = 256;

/// Copies committed WAL frames into the database file from a connection of its own, in
/// `PASSIVE` mode (it never waits for or blocks the writer or readers). With SQLite's
/// automatic checkpoints the commit that crosses 1,000 WAL pages copies and fsyncs them
/// itself, holding the only writer — and every ingestion and delivery waiting for it —
/// for milliseconds. A WAL longer than [`RESTART_WAL_AT_PAGES`] is emptied (`TRUNCATE`),
/// which waits for the writer once. Done when the store is gone.
struct Checkpointer {
    store: std::sync::Weak<Inner>,
    connection: AnyPool,
}

impl Worker for Checkpointer {
    fn name(&self) -> &'static str {
        "sqlite-checkpointer"
    }

    async fn work(&mut self) -> Result<Step, WorkError> {
        let Some(inner) = self.store.upgrade() else {
            return Ok(Step::Done);
        };
        if inner.write.is_closed() {
            return Ok(Step::Done);
        }
        drop(inner);
        let passive = || async {
            let (_busy, wal_pages, copied): (i64, i64, i64) =
                sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
                    .fetch_one(&self.connection)
                    .await?;
            Ok::<_, sqlx::Error>((wal_pages, copied))
        };
        let (mut wal_pages, mut copied) = passive().await?;
        if wal_pages > RESTART_WAL_AT_PAGES {
            // Under a steady load some reader always holds a snapshot that needs the WAL,
            // so it never starts over by itself: it would grow without end, and every
            // page read would search more of it. `TRUNCATE` waits for the writer's
            // current transaction and the readers of older snapshots, copies the rest and
            // empties the file, holding the writer meanwhile: passive rounds first copy
            // all they can (readers' snapshots move on within milliseconds), so that
            // little is left to copy then.
            for _ in 0..10 {
                if wal_pages - copied <= LEFT_FOR_TRUNCATE_PAGES {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
                (wal_pages, copied) = passive().await?;
            }
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&self.connection)
                .await?;
        }
        Ok(Step::Idle(CHECKPOINT_EVERY))
    }

    async fn stop(&mut self) {
        self.connection.close().await;
    }
}

async fn checkpoint_loop(store: std::sync::Weak<Inner>, connection: AnyPool) {
    // The first checkpoint waits a period too: the store has only just been opened.
    tokio::time::sleep(CHECKPOINT_EVERY).await;
    let (_never_stops, shutdown) = tokio::sync::watch::channel(false);
    let worker = Checkpointer { store, connection };
    ledgerhook_background::run(worker, None, shutdown, Status::default()).await;
}

/// Prepared statements each PostgreSQL connection keeps. The pipeline's statements
/// vary with the size of a round (one text per row count), so sqlx's default of 100
/// would evict and re-prepare them on nearly every use.
const STATEMENT_CACHE: u32 = 2000;

/// How long a request waits for a database connection before it is answered `503`: a
/// database that went away must not make requests hang.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// `url` with sqlx's `statement-cache-capacity` set, unless it sets one.
fn with_statement_cache(url: &str) -> String {
    if url.contains("statement-cache-capacity=") {
        return url.to_owned();
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}statement-cache-capacity={STATEMENT_CACHE}")
}

/// Connections of PostgreSQL's write pool. Its users are few (the ingestion writers, the
/// claim loop, the recorder, the aggregator and the janitor's rounds), so a handful
/// suffice; the reads have a pool of their own.
const POSTGRES_WRITE_CONNECTIONS: u32 = 6;

async fn open_postgres(url: &str, options: &StoreOptions) -> Result<Store, StoreError> {
    let pooled_url = with_statement_cache(url);
    let pool = |max: u32| {
        AnyPoolOptions::new()
            .max_connections(max)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .after_connect(|conn, _meta| {
                Box::pin(async move {
                    conn.execute("SET synchronous_commit = on").await?;
                    Ok(())
                })
            })
            .connect(&pooled_url)
    };
    // Two pools, as on SQLite: statements that write never queue behind reads. With one
    // pool, hundreds of attempts reading their app's secrets at once held every
    // connection past the acquire timeout, and recording rounds failed (their attempts
    // were then made again).
    let write = pool(POSTGRES_WRITE_CONNECTIONS).await?;
    let read = pool(options.max_connections.max(2)).await?;
    let outbox: Arc<crate::signals::Outbox> = Arc::default();
    let inner = Arc::new(Inner {
        backend: crate::Backend::Postgres,
        write,
        read,
        _lock: None,
        url: url.to_owned(),
        origin: crate::signals::new_origin(),
        outbox: outbox.clone(),
    });
    tokio::spawn(crate::signals::send_signals(Arc::downgrade(&inner), outbox));
    Ok(Store { inner })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledgerhook_testkit::{Kind, TestDatabase};
    use std::time::Instant;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_writes_do_not_wait_behind_reads() {
        let Some(db) = TestDatabase::new(Kind::Postgres).await else {
            return;
        };
        let options = StoreOptions::new(db.url.parse().expect("test database URL"));
        let store = Store::open(&options).await.expect("open store");
        // Every read connection taken, as by a crowd of attempts reading secrets.
        let mut held = Vec::new();
        for _ in 0..options.max_connections {
            held.push(store.reader().acquire().await.expect("read connection"));
        }
        let started = Instant::now();
        store
            .set_meta("written", "while every read connection was taken")
            .await
            .expect("the write gets a connection of its own");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "took {:?}",
            started.elapsed()
        );
        drop(held);
        assert_eq!(
            store.meta("written").await.unwrap().as_deref(),
            Some("while every read connection was taken")
        );
    }

    #[test]
    fn sets_the_statement_cache_unless_the_url_does() {
        assert_eq!(
            with_statement_cache("postgres://h/db"),
            "postgres://h/db?statement-cache-capacity=2000"
        );
        assert_eq!(
            with_statement_cache("postgres://h/db?sslmode=disable"),
            "postgres://h/db?sslmode=disable&statement-cache-capacity=2000"
        );
        assert_eq!(
            with_statement_cache("postgres://h/db?statement-cache-capacity=5"),
            "postgres://h/db?statement-cache-capacity=5"
        );
    }
}
