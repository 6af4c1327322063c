//! Server-wide key/value settings kept in the database (the operator token's hash, …).

use crate::{Store, StoreError};

impl Store {
    /// Reads a meta value.
    pub async fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar("SELECT value FROM meta WHERE key = $1")
            .bind(key)
            .fetch_optional(self.reader())
            .await?)
    }

    /// Writes (inserts or replaces) a meta value.
    pub async fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
            .bind(key)
            .bind(value)
            .execute(self.writer())
            .await?;
        Ok(())
    }

    /// Writes `value` only if `key` has none yet; answers whether it was written. Nodes
    /// starting together agree on one value this way.
    pub async fn init_meta(&self, key: &str, value: &str) -> Result<bool, StoreError> {
        let result =
            sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
                .bind(key)
                .bind(value)
                .execute(self.writer())
                .await?;
        Ok(result.rows_affected() == 1)
    }
}
