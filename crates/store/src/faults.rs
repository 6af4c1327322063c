//! What fault injection leaves for later: the duplicates still to send, and the counts
//! `/metrics` reports.

use crate::notifications::{notification, Notification, COLUMNS};
use crate::{Store, StoreError};
use ledgerhook_domain::faults::Fault;
use ledgerhook_domain::Timestamp;

impl Store {
    /// Takes up to `limit` delivered notifications whose injected duplicate has not been
    /// sent, marking each taken at `now` (so one node sends it, once); answers them.
    pub async fn take_duplicates(&self, now: Timestamp, limit: u32) -> Result<Vec<Notification>, StoreError> {
        let rows = sqlx::query(&format!(
            "UPDATE notifications SET duplicated_at = $1 WHERE seq IN ( \
               SELECT seq FROM notifications WHERE faults IS NOT NULL AND faults LIKE '%duplicate%' \
               AND status = 'delivered' AND attempt_count > 0 AND duplicated_at IS NULL ORDER BY seq LIMIT $2) \
             AND duplicated_at IS NULL RETURNING {COLUMNS}"
        ))
        .bind(now.millis())
        .bind(i64::from(limit))
        .fetch_all(self.writer())
        .await?;
        Ok(rows.iter().map(notification).collect::<Result<_, _>>()?)
    }

    /// How many retained notifications had each fault injected.
    pub async fn fault_counts(&self) -> Result<Vec<(Fault, i64)>, StoreError> {
        let mut counts = Vec::new();
        for fault in Fault::ALL {
            let count: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM notifications WHERE faults IS NOT NULL AND faults LIKE $1",
            )
            .bind(format!("%{}%", fault.as_str()))
            .fetch_one(self.reader())
            .await?;
            counts.push((fault, count));
        }
        Ok(counts)
    }
}
