//! Notification bodies.
//!
//! Bodies are written by hand, compact and in the documented key order, with strings
//! escaped exactly as JavaScript's `JSON.stringify` escapes them (serde_json's string
//! escaping is identical: `"`, `\`, `\b \f \n \r \t`, other controls as lower-case
//! `\u00xx`, nothing else), so Intuit's Node samples, which verify the signature over
//! `JSON.stringify(JSON.parse(body))`, accept them.

use ledgerhook_domain::{ChangeEvent, Operation, PayloadFormat};
use sha2::{Digest, Sha256};

/// Most events in one CloudEvents notification.
pub const CLOUDEVENTS_MAX_EVENTS: usize = 100;
/// Most bytes in one CloudEvents notification.
pub const CLOUDEVENTS_MAX_BYTES: usize = 1024 * 1024;

fn push_str(out: &mut String, value: &str) {
    out.push_str(&serde_json::to_string(value).expect("a string always serialises"));
}

/// `{"eventNotifications":[{"realmId":…,"dataChangeEvent":{"entities":[…]}}]}`.
pub fn legacy(realm_id: &str, events: &[ChangeEvent]) -> String {
    let mut out = String::with_capacity(96 + events.len() * 112);
    out.push_str("{\"eventNotifications\":[{\"realmId\":");
    push_str(&mut out, realm_id);
    out.push_str(",\"dataChangeEvent\":{\"entities\":[");
    for (i, event) in events.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"name\":");
        push_str(&mut out, event.entity);
        out.push_str(",\"id\":");
        push_str(&mut out, &event.entity_id);
        out.push_str(",\"operation\":");
        push_str(&mut out, event.operation.as_str());
        out.push_str(",\"lastUpdated\":");
        push_str(&mut out, &event.last_updated.to_rfc3339());
        if let Some(deleted) = &event.deleted_id {
            out.push_str(",\"deletedId\":");
            push_str(&mut out, deleted);
        }
        out.push('}');
    }
    out.push_str("]}}]}");
    out
}

/// The deterministic CloudEvents id of a change: the same change always has the same id,
/// in every notification and retry, so receivers can dedupe on it. UUID-shaped hex of a
/// SHA-256 over the change's identity.
pub fn cloudevent_id(realm_id: &str, event: &ChangeEvent) -> String {
    let mut hasher = Sha256::new();
    for part in [
        realm_id,
        event.entity,
        &event.entity_id,
        event.operation.as_str(),
        &event.last_updated.millis().to_string(),
        event.deleted_id.as_deref().unwrap_or(""),
    ] {
        hasher.update(part.len().to_le_bytes());
        hasher.update(part.as_bytes());
    }
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&hasher.finalize()[..16]);
    crate::signature::uuid_text(bytes)
}

/// One CloudEvents object, keys in Intuit's order.
fn cloudevent(app_id: &str, realm_id: &str, event: &ChangeEvent) -> String {
    let mut out = String::with_capacity(360);
    out.push_str("{\"specversion\":\"1.0\",\"id\":");
    push_str(&mut out, &cloudevent_id(realm_id, event));
    out.push_str(",\"source\":");
    push_str(&mut out, &format!("ledgerhook.{app_id}"));
    out.push_str(",\"type\":");
    let kind = format!(
        "qbo.{}.{}.v1",
        event.entity.to_lowercase(),
        event.operation.cloudevents_verb()
    );
    push_str(&mut out, &kind);
    out.push_str(",\"datacontenttype\":\"application/json\",\"time\":");
    push_str(&mut out, &event.last_updated.to_rfc3339());
    out.push_str(",\"intuitentityid\":");
    push_str(&mut out, &event.entity_id);
    out.push_str(",\"intuitaccountid\":");
    push_str(&mut out, realm_id);
    out.push_str(",\"data\":");
    match &event.deleted_id {
        Some(deleted) if event.operation == Operation::Merge => {
            out.push_str("{\"deletedid\":");
            push_str(&mut out, deleted);
            out.push('}');
        }
        _ => out.push_str("{}"),
    }
    out.push('}');
    out
}

/// CloudEvents arrays, split at [`CLOUDEVENTS_MAX_EVENTS`] events or
/// [`CLOUDEVENTS_MAX_BYTES`] bytes, each a separate notification.
pub fn cloudevents(app_id: &str, realm_id: &str, events: &[ChangeEvent]) -> Vec<String> {
    cloudevent_batches(app_id, realm_id, events)
        .into_iter()
        .map(|(body, _)| body)
        .collect()
}

/// Like [`cloudevents`], with the number of events in each body.
fn cloudevent_batches(app_id: &str, realm_id: &str, events: &[ChangeEvent]) -> Vec<(String, usize)> {
    let mut bodies = Vec::new();
    let mut current = String::from("[");
    let mut count = 0;
    for event in events {
        let object = cloudevent(app_id, realm_id, event);
        let full =
            count == CLOUDEVENTS_MAX_EVENTS || current.len() + object.len() + 2 > CLOUDEVENTS_MAX_BYTES;
        if count > 0 && full {
            current.push(']');
            bodies.push((std::mem::replace(&mut current, String::from("[")), count));
            count = 0;
        }
        if count > 0 {
            current.push(',');
        }
        current.push_str(&object);
        count += 1;
    }
    if count > 0 {
        current.push(']');
        bodies.push((current, count));
    }
    bodies
}

/// The bodies of a window's events in `format`, each with its number of events: one
/// for legacy, one or more for CloudEvents.
pub fn render(
    format: PayloadFormat,
    app_id: &str,
    realm_id: &str,
    events: &[ChangeEvent],
) -> Vec<(String, usize)> {
    match format {
        PayloadFormat::Legacy => vec![(legacy(realm_id, events), events.len())],
        PayloadFormat::CloudEvents => cloudevent_batches(app_id, realm_id, events),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use ledgerhook_domain::Timestamp;

    fn event(entity: &'static str, id: &str, operation: Operation, deleted: Option<&str>) -> ChangeEvent {
        ChangeEvent {
            entity,
            entity_id: id.into(),
            operation,
            last_updated: Timestamp::parse("2026-11-28T15:11:37Z").unwrap(),
            deleted_id: deleted.map(Into::into),
        }
    }

    #[test]
    fn legacy_matches_the_documented_shape() {
        let body = legacy(
            "9341453012345678",
            &[
                event("Customer", "58", Operation::Create, None),
                event("Customer", "12", Operation::Merge, Some("57")),
            ],
        );
        assert_eq!(
            body,
            "{\"eventNotifications\":[{\"realmId\":\"9341453012345678\",\"dataChangeEvent\":{\"entities\":[\
             {\"name\":\"Customer\",\"id\":\"58\",\"operation\":\"Create\",\"lastUpdated\":\"2026-11-28T15:11:37.000Z\"},\
             {\"name\":\"Customer\",\"id\":\"12\",\"operation\":\"Merge\",\"lastUpdated\":\"2026-11-28T15:11:37.000Z\",\"deletedId\":\"57\"}]}}]}"
        );
    }

    #[test]
    fn cloudevents_match_the_documented_shape() {
        let bodies = cloudevents(
            "app_1",
            "123",
            &[event("SalesReceipt", "9", Operation::Merge, Some("27"))],
        );
        assert_eq!(bodies.len(), 1);
        let id = cloudevent_id("123", &event("SalesReceipt", "9", Operation::Merge, Some("27")));
        assert_eq!(
            bodies[0],
            format!(
                "[{{\"specversion\":\"1.0\",\"id\":\"{id}\",\"source\":\"ledgerhook.app_1\",\"type\":\"qbo.salesreceipt.merged.v1\",\
                 \"datacontenttype\":\"application/json\",\"time\":\"2026-11-28T15:11:37.000Z\",\"intuitentityid\":\"9\",\
                 \"intuitaccountid\":\"123\",\"data\":{{\"deletedid\":\"27\"}}}}]"
            )
        );
    }

    #[test]
    fn cloudevent_ids_are_deterministic_and_distinct() {
        let a = event("Invoice", "1", Operation::Void, None);
        assert_eq!(cloudevent_id("1", &a), cloudevent_id("1", &a));
        assert_ne!(cloudevent_id("1", &a), cloudevent_id("2", &a));
        assert_ne!(
            cloudevent_id("1", &a),
            cloudevent_id("1", &event("Invoice", "1", Operation::Emailed, None))
        );
    }

    #[test]
    fn cloudevents_split_at_100_events() {
        let events: Vec<ChangeEvent> = (0..250)
            .map(|i| event("Bill", &i.to_string(), Operation::Update, None))
            .collect();
        let bodies = cloudevents("a", "r", &events);
        let counts: Vec<usize> = bodies
            .iter()
            .map(|b| {
                serde_json::from_str::<serde_json::Value>(b)
                    .unwrap()
                    .as_array()
                    .unwrap()
                    .len()
            })
            .collect();
        assert_eq!(counts, [100, 100, 50]);
    }

    #[test]
    fn cloudevents_split_at_one_mebibyte() {
        let long_id = "x".repeat(200_000);
        let events: Vec<ChangeEvent> = (0..8)
            .map(|_| event("Bill", &long_id, Operation::Update, None))
            .collect();
        let bodies = cloudevents("a", "r", &events);
        assert!(bodies.len() >= 2);
        assert!(bodies.iter().all(|b| b.len() <= CLOUDEVENTS_MAX_BYTES));
        let total: usize = bodies
            .iter()
            .map(|b| {
                serde_json::from_str::<serde_json::Value>(b)
                    .unwrap()
                    .as_array()
                    .unwrap()
                    .len()
            })
            .sum();
        assert_eq!(total, 8);
    }
}
