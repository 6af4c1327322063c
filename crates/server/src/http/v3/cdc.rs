//! `GET /v3/company/{realm}/cdc?entities=A,B&changedSince=T`: QuickBooks
//! ChangeDataCapture.

use super::{Fault, RealmAccess};
use crate::AppState;
use axum::extract::{Query, State};
use axum::Json;
use ledgerhook_domain::{entity, Timestamp};
use ledgerhook_store::cdc::EntityState;
use serde_json::{json, Map, Value};
use std::collections::HashMap;

/// Most objects in one response, over all requested entities.
pub const MAX_OBJECTS: u32 = 1000;
/// The furthest `changedSince` may look back.
const MAX_LOOKBACK_MS: i64 = 30 * 86_400 * 1000;

/// Keys the server owns in an entity body; a stored body's own values for them are
/// replaced.
const SERVER_KEYS: [&str; 5] = ["Id", "SyncToken", "MetaData", "domain", "sparse"];

/// The requested entities in request order, with their canonical names. Names match
/// case-insensitively, as QuickBooks' do.
fn requested_entities(text: &str) -> Result<Vec<&'static str>, Fault> {
    let mut out = Vec::new();
    for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let spec = entity::ENTITIES
            .iter()
            .find(|e| e.name.eq_ignore_ascii_case(name))
            .ok_or_else(|| Fault::validation(format!("unknown entity {name:?} in entities")))?;
        if !spec.cdc {
            return Err(Fault::validation(format!(
                "ChangeDataCapture does not support entity {}",
                spec.name
            )));
        }
        out.push(spec.name);
    }
    if out.is_empty() {
        return Err(Fault::validation(
            "entities is required: a comma-separated list such as Customer,Invoice",
        ));
    }
    Ok(out)
}

fn changed_since(query: &HashMap<String, String>, now: Timestamp) -> Result<Timestamp, Fault> {
    let text = query
        .get("changedSince")
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| Fault::validation("changedSince is required (for example 2026-11-01T00:00:00Z)"))?;
    let since = Timestamp::parse(text).map_err(|e| Fault::validation(format!("changedSince: {e}")))?;
    if now.millis() - since.millis() > MAX_LOOKBACK_MS {
        return Err(Fault::validation(format!(
            "changedSince {text} is more than 30 days ago; ChangeDataCapture looks back at most 30 days"
        )));
    }
    Ok(since)
}

/// One object as QuickBooks shows it: the full body, or a tombstone.
pub fn entity_json(state: &EntityState) -> Value {
    let last_updated = state.last_updated.to_rfc3339();
    if state.deleted {
        return json!({
            "domain": "QBO",
            "status": "Deleted",
            "Id": state.entity_id,
            "MetaData": {"LastUpdatedTime": last_updated},
        });
    }
    let mut object = match state.body.as_deref().map(serde_json::from_str::<Value>) {
        Some(Ok(Value::Object(map))) => map,
        _ => Map::new(),
    };
    object.retain(|key, _| !SERVER_KEYS.contains(&key.as_str()));
    object.insert("domain".into(), "QBO".into());
    object.insert("sparse".into(), false.into());
    object.insert("Id".into(), state.entity_id.clone().into());
    object.insert("SyncToken".into(), state.sync_token.to_string().into());
    object.insert(
        "MetaData".into(),
        json!({"CreateTime": state.created_at.to_rfc3339(), "LastUpdatedTime": last_updated}),
    );
    Value::Object(object)
}

/// `GET /v3/company/{realm}/cdc`. Unknown parameters (`minorversion`, …) are ignored.
pub async fn cdc(
    State(state): State<AppState>,
    access: RealmAccess,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Value>, Fault> {
    let entities = requested_entities(query.get("entities").map(String::as_str).unwrap_or(""))?;
    let now = Timestamp::now();
    let since = changed_since(&query, now)?;
    let mut distinct = entities.clone();
    distinct.sort_unstable();
    distinct.dedup();
    let rows = state
        .store
        .changed_entities(&access.realm_id, &distinct, since, MAX_OBJECTS)
        .await?;
    let responses: Vec<Value> = entities
        .iter()
        .map(|name| {
            let objects: Vec<Value> = rows
                .iter()
                .filter(|r| r.entity == *name)
                .map(entity_json)
                .collect();
            if objects.is_empty() {
                json!({})
            } else {
                let count = objects.len();
                json!({ *name: objects, "startPosition": 1, "maxResults": count })
            }
        })
        .collect();
    Ok(Json(json!({
        "CDCResponse": [{"QueryResponse": responses}],
        "time": now.to_rfc3339(),
    })))
}
