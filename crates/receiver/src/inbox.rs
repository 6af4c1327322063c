//! The durable local queue a receiving app appends every verified notification to before
//! answering `200`: a SQLite file in WAL mode with `synchronous = FULL`, so a notification
//! that was answered survives a crash of the app or the machine.
//!
//! Appends are **group-committed**: one writer task takes every append waiting at that
//! moment and commits them in one transaction (one fsync), then answers each. Under
//! concurrency the cost of the fsync is shared; no append is answered before its commit.
//!
//! The inbox is append-only. Its reader (the worker) keeps its position in a file of its
//! own, so appends never wait for a lock the reader holds.
//!
//! A notification that carries a dedupe key (its `webhook-id`, or the ids of its
//! CloudEvents) is stored once: a redelivery of it is answered as a [`Appended::Duplicate`]
//! and stores nothing.

use sqlx::{Row, SqlitePool};
use std::path::Path;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Notify};

/// Appends committed together at most.
const GROUP: usize = 256;

/// Why the inbox failed. The database's error is kept as the [`source`](std::error::Error::source).
#[derive(Clone, Debug, thiserror::Error)]
#[error("inbox: {what}")]
pub struct InboxError {
    what: String,
    #[source]
    source: Option<Arc<sqlx::Error>>,
}

impl InboxError {
    fn closed() -> InboxError {
        InboxError {
            what: "the inbox's writer has stopped".to_owned(),
            source: None,
        }
    }
}

impl InboxError {
    /// The database's `err`, kept as the source.
    pub(crate) fn store(err: sqlx::Error) -> InboxError {
        InboxError {
            what: err.to_string(),
            source: Some(Arc::new(err)),
        }
    }
}

/// `?` for the database's results inside the crate, without a public conversion from
/// the driver's error type.
pub(crate) trait StoreResult<T> {
    /// The result with the database's error made an [`InboxError`].
    fn store(self) -> Result<T, InboxError>;
}

impl<T> StoreResult<T> for Result<T, sqlx::Error> {
    fn store(self) -> Result<T, InboxError> {
        self.map_err(InboxError::store)
    }
}

/// One received notification, as it arrived.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    /// Its position in the inbox (arrival order).
    pub seq: i64,
    /// `webhook-id`, if the sender gave one.
    pub webhook_id: Option<String>,
    /// `Content-Type` of the request.
    pub content_type: String,
    /// The raw body: what the signature covered.
    pub body: Vec<u8>,
    /// Arrival, Unix milliseconds.
    pub received_at: i64,
}

/// What [`Inbox::append`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Appended {
    /// Stored at this position.
    Stored(i64),
    /// A notification with the same dedupe key is already in the inbox: nothing stored.
    Duplicate,
}

/// A notification to append.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Incoming {
    /// `webhook-id`, if the sender gave one.
    pub webhook_id: Option<String>,
    /// What makes a redelivery recognisable: the `webhook-id`, or the CloudEvents ids.
    pub dedupe_key: Option<String>,
    /// `Content-Type` of the request.
    pub content_type: String,
    /// The raw body.
    pub body: Vec<u8>,
    /// Arrival, Unix milliseconds.
    pub received_at: i64,
}

type Reply = oneshot::Sender<Result<Appended, InboxError>>;

/// The durable queue. Cheap to clone.
#[derive(Clone)]
pub struct Inbox {
    pool: SqlitePool,
    #[cfg(feature = "worker")]
    worker_pool: SqlitePool,
    #[cfg(feature = "worker")]
    worker_durable: SqlitePool,
    writer: mpsc::Sender<(Incoming, Reply)>,
    arrived: Arc<Notify>,
}

impl Inbox {
    /// Opens (creating if needed) the inbox file at `path`.
    pub async fn open(path: &Path) -> Result<Inbox, InboxError> {
        let pool = crate::sqlite::open_durable(path).await.store()?;
        for sql in [
            "CREATE TABLE IF NOT EXISTS inbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, webhook_id TEXT, \
             content_type TEXT NOT NULL, body BLOB NOT NULL, received_at INTEGER NOT NULL, \
             done INTEGER NOT NULL DEFAULT 0)",
        ] {
            sqlx::query(sql).execute(&pool).await.store()?;
        }
        // Added after the first release: files made before it gain the column.
        let has_key: bool = sqlx::query_scalar(
            "SELECT COUNT(*) > 0 FROM pragma_table_info('inbox') WHERE name = 'dedupe_key'",
        )
        .fetch_one(&pool)
        .await
        .store()?;
        if !has_key {
            sqlx::query("ALTER TABLE inbox ADD COLUMN dedupe_key TEXT")
                .execute(&pool)
                .await
                .store()?;
        }
        sqlx::query("CREATE UNIQUE INDEX IF NOT EXISTS inbox_dedupe ON inbox (dedupe_key) WHERE dedupe_key IS NOT NULL")
            .execute(&pool)
            .await.store()?;
        let (writer, requests) = mpsc::channel(4 * GROUP);
        let arrived = Arc::new(Notify::new());
        tokio::spawn(write_groups(pool.clone(), requests, arrived.clone()));
        #[cfg(feature = "worker")]
        let worker_pool = crate::sqlite::open_worker_state(&worker_file(path))
            .await
            .store()?;
        #[cfg(feature = "worker")]
        let worker_durable = crate::sqlite::open_durable(&worker_file(path)).await.store()?;
        Ok(Inbox {
            pool,
            #[cfg(feature = "worker")]
            worker_pool,
            #[cfg(feature = "worker")]
            worker_durable,
            writer,
            arrived,
        })
    }

    /// Appends a notification; answers once it is on disk (or known already).
    pub async fn append(&self, incoming: Incoming) -> Result<Appended, InboxError> {
        let (reply, answer) = oneshot::channel();
        self.writer
            .send((incoming, reply))
            .await
            .map_err(|_| InboxError::closed())?;
        answer.await.map_err(|_| InboxError::closed())?
    }

    /// The entries after position `after` (0: from the start), oldest first, at most
    /// `limit`. The inbox itself is append-only: a reader keeps its own position (the
    /// worker keeps it in its own file).
    pub async fn entries_after(&self, after: i64, limit: u32) -> Result<Vec<Received>, InboxError> {
        let rows = sqlx::query(
            "SELECT seq, webhook_id, content_type, body, received_at FROM inbox WHERE seq > ? ORDER BY seq LIMIT ?",
        )
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .store()?;
        rows.iter()
            .map(|row| {
                Ok(Received {
                    seq: row.try_get("seq")?,
                    webhook_id: row.try_get("webhook_id")?,
                    content_type: row.try_get("content_type")?,
                    body: row.try_get("body")?,
                    received_at: row.try_get("received_at")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .store()
    }

    /// The position the worker of an inbox file written before the worker kept its own
    /// file had reached (entries it marked done), so an upgrade does not take them again.
    #[cfg(feature = "worker")]
    pub(crate) async fn marked_done_through(&self) -> Result<i64, InboxError> {
        sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM inbox WHERE done = 1")
            .fetch_one(&self.pool)
            .await
            .store()
    }

    /// How many entries come after position `after`.
    pub async fn count_after(&self, after: i64) -> Result<i64, InboxError> {
        sqlx::query_scalar("SELECT COUNT(*) FROM inbox WHERE seq > ?")
            .bind(after)
            .fetch_one(&self.pool)
            .await
            .store()
    }

    /// Resolves when something was appended since the last call (or at once if so):
    /// the worker's wake-up.
    pub async fn arrived(&self) {
        self.arrived.notified().await;
    }

    /// The connections to the worker's own file beside the inbox (`inbox.worker.db` for
    /// `inbox.db`): the worker writes there, never in the inbox, so the inbox's single
    /// writer never waits for a lock.
    #[cfg(feature = "worker")]
    pub(crate) fn worker_state(&self) -> &SqlitePool {
        &self.worker_pool
    }

    /// The worker's file again, with `synchronous = FULL`: for what must survive a power
    /// failure too (a rotated refresh token: the server has retired the old one).
    #[cfg(feature = "worker")]
    pub(crate) fn worker_state_durable(&self) -> &SqlitePool {
        &self.worker_durable
    }

    /// Closes the file.
    pub async fn close(&self) {
        #[cfg(feature = "worker")]
        self.worker_pool.close().await;
        #[cfg(feature = "worker")]
        self.worker_durable.close().await;
        self.pool.close().await;
    }
}

/// The worker's file beside the inbox file `path`.
#[cfg(feature = "worker")]
fn worker_file(path: &Path) -> std::path::PathBuf {
    let mut name = path.file_stem().unwrap_or_default().to_os_string();
    name.push(".worker.db");
    path.with_file_name(name)
}

/// The writer: each wake-up commits every append waiting (up to [`GROUP`]) in one
/// transaction, then answers them all.
async fn write_groups(
    pool: SqlitePool,
    mut requests: mpsc::Receiver<(Incoming, Reply)>,
    arrived: Arc<Notify>,
) {
    while let Some(first) = requests.recv().await {
        let mut group = vec![first];
        while group.len() < GROUP {
            match requests.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        let incoming: Vec<&Incoming> = group.iter().map(|(i, _)| i).collect();
        match commit(&pool, &incoming).await {
            Ok(results) => {
                arrived.notify_one();
                for ((_, reply), result) in group.into_iter().zip(results) {
                    let _ = reply.send(Ok(result));
                }
            }
            Err(err) => {
                let err = InboxError::store(err);
                for (_, reply) in group {
                    let _ = reply.send(Err(err.clone()));
                }
            }
        }
    }
}

async fn commit(pool: &SqlitePool, group: &[&Incoming]) -> Result<Vec<Appended>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let mut results = Vec::with_capacity(group.len());
    for incoming in group {
        let seq: Option<i64> = sqlx::query_scalar(
            "INSERT INTO inbox (webhook_id, dedupe_key, content_type, body, received_at) VALUES (?, ?, ?, ?, ?) \
             ON CONFLICT DO NOTHING RETURNING seq",
        )
        .bind(&incoming.webhook_id)
        .bind(&incoming.dedupe_key)
        .bind(&incoming.content_type)
        .bind(&incoming.body)
        .bind(incoming.received_at)
        .fetch_optional(&mut *tx)
        .await?;
        results.push(seq.map_or(Appended::Duplicate, Appended::Stored));
    }
    tx.commit().await?;
    Ok(results)
}
