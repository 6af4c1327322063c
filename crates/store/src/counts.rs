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
    /// `retrying`, test sends aside: they are never queued), and the due time of the
    /// oldest one that is due at `now`. Both are read from the `notifications_due` index.
    pub async fn queue_stats(&self, now: Timestamp) -> Result<(i64, Option<Timestamp>), StoreError> {
        let depth: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM notifications WHERE status IN ('pending', 'retrying') AND test = 0",
        )
        .fetch_one(self.reader())
        .await?;
        let oldest: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(next_attempt_at) FROM notifications WHERE status IN ('pending', 'retrying') AND test = 0 \
             AND next_attempt_at <= $1",
        )
        .bind(now.millis())
        .fetch_one(self.reader())
        .await?;
        Ok((depth, oldest.map(Timestamp)))
    }

    /// Attempts to `app_id`'s endpoints since `since`, in buckets of `bucket_ms`: per
    /// bucket (its index from `since`) the successes and the failures. The notifications
    /// made since `since` are found through the app's index, their attempts by key.
    pub async fn attempt_buckets(
        &self,
        app_id: &str,
        since: Timestamp,
        bucket_ms: i64,
    ) -> Result<Vec<(i64, i64, i64)>, StoreError> {
        // An attempt is never older than its notification; look back one retention-free
        // day further for notifications retried into the window.
        let made_after = since.millis() - 86_400_000;
        let rows = sqlx::query(
            "SELECT (a.started_at - $2) / $3 AS bucket, \
                    SUM(CASE WHEN a.outcome = 'success' THEN 1 ELSE 0 END) AS ok, \
                    SUM(CASE WHEN a.outcome = 'success' THEN 0 ELSE 1 END) AS failed \
             FROM notifications n JOIN attempts a ON a.notification_seq = n.seq \
             WHERE n.app_id = $1 AND n.created_at >= $4 AND a.started_at >= $2 \
             GROUP BY (a.started_at - $2) / $3 ORDER BY bucket",
        )
        .bind(app_id)
        .bind(since.millis())
        .bind(bucket_ms.max(1))
        .bind(made_after)
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get::<i64, _>("bucket")?,
                    r.try_get::<i64, _>("ok")?,
                    r.try_get::<i64, _>("failed")?,
                ))
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
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
