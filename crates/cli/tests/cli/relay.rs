//! `ledgerhook relay`'s own routes against the real binaries: a realm whose app refuses
//! shows as failing with the app's answer, its changes end as dead letters after
//! `--max-tries`, and `POST /dead-letters/retry` delivers them once the app is back.

use crate::support::{binary, free_port, http, ServerProcess};
use ledgerhook_testkit::TestDatabase;
use reqwest::Method;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const OPERATOR: &str = "relay-test-operator-token";

fn call(base: &str, method: Method, path: &str, body: Value) -> Value {
    crate::support::call(base, OPERATOR, method, path, body)
}

/// An app answering `status` (changeable), recording every body it accepts.
fn app(port: u16, status: Arc<AtomicU16>, got: Arc<Mutex<Vec<Value>>>) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(("127.0.0.1", port)))
        .unwrap();
    std::thread::spawn(move || {
        runtime.block_on(async move {
            let router = axum::Router::new().route(
                "/changes",
                axum::routing::post(move |body: axum::body::Bytes| {
                    let (status, got) = (status.clone(), got.clone());
                    async move {
                        let code = status.load(Ordering::SeqCst);
                        if code == 200 {
                            got.lock().unwrap().push(serde_json::from_slice(&body).unwrap());
                        }
                        axum::http::StatusCode::from_u16(code).unwrap()
                    }
                }),
            );
            let _ = axum::serve(listener, router).await;
        })
    });
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_refusing_app_shows_as_failing_then_dead_letters_are_retried() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDatabase::sqlite();
    let server = ServerProcess::start_loopback(dir.path(), &db.url, OPERATOR);
    let base = server.base.clone();
    let created = call(&base, Method::POST, "/api/v1/apps", json!({"name": "Relayed"}));
    let app_id = created["id"].as_str().unwrap().to_owned();
    let realm = call(
        &base,
        Method::POST,
        "/api/v1/realms",
        json!({"name": "R", "environment": "sandbox"}),
    );
    let realm = realm["id"].as_str().unwrap().to_owned();
    let grant = call(
        &base,
        Method::POST,
        &format!("/api/v1/apps/{app_id}/connections"),
        json!({"realm_id": realm}),
    );
    let status = Arc::new(AtomicU16::new(500));
    let got = Arc::new(Mutex::new(Vec::new()));
    let app_port = free_port();
    app(app_port, status.clone(), got.clone());
    let relay_port = free_port();
    let listen = format!("127.0.0.1:{relay_port}");
    let mut cmd = binary();
    cmd.current_dir(dir.path()).args([
        "relay",
        "--server",
        &base,
        "--listen",
        &listen,
        "--data",
        "relay",
        "--entities",
        "Customer",
        "--verifier-token",
        created["verifier_token"].as_str().unwrap(),
        "--realm",
        &format!("{realm}={}", grant["access_token"].as_str().unwrap()),
        "--forward-to",
        &format!("http://127.0.0.1:{app_port}/changes"),
        "--max-tries",
        "3",
        "--retry-cap",
        "200ms",
    ]);
    let _relay =
        ServerProcess::spawn(cmd).unwrap_or_else(|(s, e)| panic!("relay did not start ({s:?}): {e}"));
    let relay = format!("http://{listen}");
    call(
        &base,
        Method::PUT,
        &format!("/api/v1/apps/{app_id}/webhooks/sandbox"),
        json!({"url": format!("{relay}/webhooks"), "entities": "*"}),
    );
    let events =
        json!([{"name": "Customer", "id": "7", "operation": "Create", "data": {"DisplayName": "Ada"}}]);
    call(
        &base,
        Method::POST,
        &format!("/api/v1/realms/{realm}/events"),
        events,
    );
    let status_of = || -> Value {
        http()
            .get(format!("{relay}/status"))
            .send()
            .unwrap()
            .json()
            .unwrap()
    };
    // Failing, with the app's answer as the reason...
    wait_until("the realm never showed as failing", || {
        status_of()["failing_realms"] == json!([realm])
    });
    let shown = status_of();
    let row = &shown["realms"][0];
    assert_eq!(row["realm_id"], realm.as_str());
    assert!(
        row["last_error"]
            .as_str()
            .unwrap()
            .contains("the app answered 500"),
        "{shown}"
    );
    assert!(
        row["retry_at"].is_string() && row["failures"].as_i64().unwrap() >= 1,
        "{shown}"
    );
    // ...then, after three tries, a dead letter with that reason.
    wait_until("no dead letter", || status_of()["dead_letters"] == 1);
    let letters: Value = http()
        .get(format!("{relay}/dead-letters"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let letter = &letters["data"][0];
    assert_eq!(
        (
            letter["realm_id"].as_str(),
            letter["name"].as_str(),
            letter["id"].as_str()
        ),
        (Some(realm.as_str()), Some("Customer"), Some("7"))
    );
    assert!(letter["reason"].as_str().unwrap().contains("500"), "{letters}");
    assert!(got.lock().unwrap().is_empty());
    // The app is back; retrying delivers the change, once, with its CDC body.
    status.store(200, Ordering::SeqCst);
    let retried: Value = http()
        .post(format!("{relay}/dead-letters/retry?realm={realm}"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(retried["queued"], 1);
    wait_until("the retried change never reached the app", || {
        !got.lock().unwrap().is_empty()
    });
    let change = got.lock().unwrap()[0].clone();
    assert_eq!(change["realmId"], realm.as_str());
    assert_eq!(
        (
            change["name"].as_str(),
            change["id"].as_str(),
            change["operation"].as_str()
        ),
        (Some("Customer"), Some("7"), Some("Create"))
    );
    assert_eq!(change["entity"]["DisplayName"], "Ada");
    wait_until("still failing", || {
        let now = status_of();
        now["failing_realms"] == json!([]) && now["dead_letters"] == 0 && now["realms"][0]["depth"] == 0
    });
    assert!(status_of()["realms"][0]["last_applied"].is_string());
    let repair = http().post(format!("{relay}/repair")).send().unwrap();
    assert_eq!(repair.status(), 202);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(got.lock().unwrap().len(), 1, "a repair re-sent an applied change");
}

#[test]
fn relay_refuses_bad_options() {
    let out = binary()
        .args(["relay", "--forward-to", "ftp://x", "--verifier-token", "v"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--forward-to: expected an http:// or https:// URL")
    );
    let out = binary().args(["relay"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "--forward-to is required");
    let out = binary()
        .args([
            "relay",
            "--forward-to",
            "http://127.0.0.1:9/x",
            "--forward-secret",
            "nope",
            "--verifier-token",
            "v",
        ])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--forward-secret"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
