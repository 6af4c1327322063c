//! Aggregation windows in the database.
//!
//! At ingestion, each accepted event is fanned out — in the same transaction — to every
//! (configuration, realm) that wants it: configurations `active` or `blacklisted`,
//! subscribed to the entity and operation, of an app connected to the realm (after the
//! connection was made) in the realm's environment. A window opens at the first pending
//! event of a pair and is due a window's length later, or at once when
//! `batch-max-events` are pending. The aggregator closes due windows into notifications
//! with [`Store::close_window`]. Nothing of this lives in process memory, so a restart or
//! another node continues it.

use crate::model::{decode_error, WebhookConfig};
use crate::notifications::{insert_notification, NewNotification};
use crate::signals::{announce, Signal};
use crate::{Backend, Store, StoreError};
use ledgerhook_domain::{entity, ChangeEvent, ConfigState, Environment, Operation, Timestamp};
use sqlx::{Any, Row, Transaction};

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

/// Fans the events with sequence numbers in `first..=last` out to windows and opens or
/// advances those windows. Answers whether any window was touched.
pub(crate) async fn fan_out(
    tx: &mut Transaction<'static, Any>,
    first: i64,
    last: i64,
    policy: &WindowPolicy,
    now: Timestamp,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO window_events (config_id, realm_id, event_seq, batch_id) \
         SELECT wc.id, ce.realm_id, ce.seq, ce.batch_id FROM change_events ce \
         JOIN realms r ON r.id = ce.realm_id \
         JOIN connections c ON c.realm_id = ce.realm_id AND c.after_seq < ce.seq \
         JOIN webhook_configs wc ON wc.app_id = c.app_id AND wc.environment = r.environment \
              AND wc.state IN ('active', 'blacklisted') \
         JOIN config_subscriptions s ON s.config_id = wc.id AND s.entity = ce.entity AND s.operation = ce.operation \
         WHERE ce.seq >= $1 AND ce.seq <= $2 \
         ON CONFLICT DO NOTHING",
    )
    .bind(first)
    .bind(last)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Ok(false);
    }
    let pairs = sqlx::query(
        "SELECT we.config_id, we.realm_id, wc.environment, wc.batch_window_ms, COUNT(*) AS pending \
         FROM window_events we JOIN webhook_configs wc ON wc.id = we.config_id \
         WHERE EXISTS (SELECT 1 FROM window_events n WHERE n.config_id = we.config_id AND n.realm_id = we.realm_id \
                       AND n.event_seq >= $1 AND n.event_seq <= $2) \
         GROUP BY we.config_id, we.realm_id, wc.environment, wc.batch_window_ms",
    )
    .bind(first)
    .bind(last)
    .fetch_all(&mut **tx)
    .await?;
    for pair in pairs {
        let env: String = pair.try_get("environment")?;
        let env: Environment = env.parse().map_err(|_| decode_error("environment", &env))?;
        let pending: i64 = pair.try_get("pending")?;
        let length = policy.real_length_ms(env, pair.try_get("batch_window_ms")?);
        let due = if pending >= policy.max_events {
            now.millis()
        } else {
            now.millis() + length
        };
        sqlx::query(
            "INSERT INTO windows (config_id, realm_id, opened_at, due_at, event_count) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (config_id, realm_id) DO UPDATE SET event_count = excluded.event_count, \
             due_at = CASE WHEN excluded.event_count >= $6 THEN $3 ELSE windows.due_at END",
        )
        .bind(pair.try_get::<i64, _>("config_id")?)
        .bind(pair.try_get::<String, _>("realm_id")?)
        .bind(now.millis())
        .bind(due)
        .bind(pending)
        .bind(policy.max_events)
        .execute(&mut **tx)
        .await?;
    }
    Ok(true)
}

/// [`fan_out`], announcing new windows to other nodes.
pub(crate) async fn fan_out_and_announce(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    first: i64,
    last: i64,
    policy: &WindowPolicy,
    now: Timestamp,
) -> Result<bool, sqlx::Error> {
    let touched = fan_out(tx, first, last, policy, now).await?;
    if touched {
        announce(tx, backend, Signal::Windows).await?;
    }
    Ok(touched)
}

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

fn event_row(row: &sqlx::any::AnyRow) -> Result<(i64, ChangeEvent), sqlx::Error> {
    let name: String = row.try_get("entity")?;
    let op: String = row.try_get("operation")?;
    let spec = entity::find(&name).ok_or_else(|| decode_error("change_events.entity", &name))?;
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
fn order_and_dedupe(mut events: Vec<(i64, ChangeEvent)>) -> Vec<ChangeEvent> {
    events.sort_by_key(|(seq, e)| (e.last_updated, *seq));
    let mut seen = std::collections::HashSet::new();
    events
        .into_iter()
        .filter(|(_, e)| seen.insert((e.entity, e.entity_id.clone(), e.operation, e.last_updated)))
        .map(|(_, e)| e)
        .collect()
}

impl Store {
    /// Windows due at `now`, soonest first, at most `limit`.
    pub async fn due_windows(&self, now: Timestamp, limit: u32) -> Result<Vec<WindowKey>, StoreError> {
        let rows = sqlx::query(
            "SELECT config_id, realm_id FROM windows WHERE due_at <= $1 ORDER BY due_at LIMIT $2",
        )
        .bind(now.millis())
        .bind(i64::from(limit))
        .fetch_all(self.reader())
        .await?;
        let mut keys = Vec::with_capacity(rows.len());
        for row in rows {
            keys.push(WindowKey {
                config_id: row.try_get("config_id")?,
                realm_id: row.try_get("realm_id")?,
            });
        }
        Ok(keys)
    }

    /// When the next window is due, if any is open.
    pub async fn next_window_due(&self) -> Result<Option<Timestamp>, StoreError> {
        let due: Option<i64> = sqlx::query_scalar("SELECT MIN(due_at) FROM windows")
            .fetch_one(self.reader())
            .await?;
        Ok(due.map(Timestamp))
    }

    /// Closes due windows, all in one transaction: for each, reads its first
    /// `batch-max-events` events (by acceptance), has `render` make the notification
    /// bodies, stores them (`held` when the configuration is blacklisted), and removes the
    /// consumed events; what remains opens the next window. Answers how many
    /// notifications were made (a window another node closed first makes none).
    pub async fn close_windows<F>(
        &self,
        keys: &[WindowKey],
        policy: &WindowPolicy,
        now: Timestamp,
        mut render: F,
    ) -> Result<usize, StoreError>
    where
        F: FnMut(&ClosingWindow<'_>) -> Vec<NewNotification>,
    {
        let mut tx = self.writer().begin().await?;
        let mut made = 0;
        let mut deliverable = false;
        let mut configs = std::collections::HashMap::new();
        for key in keys {
            let (count, held) = close_one(
                &mut tx,
                self.backend(),
                key,
                policy,
                now,
                &mut configs,
                &mut render,
            )
            .await?;
            made += count;
            deliverable |= count > 0 && !held;
        }
        if deliverable {
            announce(&mut tx, self.backend(), Signal::Notifications).await?;
        }
        tx.commit().await?;
        Ok(made)
    }
}

/// Closes one window inside `tx`; answers the notifications made and whether they are
/// held.
async fn close_one<F>(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    key: &WindowKey,
    policy: &WindowPolicy,
    now: Timestamp,
    configs: &mut std::collections::HashMap<i64, Option<WebhookConfig>>,
    render: &mut F,
) -> Result<(usize, bool), sqlx::Error>
where
    F: FnMut(&ClosingWindow<'_>) -> Vec<NewNotification>,
{
    let lock = match backend {
        Backend::Sqlite => "",
        Backend::Postgres => " FOR UPDATE SKIP LOCKED",
    };
    let claimed = sqlx::query(&format!(
        "SELECT config_id FROM windows WHERE config_id = $1 AND realm_id = $2 AND due_at <= $3{lock}"
    ))
    .bind(key.config_id)
    .bind(&key.realm_id)
    .bind(now.millis())
    .fetch_optional(&mut **tx)
    .await?;
    if claimed.is_none() {
        return Ok((0, false));
    }
    // Windows of one configuration usually close together: read it once per round.
    let config = match configs.get(&key.config_id) {
        Some(cached) => cached.clone(),
        None => {
            let read = crate::configs::config_by_id(tx, key.config_id).await?;
            configs.insert(key.config_id, read.clone());
            read
        }
    };
    let Some(config) = config.filter(|c| c.state != ConfigState::Inactive) else {
        discard_window(tx, key).await?;
        return Ok((0, false));
    };
    // A 0s window holds one ingestion request: take only the oldest request's events.
    let zero_window = policy.real_length_ms(config.environment, config.batch_window_ms) == 0;
    let rows = sqlx::query(
        "SELECT ce.seq, ce.entity, ce.entity_id, ce.operation, ce.last_updated, ce.deleted_id \
         FROM window_events we JOIN change_events ce ON ce.seq = we.event_seq \
         WHERE we.config_id = $1 AND we.realm_id = $2 \
         AND ($4 = 0 OR we.batch_id = (SELECT o.batch_id FROM window_events o \
              WHERE o.config_id = $1 AND o.realm_id = $2 ORDER BY o.event_seq LIMIT 1)) \
         ORDER BY ce.seq LIMIT $3",
    )
    .bind(key.config_id)
    .bind(&key.realm_id)
    .bind(policy.max_events)
    .bind(i64::from(zero_window))
    .fetch_all(&mut **tx)
    .await?;
    let taken = rows.iter().map(event_row).collect::<Result<Vec<_>, _>>()?;
    let last_taken = taken.iter().map(|(seq, _)| *seq).max().unwrap_or(0);
    let events = order_and_dedupe(taken);
    let made = if events.is_empty() {
        Vec::new()
    } else {
        render(&ClosingWindow {
            config: &config,
            realm_id: &key.realm_id,
            events: &events,
        })
    };
    let held = config.state == ConfigState::Blacklisted;
    for notification in &made {
        insert_notification(tx, &config, &key.realm_id, notification, held, now).await?;
    }
    sqlx::query(
        "DELETE FROM window_events WHERE config_id = $1 AND realm_id = $2 AND event_seq <= $3 \
         AND ($4 = 0 OR batch_id = (SELECT o.batch_id FROM window_events o \
              WHERE o.config_id = $1 AND o.realm_id = $2 ORDER BY o.event_seq LIMIT 1))",
    )
    .bind(key.config_id)
    .bind(&key.realm_id)
    .bind(last_taken)
    .bind(i64::from(zero_window))
    .execute(&mut **tx)
    .await?;
    reopen_or_remove(tx, key, &config, policy, now).await?;
    Ok((made.len(), held))
}

async fn discard_window(tx: &mut Transaction<'static, Any>, key: &WindowKey) -> Result<(), sqlx::Error> {
    for sql in [
        "DELETE FROM window_events WHERE config_id = $1 AND realm_id = $2",
        "DELETE FROM windows WHERE config_id = $1 AND realm_id = $2",
    ] {
        sqlx::query(sql)
            .bind(key.config_id)
            .bind(&key.realm_id)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// After a close: the events still pending (beyond `batch-max-events`) open the next
/// window; none left removes it.
async fn reopen_or_remove(
    tx: &mut Transaction<'static, Any>,
    key: &WindowKey,
    config: &WebhookConfig,
    policy: &WindowPolicy,
    now: Timestamp,
) -> Result<(), sqlx::Error> {
    let remaining: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM window_events WHERE config_id = $1 AND realm_id = $2")
            .bind(key.config_id)
            .bind(&key.realm_id)
            .fetch_one(&mut **tx)
            .await?;
    if remaining == 0 {
        sqlx::query("DELETE FROM windows WHERE config_id = $1 AND realm_id = $2")
            .bind(key.config_id)
            .bind(&key.realm_id)
            .execute(&mut **tx)
            .await?;
        return Ok(());
    }
    let length = policy.real_length_ms(config.environment, config.batch_window_ms);
    let due = if remaining >= policy.max_events {
        now.millis()
    } else {
        now.millis() + length
    };
    sqlx::query("UPDATE windows SET opened_at = $1, due_at = $2, event_count = $3 WHERE config_id = $4 AND realm_id = $5")
        .bind(now.millis())
        .bind(due)
        .bind(remaining)
        .bind(key.config_id)
        .bind(&key.realm_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
