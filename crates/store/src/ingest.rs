//! Ingestion: change events and the latest state of each entity, written in one
//! transaction per group of requests (group commit).
//!
//! The latest state follows `lastUpdated`, not arrival: a change is *applied* to the
//! entity's state (body, deleted flag, `SyncToken` + 1) only if its `lastUpdated` is not
//! older than the state's. Every change is recorded as a change event either way.

use crate::fanout::{fan_out, FanOut, StoredEvent};
use crate::signals::Signal;
use crate::sql::{Params, ROWS_PER_STATEMENT};
use crate::windows::event_row;
use crate::windows::{Render, WindowPolicy};
use crate::{Backend, Store, StoreError};
use ledgerhook_domain::{Operation, Timestamp};
use sqlx::{Any, Row, Transaction};
use std::collections::HashMap;

/// One validated change event to store.
#[derive(Clone, Debug)]
pub struct NewEvent {
    /// Entity type name.
    pub entity: &'static str,
    /// Entity id.
    pub entity_id: String,
    /// What happened.
    pub operation: Operation,
    /// When it happened at the source.
    pub last_updated: Timestamp,
    /// For `Merge`: the id merged away.
    pub deleted_id: Option<String>,
    /// The entity's new body (a JSON object's text), if given.
    pub data: Option<String>,
    /// The entity's state becomes a tombstone (CDC shows it deleted): true for a
    /// `Delete`, except where QuickBooks keeps the entity readable (a name-list entity
    /// made inactive).
    pub tombstone: bool,
}

/// One ingestion request: its events and optional idempotency key.
#[derive(Clone, Debug)]
pub struct IngestRequest {
    /// The realm.
    pub realm_id: String,
    /// Events in request order.
    pub events: Vec<NewEvent>,
    /// The request's `Idempotency-Key`, if it has one.
    pub idempotency: Option<Idempotency>,
    /// A condition on one entity's state, checked in the transaction (the
    /// QuickBooks-compatible API's create and `SyncToken` check).
    pub precondition: Option<Precondition>,
}

/// An idempotency key as stored: a repeat of the same key and body within
/// [`IDEMPOTENCY_WINDOW_MS`] is answered `response` and stores nothing.
#[derive(Clone, Debug)]
pub struct Idempotency {
    /// The client's key.
    pub key: String,
    /// A hash of the request body (a repeat must match it).
    pub request_hash: String,
    /// The answer to give a repeat, as the caller renders it (the store keeps it opaque).
    pub response: String,
}

/// A condition on the current state of one entity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Precondition {
    /// Entity type name.
    pub entity: &'static str,
    /// Entity id.
    pub entity_id: String,
    /// What must hold.
    pub expect: Expect,
}

/// What a [`Precondition`] requires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// No such entity yet (a create).
    Absent,
    /// The entity exists, is not deleted, and its `SyncToken` is this.
    SyncToken(i64),
}

/// What became of one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IngestOutcome {
    /// Stored: this many events.
    Accepted(usize),
    /// A repeat of an earlier request with the same key and body: its answer, nothing
    /// stored.
    Replayed(String),
    /// The key was used with a different body.
    KeyConflict,
    /// The precondition did not hold (stale `SyncToken`, or the id is taken); nothing
    /// stored.
    PreconditionFailed,
}

/// How long an idempotency key is remembered.
pub const IDEMPOTENCY_WINDOW_MS: i64 = 24 * 3600 * 1000;

/// A change to the latest state of one entity.
struct StateChange<'a> {
    realm_id: &'a str,
    entity: &'static str,
    entity_id: &'a str,
    last_updated: i64,
    deleted: bool,
    body: Option<&'a str>,
}

impl Store {
    /// Stores every request of a group in one transaction and answers an outcome per
    /// request, in order. A database error fails the whole group (nothing is stored).
    ///
    /// Accepted events are fanned out in the same transaction — into notifications at once
    /// (0s windows, made with `render`) or into aggregation windows; the answer says what
    /// was made, so that the aggregator and dispatcher can be woken.
    pub async fn ingest(
        &self,
        requests: &[IngestRequest],
        policy: &WindowPolicy,
        render: Render,
        now: Timestamp,
    ) -> Result<(Vec<IngestOutcome>, FanOut), StoreError> {
        let mut tx = self.writer().begin().await?;
        let mut outcomes = Vec::with_capacity(requests.len());
        let mut accepted: Vec<&IngestRequest> = Vec::new();
        let mut conditioned = std::collections::HashSet::new();
        for request in requests {
            let outcome = match (&request.idempotency, &request.precondition) {
                (_, Some(p)) if !conditioned.insert((&request.realm_id, p.entity, &p.entity_id)) => {
                    // Another request of this group already changes that entity.
                    IngestOutcome::PreconditionFailed
                }
                (_, Some(p)) if !precondition_holds(&mut tx, &request.realm_id, p).await? => {
                    IngestOutcome::PreconditionFailed
                }
                (Some(key), _) => claim_idempotency_key(&mut tx, request, key, now).await?,
                (None, _) => IngestOutcome::Accepted(request.events.len()),
            };
            if matches!(outcome, IngestOutcome::Accepted(_)) {
                accepted.push(request);
            }
            outcomes.push(outcome);
        }
        let stored = insert_events(self.backend(), &mut tx, &accepted, now).await?;
        apply_states(self.backend(), &mut tx, &accepted).await?;
        let fanned = fan_out(&mut tx, self.backend(), &stored, policy, render, now).await?;
        tx.commit().await?;
        if fanned.windows_touched {
            self.announce(Signal::Windows);
        }
        if fanned.notifications_made > 0 {
            self.announce(Signal::Notifications);
        }
        Ok((outcomes, fanned))
    }
}

async fn precondition_holds(
    tx: &mut Transaction<'static, Any>,
    realm_id: &str,
    p: &Precondition,
) -> Result<bool, sqlx::Error> {
    let row = sqlx::query("SELECT sync_token, deleted FROM entity_states WHERE realm_id = $1 AND entity = $2 AND entity_id = $3")
        .bind(realm_id)
        .bind(p.entity)
        .bind(&p.entity_id)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(match (p.expect, row) {
        (Expect::Absent, None) => true,
        (Expect::Absent, Some(_)) => false,
        (Expect::SyncToken(_), None) => false,
        (Expect::SyncToken(expected), Some(row)) => {
            row.try_get::<i64, _>("deleted")? == 0 && row.try_get::<i64, _>("sync_token")? == expected
        }
    })
}

async fn claim_idempotency_key(
    tx: &mut Transaction<'static, Any>,
    request: &IngestRequest,
    idempotency: &Idempotency,
    now: Timestamp,
) -> Result<IngestOutcome, sqlx::Error> {
    let (key, hash) = (&idempotency.key, &idempotency.request_hash);
    let existing = sqlx::query("SELECT request_hash, response, created_at FROM idempotency_keys WHERE realm_id = $1 AND idem_key = $2")
        .bind(&request.realm_id)
        .bind(key)
        .fetch_optional(&mut **tx)
        .await?;
    if let Some(row) = existing {
        let created_at: i64 = row.try_get("created_at")?;
        if now.millis() - created_at < IDEMPOTENCY_WINDOW_MS {
            let stored_hash: String = row.try_get("request_hash")?;
            return Ok(if &stored_hash == hash {
                IngestOutcome::Replayed(row.try_get("response")?)
            } else {
                IngestOutcome::KeyConflict
            });
        }
    }
    sqlx::query(
        "INSERT INTO idempotency_keys (realm_id, idem_key, request_hash, response, created_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (realm_id, idem_key) DO UPDATE SET request_hash = excluded.request_hash, \
         response = excluded.response, created_at = excluded.created_at",
    )
    .bind(&request.realm_id)
    .bind(key)
    .bind(hash)
    .bind(&idempotency.response)
    .bind(now.millis())
    .execute(&mut **tx)
    .await?;
    Ok(IngestOutcome::Accepted(request.events.len()))
}

/// Inserts the accepted requests' events; answers them as stored (with their sequence
/// numbers and request batches), read back from the rows themselves.
async fn insert_events(
    backend: Backend,
    tx: &mut Transaction<'static, Any>,
    requests: &[&IngestRequest],
    now: Timestamp,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    let mut stored = Vec::new();
    // A random id per request groups its events (a 0s window sends each request alone).
    let rows: Vec<(&str, &NewEvent, i64)> = requests
        .iter()
        .flat_map(|r| {
            let batch: i64 = rand::random();
            r.events.iter().map(move |e| (r.realm_id.as_str(), e, batch))
        })
        .collect();
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO change_events (realm_id, entity, entity_id, operation, last_updated, deleted_id, accepted_at, batch_id) \
             VALUES {} RETURNING seq, realm_id, batch_id, entity, entity_id, operation, last_updated, deleted_id",
            Params::new(backend).rows(chunk.len(), 8)
        );
        let mut query = sqlx::query(&sql);
        for (realm_id, event, batch) in chunk {
            query = query
                .bind(*realm_id)
                .bind(event.entity)
                .bind(&event.entity_id)
                .bind(event.operation.as_str())
                .bind(event.last_updated.millis())
                .bind(event.deleted_id.as_deref())
                .bind(now.millis())
                .bind(*batch);
        }
        for row in query.fetch_all(&mut **tx).await? {
            let (seq, event) = event_row(&row)?;
            stored.push(StoredEvent {
                seq,
                realm_id: row.try_get("realm_id")?,
                batch_id: row.try_get("batch_id")?,
                event,
            });
        }
    }
    stored.sort_by_key(|e| e.seq);
    Ok(stored)
}

/// The state changes of the accepted requests, in arrival order. A merge changes two
/// entities: the survivor (`id`) and the loser (`deletedId`, now a tombstone).
fn state_changes<'a>(requests: &[&'a IngestRequest]) -> Vec<StateChange<'a>> {
    let mut changes = Vec::new();
    for request in requests {
        for event in &request.events {
            changes.push(StateChange {
                realm_id: &request.realm_id,
                entity: event.entity,
                entity_id: &event.entity_id,
                last_updated: event.last_updated.millis(),
                deleted: event.tombstone,
                body: event.data.as_deref(),
            });
            if let (Operation::Merge, Some(loser)) = (event.operation, &event.deleted_id) {
                changes.push(StateChange {
                    realm_id: &request.realm_id,
                    entity: event.entity,
                    entity_id: loser,
                    last_updated: event.last_updated.millis(),
                    deleted: true,
                    body: None,
                });
            }
        }
    }
    changes
}

/// Applies the state changes with multi-row upserts. PostgreSQL refuses to touch one row
/// twice in a statement, so the changes are split into rounds: round `r` holds the
/// `r`-th change of every entity, and rounds run in order.
async fn apply_states(
    backend: Backend,
    tx: &mut Transaction<'static, Any>,
    requests: &[&IngestRequest],
) -> Result<(), sqlx::Error> {
    let mut rounds: Vec<Vec<StateChange<'_>>> = Vec::new();
    let mut seen: HashMap<(&str, &str, &str), usize> = HashMap::new();
    for change in state_changes(requests) {
        let occurrence = seen
            .entry((change.realm_id, change.entity, change.entity_id))
            .or_insert(0);
        if rounds.len() <= *occurrence {
            rounds.push(Vec::new());
        }
        rounds[*occurrence].push(change);
        *occurrence += 1;
    }
    for round in rounds {
        for chunk in round.chunks(ROWS_PER_STATEMENT) {
            upsert_states(backend, tx, chunk).await?;
        }
    }
    Ok(())
}

async fn upsert_states(
    backend: Backend,
    tx: &mut Transaction<'static, Any>,
    changes: &[StateChange<'_>],
) -> Result<(), sqlx::Error> {
    let sql = format!(
        "INSERT INTO entity_states (realm_id, entity, entity_id, last_updated, deleted, body, sync_token, created_at) \
         VALUES {} \
         ON CONFLICT (realm_id, entity, entity_id) DO UPDATE SET \
           sync_token = entity_states.sync_token + 1, \
           last_updated = excluded.last_updated, \
           deleted = excluded.deleted, \
           body = COALESCE(excluded.body, entity_states.body), \
           created_at = CASE WHEN excluded.created_at < entity_states.created_at \
                             THEN excluded.created_at ELSE entity_states.created_at END \
         WHERE excluded.last_updated >= entity_states.last_updated",
        placeholders_with_constants(backend, changes.len())
    );
    let mut query = sqlx::query(&sql);
    for change in changes {
        query = query
            .bind(change.realm_id)
            .bind(change.entity)
            .bind(change.entity_id)
            .bind(change.last_updated)
            .bind(i64::from(change.deleted))
            .bind(change.body)
            .bind(change.last_updated);
    }
    query.execute(&mut **tx).await?;
    Ok(())
}

/// Value tuples of seven parameters with `sync_token` 0 placed before `created_at`.
fn placeholders_with_constants(backend: Backend, rows: usize) -> String {
    let mut params = Params::new(backend);
    (0..rows)
        .map(|_| {
            let p: Vec<String> = (0..7).map(|_| params.next()).collect();
            format!("({}, 0, {})", p[..6].join(", "), p[6])
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_number_every_parameter() {
        assert_eq!(
            placeholders_with_constants(Backend::Postgres, 1),
            "($1, $2, $3, $4, $5, $6, 0, $7)"
        );
    }
}
