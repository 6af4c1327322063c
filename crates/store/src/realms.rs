//! Realms (companies).

use crate::model::{environment, Realm};
use crate::{Store, StoreError};
use ledgerhook_domain::Timestamp;
use sqlx::any::AnyRow;
use sqlx::Row;

const COLUMNS: &str = "id, name, environment, created_at";

fn realm(row: AnyRow) -> Result<Realm, sqlx::Error> {
    Ok(Realm {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        environment: environment(&row.try_get::<String, _>("environment")?)?,
        created_at: Timestamp(row.try_get("created_at")?),
    })
}

impl Store {
    /// Inserts a realm; [`StoreError::Conflict`] if the id is taken.
    pub async fn insert_realm(&self, realm: &Realm) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO realms (id, name, environment, created_at) VALUES ($1, $2, $3, $4)")
            .bind(&realm.id)
            .bind(&realm.name)
            .bind(realm.environment.as_str())
            .bind(realm.created_at.millis())
            .execute(self.writer())
            .await
            .map_err(|e| StoreError::unique_as_conflict(e, "realm id"))?;
        Ok(())
    }

    /// One realm.
    pub async fn realm(&self, id: &str) -> Result<Option<Realm>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM realms WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.reader())
            .await?;
        Ok(row.map(realm).transpose()?)
    }

    /// Realms ordered by id, after `after`, at most `limit`; only those connected to
    /// `connected_app` when given.
    pub async fn realms(
        &self,
        connected_app: Option<&str>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Realm>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM realms r WHERE id > $1 \
             AND ($2 = '' OR EXISTS (SELECT 1 FROM connections c WHERE c.realm_id = r.id AND c.app_id = $2)) \
             ORDER BY id LIMIT $3"
        ))
        .bind(after.unwrap_or(""))
        .bind(connected_app.unwrap_or(""))
        .bind(i64::from(limit))
        .fetch_all(self.reader())
        .await?;
        Ok(rows.into_iter().map(realm).collect::<Result<_, _>>()?)
    }

    /// Deletes a realm with its connections, tokens, idempotency keys and windows (the
    /// foreign keys cascade) and its entities, events and windows' events (explicitly:
    /// those tables have no keys, see migration 0009); its undelivered notifications
    /// become `dropped`. Answers whether it existed.
    pub async fn delete_realm(&self, id: &str) -> Result<bool, StoreError> {
        let mut tx = self.writer().begin().await?;
        let deleted = sqlx::query("DELETE FROM realms WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        for sql in [
            "DELETE FROM entity_states WHERE realm_id = $1",
            "DELETE FROM change_events WHERE realm_id = $1",
            "DELETE FROM window_events WHERE realm_id = $1",
            "UPDATE notifications SET status = 'dropped', next_attempt_at = NULL \
             WHERE realm_id = $1 AND status IN ('pending', 'retrying', 'held')",
        ] {
            sqlx::query(sql).bind(id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(deleted == 1)
    }
}
