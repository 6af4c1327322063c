//! OAuth 2.0 grants: access and refresh tokens for one app on one realm, stored only as
//! hashes. Lifetimes are QuickBooks': access one hour, refresh 100 days (real time, never
//! scaled by `time-scale`).

use crate::auth::{hash_token, new_secret};
use crate::http::ApiError;
use crate::AppState;
use ledgerhook_domain::Timestamp;
use ledgerhook_store::model::{NewToken, TokenKind};
use serde_json::{json, Value};

/// Seconds an access token lives.
pub const ACCESS_TOKEN_SECONDS: i64 = 3600;
/// Seconds a refresh token lives.
pub const REFRESH_TOKEN_SECONDS: i64 = 100 * 86_400;

/// A freshly issued pair of tokens (the only time they exist in the clear).
pub struct Grant {
    /// Bearer token for `/v3`.
    pub access_token: String,
    /// Exchanges for a new pair.
    pub refresh_token: String,
}

impl Grant {
    fn issue(now: Timestamp) -> (Grant, Vec<NewToken>) {
        let grant = Grant {
            access_token: new_secret("lha_"),
            refresh_token: new_secret("lhr_"),
        };
        let rows = vec![
            NewToken {
                hash: hash_token(&grant.access_token),
                kind: TokenKind::Access,
                expires_at: Timestamp(now.millis() + ACCESS_TOKEN_SECONDS * 1000),
                redirect_uri: None,
            },
            NewToken {
                hash: hash_token(&grant.refresh_token),
                kind: TokenKind::Refresh,
                expires_at: Timestamp(now.millis() + REFRESH_TOKEN_SECONDS * 1000),
                redirect_uri: None,
            },
        ];
        (grant, rows)
    }

    /// The management API's answer to a connection.
    pub fn to_json(&self, realm_id: &str) -> Value {
        json!({
            "realm_id": realm_id,
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "expires_in": ACCESS_TOKEN_SECONDS,
        })
    }
}

/// Connects `app_id` to `realm_id` (if not already) and issues a new pair of tokens.
pub async fn connect(state: &AppState, app_id: &str, realm_id: &str) -> Result<Grant, ApiError> {
    let now = Timestamp::now();
    let (grant, rows) = Grant::issue(now);
    state.store.connect(app_id, realm_id, &rows, now).await?;
    Ok(grant)
}

/// Seconds an authorization code lives.
pub const CODE_SECONDS: i64 = 600;

/// Why a token request was refused, in OAuth 2.0's terms (RFC 6749 §5.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OAuthError {
    /// Bad or missing client credentials (`401`).
    InvalidClient,
    /// The code or refresh token is unknown, expired, used, or not this client's.
    InvalidGrant(&'static str),
    /// A parameter is missing or malformed.
    InvalidRequest(String),
    /// A grant type other than `authorization_code` and `refresh_token`.
    UnsupportedGrantType,
}

/// Issues a one-time authorization code for `app_id` on `realm_id`, bound to
/// `redirect_uri`.
pub async fn new_code(
    state: &AppState,
    app_id: &str,
    realm_id: &str,
    redirect_uri: &str,
) -> Result<String, ApiError> {
    let now = Timestamp::now();
    let code = new_secret("lhc_");
    let row = NewToken {
        hash: hash_token(&code),
        kind: TokenKind::Code,
        expires_at: Timestamp(now.millis() + CODE_SECONDS * 1000),
        redirect_uri: Some(redirect_uri.to_owned()),
    };
    state.store.add_tokens(app_id, realm_id, &[row], now).await?;
    Ok(code)
}

/// Exchanges a code (once) for a connection and a pair of tokens; answers them with the
/// realm.
pub async fn exchange_code(
    state: &AppState,
    app_id: &str,
    code: &str,
    redirect_uri: &str,
) -> Result<(Grant, String), OAuthError> {
    let hash = hash_token(code);
    let stored = state
        .store
        .oauth_token(&hash)
        .await
        .map_err(|_| OAuthError::InvalidGrant("server error"))?;
    let Some(stored) = stored.filter(|t| t.kind == TokenKind::Code && t.app_id == app_id) else {
        return Err(OAuthError::InvalidGrant("unknown authorization code"));
    };
    // Consume it first: a code works once, even under concurrent use.
    if !state
        .store
        .delete_oauth_token(&hash)
        .await
        .map_err(|_| OAuthError::InvalidGrant("server error"))?
    {
        return Err(OAuthError::InvalidGrant("authorization code already used"));
    }
    if stored.expires_at <= Timestamp::now() {
        return Err(OAuthError::InvalidGrant("authorization code expired"));
    }
    if stored.redirect_uri.as_deref() != Some(redirect_uri) {
        return Err(OAuthError::InvalidGrant(
            "redirect_uri does not match the authorization request",
        ));
    }
    let grant = connect(state, app_id, &stored.realm_id)
        .await
        .map_err(|_| OAuthError::InvalidGrant("server error"))?;
    Ok((grant, stored.realm_id))
}

/// Exchanges a refresh token for a new pair (the old refresh token stops working).
pub async fn refresh(state: &AppState, app_id: &str, refresh_token: &str) -> Result<Grant, OAuthError> {
    let hash = hash_token(refresh_token);
    let stored = state
        .store
        .oauth_token(&hash)
        .await
        .map_err(|_| OAuthError::InvalidGrant("server error"))?;
    let Some(stored) = stored.filter(|t| t.kind == TokenKind::Refresh && t.app_id == app_id) else {
        return Err(OAuthError::InvalidGrant("unknown refresh token"));
    };
    if stored.expires_at <= Timestamp::now() {
        return Err(OAuthError::InvalidGrant("refresh token expired"));
    }
    if state
        .store
        .connection(app_id, &stored.realm_id)
        .await
        .ok()
        .flatten()
        .is_none()
    {
        return Err(OAuthError::InvalidGrant(
            "the app is no longer connected to the realm",
        ));
    }
    if !state
        .store
        .delete_oauth_token(&hash)
        .await
        .map_err(|_| OAuthError::InvalidGrant("server error"))?
    {
        return Err(OAuthError::InvalidGrant("refresh token already used"));
    }
    let now = Timestamp::now();
    let (grant, rows) = Grant::issue(now);
    state
        .store
        .add_tokens(app_id, &stored.realm_id, &rows, now)
        .await
        .map_err(|_| OAuthError::InvalidGrant("server error"))?;
    Ok(grant)
}

impl Grant {
    /// The token endpoint's answer, in Intuit's shape.
    pub fn token_response(&self) -> Value {
        json!({
            "token_type": "bearer",
            "access_token": self.access_token,
            "expires_in": ACCESS_TOKEN_SECONDS,
            "refresh_token": self.refresh_token,
            "x_refresh_token_expires_in": REFRESH_TOKEN_SECONDS,
        })
    }
}
