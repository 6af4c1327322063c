//! Access tokens for CDC, per realm, refreshed before they expire (and after a `401`)
//! with the app's client id and secret, as QuickBooks' OAuth 2.0 requires: access tokens
//! live an hour, and each refresh may rotate the refresh token. The rotated refresh
//! token is written to the inbox file (`worker_tokens`) before it is used, so a restart
//! never falls back to a refresh token the server has already retired.

use sqlx::{Row, SqlitePool};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::Mutex;

/// Refreshed this long before the expiry the token endpoint gave, or a quarter of the
/// lifetime when that is shorter.
const EARLY: Duration = Duration::from_secs(60);

/// A realm's credentials as the app configures them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RealmCredentials {
    /// An access token to start with (none: one is fetched with the refresh token).
    pub access_token: Option<String>,
    /// The refresh token (none: the access token is used until it stops working).
    pub refresh_token: Option<String>,
}

/// The app's OAuth client, for refreshing tokens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OAuthClient {
    /// The app's client id.
    pub client_id: String,
    /// The app's client secret.
    pub client_secret: String,
    /// The token endpoint: `https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer`
    /// for QuickBooks, `{server}/oauth2/v1/tokens/bearer` for Ledgerhook.
    pub token_url: String,
}

/// Why no access token could be had.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The realm has no credentials.
    #[error("no access token for this realm")]
    Unknown,
    /// The access token stopped working and there is nothing to refresh it with.
    #[error("the access token was refused and there is no refresh token and client to renew it")]
    CannotRefresh,
    /// The token endpoint refused the refresh.
    #[error("the token endpoint refused the refresh: {0}")]
    Refused(String),
    /// The token endpoint could not be reached or answered nonsense.
    #[error("the token endpoint failed: {0}")]
    Endpoint(String, #[source] Option<Box<dyn std::error::Error + Send + Sync>>),
    /// The rotated token could not be stored.
    #[error("storing the refreshed token failed: {0}")]
    Store(String),
}

#[derive(Clone, Debug, Default)]
struct Held {
    access_token: Option<String>,
    refresh_token: Option<String>,
    /// When to refresh, Unix milliseconds; `None` when the expiry is unknown (a token
    /// given on the command line: used until it is refused).
    refresh_at: Option<i64>,
}

/// The tokens of every realm, shared by the worker's tasks.
#[derive(Clone)]
pub(crate) struct Tokens {
    pool: SqlitePool,
    client: reqwest::Client,
    oauth: Option<OAuthClient>,
    held: Arc<HashMap<String, Mutex<Held>>>,
}

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

impl Tokens {
    /// The tokens of `credentials`, taking a refresh token rotated in an earlier run
    /// over the configured one while the configured one is the one that run started from.
    pub(crate) async fn open(
        pool: SqlitePool,
        client: reqwest::Client,
        oauth: Option<OAuthClient>,
        credentials: &HashMap<String, RealmCredentials>,
    ) -> Result<Tokens, sqlx::Error> {
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS worker_tokens (realm_id TEXT PRIMARY KEY, configured TEXT, \
             access_token TEXT, refresh_token TEXT, refresh_at INTEGER)",
        )
        .execute(&pool)
        .await?;
        let mut held = HashMap::new();
        for (realm, given) in credentials {
            let stored = sqlx::query(
                "SELECT configured, access_token, refresh_token, refresh_at FROM worker_tokens WHERE realm_id = ?",
            )
            .bind(realm)
            .fetch_optional(&pool)
            .await?;
            let mut tokens = Held {
                access_token: given.access_token.clone(),
                refresh_token: given.refresh_token.clone(),
                refresh_at: None,
            };
            if let Some(row) = stored {
                let configured: Option<String> = row.try_get("configured")?;
                if configured == given.refresh_token && given.refresh_token.is_some() {
                    tokens = Held {
                        access_token: row.try_get("access_token")?,
                        refresh_token: row.try_get("refresh_token")?,
                        refresh_at: row.try_get("refresh_at")?,
                    };
                }
            }
            held.insert(realm.clone(), Mutex::new(tokens));
        }
        Ok(Tokens {
            pool,
            client,
            oauth,
            held: Arc::new(held),
        })
    }

    /// Realms with credentials.
    pub(crate) fn realms(&self) -> impl Iterator<Item = &String> {
        self.held.keys()
    }

    /// Whether `realm_id` has credentials.
    pub(crate) fn knows(&self, realm_id: &str) -> bool {
        self.held.contains_key(realm_id)
    }

    /// A current access token for `realm_id`: refreshed first when it is missing or about
    /// to expire, or when `refused` is the token the server just refused.
    pub(crate) async fn access_token(
        &self,
        realm_id: &str,
        refused: Option<&str>,
    ) -> Result<String, TokenError> {
        let held = self.held.get(realm_id).ok_or(TokenError::Unknown)?;
        let mut held = held.lock().await;
        let stale = held.refresh_at.is_some_and(|at| at <= now_millis());
        let refused_now = refused.is_some() && held.access_token.as_deref() == refused;
        match &held.access_token {
            Some(token) if !stale && !refused_now => return Ok(token.clone()),
            _ => {}
        }
        if held.refresh_token.is_none() || self.oauth.is_none() {
            return match (&held.access_token, refused_now) {
                (Some(token), false) => Ok(token.clone()),
                _ => Err(TokenError::CannotRefresh),
            };
        }
        self.refresh(realm_id, &mut held).await?;
        held.access_token.clone().ok_or(TokenError::CannotRefresh)
    }

    async fn refresh(&self, realm_id: &str, held: &mut Held) -> Result<(), TokenError> {
        let (Some(oauth), Some(refresh_token)) = (&self.oauth, &held.refresh_token) else {
            return Err(TokenError::CannotRefresh);
        };
        let response = self
            .client
            .post(&oauth.token_url)
            .basic_auth(&oauth.client_id, Some(&oauth.client_secret))
            .header("accept", "application/json")
            .form(&[("grant_type", "refresh_token"), ("refresh_token", refresh_token)])
            .send()
            .await
            .map_err(|e| TokenError::Endpoint("the request failed".into(), Some(Box::new(e))))?;
        let status = response.status();
        let body: serde_json::Value = response
            .json()
            .await
            .map_err(|e| TokenError::Endpoint("the answer is not JSON".into(), Some(Box::new(e))))?;
        if !status.is_success() {
            return Err(TokenError::Refused(format!("{status}: {body}")));
        }
        let access = body["access_token"]
            .as_str()
            .ok_or_else(|| TokenError::Endpoint("the answer has no access_token".into(), None))?;
        let rotated = body["refresh_token"].as_str().unwrap_or(refresh_token).to_owned();
        let refresh_at = body["expires_in"].as_i64().map(|seconds| {
            let lifetime = seconds * 1000;
            now_millis() + lifetime - (EARLY.as_millis() as i64).min(lifetime / 4)
        });
        let configured: Option<String> =
            sqlx::query_scalar("SELECT configured FROM worker_tokens WHERE realm_id = ?")
                .bind(realm_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| TokenError::Store(e.to_string()))?
                .flatten();
        // The run's starting point: the first refresh token this file saw configured.
        let configured = configured.or_else(|| held.refresh_token.clone());
        sqlx::query(
            "INSERT INTO worker_tokens (realm_id, configured, access_token, refresh_token, refresh_at) \
             VALUES (?, ?, ?, ?, ?) ON CONFLICT (realm_id) DO UPDATE SET access_token = excluded.access_token, \
             refresh_token = excluded.refresh_token, refresh_at = excluded.refresh_at",
        )
        .bind(realm_id)
        .bind(configured)
        .bind(access)
        .bind(&rotated)
        .bind(refresh_at)
        .execute(&self.pool)
        .await
        .map_err(|e| TokenError::Store(e.to_string()))?;
        tracing::info!(realm_id, "refreshed the realm's access token");
        *held = Held {
            access_token: Some(access.to_owned()),
            refresh_token: Some(rotated),
            refresh_at,
        };
        Ok(())
    }
}
