//! CDC as a receiver calls it: one realm's changes since a time, every page of them,
//! oldest first, turned into [`Change`]s (full entities as `Update`s — `Create`s at
//! `SyncToken` 0 — and tombstones as `Delete`s), with the realm's access token refreshed
//! when it is refused.

use crate::payload::Event;
use crate::tokens::{OAuthClient, RealmCredentials, TokenError, Tokens};
use crate::worker::{Change, WorkerError};
use ledgerhook_domain::{Operation, Timestamp};
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;

/// CDC answers at most this many objects; a full answer is followed by another call.
const CDC_PAGE: usize = 1000;
/// CDC looks back at most 30 days; calls stay an hour inside that.
pub(crate) const CDC_LOOK_BACK_MS: i64 = (30 * 24 - 1) * 3_600_000;

/// Where and how to call CDC.
#[derive(Clone, Debug)]
pub struct Repair {
    /// The server's base URL (`https://quickbooks.api.intuit.com` or a Ledgerhook
    /// server); CDC is `{base_url}/v3/company/{realm}/cdc`.
    pub base_url: String,
    /// Entity types asked for, and the only ones applied.
    pub entities: Vec<String>,
    /// Credentials per realm; realms without them are not repaired.
    pub credentials: HashMap<String, RealmCredentials>,
    /// The app's OAuth client, to refresh access tokens (none: tokens are used as given).
    pub oauth: Option<OAuthClient>,
    /// How far before the previous notification to look again (clock skew between the
    /// server's `lastUpdated` and the arrival time here). Default one minute.
    pub margin: Duration,
    /// How far back a full repair looks. Default (and most) CDC's reach, 30 days, less
    /// an hour.
    pub look_back: Duration,
    /// The HTTP client.
    pub client: reqwest::Client,
}

impl Repair {
    /// Repair through `base_url` for `entities`, with an access token per realm, looking
    /// back one minute before each previous notification, with a fresh HTTP client
    /// (rustls, the system's roots, 30 s per request).
    pub fn new(base_url: &str, entities: Vec<String>, tokens: HashMap<String, String>) -> Repair {
        let credentials = tokens
            .into_iter()
            .map(|(realm, token)| {
                let given = RealmCredentials {
                    access_token: Some(token),
                    refresh_token: None,
                };
                (realm, given)
            })
            .collect();
        Repair {
            base_url: base_url.to_owned(),
            entities,
            credentials,
            oauth: None,
            margin: Duration::from_secs(60),
            look_back: Duration::from_millis(CDC_LOOK_BACK_MS as u64),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap_or_default(),
        }
    }
}

fn cdc_error(realm_id: &str, message: impl Into<String>) -> WorkerError {
    WorkerError::Cdc {
        realm_id: realm_id.to_owned(),
        message: message.into(),
        source: None,
    }
}

/// Every change CDC reports for `realm_id` since `since` (no further back than CDC
/// allows), oldest first: CDC answers the 1,000 oldest, so a full answer is followed by
/// a call from the newest of them. Fails for a realm without credentials.
pub(crate) async fn changes_since(
    repair: &Repair,
    tokens: &Tokens,
    realm_id: &str,
    since: Timestamp,
) -> Result<Vec<Change>, WorkerError> {
    let floor = Timestamp::now().millis() - CDC_LOOK_BACK_MS;
    let mut since = since.millis().max(floor);
    let mut all = Vec::new();
    loop {
        let mut changes = cdc_refreshing(repair, tokens, realm_id, Timestamp(since)).await?;
        let full = changes.len() >= CDC_PAGE;
        changes.sort_by_key(|c| c.event.last_updated);
        let newest = changes.last().map(|c| c.event.last_updated.millis());
        all.extend(changes);
        match newest {
            Some(newest) if full && newest > since => since = newest,
            _ => break,
        }
    }
    all.sort_by_key(|c| c.event.last_updated);
    Ok(all)
}

/// One CDC call, with the token refreshed and the call repeated once when it is refused.
async fn cdc_refreshing(
    repair: &Repair,
    tokens: &Tokens,
    realm_id: &str,
    since: Timestamp,
) -> Result<Vec<Change>, WorkerError> {
    let token_failed = |err: TokenError| WorkerError::Cdc {
        realm_id: realm_id.to_owned(),
        message: err.to_string(),
        source: Some(Box::new(err)),
    };
    let token = tokens.access_token(realm_id, None).await.map_err(token_failed)?;
    match cdc(repair, realm_id, &token, since).await? {
        Answer::Changes(changes) => Ok(changes),
        Answer::Unauthorized(body) => {
            let token = tokens
                .access_token(realm_id, Some(&token))
                .await
                .map_err(|err| cdc_error(realm_id, format!("401 Unauthorized: {body}; {err}")))?;
            match cdc(repair, realm_id, &token, since).await? {
                Answer::Changes(changes) => Ok(changes),
                Answer::Unauthorized(body) => Err(cdc_error(
                    realm_id,
                    format!("401 Unauthorized after a refresh: {body}"),
                )),
            }
        }
    }
}

enum Answer {
    Changes(Vec<Change>),
    Unauthorized(Value),
}

/// One CDC call: the changes of `repair.entities` in `realm_id` since `since`.
async fn cdc(repair: &Repair, realm_id: &str, token: &str, since: Timestamp) -> Result<Answer, WorkerError> {
    let broken = |message: &str, err: reqwest::Error| WorkerError::Cdc {
        realm_id: realm_id.to_owned(),
        message: message.to_owned(),
        source: Some(Box::new(err)),
    };
    let url = format!(
        "{}/v3/company/{realm_id}/cdc",
        repair.base_url.trim_end_matches('/')
    );
    let response = repair
        .client
        .get(url)
        .bearer_auth(token)
        .header("accept", "application/json")
        .query(&[
            ("entities", repair.entities.join(",")),
            ("changedSince", since.to_rfc3339()),
        ])
        .send()
        .await
        .map_err(|e| broken("the request failed", e))?;
    let status = response.status();
    let body: Value = response
        .json()
        .await
        .map_err(|e| broken("the answer is not JSON", e))?;
    if status == reqwest::StatusCode::UNAUTHORIZED {
        return Ok(Answer::Unauthorized(body));
    }
    if !status.is_success() {
        return Err(cdc_error(realm_id, format!("{status}: {body}")));
    }
    cdc_changes(realm_id, &body)
        .map(Answer::Changes)
        .map_err(|message| cdc_error(realm_id, message))
}

/// The changes in a CDC answer: full entities become `Update`s (`Create`s at `SyncToken`
/// 0), tombstones `Delete`s.
pub fn cdc_changes(realm_id: &str, answer: &Value) -> Result<Vec<Change>, String> {
    let responses = answer["CDCResponse"][0]["QueryResponse"]
        .as_array()
        .ok_or("the answer has no CDCResponse[0].QueryResponse")?;
    let mut changes = Vec::new();
    for response in responses {
        let Some(fields) = response.as_object() else {
            continue;
        };
        for (entity, objects) in fields {
            let Some(objects) = objects.as_array() else {
                continue; // startPosition, maxResults
            };
            for object in objects {
                let id = object["Id"].as_str().ok_or(format!("a {entity} without Id"))?;
                let at = object["MetaData"]["LastUpdatedTime"]
                    .as_str()
                    .ok_or(format!("{entity} {id} has no MetaData.LastUpdatedTime"))?;
                let last_updated = Timestamp::parse(at).map_err(|e| format!("{entity} {id}: {e}"))?;
                // A body at SyncToken 0 is the entity as created.
                let operation = if object["status"] == "Deleted" {
                    Operation::Delete
                } else if object["SyncToken"] == "0" {
                    Operation::Create
                } else {
                    Operation::Update
                };
                changes.push(Change {
                    event: Event {
                        realm_id: realm_id.to_owned(),
                        entity: entity.clone(),
                        entity_id: id.to_owned(),
                        operation,
                        last_updated,
                        deleted_id: None,
                        event_id: None,
                    },
                    body: Some(object.clone()),
                });
            }
        }
    }
    Ok(changes)
}
