//! Convergence: `ledgerhook serve` (short retry schedule) delivers through a hop that
//! drops, fails after forwarding, delays past the timeout, holds back (reorders) and
//! duplicates requests, to `ledgerhook relay`, which forwards every change to a test app;
//! or, in the second run, to `ledgerhook mirror`. Random creates, updates (several within
//! one second), deletes, merges, voids and backdated changes over three realms. The
//! receiver is SIGKILLed once mid-run (and the relay's app crashes once). At the end
//! the app's record equals the server's CDC, no change reached it twice under
//! different ids, and per entity it saw changes in order; the mirror's `--verify` passes.
//!
//! The seed is `LEDGERHOOK_TEST_SEED` (default 42); `LEDGERHOOK_TEST_CONVERGENCE_STEPS`
//! sets the number of ingestion steps (default 120) for longer soaks.

use crate::support::{binary, free_port, ServerProcess};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use ledgerhook_testkit::TestDatabase;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const OPERATOR: &str = "convergence-operator-token";
const FORWARD_SECRET: &str = "whsec_Y29udmVyZ2VuY2UtdGVzdC1mb3J3YXJkLXNlY3JldA==";

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// The faulty hop between the server and the receiver.
struct Hop {
    target: String,
    client: reqwest::Client,
    rng: Mutex<Rng>,
    faulty: AtomicBool,
    faults: AtomicU64,
    requests: AtomicU64,
    /// Notifications (by `webhook-id`) that fail on every attempt: lost for good.
    doomed: Mutex<HashMap<String, bool>>,
}

async fn forward(hop: &Hop, headers: &HeaderMap, body: &Bytes) -> Option<StatusCode> {
    let mut request = hop.client.post(&hop.target).body(body.clone());
    for name in [
        "content-type",
        "intuit-signature",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
    ] {
        if let Some(value) = headers.get(name) {
            request = request.header(name, value.as_bytes());
        }
    }
    let response = request.send().await.ok()?;
    StatusCode::from_u16(response.status().as_u16()).ok()
}

async fn hop_handler(State(hop): State<Arc<Hop>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    if !hop.faulty.load(Ordering::Relaxed) {
        return forward(&hop, &headers, &body)
            .await
            .unwrap_or(StatusCode::BAD_GATEWAY);
    }
    hop.requests.fetch_add(1, Ordering::Relaxed);
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let doomed = *hop
        .doomed
        .lock()
        .unwrap()
        .entry(id)
        .or_insert_with(|| hop.rng.lock().unwrap().chance(8));
    let roll = hop.rng.lock().unwrap().below(100);
    let fault = match roll {
        _ if doomed => "drop",
        0..=14 => "drop",
        15..=24 => "fail-after-forwarding",
        25..=29 => "delay-past-timeout",
        30..=35 => "hold-back",
        36..=41 => "duplicate",
        _ => "none",
    };
    if fault != "none" {
        hop.faults.fetch_add(1, Ordering::Relaxed);
    }
    match fault {
        "drop" => StatusCode::INTERNAL_SERVER_ERROR,
        "fail-after-forwarding" => {
            forward(&hop, &headers, &body).await;
            StatusCode::INTERNAL_SERVER_ERROR
        }
        "delay-past-timeout" => {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            forward(&hop, &headers, &body)
                .await
                .unwrap_or(StatusCode::BAD_GATEWAY)
        }
        "hold-back" => {
            // Answered at once, passed on later: newer notifications overtake it.
            let later = hop.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(700)).await;
                forward(&later, &headers, &body).await;
            });
            StatusCode::OK
        }
        "duplicate" => {
            let first = forward(&hop, &headers, &body).await;
            forward(&hop, &headers, &body).await;
            first.unwrap_or(StatusCode::BAD_GATEWAY)
        }
        _ => forward(&hop, &headers, &body)
            .await
            .unwrap_or(StatusCode::BAD_GATEWAY),
    }
}

/// What the app holds of one entity, and every version it was sent.
#[derive(Clone, Debug, Default)]
struct Held {
    last_updated: String,
    sync_token: Option<String>,
    deleted: bool,
    versions: Vec<(i64, i64)>,
}

/// (realm, entity, id, lastUpdated, SyncToken) of a change.
type ChangeKey = (String, String, String, i64, i64);

/// The relay's app: verifies each request, applies each change id once.
#[derive(Default)]
struct App {
    seen: Mutex<HashMap<String, ChangeKey>>,
    entities: Mutex<BTreeMap<(String, String, String), Held>>,
    redelivered: AtomicU64,
    problems: Mutex<Vec<String>>,
}

fn version_of(change: &Value) -> (i64, i64) {
    let at = ledgerhook_domain::Timestamp::parse(change["lastUpdated"].as_str().unwrap_or_default())
        .map(|t| t.millis())
        .unwrap_or_default();
    let token = change["entity"]["SyncToken"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or(-1);
    (at, token)
}

async fn app_handler(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (id, timestamp, signature) = (
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
    );
    let key = ledgerhook_signing::StandardKey::parse(FORWARD_SECRET).unwrap();
    if !key.verifies(&id, &timestamp, &body, &signature) {
        app.problems
            .lock()
            .unwrap()
            .push(format!("bad signature on {id}"));
        return StatusCode::UNAUTHORIZED;
    }
    let change: Value = serde_json::from_slice(&body).unwrap();
    let realm = change["realmId"].as_str().unwrap().to_owned();
    let entity = change["name"].as_str().unwrap().to_owned();
    let entity_id = change["id"].as_str().unwrap().to_owned();
    let version = version_of(&change);
    let mut seen = app.seen.lock().unwrap();
    if seen.contains_key(&id) {
        app.redelivered.fetch_add(1, Ordering::Relaxed);
        return StatusCode::OK;
    }
    let key = (
        realm.clone(),
        entity.clone(),
        entity_id.clone(),
        version.0,
        version.1,
    );
    if let Some((other, ..)) = seen
        .iter()
        .find(|(_, v)| **v == key)
        .map(|(k, v)| (k.clone(), v.clone()))
    {
        app.problems
            .lock()
            .unwrap()
            .push(format!("{key:?} sent as {id} and as {other}"));
    }
    seen.insert(id, key);
    let mut entities = app.entities.lock().unwrap();
    let held = entities
        .entry((realm.clone(), entity.clone(), entity_id.clone()))
        .or_default();
    if held.versions.last().is_some_and(|last| *last >= version) {
        app.problems.lock().unwrap().push(format!(
            "{realm} {entity} {entity_id}: {version:?} after {:?}",
            held.versions.last()
        ));
    }
    held.versions.push(version);
    held.last_updated = change["lastUpdated"].as_str().unwrap().to_owned();
    held.sync_token = change["entity"]["SyncToken"].as_str().map(str::to_owned);
    held.deleted = change["entity"].is_null();
    if let (Some("Merge"), Some(loser)) = (change["operation"].as_str(), change["deletedId"].as_str()) {
        let loser = entities.entry((realm, entity, loser.to_owned())).or_default();
        loser.deleted = true;
    }
    StatusCode::OK
}

/// Serves `router` on `port` until the returned handle is aborted.
async fn serve_on(port: u16, router: Router) -> tokio::task::JoinHandle<()> {
    let listener = loop {
        match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
            Ok(listener) => break listener,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    })
}

/// The server's API, as the operator.
#[derive(Clone)]
struct Api {
    base: String,
    client: reqwest::Client,
}

impl Api {
    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let response = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(OPERATOR)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{path}: {status} {body}");
        body
    }

    /// Every Customer and Invoice CDC reports for `realm`, by (entity, id).
    async fn cdc(&self, realm: &str, token: &str) -> BTreeMap<(String, String), Value> {
        let since =
            ledgerhook_domain::Timestamp(ledgerhook_domain::Timestamp::now().millis() - 29 * 86_400_000);
        let answer: Value = self
            .client
            .get(format!("{}/v3/company/{realm}/cdc", self.base))
            .bearer_auth(token)
            .header("accept", "application/json")
            .query(&[
                ("entities", "Customer,Invoice"),
                ("changedSince", &since.to_rfc3339()),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let mut objects = BTreeMap::new();
        for response in answer["CDCResponse"][0]["QueryResponse"].as_array().unwrap() {
            for (entity, list) in response.as_object().unwrap() {
                for object in list.as_array().into_iter().flatten() {
                    objects.insert(
                        (entity.clone(), object["Id"].as_str().unwrap().to_owned()),
                        object.clone(),
                    );
                }
            }
        }
        objects
    }
}

/// The differences between the app's record of `realm` and the server's CDC.
fn differences(app: &App, realm: &str, cdc: &BTreeMap<(String, String), Value>) -> Vec<String> {
    let entities = app.entities.lock().unwrap();
    let mut found = Vec::new();
    for ((entity, id), object) in cdc {
        let name = format!("{realm} {entity} {id}");
        let Some(held) = entities.get(&(realm.to_owned(), entity.clone(), id.clone())) else {
            found.push(format!("{name}: never reached the app"));
            continue;
        };
        if object["status"] == "Deleted" {
            if !held.deleted {
                found.push(format!("{name}: deleted on the server, present in the app"));
            }
            continue;
        }
        let at = |t: &str| ledgerhook_domain::Timestamp::parse(t).map(|t| t.millis()).ok();
        let server_at = at(object["MetaData"]["LastUpdatedTime"].as_str().unwrap_or_default());
        if held.deleted
            || at(&held.last_updated) != server_at
            || held.sync_token.as_deref() != object["SyncToken"].as_str()
        {
            found.push(format!(
                "{name}: the app has {} SyncToken {:?} deleted {}, the server {} SyncToken {}",
                held.last_updated,
                held.sync_token,
                held.deleted,
                object["MetaData"]["LastUpdatedTime"],
                object["SyncToken"]
            ));
        }
    }
    for ((held_realm, entity, id), held) in entities.iter() {
        if held_realm == realm && !held.deleted && !cdc.contains_key(&(entity.clone(), id.clone())) {
            found.push(format!("{realm} {entity} {id}: in the app, not on the server"));
        }
    }
    found
}

/// The ingestion side: a model of which entities exist, and random changes to them.
struct Changes {
    rng: Rng,
    alive: HashMap<(usize, &'static str, u64), bool>,
}

impl Changes {
    /// A batch of one to three events for one realm.
    fn next(&mut self, realms: usize) -> (usize, Value) {
        let realm = self.rng.below(realms as u64) as usize;
        let entity = if self.rng.chance(60) {
            "Customer"
        } else {
            "Invoice"
        };
        let id = 1 + self.rng.below(12);
        let alive = *self.alive.get(&(realm, entity, id)).unwrap_or(&false);
        let data = |rng: &mut Rng| match entity {
            "Customer" => json!({"DisplayName": format!("C{}", rng.below(1000))}),
            _ => json!({"TotalAmt": rng.below(1000)}),
        };
        let now = ledgerhook_domain::Timestamp::now().millis();
        let event = |operation: &str, rng: &mut Rng| json!({"name": entity, "id": id.to_string(), "operation": operation, "data": data(rng)});
        let events = if !alive {
            self.alive.insert((realm, entity, id), true);
            let mut create = event("Create", &mut self.rng);
            if self.rng.chance(20) {
                // Backdated ten minutes: older than what was already sent.
                create["lastUpdated"] = json!(ledgerhook_domain::Timestamp(now - 600_000).to_rfc3339());
            }
            vec![create]
        } else {
            match self.rng.below(100) {
                0..=9 => {
                    self.alive.insert((realm, entity, id), false);
                    vec![json!({"name": entity, "id": id.to_string(), "operation": "Delete"})]
                }
                10..=19 if entity == "Customer" => {
                    let loser = 1 + self.rng.below(12);
                    if loser == id || !self.alive.get(&(realm, entity, loser)).copied().unwrap_or(false) {
                        vec![event("Update", &mut self.rng)]
                    } else {
                        self.alive.insert((realm, entity, loser), false);
                        let mut merge = event("Merge", &mut self.rng);
                        merge["deletedId"] = json!(loser.to_string());
                        vec![merge]
                    }
                }
                10..=19 => vec![event("Void", &mut self.rng)],
                20..=39 => {
                    // Several changes within one second, with the same lastUpdated.
                    let second = ledgerhook_domain::Timestamp(now - now % 1000).to_rfc3339();
                    (0..2 + self.rng.below(2))
                        .map(|_| {
                            let mut update = event("Update", &mut self.rng);
                            update["lastUpdated"] = json!(second);
                            update
                        })
                        .collect()
                }
                _ => vec![event("Update", &mut self.rng)],
            }
        };
        (realm, Value::Array(events))
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Receiver {
    Relay,
    Mirror,
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn converge(receiver: Receiver) {
    let seed = env_number("LEDGERHOOK_TEST_SEED", 42);
    let steps = env_number("LEDGERHOOK_TEST_CONVERGENCE_STEPS", 120);
    eprintln!("convergence: seed {seed}, {steps} steps");
    let dir = tempfile::tempdir().unwrap();
    let db = TestDatabase::sqlite();
    let server = ServerProcess::start(
        dir.path(),
        &db.url,
        &[
            "--allow-http",
            "--allow-private-networks",
            "--sandbox-batch-window",
            "0s",
            "--retry-schedule",
            "1s,1s,1s",
            "--delivery-timeout",
            "1s",
        ],
        &[("LEDGERHOOK_ADMIN_TOKEN", OPERATOR)],
    );
    let api = Api {
        base: server.base.clone(),
        client: reqwest::Client::new(),
    };
    use reqwest::Method;
    let app = api
        .call(Method::POST, "/api/v1/apps", json!({"name": "Converging"}))
        .await;
    let app_id = app["id"].as_str().unwrap().to_owned();
    let mut realms = Vec::new();
    for i in 0..3 {
        let realm = api
            .call(
                Method::POST,
                "/api/v1/realms",
                json!({"name": format!("R{i}"), "environment": "sandbox"}),
            )
            .await;
        let realm = realm["id"].as_str().unwrap().to_owned();
        let grant = api
            .call(
                Method::POST,
                &format!("/api/v1/apps/{app_id}/connections"),
                json!({"realm_id": realm}),
            )
            .await;
        realms.push((realm, grant["access_token"].as_str().unwrap().to_owned()));
    }
    let (receiver_port, hop_port, app_port) = (free_port(), free_port(), free_port());
    let hop = Arc::new(Hop {
        target: format!("http://127.0.0.1:{receiver_port}/hook"),
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap(),
        rng: Mutex::new(Rng(seed ^ 0x9E37_79B9_7F4A_7C15)),
        faulty: AtomicBool::new(true),
        faults: AtomicU64::new(0),
        requests: AtomicU64::new(0),
        doomed: Mutex::new(HashMap::new()),
    });
    let _hop_server = serve_on(
        hop_port,
        Router::new()
            .route("/hook", post(hop_handler))
            .with_state(hop.clone()),
    )
    .await;
    let record = Arc::new(App::default());
    let app_router = || {
        Router::new()
            .route("/app", post(app_handler))
            .with_state(record.clone())
    };
    let mut app_server = serve_on(app_port, app_router()).await;
    let webhooks = format!("/api/v1/apps/{app_id}/webhooks/sandbox");
    api.call(
        Method::PUT,
        &webhooks,
        json!({"url": format!("http://127.0.0.1:{hop_port}/hook"), "entities": "*"}),
    )
    .await;

    let data = dir.path().join("receiver");
    let data = data.to_str().unwrap().to_owned();
    let listen = format!("127.0.0.1:{receiver_port}");
    let mut args: Vec<String> = match receiver {
        Receiver::Relay => vec![
            "relay".into(),
            "--forward-to".into(),
            format!("http://127.0.0.1:{app_port}/app"),
            "--forward-secret".into(),
            FORWARD_SECRET.into(),
        ],
        Receiver::Mirror => vec!["mirror".into()],
    };
    args.extend(
        [
            "--data",
            &data,
            "--server",
            &server.base,
            "--listen",
            &listen,
            "--path",
            "/hook",
            "--verifier-token",
            app["verifier_token"].as_str().unwrap(),
            "--entities",
            "Customer,Invoice",
            "--look-back-margin",
            "1s",
            "--retry-cap",
            "1s",
        ]
        .map(String::from),
    );
    for (realm, token) in &realms {
        args.extend(["--realm".to_owned(), format!("{realm}={token}")]);
    }
    let start_receiver = || {
        let mut cmd = binary();
        cmd.current_dir(dir.path()).args(&args);
        ServerProcess::spawn(cmd)
            .unwrap_or_else(|(status, err)| panic!("the receiver did not start ({status:?}):\n{err}"))
    };
    let mut receiver_process = start_receiver();

    // Reactivates the configuration whenever the retries blacklist it.
    let reactivator = {
        let api = api.clone();
        let webhooks = webhooks.clone();
        tokio::spawn(async move {
            loop {
                let config = api.call(Method::GET, &webhooks, Value::Null).await;
                if config["state"] != "active" {
                    api.call(Method::POST, &format!("{webhooks}/reactivate"), json!({}))
                        .await;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
    };
    let mut changes = Changes {
        rng: Rng(seed),
        alive: HashMap::new(),
    };
    for step in 0..steps {
        let (realm, events) = changes.next(realms.len());
        api.call(
            Method::POST,
            &format!("/api/v1/realms/{}/events", realms[realm].0),
            events,
        )
        .await;
        tokio::time::sleep(Duration::from_millis(30 + changes.rng.below(50))).await;
        if step == steps * 2 / 5 {
            receiver_process.kill();
            tokio::time::sleep(Duration::from_millis(500)).await;
            receiver_process = start_receiver();
        }
        if step == steps * 7 / 10 && receiver == Receiver::Relay {
            app_server.abort();
            tokio::time::sleep(Duration::from_millis(700)).await;
            app_server = serve_on(app_port, app_router()).await;
        }
    }
    // The network heals; the last retries run out; one more change per realm, and a
    // full repair for what was lost for good with an older lastUpdated.
    hop.faulty.store(false, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(4)).await;
    for (realm, _) in &realms {
        let end =
            json!([{"name": "Customer", "id": "end", "operation": "Create", "data": {"DisplayName": "End"}}]);
        api.call(Method::POST, &format!("/api/v1/realms/{realm}/events"), end)
            .await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let faults = hop.faults.load(Ordering::Relaxed);
    let requests = hop.requests.load(Ordering::Relaxed);
    let lost = hop.doomed.lock().unwrap().values().filter(|d| **d).count();
    eprintln!("convergence: while faulty the hop saw {requests} requests, faulted {faults}, lost {lost} notifications on every attempt");
    match receiver {
        Receiver::Relay => {
            let repaired = reqwest::Client::new()
                .post(format!("http://{listen}/repair"))
                .send()
                .await
                .unwrap();
            assert_eq!(repaired.status(), 202);
            let deadline = Instant::now() + Duration::from_secs(40);
            loop {
                let mut found = Vec::new();
                for (realm, token) in &realms {
                    found.extend(differences(&record, realm, &api.cdc(realm, token).await));
                }
                if found.is_empty() {
                    break;
                }
                let status: Value = reqwest::get(format!("http://{listen}/status"))
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                assert!(
                    Instant::now() < deadline,
                    "the app did not converge: {found:#?}\nrelay status: {status}"
                );
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            let problems = record.problems.lock().unwrap().clone();
            assert!(problems.is_empty(), "{problems:#?}");
            let entities = record.entities.lock().unwrap().len();
            eprintln!(
                "convergence: {entities} entities equal; {} changes received again after a 2xx (same webhook-id)",
                record.redelivered.load(Ordering::Relaxed)
            );
            let status: Value = reqwest::get(format!("http://{listen}/status"))
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(status["dead_letters"], 0, "{status}");
        }
        Receiver::Mirror => {
            let pid = receiver_process.pid().to_string();
            assert!(std::process::Command::new("kill")
                .args(["-USR1", &pid])
                .status()
                .unwrap()
                .success());
            tokio::time::sleep(Duration::from_secs(3)).await;
            assert!(receiver_process.terminate().success());
            let mut verify = binary();
            verify.current_dir(dir.path()).args(&args).arg("--verify");
            let out = verify.output().unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            eprintln!("convergence: {stdout}");
        }
    }
    reactivator.abort();
    assert!(
        faults * 100 >= requests * 25,
        "only {faults} of {requests} requests faulted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_relay_converges_through_a_faulty_network_and_crashes() {
    converge(Receiver::Relay).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_mirror_converges_through_a_faulty_network_and_a_crash() {
    converge(Receiver::Mirror).await;
}
