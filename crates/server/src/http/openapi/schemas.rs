//! The shapes of `/api/v1` as OpenAPI schemas: what each request takes and each answer
//! holds. They describe the JSON the handlers read and render; the handlers' own input
//! types stay private to them.

#![allow(dead_code)] // read by utoipa's derive, never constructed

use serde_json::Value;
use utoipa::ToSchema;

/// Every error: `{"error":{"code","message"}}`.
#[derive(ToSchema)]
pub struct Error {
    /// The error.
    pub error: ErrorBody,
}

/// An error's code and message.
#[derive(ToSchema)]
pub struct ErrorBody {
    /// `unauthorized`, `forbidden`, `not_found`, `invalid_request`, `payload_too_large`,
    /// `conflict`, `rate_limited`, `unavailable`, `internal`.
    pub code: String,
    /// What is wrong, for people.
    pub message: String,
}

/// `POST /api/v1/realms`.
#[derive(ToSchema)]
pub struct NewRealm {
    /// The company's name.
    pub name: String,
    /// `sandbox` or `production`.
    pub environment: String,
}

/// A company.
#[derive(ToSchema)]
pub struct Realm {
    /// 16 decimal digits, like QuickBooks' realm ids.
    pub id: String,
    /// Its name.
    pub name: String,
    /// `sandbox` or `production`.
    pub environment: String,
    /// RFC 3339 UTC.
    pub created_at: String,
}

/// A page of realms.
#[derive(ToSchema)]
pub struct RealmList {
    /// The realms.
    pub data: Vec<Realm>,
    /// The cursor of the next page, or `null`.
    pub next_cursor: Option<String>,
}

/// `POST /api/v1/apps`.
#[derive(ToSchema)]
pub struct NewApp {
    /// Its name.
    pub name: String,
    /// OAuth redirect URIs.
    pub redirect_uris: Option<Vec<String>>,
}

/// An app (no secrets).
#[derive(ToSchema)]
pub struct App {
    /// `app_…`.
    pub id: String,
    /// Its name.
    pub name: String,
    /// The OAuth client id.
    pub client_id: String,
    /// OAuth redirect URIs.
    pub redirect_uris: Vec<String>,
    /// RFC 3339 UTC.
    pub created_at: String,
}

/// An app as created: with its secrets, shown only here.
#[derive(ToSchema)]
pub struct AppCreated {
    /// `app_…`.
    pub id: String,
    /// Its name.
    pub name: String,
    /// The OAuth client id.
    pub client_id: String,
    /// The OAuth client secret.
    pub client_secret: String,
    /// The key of `intuit-signature`.
    pub verifier_token: String,
    /// The `whsec_…` key of Standard Webhooks signatures.
    pub signing_secret: String,
    /// The app's key to this API.
    pub api_key: String,
    /// OAuth redirect URIs.
    pub redirect_uris: Vec<String>,
    /// RFC 3339 UTC.
    pub created_at: String,
}

/// A page of apps.
#[derive(ToSchema)]
pub struct AppList {
    /// The apps.
    pub data: Vec<App>,
    /// The cursor of the next page, or `null`.
    pub next_cursor: Option<String>,
}

/// `POST …/secrets/{name}/rotate`.
#[derive(ToSchema)]
pub struct Rotate {
    /// How long the old value stays valid (default `24h`, at most `30d`).
    pub grace: Option<String>,
}

/// The rotated secret, shown once: `{"<name>": "…", "grace_until": "…"}`.
#[derive(ToSchema)]
pub struct Rotated {
    /// Until when the old value is still accepted.
    pub grace_until: String,
}

/// Fault injection (sandbox configurations only).
#[derive(ToSchema)]
pub struct Faults {
    /// Probability per notification of never being sent.
    pub drop: Option<f64>,
    /// Probability of being sent again later with the same bytes and `webhook-id`.
    pub duplicate: Option<f64>,
    /// Probability of being held back `delay_by`.
    pub delay: Option<f64>,
    /// A duration (default `5s`).
    pub delay_by: Option<String>,
    /// Makes the choice reproducible.
    pub seed: Option<u64>,
}

/// `PUT …/webhooks/{environment}`.
#[derive(ToSchema)]
pub struct ConfigInput {
    /// The endpoint URL.
    pub url: String,
    /// `"*"` or `{"Customer":["Create","Update"],"Invoice":"*"}`.
    pub entities: Value,
    /// `legacy` or `cloudevents`.
    pub format: Option<String>,
    /// A duration.
    pub batch_window: Option<String>,
    /// `strict` or `best-effort`.
    pub ordering: Option<String>,
    /// Fault injection; `null` switches it off.
    pub faults: Option<Faults>,
}

/// A webhook configuration.
#[derive(ToSchema)]
pub struct WebhookConfig {
    /// The app.
    pub app_id: String,
    /// `sandbox` or `production`.
    pub environment: String,
    /// The endpoint URL.
    pub url: String,
    /// What it subscribes to.
    pub entities: Value,
    /// `legacy` or `cloudevents`.
    pub format: String,
    /// The batch window in effect.
    pub batch_window: String,
    /// The ordering in effect.
    pub ordering: String,
    /// `active`, `blacklisted` or `inactive`.
    pub state: String,
    /// RFC 3339 UTC.
    pub state_since: String,
    /// The last delivery error.
    pub last_error: Option<String>,
    /// Fault injection, when on.
    pub faults: Option<Faults>,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// RFC 3339 UTC.
    pub updated_at: String,
}

/// `POST …/connections`.
#[derive(ToSchema)]
pub struct Connect {
    /// The realm to connect.
    pub realm_id: String,
}

/// A new connection's tokens.
#[derive(ToSchema)]
pub struct Grant {
    /// The realm.
    pub realm_id: String,
    /// For `/v3` of this realm.
    pub access_token: String,
    /// For `POST /oauth2/v1/tokens/bearer`.
    pub refresh_token: String,
    /// Seconds (`token-lifetime`).
    pub expires_in: u64,
}

/// A connection.
#[derive(ToSchema)]
pub struct Connection {
    /// The realm.
    pub realm_id: String,
    /// The realm's environment.
    pub environment: String,
    /// RFC 3339 UTC.
    pub created_at: String,
}

/// A page of connections.
#[derive(ToSchema)]
pub struct ConnectionList {
    /// The connections.
    pub data: Vec<Connection>,
    /// The cursor of the next page, or `null`.
    pub next_cursor: Option<String>,
}

/// One change event to ingest.
#[derive(ToSchema)]
pub struct EventIn {
    /// Entity type, e.g. `Customer`.
    pub name: String,
    /// Entity id.
    pub id: String,
    /// `Create`, `Update`, `Delete`, `Merge`, `Void` or `Emailed`.
    pub operation: String,
    /// RFC 3339 (default: now).
    #[schema(rename = "lastUpdated")]
    pub last_updated: Option<String>,
    /// For a `Merge`: the id merged away.
    #[schema(rename = "deletedId")]
    pub deleted_id: Option<String>,
    /// The entity's new body, kept for CDC.
    pub data: Option<Value>,
}

/// What ingestion committed.
#[derive(ToSchema)]
pub struct Accepted {
    /// Events committed.
    pub accepted: u64,
}

/// `POST /api/v1/realms/{realm}/merge`.
#[derive(ToSchema)]
pub struct Merge {
    /// Entity type.
    pub entity: String,
    /// The id merged away.
    pub from_id: String,
    /// The id that remains.
    pub into_id: String,
}

/// A notification in a list.
#[derive(ToSchema)]
pub struct Notification {
    /// `ntf_…` (`webhook-id`).
    pub id: String,
    /// `sandbox` or `production`.
    pub environment: String,
    /// The realm.
    pub realm_id: String,
    /// `pending`, `retrying`, `delivered`, `dropped` or `held`.
    pub status: String,
    /// `legacy` or `cloudevents`.
    pub format: String,
    /// A test send.
    pub test: bool,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// Attempts so far.
    pub attempts: i64,
    /// When the next attempt is due.
    pub next_attempt_at: Option<String>,
    /// Injected faults: `drop`, `duplicate`, `delay`.
    pub faults: Vec<String>,
}

/// A page of notifications, newest first.
#[derive(ToSchema)]
pub struct NotificationList {
    /// The notifications.
    pub data: Vec<Notification>,
    /// The cursor of the next page, or `null`.
    pub next_cursor: Option<String>,
}

/// One attempt.
#[derive(ToSchema)]
pub struct Attempt {
    /// 1, 2, …
    pub number: i64,
    /// RFC 3339 UTC.
    pub started_at: String,
    /// Milliseconds.
    pub duration_ms: i64,
    /// `success`, `http`, `timeout`, `connect`, `tls`, `redirect` or `refused`.
    pub outcome: String,
    /// The endpoint's status.
    pub status_code: Option<i64>,
    /// What went wrong.
    pub error: Option<String>,
    /// The start of the endpoint's answer.
    pub response_body: Option<String>,
    /// The headers the request carried (`webhook-id`, signatures, …); empty when the
    /// target was refused before a request was made.
    pub request_headers: std::collections::BTreeMap<String, String>,
}

/// A notification with its exact payload and every attempt.
#[derive(ToSchema)]
pub struct NotificationDetail {
    /// `ntf_…`.
    pub id: String,
    /// `pending`, `retrying`, `delivered`, `dropped` or `held`.
    pub status: String,
    /// The exact bytes every attempt sends.
    pub payload: String,
    /// Events inside.
    pub event_count: i64,
    /// Injected faults.
    pub faults: Vec<String>,
    /// Every attempt.
    pub attempts: Vec<Attempt>,
}

/// A send made at once (test, redeliver).
#[derive(ToSchema)]
pub struct Sent {
    /// The notification.
    pub notification_id: String,
    /// The attempt.
    pub attempt: Attempt,
}

/// `POST …/test`.
#[derive(ToSchema)]
pub struct TestSend {
    /// The realm of the sample (default `"0"`).
    pub realm_id: Option<String>,
}

/// `POST …/recover`.
#[derive(ToSchema)]
pub struct Recover {
    /// RFC 3339: queue again what was not delivered since then.
    pub since: String,
}

/// What `recover` queued.
#[derive(ToSchema)]
pub struct Queued {
    /// Notifications queued again.
    pub queued: u64,
}

/// The entity × operation matrix.
#[derive(ToSchema)]
pub struct EntityList {
    /// One item per entity: `{name, operations, cdc}`.
    pub data: Vec<Value>,
}

/// One bucket of an app's attempts.
#[derive(ToSchema)]
pub struct Bucket {
    /// RFC 3339 UTC.
    pub start: String,
    /// Successful attempts.
    pub delivered: i64,
    /// Failed attempts.
    pub failed: i64,
}

/// An app's attempts over time.
#[derive(ToSchema)]
pub struct Stats {
    /// RFC 3339 UTC.
    pub since: String,
    /// The bucket's length.
    pub bucket: String,
    /// Every bucket from `since` to now.
    pub buckets: Vec<Bucket>,
}
