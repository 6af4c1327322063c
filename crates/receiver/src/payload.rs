//! Both notification formats, typed.

use ledgerhook_domain::{Operation, Timestamp};
use serde_json::Value;

/// One change event from a notification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The realm (company).
    pub realm_id: String,
    /// Entity type name (`"Customer"`; CloudEvents' lower-case names are restored).
    pub entity: String,
    /// Entity id.
    pub entity_id: String,
    /// What happened.
    pub operation: Operation,
    /// When it happened: the source of truth for ordering.
    pub last_updated: Timestamp,
    /// For merges: the id merged away.
    pub deleted_id: Option<String>,
    /// The CloudEvents id (stable across retries), when the format has one.
    pub event_id: Option<String>,
}

/// Why a body was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not JSON.
    #[error("body is not JSON: {0}")]
    NotJson(String),
    /// JSON, but not a notification of either format.
    #[error("body is not a notification: {0}")]
    Shape(String),
}

fn text(value: &Value, field: &str) -> Result<String, ParseError> {
    value[field]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| ParseError::Shape(format!("{field} is missing")))
}

fn time(value: &str) -> Result<Timestamp, ParseError> {
    Timestamp::parse(value).map_err(|e| ParseError::Shape(e.to_string()))
}

/// The entity name of a CloudEvents type's lower-case segment.
fn entity_name(lower: &str) -> String {
    ledgerhook_domain::ENTITIES
        .iter()
        .find(|e| e.name.eq_ignore_ascii_case(lower))
        .map(|e| e.name.to_owned())
        .unwrap_or_else(|| lower.to_owned())
}

fn operation_of_verb(verb: &str) -> Option<Operation> {
    Operation::ALL
        .into_iter()
        .find(|op| op.cloudevents_verb() == verb)
}

fn legacy(body: &Value) -> Result<Vec<Event>, ParseError> {
    let mut events = Vec::new();
    for notification in body["eventNotifications"]
        .as_array()
        .ok_or_else(|| ParseError::Shape("eventNotifications".into()))?
    {
        let realm_id = text(notification, "realmId")?;
        let entities = notification["dataChangeEvent"]["entities"]
            .as_array()
            .ok_or_else(|| ParseError::Shape("dataChangeEvent.entities".into()))?;
        for entity in entities {
            let op = text(entity, "operation")?;
            events.push(Event {
                realm_id: realm_id.clone(),
                entity: text(entity, "name")?,
                entity_id: text(entity, "id")?,
                operation: Operation::parse(&op)
                    .ok_or_else(|| ParseError::Shape(format!("operation {op}")))?,
                last_updated: time(&text(entity, "lastUpdated")?)?,
                deleted_id: entity["deletedId"].as_str().map(str::to_owned),
                event_id: None,
            });
        }
    }
    Ok(events)
}

fn cloudevents(items: &[Value]) -> Result<Vec<Event>, ParseError> {
    items
        .iter()
        .map(|item| {
            let kind = text(item, "type")?;
            let parts: Vec<&str> = kind.split('.').collect();
            let (entity, verb) = match parts.as_slice() {
                [_, entity, verb, _] => (*entity, *verb),
                _ => return Err(ParseError::Shape(format!("type {kind}"))),
            };
            Ok(Event {
                realm_id: text(item, "intuitaccountid")?,
                entity: entity_name(entity),
                entity_id: text(item, "intuitentityid")?,
                operation: operation_of_verb(verb)
                    .ok_or_else(|| ParseError::Shape(format!("type {kind}")))?,
                last_updated: time(&text(item, "time")?)?,
                deleted_id: item["data"]["deletedid"].as_str().map(str::to_owned),
                event_id: item["id"].as_str().map(str::to_owned),
            })
        })
        .collect()
}

/// Parses a notification body of either format, whatever the content type says
/// (`application/json` or `application/cloudevents-batch+json`: receivers that parse
/// only the first lose CloudEvents bodies — the most reported migration failure).
pub fn parse(_content_type: &str, body: &[u8]) -> Result<Vec<Event>, ParseError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| ParseError::NotJson(e.to_string()))?;
    match &value {
        Value::Array(items) => cloudevents(items),
        Value::Object(_) => legacy(&value),
        _ => Err(ParseError::Shape("expected an object or an array".into())),
    }
}
