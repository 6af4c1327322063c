//! The delivery queue: notifications in `pending` or `retrying`, ordered by
//! `(next_attempt_at, seq)`, claimed with leases so that at most one attempt per
//! (configuration, realm) is in flight across every node.

use crate::notifications::{notification, Notification, NotificationStatus, COLUMNS};
use crate::signals::{announce, Signal};
use crate::{Backend, Store, StoreError};
use ledgerhook_domain::{ConfigState, Ordering, Timestamp};
use sqlx::Row;

/// A notification that may be attempted now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// Its sequence number.
    pub seq: i64,
    /// Its configuration.
    pub config_id: i64,
    /// Its realm.
    pub realm_id: String,
    /// The configuration's endpoint.
    pub url: String,
}

/// The stored form of an attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttemptRecord {
    /// 1 for the first attempt.
    pub number: i64,
    /// When it started.
    pub started_at: Timestamp,
    /// How long it took.
    pub duration_ms: i64,
    /// `success`, `http`, `timeout`, `connect`, `tls`, `redirect` or `refused`.
    pub outcome: String,
    /// The HTTP status, if any.
    pub status_code: Option<i64>,
    /// What went wrong.
    pub error: Option<String>,
    /// The first 1 KiB of the answer.
    pub response_body: Option<String>,
}

/// What an attempt's result does to its notification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Delivered.
    Delivered,
    /// Failed; try again at this time.
    Retry(Timestamp),
    /// Failed for the last time: drop it, blacklist the configuration, hold the rest of
    /// its undelivered notifications.
    DropAndBlacklist,
    /// A manual redelivery failed: the status stays as it was.
    Unchanged,
    /// A test send failed: it is dropped, the configuration untouched.
    Drop,
}

/// Attempts made to a notification, and when the first was.
#[derive(Clone, Debug)]
pub struct DeliveryState {
    /// The notification.
    pub notification: Notification,
    /// When its first attempt started, if any.
    pub first_attempt_at: Option<Timestamp>,
}

impl Store {
    /// Notifications due at `now` whose stream has no attempt in flight and — under
    /// strict ordering — no older undelivered notification; soonest first, one per
    /// stream, at most `limit`.
    pub async fn claimable(
        &self,
        now: Timestamp,
        default_ordering: Ordering,
        limit: u32,
    ) -> Result<Vec<Candidate>, StoreError> {
        let rows = sqlx::query(
            "SELECT n.seq, n.config_id, n.realm_id, wc.url FROM notifications n \
             JOIN webhook_configs wc ON wc.id = n.config_id AND wc.state = 'active' \
             WHERE n.status IN ('pending', 'retrying') AND n.test = 0 AND n.next_attempt_at <= $1 \
             AND NOT EXISTS (SELECT 1 FROM stream_leases l WHERE l.config_id = n.config_id AND l.realm_id = n.realm_id \
                             AND l.lease_until > $1) \
             AND (COALESCE(wc.ordering, $2) = 'best-effort' OR NOT EXISTS ( \
                  SELECT 1 FROM notifications o WHERE o.config_id = n.config_id AND o.realm_id = n.realm_id \
                  AND o.seq < n.seq AND o.status IN ('pending', 'retrying', 'held'))) \
             ORDER BY n.next_attempt_at, n.seq LIMIT $3",
        )
        .bind(now.millis())
        .bind(default_ordering.as_str())
        .bind(i64::from(limit))
        .fetch_all(self.reader())
        .await?;
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for row in rows {
            let candidate = Candidate {
                seq: row.try_get("seq")?,
                config_id: row.try_get("config_id")?,
                realm_id: row.try_get("realm_id")?,
                url: row.try_get("url")?,
            };
            if seen.insert((candidate.config_id, candidate.realm_id.clone())) {
                out.push(candidate);
            }
        }
        Ok(out)
    }

    /// Takes the stream's lease and the notification of each candidate for `owner` until
    /// `until`, in one transaction; answers, per candidate, the notification when both
    /// were free (`None`: another node was faster).
    pub async fn claim(
        &self,
        candidates: &[Candidate],
        owner: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<Vec<Option<DeliveryState>>, StoreError> {
        let mut tx = self.writer().begin().await?;
        let mut claimed = Vec::with_capacity(candidates.len());
        for candidate in candidates {
            claimed.push(claim_one(&mut tx, candidate, owner, now, until).await?);
        }
        tx.commit().await?;
        Ok(claimed)
    }

    /// The notification with its first attempt time, for an attempt.
    pub async fn delivery_state(&self, seq: i64) -> Result<Option<DeliveryState>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS}, first_attempt_at FROM notifications WHERE seq = $1"
        ))
        .bind(seq)
        .fetch_optional(self.reader())
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(DeliveryState {
            notification: notification(&row)?,
            first_attempt_at: row.try_get::<Option<i64>, _>("first_attempt_at")?.map(Timestamp),
        }))
    }

    /// Records attempts and their consequences in one transaction, releasing the stream
    /// leases they held.
    pub async fn record_attempts(&self, results: &[AttemptResult], now: Timestamp) -> Result<(), StoreError> {
        let mut tx = self.writer().begin().await?;
        let mut freed = false;
        for result in results {
            record_one(&mut tx, result, now).await?;
            freed |= result.owner.is_some();
        }
        if freed {
            // Streams are free again: other nodes may have their next notifications.
            announce(&mut tx, self.backend(), Signal::Notifications).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Releases every lease `owner` holds (a stopping node's unfinished attempts).
    pub async fn release_leases(&self, owner: &str) -> Result<(), StoreError> {
        let mut tx = self.writer().begin().await?;
        sqlx::query("UPDATE notifications SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = $1")
            .bind(owner)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM stream_leases WHERE owner = $1")
            .bind(owner)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// On SQLite (one process, held by the file lock) no other node can own a lease:
    /// leases left by a crashed process are released at start instead of waiting for
    /// them to expire.
    pub async fn release_orphaned_leases(&self) -> Result<(), StoreError> {
        if self.backend() != Backend::Sqlite {
            return Ok(());
        }
        sqlx::query(
            "UPDATE notifications SET lease_owner = NULL, lease_until = NULL WHERE lease_owner IS NOT NULL",
        )
        .execute(self.writer())
        .await?;
        sqlx::query("DELETE FROM stream_leases")
            .execute(self.writer())
            .await?;
        Ok(())
    }

    /// When the next notification is due, if any is queued.
    pub async fn next_attempt_due(&self) -> Result<Option<Timestamp>, StoreError> {
        let due: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(next_attempt_at) FROM notifications WHERE status IN ('pending', 'retrying') AND test = 0",
        )
        .fetch_one(self.reader())
        .await?;
        Ok(due.map(Timestamp))
    }

    /// Every attempt of a notification, first first.
    pub async fn attempts(&self, seq: i64) -> Result<Vec<AttemptRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT number, started_at, duration_ms, outcome, status_code, error, response_body FROM attempts \
             WHERE notification_seq = $1 ORDER BY number",
        )
        .bind(seq)
        .fetch_all(self.reader())
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.push(AttemptRecord {
                number: row.try_get("number")?,
                started_at: Timestamp(row.try_get("started_at")?),
                duration_ms: row.try_get("duration_ms")?,
                outcome: row.try_get("outcome")?,
                status_code: row.try_get("status_code")?,
                error: row.try_get("error")?,
                response_body: row.try_get("response_body")?,
            });
        }
        Ok(out)
    }

    /// Queues again every notification of `config_id` made at or after `since` that is
    /// neither delivered nor held; answers how many.
    pub async fn recover(&self, config_id: i64, since: Timestamp, now: Timestamp) -> Result<u64, StoreError> {
        let mut tx = self.writer().begin().await?;
        let result = sqlx::query(
            "UPDATE notifications SET status = 'pending', next_attempt_at = $1 \
             WHERE config_id = $2 AND created_at >= $3 AND status IN ('pending', 'retrying', 'dropped') AND test = 0",
        )
        .bind(now.millis())
        .bind(config_id)
        .bind(since.millis())
        .execute(&mut *tx)
        .await?;
        announce(&mut tx, self.backend(), Signal::Notifications).await?;
        tx.commit().await?;
        Ok(result.rows_affected())
    }

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
    /// `cutoff`, and idempotency keys past their day; answers the rows removed.
    pub async fn purge(&self, cutoff: Timestamp, now: Timestamp) -> Result<u64, StoreError> {
        let mut tx = self.writer().begin().await?;
        let mut removed = 0;
        for sql in [
            "DELETE FROM attempts WHERE notification_seq IN (SELECT seq FROM notifications WHERE created_at < $1 \
             AND status IN ('delivered', 'dropped'))",
            "DELETE FROM notifications WHERE created_at < $1 AND status IN ('delivered', 'dropped')",
            "DELETE FROM change_events WHERE accepted_at < $1 \
             AND NOT EXISTS (SELECT 1 FROM window_events we WHERE we.event_seq = change_events.seq)",
        ] {
            removed += sqlx::query(sql).bind(cutoff.millis()).execute(&mut *tx).await?.rows_affected();
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

/// The configuration's last notification was dropped: it becomes blacklisted, and its
/// other undelivered notifications are held (no more attempts are made to it).
async fn blacklist(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    config_id: i64,
    now: Timestamp,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE webhook_configs SET state = 'blacklisted', state_since = $1 WHERE id = $2 AND state = 'active'",
    )
    .bind(now.millis())
    .bind(config_id)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "UPDATE notifications SET status = 'held', next_attempt_at = NULL \
         WHERE config_id = $1 AND status IN ('pending', 'retrying') AND test = 0",
    )
    .bind(config_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// One attempt's outcome to record.
#[derive(Clone, Debug)]
pub struct AttemptResult {
    /// The notification.
    pub seq: i64,
    /// The attempt.
    pub attempt: AttemptRecord,
    /// What it leads to.
    pub decision: Decision,
    /// The lease owner whose stream lease to release, if the attempt was claimed.
    pub owner: Option<String>,
    /// The notification's configuration, if it has one.
    pub config_id: Option<i64>,
    /// The notification's realm.
    pub realm_id: String,
}

type Tx = sqlx::Transaction<'static, sqlx::Any>;

async fn claim_one(
    tx: &mut Tx,
    candidate: &Candidate,
    owner: &str,
    now: Timestamp,
    until: Timestamp,
) -> Result<Option<DeliveryState>, sqlx::Error> {
    let leased = sqlx::query(
        "INSERT INTO stream_leases (config_id, realm_id, owner, lease_until) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (config_id, realm_id) DO UPDATE SET owner = excluded.owner, lease_until = excluded.lease_until \
         WHERE stream_leases.lease_until <= $5",
    )
    .bind(candidate.config_id)
    .bind(&candidate.realm_id)
    .bind(owner)
    .bind(until.millis())
    .bind(now.millis())
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if leased == 0 {
        return Ok(None);
    }
    let claimed = sqlx::query(&format!(
        "UPDATE notifications SET lease_owner = $1, lease_until = $2 \
         WHERE seq = $3 AND status IN ('pending', 'retrying') AND next_attempt_at <= $4 \
         RETURNING {COLUMNS}, first_attempt_at"
    ))
    .bind(owner)
    .bind(until.millis())
    .bind(candidate.seq)
    .bind(now.millis())
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = claimed else {
        sqlx::query("DELETE FROM stream_leases WHERE config_id = $1 AND realm_id = $2 AND owner = $3")
            .bind(candidate.config_id)
            .bind(&candidate.realm_id)
            .bind(owner)
            .execute(&mut **tx)
            .await?;
        return Ok(None);
    };
    Ok(Some(DeliveryState {
        notification: notification(&row)?,
        first_attempt_at: row.try_get::<Option<i64>, _>("first_attempt_at")?.map(Timestamp),
    }))
}

async fn record_one(tx: &mut Tx, result: &AttemptResult, now: Timestamp) -> Result<(), sqlx::Error> {
    let attempt = &result.attempt;
    sqlx::query(
        "INSERT INTO attempts (notification_seq, number, started_at, duration_ms, outcome, status_code, error, response_body) \
         VALUES ($1, (SELECT COALESCE(MAX(number), 0) + 1 FROM attempts WHERE notification_seq = $1), $2, $3, $4, $5, $6, $7)",
    )
    .bind(result.seq)
    .bind(attempt.started_at.millis())
    .bind(attempt.duration_ms)
    .bind(&attempt.outcome)
    .bind(attempt.status_code)
    .bind(attempt.error.as_deref())
    .bind(attempt.response_body.as_deref())
    .execute(&mut **tx)
    .await?;
    let (status, next): (Option<NotificationStatus>, Option<i64>) = match &result.decision {
        Decision::Delivered => (Some(NotificationStatus::Delivered), None),
        Decision::Retry(at) => (Some(NotificationStatus::Retrying), Some(at.millis())),
        Decision::DropAndBlacklist | Decision::Drop => (Some(NotificationStatus::Dropped), None),
        Decision::Unchanged => (None, None),
    };
    // Unchanged keeps status and due time: the CASE leaves them as they are.
    sqlx::query(
        "UPDATE notifications SET status = CASE WHEN $1 = '' THEN status ELSE $1 END, \
         next_attempt_at = CASE WHEN $1 = '' THEN next_attempt_at ELSE $2 END, attempt_count = attempt_count + 1, \
         first_attempt_at = COALESCE(first_attempt_at, $3), lease_owner = NULL, lease_until = NULL WHERE seq = $4",
    )
    .bind(status.map(|s| s.as_str()).unwrap_or(""))
    .bind(next)
    .bind(attempt.started_at.millis())
    .bind(result.seq)
    .execute(&mut **tx)
    .await?;
    let Some(config_id) = result.config_id else {
        return Ok(());
    };
    let realm_id = &result.realm_id;
    if let Some(error) = attempt
        .error
        .as_deref()
        .filter(|_| result.decision != Decision::Delivered)
    {
        sqlx::query("UPDATE webhook_configs SET last_error = $1 WHERE id = $2")
            .bind(error)
            .bind(config_id)
            .execute(&mut **tx)
            .await?;
    }
    if result.decision == Decision::DropAndBlacklist {
        blacklist(tx, config_id, now).await?;
    }
    if let Some(owner) = result.owner.as_deref() {
        sqlx::query("DELETE FROM stream_leases WHERE owner = $1 AND config_id = $2 AND realm_id = $3")
            .bind(owner)
            .bind(config_id)
            .bind(realm_id)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

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
