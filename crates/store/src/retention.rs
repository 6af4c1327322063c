//! Retention and the inactive-after rule, applied by the janitor: configurations
//! blacklisted for too long become inactive, and old rows are removed.

use crate::{Store, StoreError};
use ledgerhook_domain::{ConfigState, Timestamp};

/// Rows removed per transaction by [`Store::purge`].
pub const PURGE_BATCH: i64 = 200;

/// The shortest pause between two of the purge's transactions, in which ingestion and
/// delivery have the writer: retention is never urgent.
const PURGE_PAUSE: std::time::Duration = std::time::Duration::from_millis(10);

/// Each pause lasts at least this many times the transaction before it: the purge holds
/// the writer at most a quarter of the time, however slow its deletes are (a batch's
/// cost grows with the indexes it deletes from and with the disk).
const PURGE_YIELD: u32 = 3;

impl Store {
    /// Makes configurations blacklisted since before `cutoff` inactive; answers how many.
    pub async fn deactivate_blacklisted(&self, cutoff: Timestamp, now: Timestamp) -> Result<u64, StoreError> {
        let result = sqlx::query(
            "UPDATE webhook_configs SET state = $1, state_since = $2 WHERE state = $3 AND state_since <= $4",
        )
        .bind(ConfigState::Inactive.as_str())
        .bind(now.millis())
        .bind(ConfigState::Blacklisted.as_str())
        .bind(cutoff.millis())
        .execute(self.writer())
        .await?;
        Ok(result.rows_affected())
    }

    /// Removes notifications (with their attempts) and change events older than
    /// `cutoff`, and idempotency keys past their day, in transactions of at most
    /// [`PURGE_BATCH`] rows each; answers the notifications, events and keys removed
    /// (attempts are not counted).
    pub async fn purge(&self, cutoff: Timestamp, now: Timestamp) -> Result<u64, StoreError> {
        self.purge_in_batches(cutoff, now, PURGE_BATCH).await
    }

    /// [`Store::purge`] with `batch` rows per transaction. A short transaction holds the
    /// writer (SQLite's only one) for milliseconds, and the pause after it is at least
    /// three times as long, so ingestion and delivery go on between two batches however
    /// much there is to remove; a purge of 10⁶ rows in one transaction held it for
    /// seconds.
    pub async fn purge_in_batches(
        &self,
        cutoff: Timestamp,
        now: Timestamp,
        batch: i64,
    ) -> Result<u64, StoreError> {
        let keys_cutoff = now.millis() - crate::ingest::IDEMPOTENCY_WINDOW_MS;
        // Each statement deletes up to `batch` rows chosen through the age index; their
        // attempts go with the notifications (the foreign key cascades).
        let statements = [
            ("DELETE FROM notifications WHERE seq IN (SELECT seq FROM notifications \
              WHERE created_at < $1 AND status IN ('delivered', 'dropped') LIMIT $2)", cutoff.millis()),
            ("DELETE FROM change_events WHERE seq IN (SELECT seq FROM change_events ce \
              WHERE accepted_at < $1 \
              AND NOT EXISTS (SELECT 1 FROM window_events we WHERE we.event_seq = ce.seq) LIMIT $2)", cutoff.millis()),
            ("DELETE FROM idempotency_keys WHERE (realm_id, idem_key) IN (SELECT realm_id, idem_key FROM idempotency_keys \
              WHERE created_at < $1 LIMIT $2)", keys_cutoff),
        ];
        let mut removed = 0;
        for (sql, before) in statements {
            loop {
                let started = std::time::Instant::now();
                let deleted = sqlx::query(sql)
                    .bind(before)
                    .bind(batch)
                    .execute(self.writer())
                    .await?
                    .rows_affected();
                removed += deleted;
                if deleted < batch as u64 {
                    break;
                }
                // Let whatever waits for the writer have it first, and for longer than
                // the purge had it.
                tokio::time::sleep(PURGE_PAUSE.max(started.elapsed() * PURGE_YIELD)).await;
            }
        }
        Ok(removed)
    }
}
