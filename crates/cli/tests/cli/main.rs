//! The `ledgerhook` binary, started for real: settings, operator token, locking,
//! shutdown and restarts.

#![allow(clippy::disallowed_types, clippy::disallowed_methods)] // tests are clients and peers of the server

mod client;
mod convergence;
mod crash;
mod demo;
mod listen;
mod mirror;
mod nodes;
mod relay;
mod support;

use ledgerhook_testkit::TestDatabase;
use std::path::Path;
use support::{binary, free_port, http, ServerProcess};

/// Runs `ledgerhook config` and answers its stdout.
fn effective_config(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> String {
    let out = binary()
        .current_dir(dir)
        .arg("config")
        .args(args)
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn line_of<'a>(config: &'a str, name: &str) -> &'a str {
    config
        .lines()
        .find(|l| l.starts_with(&format!("{name} = ")))
        .unwrap_or_else(|| panic!("{name} missing from:\n{config}"))
}

#[test]
fn settings_precedence_is_flag_then_env_then_file_then_default() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ledgerhook.toml");
    std::fs::write(
        &file,
        "batch-window = \"5m\"\ndelivery-timeout = \"4s\"\ntime-scale = 2\nallow-http = true\nretry-schedule = [\"1s\", \"2s\"]\n",
    )
    .unwrap();
    let file_arg = file.to_str().unwrap();
    let envs = [
        ("LEDGERHOOK_BATCH_WINDOW", "2m"),
        ("LEDGERHOOK_DELIVERY_TIMEOUT", "5s"),
    ];
    let config = effective_config(dir.path(), &["--config", file_arg, "--batch-window", "1m"], &envs);
    assert_eq!(line_of(&config, "batch-window"), "batch-window = \"1m\"  # flag");
    assert_eq!(
        line_of(&config, "delivery-timeout"),
        "delivery-timeout = \"5s\"  # environment"
    );
    assert_eq!(
        line_of(&config, "time-scale"),
        "time-scale = \"2\"  # config file"
    );
    assert_eq!(
        line_of(&config, "allow-http"),
        "allow-http = \"true\"  # config file"
    );
    assert_eq!(
        line_of(&config, "retry-schedule"),
        "retry-schedule = \"1s,2s\"  # config file"
    );
    assert_eq!(line_of(&config, "retention"), "retention = \"30d\"  # default");

    // Without the flag the environment wins over the file; without both, the file.
    let config = effective_config(dir.path(), &["--config", file_arg], &envs);
    assert_eq!(
        line_of(&config, "batch-window"),
        "batch-window = \"2m\"  # environment"
    );
    let config = effective_config(dir.path(), &["--config", file_arg], &[]);
    assert_eq!(
        line_of(&config, "batch-window"),
        "batch-window = \"5m\"  # config file"
    );
    // The config file itself may come from the environment.
    let config = effective_config(dir.path(), &[], &[("LEDGERHOOK_CONFIG", file_arg)]);
    assert_eq!(
        line_of(&config, "delivery-timeout"),
        "delivery-timeout = \"4s\"  # config file"
    );
}

#[test]
fn switches_take_an_optional_value() {
    let dir = tempfile::tempdir().unwrap();
    let config = effective_config(
        dir.path(),
        &["--allow-http", "--allow-private-networks=false"],
        &[],
    );
    assert_eq!(line_of(&config, "allow-http"), "allow-http = \"true\"  # flag");
    assert_eq!(
        line_of(&config, "allow-private-networks"),
        "allow-private-networks = \"false\"  # flag"
    );
}

#[test]
fn secret_key_is_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let config = effective_config(dir.path(), &["--secret-key", "hunter2-very-secret"], &[]);
    assert!(!config.contains("hunter2"), "{config}");
    assert_eq!(line_of(&config, "secret-key"), "secret-key = \"(set)\"  # flag");
}

#[test]
fn serve_listens_where_the_winning_layer_says() {
    let dir = tempfile::tempdir().unwrap();
    let (file_port, env_port, flag_port) = (free_port(), free_port(), free_port());
    let file = dir.path().join("c.toml");
    std::fs::write(&file, format!("listen = \"127.0.0.1:{file_port}\"\n")).unwrap();
    let db = TestDatabase::sqlite();
    let file_arg = file.to_str().unwrap();
    let env_listen = format!("127.0.0.1:{env_port}");
    let flag_listen = format!("127.0.0.1:{flag_port}");

    let server = ServerProcess::start(
        dir.path(),
        &db.url,
        &["--config", file_arg, "--listen", &flag_listen],
        &[("LEDGERHOOK_LISTEN", &env_listen)],
    );
    assert_eq!(server.base, format!("http://{flag_listen}"));
    assert!(http()
        .get(format!("{}/healthz", server.base))
        .send()
        .unwrap()
        .status()
        .is_success());
    assert!(server.terminate().success());

    let server = ServerProcess::start(
        dir.path(),
        &db.url,
        &["--config", file_arg],
        &[("LEDGERHOOK_LISTEN", &env_listen)],
    );
    assert_eq!(server.base, format!("http://{env_listen}"));
    assert!(server.terminate().success());

    let server = ServerProcess::start(dir.path(), &db.url, &["--config", file_arg], &[]);
    assert_eq!(server.base, format!("http://127.0.0.1:{file_port}"));
    assert!(server.terminate().success());
}

/// (setting, bad value): each must stop `serve` with a message naming the setting.
const BAD_VALUES: &[(&str, &str)] = &[
    ("batch-window", "5x"),
    ("batch-window", "-1s"),
    ("batch-window", "1.5"),
    ("batch-window", ""),
    ("batch-window", "1e3s"),
    ("sandbox-batch-window", "soon"),
    ("delivery-timeout", "0"),
    ("delivery-timeout", "3 s"),
    ("retry-schedule", "20m,,50m"),
    ("retry-schedule", "20m,30x"),
    ("max-retry-age", "3days"),
    ("inactive-after", "1y"),
    ("retention", "0s"),
    ("database-url", "mysql://localhost/x"),
    ("database-url", "sqlite://"),
    ("database-url", "ledgerhook.db"),
    ("database-url", "http://example.com/db"),
    ("listen", "nowhere"),
    ("listen", "127.0.0.1"),
    ("listen", "127.0.0.1:99999"),
    ("time-scale", "0"),
    ("time-scale", "-2"),
    ("time-scale", "fast"),
    ("batch-max-events", "0"),
    ("batch-max-events", "many"),
    ("max-in-flight-per-endpoint", "-1"),
    ("max-body-size", "lots"),
    ("max-body-size", "0"),
    ("retry-policy", "sometimes"),
    ("sqlite-synchronous", "extra"),
    ("api-rate-limit", "fast"),
    ("api-rate-limit", "0/s"),
    ("header-read-timeout", "0"),
    ("header-read-timeout", "soon"),
    ("max-connections", "0"),
    ("max-connections", "lots"),
    ("log-format", "xml"),
    ("allow-http", "maybe"),
    ("allow-private-networks", "2"),
    ("ca-file", "/nonexistent/ca.pem"),
    ("secret-key", ""),
    ("token-lifetime", "0s"),
    ("token-lifetime", "an hour"),
    ("v3-rate-limit", "500"),
    ("v3-rate-limit", "0/min"),
    ("v3-rate-limit", "fast/min"),
];

#[test]
fn every_bad_value_stops_the_start_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    for (name, value) in BAD_VALUES {
        let flag = format!("--{name}={value}");
        let mut cmd = binary();
        cmd.current_dir(dir.path()).arg("serve").arg(&flag);
        if *name != "listen" {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flag} was accepted");
        assert!(
            stderr.contains(&format!("setting {name}")),
            "{flag}: message does not name the setting: {stderr}"
        );
    }
    // Nothing was created by the refused starts.
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "a refused start left files behind"
    );
}

#[test]
fn bad_values_from_env_and_file_are_named_with_their_source() {
    let dir = tempfile::tempdir().unwrap();
    let out = binary()
        .current_dir(dir.path())
        .arg("serve")
        .env("LEDGERHOOK_RETENTION", "forever")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("setting retention (from environment)"),
        "{stderr}"
    );

    let file = dir.path().join("c.toml");
    std::fs::write(&file, "time-scale = \"warp\"\n").unwrap();
    let out = binary()
        .current_dir(dir.path())
        .args(["serve", "--config", file.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("setting time-scale (from config file)"),
        "{stderr}"
    );

    std::fs::write(&file, "batch-windw = \"1s\"\n").unwrap();
    let out = binary()
        .current_dir(dir.path())
        .args(["serve", "--config", file.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("unknown setting \"batch-windw\""), "{stderr}");
}

#[test]
fn operator_token_is_printed_once_works_and_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDatabase::sqlite();
    let server = ServerProcess::start(dir.path(), &db.url, &[], &[]);
    let token = server
        .printed_token()
        .expect("first start prints the operator token");
    let metrics = format!("{}/metrics", server.base);
    assert_eq!(http().get(&metrics).send().unwrap().status(), 401);
    assert_eq!(
        http()
            .get(&metrics)
            .bearer_auth("lho_wrong")
            .send()
            .unwrap()
            .status(),
        401
    );
    let ok = http().get(&metrics).bearer_auth(&token).send().unwrap();
    assert_eq!(ok.status(), 200);
    assert!(ok.text().unwrap().contains("ledgerhook_build_info"));
    assert!(server.terminate().success(), "SIGTERM must exit 0");

    let server = ServerProcess::start(dir.path(), &db.url, &[], &[]);
    assert_eq!(
        server.printed_token(),
        None,
        "token printed again on restart:\n{}",
        server.stderr()
    );
    assert!(!server.stderr().contains(&token));
    assert_eq!(metrics_status(&server.base, &token), 200);
    assert!(server.terminate().success());
}

/// The status `GET /metrics` (operator only) answers with `token`.
fn metrics_status(base: &str, token: &str) -> u16 {
    http()
        .get(format!("{base}/metrics"))
        .bearer_auth(token)
        .send()
        .unwrap()
        .status()
        .as_u16()
}

#[test]
fn admin_token_variable_replaces_the_stored_token() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDatabase::sqlite();
    let server = ServerProcess::start(dir.path(), &db.url, &[], &[]);
    let first = server.printed_token().unwrap();
    assert!(server.terminate().success());

    let server = ServerProcess::start(
        dir.path(),
        &db.url,
        &[],
        &[("LEDGERHOOK_ADMIN_TOKEN", "my-operator-token-123")],
    );
    assert_eq!(server.printed_token(), None);
    assert_eq!(metrics_status(&server.base, &first), 401);
    assert_eq!(metrics_status(&server.base, "my-operator-token-123"), 200);
}

#[test]
fn a_second_process_on_the_same_sqlite_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDatabase::sqlite();
    let first = ServerProcess::start(dir.path(), &db.url, &[], &[]);
    let mut cmd = binary();
    cmd.current_dir(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0", "--database-url", &db.url]);
    let (status, stderr) = ServerProcess::spawn(cmd)
        .err()
        .expect("second process must not start");
    assert!(!status.expect("it exits").success());
    assert!(
        stderr.contains("already in use by another ledgerhook process"),
        "{stderr}"
    );
    // The first one is unaffected.
    assert_eq!(
        http()
            .get(format!("{}/readyz", first.base))
            .send()
            .unwrap()
            .status(),
        200
    );
}

#[test]
fn default_database_is_ledgerhook_db_in_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = binary();
    cmd.current_dir(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0"]);
    let server = ServerProcess::spawn(cmd).unwrap();
    assert!(dir.path().join("ledgerhook.db").exists());
    assert!(server.terminate().success());
}

#[test]
fn serves_health_readiness_and_the_entity_matrix() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDatabase::sqlite();
    let server = ServerProcess::start(dir.path(), &db.url, &[], &[]);
    assert_eq!(
        http()
            .get(format!("{}/healthz", server.base))
            .send()
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        http()
            .get(format!("{}/readyz", server.base))
            .send()
            .unwrap()
            .status(),
        200
    );
    let matrix: serde_json::Value = http()
        .get(format!("{}/api/v1/entities", server.base))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let data = matrix["data"].as_array().unwrap();
    assert_eq!(data.len(), 29);
    let preferences = data.iter().find(|e| e["name"] == "Preferences").unwrap();
    assert_eq!(preferences["operations"], serde_json::json!(["Update"]));
    let invoice = data.iter().find(|e| e["name"] == "Invoice").unwrap();
    assert_eq!(
        invoice["operations"],
        serde_json::json!(["Create", "Update", "Delete", "Void", "Emailed"])
    );
    let time_activity = data.iter().find(|e| e["name"] == "TimeActivity").unwrap();
    assert_eq!(time_activity["cdc"], false);
}

#[test]
fn serve_on_postgres_keeps_its_token_across_restarts() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let Some(db) = rt.block_on(TestDatabase::postgres()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path(), &db.url, &[], &[]);
    let token = server.printed_token().expect("token on first start");
    assert_eq!(
        http()
            .get(format!("{}/readyz", server.base))
            .send()
            .unwrap()
            .status(),
        200
    );
    assert!(server.terminate().success());
    let server = ServerProcess::start(dir.path(), &db.url, &[], &[]);
    assert_eq!(server.printed_token(), None);
    assert_eq!(metrics_status(&server.base, &token), 200);
    assert!(server.terminate().success());
}

#[test]
fn no_secret_reaches_the_log_even_at_trace_level() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDatabase::sqlite();
    let envs = [
        ("LEDGERHOOK_LOG", "trace"),
        ("LEDGERHOOK_ADMIN_TOKEN", "operator-secret-for-log-test"),
    ];
    let server = ServerProcess::start(
        dir.path(),
        &db.url,
        &["--secret-key", "secret-key-for-log-test"],
        &envs,
    );
    let client = http();
    let operator = "operator-secret-for-log-test";
    let url = |p: &str| format!("{}{p}", server.base);
    let app: serde_json::Value = client
        .post(url("/api/v1/apps"))
        .bearer_auth(operator)
        .json(&serde_json::json!({"name": "Logged"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let app_id = app["id"].as_str().unwrap();
    let realm: serde_json::Value = client
        .post(url("/api/v1/realms"))
        .bearer_auth(operator)
        .json(&serde_json::json!({"name": "R", "environment": "sandbox"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let grant: serde_json::Value = client
        .post(url(&format!("/api/v1/apps/{app_id}/connections")))
        .bearer_auth(operator)
        .json(&serde_json::json!({"realm_id": realm["id"]}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let rotated: serde_json::Value = client
        .post(url(&format!(
            "/api/v1/apps/{app_id}/secrets/signing_secret/rotate"
        )))
        .bearer_auth(app["api_key"].as_str().unwrap())
        .json(&serde_json::json!({"grace": "1h"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let mut secrets: Vec<String> = ["client_secret", "verifier_token", "signing_secret", "api_key"]
        .iter()
        .map(|k| app[k].as_str().unwrap().to_owned())
        .collect();
    secrets.push(grant["access_token"].as_str().unwrap().to_owned());
    secrets.push(grant["refresh_token"].as_str().unwrap().to_owned());
    secrets.push(rotated["signing_secret"].as_str().unwrap().to_owned());
    secrets.push(operator.to_owned());
    secrets.push("secret-key-for-log-test".to_owned());
    let log = server.stderr();
    assert!(
        log.contains("/api/v1/apps"),
        "trace log did not record the requests:\n{log}"
    );
    for secret in &secrets {
        assert!(
            !log.contains(secret.as_str()),
            "a secret reached the log: {secret}"
        );
    }
    assert!(server.terminate().success());
}

#[test]
fn json_logs_are_one_object_per_line_with_the_request_id() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDatabase::sqlite();
    let server = ServerProcess::start(
        dir.path(),
        &db.url,
        &["--log-format", "json"],
        &[("LEDGERHOOK_LOG", "info,tower_http=debug")],
    );
    // A request that fails: no token.
    let answer = http()
        .get(format!("{}/api/v1/realms", server.base))
        .header("x-request-id", "json-log-request-7")
        .send()
        .unwrap();
    assert_eq!(answer.status(), 401);
    assert_eq!(answer.headers()["x-request-id"], "json-log-request-7");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let stderr = loop {
        let stderr = server.stderr();
        if stderr.contains("json-log-request-7") || std::time::Instant::now() > deadline {
            break stderr;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let logs: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| !l.starts_with("ledgerhook: "))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    let of_request: Vec<&serde_json::Value> = logs
        .iter()
        .filter(|l| {
            l["spans"]
                .as_array()
                .is_some_and(|spans| spans.iter().any(|s| s["request_id"] == "json-log-request-7"))
        })
        .collect();
    assert!(
        !of_request.is_empty(),
        "no line carries the request id:\n{stderr}"
    );
    assert!(of_request
        .iter()
        .all(|l| l["level"].is_string() && l["timestamp"].is_string()));
}
