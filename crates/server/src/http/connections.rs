//! `/api/v1/apps/{app}/connections`: apps authorised on realms, with their OAuth tokens.

use super::apps::existing_app;
use super::body::{page, ListParams, RawBody};
use super::{ApiError, Principal};
use crate::oauth;
use crate::AppState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use ledgerhook_store::model::Connection;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Connect {
    realm_id: String,
}

fn connection_json(connection: &Connection) -> Value {
    json!({
        "realm_id": connection.realm_id,
        "environment": connection.environment.as_str(),
        "created_at": connection.created_at.to_rfc3339(),
    })
}

/// `POST …/connections` `{realm_id}` (operator): connects and issues tokens.
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    Path(app_id): Path<String>,
    body: RawBody,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    principal.require_operator()?;
    existing_app(&state, &app_id).await?;
    let input: Connect = body.json()?;
    if state.store.realm(&input.realm_id).await?.is_none() {
        return Err(ApiError::not_found(format!("realm {} not found", input.realm_id)));
    }
    let grant = oauth::connect(&state, &app_id, &input.realm_id, None).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "realm_id": input.realm_id,
            "access_token": grant.access_token,
            "refresh_token": grant.refresh_token,
            "expires_in": grant.expires_in,
        })),
    ))
}

/// `GET …/connections`.
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Path(app_id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    principal.require_app(&app_id)?;
    existing_app(&state, &app_id).await?;
    let params = ListParams::from_query(&query)?;
    let rows = state
        .store
        .connections(&app_id, params.after.as_deref(), params.fetch_limit())
        .await?;
    Ok(Json(page(rows, &params, |c| c.realm_id.clone(), connection_json)))
}

/// `DELETE …/connections/{realm}`: disconnects and revokes the realm's tokens.
pub async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    Path((app_id, realm_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    principal.require_app(&app_id)?;
    existing_app(&state, &app_id).await?;
    if state.store.disconnect(&app_id, &realm_id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!(
            "app {app_id} is not connected to realm {realm_id}"
        )))
    }
}
