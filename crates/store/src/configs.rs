//! Webhook configurations and their states.

use crate::model::{decode_error, environment, ConfigInput, WebhookConfig};
use crate::notifications::WAITING_BEHIND;
use crate::signals::Signal;
use crate::{Backend, Store, StoreError};
use ledgerhook_domain::faults::Faults;
use ledgerhook_domain::{ConfigState, EntitySelection, Environment, Ordering, Timestamp};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

const COLUMNS: &str = "id, app_id, environment, url, entities, format, batch_window_ms, ordering, state, \
                       state_since, last_error, created_at, updated_at, faults";

fn parse<T: std::str::FromStr>(column: &str, text: &str) -> Result<T, sqlx::Error> {
    text.parse().map_err(|_| decode_error(column, text))
}

fn config(row: AnyRow) -> Result<WebhookConfig, sqlx::Error> {
    let entities: String = row.try_get("entities")?;
    let ordering: Option<String> = row.try_get("ordering")?;
    let faults: Option<String> = row.try_get("faults")?;
    Ok(WebhookConfig {
        id: row.try_get("id")?,
        app_id: row.try_get("app_id")?,
        environment: environment(&row.try_get::<String, _>("environment")?)?,
        url: row.try_get("url")?,
        entities: EntitySelection::from_storage(&entities)
            .map_err(|_| decode_error("entities", &entities))?,
        format: parse("format", &row.try_get::<String, _>("format")?)?,
        batch_window_ms: row.try_get("batch_window_ms")?,
        ordering: ordering.map(|o| parse("ordering", &o)).transpose()?,
        state: parse("state", &row.try_get::<String, _>("state")?)?,
        state_since: Timestamp(row.try_get("state_since")?),
        last_error: row.try_get("last_error")?,
        created_at: Timestamp(row.try_get("created_at")?),
        updated_at: Timestamp(row.try_get("updated_at")?),
        faults: faults
            .as_deref()
            .map(|f| Faults::from_storage(f).map_err(|_| decode_error("faults", f)))
            .transpose()?,
    })
}

/// The configuration of (app, environment) as seen inside `tx`.
async fn config_in(
    tx: &mut Transaction<'static, Any>,
    app_id: &str,
    env: Environment,
) -> Result<WebhookConfig, sqlx::Error> {
    config_of(tx, app_id, env.as_str())
        .await?
        .ok_or(sqlx::Error::RowNotFound)
}

/// The configuration of (app, environment) named as stored, if any, as seen inside `tx`
/// (one lookup in the unique index).
pub(crate) async fn config_of(
    tx: &mut Transaction<'static, Any>,
    app_id: &str,
    environment: &str,
) -> Result<Option<WebhookConfig>, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM webhook_configs WHERE app_id = $1 AND environment = $2"
    ))
    .bind(app_id)
    .bind(environment)
    .fetch_optional(&mut **tx)
    .await?;
    row.map(config).transpose()
}

/// The configuration with row id `id`, as seen inside `tx`.
pub(crate) async fn config_by_id(
    tx: &mut Transaction<'static, Any>,
    id: i64,
) -> Result<Option<WebhookConfig>, sqlx::Error> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM webhook_configs WHERE id = $1"))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?;
    row.map(config).transpose()
}

/// The configurations among `ids` that still exist, each read once however often its
/// id appears (a pipeline round usually holds one or two).
pub(crate) async fn configs_by_ids(
    tx: &mut Transaction<'static, Any>,
    ids: impl IntoIterator<Item = i64>,
) -> Result<std::collections::HashMap<i64, WebhookConfig>, sqlx::Error> {
    let mut ids: Vec<i64> = ids.into_iter().collect();
    ids.sort_unstable();
    ids.dedup();
    let mut configs = std::collections::HashMap::with_capacity(ids.len());
    for id in ids {
        if let Some(config) = config_by_id(tx, id).await? {
            configs.insert(id, config);
        }
    }
    Ok(configs)
}

/// Makes a configuration's held notifications deliverable again, oldest first (the
/// queue orders by due time, then sequence).
async fn release_held(
    tx: &mut Transaction<'static, Any>,
    config_id: i64,
    now: Timestamp,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE notifications SET status = 'pending', next_attempt_at = $1 WHERE config_id = $2 AND status = 'held'")
        .bind(now.millis())
        .bind(config_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Makes the configuration's notifications that wait behind a retry (strict ordering)
/// due now: under best-effort ordering nothing waits. Read through the queue's due index,
/// where they are one range, not through the configuration's whole history.
async fn release_waiting(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    config_id: i64,
    now: Timestamp,
) -> Result<(), sqlx::Error> {
    let hint = crate::queue::due_index(backend);
    sqlx::query(&format!(
        "UPDATE notifications SET next_attempt_at = $1 WHERE seq IN (SELECT seq FROM notifications{hint} \
         WHERE status IN ('pending', 'retrying') AND test = 0 AND next_attempt_at = {WAITING_BEHIND} AND config_id = $2)"
    ))
    .bind(now.millis())
    .bind(config_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl Store {
    /// Creates or replaces the configuration of (app, environment) and makes it
    /// `active`; answers the stored configuration.
    pub async fn put_config(
        &self,
        app_id: &str,
        env: Environment,
        input: &ConfigInput,
        now: Timestamp,
    ) -> Result<WebhookConfig, StoreError> {
        let mut tx = self.writer().begin().await?;
        sqlx::query(
            "INSERT INTO webhook_configs (app_id, environment, url, entities, format, batch_window_ms, ordering, \
               state, state_since, last_error, created_at, updated_at, faults) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'active', $8, NULL, $8, $8, $9) \
             ON CONFLICT (app_id, environment) DO UPDATE SET url = excluded.url, entities = excluded.entities, \
               format = excluded.format, batch_window_ms = excluded.batch_window_ms, ordering = excluded.ordering, \
               faults = excluded.faults, fault_counter = 0, \
               state = 'active', \
               state_since = CASE WHEN webhook_configs.state = 'active' THEN webhook_configs.state_since ELSE excluded.state_since END, \
               updated_at = excluded.updated_at",
        )
        .bind(app_id)
        .bind(env.as_str())
        .bind(&input.url)
        .bind(input.entities.to_storage())
        .bind(input.format.as_str())
        .bind(input.batch_window_ms)
        .bind(input.ordering.map(|o| o.as_str()))
        .bind(now.millis())
        .bind(input.faults.as_ref().map(Faults::to_storage))
        .execute(&mut *tx)
        .await?;
        let stored = config_in(&mut tx, app_id, env).await?;
        release_held(&mut tx, stored.id, now).await?;
        if input.ordering != Some(Ordering::Strict) {
            release_waiting(&mut tx, self.backend(), stored.id, now).await?;
        }
        tx.commit().await?;
        self.announce(Signal::Notifications);
        Ok(stored)
    }

    /// The configuration of (app, environment).
    pub async fn config(&self, app_id: &str, env: Environment) -> Result<Option<WebhookConfig>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM webhook_configs WHERE app_id = $1 AND environment = $2"
        ))
        .bind(app_id)
        .bind(env.as_str())
        .fetch_optional(self.reader())
        .await?;
        Ok(row.map(config).transpose()?)
    }

    /// Every configuration of an environment (for aggregation).
    pub async fn configs_of_environment(&self, env: Environment) -> Result<Vec<WebhookConfig>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM webhook_configs WHERE environment = $1 ORDER BY id"
        ))
        .bind(env.as_str())
        .fetch_all(self.reader())
        .await?;
        Ok(rows.into_iter().map(config).collect::<Result<_, _>>()?)
    }

    /// Removes a configuration with its windows and leases (the foreign keys cascade) and
    /// its windows' events; its pending and held notifications are dropped. Answers
    /// whether it existed.
    pub async fn delete_config(&self, app_id: &str, env: Environment) -> Result<bool, StoreError> {
        let mut tx = self.writer().begin().await?;
        let id: Option<i64> =
            sqlx::query_scalar("SELECT id FROM webhook_configs WHERE app_id = $1 AND environment = $2")
                .bind(app_id)
                .bind(env.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        let Some(id) = id else { return Ok(false) };
        for sql in [
            "DELETE FROM window_events WHERE config_id = $1",
            "DELETE FROM webhook_configs WHERE id = $1",
            "UPDATE notifications SET status = 'dropped', next_attempt_at = NULL \
             WHERE config_id = $1 AND status IN ('pending', 'retrying', 'held')",
        ] {
            sqlx::query(sql).bind(id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Sets the state of (app, environment) to `state` (with `last_error` when given);
    /// answers the updated configuration, or `None` if there is none. Going back to
    /// `active` releases held notifications.
    pub async fn set_config_state(
        &self,
        app_id: &str,
        env: Environment,
        state: ConfigState,
        last_error: Option<&str>,
        now: Timestamp,
    ) -> Result<Option<WebhookConfig>, StoreError> {
        let mut tx = self.writer().begin().await?;
        let updated = sqlx::query(
            "UPDATE webhook_configs SET \
               state_since = CASE WHEN state = $1 THEN state_since ELSE $2 END, \
               state = $1, last_error = COALESCE($3, last_error) \
             WHERE app_id = $4 AND environment = $5",
        )
        .bind(state.as_str())
        .bind(now.millis())
        .bind(last_error)
        .bind(app_id)
        .bind(env.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            return Ok(None);
        }
        let stored = config_in(&mut tx, app_id, env).await?;
        let active = state == ConfigState::Active;
        if active {
            release_held(&mut tx, stored.id, now).await?;
        }
        tx.commit().await?;
        if active {
            self.announce(Signal::Notifications);
        }
        Ok(Some(stored))
    }
}
