//! The copy `ledgerhook mirror` keeps: every connected realm's entities, kept by the
//! receiver SDK's worker from notifications and CDC, and a check that the copy equals
//! what the server's CDC reports.
//!
//! The copy is a SQLite file with one row per (realm, entity type, id): the newest
//! `lastUpdated` applied, whether the entity is deleted, and its body as CDC gave it
//! (`NULL` while only a notification has named it).

use ledgerhook_domain::{Operation, Timestamp};
use ledgerhook_receiver::worker::{Apply, Change, Worker};
use serde_json::Value;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use std::collections::BTreeMap;
use std::path::Path;

/// One entity as the copy holds it.
#[derive(Clone, Debug, PartialEq)]
pub struct Copied {
    /// The newest `lastUpdated` applied.
    pub last_updated: Timestamp,
    /// Deleted (or merged away).
    pub deleted: bool,
    /// The body from CDC, if one has arrived.
    pub body: Option<Value>,
}

/// The local copy.
#[derive(Clone)]
pub struct Mirror {
    pool: SqlitePool,
}

impl Mirror {
    /// Opens (creating if needed) the copy at `path`.
    pub async fn open(path: &Path) -> Result<Mirror, sqlx::Error> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS entities (realm_id TEXT NOT NULL, entity TEXT NOT NULL, \
             entity_id TEXT NOT NULL, last_updated INTEGER NOT NULL, deleted INTEGER NOT NULL, body TEXT, \
             PRIMARY KEY (realm_id, entity, entity_id))",
        )
        .execute(&pool)
        .await?;
        Ok(Mirror { pool })
    }

    /// Every entity of `realm_id` in the copy, by (entity type, id).
    pub async fn entities(&self, realm_id: &str) -> Result<BTreeMap<(String, String), Copied>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT entity, entity_id, last_updated, deleted, body FROM entities WHERE realm_id = ?",
        )
        .bind(realm_id)
        .fetch_all(&self.pool)
        .await?;
        let mut copy = BTreeMap::new();
        for row in rows {
            let body: Option<String> = row.try_get("body")?;
            copy.insert(
                (row.try_get("entity")?, row.try_get("entity_id")?),
                Copied {
                    last_updated: Timestamp(row.try_get("last_updated")?),
                    deleted: row.try_get::<i64, _>("deleted")? != 0,
                    body: body.and_then(|b| serde_json::from_str(&b).ok()),
                },
            );
        }
        Ok(copy)
    }
}

impl Apply for Mirror {
    async fn apply(&self, change: &Change) -> Result<(), String> {
        let event = &change.event;
        let deleted = match &change.body {
            Some(body) => body["status"] == "Deleted",
            None => event.operation == Operation::Delete,
        };
        let body = change.body.as_ref().map(Value::to_string);
        // A notification names the entity only: its body stays until CDC brings one.
        sqlx::query(
            "INSERT INTO entities (realm_id, entity, entity_id, last_updated, deleted, body) VALUES (?, ?, ?, ?, ?, ?) \
             ON CONFLICT (realm_id, entity, entity_id) DO UPDATE SET last_updated = excluded.last_updated, \
             deleted = excluded.deleted, body = COALESCE(excluded.body, entities.body)",
        )
        .bind(&event.realm_id)
        .bind(&event.entity)
        .bind(&event.entity_id)
        .bind(event.last_updated.millis())
        .bind(i64::from(deleted))
        .bind(body)
        .execute(&self.pool)
        .await
        .map_err(|e| e.to_string())?;
        if let (Operation::Merge, Some(loser)) = (event.operation, &event.deleted_id) {
            sqlx::query(
                "UPDATE entities SET deleted = 1 WHERE realm_id = ? AND entity = ? AND entity_id = ?",
            )
            .bind(&event.realm_id)
            .bind(&event.entity)
            .bind(loser)
            .execute(&self.pool)
            .await
            .map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

/// What [`compare`] found for one realm.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Comparison {
    /// Entities the server reported.
    pub compared: usize,
    /// Each difference, in words.
    pub differences: Vec<String>,
}

/// Compares the copy of `realm_id` with everything the server's CDC reports for
/// `entities` over the last 30 days (CDC's reach): each reported entity must be in the
/// copy at the same `lastUpdated`, deleted if it is a tombstone, with the same body
/// otherwise; and every entity the copy changed within that time must be reported.
pub async fn compare(
    mirror: &Mirror,
    worker: &Worker<Mirror>,
    entities: &[String],
    realm_id: &str,
) -> anyhow::Result<Comparison> {
    let mut server: BTreeMap<(String, String), Change> = BTreeMap::new();
    // Oldest first: a later state of the same entity replaces an earlier one.
    for change in worker.changes_since(realm_id, Timestamp(0)).await? {
        server.insert(
            (change.event.entity.clone(), change.event.entity_id.clone()),
            change,
        );
    }
    let oldest = server.values().map(|c| c.event.last_updated).min();
    let copy = mirror.entities(realm_id).await?;
    let mut comparison = Comparison {
        compared: server.len(),
        differences: Vec::new(),
    };
    for ((entity, id), change) in &server {
        let name = format!("{entity} {id}");
        let Some(copied) = copy.get(&(entity.clone(), id.clone())) else {
            comparison
                .differences
                .push(format!("{name}: missing from the copy"));
            continue;
        };
        let body = change.body.as_ref().unwrap_or(&Value::Null);
        let tombstone = body["status"] == "Deleted";
        if copied.last_updated != change.event.last_updated {
            comparison.differences.push(format!(
                "{name}: the copy is at {}, the server at {}",
                copied.last_updated, change.event.last_updated
            ));
        } else if copied.deleted != tombstone {
            let (copy_says, server_says) = if tombstone {
                ("present", "deleted")
            } else {
                ("deleted", "present")
            };
            comparison.differences.push(format!(
                "{name}: {copy_says} in the copy, {server_says} on the server"
            ));
        } else if !tombstone && copied.body.as_ref() != Some(body) {
            comparison.differences.push(format!("{name}: the bodies differ"));
        }
    }
    let within = |at: Timestamp| oldest.is_some_and(|o| at >= o);
    for ((entity, id), copied) in &copy {
        let wanted = entities.iter().any(|e| e == entity);
        if wanted && within(copied.last_updated) && !server.contains_key(&(entity.clone(), id.clone())) {
            comparison
                .differences
                .push(format!("{entity} {id}: in the copy, not reported by the server"));
        }
    }
    Ok(comparison)
}
