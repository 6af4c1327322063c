//! The worker's bookkeeping, in the inbox file beside the inbox: the newest
//! `lastUpdated` applied per entity (`worker_applied`), when each realm was last heard
//! from (`worker_realms`), and when the last full repair started (`worker_meta`).

use crate::payload::Event;
use ledgerhook_domain::Timestamp;
use sqlx::SqlitePool;

/// The worker's tables, over the inbox's pool.
pub(crate) struct Bookkeeping {
    pool: SqlitePool,
}

impl Bookkeeping {
    /// Creates the tables if they are missing.
    pub(crate) async fn open(pool: SqlitePool) -> Result<Bookkeeping, sqlx::Error> {
        for sql in [
            "CREATE TABLE IF NOT EXISTS worker_applied (realm_id TEXT NOT NULL, entity TEXT NOT NULL, \
             entity_id TEXT NOT NULL, last_updated INTEGER NOT NULL, PRIMARY KEY (realm_id, entity, entity_id))",
            "CREATE TABLE IF NOT EXISTS worker_realms (realm_id TEXT PRIMARY KEY, heard_at INTEGER NOT NULL)",
            "CREATE TABLE IF NOT EXISTS worker_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
        ] {
            sqlx::query(sql).execute(&pool).await?;
        }
        Ok(Bookkeeping { pool })
    }

    /// The `lastUpdated` (milliseconds) of the newest change applied to `event`'s entity.
    pub(crate) async fn applied_at(&self, event: &Event) -> Result<Option<i64>, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT last_updated FROM worker_applied WHERE realm_id = ? AND entity = ? AND entity_id = ?",
        )
        .bind(&event.realm_id)
        .bind(&event.entity)
        .bind(&event.entity_id)
        .fetch_optional(&self.pool)
        .await
    }

    /// Records that `event` was applied.
    pub(crate) async fn applied(&self, event: &Event) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO worker_applied (realm_id, entity, entity_id, last_updated) VALUES (?, ?, ?, ?) \
             ON CONFLICT (realm_id, entity, entity_id) DO UPDATE SET last_updated = excluded.last_updated",
        )
        .bind(&event.realm_id)
        .bind(&event.entity)
        .bind(&event.entity_id)
        .bind(event.last_updated.millis())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// When a notification from `realm_id` last arrived (milliseconds).
    pub(crate) async fn heard_at(&self, realm_id: &str) -> Result<Option<i64>, sqlx::Error> {
        sqlx::query_scalar("SELECT heard_at FROM worker_realms WHERE realm_id = ?")
            .bind(realm_id)
            .fetch_optional(&self.pool)
            .await
    }

    /// Records a notification from `realm_id` that arrived at `heard_at` (the newest wins).
    pub(crate) async fn heard(&self, realm_id: &str, heard_at: i64) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO worker_realms (realm_id, heard_at) VALUES (?, ?) \
             ON CONFLICT (realm_id) DO UPDATE SET heard_at = MAX(worker_realms.heard_at, excluded.heard_at)",
        )
        .bind(realm_id)
        .bind(heard_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// When the last full repair started.
    pub(crate) async fn last_full_repair(&self) -> Result<Option<Timestamp>, sqlx::Error> {
        let at: Option<i64> = sqlx::query_scalar("SELECT value FROM worker_meta WHERE key = 'full_repair'")
            .fetch_optional(&self.pool)
            .await?;
        Ok(at.map(Timestamp))
    }

    /// Records a full repair that started at `started`.
    pub(crate) async fn full_repair_done(&self, started: Timestamp) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO worker_meta (key, value) VALUES ('full_repair', ?) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(started.millis())
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
