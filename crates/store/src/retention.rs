//! Retention and the inactive-after rule, applied by the janitor: configurations
//! blacklisted for too long become inactive, and old rows are removed.

use crate::{Store, StoreError};
use ledgerhook_domain::{ConfigState, Timestamp};

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
    /// `cutoff`, and idempotency keys past their day; answers the notifications, events
    /// and keys removed (attempts are not counted).
    pub async fn purge(&self, cutoff: Timestamp, now: Timestamp) -> Result<u64, StoreError> {
        let mut tx = self.writer().begin().await?;
        let mut removed = 0;
        // Their attempts go with them (the foreign key cascades).
        for sql in [
            "DELETE FROM notifications WHERE created_at < $1 AND status IN ('delivered', 'dropped')",
            "DELETE FROM change_events WHERE accepted_at < $1 \
             AND NOT EXISTS (SELECT 1 FROM window_events we WHERE we.event_seq = change_events.seq)",
        ] {
            removed += sqlx::query(sql)
                .bind(cutoff.millis())
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        removed += sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
            .bind(now.millis() - crate::ingest::IDEMPOTENCY_WINDOW_MS)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(removed)
    }
}
