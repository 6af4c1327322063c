//! OAuth 2.0 as QuickBooks runs it: the consent page `GET/POST /connect/oauth2`, the
//! token endpoint `POST /oauth2/v1/tokens/bearer` (`authorization_code` and
//! `refresh_token` grants, client authenticated with HTTP Basic), revocation
//! `POST /oauth2/v1/tokens/revoke`, and a discovery document.

use super::ApiError;
use crate::auth::{constant_time_eq, hash_token};
use crate::oauth::{self, Grant, OAuthError, REFRESH_TOKEN_SECONDS};
use crate::oidc::{self, SigningKey};
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::header::{AUTHORIZATION, HOST};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Json;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ledgerhook_domain::Timestamp;
use ledgerhook_store::model::App;
use serde_json::{json, Value};
use std::collections::HashMap;

/// A token-endpoint failure in OAuth 2.0's error shape (RFC 6749 §5.2). A database
/// failure is logged with its cause and answered `500 server_error`.
pub struct TokenError(OAuthError);

impl From<OAuthError> for TokenError {
    fn from(err: OAuthError) -> Self {
        TokenError(err)
    }
}

impl From<ledgerhook_store::StoreError> for TokenError {
    fn from(err: ledgerhook_store::StoreError) -> Self {
        TokenError(OAuthError::Store(err))
    }
}

impl IntoResponse for TokenError {
    fn into_response(self) -> Response {
        let (status, error) = match &self.0 {
            OAuthError::InvalidClient => (StatusCode::UNAUTHORIZED, "invalid_client"),
            OAuthError::InvalidGrant(_) => (StatusCode::BAD_REQUEST, "invalid_grant"),
            OAuthError::InvalidRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            OAuthError::UnsupportedGrantType => (StatusCode::BAD_REQUEST, "unsupported_grant_type"),
            OAuthError::Store(_) | OAuthError::Signing(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "server_error")
            }
        };
        let description = if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %super::error::Chain(&self.0), "token request failed");
            "internal error; see the server log".to_owned()
        } else {
            self.0.to_string()
        };
        (
            status,
            Json(json!({"error": error, "error_description": description})),
        )
            .into_response()
    }
}

/// The token endpoint's answer, in Intuit's shape.
fn token_response(grant: &Grant) -> Value {
    json!({
        "token_type": "bearer",
        "access_token": grant.access_token,
        "expires_in": grant.expires_in,
        "refresh_token": grant.refresh_token,
        "x_refresh_token_expires_in": REFRESH_TOKEN_SECONDS,
    })
}

fn form(body: &Bytes) -> HashMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

/// The app whose `client_id:client_secret` is in the `Authorization: Basic` header.
async fn client(state: &AppState, headers: &HeaderMap) -> Result<App, TokenError> {
    let header = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or(OAuthError::InvalidClient)?;
    let encoded = header
        .strip_prefix("Basic ")
        .or_else(|| header.strip_prefix("basic "))
        .ok_or(OAuthError::InvalidClient)?;
    let decoded = STANDARD
        .decode(encoded.trim())
        .map_err(|_| OAuthError::InvalidClient)?;
    let text = String::from_utf8(decoded).map_err(|_| OAuthError::InvalidClient)?;
    let (id, secret) = text.split_once(':').ok_or(OAuthError::InvalidClient)?;
    let app = state
        .store
        .app_by_client_id(id)
        .await?
        .ok_or(OAuthError::InvalidClient)?;
    if !constant_time_eq(app.client_secret_hash.as_bytes(), hash_token(secret).as_bytes()) {
        return Err(OAuthError::InvalidClient.into());
    }
    Ok(app)
}

fn required<'a>(params: &'a HashMap<String, String>, name: &str) -> Result<&'a str, OAuthError> {
    params
        .get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| OAuthError::InvalidRequest(format!("{name} is required")))
}

/// `POST /oauth2/v1/tokens/bearer`.
pub async fn token(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, TokenError> {
    let app = client(&state, &headers).await?;
    let params = form(&body);
    match required(&params, "grant_type")? {
        "authorization_code" => {
            let code = required(&params, "code")?;
            let redirect_uri = required(&params, "redirect_uri")?;
            let (grant, realm_id) = oauth::exchange_code(&state, &app.id, code, redirect_uri).await?;
            state.wake_dispatcher.notify_one();
            let mut answer = token_response(&grant);
            if grant.openid() {
                let key = SigningKey::get(&state).await.map_err(OAuthError::from)?;
                let id_token = oidc::id_token(
                    &key,
                    &base_url(&headers),
                    &app.client_id,
                    &realm_id,
                    Timestamp::now(),
                )
                .map_err(OAuthError::from)?;
                answer["id_token"] = id_token.into();
            }
            Ok(Json(answer))
        }
        "refresh_token" => {
            let refresh_token = required(&params, "refresh_token")?;
            let grant = oauth::refresh(&state, &app.id, refresh_token).await?;
            Ok(Json(token_response(&grant)))
        }
        _ => Err(OAuthError::UnsupportedGrantType.into()),
    }
}

/// `POST /oauth2/v1/tokens/revoke` `{"token": …}` (JSON or form): revoking an access or
/// refresh token disconnects the app from that realm, as at Intuit.
pub async fn revoke(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, TokenError> {
    let app = client(&state, &headers).await?;
    let token = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["token"].as_str().map(str::to_owned))
        .or_else(|| form(&body).remove("token"))
        .filter(|t| !t.is_empty())
        .ok_or_else(|| OAuthError::InvalidRequest("token is required".to_owned()))?;
    oauth::revoke(&state, &app.id, &token).await?;
    // Unknown tokens are answered the same way (RFC 7009 §2.2).
    Ok(StatusCode::OK)
}

/// `GET /connect/oauth2?client_id&redirect_uri&response_type=code&scope&state`: the
/// consent page, listing the realms the user may connect.
pub async fn authorize_page(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Html<String>, ApiError> {
    let (app, redirect_uri) = authorization_request(&state, &params).await?;
    let realms = state.store.realms(None, None, 1000).await?;
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let options: String = realms
        .iter()
        .map(|r| {
            format!(
                "<option value=\"{}\">{} ({}, {})</option>",
                esc(&r.id),
                esc(&r.name),
                r.environment,
                esc(&r.id)
            )
        })
        .collect();
    let hidden = |name: &str| {
        params
            .get(name)
            .map(|v| format!("<input type=\"hidden\" name=\"{name}\" value=\"{}\">", esc(v)))
            .unwrap_or_default()
    };
    let redirect = format!(
        "<input type=\"hidden\" name=\"redirect_uri\" value=\"{}\">",
        esc(&redirect_uri)
    );
    Ok(Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Connect {name}</title></head><body>\
         <h1>Connect {name}</h1><p>{name} asks for access to a company's accounting data.</p>\
         <form method=\"post\" action=\"/connect/oauth2\">{client}{redirect}{state}{scope}\
         <label>Company <select name=\"realm_id\">{options}</select></label> <button>Connect</button></form></body></html>",
        name = esc(&app.name),
        client = hidden("client_id"),
        state = hidden("state"),
        scope = hidden("scope"),
    )))
}

async fn authorization_request(
    state: &AppState,
    params: &HashMap<String, String>,
) -> Result<(App, String), ApiError> {
    let client_id = params
        .get("client_id")
        .ok_or_else(|| ApiError::invalid("client_id is required"))?;
    let app = state
        .store
        .app_by_client_id(client_id)
        .await?
        .ok_or_else(|| ApiError::invalid("unknown client_id"))?;
    let redirect_uri = params
        .get("redirect_uri")
        .ok_or_else(|| ApiError::invalid("redirect_uri is required"))?;
    if !app.redirect_uris.iter().any(|u| u == redirect_uri) {
        return Err(ApiError::invalid(
            "redirect_uri is not one of the app's redirect_uris",
        ));
    }
    Ok((app, redirect_uri.clone()))
}

/// `POST /connect/oauth2` (the consent form): redirects to the app with `code`,
/// `realmId` and `state`.
pub async fn authorize(State(state): State<AppState>, body: Bytes) -> Result<Redirect, ApiError> {
    let params = form(&body);
    let (app, redirect_uri) = authorization_request(&state, &params).await?;
    let realm_id = params
        .get("realm_id")
        .ok_or_else(|| ApiError::invalid("realm_id is required"))?;
    if state.store.realm(realm_id).await?.is_none() {
        return Err(ApiError::not_found(format!("realm {realm_id} not found")));
    }
    let scope = params.get("scope").map(String::as_str).filter(|s| !s.is_empty());
    let code = oauth::new_code(&state, &app.id, realm_id, &redirect_uri, scope).await?;
    let mut target =
        url::Url::parse(&redirect_uri).map_err(|_| ApiError::invalid("redirect_uri is not a URL"))?;
    {
        let mut query = target.query_pairs_mut();
        query.append_pair("code", &code).append_pair("realmId", realm_id);
        if let Some(s) = params.get("state") {
            query.append_pair("state", s);
        }
    }
    Ok(Redirect::to(target.as_str()))
}

/// This server's address as the client reached it (the `issuer` and every endpoint of
/// the discovery document).
pub fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1:8080");
    format!("http://{host}")
}

/// `GET /.well-known/openid-configuration` (and Intuit's own paths, with and without the
/// trailing slash): the discovery document Intuit's OAuth clients read, with every key of
/// Intuit's, pointing at this server.
pub async fn discovery(headers: HeaderMap) -> Json<Value> {
    let base = base_url(&headers);
    Json(json!({
        "issuer": base,
        "authorization_endpoint": format!("{base}/connect/oauth2"),
        "token_endpoint": format!("{base}/oauth2/v1/tokens/bearer"),
        "userinfo_endpoint": format!("{base}/v1/openid_connect/userinfo"),
        "revocation_endpoint": format!("{base}/oauth2/v1/tokens/revoke"),
        "jwks_uri": format!("{base}/op/v1/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic"],
        "scopes_supported": ["openid", "email", "profile", "address", "phone", "com.intuit.quickbooks.accounting"],
        "claims_supported": ["aud", "exp", "iat", "iss", "realmid", "sub"],
    }))
}
