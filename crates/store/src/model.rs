//! The rows the store reads and writes. Plain data; the server turns them into API shapes.

use ledgerhook_domain::faults::Faults;
use ledgerhook_domain::{ConfigState, EntitySelection, Environment, Ordering, PayloadFormat, Timestamp};

/// A company.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Realm {
    /// Server-made decimal id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Sandbox or production.
    pub environment: Environment,
    /// When it was created.
    pub created_at: Timestamp,
}

/// An app, with the hashes of its credentials (never the credentials themselves).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct App {
    /// `app_…` id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// OAuth client id (public).
    pub client_id: String,
    /// SHA-256 of the OAuth client secret.
    pub client_secret_hash: String,
    /// SHA-256 of the API key.
    pub api_key_hash: String,
    /// Allowed OAuth redirect URIs.
    pub redirect_uris: Vec<String>,
    /// When it was created.
    pub created_at: Timestamp,
}

/// The name of a secret the server keeps readable (possibly encrypted) to sign with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretName {
    /// The key of `intuit-signature`.
    VerifierToken,
    /// The `whsec_…` key of Standard Webhooks signatures.
    SigningSecret,
}

impl SecretName {
    /// The name in paths and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            SecretName::VerifierToken => "verifier_token",
            SecretName::SigningSecret => "signing_secret",
        }
    }

    /// Parses the path form.
    pub fn parse(text: &str) -> Option<SecretName> {
        [SecretName::VerifierToken, SecretName::SigningSecret]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

/// A signing secret as stored (values are the stored, possibly encrypted, forms).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredSecret {
    /// The newest value.
    pub current: String,
    /// The value before the last rotation, still used until `grace_until`.
    pub previous: Option<String>,
    /// End of the rotation's grace period.
    pub grace_until: Option<Timestamp>,
}

/// A webhook configuration: one per app and environment.
#[derive(Clone, Debug, PartialEq)]
pub struct WebhookConfig {
    /// Row id.
    pub id: i64,
    /// The app.
    pub app_id: String,
    /// Its environment.
    pub environment: Environment,
    /// Endpoint URL.
    pub url: String,
    /// What it subscribes to.
    pub entities: EntitySelection,
    /// Body format.
    pub format: PayloadFormat,
    /// Its own batch window in milliseconds, if set.
    pub batch_window_ms: Option<i64>,
    /// Its own ordering, if set (otherwise the retry policy's default).
    pub ordering: Option<Ordering>,
    /// Active, blacklisted or inactive.
    pub state: ConfigState,
    /// When the state last changed.
    pub state_since: Timestamp,
    /// The last delivery error, if any.
    pub last_error: Option<String>,
    /// When it was first saved.
    pub created_at: Timestamp,
    /// When it was last saved.
    pub updated_at: Timestamp,
    /// Fault injection (sandbox only).
    pub faults: Option<Faults>,
}

/// What a `PUT` of a configuration sets.
#[derive(Clone, Debug)]
pub struct ConfigInput {
    /// Endpoint URL (validated).
    pub url: String,
    /// Subscription.
    pub entities: EntitySelection,
    /// Body format.
    pub format: PayloadFormat,
    /// Own batch window.
    pub batch_window_ms: Option<i64>,
    /// Own ordering.
    pub ordering: Option<Ordering>,
    /// Fault injection (sandbox only; the caller checks).
    pub faults: Option<Faults>,
}

/// An app connected to a realm.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connection {
    /// The app.
    pub app_id: String,
    /// The realm.
    pub realm_id: String,
    /// The realm's environment.
    pub environment: Environment,
    /// Events with a greater sequence number are delivered to the app.
    pub after_seq: i64,
    /// When the connection was made.
    pub created_at: Timestamp,
}

/// The kind of an OAuth credential.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    /// Bearer token for `/v3`, one hour.
    Access,
    /// Exchanges for new tokens.
    Refresh,
    /// One-time authorization code of the consent flow.
    Code,
}

impl TokenKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Access => "access",
            TokenKind::Refresh => "refresh",
            TokenKind::Code => "code",
        }
    }

    fn parse(text: &str) -> Option<TokenKind> {
        [TokenKind::Access, TokenKind::Refresh, TokenKind::Code]
            .into_iter()
            .find(|k| k.as_str() == text)
    }
}

/// An OAuth credential, found by its hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OAuthToken {
    /// Access, refresh or code.
    pub kind: TokenKind,
    /// The app it was issued to.
    pub app_id: String,
    /// The realm it is for.
    pub realm_id: String,
    /// For codes: the redirect URI they were issued for.
    pub redirect_uri: Option<String>,
    /// The scopes granted (space-separated), if recorded.
    pub scope: Option<String>,
    /// When it stops being valid.
    pub expires_at: Timestamp,
}

/// A token to store: its hash and what it grants.
#[derive(Clone, Debug)]
pub struct NewToken {
    /// SHA-256 of the token.
    pub hash: String,
    /// Access, refresh or code.
    pub kind: TokenKind,
    /// Expiry.
    pub expires_at: Timestamp,
    /// For codes: the redirect URI.
    pub redirect_uri: Option<String>,
    /// The scopes granted (space-separated), if any were asked for.
    pub scope: Option<String>,
}

pub(crate) fn token_kind(text: &str) -> Result<TokenKind, sqlx::Error> {
    TokenKind::parse(text).ok_or_else(|| decode_error("oauth_tokens.kind", text))
}

/// A stored value this build cannot read: corruption or a newer writer.
pub(crate) fn decode_error(column: &str, value: &str) -> sqlx::Error {
    sqlx::Error::Decode(format!("unexpected value {value:?} in {column}").into())
}

pub(crate) fn environment(text: &str) -> Result<Environment, sqlx::Error> {
    text.parse().map_err(|_| decode_error("environment", text))
}
