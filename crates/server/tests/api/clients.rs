//! Real QuickBooks client libraries against the server, changing only their base URLs:
//! python-quickbooks with intuit-oauth from PyPI (`tests/clients/python_quickbooks.py`).
//! `scripts/test` installs them into `target/clients/` (never committed); without them
//! the test says it skips, and fails instead with `LEDGERHOOK_TEST_REQUIRE_CLIENTS=1`.

use crate::support::{TestServer, OPERATOR};
use ledgerhook_testkit::{on_both_backends, Kind};
use serde_json::json;
use std::path::PathBuf;
use std::time::Duration;

on_both_backends!(python_quickbooks_and_intuit_oauth_run_unchanged);

/// The workspace's `target/clients/`, wherever cargo builds.
fn clients_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/clients")
}

/// The Python with the client libraries, or `None` (after saying so) to skip.
fn python() -> Option<PathBuf> {
    let python = std::env::var_os("LEDGERHOOK_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| clients_dir().join("venv/bin/python"));
    if python.exists() {
        return Some(python);
    }
    assert!(
        std::env::var("LEDGERHOOK_TEST_REQUIRE_CLIENTS").as_deref() != Ok("1"),
        "LEDGERHOOK_TEST_REQUIRE_CLIENTS=1 but {} is missing: run scripts/test",
        python.display()
    );
    eprintln!(
        "skipping: {} is missing (scripts/test installs the client libraries)",
        python.display()
    );
    None
}

async fn python_quickbooks_and_intuit_oauth_run_unchanged(kind: Kind) {
    let Some(python) = python() else { return };
    let Some(server) = TestServer::start_loopback(kind).await else {
        return;
    };
    let realm_id = server.realm("sandbox").await;
    let redirect = "http://127.0.0.1:9/callback";
    let (status, app) = server
        .post(
            "/api/v1/apps",
            &json!({"name": "Python app", "redirect_uris": [redirect]}),
        )
        .await;
    assert_eq!(status, 201, "{app}");
    // Another app on the realm subscribed to Vendor only: none of the script's changes
    // may reach it.
    let other = server.app("Vendor watcher").await;
    let other_id = other["id"].as_str().unwrap();
    server.connect(other_id, &realm_id).await;
    server
        .configure(
            other_id,
            "sandbox",
            json!({"url": "http://127.0.0.1:9/never", "entities": {"Vendor": "*"}}),
        )
        .await;

    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients/python_quickbooks.py");
    let output = tokio::process::Command::new(&python)
        .arg(&script)
        .env("LEDGERHOOK_BASE", &server.base)
        .env("LEDGERHOOK_OPERATOR", OPERATOR)
        .env("REALM_ID", &realm_id)
        .env("APP_ID", app["id"].as_str().unwrap())
        .env("CLIENT_ID", app["client_id"].as_str().unwrap())
        .env("CLIENT_SECRET", app["client_secret"].as_str().unwrap())
        .env("VERIFIER_TOKEN", app["verifier_token"].as_str().unwrap())
        .env("REDIRECT_URI", redirect)
        .env("PYTHONWARNINGS", "ignore")
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), output)
        .await
        .expect("the script finishes within two minutes")
        .expect("run python");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.trim_end().ends_with("done"),
        "the python client script failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.lines().filter(|l| l.starts_with("ok ")).count() >= 40,
        "{stdout}"
    );

    // Every change made through the library became a notification of the subscribed
    // app (the script verified one it received), and none of the Vendor watcher's.
    let app_id = app["id"].as_str().unwrap();
    let made = server
        .wait_for_notifications(app_id, 10, Duration::from_secs(10))
        .await;
    assert!(made.len() >= 10, "{} notifications", made.len());
    assert!(server.stored_notifications(other_id).await.is_empty());
}
