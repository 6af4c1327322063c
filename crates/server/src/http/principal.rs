//! Who is calling: the bearer token resolved to a principal, and the access rules of
//! SPEC §6 — operator everywhere; an app key only for its own app (`404` for another
//! app's resources, `403` for operator-only calls); OAuth access tokens only under `/v3`.

use super::ApiError;
use crate::{auth, AppState};
use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use ledgerhook_domain::Timestamp;
use ledgerhook_store::model::TokenKind;
use ledgerhook_store::StoreError;

/// The authenticated caller of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// The operator token: may do everything.
    Operator,
    /// An app's API key: may act on that app only.
    App(String),
    /// An OAuth access token: one app on one realm, for `/v3` only.
    Access {
        /// The app it was issued to.
        app_id: String,
        /// The realm it is for.
        realm_id: String,
    },
}

impl Principal {
    /// Refuses anyone but the operator (`403`).
    pub fn require_operator(&self) -> Result<(), ApiError> {
        match self {
            Principal::Operator => Ok(()),
            Principal::App(_) => Err(ApiError::forbidden(
                "this call needs the operator token; an app key may not make it",
            )),
            Principal::Access { .. } => Err(access_token_here()),
        }
    }

    /// Allows the operator and `app_id`'s own key; another app's key gets `404` (its
    /// resources do not exist for it), an access token `403`.
    pub fn require_app(&self, app_id: &str) -> Result<(), ApiError> {
        match self {
            Principal::Operator => Ok(()),
            Principal::App(own) if own == app_id => Ok(()),
            Principal::App(_) => Err(ApiError::not_found(format!("app {app_id} not found"))),
            Principal::Access { .. } => Err(access_token_here()),
        }
    }

    /// The app whose key this is, or `None` for the operator; access tokens get `403`.
    pub fn app_scope(&self) -> Result<Option<&str>, ApiError> {
        match self {
            Principal::Operator => Ok(None),
            Principal::App(own) => Ok(Some(own)),
            Principal::Access { .. } => Err(access_token_here()),
        }
    }
}

fn access_token_here() -> ApiError {
    ApiError::forbidden("OAuth access tokens are for the /v3 API; use the operator token or an app key")
}

/// The token of an `Authorization: Bearer …` header.
pub fn bearer_token(parts: &Parts) -> Result<&str, ApiError> {
    let header = parts
        .headers
        .get(AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer token"))?;
    let value = header
        .to_str()
        .map_err(|_| ApiError::unauthorized("Authorization header is not valid text"))?;
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(ApiError::unauthorized(
            "Authorization header must be \"Bearer <token>\"",
        ));
    }
    Ok(token)
}

/// Resolves a token to its principal, or `None` if it is unknown or expired.
pub async fn resolve(state: &AppState, token: &str) -> Result<Option<Principal>, StoreError> {
    if state.operator_token.matches(&state.store, token).await? {
        return Ok(Some(Principal::Operator));
    }
    let hash = auth::hash_token(token);
    if let Some(app) = state.store.app_by_api_key_hash(&hash).await? {
        return Ok(Some(Principal::App(app.id)));
    }
    match state.store.oauth_token(&hash).await? {
        Some(t) if t.kind == TokenKind::Access && t.expires_at > Timestamp::now() => {
            Ok(Some(Principal::Access {
                app_id: t.app_id,
                realm_id: t.realm_id,
            }))
        }
        _ => Ok(None),
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = bearer_token(parts)?;
        resolve(state, token)
            .await?
            .ok_or_else(|| ApiError::unauthorized("invalid or expired token"))
    }
}
