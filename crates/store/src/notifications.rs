//! Notifications (fixed bytes) and their attempts.

use crate::model::{decode_error, environment, WebhookConfig};
use crate::sql::{Params, ROWS_PER_STATEMENT};
use crate::{Backend, Store, StoreError};
use ledgerhook_domain::faults::{list_from_storage, list_to_storage, Fault};
use ledgerhook_domain::{Environment, PayloadFormat, Timestamp};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};
use std::fmt;
use std::str::FromStr;

/// A notification body made by the aggregator, with its id.
#[derive(Clone, Debug)]
pub struct NewNotification {
    /// `ntf_…` id (`webhook-id`).
    pub id: String,
    /// The exact bytes every attempt sends.
    pub payload: Vec<u8>,
    /// Events inside.
    pub event_count: usize,
}

/// Where a notification is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NotificationStatus {
    /// Queued, in flight, or waiting behind an older one.
    Pending,
    /// Waiting for a retry.
    Retrying,
    /// An attempt succeeded.
    Delivered,
    /// Given up (last retry failed, or its configuration or connection went away).
    Dropped,
    /// Made while the configuration was blacklisted; sent after reactivation.
    Held,
}

impl NotificationStatus {
    /// Every status.
    pub const ALL: [NotificationStatus; 5] = [
        NotificationStatus::Pending,
        NotificationStatus::Retrying,
        NotificationStatus::Delivered,
        NotificationStatus::Dropped,
        NotificationStatus::Held,
    ];

    /// The name in JSON and storage.
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationStatus::Pending => "pending",
            NotificationStatus::Retrying => "retrying",
            NotificationStatus::Delivered => "delivered",
            NotificationStatus::Dropped => "dropped",
            NotificationStatus::Held => "held",
        }
    }
}

impl fmt::Display for NotificationStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for NotificationStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NotificationStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                format!("unknown status {s:?}: expected pending, retrying, delivered, dropped or held")
            })
    }
}

/// A stored notification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    /// Internal order (acceptance of the notification).
    pub seq: i64,
    /// `ntf_…` id.
    pub id: String,
    /// The configuration (absent for test sends of a deleted configuration).
    pub config_id: Option<i64>,
    /// The app.
    pub app_id: String,
    /// The environment.
    pub environment: Environment,
    /// The realm.
    pub realm_id: String,
    /// Body format.
    pub format: PayloadFormat,
    /// Status.
    pub status: NotificationStatus,
    /// A test send.
    pub test: bool,
    /// The exact bytes.
    pub payload: Vec<u8>,
    /// Events inside.
    pub event_count: i64,
    /// When it was made.
    pub created_at: Timestamp,
    /// When the next attempt is due, if one is.
    pub next_attempt_at: Option<Timestamp>,
    /// Attempts made so far.
    pub attempt_count: i64,
    /// Faults injected into it (sandbox configurations with `faults`).
    pub faults: Vec<Fault>,
}

/// The due time of a pending notification waiting behind an older one of its stream,
/// under strict ordering: 9999-12-31T23:59:59.999Z, outside every range the queue reads.
/// Set when it is made behind one still to be sent, or once when an older one fails (not
/// again at each later retry); each delivery of the stream makes the next one due at
/// once (`queue/record.rs`), a drop holds them. Shown as no due time.
pub(crate) const WAITING_BEHIND: i64 = 253_402_300_799_999;

pub(crate) const COLUMNS: &str =
    "seq, id, config_id, app_id, environment, realm_id, format, status, test, payload, \
                                  event_count, created_at, next_attempt_at, attempt_count, faults";

pub(crate) fn notification(row: &AnyRow) -> Result<Notification, sqlx::Error> {
    let format: String = row.try_get("format")?;
    let status: String = row.try_get("status")?;
    Ok(Notification {
        seq: row.try_get("seq")?,
        id: row.try_get("id")?,
        config_id: row.try_get("config_id")?,
        app_id: row.try_get("app_id")?,
        environment: environment(&row.try_get::<String, _>("environment")?)?,
        realm_id: row.try_get("realm_id")?,
        format: format
            .parse()
            .map_err(|_| decode_error("notifications.format", &format))?,
        status: status
            .parse()
            .map_err(|_| decode_error("notifications.status", &status))?,
        test: row.try_get::<i64, _>("test")? != 0,
        payload: row.try_get("payload")?,
        event_count: row.try_get("event_count")?,
        created_at: Timestamp(row.try_get("created_at")?),
        next_attempt_at: row
            .try_get::<Option<i64>, _>("next_attempt_at")?
            .filter(|&at| at != WAITING_BEHIND)
            .map(Timestamp),
        attempt_count: row.try_get("attempt_count")?,
        faults: list_from_storage(row.try_get::<Option<String>, _>("faults")?.as_deref()),
    })
}

/// A notification to insert: what the renderer made, for whom.
pub(crate) struct Made<'a> {
    /// Its configuration.
    pub config: &'a WebhookConfig,
    /// Its realm.
    pub realm_id: &'a str,
    /// Id, bytes and event count.
    pub new: NewNotification,
    /// Made while the configuration is blacklisted: `held` instead of `pending`.
    pub held: bool,
    /// Delivered strictly in order: due no earlier than the stream's pending retry.
    pub strict: bool,
}

/// What fault injection decided for one made notification.
struct Injected {
    faults: Vec<Fault>,
    /// Held back until then (a delay).
    delayed_until: Option<i64>,
}

/// Decides the faults of every made notification whose configuration has `faults`:
/// each configuration's counter is advanced by its notifications in this transaction,
/// and the `n`-th notification's faults are `decide(n)`.
async fn inject(
    tx: &mut Transaction<'static, Any>,
    made: &[Made<'_>],
    now: Timestamp,
) -> Result<Vec<Injected>, sqlx::Error> {
    let mut counts: Vec<(i64, u64)> = Vec::new();
    for m in made.iter().filter(|m| m.config.faults.is_some()) {
        match counts.iter_mut().find(|(id, _)| *id == m.config.id) {
            Some((_, n)) => *n += 1,
            None => counts.push((m.config.id, 1)),
        }
    }
    let mut next: Vec<(i64, u64)> = Vec::with_capacity(counts.len());
    for (config_id, n) in counts {
        let after: i64 = sqlx::query_scalar(
            "UPDATE webhook_configs SET fault_counter = fault_counter + $1 WHERE id = $2 RETURNING fault_counter",
        )
        .bind(n as i64)
        .bind(config_id)
        .fetch_one(&mut **tx)
        .await?;
        next.push((config_id, (after as u64).saturating_sub(n)));
    }
    Ok(made
        .iter()
        .map(|m| {
            let Some(faults) = &m.config.faults else {
                return Injected {
                    faults: Vec::new(),
                    delayed_until: None,
                };
            };
            let counter = next
                .iter_mut()
                .find(|(id, _)| *id == m.config.id)
                .expect("counted above");
            let decided = faults.decide(counter.1);
            counter.1 += 1;
            let delayed_until = decided
                .contains(&Fault::Delay)
                .then(|| now.millis() + faults.delay_by.as_millis() as i64);
            Injected {
                faults: decided,
                delayed_until,
            }
        })
        .collect())
}

/// Whether `m` waits behind its stream's older notifications ([`WAITING_BEHIND`]) when
/// one is still to be sent: under strict ordering, unless it is held, dropped or delayed
/// (a delay is meant to be overtaken).
fn queued_in_order(m: &Made<'_>, injected: &Injected) -> bool {
    m.strict && !m.held && injected.delayed_until.is_none() && !injected.faults.contains(&Fault::Drop)
}

/// Inserts notifications, 200 per statement: each `held`, or `pending` and due now —
/// under strict ordering, when its stream's newest is still to be sent, behind it
/// ([`WAITING_BEHIND`]).
/// Fault injection applies on the way: a dropped one is stored `delivered` and never
/// sent, a delayed one is due `delay_by` later.
pub(crate) async fn insert_notifications(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    made: &[Made<'_>],
    now: Timestamp,
) -> Result<(), sqlx::Error> {
    let injected = inject(tx, made, now).await?;
    let ordered: Vec<(i64, &str)> = made
        .iter()
        .zip(&injected)
        .filter(|(m, injected)| queued_in_order(m, injected))
        .map(|(m, _)| (m.config.id, m.realm_id))
        .collect();
    crate::queue::lock_streams(tx, backend, &ordered).await?;
    for (chunk, injected) in made
        .chunks(ROWS_PER_STATEMENT)
        .zip(injected.chunks(ROWS_PER_STATEMENT))
    {
        let mut params = Params::new(backend);
        let rows: Vec<String> = chunk
            .iter()
            .zip(injected)
            .map(|(m, injected)| {
                let p: Vec<String> = (0..12).map(|_| params.next()).collect();
                let due = if queued_in_order(m, injected) {
                    // Behind when the stream's newest notification is still to be sent
                    // (one index seek from the stream's end): each delivery releases the
                    // next, so the due part of the queue holds one per strict stream.
                    format!(
                        "CASE WHEN (SELECT o.status FROM notifications o WHERE o.config_id = {} \
                         AND o.realm_id = {} AND o.test = 0 AND o.delayed_until IS NULL \
                         ORDER BY o.seq DESC LIMIT 1) IN ('pending', 'retrying') THEN {WAITING_BEHIND} ELSE {} END",
                        params.next(),
                        params.next(),
                        params.next()
                    )
                } else {
                    params.next()
                };
                format!("({}, 0, {}, {due}, 0)", p[..7].join(", "), p[7..].join(", "))
            })
            .collect();
        let sql = format!(
            "INSERT INTO notifications (id, config_id, app_id, environment, realm_id, format, status, test, payload, \
               event_count, created_at, faults, delayed_until, next_attempt_at, attempt_count) VALUES {}",
            rows.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for (m, injected) in chunk.iter().zip(injected) {
            let dropped = injected.faults.contains(&Fault::Drop);
            let (status, due) = if dropped {
                (NotificationStatus::Delivered, None)
            } else if m.held {
                (NotificationStatus::Held, None)
            } else {
                (
                    NotificationStatus::Pending,
                    Some(injected.delayed_until.unwrap_or(now.millis())),
                )
            };
            query = query
                .bind(m.new.id.as_str())
                .bind(m.config.id)
                .bind(m.config.app_id.as_str())
                .bind(m.config.environment.as_str())
                .bind(m.realm_id)
                .bind(m.config.format.as_str())
                .bind(status.as_str())
                .bind(m.new.payload.as_slice())
                .bind(m.new.event_count as i64)
                .bind(now.millis())
                .bind(list_to_storage(&injected.faults))
                .bind(injected.delayed_until);
            if queued_in_order(m, injected) {
                query = query.bind(m.config.id).bind(m.realm_id);
            }
            query = query.bind(due);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Filters of a notification list.
#[derive(Clone, Debug, Default)]
pub struct NotificationFilter {
    /// Only this app's.
    pub app_id: Option<String>,
    /// Only this environment's.
    pub environment: Option<Environment>,
    /// Only this realm's.
    pub realm_id: Option<String>,
    /// Only in this status.
    pub status: Option<NotificationStatus>,
    /// Only made at or after this time.
    pub since: Option<Timestamp>,
    /// Only made before this time.
    pub until: Option<Timestamp>,
    /// Only with `seq` below this (the page cursor: newest first).
    pub before_seq: Option<i64>,
}

/// The index an app's page is read from on SQLite, whose planner has no statistics
/// unless `ANALYZE` was run, and without them reads a time range through
/// `notifications_by_age` and sorts half the table: by status, by realm, or by app, each
/// ending in `seq`. PostgreSQL's planner, with the statistics autovacuum keeps, picks
/// among the same indexes itself.
fn page_index(backend: Backend, filter: &NotificationFilter) -> &'static str {
    if backend != Backend::Sqlite || filter.app_id.is_none() {
        return "";
    }
    if filter.status.is_some() {
        " INDEXED BY notifications_by_app_status"
    } else if filter.realm_id.is_some() {
        " INDEXED BY notifications_by_app_realm"
    } else {
        " INDEXED BY notifications_by_app"
    }
}

impl Store {
    /// Notifications matching `filter`, newest first, at most `limit`.
    ///
    /// The statement holds only the conditions given, and an app's page is read in
    /// `seq` order from the index that matches its filters ([`page_index`]), stopping at
    /// the limit: a page of a million-notification history costs about as much as one of
    /// a hundred (`docs/benchmarks.md`, "Notification pages").
    pub async fn notifications(
        &self,
        filter: &NotificationFilter,
        limit: u32,
    ) -> Result<Vec<Notification>, StoreError> {
        let texts = [
            ("app_id =", filter.app_id.as_deref()),
            ("environment =", filter.environment.map(|e| e.as_str())),
            ("realm_id =", filter.realm_id.as_deref()),
            ("status =", filter.status.map(|s| s.as_str())),
        ];
        let numbers = [
            ("created_at >=", filter.since.map(|t| t.millis())),
            ("created_at <", filter.until.map(|t| t.millis())),
            ("seq <", filter.before_seq),
        ];
        let mut params = Params::new(self.backend());
        let mut conditions = Vec::new();
        for (test, _) in texts.iter().filter(|(_, v)| v.is_some()) {
            conditions.push(format!("{test} {}", params.next()));
        }
        for (test, _) in numbers.iter().filter(|(_, v)| v.is_some()) {
            conditions.push(format!("{test} {}", params.next()));
        }
        let which = if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        };
        let sql = format!(
            "SELECT {COLUMNS} FROM notifications{}{which} ORDER BY seq DESC LIMIT {}",
            page_index(self.backend(), filter),
            params.next()
        );
        let mut query = sqlx::query(&sql);
        for value in texts.iter().filter_map(|(_, v)| *v) {
            query = query.bind(value);
        }
        for value in numbers.iter().filter_map(|(_, v)| *v) {
            query = query.bind(value);
        }
        let rows = query.bind(i64::from(limit)).fetch_all(self.reader()).await?;
        Ok(rows.iter().map(notification).collect::<Result<_, _>>()?)
    }

    /// One notification by id.
    pub async fn notification(&self, id: &str) -> Result<Option<Notification>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM notifications WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.reader())
            .await?;
        Ok(row.as_ref().map(notification).transpose()?)
    }
}

impl Store {
    /// Stores a test notification of `config` (status `pending`, never queued: the
    /// caller sends it at once); answers its sequence number.
    pub async fn insert_test_notification(
        &self,
        config: &WebhookConfig,
        realm_id: &str,
        new: &NewNotification,
        now: Timestamp,
    ) -> Result<i64, StoreError> {
        let seq: i64 = sqlx::query_scalar(
            "INSERT INTO notifications (id, config_id, app_id, environment, realm_id, format, status, test, payload, \
               event_count, created_at, next_attempt_at, attempt_count) \
             VALUES ($1, $2, $3, $4, $5, $6, 'pending', 1, $7, $8, $9, NULL, 0) RETURNING seq",
        )
        .bind(&new.id)
        .bind(config.id)
        .bind(&config.app_id)
        .bind(config.environment.as_str())
        .bind(realm_id)
        .bind(config.format.as_str())
        .bind(new.payload.clone())
        .bind(new.event_count as i64)
        .bind(now.millis())
        .fetch_one(self.writer())
        .await?;
        Ok(seq)
    }
}
