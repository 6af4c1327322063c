//! Closing due aggregation windows into notifications, a round at a time.
//!
//! A round is one transaction of a fixed number of statements however many windows it
//! closes: take the due windows (on PostgreSQL `FOR UPDATE SKIP LOCKED`, so nodes split
//! them), read their configurations, read the first `batch-max-events` events of every
//! window at once, render, insert every notification, remove the consumed events and the
//! windows left empty. The rare window with events left over reopens with one statement
//! of its own.

use crate::configs::configs_by_ids;
use crate::model::WebhookConfig;
use crate::notifications::{insert_notifications, Made, NewNotification};
use crate::signals::Signal;
use crate::sql::Params;
use crate::windows::{event_row, order_and_dedupe, ClosingWindow, WindowKey, WindowPolicy};
use crate::{Backend, Store, StoreError};
use ledgerhook_domain::{ChangeEvent, ConfigState, Timestamp};
use sqlx::{Any, Row, Transaction};
use std::collections::HashMap;

type Tx = Transaction<'static, Any>;

/// What a closing round did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Closed {
    /// Windows taken (closed, or discarded with their configuration gone).
    pub windows: usize,
    /// Notifications made.
    pub notifications: usize,
}

/// The pending events of one window read for closing.
#[derive(Default)]
struct Pending {
    /// (sequence, request batch, event), oldest first, at most `batch-max-events`.
    events: Vec<(i64, i64, ChangeEvent)>,
    /// Every pending event of the window, including those beyond the limit.
    total: i64,
}

impl Store {
    /// Closes up to `limit` windows due at `now`, soonest first, in one transaction: for
    /// each, takes its first `batch-max-events` events by acceptance (with a 0s window,
    /// only the oldest request's), has `render` make the notification bodies, stores them
    /// (`held` when the configuration is blacklisted) and removes the consumed events;
    /// what remains opens the next window.
    pub async fn close_due_windows<F>(
        &self,
        policy: &WindowPolicy,
        now: Timestamp,
        limit: u32,
        mut render: F,
    ) -> Result<Closed, StoreError>
    where
        F: FnMut(&ClosingWindow<'_>) -> Vec<NewNotification>,
    {
        let backend = self.backend();
        let mut tx = self.writer().begin().await?;
        let keys = take_due(&mut tx, backend, now, limit).await?;
        if keys.is_empty() {
            tx.rollback().await?;
            return Ok(Closed::default());
        }
        let configs = configs_by_ids(&mut tx, keys.iter().map(|k| k.config_id)).await?;
        let (live, gone): (Vec<&WindowKey>, Vec<&WindowKey>) = keys.iter().partition(|k| {
            configs
                .get(&k.config_id)
                .is_some_and(|c| c.state != ConfigState::Inactive)
        });
        for key in gone {
            discard_window(&mut tx, key).await?;
        }
        let mut pending = pending_events(&mut tx, backend, &live, policy.max_events).await?;
        let mut made = Vec::new();
        let mut consumed = Vec::new();
        let mut reopened = Vec::new();
        for key in live {
            let config = &configs[&key.config_id];
            let window = pending
                .remove(&(key.config_id, key.realm_id.clone()))
                .unwrap_or_default();
            let zero_window = policy.real_length_ms(config.environment, config.batch_window_ms) == 0;
            let taken = take_events(window.events, zero_window);
            let last_taken = taken.last().map(|(seq, _)| *seq).unwrap_or(0);
            let remaining = window.total - taken.len() as i64;
            let events = order_and_dedupe(taken);
            if !events.is_empty() {
                let held = config.state == ConfigState::Blacklisted;
                let window = ClosingWindow {
                    config,
                    realm_id: &key.realm_id,
                    events: &events,
                };
                made.extend(render(&window).into_iter().map(|new| Made {
                    config,
                    realm_id: &key.realm_id,
                    new,
                    held,
                    strict: policy.strict(config),
                }));
            }
            consumed.push((key, last_taken));
            if remaining > 0 {
                reopened.push((key, config, remaining));
            }
        }
        insert_notifications(&mut tx, backend, &made, now).await?;
        remove_consumed(&mut tx, backend, &consumed).await?;
        for (key, config, remaining) in reopened {
            reopen(&mut tx, key, config, remaining, policy, now).await?;
        }
        tx.commit().await?;
        if made.iter().any(|m| !m.held) {
            self.announce(Signal::Notifications);
        }
        Ok(Closed {
            windows: keys.len(),
            notifications: made.len(),
        })
    }
}

/// The due windows this round closes. On PostgreSQL the rows stay locked until commit
/// and windows another node is closing are skipped.
async fn take_due(
    tx: &mut Tx,
    backend: Backend,
    now: Timestamp,
    limit: u32,
) -> Result<Vec<WindowKey>, sqlx::Error> {
    let lock = match backend {
        Backend::Sqlite => "",
        Backend::Postgres => " FOR UPDATE SKIP LOCKED",
    };
    let rows = sqlx::query(&format!(
        "SELECT config_id, realm_id FROM windows WHERE due_at <= $1 ORDER BY due_at LIMIT $2{lock}"
    ))
    .bind(now.millis())
    .bind(i64::from(limit))
    .fetch_all(&mut **tx)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(WindowKey {
                config_id: row.try_get("config_id")?,
                realm_id: row.try_get("realm_id")?,
            })
        })
        .collect()
}

/// The first `max_events` pending events of every window in `keys` (by acceptance), and
/// how many each has in all — one statement per 200 windows.
async fn pending_events(
    tx: &mut Tx,
    backend: Backend,
    keys: &[&WindowKey],
    max_events: i64,
) -> Result<HashMap<(i64, String), Pending>, sqlx::Error> {
    let mut pending: HashMap<(i64, String), Pending> = HashMap::new();
    for chunk in keys.chunks(crate::sql::ROWS_PER_STATEMENT) {
        let mut params = Params::new(backend);
        let which = params.any_of(chunk.len(), |p| {
            format!("we.config_id = {} AND we.realm_id = {}", p.next(), p.next())
        });
        let sql = format!(
            "SELECT x.config_id, x.realm_id, x.batch_id, x.total, \
                    ce.seq, ce.entity, ce.entity_id, ce.operation, ce.last_updated, ce.deleted_id \
             FROM (SELECT we.config_id, we.realm_id, we.event_seq, we.batch_id, \
                          ROW_NUMBER() OVER (PARTITION BY we.config_id, we.realm_id ORDER BY we.event_seq) AS rn, \
                          COUNT(*) OVER (PARTITION BY we.config_id, we.realm_id) AS total \
                   FROM window_events we WHERE {which}) x \
             JOIN change_events ce ON ce.seq = x.event_seq \
             WHERE x.rn <= {} ORDER BY x.config_id, x.realm_id, x.event_seq",
            params.next()
        );
        let mut query = sqlx::query(&sql);
        for key in chunk {
            query = query.bind(key.config_id).bind(key.realm_id.as_str());
        }
        for row in query.bind(max_events).fetch_all(&mut **tx).await? {
            let (seq, event) = event_row(&row)?;
            let window = pending
                .entry((row.try_get("config_id")?, row.try_get("realm_id")?))
                .or_default();
            window.total = row.try_get("total")?;
            window.events.push((seq, row.try_get("batch_id")?, event));
        }
    }
    Ok(pending)
}

/// The events a window's notification carries: all that were read, or with a 0s window
/// only the oldest request's. Either way a prefix by acceptance, so the consumed events
/// are exactly those up to the last one taken.
fn take_events(events: Vec<(i64, i64, ChangeEvent)>, zero_window: bool) -> Vec<(i64, ChangeEvent)> {
    let first_batch = events.first().map(|(_, batch, _)| *batch);
    events
        .into_iter()
        .take_while(|(_, batch, _)| !zero_window || Some(*batch) == first_batch)
        .map(|(seq, _, event)| (seq, event))
        .collect()
}

/// Removes each window's consumed events (those up to its last taken sequence), then
/// the windows left without events.
async fn remove_consumed(
    tx: &mut Tx,
    backend: Backend,
    consumed: &[(&WindowKey, i64)],
) -> Result<(), sqlx::Error> {
    for chunk in consumed.chunks(crate::sql::ROWS_PER_STATEMENT) {
        let mut params = Params::new(backend);
        let which = params.any_of(chunk.len(), |p| {
            format!(
                "config_id = {} AND realm_id = {} AND event_seq <= {}",
                p.next(),
                p.next(),
                p.next()
            )
        });
        let sql = format!("DELETE FROM window_events WHERE {which}");
        let mut query = sqlx::query(&sql);
        for (key, last) in chunk {
            query = query.bind(key.config_id).bind(key.realm_id.as_str()).bind(*last);
        }
        query.execute(&mut **tx).await?;

        let mut params = Params::new(backend);
        let which = params.any_of(chunk.len(), |p| {
            format!("config_id = {} AND realm_id = {}", p.next(), p.next())
        });
        let sql = format!(
            "DELETE FROM windows WHERE {which} AND NOT EXISTS (SELECT 1 FROM window_events we \
             WHERE we.config_id = windows.config_id AND we.realm_id = windows.realm_id)"
        );
        let mut query = sqlx::query(&sql);
        for (key, _) in chunk {
            query = query.bind(key.config_id).bind(key.realm_id.as_str());
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// A window whose configuration is gone or inactive: its events are dropped with it.
async fn discard_window(tx: &mut Tx, key: &WindowKey) -> Result<(), sqlx::Error> {
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

/// The events still pending after a close (beyond `batch-max-events`, or later requests
/// of a 0s window) open the next window: due at once when they fill a batch, else a
/// window's length from now.
async fn reopen(
    tx: &mut Tx,
    key: &WindowKey,
    config: &WebhookConfig,
    remaining: i64,
    policy: &WindowPolicy,
    now: Timestamp,
) -> Result<(), sqlx::Error> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use ledgerhook_domain::Operation;

    fn event(id: &str) -> ChangeEvent {
        ChangeEvent {
            entity: "Customer",
            entity_id: id.to_owned(),
            operation: Operation::Update,
            last_updated: Timestamp(1),
            deleted_id: None,
        }
    }

    #[test]
    fn a_zero_window_takes_only_the_oldest_request() {
        let events = vec![(1, 7, event("a")), (2, 7, event("b")), (3, 9, event("c"))];
        let taken: Vec<i64> = take_events(events.clone(), true)
            .iter()
            .map(|(s, _)| *s)
            .collect();
        assert_eq!(taken, [1, 2]);
        let taken: Vec<i64> = take_events(events, false).iter().map(|(s, _)| *s).collect();
        assert_eq!(taken, [1, 2, 3]);
    }
}
