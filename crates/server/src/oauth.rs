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
