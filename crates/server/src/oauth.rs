//! OAuth 2.0 grants: access and refresh tokens for one app on one realm, stored only as
//! hashes. Lifetimes are QuickBooks': access `token-lifetime` (one hour by default),
//! refresh 100 days (real time, never scaled by `time-scale`).
//!
//! **API boundary:** this module answers typed values and [`OAuthError`]; `http/oauth.rs`
//! and `http/connections.rs` turn them into responses.

use crate::auth::{hash_token, new_secret};
use crate::AppState;
use ledgerhook_domain::Timestamp;
use ledgerhook_store::model::{NewToken, TokenKind};
use ledgerhook_store::StoreError;

/// Seconds a refresh token lives.
pub const REFRESH_TOKEN_SECONDS: i64 = 100 * 86_400;
/// Seconds an authorization code lives.
pub const CODE_SECONDS: i64 = 600;

/// A freshly issued pair of tokens (the only time they exist in the clear).
pub struct Grant {
    /// Bearer token for `/v3`.
    pub access_token: String,
    /// Exchanges for a new pair.
    pub refresh_token: String,
    /// Seconds the access token lives (`token-lifetime`).
    pub expires_in: i64,
    /// The scopes granted (space-separated), kept across refreshes.
    pub scope: Option<String>,
}

impl Grant {
    /// Whether the grant includes OpenID Connect (`openid`): the token answer then
    /// carries an `id_token` and the access token reads `userinfo`.
    pub fn openid(&self) -> bool {
        has_openid(self.scope.as_deref())
    }

    fn issue(state: &AppState, now: Timestamp, scope: Option<String>) -> (Grant, Vec<NewToken>) {
        let lifetime_ms = i64::try_from(state.config.token_lifetime.as_millis()).unwrap_or(i64::MAX);
        let grant = Grant {
            access_token: new_secret("lha_"),
            refresh_token: new_secret("lhr_"),
            expires_in: (lifetime_ms / 1000).max(1),
            scope,
        };
        let rows = vec![
            NewToken {
                hash: hash_token(&grant.access_token),
                kind: TokenKind::Access,
                expires_at: Timestamp(now.millis().saturating_add(lifetime_ms)),
                redirect_uri: None,
                scope: grant.scope.clone(),
            },
            NewToken {
                hash: hash_token(&grant.refresh_token),
                kind: TokenKind::Refresh,
                expires_at: Timestamp(now.millis() + REFRESH_TOKEN_SECONDS * 1000),
                redirect_uri: None,
                scope: grant.scope.clone(),
            },
        ];
        (grant, rows)
    }
}

/// Why a token request was refused, in OAuth 2.0's terms (RFC 6749 §5.2), or failed.
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    /// Bad or missing client credentials (`401`).
    #[error("client authentication failed")]
    InvalidClient,
    /// The code or refresh token is unknown, expired, used, or not this client's.
    #[error("{0}")]
    InvalidGrant(&'static str),
    /// A parameter is missing or malformed.
    #[error("{0}")]
    InvalidRequest(String),
    /// A grant type other than `authorization_code` and `refresh_token`.
    #[error("grant_type must be authorization_code or refresh_token")]
    UnsupportedGrantType,
    /// The database failed; nothing was issued or consumed by this request.
    #[error("the token store failed")]
    Store(#[from] StoreError),
    /// The `id_token` of an `openid` grant could not be signed.
    #[error("the id_token could not be made")]
    Signing(#[from] crate::oidc::OidcError),
}

/// Whether a space-separated scope list includes `openid`.
pub fn has_openid(scope: Option<&str>) -> bool {
    scope.is_some_and(|s| s.split_whitespace().any(|s| s == "openid"))
}

/// Connects `app_id` to `realm_id` (if not already) and issues a new pair of tokens for
/// `scope`.
pub async fn connect(
    state: &AppState,
    app_id: &str,
    realm_id: &str,
    scope: Option<String>,
) -> Result<Grant, StoreError> {
    let now = Timestamp::now();
    let (grant, rows) = Grant::issue(state, now, scope);
    state.store.connect(app_id, realm_id, &rows, now).await?;
    Ok(grant)
}

/// Issues a one-time authorization code for `app_id` on `realm_id`, bound to
/// `redirect_uri`, for `scope`.
pub async fn new_code(
    state: &AppState,
    app_id: &str,
    realm_id: &str,
    redirect_uri: &str,
    scope: Option<&str>,
) -> Result<String, StoreError> {
    let now = Timestamp::now();
    let code = new_secret("lhc_");
    let row = NewToken {
        hash: hash_token(&code),
        kind: TokenKind::Code,
        expires_at: Timestamp(now.millis() + CODE_SECONDS * 1000),
        redirect_uri: Some(redirect_uri.to_owned()),
        scope: scope.map(str::to_owned),
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
    let stored = state.store.oauth_token(&hash).await?;
    let Some(stored) = stored.filter(|t| t.kind == TokenKind::Code && t.app_id == app_id) else {
        return Err(OAuthError::InvalidGrant("unknown authorization code"));
    };
    // Consume it first: a code works once, even under concurrent use.
    if !state.store.delete_oauth_token(&hash).await? {
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
    let grant = connect(state, app_id, &stored.realm_id, stored.scope).await?;
    Ok((grant, stored.realm_id))
}

/// Exchanges a refresh token for a new pair (the old refresh token stops working).
pub async fn refresh(state: &AppState, app_id: &str, refresh_token: &str) -> Result<Grant, OAuthError> {
    let hash = hash_token(refresh_token);
    let stored = state.store.oauth_token(&hash).await?;
    let Some(stored) = stored.filter(|t| t.kind == TokenKind::Refresh && t.app_id == app_id) else {
        return Err(OAuthError::InvalidGrant("unknown refresh token"));
    };
    if stored.expires_at <= Timestamp::now() {
        return Err(OAuthError::InvalidGrant("refresh token expired"));
    }
    if state.store.connection(app_id, &stored.realm_id).await?.is_none() {
        return Err(OAuthError::InvalidGrant(
            "the app is no longer connected to the realm",
        ));
    }
    if !state.store.delete_oauth_token(&hash).await? {
        return Err(OAuthError::InvalidGrant("refresh token already used"));
    }
    let now = Timestamp::now();
    let (grant, rows) = Grant::issue(state, now, stored.scope);
    state
        .store
        .add_tokens(app_id, &stored.realm_id, &rows, now)
        .await?;
    Ok(grant)
}

/// Revokes `token` (an access or refresh token of `app_id`): disconnects the app from
/// that realm, as Intuit does. An unknown token or another app's changes nothing.
pub async fn revoke(state: &AppState, app_id: &str, token: &str) -> Result<(), StoreError> {
    if let Some(stored) = state.store.oauth_token(&hash_token(token)).await? {
        if stored.app_id == app_id {
            state.store.disconnect(app_id, &stored.realm_id).await?;
        }
    }
    Ok(())
}
