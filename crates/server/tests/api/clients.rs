//! Real QuickBooks client libraries against the server, changing only their base URLs:
//! python-quickbooks with intuit-oauth from PyPI (`tests/clients/python_quickbooks.py`)
//! and node-quickbooks with intuit-oauth from npm (`tests/clients/node_quickbooks.js`).
//! `scripts/test` installs them into `target/clients/` (never committed); without them
//! a test says it skips, and fails instead with `LEDGERHOOK_TEST_REQUIRE_CLIENTS=1`.

use crate::support::{TestServer, OPERATOR};
use ledgerhook_testkit::{on_both_backends, Kind};
use serde_json::json;
use std::path::PathBuf;
use std::time::Duration;

on_both_backends!(
    python_quickbooks_and_intuit_oauth_run_unchanged,
    node_quickbooks_and_intuit_oauth_run_unchanged,
);

/// The workspace's `target/clients/`, wherever cargo builds.
pub(crate) fn clients_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/clients")
}

/// `path` if it exists, or `None` (after saying so) to skip.
pub(crate) fn installed(path: PathBuf) -> Option<PathBuf> {
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var("LEDGERHOOK_TEST_REQUIRE_CLIENTS").as_deref() != Ok("1"),
        "LEDGERHOOK_TEST_REQUIRE_CLIENTS=1 but {} is missing: run scripts/test",
        path.display()
    );
    eprintln!(
        "skipping: {} is missing (scripts/test installs the client libraries)",
        path.display()
    );
    None
}

/// Runs `program script` with `envs` (bounded to two minutes); answers its output after
/// checking that it ran every check (`ok …` lines, then `done`).
pub(crate) async fn run_script(
    program: &std::path::Path,
    script: &str,
    envs: &[(&str, &str)],
    min_checks: usize,
) -> String {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients")
        .join(script);
    let mut command = tokio::process::Command::new(program);
    command.arg(&script).envs(envs.iter().copied()).kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .expect("the script finishes within two minutes")
        .expect("run the script");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.trim_end().ends_with("done"),
        "{} failed:\n{stdout}\n{stderr}",
        script.display()
    );
    let checks = stdout.lines().filter(|l| l.starts_with("ok ")).count();
    assert!(checks >= min_checks, "only {checks} checks ran:\n{stdout}");
    stdout
}

async fn python_quickbooks_and_intuit_oauth_run_unchanged(kind: Kind) {
    let Some(python) = installed(
        std::env::var_os("LEDGERHOOK_TEST_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|| clients_dir().join("venv/bin/python")),
    ) else {
        return;
    };
    let Some(server) = TestServer::start_loopback(kind).await else {
        return;
    };
    let realm_id = server.realm("sandbox").await;
    let (app, other_id) = apps(&server, &realm_id).await;
    let app_id = app["id"].as_str().unwrap();
    let envs = [
        ("LEDGERHOOK_BASE", server.base.as_str()),
        ("LEDGERHOOK_OPERATOR", OPERATOR),
        ("REALM_ID", realm_id.as_str()),
        ("APP_ID", app_id),
        ("CLIENT_ID", app["client_id"].as_str().unwrap()),
        ("CLIENT_SECRET", app["client_secret"].as_str().unwrap()),
        ("VERIFIER_TOKEN", app["verifier_token"].as_str().unwrap()),
        ("REDIRECT_URI", REDIRECT),
        ("PYTHONWARNINGS", "ignore"),
    ];
    run_script(&python, "python_quickbooks.py", &envs, 40).await;

    // Every change made through the library became a notification of the subscribed
    // app (the script verified one it received), and none of the Vendor watcher's.
    let made = server
        .wait_for_notifications(app_id, 10, Duration::from_secs(10))
        .await;
    assert!(made.len() >= 10, "{} notifications", made.len());
    assert!(server.stored_notifications(&other_id).await.is_empty());
}

async fn node_quickbooks_and_intuit_oauth_run_unchanged(kind: Kind) {
    let Some(modules) = installed(clients_dir().join("node/node_modules/node-quickbooks")) else {
        return;
    };
    let Some(server) = TestServer::start_loopback(kind).await else {
        return;
    };
    let realm_id = server.realm("sandbox").await;
    let (app, other_id) = apps(&server, &realm_id).await;
    let node_path = modules.parent().unwrap().to_string_lossy().into_owned();
    let envs = [
        ("LEDGERHOOK_BASE", server.base.as_str()),
        ("REALM_ID", realm_id.as_str()),
        ("CLIENT_ID", app["client_id"].as_str().unwrap()),
        ("CLIENT_SECRET", app["client_secret"].as_str().unwrap()),
        ("REDIRECT_URI", REDIRECT),
        ("NODE_PATH", node_path.as_str()),
    ];
    run_script(std::path::Path::new("node"), "node_quickbooks.js", &envs, 15).await;
    assert!(server.stored_notifications(&other_id).await.is_empty());
}

/// The app's registered callback (nothing listens there: the scripts read the redirect).
const REDIRECT: &str = "http://127.0.0.1:9/callback";

/// An app with the callback, and another app on the realm subscribed to Vendor only:
/// none of the scripts' changes may reach the second.
async fn apps(server: &TestServer, realm_id: &str) -> (serde_json::Value, String) {
    let (status, app) = server
        .post(
            "/api/v1/apps",
            &json!({"name": "Client app", "redirect_uris": [REDIRECT]}),
        )
        .await;
    assert_eq!(status, 201, "{app}");
    let other = server.app("Vendor watcher").await;
    let other_id = other["id"].as_str().unwrap().to_owned();
    server.connect(&other_id, realm_id).await;
    server
        .configure(
            &other_id,
            "sandbox",
            json!({"url": "http://127.0.0.1:9/never", "entities": {"Vendor": "*"}}),
        )
        .await;
    (app, other_id)
}
