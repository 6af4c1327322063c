//! `/api/v1/realms`: companies.

use super::body::{page, ListParams, RawBody};
use super::{ApiError, Principal};
use crate::AppState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use ledgerhook_domain::{Environment, Timestamp};
use ledgerhook_store::model::Realm;
use ledgerhook_store::StoreError;
use rand::Rng;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRealm {
    name: String,
    environment: String,
}

/// The API shape of a realm.
pub fn realm_json(realm: &Realm) -> Value {
    json!({
        "id": realm.id,
        "name": realm.name,
        "environment": realm.environment.as_str(),
        "created_at": realm.created_at.to_rfc3339(),
    })
}

/// A 16-digit decimal id, like QuickBooks' realm ids.
fn new_realm_id() -> String {
    rand::thread_rng()
        .gen_range(1_000_000_000_000_000u64..10_000_000_000_000_000)
        .to_string()
}

/// Checks a display name: non-empty after trimming, at most 255 characters.
pub fn check_name(name: &str, what: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(ApiError::invalid(format!("{what} name must not be empty")));
    }
    if name.chars().count() > 255 {
        return Err(ApiError::invalid(format!(
            "{what} name is longer than 255 characters"
        )));
    }
    Ok(name.to_owned())
}

/// `POST /api/v1/realms`.
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    body: RawBody,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    principal.require_operator()?;
    let input: CreateRealm = body.json()?;
    let name = check_name(&input.name, "realm")?;
    let environment: Environment = input
        .environment
        .parse()
        .map_err(|e| ApiError::invalid(format!("{e}")))?;
    for _ in 0..5 {
        let realm = Realm {
            id: new_realm_id(),
            name: name.clone(),
            environment,
            created_at: Timestamp::now(),
        };
        match state.store.insert_realm(&realm).await {
            Ok(()) => return Ok((StatusCode::CREATED, Json(realm_json(&realm)))),
            Err(StoreError::Conflict(_)) => continue,
            Err(other) => return Err(other.into()),
        }
    }
    Err(ApiError::internal(&NoFreeRealmId))
}

/// `GET /api/v1/realms`: all realms for the operator, the connected ones for an app key.
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let scope = principal.app_scope()?;
    let params = ListParams::from_query(&query)?;
    let rows = state
        .store
        .realms(scope, params.after.as_deref(), params.fetch_limit())
        .await?;
    Ok(Json(page(rows, &params, |r| r.id.clone(), realm_json)))
}

/// The realm if the principal may see it (an app key: only connected realms).
pub async fn visible_realm(
    state: &AppState,
    principal: &Principal,
    realm_id: &str,
) -> Result<Realm, ApiError> {
    let not_found = || ApiError::not_found(format!("realm {realm_id} not found"));
    if let Some(app_id) = principal.app_scope()? {
        if state.store.connection(app_id, realm_id).await?.is_none() {
            return Err(not_found());
        }
    }
    state.store.realm(realm_id).await?.ok_or_else(not_found)
}

/// `GET /api/v1/realms/{realm}`.
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Path(realm_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let realm = visible_realm(&state, &principal, &realm_id).await?;
    Ok(Json(realm_json(&realm)))
}

/// `DELETE /api/v1/realms/{realm}`.
pub async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    Path(realm_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    principal.require_operator()?;
    if state.store.delete_realm(&realm_id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("realm {realm_id} not found")))
    }
}

/// Every random realm id tried was taken (practically impossible: ids are random).
#[derive(Debug, thiserror::Error)]
#[error("could not find a free realm id")]
struct NoFreeRealmId;
