//! `/api/v1/apps`: apps, their credentials and secret rotation.

use super::body::{page, ListParams, RawBody};
use super::realms::check_name;
use super::{ApiError, Principal};
use crate::auth::{hash_token, new_secret};
use crate::AppState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ledgerhook_domain::duration::{format_duration, parse_duration};
use ledgerhook_domain::Timestamp;
use ledgerhook_store::model::{App, SecretName};
use rand::RngCore;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateApp {
    name: String,
    #[serde(default)]
    redirect_uris: Vec<String>,
}

/// Random hex of `bytes` bytes.
fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

/// A new Standard Webhooks secret: `whsec_` and base64 of 32 random bytes.
pub fn new_signing_secret() -> String {
    let mut buf = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut buf);
    format!("whsec_{}", STANDARD.encode(buf))
}

/// A new verifier token: 36 hex digits, the shape QuickBooks uses.
pub fn new_verifier_token() -> String {
    random_hex(18)
}

/// The API shape of an app (no secrets).
pub fn app_json(app: &App) -> Value {
    json!({
        "id": app.id,
        "name": app.name,
        "client_id": app.client_id,
        "redirect_uris": app.redirect_uris,
        "created_at": app.created_at.to_rfc3339(),
    })
}

fn check_redirect_uris(uris: &[String]) -> Result<(), ApiError> {
    for uri in uris {
        let parsed = url::Url::parse(uri)
            .map_err(|e| ApiError::invalid(format!("redirect_uris: {uri:?} is not an absolute URL: {e}")))?;
        if !matches!(parsed.scheme(), "https" | "http") {
            return Err(ApiError::invalid(format!(
                "redirect_uris: {uri:?} must use https:// or http://"
            )));
        }
        if uri.contains('\n') {
            return Err(ApiError::invalid("redirect_uris must not contain line breaks"));
        }
    }
    Ok(())
}

/// `POST /api/v1/apps`: answers every credential, once.
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    body: RawBody,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    principal.require_operator()?;
    let input: CreateApp = body.json()?;
    let name = check_name(&input.name, "app")?;
    check_redirect_uris(&input.redirect_uris)?;
    let client_secret = random_hex(20);
    let api_key = new_secret("lhk_");
    let verifier_token = new_verifier_token();
    let signing_secret = new_signing_secret();
    let app = App {
        id: format!("app_{}", random_hex(8)),
        name,
        client_id: format!("AB{}", random_hex(24)),
        client_secret_hash: hash_token(&client_secret),
        api_key_hash: hash_token(&api_key),
        redirect_uris: input.redirect_uris,
        created_at: Timestamp::now(),
    };
    let sealer = &state.secrets;
    state
        .store
        .insert_app(&app, &sealer.seal(&verifier_token), &sealer.seal(&signing_secret))
        .await?;
    let mut body = app_json(&app);
    let object = body.as_object_mut().expect("app_json is an object");
    object.insert("client_secret".into(), client_secret.into());
    object.insert("verifier_token".into(), verifier_token.into());
    object.insert("signing_secret".into(), signing_secret.into());
    object.insert("api_key".into(), api_key.into());
    Ok((StatusCode::CREATED, Json(body)))
}

/// The app, or `404`.
pub async fn existing_app(state: &AppState, app_id: &str) -> Result<App, ApiError> {
    state
        .store
        .app(app_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("app {app_id} not found")))
}

/// `GET /api/v1/apps`: all apps for the operator, its own for an app key.
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let scope = principal.app_scope()?;
    let params = ListParams::from_query(&query)?;
    let rows = state
        .store
        .apps(scope, params.after.as_deref(), params.fetch_limit())
        .await?;
    Ok(Json(page(rows, &params, |a| a.id.clone(), app_json)))
}

/// `GET /api/v1/apps/{app}`.
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Path(app_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    principal.require_app(&app_id)?;
    Ok(Json(app_json(&existing_app(&state, &app_id).await?)))
}

/// `DELETE /api/v1/apps/{app}` (operator only).
pub async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    Path(app_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    principal.require_operator()?;
    if state.store.delete_app(&app_id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("app {app_id} not found")))
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Rotate {
    grace: Option<String>,
}

/// The grace period when a rotation names none.
const DEFAULT_GRACE: Duration = Duration::from_secs(24 * 3600);

/// `POST /api/v1/apps/{app}/secrets/{name}/rotate` `{"grace":"24h"}`: a new secret,
/// shown only in this answer; the old one keeps signing until the grace ends.
pub async fn rotate_secret(
    State(state): State<AppState>,
    principal: Principal,
    Path((app_id, name)): Path<(String, String)>,
    body: RawBody,
) -> Result<Json<Value>, ApiError> {
    principal.require_app(&app_id)?;
    let secret_name = SecretName::parse(&name).ok_or_else(|| {
        ApiError::not_found(format!(
            "no secret named {name:?}; secrets are verifier_token and signing_secret"
        ))
    })?;
    existing_app(&state, &app_id).await?;
    let input: Rotate = body.json_or_default()?;
    let grace = match input.grace.as_deref() {
        None => DEFAULT_GRACE,
        Some(text) => parse_duration(text).map_err(|e| ApiError::invalid(format!("grace: {e}")))?,
    };
    if grace > Duration::from_secs(30 * 86_400) {
        return Err(ApiError::invalid(format!(
            "grace {} is longer than the maximum of 30d",
            format_duration(grace)
        )));
    }
    let new_value = match secret_name {
        SecretName::VerifierToken => new_verifier_token(),
        SecretName::SigningSecret => new_signing_secret(),
    };
    let now = Timestamp::now();
    // Real time, not simulated: a grace period protects receivers, like token lifetimes.
    let grace_until = Timestamp(now.millis() + grace.as_millis() as i64);
    let stored = state.secrets.seal(&new_value);
    if !state
        .store
        .rotate_secret(&app_id, secret_name, &stored, now, grace_until)
        .await?
    {
        return Err(ApiError::not_found(format!("app {app_id} not found")));
    }
    tracing::info!(app = %app_id, secret = secret_name.as_str(), "secret rotated");
    Ok(Json(
        json!({ secret_name.as_str(): new_value, "grace_until": grace_until.to_rfc3339() }),
    ))
}
