//! The OpenID Connect endpoints the discovery document names: `GET
//! /v1/openid_connect/userinfo` (for an access token granted with `openid`) and `GET
//! /op/v1/jwks` (the key that signs `id_token`s).

use super::ApiError;
use crate::auth::hash_token;
use crate::oidc::{self, SigningKey};
use crate::AppState;
use axum::extract::State;
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use ledgerhook_domain::Timestamp;
use ledgerhook_store::model::TokenKind;
use serde_json::{json, Value};

/// An OAuth bearer-token error (RFC 6750 §3.1).
fn bearer_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

/// `GET /v1/openid_connect/userinfo`: the user behind the access token's connection.
pub async fn userinfo(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let token = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")));
    let Some(token) = token else {
        return Ok(bearer_error(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "a Bearer access token is required",
        ));
    };
    let stored = state.store.oauth_token(&hash_token(token.trim())).await?;
    let Some(stored) = stored.filter(|t| t.kind == TokenKind::Access && t.expires_at > Timestamp::now())
    else {
        return Ok(bearer_error(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "the access token is unknown or expired",
        ));
    };
    if !crate::oauth::has_openid(stored.scope.as_deref()) {
        return Ok(bearer_error(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            "the access token was not granted the openid scope",
        ));
    }
    let realm = state.store.realm(&stored.realm_id).await?;
    let company = realm.map(|r| r.name).unwrap_or_default();
    Ok(Json(json!({
        "sub": oidc::subject(&stored.realm_id),
        "email": format!("admin@{}.sandbox.test", stored.realm_id),
        "emailVerified": true,
        "givenName": "Sandbox",
        "familyName": company,
        "realmid": stored.realm_id,
    }))
    .into_response())
}

/// `GET /op/v1/jwks`: the public key of `id_token`s.
pub async fn jwks(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let key = SigningKey::get(&state)
        .await
        .map_err(|e| ApiError::internal(&e))?;
    Ok(Json(json!({
        "keys": [{"kty": "RSA", "alg": "RS256", "use": "sig", "kid": key.kid, "n": key.n, "e": key.e}],
    })))
}
