//! Apps and their signing secrets.

use crate::model::{App, SecretName, StoredSecret};
use crate::{Store, StoreError};
use ledgerhook_domain::Timestamp;
use sqlx::any::AnyRow;
use sqlx::Row;

const COLUMNS: &str = "id, name, client_id, client_secret_hash, api_key_hash, redirect_uris, created_at";

/// Redirect URIs are stored one per line (a URI cannot contain a newline).
fn app(row: AnyRow) -> Result<App, sqlx::Error> {
    let uris: String = row.try_get("redirect_uris")?;
    Ok(App {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        client_id: row.try_get("client_id")?,
        client_secret_hash: row.try_get("client_secret_hash")?,
        api_key_hash: row.try_get("api_key_hash")?,
        redirect_uris: uris.lines().map(str::to_owned).collect(),
        created_at: Timestamp(row.try_get("created_at")?),
    })
}

impl Store {
    /// Inserts an app and its two signing secrets (stored forms) in one transaction.
    pub async fn insert_app(
        &self,
        app: &App,
        verifier_token: &str,
        signing_secret: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.writer().begin().await?;
        sqlx::query(&format!(
            "INSERT INTO apps ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        ))
        .bind(&app.id)
        .bind(&app.name)
        .bind(&app.client_id)
        .bind(&app.client_secret_hash)
        .bind(&app.api_key_hash)
        .bind(app.redirect_uris.join("\n"))
        .bind(app.created_at.millis())
        .execute(&mut *tx)
        .await
        .map_err(|e| StoreError::unique_as_conflict(e, "app id or credential"))?;
        for (name, value) in [
            (SecretName::VerifierToken, verifier_token),
            (SecretName::SigningSecret, signing_secret),
        ] {
            sqlx::query(
                "INSERT INTO app_secrets (app_id, name, current_value, previous_value, grace_until, rotated_at) \
                 VALUES ($1, $2, $3, NULL, NULL, $4)",
            )
            .bind(&app.id)
            .bind(name.as_str())
            .bind(value)
            .bind(app.created_at.millis())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// One app by id.
    pub async fn app(&self, id: &str) -> Result<Option<App>, StoreError> {
        self.app_where("id", id).await
    }

    /// The app whose API key has this hash.
    pub async fn app_by_api_key_hash(&self, hash: &str) -> Result<Option<App>, StoreError> {
        self.app_where("api_key_hash", hash).await
    }

    /// The app with this OAuth client id.
    pub async fn app_by_client_id(&self, client_id: &str) -> Result<Option<App>, StoreError> {
        self.app_where("client_id", client_id).await
    }

    async fn app_where(&self, column: &'static str, value: &str) -> Result<Option<App>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM apps WHERE {column} = $1"))
            .bind(value)
            .fetch_optional(self.reader())
            .await?;
        Ok(row.map(app).transpose()?)
    }

    /// Apps ordered by id after `after`, at most `limit`; only `only` when given.
    pub async fn apps(
        &self,
        only: Option<&str>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<App>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM apps WHERE id > $1 AND ($2 = '' OR id = $2) ORDER BY id LIMIT $3"
        ))
        .bind(after.unwrap_or(""))
        .bind(only.unwrap_or(""))
        .bind(i64::from(limit))
        .fetch_all(self.reader())
        .await?;
        Ok(rows.into_iter().map(app).collect::<Result<_, _>>()?)
    }

    /// Deletes an app with its secrets, configurations, connections, tokens and windows
    /// (the foreign keys cascade; the windows' events, which have no key, explicitly);
    /// its undelivered notifications become `dropped`. Answers whether it existed.
    pub async fn delete_app(&self, id: &str) -> Result<bool, StoreError> {
        let mut tx = self.writer().begin().await?;
        sqlx::query(
            "DELETE FROM window_events WHERE config_id IN (SELECT id FROM webhook_configs WHERE app_id = $1)",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let deleted = sqlx::query("DELETE FROM apps WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query(
            "UPDATE notifications SET status = 'dropped', next_attempt_at = NULL \
             WHERE app_id = $1 AND status IN ('pending', 'retrying', 'held')",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(deleted == 1)
    }

    /// A signing secret of an app (stored form).
    pub async fn secret(&self, app_id: &str, name: SecretName) -> Result<Option<StoredSecret>, StoreError> {
        let row = sqlx::query(
            "SELECT current_value, previous_value, grace_until FROM app_secrets WHERE app_id = $1 AND name = $2",
        )
        .bind(app_id)
        .bind(name.as_str())
        .fetch_optional(self.reader())
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(StoredSecret {
            current: row.try_get("current_value")?,
            previous: row.try_get("previous_value")?,
            grace_until: row.try_get::<Option<i64>, _>("grace_until")?.map(Timestamp),
        }))
    }

    /// Replaces a secret: the old current value becomes `previous` until `grace_until`.
    /// A rotation during a grace period discards the older previous value.
    pub async fn rotate_secret(
        &self,
        app_id: &str,
        name: SecretName,
        new_value: &str,
        now: Timestamp,
        grace_until: Timestamp,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "UPDATE app_secrets SET previous_value = current_value, current_value = $1, grace_until = $2, rotated_at = $3 \
             WHERE app_id = $4 AND name = $5",
        )
        .bind(new_value)
        .bind(grace_until.millis())
        .bind(now.millis())
        .bind(app_id)
        .bind(name.as_str())
        .execute(self.writer())
        .await?;
        Ok(result.rows_affected() == 1)
    }
}
