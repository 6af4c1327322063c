//! How the relay hands a change to the app: one signed JSON request per change,
//! `{realmId, name, id, operation, lastUpdated, deletedId?, entity}`, with Standard
//! Webhooks headers. The `webhook-id` is derived from the change itself (realm, entity,
//! id, `lastUpdated`, `SyncToken`, operation), so a change sent again after a crash of
//! the relay carries the same id and the app can recognise it.

#![allow(clippy::disallowed_types, clippy::disallowed_methods)] // a client of the app by design (clippy.toml)

use ledgerhook_receiver::worker::{Apply, Change};
use ledgerhook_signing::StandardKey;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// The app's side of the relay.
pub struct Forward {
    client: reqwest::Client,
    url: String,
    key: Option<StandardKey>,
}

/// The most of an app's refusal kept in the error.
const EXCERPT: usize = 200;

impl Forward {
    /// Forwards to `url`, signing with `secret` (a `whsec_` secret) when given, waiting
    /// at most `timeout` for each answer.
    pub fn new(url: &str, secret: Option<&str>, timeout: Duration) -> anyhow::Result<Forward> {
        let key = secret
            .map(
                |s| match s.strip_prefix("whsec_").map(|_| StandardKey::parse(s)) {
                    Some(Ok(key)) => Ok(key),
                    _ => Err(anyhow::anyhow!(
                        "--forward-secret: expected whsec_ followed by base64"
                    )),
                },
            )
            .transpose()?;
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Forward {
            client,
            url: url.to_owned(),
            key,
        })
    }
}

/// The JSON the app receives for `change`.
pub fn body(change: &Change) -> Value {
    let event = &change.event;
    let mut body = json!({
        "realmId": event.realm_id,
        "name": event.entity,
        "id": event.entity_id,
        "operation": event.operation.as_str(),
        "lastUpdated": event.last_updated.to_rfc3339(),
    });
    if let Some(deleted) = &event.deleted_id {
        body["deletedId"] = json!(deleted);
    }
    let tombstone = change.body.as_ref().is_some_and(|b| b["status"] == "Deleted");
    body["entity"] = match &change.body {
        Some(entity) if !tombstone => entity.clone(),
        _ => Value::Null,
    };
    body
}

/// The stable `webhook-id` of `change`.
pub fn change_id(change: &Change) -> String {
    let event = &change.event;
    let version = change.version();
    let text = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        event.realm_id,
        event.entity,
        event.entity_id,
        version.last_updated,
        version.sync_token.map_or(String::new(), |t| t.to_string()),
        event.operation.as_str()
    );
    let digest = Sha256::digest(text.as_bytes());
    format!("chg_{}", hex::encode(&digest[..16]))
}

impl Apply for Forward {
    async fn apply(&self, change: &Change) -> Result<(), String> {
        let body = serde_json::to_vec(&body(change)).map_err(|e| e.to_string())?;
        let id = change_id(change);
        let timestamp = ledgerhook_domain::Timestamp::now().millis() / 1000;
        let mut request = self
            .client
            .post(&self.url)
            .header("content-type", "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", timestamp.to_string());
        if let Some(key) = &self.key {
            request = request.header("webhook-signature", key.sign(&id, timestamp, &body));
        }
        let response = request.body(body).send().await.map_err(|e| {
            format!(
                "forwarding to {} failed: {}",
                self.url,
                ledgerhook_domain::error_chain(&e)
            )
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let text = response.text().await.unwrap_or_default();
        let excerpt: String = text.chars().take(EXCERPT).collect();
        Err(format!("the app answered {status}: {excerpt}"))
    }
}
