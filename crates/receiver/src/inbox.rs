//! The durable local queue a receiving app appends every verified notification to before
//! answering `200`: a SQLite file in WAL mode with `synchronous = FULL`, so a notification
//! that was answered survives a crash of the app or the machine. A worker takes the
//! entries in order and marks them done.

use sqlx::{Row, SqlitePool};
use std::path::Path;

/// Why the inbox failed.
#[derive(Debug, thiserror::Error)]
#[error("inbox: {0}")]
pub struct InboxError(#[from] sqlx::Error);

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

/// The durable queue. Cheap to clone.
#[derive(Clone)]
pub struct Inbox {
    pool: SqlitePool,
}

impl Inbox {
    /// Opens (creating if needed) the inbox file at `path`.
    pub async fn open(path: &Path) -> Result<Inbox, InboxError> {
        let pool = crate::sqlite::open_durable(path).await?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS inbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, webhook_id TEXT, \
             content_type TEXT NOT NULL, body BLOB NOT NULL, received_at INTEGER NOT NULL, \
             done INTEGER NOT NULL DEFAULT 0)",
        )
        .execute(&pool)
        .await?;
        sqlx::query("CREATE INDEX IF NOT EXISTS inbox_pending ON inbox (seq) WHERE done = 0")
            .execute(&pool)
            .await?;
        Ok(Inbox { pool })
    }

    /// Appends a notification; answers its position once it is on disk.
    pub async fn append(
        &self,
        webhook_id: Option<&str>,
        content_type: &str,
        body: &[u8],
        received_at: i64,
    ) -> Result<i64, InboxError> {
        let row = sqlx::query(
            "INSERT INTO inbox (webhook_id, content_type, body, received_at) VALUES (?, ?, ?, ?) RETURNING seq",
        )
        .bind(webhook_id)
        .bind(content_type)
        .bind(body)
        .bind(received_at)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get("seq")?)
    }

    /// The oldest entries not yet done, at most `limit`.
    pub async fn pending(&self, limit: u32) -> Result<Vec<Received>, InboxError> {
        let rows = sqlx::query(
            "SELECT seq, webhook_id, content_type, body, received_at FROM inbox WHERE done = 0 ORDER BY seq LIMIT ?",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
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
            .map_err(InboxError::from)
    }

    /// Marks an entry processed.
    pub async fn done(&self, seq: i64) -> Result<(), InboxError> {
        sqlx::query("UPDATE inbox SET done = 1 WHERE seq = ?")
            .bind(seq)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Marks every entry up to `seq` processed.
    pub async fn done_through(&self, seq: i64) -> Result<(), InboxError> {
        sqlx::query("UPDATE inbox SET done = 1 WHERE seq <= ? AND done = 0")
            .bind(seq)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The connection, for the worker's bookkeeping in the same file.
    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Closes the file.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}
