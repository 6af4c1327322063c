//! `ledgerhook listen` receiving from `ledgerhook serve`, both the real binary: one line
//! per event (no colour when piped), `--json`, a bad signature refused with `401`,
//! `--forward-to` passing the bytes and headers on and the app's answer back, Ctrl-C
//! exiting 0.

use crate::support::{binary, free_port, http, ServerProcess};
use ledgerhook_testkit::TestDatabase;
use reqwest::Method;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const OPERATOR: &str = "listen-test-operator-token";

/// What the app got: body, `intuit-signature`, `webhook-id`.
type Forwarded = (Vec<u8>, Option<String>, Option<String>);

/// A running `ledgerhook listen` whose stdout lines are collected.
struct Listening {
    child: Child,
    url: String,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Listening {
    fn start(args: &[&str]) -> Listening {
        let port = free_port();
        let mut child = binary()
            .args(["listen", "--listen", &format!("127.0.0.1:{port}")])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let mut banner = stderr.lines();
        let url = loop {
            let line = banner.next().expect("listen exited").unwrap();
            if let Some(url) = line.strip_prefix("ledgerhook: listening on ") {
                break url.to_owned();
            }
        };
        std::thread::spawn(move || for _ in banner {});
        Listening { child, url, lines }
    }

    /// Waits until `count` lines were printed; answers them.
    fn wait_lines(&self, count: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let lines = self.lines.lock().unwrap().clone();
            if lines.len() >= count {
                return lines;
            }
            assert!(Instant::now() < deadline, "only {lines:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Ctrl-C, and the exit status.
    fn interrupt(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        assert!(std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "listen did not stop on Ctrl-C");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    _db: TestDatabase,
    server: ServerProcess,
    app: Value,
    realm: String,
}

fn call(base: &str, method: Method, path: &str, body: Value) -> Value {
    crate::support::call(base, OPERATOR, method, path, body)
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let db = TestDatabase::sqlite();
        let server = ServerProcess::start_loopback(dir.path(), &db.url, OPERATOR);
        let base = server.base.clone();
        let app = call(&base, Method::POST, "/api/v1/apps", json!({"name": "Listening"}));
        let realm = call(
            &base,
            Method::POST,
            "/api/v1/realms",
            json!({"name": "R", "environment": "sandbox"}),
        );
        let realm = realm["id"].as_str().unwrap().to_owned();
        let app_id = app["id"].as_str().unwrap();
        call(
            &base,
            Method::POST,
            &format!("/api/v1/apps/{app_id}/connections"),
            json!({"realm_id": realm}),
        );
        Setup {
            _dir: dir,
            _db: db,
            server,
            app,
            realm,
        }
    }

    fn subscribe(&self, url: &str, format: &str) {
        let app_id = self.app["id"].as_str().unwrap();
        let body = json!({"url": url, "entities": "*", "format": format});
        call(
            &self.server.base,
            Method::PUT,
            &format!("/api/v1/apps/{app_id}/webhooks/sandbox"),
            body,
        );
    }

    fn customer(&self, id: &str, operation: &str) {
        let events = json!([{"name": "Customer", "id": id, "operation": operation}]);
        call(
            &self.server.base,
            Method::POST,
            &format!("/api/v1/realms/{}/events", self.realm),
            events,
        );
    }

    fn secret(&self, name: &str) -> String {
        self.app[name].as_str().unwrap().to_owned()
    }
}

#[test]
fn listen_prints_each_verified_event_and_refuses_bad_signatures() {
    let setup = Setup::new();
    let (token, secret) = (setup.secret("verifier_token"), setup.secret("signing_secret"));
    let listening = Listening::start(&["--verifier-token", &token, "--signing-secret", &secret]);
    assert!(listening.url.ends_with("/webhooks"), "{}", listening.url);
    setup.subscribe(&listening.url, "legacy");
    setup.customer("58", "Create");
    let line = &listening.wait_lines(1)[0];
    for part in [setup.realm.as_str(), "Customer 58", "Create", "lastUpdated 20"] {
        assert!(line.contains(part), "{part:?} not in {line:?}");
    }
    assert!(!line.contains('\x1b'), "colour when piped: {line:?}");
    // A forged notification is printed as refused and answered 401.
    let forged = http()
        .post(&listening.url)
        .header("content-type", "application/json")
        .header("intuit-signature", "AAAA")
        .body(r#"{"eventNotifications":[]}"#)
        .send()
        .unwrap();
    assert_eq!(forged.status(), 401);
    let refused = &listening.wait_lines(2)[1];
    assert!(
        refused.contains("refused") && refused.contains("intuit-signature"),
        "{refused}"
    );
    assert!(listening.interrupt().success(), "Ctrl-C exits 0");
}

#[test]
fn listen_json_and_forward_to_pass_the_notification_on_unchanged() {
    let setup = Setup::new();
    // The app under development: records what it gets, answers 202.
    let app_port = free_port();
    let received: Arc<Mutex<Vec<Forwarded>>> = Arc::default();
    let sink = received.clone();
    let server = tiny_http_like(app_port, move |body, intuit, id| {
        sink.lock().unwrap().push((body, intuit, id));
    });
    let token = setup.secret("verifier_token");
    let forward = format!("http://127.0.0.1:{app_port}/hooks");
    let listening = Listening::start(&["--verifier-token", &token, "--json", "--forward-to", &forward]);
    setup.subscribe(&listening.url, "cloudevents");
    setup.customer("7", "Update");
    let lines = listening.wait_lines(2);
    let event: Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(event["realm_id"], setup.realm.as_str());
    assert_eq!(
        (
            event["entity"].as_str(),
            event["id"].as_str(),
            event["operation"].as_str()
        ),
        (Some("Customer"), Some("7"), Some("Update"))
    );
    assert!(
        event["webhook_id"].as_str().unwrap().starts_with("ntf_"),
        "{event}"
    );
    let answer: Value = serde_json::from_str(&lines[1]).unwrap();
    assert_eq!(answer["status"], 202, "{answer}");
    // The app got the very bytes the server signed, with the signature headers.
    let app_id = setup.app["id"].as_str().unwrap();
    let list = call(
        &setup.server.base,
        Method::GET,
        &format!("/api/v1/apps/{app_id}/notifications"),
        Value::Null,
    );
    let id = list["data"][0]["id"].as_str().unwrap();
    let detail = call(
        &setup.server.base,
        Method::GET,
        &format!("/api/v1/apps/{app_id}/notifications/{id}"),
        Value::Null,
    );
    let got = received.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    let sent: Value = serde_json::from_str(detail["payload"].as_str().unwrap()).unwrap();
    let forwarded: Value = serde_json::from_slice(&got[0].0).unwrap();
    assert_eq!(forwarded, sent);
    assert_eq!(got[0].0, detail["payload"].as_str().unwrap().as_bytes());
    assert_eq!(got[0].2.as_deref(), Some(id));
    let intuit = got[0].1.clone().unwrap();
    assert!(ledgerhook_signing::intuit_signature_matches(
        &token, &got[0].0, &intuit
    ));
    // The app's 202 reached the server as the attempt's status.
    assert_eq!(detail["attempts"][0]["status_code"], 202, "{detail}");
    drop(server);
}

/// A minimal app on `port` answering `202`, handing each request's body,
/// `intuit-signature` and `webhook-id` to `record`.
fn tiny_http_like(
    port: u16,
    record: impl Fn(Vec<u8>, Option<String>, Option<String>) + Send + Sync + 'static,
) -> std::thread::JoinHandle<()> {
    let record = Arc::new(record);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(("127.0.0.1", port)))
        .unwrap();
    std::thread::spawn(move || {
        runtime.block_on(async move {
            let app = axum::Router::new().route(
                "/hooks",
                axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                    let record = record.clone();
                    async move {
                        let get = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
                        record(body.to_vec(), get("intuit-signature"), get("webhook-id"));
                        axum::http::StatusCode::ACCEPTED
                    }
                }),
            );
            let _ = axum::serve(listener, app).await;
        })
    })
}
