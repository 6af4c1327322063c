//! The entity operations of the QuickBooks-compatible API — create, update (full or
//! sparse, with the `SyncToken` check), delete, void, send, read — answering the entity
//! as QuickBooks shows it. The HTTP handlers (`entities.rs`, `company.rs`) and the batch
//! endpoint (`batch.rs`) share them. Every write is an ingestion request with a
//! precondition, so it makes the same change event (and notifications) as the
//! management API would.

use super::cdc::entity_json;
use super::{rules, Fault};
use crate::AppState;
use ledgerhook_domain::{EntitySpec, Operation, Timestamp};
use ledgerhook_store::cdc::EntityState;
use ledgerhook_store::ingest::{Expect, IngestOutcome, IngestRequest, NewEvent, Precondition};
use serde_json::{json, Map, Value};

/// Keys the server owns; a client's values for them are not stored.
const SERVER_KEYS: [&str; 5] = ["Id", "SyncToken", "MetaData", "domain", "sparse"];

/// One realm of one app's access token.
#[derive(Clone, Copy)]
pub struct Realm<'a> {
    /// The shared state.
    pub state: &'a AppState,
    /// The realm of the path (and the token).
    pub id: &'a str,
}

/// An entity's JSON body as a map, or a `Fault` naming the entity.
pub fn object(spec: &EntitySpec, value: Value) -> Result<Map<String, Value>, Fault> {
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(Fault::validation(format!(
            "the request body must be a JSON {} object",
            spec.name
        ))),
    }
}

pub(super) fn require(spec: &EntitySpec, op: Operation) -> Result<(), Fault> {
    if spec.allows(op) {
        Ok(())
    } else {
        Err(Fault::validation(format!(
            "operation {op} is not supported for entity {}",
            spec.name
        )))
    }
}

fn not_found(spec: &EntitySpec, id: &str) -> Fault {
    Fault::object_not_found(format!(
        "Object Not Found: {} with Id {id} does not exist or is deleted",
        spec.name
    ))
}

fn stale(spec: &EntitySpec, id: &str) -> Fault {
    Fault::stale(format!(
        "Stale Object Error: {} {id} was changed by someone else; read it again for its current SyncToken",
        spec.name
    ))
}

/// The body without server-owned keys, as stored.
fn stored_body(mut body: Map<String, Value>) -> String {
    body.retain(|k, _| !SERVER_KEYS.contains(&k.as_str()));
    Value::Object(body).to_string()
}

fn sync_token(body: &Map<String, Value>) -> Result<i64, Fault> {
    let token = match body.get("SyncToken") {
        Some(Value::String(s)) => s.parse().ok(),
        Some(Value::Number(n)) => n.as_i64(),
        _ => None,
    };
    token.ok_or_else(|| Fault::required("SyncToken is required to change an existing object"))
}

/// The `Id` of a body, if it has one.
pub fn id_of(body: &Map<String, Value>) -> Option<String> {
    match body.get("Id") {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

fn body_of(state: &EntityState) -> Map<String, Value> {
    match state.body.as_deref().map(serde_json::from_str::<Value>) {
        Some(Ok(Value::Object(map))) => map,
        _ => Map::new(),
    }
}

struct Change {
    operation: Operation,
    body: Option<Map<String, Value>>,
    tombstone: bool,
}

impl Realm<'_> {
    /// Stores one change through ingestion; answers whether its precondition held.
    async fn commit(
        &self,
        spec: &'static EntitySpec,
        id: &str,
        change: Change,
        expect: Expect,
    ) -> Result<bool, Fault> {
        let event = NewEvent {
            entity: spec.name,
            entity_id: id.to_owned(),
            operation: change.operation,
            last_updated: Timestamp::now(),
            deleted_id: None,
            data: change.body.map(stored_body),
            tombstone: change.tombstone,
        };
        let request = IngestRequest {
            realm_id: self.id.to_owned(),
            events: vec![event],
            idempotency: None,
            precondition: Some(Precondition {
                entity: spec.name,
                entity_id: id.to_owned(),
                expect,
            }),
        };
        Ok(!matches!(
            self.state.ingestor.ingest(request).await?,
            IngestOutcome::PreconditionFailed
        ))
    }

    /// Commits `operation` with the entity's new `body` (kept readable) if its `SyncToken`
    /// is still `expected`; answers the entity as it now is.
    async fn change_to(
        &self,
        spec: &'static EntitySpec,
        id: &str,
        expected: i64,
        operation: Operation,
        body: Map<String, Value>,
    ) -> Result<Value, Fault> {
        let change = Change {
            operation,
            body: Some(body),
            tombstone: false,
        };
        if !self.commit(spec, id, change, Expect::SyncToken(expected)).await? {
            return Err(stale(spec, id));
        }
        self.read(spec, id).await
    }

    /// The entity's current state, unless it does not exist or is deleted.
    async fn current(&self, spec: &EntitySpec, id: &str) -> Result<EntityState, Fault> {
        self.state
            .store
            .entity_state(self.id, spec.name, id)
            .await?
            .filter(|s| !s.deleted)
            .ok_or_else(|| not_found(spec, id))
    }

    /// `GET {entity}/{id}`.
    pub async fn read(&self, spec: &EntitySpec, id: &str) -> Result<Value, Fault> {
        Ok(entity_json(&self.current(spec, id).await?))
    }

    /// `POST {entity}` without `Id`: a new entity with the next free `Id`.
    pub async fn create(&self, spec: &'static EntitySpec, body: Map<String, Value>) -> Result<Value, Fault> {
        require(spec, Operation::Create)?;
        for _ in 0..5 {
            let id = self
                .state
                .store
                .next_entity_id(self.id, spec.name)
                .await?
                .to_string();
            let mut new = body.clone();
            rules::on_create(spec.name, &id, &mut new, Timestamp::now());
            let change = Change {
                operation: Operation::Create,
                body: Some(new),
                tombstone: false,
            };
            if self.commit(spec, &id, change, Expect::Absent).await? {
                return self.read(spec, &id).await;
            }
        }
        Err(Fault::system(&NoFreeId))
    }

    /// `POST {entity}` with `Id` and `SyncToken` (`sparse: true` merges), or
    /// `?operation=update`. Making a name-list entity inactive is QuickBooks' delete: a
    /// `Delete` event where the matrix allows it, the entity kept readable.
    pub async fn update(&self, spec: &'static EntitySpec, body: Map<String, Value>) -> Result<Value, Fault> {
        require(spec, Operation::Update)?;
        let id = id_of(&body).ok_or_else(|| Fault::required("Id is required to update an object"))?;
        let expected = sync_token(&body)?;
        let stored = body_of(&self.current(spec, &id).await?);
        let deactivated = body.get("Active") == Some(&Value::Bool(false))
            && stored.get("Active") != Some(&Value::Bool(false));
        let mut merged = if body.get("sparse") == Some(&Value::Bool(true)) {
            let mut base = stored;
            base.extend(body);
            base
        } else {
            body
        };
        if rules::is_name_list(spec.name) {
            merged.entry("Active").or_insert(Value::Bool(true));
        }
        rules::on_update(spec.name, &mut merged);
        let operation = if deactivated && spec.allows(Operation::Delete) {
            Operation::Delete
        } else {
            Operation::Update
        };
        self.change_to(spec, &id, expected, operation, merged).await
    }

    /// `POST {entity}?operation=delete`: a tombstone, or — for a name-list entity, which
    /// QuickBooks never removes — the entity made inactive. Answers QuickBooks' delete
    /// answer (`status: Deleted`).
    pub async fn delete(&self, spec: &'static EntitySpec, body: Map<String, Value>) -> Result<Value, Fault> {
        require(spec, Operation::Delete)?;
        let id = id_of(&body).ok_or_else(|| Fault::required("Id is required"))?;
        let expected = sync_token(&body)?;
        let existing = self.current(spec, &id).await?;
        let change = if rules::is_name_list(spec.name) {
            let mut inactive = body_of(&existing);
            inactive.insert("Active".into(), Value::Bool(false));
            Change {
                operation: Operation::Delete,
                body: Some(inactive),
                tombstone: false,
            }
        } else {
            Change {
                operation: Operation::Delete,
                body: None,
                tombstone: true,
            }
        };
        if !self
            .commit(spec, &id, change, Expect::SyncToken(expected))
            .await?
        {
            return Err(stale(spec, &id));
        }
        Ok(json!({"domain": "QBO", "status": "Deleted", "Id": id}))
    }

    /// `POST {entity}?operation=void` (or `?operation=update&include=void`).
    pub async fn void(&self, spec: &'static EntitySpec, body: Map<String, Value>) -> Result<Value, Fault> {
        require(spec, Operation::Void)?;
        let id = id_of(&body).ok_or_else(|| Fault::required("Id is required"))?;
        let expected = sync_token(&body)?;
        let mut voided = body_of(&self.current(spec, &id).await?);
        rules::on_void(&mut voided);
        self.change_to(spec, &id, expected, Operation::Void, voided).await
    }

    /// `POST {entity}/{id}/send`: event `Emailed`, `EmailStatus` `EmailSent`.
    pub async fn send(&self, spec: &'static EntitySpec, id: &str) -> Result<Value, Fault> {
        require(spec, Operation::Emailed)?;
        let existing = self.current(spec, id).await?;
        let mut sent = body_of(&existing);
        rules::on_send(spec.name, &mut sent, Timestamp::now());
        self.change_to(spec, id, existing.sync_token, Operation::Emailed, sent)
            .await
    }
}

/// Every free entity id tried was taken by a concurrent create.
#[derive(Debug, thiserror::Error)]
#[error("could not find a free Id")]
struct NoFreeId;
