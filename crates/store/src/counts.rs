//! Counts for `/metrics`: notifications per status, configurations per state.

use crate::{Store, StoreError};
use ledgerhook_domain::Timestamp;
use sqlx::Row;

impl Store {
    /// Notifications per status (for metrics).
    pub async fn notification_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM notifications GROUP BY status")
            .fetch_all(self.reader())
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get::<String, _>("status")?, r.try_get::<i64, _>("n")?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// The queue for metrics: notifications waiting to be sent (`pending` or
    /// `retrying`), and the due time of the oldest one that is due at `now`.
    pub async fn queue_stats(&self, now: Timestamp) -> Result<(i64, Option<Timestamp>), StoreError> {
        let depth: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM notifications WHERE status IN ('pending', 'retrying')")
                .fetch_one(self.reader())
                .await?;
        let oldest: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(next_attempt_at) FROM notifications WHERE status IN ('pending', 'retrying') \
             AND next_attempt_at <= $1",
        )
        .bind(now.millis())
        .fetch_one(self.reader())
        .await?;
        Ok((depth, oldest.map(Timestamp)))
    }

    /// Webhook configurations per state (for metrics).
    pub async fn config_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM webhook_configs GROUP BY state")
            .fetch_all(self.reader())
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get::<String, _>("state")?, r.try_get::<i64, _>("n")?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }
}
