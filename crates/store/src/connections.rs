//! Connections (an app authorised on a realm) and the OAuth credentials they carry.

use crate::model::{environment, token_kind, Connection, NewToken, OAuthToken};
use crate::{Store, StoreError};
use ledgerhook_domain::Timestamp;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

fn connection(row: AnyRow) -> Result<Connection, sqlx::Error> {
    Ok(Connection {
        app_id: row.try_get("app_id")?,
        realm_id: row.try_get("realm_id")?,
        environment: environment(&row.try_get::<String, _>("environment")?)?,
        after_seq: row.try_get("after_seq")?,
        created_at: Timestamp(row.try_get("created_at")?),
    })
}

async fn insert_tokens(
    tx: &mut Transaction<'static, Any>,
    app_id: &str,
    realm_id: &str,
    tokens: &[NewToken],
    now: Timestamp,
) -> Result<(), sqlx::Error> {
    for token in tokens {
        sqlx::query(
            "INSERT INTO oauth_tokens (token_hash, kind, app_id, realm_id, redirect_uri, expires_at, created_at, scope) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&token.hash)
        .bind(token.kind.as_str())
        .bind(app_id)
        .bind(realm_id)
        .bind(token.redirect_uri.as_deref())
        .bind(token.expires_at.millis())
        .bind(now.millis())
        .bind(token.scope.as_deref())
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

impl Store {
    /// Connects an app to a realm (keeping the original connection time if it already
    /// was) and stores the given tokens, in one transaction.
    pub async fn connect(
        &self,
        app_id: &str,
        realm_id: &str,
        tokens: &[NewToken],
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut tx = self.writer().begin().await?;
        let last_seq: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM change_events")
            .fetch_one(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO connections (app_id, realm_id, after_seq, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (app_id, realm_id) DO NOTHING",
        )
        .bind(app_id)
        .bind(realm_id)
        .bind(last_seq)
        .bind(now.millis())
        .execute(&mut *tx)
        .await?;
        insert_tokens(&mut tx, app_id, realm_id, tokens, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Stores further tokens for an existing connection (refresh grant).
    pub async fn add_tokens(
        &self,
        app_id: &str,
        realm_id: &str,
        tokens: &[NewToken],
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut tx = self.writer().begin().await?;
        insert_tokens(&mut tx, app_id, realm_id, tokens, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The app's connections, ordered by realm id, after `after`, at most `limit`.
    pub async fn connections(
        &self,
        app_id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Connection>, StoreError> {
        let rows = sqlx::query(
            "SELECT c.app_id, c.realm_id, r.environment, c.after_seq, c.created_at \
             FROM connections c JOIN realms r ON r.id = c.realm_id \
             WHERE c.app_id = $1 AND c.realm_id > $2 ORDER BY c.realm_id LIMIT $3",
        )
        .bind(app_id)
        .bind(after.unwrap_or(""))
        .bind(i64::from(limit))
        .fetch_all(self.reader())
        .await?;
        Ok(rows.into_iter().map(connection).collect::<Result<_, _>>()?)
    }

    /// One connection.
    pub async fn connection(&self, app_id: &str, realm_id: &str) -> Result<Option<Connection>, StoreError> {
        let row = sqlx::query(
            "SELECT c.app_id, c.realm_id, r.environment, c.after_seq, c.created_at \
             FROM connections c JOIN realms r ON r.id = c.realm_id WHERE c.app_id = $1 AND c.realm_id = $2",
        )
        .bind(app_id)
        .bind(realm_id)
        .fetch_optional(self.reader())
        .await?;
        Ok(row.map(connection).transpose()?)
    }

    /// Disconnects: removes the connection, revokes the app's tokens for the realm and
    /// drops its undelivered notifications. Answers whether it existed.
    pub async fn disconnect(&self, app_id: &str, realm_id: &str) -> Result<bool, StoreError> {
        let mut tx = self.writer().begin().await?;
        let deleted = sqlx::query("DELETE FROM connections WHERE app_id = $1 AND realm_id = $2")
            .bind(app_id)
            .bind(realm_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        // Tokens and windows belong to the (app, realm) pair, not to the connection row
        // (a code exists before its connection), so no foreign key covers them.
        for sql in [
            "DELETE FROM oauth_tokens WHERE app_id = $1 AND realm_id = $2",
            "DELETE FROM window_events WHERE realm_id = $2 AND config_id IN (SELECT id FROM webhook_configs WHERE app_id = $1)",
            "DELETE FROM windows WHERE realm_id = $2 AND config_id IN (SELECT id FROM webhook_configs WHERE app_id = $1)",
            "UPDATE notifications SET status = 'dropped', next_attempt_at = NULL \
             WHERE app_id = $1 AND realm_id = $2 AND status IN ('pending', 'retrying', 'held')",
        ] {
            sqlx::query(sql).bind(app_id).bind(realm_id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(deleted == 1)
    }

    /// The OAuth credential with this hash, if it exists (expired ones included: the
    /// caller decides).
    pub async fn oauth_token(&self, hash: &str) -> Result<Option<OAuthToken>, StoreError> {
        let row = sqlx::query(
            "SELECT kind, app_id, realm_id, redirect_uri, scope, expires_at FROM oauth_tokens WHERE token_hash = $1",
        )
        .bind(hash)
        .fetch_optional(self.reader())
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(OAuthToken {
            kind: token_kind(&row.try_get::<String, _>("kind")?)?,
            app_id: row.try_get("app_id")?,
            realm_id: row.try_get("realm_id")?,
            redirect_uri: row.try_get("redirect_uri")?,
            scope: row.try_get("scope")?,
            expires_at: Timestamp(row.try_get("expires_at")?),
        }))
    }

    /// Removes one credential (a used code, a revoked or rotated token); answers whether
    /// it existed. Used codes are consumed this way exactly once.
    pub async fn delete_oauth_token(&self, hash: &str) -> Result<bool, StoreError> {
        let result = sqlx::query("DELETE FROM oauth_tokens WHERE token_hash = $1")
            .bind(hash)
            .execute(self.writer())
            .await?;
        Ok(result.rows_affected() == 1)
    }
}
