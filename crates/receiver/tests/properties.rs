//! Property tests of the receiver SDK's parsers of outside input: arbitrary bodies and
//! signature headers never panic, and what the sender renders parses back to the same
//! events in both formats.

use ledgerhook_delivery::payload;
use ledgerhook_domain::{ChangeEvent, Operation, Timestamp, ENTITIES};
use ledgerhook_receiver::payload::parse;
use ledgerhook_receiver::verify::{self, StandardWebhooks};
use proptest::prelude::*;

/// JSON values of any shape, a few levels deep, with notification-like keys.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        "[a-zA-Z0-9:.+-]{0,12}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        let key = prop_oneof![
            Just("eventNotifications".to_owned()),
            Just("realmId".to_owned()),
            Just("dataChangeEvent".to_owned()),
            Just("entities".to_owned()),
            Just("name".to_owned()),
            Just("id".to_owned()),
            Just("operation".to_owned()),
            Just("lastUpdated".to_owned()),
            Just("type".to_owned()),
            Just("time".to_owned()),
            Just("intuitaccountid".to_owned()),
            Just("intuitentityid".to_owned()),
            "[a-z]{1,6}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map(key, inner, 0..5)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

fn change_event() -> impl Strategy<Value = ChangeEvent> {
    (
        0..ENTITIES.len(),
        "[0-9]{1,6}",
        0i64..4_000_000_000_000,
        prop::option::of("[0-9]{1,4}"),
    )
        .prop_map(|(entity, id, at, deleted)| {
            let spec = &ENTITIES[entity];
            let operation = spec.operations().next().unwrap_or(Operation::Create);
            ChangeEvent {
                entity: spec.name,
                entity_id: id,
                operation,
                last_updated: Timestamp(at),
                deleted_id: deleted.filter(|_| operation == Operation::Merge),
            }
        })
}

proptest! {
    #[test]
    fn arbitrary_bodies_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256), value in json_value()) {
        let _ = parse("application/json", &bytes);
        let _ = parse("application/cloudevents-batch+json", value.to_string().as_bytes());
        let _ = parse("application/json", value.to_string().as_bytes());
    }

    #[test]
    fn arbitrary_signature_headers_never_panic(
        signature in any::<String>(),
        id in prop::option::of(any::<String>()),
        timestamp in prop::option::of("[0-9a-z-]{0,12}"),
        body in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let _ = verify::intuit(&["token"], &body, &signature);
        let standard = StandardWebhooks::new(&["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]).unwrap();
        let _ = standard.verify(id.as_deref(), timestamp.as_deref(), Some(&signature), &body, 1_800_000_000);
        let _ = StandardWebhooks::new(&[signature.as_str()]);
    }

    #[test]
    fn rendered_notifications_parse_back_to_their_events(events in prop::collection::vec(change_event(), 1..20)) {
        let legacy = payload::legacy("42", &events);
        let parsed = parse("application/json", legacy.as_bytes()).unwrap();
        prop_assert_eq!(parsed.len(), events.len());
        for (event, back) in events.iter().zip(&parsed) {
            prop_assert_eq!(back.realm_id.as_str(), "42");
            prop_assert_eq!(back.entity.as_str(), event.entity);
            prop_assert_eq!(&back.entity_id, &event.entity_id);
            prop_assert_eq!(back.operation, event.operation);
            prop_assert_eq!(back.last_updated, event.last_updated);
            prop_assert_eq!(&back.deleted_id, &event.deleted_id);
        }
        let mut from_cloudevents = Vec::new();
        for body in payload::cloudevents("app", "42", &events) {
            from_cloudevents.extend(parse("application/cloudevents-batch+json", body.as_bytes()).unwrap());
        }
        let again: Vec<_> = from_cloudevents.iter().map(|e| (e.entity.clone(), e.entity_id.clone(), e.operation, e.last_updated)).collect();
        let want: Vec<_> = events.iter().map(|e| (e.entity.to_owned(), e.entity_id.clone(), e.operation, e.last_updated)).collect();
        prop_assert_eq!(again, want);
    }
}
