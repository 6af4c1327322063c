//! The receiver SDK against what the sender really produces.

use ledgerhook_delivery::payload;
use ledgerhook_delivery::signature::{intuit_signature, standard_signature};
use ledgerhook_domain::{ChangeEvent, Operation, Timestamp};
use ledgerhook_receiver::payload::parse;
use ledgerhook_receiver::verify::{self, StandardWebhooks, VerifyError};

fn events() -> Vec<ChangeEvent> {
    vec![
        ChangeEvent {
            entity: "Customer",
            entity_id: "58".into(),
            operation: Operation::Create,
            last_updated: Timestamp(1_795_000_000_000),
            deleted_id: None,
        },
        ChangeEvent {
            entity: "SalesReceipt",
            entity_id: "12".into(),
            operation: Operation::Merge,
            last_updated: Timestamp(1_795_000_001_000),
            deleted_id: Some("57".into()),
        },
    ]
}

#[test]
fn intuit_signatures_verify_with_any_current_key() {
    assert!(verify::intuit(
        &["verify_me"],
        b"{\"stuff\":\"5\"}",
        "nfPLN16u3vMvv08ghDs+dOkLuirEVDy5wAeG/lmM2OA="
    )
    .is_ok());
    let body = payload::legacy("123", &events());
    let signature = intuit_signature("new-token", body.as_bytes());
    assert!(verify::intuit(&["old-token", "new-token"], body.as_bytes(), &signature).is_ok());
    assert_eq!(
        verify::intuit(&["old-token"], body.as_bytes(), &signature),
        Err(VerifyError::Mismatch)
    );
    let mut tampered = body.clone().into_bytes();
    tampered[10] ^= 1;
    assert_eq!(
        verify::intuit(&["new-token"], &tampered, &signature),
        Err(VerifyError::Mismatch)
    );
}

#[test]
fn standard_webhooks_checks_signature_and_timestamp() {
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let body = br#"{"test": 2432232314}"#;
    let verifier = StandardWebhooks::new(&[secret]).unwrap();
    let good = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
    let id = Some("msg_p5jXN8AQM9LWM0D4loKWxJek");
    assert!(verifier
        .verify(id, Some("1614265330"), Some(good), body, 1614265330)
        .is_ok());
    // Several signatures, one matching (a rotation's grace period).
    let both = format!("v1,AAAA {good}");
    assert!(verifier
        .verify(id, Some("1614265330"), Some(&both), body, 1614265400)
        .is_ok());
    assert_eq!(
        verifier.verify(id, Some("1614265330"), Some(good), body, 1614265330 + 301),
        Err(VerifyError::Timestamp)
    );
    assert_eq!(
        verifier.verify(id, Some("1614265330"), Some(good), b"{}", 1614265330),
        Err(VerifyError::Mismatch)
    );
    assert_eq!(
        verifier.verify(None, Some("1"), Some(good), body, 1),
        Err(VerifyError::MissingHeader("webhook-id"))
    );
    // What the sender signs verifies.
    let sent = standard_signature(secret, "ntf_1", 1_795_000_000, b"[]").unwrap();
    assert!(verifier
        .verify(
            Some("ntf_1"),
            Some("1795000000"),
            Some(&sent),
            b"[]",
            1_795_000_010
        )
        .is_ok());
    assert!(StandardWebhooks::new(&["whsec_!!"]).is_err());
}

#[test]
fn both_formats_parse_into_the_same_events() {
    let legacy = payload::legacy("123", &events());
    let cloud = &payload::cloudevents("app_1", "123", &events())[0];
    let from_legacy = parse("application/json; charset=utf-8", legacy.as_bytes()).unwrap();
    let from_cloud = parse(
        "application/cloudevents-batch+json; charset=utf-8",
        cloud.as_bytes(),
    )
    .unwrap();
    assert_eq!(from_legacy.len(), 2);
    for (a, b) in from_legacy.iter().zip(&from_cloud) {
        assert_eq!(
            (
                &a.realm_id,
                &a.entity,
                &a.entity_id,
                a.operation,
                a.last_updated,
                &a.deleted_id
            ),
            (
                &b.realm_id,
                &b.entity,
                &b.entity_id,
                b.operation,
                b.last_updated,
                &b.deleted_id
            )
        );
    }
    assert_eq!(from_cloud[1].entity, "SalesReceipt");
    assert!(from_cloud[0].event_id.is_some());
    // QuickBooks' own lenient timestamps parse too.
    let quickbooks = br#"{"eventNotifications":[{"realmId":"1185883450","dataChangeEvent":{"entities":[{"name":"Customer","id":"1","operation":"Create","lastUpdated":"2015-10-05T14:42:19-0700"}]}}]}"#;
    assert_eq!(
        parse("application/json", quickbooks).unwrap()[0]
            .last_updated
            .to_rfc3339(),
        "2015-10-05T21:42:19.000Z"
    );
    assert!(parse("application/json", b"not json").is_err());
    assert!(parse("application/json", b"{\"eventNotifications\":[{}]}").is_err());
}
