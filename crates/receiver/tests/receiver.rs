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

mod endpoint {
    //! The axum endpoint over a real socket, with the inbox on a real SQLite file.

    use super::events;
    use ledgerhook_delivery::payload;
    use ledgerhook_delivery::signature::{intuit_signature, standard_signature};
    use ledgerhook_receiver::handler::{router, HandlerError, HandlerOptions};
    use ledgerhook_receiver::inbox::Inbox;
    use std::time::{SystemTime, UNIX_EPOCH};

    const TOKEN: &str = "verifier-token";
    const SECRET: &str = "whsec_c2VjcmV0LXNpZ25pbmcta2V5";

    /// A served endpoint and its inbox file.
    struct Served {
        url: String,
        inbox: Inbox,
        dir: tempfile::TempDir,
    }

    async fn serve(max_body_bytes: usize) -> Served {
        let dir = tempfile::tempdir().unwrap();
        let inbox = Inbox::open(&dir.path().join("inbox.db")).await.unwrap();
        let options = HandlerOptions {
            verifier_tokens: vec![TOKEN.into()],
            signing_secrets: vec![SECRET.into()],
            max_body_bytes,
        };
        let app = router("/hook", inbox.clone(), options).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Served { url, inbox, dir }
    }

    fn now() -> i64 {
        SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
    }

    /// Request headers, in order: intuit-signature, webhook-id, webhook-timestamp,
    /// webhook-signature, content-type.
    type Headers = Vec<(&'static str, String)>;

    /// A change to the headers of a correctly signed request.
    type Tamper = Box<dyn FnOnce(&mut Headers)>;

    /// Posts `body` signed as the sender signs it, with `tamper` applied to the headers.
    async fn post(url: &str, body: &[u8], tamper: impl FnOnce(&mut Headers)) -> u16 {
        let mut headers = vec![
            ("intuit-signature", intuit_signature(TOKEN, body)),
            ("webhook-id", "ntf_1".to_owned()),
            ("webhook-timestamp", now().to_string()),
            (
                "webhook-signature",
                standard_signature(SECRET, "ntf_1", now(), body).unwrap(),
            ),
            ("content-type", "application/json".to_owned()),
        ];
        tamper(&mut headers);
        let mut request = reqwest::Client::new().post(url).body(body.to_vec());
        for (name, value) in headers {
            request = request.header(name, value);
        }
        request.send().await.unwrap().status().as_u16()
    }

    #[tokio::test]
    async fn a_verified_notification_is_on_disk_when_answered() {
        let served = serve(1 << 20).await;
        let body = payload::legacy("123", &events());
        assert_eq!(post(&served.url, body.as_bytes(), |_| {}).await, 200);
        // Reopened from the file, as after a crash.
        served.inbox.close().await;
        let inbox = Inbox::open(&served.dir.path().join("inbox.db")).await.unwrap();
        let pending = inbox.pending(10).await.unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].body, body.as_bytes());
        assert_eq!(pending[0].webhook_id.as_deref(), Some("ntf_1"));
        inbox.done(pending[0].seq).await.unwrap();
        assert!(inbox.pending(10).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn refused_requests_append_nothing() {
        let served = serve(4096).await;
        let body = payload::legacy("123", &events());
        let body = body.as_bytes();
        let cases: Vec<(&str, u16, Tamper)> = vec![
            (
                "wrong intuit-signature",
                401,
                Box::new(|h| h[0].1 = intuit_signature("other", b"{}")),
            ),
            (
                "no intuit-signature",
                401,
                Box::new(|h| {
                    h.remove(0);
                }),
            ),
            (
                "wrong webhook-signature",
                401,
                Box::new(|h| h[3].1 = "v1,AAAA".into()),
            ),
            (
                "stale webhook-timestamp",
                401,
                Box::new(|h| h[2].1 = (now() - 3600).to_string()),
            ),
        ];
        for (case, expected, tamper) in cases {
            assert_eq!(post(&served.url, body, tamper).await, expected, "{case}");
        }
        let malformed = b"{\"not\":\"a notification\"}";
        assert_eq!(post(&served.url, malformed, |_| {}).await, 400, "malformed");
        let large = vec![b' '; 8192];
        assert_eq!(post(&served.url, &large, |_| {}).await, 413, "too large");
        assert!(served.inbox.pending(10).await.unwrap().is_empty());
        // And a good one still goes through.
        assert_eq!(post(&served.url, body, |_| {}).await, 200);
        assert_eq!(served.inbox.pending(10).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn an_endpoint_without_keys_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let inbox = Inbox::open(&dir.path().join("inbox.db")).await.unwrap();
        let options = HandlerOptions {
            verifier_tokens: vec![],
            signing_secrets: vec![],
            max_body_bytes: 1024,
        };
        assert!(matches!(
            router("/hook", inbox, options),
            Err(HandlerError::NoKeys)
        ));
    }
}
