//! The dashboard in a real browser: `tests/clients/dashboard.js` drives Debian's
//! `chromium` through playwright-core against a server holding an app with a history of
//! 1,050 delivered notifications whose sandbox endpoint then failed until it was
//! blacklisted, and scans every view with axe-core.
//! A screenshot of each view is kept under the build tree
//! (`target/tmp/dashboard-screenshots/`). `scripts/test` installs chromium and the npm
//! packages; without them the test says it
//! skips, and fails instead with `LEDGERHOOK_TEST_REQUIRE_CLIENTS=1`.

use crate::clients::{clients_dir, installed, run_script};
use crate::support::{TestServer, OPERATOR};
use ledgerhook_testkit::{receiver, Kind};
use serde_json::json;
use std::time::Duration;

/// Delivered notifications made before the failure: more than the 1,000 a page can
/// reach without its cursor.
const HISTORY: usize = 1_050;

/// `count` single-event ingestion requests to `realm`, eight at a time: at window 0 each
/// makes one notification.
async fn delivered_history(server: &TestServer, realm: &str, count: usize) {
    let client = reqwest::Client::new();
    let url = format!("{}/api/v1/realms/{realm}/events", server.base);
    let mut sent = 0;
    while sent < count {
        let batch: Vec<_> = (sent..count.min(sent + 8))
            .map(|n| {
                let request = client
                    .post(&url)
                    .bearer_auth(OPERATOR)
                    .json(&json!([{"name": "Customer", "id": format!("h{n}"), "operation": "Create"}]));
                tokio::spawn(async move { request.send().await.map(|r| r.status().as_u16()) })
            })
            .collect();
        for answer in batch {
            assert_eq!(answer.await.unwrap().unwrap(), 202, "history ingestion");
            sent += 1;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_finds_and_fixes_a_failing_endpoint_in_a_browser() {
    let Some(modules) = installed(clients_dir().join("node/node_modules/playwright-core")) else {
        return;
    };
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    if installed(std::path::PathBuf::from(&chromium)).is_none() {
        return;
    }
    let server = TestServer::start_with(Kind::Sqlite, |c| {
        c.allow_http = true;
        c.allow_private_networks = true;
        c.sandbox_batch_window = Duration::ZERO;
        c.retry_schedule = vec![Duration::from_millis(100); 3];
    })
    .await
    .unwrap();
    let hook = receiver::start(None).await;
    hook.set(500, Duration::ZERO);
    let (realm, app) = server
        .app_delivering_to("Billing sync", &hook.url("http", "/hook"))
        .await;
    let app_id = app["id"].as_str().unwrap().to_owned();
    let app_key = app["api_key"].as_str().unwrap().to_owned();
    server.app("Somebody else's app").await;
    // A history of more than 1,000 delivered notifications (one per request), to page past.
    hook.set(200, Duration::ZERO);
    delivered_history(&server, &realm, HISTORY).await;
    hook.wait_for(HISTORY, Duration::from_secs(60)).await;
    hook.set(500, Duration::ZERO);
    let event = json!([{"name": "Customer", "id": "1", "operation": "Create"}]);
    server.ingest(&realm, &event).await;
    // One attempt and three retries fail: dropped, and the configuration blacklisted.
    hook.wait_for(HISTORY + 4, Duration::from_secs(10)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let failing = loop {
        let list = server.stored_notifications(&app_id).await;
        if let Some(n) = list.iter().find(|n| n.status.as_str() == "dropped") {
            break n.id.clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "never dropped");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // A change while blacklisted: its notification is held until the reactivation.
    let held = json!([{"name": "Customer", "id": "2", "operation": "Create"}]);
    server.ingest(&realm, &held).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !server
        .stored_notifications(&app_id)
        .await
        .iter()
        .any(|n| n.status.as_str() == "held")
    {
        assert!(tokio::time::Instant::now() < deadline, "never held");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    hook.set(200, Duration::ZERO);
    let node_path = modules.parent().unwrap().to_string_lossy().into_owned();
    // A screenshot of each view, kept in the build tree.
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let shots = shots.to_string_lossy().into_owned();
    let history = HISTORY.to_string();
    let envs = [
        ("LEDGERHOOK_BASE", server.base.as_str()),
        ("OPERATOR_TOKEN", OPERATOR),
        ("APP_NAME", "Billing sync"),
        ("APP_ID", app_id.as_str()),
        ("FAILING_NOTIFICATION", failing.as_str()),
        ("CHROMIUM", chromium.as_str()),
        ("NODE_PATH", node_path.as_str()),
        ("SCREENSHOTS", shots.as_str()),
        ("APP_KEY", app_key.as_str()),
        ("OTHER_APP_NAME", "Somebody else's app"),
        ("HISTORY", &history),
    ];
    run_script(std::path::Path::new("node"), "dashboard.js", &envs, 24).await;
    let taken = std::fs::read_dir(&shots).unwrap().count();
    assert!(taken >= 6, "{taken} screenshots in {shots}");
    // What the page did, seen from the API.
    let (_, config) = server
        .get(&format!("/api/v1/apps/{app_id}/webhooks/sandbox"))
        .await;
    assert_eq!(config["state"], "active");
    let (_, detail) = server
        .get(&format!("/api/v1/apps/{app_id}/notifications/{failing}"))
        .await;
    assert_eq!(detail["status"], "delivered", "redelivered from the page");
}
