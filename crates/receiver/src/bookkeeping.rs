//! The worker's bookkeeping, in the inbox file beside the inbox: the newest version
//! applied per entity (`worker_applied`: `lastUpdated`, `SyncToken` when CDC gave one,
//! the operation) and when the last full repair started (`worker_meta`).

use crate::payload::Event;
use ledgerhook_domain::{Operation, Timestamp};
use sqlx::{Row, SqlitePool};

/// Which state of an entity a change carries: ordered by `lastUpdated`, then by
/// `SyncToken` (QuickBooks increments it on every change; `LastUpdatedTime` has whole
/// seconds, so two changes in one second differ only there), then — for notifications,
/// which carry no `SyncToken` — by where the operation falls in an entity's life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Version {
    /// `lastUpdated`, Unix milliseconds.
    pub last_updated: i64,
    /// `SyncToken`, when the change came from CDC.
    pub sync_token: Option<i64>,
    /// The operation.
    pub operation: Operation,
}

/// Where an operation falls in an entity's life, for changes of one second without a
/// `SyncToken`.
fn life_stage(operation: Operation) -> u8 {
    match operation {
        Operation::Create => 0,
        Operation::Update | Operation::Emailed => 1,
        Operation::Merge | Operation::Void => 2,
        Operation::Delete => 3,
    }
}

impl Version {
    /// Whether a change at `self` is newer than the applied `known` and so is applied.
    pub fn is_newer_than(&self, known: &Version) -> bool {
        if self.last_updated != known.last_updated {
            return self.last_updated > known.last_updated;
        }
        match (self.sync_token, known.sync_token) {
            (Some(new), Some(old)) => new > old,
            // A body from CDC for a state a notification only named.
            (Some(_), None) => true,
            // A notification of a state CDC already gave: CDC's is at least as new.
            (None, Some(_)) => false,
            (None, None) => life_stage(self.operation) > life_stage(known.operation),
        }
    }
}

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
            "CREATE TABLE IF NOT EXISTS worker_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
        ] {
            sqlx::query(sql).execute(&pool).await?;
        }
        for (column, kind) in [("sync_token", "INTEGER"), ("operation", "TEXT")] {
            let present: bool = sqlx::query_scalar(
                "SELECT COUNT(*) > 0 FROM pragma_table_info('worker_applied') WHERE name = ?",
            )
            .bind(column)
            .fetch_one(&pool)
            .await?;
            if !present {
                sqlx::query(&format!("ALTER TABLE worker_applied ADD COLUMN {column} {kind}"))
                    .execute(&pool)
                    .await?;
            }
        }
        Ok(Bookkeeping { pool })
    }

    /// The version of the newest change applied to `event`'s entity.
    pub(crate) async fn applied_version(&self, event: &Event) -> Result<Option<Version>, sqlx::Error> {
        let row = sqlx::query(
            "SELECT last_updated, sync_token, operation FROM worker_applied \
             WHERE realm_id = ? AND entity = ? AND entity_id = ?",
        )
        .bind(&event.realm_id)
        .bind(&event.entity)
        .bind(&event.entity_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let operation: Option<String> = row.try_get("operation")?;
        Ok(Some(Version {
            last_updated: row.try_get("last_updated")?,
            sync_token: row.try_get("sync_token")?,
            // Rows from before operations were kept: the strongest, so a same-second
            // notification is not applied over them.
            operation: operation
                .as_deref()
                .and_then(Operation::parse)
                .unwrap_or(Operation::Delete),
        }))
    }

    /// Records that `event` was applied at `version`.
    pub(crate) async fn applied(&self, event: &Event, version: &Version) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO worker_applied (realm_id, entity, entity_id, last_updated, sync_token, operation) \
             VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (realm_id, entity, entity_id) DO UPDATE SET \
             last_updated = excluded.last_updated, sync_token = excluded.sync_token, operation = excluded.operation",
        )
        .bind(&event.realm_id)
        .bind(&event.entity)
        .bind(&event.entity_id)
        .bind(version.last_updated)
        .bind(version.sync_token)
        .bind(version.operation.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The newest `lastUpdated` applied in `realm_id`.
    pub(crate) async fn newest_applied(&self, realm_id: &str) -> Result<Option<i64>, sqlx::Error> {
        sqlx::query_scalar("SELECT MAX(last_updated) FROM worker_applied WHERE realm_id = ?")
            .bind(realm_id)
            .fetch_one(&self.pool)
            .await
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
