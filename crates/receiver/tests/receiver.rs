//! The receiver SDK against what the sender really produces.

#![allow(clippy::disallowed_types, clippy::disallowed_methods)] // tests are clients and peers of the server

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

    fn options() -> HandlerOptions {
        HandlerOptions {
            verifier_tokens: vec![TOKEN.into()],
            signing_secrets: vec![SECRET.into()],
            max_body_bytes: 1 << 20,
        }
    }

    async fn serve(max_body_bytes: usize) -> Served {
        let dir = tempfile::tempdir().unwrap();
        let inbox = Inbox::open(&dir.path().join("inbox.db")).await.unwrap();
        let options = HandlerOptions {
            max_body_bytes,
            ..options()
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
        let pending = inbox.entries_after(0, 10).await.unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].body, body.as_bytes());
        assert_eq!(pending[0].webhook_id.as_deref(), Some("ntf_1"));
        // A redelivery (same webhook-id) is answered 200 and stored once.
        let app = router("/hook", inbox.clone(), options()).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        assert_eq!(post(&url, body.as_bytes(), |_| {}).await, 200);
        assert_eq!(inbox.entries_after(0, 10).await.unwrap().len(), 1, "stored twice");
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
        assert!(served.inbox.entries_after(0, 10).await.unwrap().is_empty());
        // And a good one still goes through.
        assert_eq!(post(&served.url, body, |_| {}).await, 200);
        assert_eq!(served.inbox.entries_after(0, 10).await.unwrap().len(), 1);
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

mod worker {
    use ledgerhook_domain::Operation;
    use ledgerhook_receiver::handler::{router, HandlerOptions};
    use ledgerhook_receiver::inbox::{Appended, Inbox, Incoming};
    use ledgerhook_receiver::worker::{Apply, Change, Repair, Worker};
    use ledgerhook_server::{Config, Server};
    use ledgerhook_testkit::{Kind, TestDatabase};
    use serde_json::{json, Value};
    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::time::{Duration, Instant};

    /// The app's copy: every change applied, in order.
    #[derive(Default)]
    struct Copy {
        applied: Mutex<Vec<Change>>,
    }

    impl Apply for Copy {
        async fn apply(&self, change: &Change) -> Result<(), String> {
            self.applied.lock().unwrap().push(change.clone());
            Ok(())
        }
    }

    impl Copy {
        /// The latest change applied to each entity.
        fn latest(&self) -> HashMap<(String, String), Change> {
            let mut latest = HashMap::new();
            for change in self.applied.lock().unwrap().iter() {
                latest.insert(
                    (change.event.entity.clone(), change.event.entity_id.clone()),
                    change.clone(),
                );
            }
            latest
        }

        /// Panics if an entity was ever given an older state after a newer one.
        fn assert_never_older(&self) {
            let mut seen: HashMap<(String, String, String), i64> = HashMap::new();
            for c in self.applied.lock().unwrap().iter() {
                let key = (
                    c.event.realm_id.clone(),
                    c.event.entity.clone(),
                    c.event.entity_id.clone(),
                );
                let at = c.event.last_updated.millis();
                if let Some(before) = seen.insert(key.clone(), at) {
                    assert!(at > before, "{key:?} was applied at {at} after {before}");
                }
            }
        }
    }

    fn incoming(webhook_id: &str, body: &[u8], received_at: i64) -> Incoming {
        Incoming {
            webhook_id: Some(webhook_id.to_owned()),
            dedupe_key: Some(webhook_id.to_owned()),
            content_type: "application/json".to_owned(),
            body: body.to_vec(),
            received_at,
        }
    }

    fn notification(realm: &str, changes: &[(&str, &str, i64)]) -> Vec<u8> {
        let entities: Vec<Value> = changes
            .iter()
            .map(|(id, operation, at)| {
                json!({"name": "Customer", "id": id, "operation": operation,
                       "lastUpdated": ledgerhook_domain::Timestamp(*at).to_rfc3339()})
            })
            .collect();
        serde_json::to_vec(&json!({"eventNotifications": [
            {"realmId": realm, "dataChangeEvent": {"entities": entities}}]}))
        .unwrap()
    }

    #[tokio::test]
    async fn changes_are_applied_per_realm_in_order_once_and_never_older_over_newer() {
        let dir = tempfile::tempdir().unwrap();
        let inbox = Inbox::open(&dir.path().join("inbox.db")).await.unwrap();
        let t = 1_795_000_000_000;
        // Out of order within a notification, a newer state before an older one across
        // notifications, a redelivered notification, and a second realm.
        let bodies = [
            notification("1", &[("7", "Update", t + 2000), ("7", "Create", t)]),
            notification("2", &[("7", "Create", t + 500)]),
            notification("1", &[("7", "Update", t + 1000), ("8", "Create", t + 1500)]),
            notification("1", &[("7", "Update", t + 2000), ("7", "Create", t)]),
        ];
        for (i, body) in bodies.iter().enumerate() {
            inbox
                .append(incoming(&format!("ntf_{i}"), body, t))
                .await
                .unwrap();
        }
        let worker = Worker::new(inbox.clone(), Copy::default(), None).await.unwrap();
        let done = worker.run_once().await.unwrap();
        // The repeated 7@0 and 7@2000 are skipped.
        assert_eq!((done.entries, done.applied, done.skipped), (4, 5, 2), "{done:?}");
        let applied = |realm: &str| -> Vec<(String, Operation, i64)> {
            worker
                .app()
                .applied
                .lock()
                .unwrap()
                .iter()
                .filter(|c| c.event.realm_id == realm)
                .map(|c| {
                    (
                        c.event.entity_id.clone(),
                        c.event.operation,
                        c.event.last_updated.millis() - t,
                    )
                })
                .collect()
        };
        // Each realm's pending changes, merged and applied in lastUpdated order.
        let expected = [
            ("7", Operation::Create, 0),
            ("7", Operation::Update, 1000),
            ("8", Operation::Create, 1500),
            ("7", Operation::Update, 2000),
        ];
        assert_eq!(applied("1"), expected.map(|(e, o, at)| (e.to_owned(), o, at)));
        assert_eq!(applied("2"), [("7".to_owned(), Operation::Create, 500)]);
        worker.app().assert_never_older();
        assert_eq!(
            worker.status().await.unwrap().inbox_depth,
            0,
            "everything taken in"
        );
        // After a restart: an older state arriving late changes nothing, and a
        // redelivery is not even stored.
        let late = notification("1", &[("7", "Update", t + 1500)]);
        let stored = inbox.append(incoming("ntf_4", &late, t)).await.unwrap();
        assert!(matches!(stored, Appended::Stored(_)));
        let again = inbox.append(incoming("ntf_0", &bodies[0], t)).await.unwrap();
        assert_eq!(again, Appended::Duplicate);
        let worker = Worker::new(inbox.clone(), Copy::default(), None).await.unwrap();
        let done = worker.run_once().await.unwrap();
        assert_eq!((done.entries, done.applied, done.skipped), (1, 0, 1));
        assert!(worker.app().applied.lock().unwrap().is_empty());
    }

    /// A Ledgerhook server delivering to a receiver built on the SDK.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_missed_notification_is_repaired_from_cdc_by_the_next_one() {
        const OPERATOR: &str = "operator-token-for-receiver-tests";
        let db = TestDatabase::new(Kind::Sqlite).await.unwrap();
        let config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            database_url: db.url.parse().expect("the test database URL"),
            admin_token: Some(OPERATOR.to_owned()),
            allow_http: true,
            allow_private_networks: true,
            sandbox_batch_window: Duration::ZERO,
            ..Config::default()
        };
        let server = Server::start(config).await.unwrap();
        let base = format!("http://{}", server.local_addr);
        tokio::spawn(server.run(std::future::pending()));
        let client = reqwest::Client::new();
        let call = |method: reqwest::Method, path: String, body: Value| {
            let request = client
                .request(method, format!("{base}{path}"))
                .bearer_auth(OPERATOR)
                .json(&body);
            async move {
                let response = request.send().await.unwrap();
                let status = response.status();
                let body: Value = response.json().await.unwrap_or(Value::Null);
                assert!(status.is_success(), "{status}: {body}");
                body
            }
        };
        use reqwest::Method;
        let realm = call(
            Method::POST,
            "/api/v1/realms".into(),
            json!({"name": "R", "environment": "sandbox"}),
        )
        .await;
        let realm = realm["id"].as_str().unwrap().to_owned();
        let app = call(Method::POST, "/api/v1/apps".into(), json!({"name": "Mirror"})).await;
        let app_id = app["id"].as_str().unwrap().to_owned();
        let grant = call(
            Method::POST,
            format!("/api/v1/apps/{app_id}/connections"),
            json!({"realm_id": realm}),
        )
        .await;

        let dir = tempfile::tempdir().unwrap();
        let inbox = Inbox::open(&dir.path().join("inbox.db")).await.unwrap();
        let options = HandlerOptions {
            verifier_tokens: vec![app["verifier_token"].as_str().unwrap().to_owned()],
            signing_secrets: vec![app["signing_secret"].as_str().unwrap().to_owned()],
            max_body_bytes: 1 << 20,
        };
        let endpoint = router("/hook", inbox.clone(), options).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let hook = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, endpoint).await.unwrap() });
        let subscribe = json!({"url": hook, "entities": "*"});
        let webhooks = format!("/api/v1/apps/{app_id}/webhooks/sandbox");
        call(Method::PUT, webhooks.clone(), subscribe.clone()).await;

        let mut repair = Repair::new(
            &base,
            vec!["Customer".into()],
            HashMap::from([(realm.clone(), grant["access_token"].as_str().unwrap().to_owned())]),
        );
        repair.margin = Duration::from_secs(1);
        let worker = Worker::new(inbox.clone(), Copy::default(), Some(repair))
            .await
            .unwrap();
        let ingest = |id: &str, operation: &str, name: &str| {
            let events = json!([{"name": "Customer", "id": id, "operation": operation,
                                 "data": {"DisplayName": name}}]);
            call(Method::POST, format!("/api/v1/realms/{realm}/events"), events)
        };
        let until = |expected: usize| {
            let (worker, inbox) = (worker.clone(), inbox.clone());
            async move {
                let deadline = Instant::now() + Duration::from_secs(10);
                let mut entries = 0;
                while entries < expected && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    let _ = &inbox;
                    entries += worker.run_once().await.unwrap().entries;
                }
                assert_eq!(entries, expected, "notifications processed");
            }
        };
        ingest("1", "Create", "Ada").await;
        until(1).await;
        // While the app has no subscription, customer 2 is created: no notification.
        call(Method::DELETE, webhooks.clone(), Value::Null).await;
        ingest("2", "Create", "Grace").await;
        call(Method::PUT, webhooks.clone(), subscribe).await;
        ingest("1", "Update", "Ada L.").await;
        until(1).await;

        let copy = worker.app();
        copy.assert_never_older();
        let latest = copy.latest();
        let name = |id: &str| {
            latest[&("Customer".to_owned(), id.to_owned())]
                .body
                .as_ref()
                .map(|b| b["DisplayName"].clone())
        };
        assert_eq!(name("1"), Some(json!("Ada L.")), "{latest:?}");
        assert_eq!(
            name("2"),
            Some(json!("Grace")),
            "customer 2 was not repaired: {latest:?}"
        );
    }
}

mod cdc {
    use ledgerhook_domain::{Operation, Timestamp};
    use ledgerhook_receiver::worker::cdc_changes;
    use serde_json::json;

    #[test]
    fn cdc_answers_become_updates_and_tombstones_become_deletes() {
        let answer = json!({"CDCResponse": [{"QueryResponse": [
            {"Customer": [
                {"Id": "1", "SyncToken": "2", "DisplayName": "Ada", "domain": "QBO", "sparse": false,
                 "MetaData": {"CreateTime": "2026-11-01T10:00:00-08:00", "LastUpdatedTime": "2026-11-02T10:00:00-08:00"}},
                {"domain": "QBO", "status": "Deleted", "Id": "2",
                 "MetaData": {"LastUpdatedTime": "2026-11-03T18:00:00Z"}}
             ], "startPosition": 1, "maxResults": 2},
            {},
            {"Invoice": [{"Id": "9", "MetaData": {"LastUpdatedTime": "2026-11-04T00:00:00.500Z"}}]}
        ]}], "time": "2026-11-05T00:00:00Z"});
        let changes = cdc_changes("42", &answer).unwrap();
        let summary: Vec<(&str, &str, Operation, Timestamp)> = changes
            .iter()
            .map(|c| {
                (
                    c.event.entity.as_str(),
                    c.event.entity_id.as_str(),
                    c.event.operation,
                    c.event.last_updated,
                )
            })
            .collect();
        let at = |t: &str| Timestamp::parse(t).unwrap();
        assert_eq!(
            summary,
            [
                ("Customer", "1", Operation::Update, at("2026-11-02T18:00:00Z")),
                ("Customer", "2", Operation::Delete, at("2026-11-03T18:00:00Z")),
                ("Invoice", "9", Operation::Update, at("2026-11-04T00:00:00.500Z")),
            ]
        );
        assert!(changes.iter().all(|c| c.event.realm_id == "42"));
        assert_eq!(changes[0].body.as_ref().unwrap()["DisplayName"], "Ada");
        assert_eq!(changes[1].body.as_ref().unwrap()["status"], "Deleted");
    }

    #[test]
    fn malformed_cdc_answers_say_what_is_missing() {
        let missing_id = json!({"CDCResponse": [{"QueryResponse": [{"Customer": [{"MetaData": {"LastUpdatedTime": "2026-11-02T10:00:00Z"}}]}]}]});
        assert_eq!(
            cdc_changes("1", &missing_id).unwrap_err(),
            "a Customer without Id"
        );
        let missing_time = json!({"CDCResponse": [{"QueryResponse": [{"Customer": [{"Id": "5"}]}]}]});
        assert_eq!(
            cdc_changes("1", &missing_time).unwrap_err(),
            "Customer 5 has no MetaData.LastUpdatedTime"
        );
        let fault = json!({"Fault": {"Error": [{"Message": "bad"}], "type": "ValidationFault"}});
        assert_eq!(
            cdc_changes("1", &fault).unwrap_err(),
            "the answer has no CDCResponse[0].QueryResponse"
        );
    }
}
