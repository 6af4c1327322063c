//! schemathesis (from PyPI) against a running server with the generated document: every
//! operation of `/api/v1` fuzzed — valid and invalid inputs, then stateful sequences
//! following the document's links — bounded to 10 examples per operation and 60 s.
//! It fails on any `5xx`, any status the document does not list, any answer whose body
//! or content type contradicts it. The app, realm and environment in paths are real ones
//! (a configured, connected app with a delivered notification), so that operations reach
//! their logic rather than a `404`. `scripts/test` installs schemathesis into
//! `target/clients/venv`; without it the test says it skips, and fails instead with
//! `LEDGERHOOK_TEST_REQUIRE_CLIENTS=1`.

use crate::clients::{clients_dir, installed};
use crate::support::{TestServer, OPERATOR};
use ledgerhook_testkit::{receiver, Kind};
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_answer_the_document_does_not_describe() {
    let Some(schemathesis) = installed(clients_dir().join("venv/bin/schemathesis")) else {
        return;
    };
    let server = TestServer::start_with(Kind::Sqlite, |c| {
        c.allow_http = true;
        c.allow_private_networks = true;
        c.sandbox_batch_window = Duration::ZERO;
    })
    .await
    .unwrap();
    let hook = receiver::start(None).await;
    let (realm, app) = server
        .app_delivering_to("Fuzzed", &hook.url("http", "/hook"))
        .await;
    let app_id = app["id"].as_str().unwrap().to_owned();
    server
        .ingest(
            &realm,
            &json!([{"name": "Customer", "id": "1", "operation": "Create"}]),
        )
        .await;
    let notification = server
        .wait_for_notifications(&app_id, 1, Duration::from_secs(10))
        .await
        .remove(0)
        .id;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("schemathesis.toml"),
        format!(
            "[parameters]\n\"path.app\" = \"{app_id}\"\n\"path.realm\" = \"{realm}\"\n\
             \"path.environment\" = \"sandbox\"\n\"path.id\" = \"{notification}\"\n\"path.name\" = \"api_key\"\n"
        ),
    )
    .unwrap();
    let mut command = tokio::process::Command::new(&schemathesis);
    command
        .current_dir(dir.path())
        .args(["run", &format!("{}/api/v1/openapi.json", server.base)])
        .args(["--header", &format!("Authorization: Bearer {OPERATOR}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        ])
        .args(["--max-examples", "10", "--seed", "1", "--max-time", "60"])
        .args(["--generation-database", "none", "--no-color"])
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(300), command.output())
        .await
        .expect("schemathesis finishes within five minutes")
        .expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis found problems:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let generated: u64 = stdout
        .lines()
        .find_map(|line| {
            line.trim()
                .split_once(" generated, ")
                .map(|(n, _)| n.trim().to_owned())
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        generated >= 250,
        "too few test cases ran ({generated}):\n{stdout}"
    );
}
