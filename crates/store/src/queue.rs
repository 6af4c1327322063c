//! The delivery queue: notifications in `pending` or `retrying`, ordered by
//! `(next_attempt_at, seq)`, claimed with leases so that at most one attempt per
//! (configuration, realm) is in flight across every node.

use crate::notifications::{notification, Notification, NotificationStatus, COLUMNS};
use crate::signals::Signal;
use crate::sql::{Params, ROWS_PER_STATEMENT};
use crate::{Backend, Store, StoreError};
use ledgerhook_domain::{ConfigState, Ordering, Timestamp};
use sqlx::Row;
use std::collections::{HashMap, HashSet};

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
    /// The configuration delivers strictly in order.
    pub strict: bool,
}

/// A stream whose attempt has been in flight for a while: its due notifications from
/// `from_seq` on are parked until its lease ends, so that claim rounds stop walking past
/// them (see [`Store::record_round`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parking {
    /// The stream's configuration.
    pub config_id: i64,
    /// The stream's realm.
    pub realm_id: String,
    /// The notification in flight: rows from it on are parked.
    pub from_seq: i64,
    /// The end of the stream's lease: parked rows are due then.
    pub until: Timestamp,
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

/// What [`Store::claimable`] found.
#[derive(Debug)]
pub struct Claimable {
    /// One candidate per stream, soonest first.
    pub candidates: Vec<Candidate>,
    /// The limit was reached: more may be due beyond it. When false, nothing else was
    /// due and free at that moment, so the claim loop need not look again before
    /// something wakes it.
    pub more: bool,
}

impl Store {
    /// Notifications due at `now` whose stream has no attempt in flight and — under
    /// strict ordering — no older undelivered notification; soonest first, one per
    /// stream, at most `limit` rows read.
    pub async fn claimable(
        &self,
        now: Timestamp,
        default_ordering: Ordering,
        limit: u32,
    ) -> Result<Claimable, StoreError> {
        let hint = due_index(self.backend());
        let config = config_join(self.backend());
        let rows = sqlx::query(&format!(
            "SELECT n.seq, n.config_id, n.realm_id, wc.url, \
                    CASE WHEN COALESCE(wc.ordering, $2) = 'best-effort' THEN 0 ELSE 1 END AS strict \
             FROM notifications n{hint} {config} \
             WHERE n.status IN ('pending', 'retrying') AND n.test = 0 AND n.next_attempt_at <= $1 \
             AND NOT EXISTS (SELECT 1 FROM stream_leases l WHERE l.config_id = n.config_id AND l.realm_id = n.realm_id \
                             AND l.lease_until > $1) \
             AND (COALESCE(wc.ordering, $2) = 'best-effort' OR NOT EXISTS ( \
                  SELECT 1 FROM notifications o WHERE o.config_id = n.config_id AND o.realm_id = n.realm_id \
                  AND o.seq < n.seq AND o.status IN ('pending', 'retrying', 'held'))) \
             ORDER BY n.next_attempt_at, n.seq LIMIT $3"
        ))
        .bind(now.millis())
        .bind(default_ordering.as_str())
        .bind(i64::from(limit))
        .fetch_all(self.reader())
        .await?;
        let more = rows.len() >= limit as usize;
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for row in rows {
            let candidate = Candidate {
                seq: row.try_get("seq")?,
                config_id: row.try_get("config_id")?,
                realm_id: row.try_get("realm_id")?,
                url: row.try_get("url")?,
                strict: row.try_get::<i64, _>("strict")? != 0,
            };
            if seen.insert((candidate.config_id, candidate.realm_id.clone())) {
                out.push(candidate);
            }
        }
        Ok(Claimable {
            candidates: out,
            more,
        })
    }

    /// Takes the stream's lease and the notification of each candidate for `owner` until
    /// `until`, in one transaction of two or three statements; answers, per candidate,
    /// the notification when both were free (`None`: another node was faster, or the
    /// notification is no longer due).
    pub async fn claim(
        &self,
        candidates: &[Candidate],
        owner: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<Vec<Option<DeliveryState>>, StoreError> {
        let backend = self.backend();
        let mut tx = self.writer().begin().await?;
        let mut streams = HashSet::new();
        let unique: Vec<&Candidate> = candidates
            .iter()
            .filter(|c| streams.insert((c.config_id, c.realm_id.as_str())))
            .collect();
        let mut leased = HashSet::new();
        for chunk in unique.chunks(ROWS_PER_STATEMENT) {
            leased.extend(take_leases(&mut tx, backend, chunk, owner, now, until).await?);
        }
        let leased: Vec<&Candidate> = unique
            .into_iter()
            .filter(|c| leased.contains(&(c.config_id, c.realm_id.clone())))
            .collect();
        let wanted: Vec<i64> = leased.iter().map(|c| c.seq).collect();
        let mut states = HashMap::new();
        for chunk in wanted.chunks(ROWS_PER_STATEMENT) {
            for state in take_notifications(&mut tx, backend, chunk, now).await? {
                states.insert(state.notification.seq, state);
            }
        }
        let idle: Vec<&Candidate> = leased
            .into_iter()
            .filter(|c| !states.contains_key(&c.seq))
            .collect();
        for chunk in idle.chunks(ROWS_PER_STATEMENT) {
            release_streams(
                &mut tx,
                backend,
                owner,
                chunk.iter().map(|c| (c.config_id, c.realm_id.as_str())),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(candidates.iter().map(|c| states.remove(&c.seq)).collect())
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
    /// leases they held. Attempts and notification updates are written a round at a
    /// time, each notification at most once per round.
    pub async fn record_attempts(&self, results: &[AttemptResult], now: Timestamp) -> Result<(), StoreError> {
        self.record_round(&[], results, now).await
    }

    /// Parks `parkings` and records `results`, in one transaction.
    ///
    /// A stream's due notifications cannot be claimed while its lease is held, yet every
    /// claim round walks past them in due order. A long attempt (a slow or dead endpoint)
    /// therefore parks them: they become due at the lease's end, exactly (a crashed
    /// owner's stream is claimable again then). A parked stream's result (its
    /// `parked_until`) makes them due at once again before the decision is applied.
    pub async fn record_round(
        &self,
        parkings: &[Parking],
        results: &[AttemptResult],
        now: Timestamp,
    ) -> Result<(), StoreError> {
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
        move_streams(&mut tx, backend, results, now).await?;
        for result in results {
            if let (Some(config_id), Decision::DropAndBlacklist) = (result.config_id, &result.decision) {
                blacklist(&mut tx, config_id, now).await?;
            }
        }
        let mut freed = false;
        let leases: Vec<(&str, i64, &str)> = results
            .iter()
            .filter_map(|r| Some((r.owner.as_deref()?, r.config_id?, r.realm_id.as_str())))
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
        if freed {
            // Streams are free again: other nodes may have their next notifications.
            self.announcer().announce(&mut tx, Signal::Notifications).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Releases every lease `owner` holds (a stopping node's unfinished attempts); what
    /// their streams had parked is due at once.
    pub async fn release_leases(&self, owner: &str) -> Result<(), StoreError> {
        self.release_where("owner = $1", &[Bind::Text(owner)]).await
    }

    /// Releases `owner`'s lease of one stream (an attempt that could not run); what it
    /// had parked is due at once. Other streams' leases stay.
    pub async fn release_stream(
        &self,
        owner: &str,
        config_id: i64,
        realm_id: &str,
    ) -> Result<(), StoreError> {
        let condition = "owner = $1 AND config_id = $2 AND realm_id = $3";
        self.release_where(
            condition,
            &[Bind::Text(owner), Bind::Int(config_id), Bind::Text(realm_id)],
        )
        .await
    }

    /// Deletes the leases `condition` selects and makes their parked notifications due now.
    async fn release_where(&self, condition: &str, binds: &[Bind<'_>]) -> Result<(), StoreError> {
        let mut tx = self.writer().begin().await?;
        let sql =
            format!("DELETE FROM stream_leases WHERE {condition} RETURNING config_id, realm_id, lease_until");
        let mut query = sqlx::query(&sql);
        for bind in binds {
            query = match bind {
                Bind::Text(text) => query.bind(*text),
                Bind::Int(int) => query.bind(*int),
            };
        }
        let released = query
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|row| {
                Ok(Parking {
                    config_id: row.try_get("config_id")?,
                    realm_id: row.try_get("realm_id")?,
                    from_seq: 0,
                    until: Timestamp(row.try_get("lease_until")?),
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        move_parked(
            &mut tx,
            self.backend(),
            &released,
            Timestamp::now(),
            Direction::Unpark,
        )
        .await?;
        if !released.is_empty() {
            // Streams are free again: other nodes may have their next notifications.
            self.announcer().announce(&mut tx, Signal::Notifications).await?;
        }
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
        self.release_where("1 = 1", &[]).await
    }

    /// When the dispatcher must look again at the latest, if nothing wakes it sooner:
    /// the next time a queued notification becomes due (after `now`), or a stream lease
    /// ends (another node's attempt, or one of a node that died). Notifications already
    /// due but not claimed are behind a lease (or an older notification under strict
    /// ordering): their stream's release wakes the dispatcher, or the lease's end.
    pub async fn next_attempt_due(&self, now: Timestamp) -> Result<Option<Timestamp>, StoreError> {
        // One round trip; each side reads the first entry of its index after `now` (an
        // aggregate's MIN was planned, on a young PostgreSQL database, as a scan of every
        // future row).
        let hint = due_index(self.backend());
        let (due, lease_end): (Option<i64>, Option<i64>) = sqlx::query_as(&format!(
            "SELECT (SELECT next_attempt_at FROM notifications{hint} \
                     WHERE status IN ('pending', 'retrying') AND test = 0 AND next_attempt_at > $1 \
                     ORDER BY next_attempt_at LIMIT 1), \
                    (SELECT lease_until FROM stream_leases WHERE lease_until > $1 \
                     ORDER BY lease_until LIMIT 1)"
        ))
        .bind(now.millis())
        .fetch_one(self.reader())
        .await?;
        Ok([due, lease_end].into_iter().flatten().min().map(Timestamp))
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
        self.announcer().announce(&mut tx, Signal::Notifications).await?;
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
    /// Its stream is delivered strictly in order (the rest of the stream waits for a
    /// retry).
    pub strict: bool,
    /// It had failed attempts before this one.
    pub retried: bool,
    /// The end of the lease its stream was parked until, if the attempt parked it.
    pub parked_until: Option<Timestamp>,
}

type Tx = sqlx::Transaction<'static, sqlx::Any>;

/// The index hint for reading the queue in due order. SQLite, without statistics,
/// prefers the status index and sorts every queued row; the partial queue index hands
/// them over in due order.
fn due_index(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => " INDEXED BY notifications_due",
        Backend::Postgres => "",
    }
}

/// How the claim query joins each due notification's active configuration. On
/// PostgreSQL a lateral lookup by id: as a plain join, the generic plan hashed every
/// configuration on each claim round. SQLite looks each up by id anyway.
fn config_join(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "JOIN webhook_configs wc ON wc.id = n.config_id AND wc.state = 'active'",
        Backend::Postgres => {
            "JOIN LATERAL (SELECT url, ordering FROM webhook_configs \
                           WHERE id = n.config_id AND state = 'active' LIMIT 1) wc ON TRUE"
        }
    }
}

/// A value bound into a lease release's condition.
enum Bind<'a> {
    Text(&'a str),
    Int(i64),
}

/// Which way [`move_parked`] moves a stream's notifications.
#[derive(Clone, Copy)]
enum Direction {
    /// Its due notifications from `from_seq` on become due at `until` (the lease's end).
    Park,
    /// What was parked (from `from_seq` on, due exactly at `until`) becomes due now.
    Unpark,
}

/// Parks or unparks each stream of `parkings` (one statement per 200 streams; nothing
/// when there are none).
async fn move_parked(
    tx: &mut Tx,
    backend: Backend,
    parkings: &[Parking],
    now: Timestamp,
    direction: Direction,
) -> Result<(), sqlx::Error> {
    // v: (config_id, realm_id, from_seq, until, now).
    let (set, due) = match direction {
        Direction::Park => ("v.column4", "<= v.column5"),
        Direction::Unpark => ("v.column5", "= v.column4"),
    };
    for chunk in parkings.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "UPDATE notifications SET next_attempt_at = {set} FROM (VALUES {}) AS v \
             WHERE notifications.config_id = v.column1 AND notifications.realm_id = v.column2 \
             AND notifications.seq >= v.column3 AND notifications.status IN ('pending', 'retrying') \
             AND notifications.test = 0 AND notifications.next_attempt_at {due}",
            Params::new(backend).rows(chunk.len(), 5)
        );
        let mut query = sqlx::query(&sql);
        for parking in chunk {
            query = query
                .bind(parking.config_id)
                .bind(parking.realm_id.as_str())
                .bind(parking.from_seq)
                .bind(parking.until.millis())
                .bind(now.millis());
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Takes the leases of `candidates`' streams that are free or expired; answers the
/// streams taken.
async fn take_leases(
    tx: &mut Tx,
    backend: Backend,
    candidates: &[&Candidate],
    owner: &str,
    now: Timestamp,
    until: Timestamp,
) -> Result<Vec<(i64, String)>, sqlx::Error> {
    let mut params = Params::new(backend);
    let sql = format!(
        "INSERT INTO stream_leases (config_id, realm_id, owner, lease_until) VALUES {} \
         ON CONFLICT (config_id, realm_id) DO UPDATE SET owner = excluded.owner, lease_until = excluded.lease_until \
         WHERE stream_leases.lease_until <= {} RETURNING config_id, realm_id",
        params.rows(candidates.len(), 4),
        params.next()
    );
    let mut query = sqlx::query(&sql);
    for c in candidates {
        query = query
            .bind(c.config_id)
            .bind(c.realm_id.as_str())
            .bind(owner)
            .bind(until.millis());
    }
    let rows = query.bind(now.millis()).fetch_all(&mut **tx).await?;
    rows.iter()
        .map(|row| Ok((row.try_get("config_id")?, row.try_get("realm_id")?)))
        .collect()
}

/// The notifications `seqs` that are still due (their streams' leases are held).
async fn take_notifications(
    tx: &mut Tx,
    backend: Backend,
    seqs: &[i64],
    now: Timestamp,
) -> Result<Vec<DeliveryState>, sqlx::Error> {
    let mut params = Params::new(backend);
    let list: Vec<String> = seqs.iter().map(|_| params.next()).collect();
    let sql = format!(
        "SELECT {COLUMNS}, first_attempt_at FROM notifications \
         WHERE seq IN ({}) AND status IN ('pending', 'retrying') AND next_attempt_at <= {}",
        list.join(", "),
        params.next()
    );
    let mut query = sqlx::query(&sql);
    for seq in seqs {
        query = query.bind(*seq);
    }
    let rows = query.bind(now.millis()).fetch_all(&mut **tx).await?;
    rows.iter()
        .map(|row| {
            Ok(DeliveryState {
                notification: notification(row)?,
                first_attempt_at: row.try_get::<Option<i64>, _>("first_attempt_at")?.map(Timestamp),
            })
        })
        .collect()
}

/// Releases `owner`'s leases of `streams`.
async fn release_streams<'a>(
    tx: &mut Tx,
    backend: Backend,
    owner: &str,
    streams: impl ExactSizeIterator<Item = (i64, &'a str)>,
) -> Result<(), sqlx::Error> {
    let mut params = Params::new(backend);
    let owner_param = params.next();
    let which = params.any_of(streams.len(), |p| {
        format!("config_id = {} AND realm_id = {}", p.next(), p.next())
    });
    let sql = format!("DELETE FROM stream_leases WHERE owner = {owner_param} AND {which}");
    let mut query = sqlx::query(&sql).bind(owner);
    for (config_id, realm_id) in streams {
        query = query.bind(config_id).bind(realm_id);
    }
    query.execute(&mut **tx).await?;
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
            let rest: Vec<String> = (0..6).map(|_| params.next()).collect();
            format!("({seq}, {number}, {})", rest.join(", "))
        })
        .collect();
    let sql = format!(
        "INSERT INTO attempts (notification_seq, number, started_at, duration_ms, outcome, status_code, error, response_body) \
         VALUES {}",
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
            .bind(attempt.response_body.as_deref());
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
/// that fails and will be retried, the stream's later pending notifications become due
/// no earlier than the retry (so the queue's due part holds only what can be sent); when
/// a retried notification is delivered, they are due at once. One statement for each
/// direction, for the whole round.
async fn move_streams(
    tx: &mut Tx,
    backend: Backend,
    results: &[AttemptResult],
    now: Timestamp,
) -> Result<(), sqlx::Error> {
    let mut back = Vec::new();
    let mut forward = Vec::new();
    for result in results.iter().filter(|r| r.strict) {
        let Some(config_id) = result.config_id else {
            continue;
        };
        let stream = (config_id, result.realm_id.as_str(), result.seq);
        match result.decision {
            Decision::Retry(at) => back.push((stream, at.millis())),
            Decision::Delivered if result.retried => forward.push((stream, now.millis())),
            _ => {}
        }
    }
    for (moves, comparison) in [(back, "<"), (forward, ">")] {
        for chunk in moves.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "UPDATE notifications SET next_attempt_at = v.column4 FROM (VALUES {}) AS v \
                 WHERE notifications.config_id = v.column1 AND notifications.realm_id = v.column2 \
                 AND notifications.seq > v.column3 AND notifications.status = 'pending' \
                 AND notifications.next_attempt_at {comparison} v.column4",
                Params::new(backend).rows(chunk.len(), 4)
            );
            let mut query = sqlx::query(&sql);
            for ((config_id, realm_id, seq), due) in chunk {
                query = query.bind(*config_id).bind(*realm_id).bind(*seq).bind(*due);
            }
            query.execute(&mut **tx).await?;
        }
    }
    Ok(())
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
