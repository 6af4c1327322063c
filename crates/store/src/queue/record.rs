//! Recording: attempt results and parkings in one transaction per round, with their
//! consequences (retries, streams moved, blacklisting, leases freed); reading a
//! notification's attempts; recovering a configuration's notifications.

use super::continuation::{first_after, take_continuations, NextInStream};
use super::{
    decode_headers, encode_headers, lock_streams, move_parked, AttemptRecord, AttemptResult, Continuation,
    Decision, Direction, Parking, Tx,
};
use crate::notifications::{NotificationStatus, WAITING_BEHIND};
use crate::signals::Signal;
use crate::sql::{Params, ROWS_PER_STATEMENT};
use crate::{Backend, Store, StoreError};
use ledgerhook_domain::Timestamp;
use sqlx::Row;
use std::collections::HashMap;

/// How many times [`Store::record_round`] runs a round that the database rolled back
/// because it conflicted with another transaction.
const RECORD_TRIES: u32 = 5;

impl Store {
    /// Records attempts and their consequences in one transaction, releasing the stream
    /// leases they held. Attempts and notification updates are written a round at a
    /// time, each notification at most once per round.
    /// Streams are released, never continued (`continue_until` is ignored).
    pub async fn record_attempts(&self, results: &[AttemptResult], now: Timestamp) -> Result<(), StoreError> {
        let released: Vec<AttemptResult> = results
            .iter()
            .cloned()
            .map(|r| AttemptResult {
                continue_until: None,
                holds_stream: false,
                ..r
            })
            .collect();
        self.record_round(&[], &released, now).await?;
        Ok(())
    }

    /// Parks `parkings` and records `results`, in one transaction.
    ///
    /// A stream's due notifications cannot be claimed while its lease is held, yet every
    /// claim round walks past them in due order. A long attempt (a slow or dead endpoint)
    /// therefore parks them: they become due at the lease's end, exactly (a crashed
    /// owner's stream is claimable again then). A parked stream's result (its
    /// `parked_until`) makes them due at once again before the decision is applied.
    ///
    /// Answers, per result, its stream's next notification when the stream continues
    /// (see [`AttemptResult::continue_until`]); the caller must send it or release the
    /// stream.
    ///
    /// On PostgreSQL a concurrent change to the same rows in another order (deleting a
    /// configuration or a connection while its attempts are recorded) can deadlock; the
    /// database then rolls one transaction back. The round is run again, up to
    /// `RECORD_TRIES` (5) times in all: the attempts were made, and losing their results
    /// would send them again.
    pub async fn record_round(
        &self,
        parkings: &[Parking],
        results: &[AttemptResult],
        now: Timestamp,
    ) -> Result<Vec<Option<Continuation>>, StoreError> {
        let mut tries = 1;
        loop {
            match self.record_round_once(parkings, results, now).await {
                Err(err) if err.is_conflict_between_transactions() && tries < RECORD_TRIES => {
                    tracing::warn!(error = %err, tries, "recording attempts conflicted with another transaction; running it again");
                    tries += 1;
                }
                outcome => return outcome,
            }
        }
    }

    /// One try of [`Store::record_round`].
    async fn record_round_once(
        &self,
        parkings: &[Parking],
        results: &[AttemptResult],
        now: Timestamp,
    ) -> Result<Vec<Option<Continuation>>, StoreError> {
        let backend = self.backend();
        let mut tx = self.writer().begin().await?;
        move_parked(&mut tx, backend, parkings, now, Direction::Park).await?;
        let unparked: Vec<Parking> = results
            .iter()
            .filter_map(|r| {
                Some(Parking {
                    config_id: r.config_id?,
                    realm_id: r.realm_id.clone(),
                    from_seq: r.seq,
                    until: r.parked_until?,
                })
            })
            .collect();
        move_parked(&mut tx, backend, &unparked, now, Direction::Unpark).await?;
        for round in rounds_by_notification(results) {
            for chunk in round.chunks(ROWS_PER_STATEMENT) {
                insert_attempts(&mut tx, backend, chunk).await?;
                update_notifications(&mut tx, backend, chunk).await?;
            }
        }
        record_errors(&mut tx, backend, results).await?;
        let strict_next = move_streams(&mut tx, backend, results, now).await?;
        for result in results {
            if let (Some(config_id), Decision::DropAndBlacklist) = (result.config_id, &result.decision) {
                blacklist(&mut tx, config_id, now).await?;
            }
        }
        let continuations = take_continuations(&mut tx, backend, results, &strict_next, now).await?;
        let mut freed = false;
        let leases: Vec<(&str, i64, &str)> = results
            .iter()
            .zip(&continuations)
            .filter(|(r, next)| next.is_none() && !r.holds_stream)
            .filter_map(|(r, _)| Some((r.owner.as_deref()?, r.config_id?, r.realm_id.as_str())))
            .collect();
        for chunk in leases.chunks(ROWS_PER_STATEMENT) {
            let mut params = Params::new(backend);
            let which = params.any_of(chunk.len(), |p| {
                format!(
                    "owner = {} AND config_id = {} AND realm_id = {}",
                    p.next(),
                    p.next(),
                    p.next()
                )
            });
            let sql = format!("DELETE FROM stream_leases WHERE {which}");
            let mut query = sqlx::query(&sql);
            for (owner, config_id, realm_id) in chunk {
                query = query.bind(*owner).bind(*config_id).bind(*realm_id);
            }
            query.execute(&mut *tx).await?;
            freed = true;
        }
        tx.commit().await?;
        if freed {
            // Streams are free again: other nodes may have their next notifications.
            self.announce(Signal::Notifications);
        }
        Ok(continuations)
    }

    /// Every attempt of a notification, first first.
    pub async fn attempts(&self, seq: i64) -> Result<Vec<AttemptRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT number, started_at, duration_ms, outcome, status_code, error, response_body, request_headers \
             FROM attempts \
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
                request_headers: decode_headers(
                    row.try_get::<Option<String>, _>("request_headers")?.as_deref(),
                ),
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
        tx.commit().await?;
        self.announce(Signal::Notifications);
        Ok(result.rows_affected())
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

/// Splits results so that no notification appears twice in a round (a manual
/// redelivery can finish together with a queued attempt of the same notification):
/// round `r` holds the `r`-th result of every notification.
fn rounds_by_notification(results: &[AttemptResult]) -> Vec<Vec<&AttemptResult>> {
    let mut rounds: Vec<Vec<&AttemptResult>> = Vec::new();
    let mut seen: HashMap<i64, usize> = HashMap::new();
    for result in results {
        let occurrence = seen.entry(result.seq).or_insert(0);
        if rounds.len() <= *occurrence {
            rounds.push(Vec::new());
        }
        rounds[*occurrence].push(result);
        *occurrence += 1;
    }
    rounds
}

/// Inserts one attempt row per result, numbered after the notification's last.
async fn insert_attempts(
    tx: &mut Tx,
    backend: Backend,
    results: &[&AttemptResult],
) -> Result<(), sqlx::Error> {
    let mut params = Params::new(backend);
    let rows: Vec<String> = results
        .iter()
        .map(|_| {
            let seq = params.next();
            let number = format!(
                "(SELECT COALESCE(MAX(number), 0) + 1 FROM attempts WHERE notification_seq = {})",
                params.next()
            );
            let rest: Vec<String> = (0..7).map(|_| params.next()).collect();
            format!("({seq}, {number}, {})", rest.join(", "))
        })
        .collect();
    let sql = format!(
        "INSERT INTO attempts (notification_seq, number, started_at, duration_ms, outcome, status_code, error, response_body, \
         request_headers) VALUES {}",
        rows.join(", ")
    );
    let mut query = sqlx::query(&sql);
    for result in results {
        let attempt = &result.attempt;
        query = query
            .bind(result.seq)
            .bind(result.seq)
            .bind(attempt.started_at.millis())
            .bind(attempt.duration_ms)
            .bind(attempt.outcome.as_str())
            .bind(attempt.status_code)
            .bind(attempt.error.as_deref())
            .bind(attempt.response_body.as_deref())
            .bind(encode_headers(&attempt.request_headers));
    }
    query.execute(&mut **tx).await?;
    Ok(())
}

/// Applies each result's decision to its notification. `Unchanged` (a failed manual
/// redelivery) keeps status and due time; so does any failure of a notification that
/// was dropped or held while its attempt was in flight (its configuration or connection
/// was deleted, or its configuration blacklisted): only a delivery changes those.
async fn update_notifications(
    tx: &mut Tx,
    backend: Backend,
    results: &[&AttemptResult],
) -> Result<(), sqlx::Error> {
    let mut params = Params::new(backend);
    let keep = "v.column2 = '' OR (notifications.status IN ('dropped', 'held') AND v.column2 <> 'delivered')";
    let sql = format!(
        "UPDATE notifications SET status = CASE WHEN {keep} THEN notifications.status ELSE v.column2 END, \
         next_attempt_at = CASE WHEN {keep} THEN notifications.next_attempt_at ELSE v.column3 END, \
         attempt_count = notifications.attempt_count + 1, \
         first_attempt_at = COALESCE(notifications.first_attempt_at, v.column4) \
         FROM (VALUES {}) AS v WHERE notifications.seq = v.column1",
        params.rows(results.len(), 4)
    );
    let mut query = sqlx::query(&sql);
    for result in results {
        let (status, next): (Option<NotificationStatus>, Option<i64>) = match &result.decision {
            Decision::Delivered => (Some(NotificationStatus::Delivered), None),
            Decision::Retry(at) => (Some(NotificationStatus::Retrying), Some(at.millis())),
            Decision::DropAndBlacklist | Decision::Drop => (Some(NotificationStatus::Dropped), None),
            Decision::Unchanged => (None, None),
        };
        query = query
            .bind(result.seq)
            .bind(status.map(|s| s.as_str()).unwrap_or(""))
            .bind(next)
            .bind(result.attempt.started_at.millis());
    }
    query.execute(&mut **tx).await?;
    Ok(())
}

/// Under strict ordering the rest of a stream waits for its oldest notification: when
/// that fails and will be retried, the stream's later pending notifications wait behind
/// it ([`WAITING_BEHIND`], outside the queue's due part, so that the due part holds only
/// what can be sent). A notification is moved behind once, not again at each later retry
/// of the same one: a stream of a million waiting behind an endpoint that is down costs
/// a row per retry, not a million. Each delivery makes the next one waiting behind due
/// (one row): the stream's continuation or the next claim round takes it, and the rest
/// stay out of the due part, where a claim round would walk past every one of them.
///
/// Answers the next notification of each stream a delivery moved on (whether it was
/// waiting behind or already due): the stream's continuation.
async fn move_streams(
    tx: &mut Tx,
    backend: Backend,
    results: &[AttemptResult],
    now: Timestamp,
) -> Result<NextInStream, sqlx::Error> {
    let mut behind = Vec::new();
    let mut delivered = Vec::new();
    for result in results.iter().filter(|r| r.strict) {
        let Some(config_id) = result.config_id else {
            continue;
        };
        let stream = (config_id, result.realm_id.as_str(), result.seq);
        match result.decision {
            Decision::Retry(_) => behind.push(stream),
            Decision::Delivered => delivered.push(stream),
            _ => {}
        }
    }
    for chunk in behind.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "UPDATE notifications SET next_attempt_at = {WAITING_BEHIND} FROM (VALUES {}) AS v \
             WHERE notifications.config_id = v.column1 AND notifications.realm_id = v.column2 \
             AND notifications.seq > v.column3 AND notifications.status = 'pending' \
             AND notifications.next_attempt_at <> {WAITING_BEHIND}",
            Params::new(backend).rows(chunk.len(), 3)
        );
        let mut query = sqlx::query(&sql);
        for (config_id, realm_id, seq) in chunk {
            query = query.bind(*config_id).bind(*realm_id).bind(*seq);
        }
        query.execute(&mut **tx).await?;
    }
    let streams: Vec<(i64, &str)> = delivered
        .iter()
        .map(|&(config_id, realm_id, _)| (config_id, realm_id))
        .collect();
    lock_streams(tx, backend, &streams).await?;
    let mut moved_on = NextInStream::new();
    for chunk in delivered.chunks(ROWS_PER_STATEMENT) {
        let next: Vec<i64> = first_after(tx, backend, chunk, None)
            .await?
            .into_iter()
            .map(|(stream, seq)| {
                moved_on.insert(stream, seq);
                seq
            })
            .collect();
        if next.is_empty() {
            continue;
        }
        let mut params = Params::new(backend);
        let due = params.next();
        let keys: Vec<String> = next.iter().map(|_| params.next()).collect();
        let sql = format!(
            "UPDATE notifications SET next_attempt_at = {due} WHERE seq IN ({}) \
             AND status = 'pending' AND next_attempt_at = {WAITING_BEHIND}",
            keys.join(", ")
        );
        let mut query = sqlx::query(&sql).bind(now.millis());
        for seq in &next {
            query = query.bind(*seq);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(moved_on)
}

/// Failed attempts' errors become their configurations' `last_error` (the latest of a
/// round per configuration), in one statement.
async fn record_errors(tx: &mut Tx, backend: Backend, results: &[AttemptResult]) -> Result<(), sqlx::Error> {
    let mut latest: HashMap<i64, &str> = HashMap::new();
    for result in results.iter().filter(|r| r.decision != Decision::Delivered) {
        if let (Some(config_id), Some(error)) = (result.config_id, result.attempt.error.as_deref()) {
            latest.insert(config_id, error);
        }
    }
    let errors: Vec<(i64, &str)> = latest.into_iter().collect();
    for chunk in errors.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "UPDATE webhook_configs SET last_error = v.column2 FROM (VALUES {}) AS v WHERE webhook_configs.id = v.column1",
            Params::new(backend).rows(chunk.len(), 2)
        );
        let mut query = sqlx::query(&sql);
        for (config_id, error) in chunk {
            query = query.bind(*config_id).bind(*error);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}
