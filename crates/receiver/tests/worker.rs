//! The worker against a real Ledgerhook server delivering over real HTTP: same-second
//! changes, a realm whose CDC fails beside busy and quiet ones, dead letters, token
//! refresh across a restart, the full repair of a backdated change, the entity filter.

#![allow(clippy::disallowed_types, clippy::disallowed_methods)] // tests are clients and peers of the server

use ledgerhook_receiver::handler::{router, HandlerOptions};
use ledgerhook_receiver::inbox::{Inbox, Incoming};
use ledgerhook_receiver::worker::{
    Apply, Change, OAuthClient, RealmCredentials, Repair, Worker, WorkerOptions,
};
use ledgerhook_server::{Config, Server};
use ledgerhook_testkit::{Kind, TestDatabase};
use reqwest::Method;
use serde_json::{json, Value};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const OPERATOR: &str = "operator-token-for-worker-tests";

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
    /// The newest body applied to Customer `id` of `realm`.
    fn body(&self, realm: &str, id: &str) -> Option<Value> {
        self.applied
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|c| c.event.realm_id == realm && c.event.entity_id == id && c.body.is_some())
            .and_then(|c| c.body.clone())
    }

    fn count(&self, realm: &str) -> usize {
        self.applied
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.event.realm_id == realm)
            .count()
    }
}

/// A server, an app, its sandbox realms, and an endpoint on the SDK receiving for it.
struct Setup {
    _db: TestDatabase,
    base: String,
    client: reqwest::Client,
    app: Value,
    realms: Vec<String>,
    grants: Vec<Value>,
    inbox: Inbox,
    dir: tempfile::TempDir,
}

impl Setup {
    async fn new(realm_count: usize, token_lifetime: Option<Duration>) -> Setup {
        let db = TestDatabase::new(Kind::Sqlite).await.unwrap();
        let mut config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            database_url: db.url.parse().expect("the test database URL"),
            admin_token: Some(OPERATOR.to_owned()),
            allow_http: true,
            allow_private_networks: true,
            sandbox_batch_window: Duration::ZERO,
            ..Config::default()
        };
        if let Some(lifetime) = token_lifetime {
            config.token_lifetime = lifetime;
        }
        let server = Server::start(config).await.unwrap();
        let base = format!("http://{}", server.local_addr);
        tokio::spawn(server.run(std::future::pending()));
        let client = reqwest::Client::new();
        let app = call(
            &client,
            &base,
            Method::POST,
            "/api/v1/apps",
            json!({"name": "Receiver"}),
        )
        .await;
        let app_id = app["id"].as_str().unwrap().to_owned();
        let mut realms = Vec::new();
        let mut grants = Vec::new();
        for i in 0..realm_count {
            let body = json!({"name": format!("Realm {i}"), "environment": "sandbox"});
            let realm = call(&client, &base, Method::POST, "/api/v1/realms", body).await;
            let realm = realm["id"].as_str().unwrap().to_owned();
            let path = format!("/api/v1/apps/{app_id}/connections");
            grants.push(call(&client, &base, Method::POST, &path, json!({"realm_id": realm})).await);
            realms.push(realm);
        }
        let dir = tempfile::tempdir().unwrap();
        let inbox = Inbox::open(&dir.path().join("inbox.db")).await.unwrap();
        let options = HandlerOptions {
            verifier_tokens: vec![app["verifier_token"].as_str().unwrap().to_owned()],
            signing_secrets: vec![],
            max_body_bytes: 1 << 20,
        };
        let endpoint = router("/hook", inbox.clone(), options).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let hook = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, endpoint).await.unwrap() });
        let path = format!("/api/v1/apps/{app_id}/webhooks/sandbox");
        call(
            &client,
            &base,
            Method::PUT,
            &path,
            json!({"url": hook, "entities": "*"}),
        )
        .await;
        Setup {
            _db: db,
            base,
            client,
            app,
            realms,
            grants,
            inbox,
            dir,
        }
    }

    /// Ingests `events` into `realm` and answers when they are committed.
    async fn ingest(&self, realm: &str, events: Value) {
        let path = format!("/api/v1/realms/{realm}/events");
        call(&self.client, &self.base, Method::POST, &path, events).await;
    }

    /// CDC repair for Customers of `realms`, with the tokens the connections gave.
    fn repair(&self, realms: &[usize]) -> Repair {
        let tokens = realms
            .iter()
            .map(|&i| (self.realms[i].clone(), self.access_token(i)))
            .collect();
        let mut repair = Repair::new(&self.base, vec!["Customer".into(), "Invoice".into()], tokens);
        repair.margin = Duration::from_secs(1);
        repair
    }

    fn access_token(&self, i: usize) -> String {
        self.grants[i]["access_token"].as_str().unwrap().to_owned()
    }

    /// The inbox file, reopened (as a restarted app would).
    async fn reopen(&self) -> Inbox {
        Inbox::open(&self.dir.path().join("inbox.db")).await.unwrap()
    }
}

async fn call(client: &reqwest::Client, base: &str, method: Method, path: &str, body: Value) -> Value {
    let response = client
        .request(method, format!("{base}{path}"))
        .bearer_auth(OPERATOR)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{path}: {status}: {body}");
    body
}

/// Polls `done` every 20 ms until it holds or `within` has passed; answers whether it held.
async fn eventually(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    done()
}

/// Runs rounds until `done` holds on the copy (or 10 s pass).
async fn rounds_until(worker: &Worker<Copy>, done: impl Fn(&Copy) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done(worker.app()) {
        assert!(Instant::now() < deadline, "the copy never got there");
        worker.run_once().await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn customer(id: &str, operation: &str, at: &str, name: &str) -> Value {
    json!({"name": "Customer", "id": id, "operation": operation, "lastUpdated": at,
           "data": {"DisplayName": name}})
}

fn second_now() -> String {
    let now = ledgerhook_domain::Timestamp::now().millis();
    ledgerhook_domain::Timestamp(now - now % 1000).to_rfc3339()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_change_within_the_same_second_reaches_the_copy() {
    let setup = Setup::new(1, None).await;
    let realm = setup.realms[0].clone();
    let worker = Worker::new(setup.inbox.clone(), Copy::default(), Some(setup.repair(&[0])))
        .await
        .unwrap();
    let at = second_now();
    setup
        .ingest(&realm, json!([customer("1", "Create", &at, "Ada")]))
        .await;
    rounds_until(&worker, |copy| copy.body(&realm, "1").is_some()).await;
    assert_eq!(worker.app().body(&realm, "1").unwrap()["SyncToken"], "0");
    // The update carries the same lastUpdated (QuickBooks' times have whole seconds).
    setup
        .ingest(&realm, json!([customer("1", "Update", &at, "Ada L.")]))
        .await;
    rounds_until(&worker, |copy| {
        copy.body(&realm, "1")
            .is_some_and(|b| b["DisplayName"] == "Ada L.")
    })
    .await;
    let body = worker.app().body(&realm, "1").unwrap();
    assert_eq!(body["SyncToken"], "1", "{body}");
    // Nothing is applied twice: one Create, one Update.
    let applied: Vec<String> = worker
        .app()
        .applied
        .lock()
        .unwrap()
        .iter()
        .map(|c| format!("{}@{:?}", c.event.operation.as_str(), c.sync_token()))
        .collect();
    assert_eq!(applied, ["Create@Some(0)", "Update@Some(1)"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_realm_backs_off_alone_and_ends_in_dead_letters() {
    let setup = Setup::new(3, None).await;
    let (failing, busy, quiet) = (
        setup.realms[0].clone(),
        setup.realms[1].clone(),
        setup.realms[2].clone(),
    );
    let mut repair = setup.repair(&[1, 2]);
    // The failing realm's token is one the server never issued (as a revoked one).
    repair.credentials.insert(
        failing.clone(),
        RealmCredentials {
            access_token: Some("revoked-token".into()),
            refresh_token: None,
        },
    );
    // More entries for the failing realm than a round takes.
    let t = ledgerhook_domain::Timestamp::now().millis() - 60_000;
    for i in 0..600 {
        let body = json!({"eventNotifications": [{"realmId": failing, "dataChangeEvent": {"entities": [
            {"name": "Customer", "id": format!("{i}"), "operation": "Create",
             "lastUpdated": ledgerhook_domain::Timestamp(t + i).to_rfc3339()}]}}]});
        let incoming = Incoming {
            webhook_id: None,
            dedupe_key: None,
            content_type: "application/json".into(),
            body: serde_json::to_vec(&body).unwrap(),
            received_at: t,
        };
        setup.inbox.append(incoming).await.unwrap();
    }
    let options = WorkerOptions {
        max_tries: 3,
        backoff: Duration::from_millis(100),
        backoff_cap: Duration::from_millis(300),
        poll: Duration::from_millis(50),
        ..WorkerOptions::default()
    };
    let worker = Worker::with_options(setup.inbox.clone(), Copy::default(), Some(repair), options)
        .await
        .unwrap();
    let running = worker.clone();
    tokio::spawn(running.run(std::future::pending()));
    let busy_events: Vec<Value> = (0..50)
        .map(|i| json!({"name": "Customer", "id": format!("{i}"), "operation": "Create", "data": {"DisplayName": format!("B{i}")}}))
        .collect();
    setup.ingest(&busy, Value::Array(busy_events)).await;
    let sent = Instant::now();
    setup
        .ingest(
            &quiet,
            json!([{"name": "Customer", "id": "1", "operation": "Create", "data": {"DisplayName": "Quiet"}}]),
        )
        .await;
    assert!(
        eventually(Duration::from_secs(2), || worker
            .app()
            .body(&quiet, "1")
            .is_some())
        .await,
        "the quiet realm was not applied within 2 s"
    );
    let quiet_after = sent.elapsed();
    assert!(
        eventually(Duration::from_secs(5), || worker.app().count(&busy) >= 50).await,
        "the busy realm got {} of 50",
        worker.app().count(&busy)
    );
    assert_eq!(worker.app().count(&failing), 0);
    // The failing realm is visible with its reason, then its events are dead letters.
    let status = worker.status().await.unwrap();
    let row = status.realms.iter().find(|r| r.realm_id == failing).unwrap();
    assert!(row.depth > 0 || row.dead_letters > 0, "{row:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let letters = loop {
        let letters = worker.dead_letters().await.unwrap();
        if letters.len() == 600 || Instant::now() > deadline {
            break letters;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(letters.len(), 600, "dead letters");
    assert!(letters[0].reason.contains("401"), "{}", letters[0].reason);
    assert!(letters.iter().all(|l| l.event.realm_id == failing));
    // Retrying queues them again.
    assert_eq!(worker.retry_dead_letters(Some(&failing)).await.unwrap(), 600);
    let status = worker.status().await.unwrap();
    let row = status.realms.iter().find(|r| r.realm_id == failing).unwrap();
    assert_eq!((row.dead_letters, row.depth), (0, 600), "{row:?}");
    eprintln!("the quiet realm was applied {quiet_after:?} after its ingestion");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_tokens_are_refreshed_and_the_rotated_refresh_token_survives_a_restart() {
    let setup = Setup::new(1, Some(Duration::from_secs(2))).await;
    let realm = setup.realms[0].clone();
    let mut repair = setup.repair(&[0]);
    repair.credentials.insert(
        realm.clone(),
        RealmCredentials {
            access_token: Some(setup.access_token(0)),
            refresh_token: Some(setup.grants[0]["refresh_token"].as_str().unwrap().to_owned()),
        },
    );
    repair.oauth = Some(OAuthClient {
        client_id: setup.app["client_id"].as_str().unwrap().to_owned(),
        client_secret: setup.app["client_secret"].as_str().unwrap().to_owned(),
        token_url: format!("{}/oauth2/v1/tokens/bearer", setup.base),
    });
    let worker = Worker::new(setup.inbox.clone(), Copy::default(), Some(repair.clone()))
        .await
        .unwrap();
    for (round, id) in ["1", "2"].into_iter().enumerate() {
        // Past the access token's lifetime each time.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let name = format!("After expiry {round}");
        setup
            .ingest(
                &realm,
                json!([{"name": "Customer", "id": id, "operation": "Create", "data": {"DisplayName": name}}]),
            )
            .await;
        rounds_until(&worker, |copy| copy.body(&realm, id).is_some()).await;
        assert_eq!(worker.status().await.unwrap().realms[0].failures, 0);
    }
    // A restart configured with the first refresh token (now used up on the server)
    // continues with the rotated one it stored.
    let inbox = setup.reopen().await;
    let restarted = Worker::new(inbox, Copy::default(), Some(repair)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    setup
        .ingest(&realm, json!([{"name": "Customer", "id": "3", "operation": "Create", "data": {"DisplayName": "After restart"}}]))
        .await;
    rounds_until(&restarted, |copy| copy.body(&realm, "3").is_some()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backdated_lost_change_is_repaired_by_the_full_repair() {
    let setup = Setup::new(1, None).await;
    let realm = setup.realms[0].clone();
    let worker = Worker::new(setup.inbox.clone(), Copy::default(), Some(setup.repair(&[0])))
        .await
        .unwrap();
    setup
        .ingest(&realm, json!([customer("1", "Create", &second_now(), "First")]))
        .await;
    rounds_until(&worker, |copy| copy.body(&realm, "1").is_some()).await;
    // Stamped two days ago, and its notification lost (the endpoint is unsubscribed).
    let app_id = setup.app["id"].as_str().unwrap();
    let webhooks = format!("/api/v1/apps/{app_id}/webhooks/sandbox");
    let subscription = call(&setup.client, &setup.base, Method::GET, &webhooks, Value::Null).await;
    call(&setup.client, &setup.base, Method::DELETE, &webhooks, Value::Null).await;
    let two_days_ago =
        ledgerhook_domain::Timestamp(ledgerhook_domain::Timestamp::now().millis() - 2 * 86_400_000);
    setup
        .ingest(
            &realm,
            json!([customer("2", "Create", &two_days_ago.to_rfc3339(), "Backdated")]),
        )
        .await;
    let resubscribe = json!({"url": subscription["url"], "entities": "*"});
    call(&setup.client, &setup.base, Method::PUT, &webhooks, resubscribe).await;
    setup
        .ingest(&realm, json!([customer("3", "Create", &second_now(), "Next")]))
        .await;
    rounds_until(&worker, |copy| copy.body(&realm, "3").is_some()).await;
    // The next notification's repair looks back to the previous one only.
    assert!(worker.app().body(&realm, "2").is_none());
    let done = worker.repair_all().await.unwrap();
    assert_eq!(done.applied, 1, "{done:?}");
    assert_eq!(
        worker.app().body(&realm, "2").unwrap()["DisplayName"],
        "Backdated"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_chosen_entities_are_applied() {
    let setup = Setup::new(1, None).await;
    let realm = setup.realms[0].clone();
    let mut repair = setup.repair(&[0]);
    repair.entities = vec!["Invoice".into()];
    let options = WorkerOptions {
        entities: Some(vec!["Invoice".into()]),
        ..WorkerOptions::default()
    };
    let worker = Worker::with_options(setup.inbox.clone(), Copy::default(), Some(repair), options)
        .await
        .unwrap();
    setup
        .ingest(
            &realm,
            json!([
                {"name": "Customer", "id": "1", "operation": "Create", "data": {"DisplayName": "Not wanted"}},
                {"name": "Invoice", "id": "9", "operation": "Create", "data": {"TotalAmt": 10}}
            ]),
        )
        .await;
    rounds_until(&worker, |copy| copy.count(&realm) > 0).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    worker.run_once().await.unwrap();
    let applied: Vec<String> = worker
        .app()
        .applied
        .lock()
        .unwrap()
        .iter()
        .map(|c| c.event.entity.clone())
        .collect();
    assert_eq!(applied, ["Invoice"]);
}
