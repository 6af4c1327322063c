//! Aggregation windows in the database: their lengths, keys, and what closing one
//! hands the renderer.
//!
//! A window opens at the first pending event of a (configuration, realm) pair (see
//! [`crate::fanout`]) and is due a window's length later, or at once when
//! `batch-max-events` are pending; the aggregator closes due windows into notifications
//! (see [`crate::closing`]). Nothing of this lives in process memory, so a restart or
//! another node continues it.

use crate::model::{decode_error, WebhookConfig};
use crate::notifications::NewNotification;
use crate::{Store, StoreError};
use ledgerhook_domain::{entity, ChangeEvent, Environment, Operation, Ordering, Timestamp};
use sqlx::Row;

/// Window lengths and limits, from the settings.
#[derive(Clone, Copy, Debug)]
pub struct WindowPolicy {
    /// `sandbox-batch-window` in milliseconds (simulated time).
    pub sandbox_ms: i64,
    /// `batch-window` in milliseconds (simulated time).
    pub production_ms: i64,
    /// `batch-max-events`.
    pub max_events: i64,
    /// `time-scale`: simulated milliseconds per real millisecond.
    pub time_scale: f64,
    /// The retry policy's ordering, for configurations without their own: under strict
    /// ordering a new notification of a stream waiting for a retry is due no earlier.
    pub default_ordering: Ordering,
}

impl WindowPolicy {
    /// Whether `config`'s notifications are delivered strictly in order.
    pub fn strict(&self, config: &WebhookConfig) -> bool {
        config.ordering.unwrap_or(self.default_ordering) == Ordering::Strict
    }
}

impl WindowPolicy {
    /// The real-time length of a window of a configuration with `own_ms` in `env`.
    pub fn real_length_ms(&self, env: Environment, own_ms: Option<i64>) -> i64 {
        let simulated = own_ms.unwrap_or(match env {
            Environment::Sandbox => self.sandbox_ms,
            Environment::Production => self.production_ms,
        });
        (simulated as f64 / self.time_scale).round() as i64
    }
}

/// A (configuration, realm) pair with pending events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowKey {
    /// The configuration.
    pub config_id: i64,
    /// The realm.
    pub realm_id: String,
}

/// Makes the notification bodies of a closing window (one legacy body, or CloudEvents
/// batches). The store calls it inside the transaction that stores them.
pub type Render = fn(&ClosingWindow<'_>) -> Vec<NewNotification>;

/// What the renderer of a closing window is given.
pub struct ClosingWindow<'a> {
    /// The configuration.
    pub config: &'a WebhookConfig,
    /// The realm.
    pub realm_id: &'a str,
    /// The events, in `lastUpdated` order (ties in acceptance order), without exact
    /// duplicates, at most `batch-max-events`.
    pub events: &'a [ChangeEvent],
}

pub(crate) fn event_row(row: &sqlx::any::AnyRow) -> Result<(i64, ChangeEvent), sqlx::Error> {
    let name: String = row.try_get("entity")?;
    let op: String = row.try_get("operation")?;
    let spec = entity::find_stored(&name).ok_or_else(|| decode_error("change_events.entity", &name))?;
    Ok((
        row.try_get("seq")?,
        ChangeEvent {
            entity: spec.name,
            entity_id: row.try_get("entity_id")?,
            operation: Operation::parse(&op).ok_or_else(|| decode_error("change_events.operation", &op))?,
            last_updated: Timestamp(row.try_get("last_updated")?),
            deleted_id: row.try_get("deleted_id")?,
        },
    ))
}

/// Orders by (`lastUpdated`, acceptance) and removes exact repeats of (entity, id,
/// operation, `lastUpdated`).
pub(crate) fn order_and_dedupe(mut events: Vec<(i64, ChangeEvent)>) -> Vec<ChangeEvent> {
    events.sort_by_key(|(seq, e)| (e.last_updated, *seq));
    let mut seen = std::collections::HashSet::new();
    events
        .into_iter()
        .filter(|(_, e)| seen.insert((e.entity, e.entity_id.clone(), e.operation, e.last_updated)))
        .map(|(_, e)| e)
        .collect()
}

impl Store {
    /// When the next window is due, if any is open.
    pub async fn next_window_due(&self) -> Result<Option<Timestamp>, StoreError> {
        let due: Option<i64> = sqlx::query_scalar("SELECT MIN(due_at) FROM windows")
            .fetch_one(self.reader())
            .await?;
        Ok(due.map(Timestamp))
    }
}
