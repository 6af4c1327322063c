//! Crash safety of ingestion: SIGKILL the server while requests are in flight, restart
//! it, and check through CDC that every acknowledged event is there and every
//! unanswered request is wholly present or wholly absent.

use crate::support::{free_port, http, ServerProcess};
use ledgerhook_testkit::{Kind, TestDatabase};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const OPERATOR: &str = "crash-test-operator-token";
const CLIENTS: usize = 64;
const EVENTS_PER_REQUEST: usize = 5;

#[test]
fn sqlite_kill_during_ingestion_loses_nothing_acknowledged() {
    kill_during_ingestion(Kind::Sqlite);
}

#[test]
fn postgres_kill_during_ingestion_loses_nothing_acknowledged() {
    kill_during_ingestion(Kind::Postgres);
}

/// What became of one request.
struct Sent {
    request: usize,
    acknowledged: bool,
}

fn setup(base: &str) -> (String, String) {
    let client = http();
    let post = |path: &str, body: Value| -> Value {
        client
            .post(format!("{base}{path}"))
            .bearer_auth(OPERATOR)
            .json(&body)
            .send()
            .unwrap()
            .json()
            .unwrap()
    };
    let realm = post(
        "/api/v1/realms",
        json!({"name": "Crash Co", "environment": "production"}),
    );
    let realm_id = realm["id"].as_str().unwrap().to_owned();
    let app = post("/api/v1/apps", json!({"name": "Crash reader"}));
    let grant = post(
        &format!("/api/v1/apps/{}/connections", app["id"].as_str().unwrap()),
        json!({"realm_id": realm_id}),
    );
    (realm_id, grant["access_token"].as_str().unwrap().to_owned())
}

/// Every Customer id CDC knows, paging by `changedSince` (inclusive) over distinct times.
fn all_customer_ids(base: &str, realm_id: &str, token: &str, since: &str) -> HashSet<String> {
    let client = http();
    let mut ids = HashSet::new();
    let mut since = since.to_owned();
    loop {
        let url = format!(
            "{base}/v3/company/{realm_id}/cdc?entities=Customer&changedSince={}",
            since.replace('+', "%2B")
        );
        let body: Value = client.get(url).bearer_auth(token).send().unwrap().json().unwrap();
        let objects = body["CDCResponse"][0]["QueryResponse"][0]["Customer"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let before = ids.len();
        for object in &objects {
            ids.insert(object["Id"].as_str().unwrap().to_owned());
        }
        if objects.len() < 1000 || ids.len() == before {
            return ids;
        }
        since = objects.last().unwrap()["MetaData"]["LastUpdatedTime"]
            .as_str()
            .unwrap()
            .to_owned();
    }
}

fn kill_during_ingestion(kind: Kind) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let Some(db) = runtime.block_on(TestDatabase::new(kind)) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let envs = [("LEDGERHOOK_ADMIN_TOKEN", OPERATOR)];
    let server = ServerProcess::start(dir.path(), &db.url, &[], &envs);
    let base = server.base.clone();
    let (realm_id, token) = setup(&base);

    let start_ms = chrono::Utc::now().timestamp_millis() - 3_600_000;
    let clock = Arc::new(AtomicI64::new(start_ms));
    let next_request = Arc::new(AtomicUsize::new(0));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let results = Arc::new(Mutex::new(Vec::<Sent>::new()));
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (clock, next_request, in_flight, acknowledged, stop, results) = (
            clock.clone(),
            next_request.clone(),
            in_flight.clone(),
            acknowledged.clone(),
            stop.clone(),
            results.clone(),
        );
        let url = format!("{base}/api/v1/realms/{realm_id}/events");
        clients.push(std::thread::spawn(move || {
            let client = http();
            while !stop.load(Ordering::SeqCst) {
                let request = next_request.fetch_add(1, Ordering::SeqCst);
                let events: Vec<Value> = (0..EVENTS_PER_REQUEST)
                    .map(|i| {
                        let at = ledgerhook_domain::Timestamp(clock.fetch_add(1, Ordering::SeqCst));
                        json!({"name": "Customer", "id": format!("r{request}-{i}"), "operation": "Create",
                               "lastUpdated": at.to_rfc3339(), "data": {"DisplayName": format!("request {request}")}})
                    })
                    .collect();
                in_flight.fetch_add(1, Ordering::SeqCst);
                let answer = client.post(&url).bearer_auth(OPERATOR).json(&events).send();
                in_flight.fetch_sub(1, Ordering::SeqCst);
                let ok = matches!(&answer, Ok(r) if r.status() == 202);
                results.lock().unwrap().push(Sent { request, acknowledged: ok });
                if !ok {
                    return;
                }
                acknowledged.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while acknowledged.load(Ordering::SeqCst) < 300 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let in_flight_at_kill = in_flight.load(Ordering::SeqCst);
    server.kill();
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.join().unwrap();
    }
    assert!(
        in_flight_at_kill >= 50,
        "only {in_flight_at_kill} requests were in flight at the kill"
    );

    let server = ServerProcess::start(dir.path(), &db.url, &[], &envs);
    let since = ledgerhook_domain::Timestamp(start_ms - 1000).to_rfc3339();
    let stored = all_customer_ids(&server.base, &realm_id, &token, &since);
    let results = results.lock().unwrap();
    let (mut acked, mut unanswered_present, mut unanswered_absent) = (0, 0, 0);
    for sent in results.iter() {
        let present = (0..EVENTS_PER_REQUEST)
            .filter(|i| stored.contains(&format!("r{}-{i}", sent.request)))
            .count();
        if sent.acknowledged {
            assert_eq!(
                present, EVENTS_PER_REQUEST,
                "acknowledged request {} lost events",
                sent.request
            );
            acked += 1;
        } else {
            assert!(
                present == 0 || present == EVENTS_PER_REQUEST,
                "request {} is partly stored ({present} of 5)",
                sent.request
            );
            if present == 0 {
                unanswered_absent += 1;
            } else {
                unanswered_present += 1;
            }
        }
    }
    eprintln!(
        "{kind:?}: {acked} acknowledged, {in_flight_at_kill} in flight at the kill: {unanswered_present} stored, {unanswered_absent} not"
    );
    assert!(acked >= 300);
}

/// An injected delay is stored with its notification: after a kill -9 and a restart the
/// notification is still held back until `delay_by` after it was made, then delivered.
#[test]
fn an_injected_delay_survives_a_restart() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let db = TestDatabase::sqlite();
    let port = free_port();
    let args = [
        "--allow-http",
        "--allow-private-networks",
        "--sandbox-batch-window",
        "0s",
        "--listen",
    ];
    let listen = format!("127.0.0.1:{port}");
    let start = || {
        let mut all: Vec<&str> = args.to_vec();
        all.push(&listen);
        ServerProcess::start(
            dir.path(),
            &db.url,
            &all,
            &[("LEDGERHOOK_ADMIN_TOKEN", "delay-test-token")],
        )
    };
    // A receiver that records when each request arrived.
    let hook = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hook_port = hook.local_addr().unwrap().port();
    let arrivals = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = arrivals.clone();
    std::thread::spawn(move || {
        for mut stream in hook.incoming().flatten() {
            let mut buffer = [0u8; 65536];
            let _ = stream.read(&mut buffer);
            sink.lock().unwrap().push(std::time::SystemTime::now());
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    let server = start();
    let call =
        |base: &str, method: reqwest::Method, path: &str, body: serde_json::Value| -> serde_json::Value {
            http()
                .request(method, format!("{base}{path}"))
                .bearer_auth("delay-test-token")
                .json(&body)
                .send()
                .unwrap()
                .json()
                .unwrap_or_default()
        };
    let base = server.base.clone();
    let app = call(
        &base,
        reqwest::Method::POST,
        "/api/v1/apps",
        serde_json::json!({"name": "Delayed"}),
    );
    let app_id = app["id"].as_str().unwrap().to_owned();
    let realm = call(
        &base,
        reqwest::Method::POST,
        "/api/v1/realms",
        serde_json::json!({"name": "R", "environment": "sandbox"}),
    );
    let realm = realm["id"].as_str().unwrap().to_owned();
    call(
        &base,
        reqwest::Method::POST,
        &format!("/api/v1/apps/{app_id}/connections"),
        serde_json::json!({"realm_id": realm}),
    );
    let config = serde_json::json!({"url": format!("http://127.0.0.1:{hook_port}/hook"), "entities": "*",
                                    "faults": {"delay": 1.0, "delay_by": "4s"}});
    call(
        &base,
        reqwest::Method::PUT,
        &format!("/api/v1/apps/{app_id}/webhooks/sandbox"),
        config,
    );
    let made = std::time::SystemTime::now();
    call(
        &base,
        reqwest::Method::POST,
        &format!("/api/v1/realms/{realm}/events"),
        serde_json::json!([{"name": "Customer", "id": "1", "operation": "Create"}]),
    );
    std::thread::sleep(Duration::from_millis(500));
    server.kill();
    let server = start();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while arrivals.lock().unwrap().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "never delivered after the restart"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let waited = arrivals.lock().unwrap()[0].duration_since(made).unwrap();
    assert!(
        waited >= Duration::from_millis(3900),
        "delivered {waited:?} after it was made"
    );
    let list = call(
        &server.base,
        reqwest::Method::GET,
        &format!("/api/v1/apps/{app_id}/notifications"),
        serde_json::Value::Null,
    );
    assert_eq!(list["data"][0]["faults"], serde_json::json!(["delay"]));
}
