//! `POST batch` `{"BatchItemRequest":[…]}`: up to 30 items — `create`, `update`,
//! `delete` (an entity object under its name) or a `Query` — answered
//! `{"BatchItemResponse":[…]}` in request order, each with its `bId` and either its
//! result or its own `Fault`, as QuickBooks does. Items run one after another; one
//! item's failure changes nothing for the others.

use super::entities::{apply, entity_of, Write};
use super::ops::{object, Realm};
use super::{query, Fault, RealmAccess};
use crate::AppState;
use axum::extract::State;
use axum::Json;
use ledgerhook_domain::Timestamp;
use serde_json::{json, Map, Value};

/// Items one batch may hold (QuickBooks' limit).
pub const MAX_ITEMS: usize = 30;

/// What one item asks for, or the fault that refuses it.
async fn item(realm: Realm<'_>, request: &Map<String, Value>) -> Result<(String, Value), Fault> {
    if let Some(text) = request.get("Query") {
        let text = text
            .as_str()
            .ok_or_else(|| Fault::validation("Query must be a string"))?;
        return Ok(("QueryResponse".to_owned(), query::run(realm, text).await?));
    }
    let write = match request
        .get("operation")
        .and_then(Value::as_str)
        .map(str::to_ascii_lowercase)
    {
        Some(op) if op == "create" => Write::Save,
        Some(op) if op == "update" => Write::Update,
        Some(op) if op == "delete" => Write::Delete,
        Some(op) if op == "void" => Write::Void,
        Some(other) => {
            return Err(Fault::validation(format!(
                "unsupported batch operation {other:?}; use create, update, delete or a Query"
            )))
        }
        None => return Err(Fault::required("each batch item needs an operation or a Query")),
    };
    let (name, body) = request
        .iter()
        .find(|(key, value)| value.is_object() && !["bId", "operation"].contains(&key.as_str()))
        .ok_or_else(|| Fault::required("the batch item has no entity object"))?;
    let spec = entity_of(name)?;
    let body = object(spec, body.clone())?;
    Ok((spec.name.to_owned(), apply(realm, spec, write, body).await?))
}

/// `POST /v3/company/{realm}/batch`.
pub async fn batch(
    State(state): State<AppState>,
    access: RealmAccess,
    body: axum::body::Bytes,
) -> Result<Json<Value>, Fault> {
    let request: Value = serde_json::from_slice(&body)
        .map_err(|e| Fault::validation(format!("the batch body is not JSON: {e}")))?;
    let items = request
        .get("BatchItemRequest")
        .and_then(Value::as_array)
        .ok_or_else(|| Fault::required("BatchItemRequest (an array of items) is required"))?;
    if items.is_empty() || items.len() > MAX_ITEMS {
        return Err(Fault::validation(format!(
            "a batch holds 1 to {MAX_ITEMS} items, not {}",
            items.len()
        )));
    }
    let realm = Realm {
        state: &state,
        id: &access.realm_id,
    };
    let mut responses = Vec::with_capacity(items.len());
    for raw in items {
        let bid = raw.get("bId").cloned().unwrap_or(Value::Null);
        let outcome = match raw.as_object() {
            Some(request) => item(realm, request).await,
            None => Err(Fault::validation("a batch item must be an object")),
        };
        responses.push(match outcome {
            Ok((key, value)) => json!({ "bId": bid, key: value }),
            Err(fault) => json!({ "bId": bid, "Fault": fault.to_json() }),
        });
    }
    Ok(Json(json!({
        "BatchItemResponse": responses,
        "time": Timestamp::now().to_rfc3339(),
    })))
}
