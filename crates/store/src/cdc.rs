//! ChangeDataCapture reads: the latest state of entities changed since a time.

use crate::{Store, StoreError};
use ledgerhook_domain::Timestamp;
use sqlx::Row;

/// The latest state of one entity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntityState {
    /// Entity type name.
    pub entity: String,
    /// Entity id.
    pub entity_id: String,
    /// Applied changes so far, minus one (QuickBooks' `SyncToken`).
    pub sync_token: i64,
    /// The oldest `lastUpdated` seen.
    pub created_at: Timestamp,
    /// The newest applied `lastUpdated`.
    pub last_updated: Timestamp,
    /// Deleted (or merged away): a tombstone.
    pub deleted: bool,
    /// The newest body given, as JSON text.
    pub body: Option<String>,
}

impl Store {
    /// Entities of `entities` in `realm_id` whose newest change is at or after `since`,
    /// oldest first, at most `limit`.
    pub async fn changed_entities(
        &self,
        realm_id: &str,
        entities: &[&str],
        since: Timestamp,
        limit: u32,
    ) -> Result<Vec<EntityState>, StoreError> {
        if entities.is_empty() {
            return Ok(Vec::new());
        }
        let list: Vec<String> = (0..entities.len()).map(|i| format!("${}", i + 3)).collect();
        let sql = format!(
            "SELECT entity, entity_id, sync_token, created_at, last_updated, deleted, body FROM entity_states \
             WHERE realm_id = $1 AND last_updated >= $2 AND entity IN ({}) \
             ORDER BY last_updated, entity, entity_id LIMIT ${}",
            list.join(", "),
            entities.len() + 3
        );
        let mut query = sqlx::query(&sql).bind(realm_id).bind(since.millis());
        for entity in entities {
            query = query.bind(*entity);
        }
        let rows = query.bind(i64::from(limit)).fetch_all(self.reader()).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.push(EntityState {
                entity: row.try_get("entity")?,
                entity_id: row.try_get("entity_id")?,
                sync_token: row.try_get("sync_token")?,
                created_at: Timestamp(row.try_get("created_at")?),
                last_updated: Timestamp(row.try_get("last_updated")?),
                deleted: row.try_get::<i64, _>("deleted")? != 0,
                body: row.try_get("body")?,
            });
        }
        Ok(out)
    }
}

fn state_row(row: &sqlx::any::AnyRow) -> Result<EntityState, sqlx::Error> {
    Ok(EntityState {
        entity: row.try_get("entity")?,
        entity_id: row.try_get("entity_id")?,
        sync_token: row.try_get("sync_token")?,
        created_at: Timestamp(row.try_get("created_at")?),
        last_updated: Timestamp(row.try_get("last_updated")?),
        deleted: row.try_get::<i64, _>("deleted")? != 0,
        body: row.try_get("body")?,
    })
}

impl Store {
    /// The latest state of one entity.
    pub async fn entity_state(
        &self,
        realm_id: &str,
        entity: &str,
        entity_id: &str,
    ) -> Result<Option<EntityState>, StoreError> {
        let row = sqlx::query(
            "SELECT entity, entity_id, sync_token, created_at, last_updated, deleted, body FROM entity_states \
             WHERE realm_id = $1 AND entity = $2 AND entity_id = $3",
        )
        .bind(realm_id)
        .bind(entity)
        .bind(entity_id)
        .fetch_optional(self.reader())
        .await?;
        Ok(row.as_ref().map(state_row).transpose()?)
    }

    /// Entities of a type that are not deleted, ordered by id (numerically where ids are
    /// numbers), `offset` skipped, at most `limit`; only `only_id` when given.
    pub async fn live_entities(
        &self,
        realm_id: &str,
        entity: &str,
        only_id: Option<&str>,
    ) -> Result<Vec<EntityState>, StoreError> {
        let rows = sqlx::query(
            "SELECT entity, entity_id, sync_token, created_at, last_updated, deleted, body FROM entity_states \
             WHERE realm_id = $1 AND entity = $2 AND deleted = 0 AND ($3 = '' OR entity_id = $3)",
        )
        .bind(realm_id)
        .bind(entity)
        .bind(only_id.unwrap_or(""))
        .fetch_all(self.reader())
        .await?;
        let mut states = rows.iter().map(state_row).collect::<Result<Vec<_>, _>>()?;
        states.sort_by(
            |a, b| match (a.entity_id.parse::<u64>(), b.entity_id.parse::<u64>()) {
                (Ok(x), Ok(y)) => x.cmp(&y),
                _ => a.entity_id.cmp(&b.entity_id),
            },
        );
        Ok(states)
    }

    /// Stores `body` as the state of an entity that has none yet (`SyncToken` 0), with no
    /// change event: the entities a QuickBooks company has from the start
    /// (`CompanyInfo`, `Preferences`). An existing state is left as it is.
    pub async fn seed_entity(
        &self,
        realm_id: &str,
        entity: &str,
        entity_id: &str,
        body: &str,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO entity_states (realm_id, entity, entity_id, sync_token, created_at, last_updated, deleted, body) \
             VALUES ($1, $2, $3, 0, $4, $4, 0, $5) ON CONFLICT (realm_id, entity, entity_id) DO NOTHING",
        )
        .bind(realm_id)
        .bind(entity)
        .bind(entity_id)
        .bind(at.millis())
        .bind(body)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    /// The next free numeric id of an entity type in a realm (QuickBooks ids are small
    /// integers).
    pub async fn next_entity_id(&self, realm_id: &str, entity: &str) -> Result<u64, StoreError> {
        let ids: Vec<String> =
            sqlx::query_scalar("SELECT entity_id FROM entity_states WHERE realm_id = $1 AND entity = $2")
                .bind(realm_id)
                .bind(entity)
                .fetch_all(self.reader())
                .await?;
        Ok(ids
            .iter()
            .filter_map(|id| id.parse::<u64>().ok())
            .max()
            .unwrap_or(0)
            + 1)
    }
}
