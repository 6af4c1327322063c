//! `POST /api/v1/realms/{realm}/events`: ingestion of change events from an outside
//! system of record.

use super::body::RawBody;
use super::{ApiError, Principal};
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use ledgerhook_domain::entity;
use ledgerhook_domain::{Operation, Timestamp};
use ledgerhook_store::ingest::{Idempotency, IngestOutcome, IngestRequest, NewEvent};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Most events in one request.
pub const MAX_EVENTS_PER_REQUEST: usize = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventIn {
    name: String,
    id: String,
    operation: String,
    #[serde(rename = "lastUpdated")]
    last_updated: Option<String>,
    #[serde(rename = "deletedId")]
    deleted_id: Option<String>,
    data: Option<Value>,
}

/// Checks one event; the error starts with its position.
fn validate(index: usize, value: Value, now: Timestamp) -> Result<NewEvent, ApiError> {
    let at = |message: String| ApiError::invalid(format!("events[{index}]: {message}"));
    let input: EventIn = serde_json::from_value(value).map_err(|e| at(e.to_string()))?;
    let (spec, operation) = entity::check(&input.name, &input.operation).map_err(|e| at(e.to_string()))?;
    if input.id.trim().is_empty() || input.id.len() > 255 {
        return Err(at(
            "id must be a non-empty string of at most 255 characters".into()
        ));
    }
    match (operation, &input.deleted_id) {
        (Operation::Merge, None) => return Err(at("a Merge needs deletedId (the id merged away)".into())),
        (Operation::Merge, Some(d)) if d.trim().is_empty() || *d == input.id => {
            return Err(at("deletedId must be non-empty and differ from id".into()))
        }
        (op, Some(_)) if op != Operation::Merge => {
            return Err(at(format!(
                "deletedId is only allowed with operation Merge, not {op}"
            )))
        }
        _ => {}
    }
    let last_updated = match &input.last_updated {
        None => now,
        Some(text) => Timestamp::parse(text).map_err(|e| at(format!("lastUpdated: {e}")))?,
    };
    let data = match input.data {
        None | Some(Value::Null) => None,
        Some(Value::Object(map)) => Some(Value::Object(map).to_string()),
        Some(_) => return Err(at("data must be a JSON object (the entity's new body)".into())),
    };
    Ok(NewEvent {
        tombstone: operation == Operation::Delete,
        entity: spec.name,
        entity_id: input.id,
        operation,
        last_updated,
        deleted_id: input.deleted_id,
        data,
    })
}

/// Reads the body into validated events; any bad event refuses the whole request.
fn parse_events(body: &RawBody) -> Result<Vec<NewEvent>, ApiError> {
    let items: Vec<Value> = match body.json::<Value>()? {
        Value::Array(items) => items,
        _ => {
            return Err(ApiError::invalid(
                "request body must be a JSON array of change events",
            ))
        }
    };
    if items.is_empty() {
        return Err(ApiError::invalid("request body has no events"));
    }
    if items.len() > MAX_EVENTS_PER_REQUEST {
        return Err(ApiError::invalid(format!(
            "{} events in one request; at most {MAX_EVENTS_PER_REQUEST} are allowed",
            items.len()
        )));
    }
    let now = Timestamp::now();
    items
        .into_iter()
        .enumerate()
        .map(|(i, v)| validate(i, v, now))
        .collect()
}

/// The answer to an accepted ingestion of `count` events (stored with an idempotency
/// key, so a repeat gets the same bytes).
fn accepted_response(count: usize) -> String {
    serde_json::json!({ "accepted": count }).to_string()
}

fn idempotency_key(
    headers: &HeaderMap,
    body: &RawBody,
    events: usize,
) -> Result<Option<Idempotency>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= 255)
        .ok_or_else(|| ApiError::invalid("Idempotency-Key must be 1 to 255 visible characters"))?;
    Ok(Some(Idempotency {
        key: key.to_owned(),
        request_hash: hex::encode(Sha256::digest(&body.0)),
        response: accepted_response(events),
    }))
}

/// `POST /api/v1/realms/{realm}/events` (operator): answers `202 {"accepted": N}` once
/// the events are committed.
pub async fn ingest(
    State(state): State<AppState>,
    principal: Principal,
    Path(realm_id): Path<String>,
    headers: HeaderMap,
    body: RawBody,
) -> Result<Response, ApiError> {
    principal.require_operator()?;
    if state.store.realm(&realm_id).await?.is_none() {
        return Err(ApiError::not_found(format!("realm {realm_id} not found")));
    }
    let events = parse_events(&body)?;
    let idempotency = idempotency_key(&headers, &body, events.len())?;
    let request = IngestRequest {
        realm_id,
        events,
        idempotency,
        precondition: None,
    };
    let outcome = state.ingestor.ingest(request).await?;
    let json_body = match outcome {
        IngestOutcome::Accepted(n) => accepted_response(n),
        IngestOutcome::Replayed(response) => response,
        IngestOutcome::PreconditionFailed => return Err(ApiError::conflict("the entity changed meanwhile")),
        IngestOutcome::KeyConflict => {
            return Err(ApiError::conflict(
                "this Idempotency-Key was already used with a different request body",
            ))
        }
    };
    Ok((
        StatusCode::ACCEPTED,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        json_body,
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MergeIn {
    entity: String,
    from_id: String,
    into_id: String,
}

/// `POST /api/v1/realms/{realm}/merge` `{entity, from_id, into_id}` (operator): the
/// merge QuickBooks performs in its UI — event `Merge` on `into_id` with `deletedId` =
/// `from_id`; answers `202 {"accepted": 1}` once committed.
pub async fn merge(
    State(state): State<AppState>,
    principal: Principal,
    Path(realm_id): Path<String>,
    body: RawBody,
) -> Result<Response, ApiError> {
    principal.require_operator()?;
    if state.store.realm(&realm_id).await?.is_none() {
        return Err(ApiError::not_found(format!("realm {realm_id} not found")));
    }
    let input: MergeIn = body.json()?;
    let event = serde_json::json!({
        "name": input.entity, "id": input.into_id, "operation": "Merge", "deletedId": input.from_id,
    });
    let event = validate(0, event, Timestamp::now()).map_err(|e| {
        ApiError::invalid(
            e.message
                .replacen("events[0]: ", "", 1)
                .replace("deletedId", "from_id"),
        )
    })?;
    let request = IngestRequest {
        realm_id,
        events: vec![event],
        idempotency: None,
        precondition: None,
    };
    state.ingestor.ingest(request).await?;
    Ok((
        StatusCode::ACCEPTED,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        accepted_response(1),
    )
        .into_response())
}
