//! The delivery queue: notifications in `pending` or `retrying`, ordered by
//! `(next_attempt_at, seq)`, claimed with leases so that at most one attempt per
//! (configuration, realm) is in flight across every node.
//!
//! `claim.rs` reads what is due and takes leases; `leases.rs` releases them; `record.rs`
//! writes attempt results, parkings and their consequences; `continuation.rs` hands a
//! busy stream's next notification on within the recording transaction. This module holds the types
//! they share and the parking statement both directions use.

mod claim;
mod continuation;
mod leases;
mod record;

use crate::notifications::Notification;
use crate::sql::{Params, ROWS_PER_STATEMENT};
use crate::Backend;
use ledgerhook_domain::Timestamp;

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
    /// The headers the request carried (none when it was refused before it was made).
    pub request_headers: Vec<(String, String)>,
}

/// Stored form of an attempt's request headers: one `name: value` line each (names and
/// values made by the signer never hold a line break).
pub(crate) fn encode_headers(headers: &[(String, String)]) -> Option<String> {
    if headers.is_empty() {
        return None;
    }
    let lines: Vec<String> = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}"))
        .collect();
    Some(lines.join("\n"))
}

/// Reads what [`encode_headers`] stored.
pub(crate) fn decode_headers(stored: Option<&str>) -> Vec<(String, String)> {
    stored
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let (name, value) = line.split_once(": ")?;
            Some((name.to_owned(), value.to_owned()))
        })
        .collect()
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

impl DeliveryState {
    /// From a row of the notification's columns and `first_attempt_at`.
    pub(crate) fn from_row(row: &sqlx::any::AnyRow) -> Result<DeliveryState, sqlx::Error> {
        use sqlx::Row;
        Ok(DeliveryState {
            notification: crate::notifications::notification(row)?,
            first_attempt_at: row.try_get::<Option<i64>, _>("first_attempt_at")?.map(Timestamp),
        })
    }
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
    /// For a claimed attempt: if it is delivered and the stream's next notification is
    /// due, keep the stream's lease until then and hand that notification back
    /// ([`Continuation`]) instead of releasing the stream.
    pub continue_until: Option<Timestamp>,
    /// The attempt was made from a [`Continuation`]'s `then` and its holder is already
    /// sending the stream's next notification: recording it neither releases the
    /// stream's lease nor continues the stream.
    pub holds_stream: bool,
}

/// A busy stream's next notification, taken in the transaction that recorded its
/// predecessor's delivery: its stream's lease is kept, until `until`.
#[derive(Clone, Debug)]
pub struct Continuation {
    /// The stream and its endpoint.
    pub candidate: Candidate,
    /// The notification to send.
    pub state: DeliveryState,
    /// Under best-effort ordering, the stream's further due notifications after `state`,
    /// oldest first (at most [`SEND_AHEAD`]): each may be sent as soon as the one before
    /// it is delivered, before that result is committed (recorded with
    /// [`AttemptResult::holds_stream`]). Empty under strict ordering, where a crash
    /// between the two must not reorder the stream.
    pub then: Vec<DeliveryState>,
    /// The lease's new end.
    pub until: Timestamp,
}

/// How many of a best-effort stream's due notifications a [`Continuation`] hands over
/// beyond its first.
pub const SEND_AHEAD: usize = 63;

pub(crate) type Tx = sqlx::Transaction<'static, sqlx::Any>;

/// The index hint for reading the queue in due order. SQLite, without statistics,
/// prefers the status index and sorts every queued row; the partial queue index hands
/// them over in due order.
pub(crate) fn due_index(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => " INDEXED BY notifications_due",
        Backend::Postgres => "",
    }
}

/// Which way [`move_parked`] moves a stream's notifications.
#[derive(Clone, Copy)]
pub(crate) enum Direction {
    /// Its due notifications from `from_seq` on become due at `until` (the lease's end).
    Park,
    /// What was parked (from `from_seq` on, due exactly at `until`) becomes due now.
    Unpark,
}

/// Parks or unparks each stream of `parkings` (one statement per 200 streams; nothing
/// when there are none).
pub(crate) async fn move_parked(
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

/// On PostgreSQL, locks each `(configuration, realm)` stream for the rest of the
/// transaction (advisory locks, taken in one order), so that a notification made behind
/// its stream's newest and the delivery that makes the next one due cannot pass each
/// other: each would otherwise miss the other's uncommitted row, and the notification
/// would wait behind a stream that no longer moves. SQLite has one writer: nothing to do.
pub(crate) async fn lock_streams(
    tx: &mut Tx,
    backend: Backend,
    streams: &[(i64, &str)],
) -> Result<(), sqlx::Error> {
    if backend != Backend::Postgres || streams.is_empty() {
        return Ok(());
    }
    let mut keys: Vec<(i64, &str)> = streams.to_vec();
    keys.sort_unstable();
    keys.dedup();
    for chunk in keys.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "SELECT pg_advisory_xact_lock(k1, k2) FROM (SELECT DISTINCT CAST(v.column1 % 2147483647 AS INTEGER) AS k1, \
             hashtext(v.column2) AS k2 FROM (VALUES {}) AS v ORDER BY k1, k2) AS s",
            Params::new(backend).rows(chunk.len(), 2)
        );
        let mut query = sqlx::query(&sql);
        for (config_id, realm_id) in chunk {
            query = query.bind(*config_id).bind(*realm_id);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}
