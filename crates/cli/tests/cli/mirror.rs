//! `ledgerhook mirror` against `ledgerhook serve`, both the real binary: the copy follows
//! the server, `--verify` proves it equal, and a notification missed while the app was
//! unsubscribed is found by `--verify` and repaired by the next notification.

use crate::support::{binary, free_port, ServerProcess};
use ledgerhook_testkit::TestDatabase;
use reqwest::Method;
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

const OPERATOR: &str = "mirror-test-operator-token";

struct Api {
    base: String,
}

impl Api {
    fn call(&self, method: Method, path: &str, body: Value) -> Value {
        crate::support::call(&self.base, OPERATOR, method, path, body)
    }

    fn customer(&self, realm: &str, id: &str, operation: &str, name: &str) {
        let events =
            json!([{"name": "Customer", "id": id, "operation": operation, "data": {"DisplayName": name}}]);
        self.call(Method::POST, &format!("/api/v1/realms/{realm}/events"), events);
    }

    /// Waits until the app's notifications are all delivered.
    fn wait_delivered(&self, app_id: &str, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let list = self.call(
                Method::GET,
                &format!("/api/v1/apps/{app_id}/notifications"),
                Value::Null,
            );
            let data = list["data"].as_array().unwrap();
            let delivered = data.iter().filter(|n| n["status"] == "delivered").count();
            if delivered >= count {
                return;
            }
            assert!(Instant::now() < deadline, "not delivered: {list}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn mirror_args<'a>(data: &'a str, server: &'a str, realm: &'a str) -> Vec<&'a str> {
    vec![
        "mirror",
        "--data",
        data,
        "--server",
        server,
        "--realm",
        realm,
        "--entities",
        "Customer",
    ]
}

/// Runs `ledgerhook mirror --verify`; answers success and stdout.
fn verify(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = binary()
        .current_dir(dir)
        .args(args)
        .arg("--verify")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (
        out.status.success(),
        format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)),
    )
}

#[test]
fn the_mirror_keeps_an_equal_copy_and_repairs_a_missed_notification() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDatabase::sqlite();
    let server = ServerProcess::start_loopback(dir.path(), &db.url, OPERATOR);
    let api = Api {
        base: server.base.clone(),
    };
    let realm = api.call(
        Method::POST,
        "/api/v1/realms",
        json!({"name": "M", "environment": "sandbox"}),
    );
    let realm = realm["id"].as_str().unwrap().to_owned();
    let app = api.call(Method::POST, "/api/v1/apps", json!({"name": "Mirror"}));
    let app_id = app["id"].as_str().unwrap().to_owned();
    let grant = api.call(
        Method::POST,
        &format!("/api/v1/apps/{app_id}/connections"),
        json!({"realm_id": realm}),
    );
    let realm_arg = format!("{realm}={}", grant["access_token"].as_str().unwrap());
    let data = dir.path().join("mirror");
    let data = data.to_str().unwrap();
    let args = mirror_args(data, &server.base, &realm_arg);

    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let start_mirror = || {
        let mut cmd = binary();
        cmd.current_dir(dir.path()).args(&args).args([
            "--listen",
            &listen,
            "--verifier-token",
            app["verifier_token"].as_str().unwrap(),
        ]);
        ServerProcess::spawn(cmd)
            .unwrap_or_else(|(status, err)| panic!("mirror did not start ({status:?}):\n{err}"))
    };
    let mirror = start_mirror();
    assert_eq!(mirror.base, format!("http://{listen}/webhooks"));
    let webhooks = format!("/api/v1/apps/{app_id}/webhooks/sandbox");
    let subscription = json!({"url": mirror.base, "entities": "*"});
    api.call(Method::PUT, &webhooks, subscription.clone());

    api.customer(&realm, "1", "Create", "Ada");
    api.customer(&realm, "2", "Create", "Grace");
    api.customer(&realm, "1", "Update", "Ada Lovelace");
    api.wait_delivered(&app_id, 3);
    assert!(mirror.terminate().success());
    let (equal, out) = verify(dir.path(), &args);
    assert!(equal, "{out}");
    assert!(
        out.contains(&format!("realm {realm}: 2 entities compared, equal")),
        "{out}"
    );

    // Unsubscribed: customer 3 is created and customer 2 deleted without a notification.
    api.call(Method::DELETE, &webhooks, Value::Null);
    api.customer(&realm, "3", "Create", "Katherine");
    api.customer(&realm, "2", "Delete", "Grace");
    let (equal, out) = verify(dir.path(), &args);
    assert!(!equal, "{out}");
    assert!(out.contains("Customer 3: missing from the copy"), "{out}");
    assert!(out.contains("Customer 2: the copy is at"), "{out}");

    // Subscribed again: the next notification repairs the copy through CDC.
    let mirror = start_mirror();
    api.call(Method::PUT, &webhooks, subscription);
    api.customer(&realm, "1", "Update", "Ada King");
    api.wait_delivered(&app_id, 4);
    let deadline = Instant::now() + Duration::from_secs(10);
    let out = loop {
        std::thread::sleep(Duration::from_millis(200));
        let (equal, out) = verify(dir.path(), &args);
        if equal || Instant::now() > deadline {
            break out;
        }
    };
    assert!(
        out.contains(&format!("realm {realm}: 3 entities compared, equal")),
        "{out}"
    );
    assert!(mirror.terminate().success());
}

#[test]
fn mirror_refuses_bad_options_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &str); 7] = [
        (
            &["--realm", "123"],
            "--realm 123: give its access token (REALM=ACCESS_TOKEN) or a --refresh-token for it",
        ),
        (
            &["--realm", "1", "--refresh-token", "1=r"],
            "--refresh-token needs the app's --client-id and --client-secret",
        ),
        (&["--realm", "1=t", "--max-body-size", "ten"], "--max-body-size:"),
        (
            &["--realm", "1=t", "--full-repair-every", "0"],
            "--full-repair-every: must be more than 0",
        ),
        (
            &["--realm", "1=t", "--entities", "Customer,Nope"],
            "unknown entity \"Nope\"",
        ),
        (
            &["--realm", "1=t", "--entities", "TaxAgency"],
            "CDC does not support TaxAgency",
        ),
        (
            &["--realm", "1=t", "--listen", "nowhere"],
            "--listen: \"nowhere\" is not an address",
        ),
    ];
    for (extra, message) in cases {
        let out = binary()
            .current_dir(dir.path())
            .args(["mirror", "--server", "http://127.0.0.1:9", "--data"])
            .arg(dir.path().join("m"))
            .args(extra)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{extra:?}: {stderr}");
        assert!(stderr.contains(message), "{extra:?}: {stderr}");
    }
    assert!(
        !dir.path().join("m").exists(),
        "a refused start created the data directory"
    );
}
