//! `ledgerhook` as a client of a running `ledgerhook serve`, both the real binary: every
//! subcommand's success, `--json` equal to the API's answer, a refusal (exit 1 with the
//! server's message), bad arguments (exit 2), an unreachable server (exit 3 and the
//! hint); `events emit --file` stores a re-run once; completions.

use crate::support::{binary, free_port, http, ServerProcess};
use ledgerhook_testkit::TestDatabase;
use serde_json::{json, Value};
use std::process::Output;

const OPERATOR: &str = "client-test-operator-token";

struct Cli {
    server: String,
}

impl Cli {
    fn run(&self, args: &[&str]) -> Output {
        binary()
            .args(args)
            .env("LEDGERHOOK_SERVER", &self.server)
            .env("LEDGERHOOK_TOKEN", OPERATOR)
            .output()
            .unwrap()
    }

    /// Runs with `--json`; asserts success; answers the parsed stdout.
    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.run(&all);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
    }

    /// Runs for people; asserts success; answers stdout.
    fn text(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn api(&self, path: &str) -> Value {
        http()
            .get(format!("{}{path}", self.server))
            .bearer_auth(OPERATOR)
            .send()
            .unwrap()
            .json()
            .unwrap()
    }
}

fn started() -> (tempfile::TempDir, TestDatabase, ServerProcess) {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDatabase::sqlite();
    let server = ServerProcess::start_loopback(dir.path(), &db.url, OPERATOR);
    (dir, db, server)
}

#[test]
fn every_resource_command_works_in_tables_and_json() {
    let (_dir, _db, server) = started();
    let cli = Cli {
        server: server.base.clone(),
    };
    // Realms.
    let realm = cli.json(&["realms", "create", "--name", "Acme", "--environment", "sandbox"]);
    let realm_id = realm["id"].as_str().unwrap().to_owned();
    assert_eq!(
        cli.json(&["realms", "get", &realm_id]),
        cli.api(&format!("/api/v1/realms/{realm_id}"))
    );
    let listed = cli.json(&["realms", "list"]);
    assert_eq!(listed, cli.api("/api/v1/realms")["data"]);
    let table = cli.text(&["realms", "list", "--utc"]);
    assert!(table.lines().next().unwrap().starts_with("ID"), "{table}");
    assert!(
        table.contains(&realm_id) && table.contains("Acme") && table.contains("UTC"),
        "{table}"
    );
    // Apps: secrets once, with a warning on stderr.
    let out = cli.run(&["apps", "create", "--name", "Integration"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("shown only now"));
    let shown = String::from_utf8(out.stdout).unwrap();
    assert!(
        shown.contains("signing_secret") && shown.contains("whsec_"),
        "{shown}"
    );
    let app = cli.json(&["apps", "create", "--name", "Scripted"]);
    let app_id = app["id"].as_str().unwrap().to_owned();
    assert!(app["api_key"].is_string());
    assert_eq!(
        cli.json(&["apps", "get", &app_id]),
        cli.api(&format!("/api/v1/apps/{app_id}"))
    );
    assert_eq!(
        cli.json(&["apps", "list", "--limit", "1", "--all"])
            .as_array()
            .unwrap()
            .len(),
        2,
        "--all follows the cursor"
    );
    assert_eq!(
        cli.json(&["apps", "list", "--limit", "1"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let rotated = cli.json(&["apps", "rotate", &app_id, "signing_secret", "--grace", "1h"]);
    assert!(rotated.to_string().contains("whsec_"), "{rotated}");
    // Connections.
    let grant = cli.json(&["connections", "create", &app_id, "--realm", &realm_id]);
    assert_eq!(grant["realm_id"], realm_id.as_str());
    assert!(grant["access_token"].is_string());
    assert_eq!(
        cli.json(&["connections", "list", &app_id]),
        cli.api(&format!("/api/v1/apps/{app_id}/connections"))["data"]
    );
    // Webhooks, with a receiver that answers 200.
    let hook = http_receiver();
    let config = cli.json(&[
        "webhooks",
        "set",
        &app_id,
        "sandbox",
        "--url",
        &hook,
        "--entities",
        r#"{"Customer":"*"}"#,
        "--faults",
        r#"{"delay":0.0,"seed":1}"#,
    ]);
    assert_eq!(config["url"], hook.as_str());
    assert_eq!(config["faults"]["seed"], 1);
    assert_eq!(
        cli.json(&["webhooks", "get", &app_id, "sandbox"]),
        cli.api(&format!("/api/v1/apps/{app_id}/webhooks/sandbox"))
    );
    let test = cli.json(&["webhooks", "test", &app_id, "sandbox", "--realm", &realm_id]);
    assert_eq!(test["attempt"]["outcome"], "success", "{test}");
    assert_eq!(
        cli.json(&["webhooks", "reactivate", &app_id, "sandbox"])["state"],
        "active"
    );
    let recovered = cli.json(&[
        "webhooks",
        "recover",
        &app_id,
        "sandbox",
        "--since",
        "2026-01-01T00:00:00Z",
    ]);
    assert!(recovered["queued"].is_number());
    // Events and notifications.
    let emitted = cli.json(&[
        "events",
        "emit",
        &realm_id,
        "--name",
        "Customer",
        "--id",
        "1",
        "--operation",
        "Create",
        "--data",
        r#"{"DisplayName":"Ada"}"#,
    ]);
    assert_eq!(emitted["accepted"], 1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let listed = loop {
        let listed = cli.json(&["notifications", "list", &app_id, "--status", "delivered"]);
        if listed.as_array().unwrap().iter().any(|n| n["test"] == false)
            || std::time::Instant::now() > deadline
        {
            break listed;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let delivered = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["test"] == false)
        .expect("the event's notification");
    let id = delivered["id"].as_str().unwrap().to_owned();
    let shown = cli.json(&["notifications", "show", &app_id, &id]);
    assert_eq!(
        shown,
        cli.api(&format!("/api/v1/apps/{app_id}/notifications/{id}"))
    );
    let page = cli.text(&["notifications", "show", &app_id, &id]);
    assert!(
        page.contains("payload:") && page.contains("\"eventNotifications\": ["),
        "pretty payload: {page}"
    );
    assert!(page.contains("OUTCOME") && page.contains("success"), "{page}");
    let again = cli.json(&["notifications", "redeliver", &app_id, &id]);
    assert_eq!(again["attempt"]["outcome"], "success");
    let table = cli.text(&["notifications", "list", &app_id]);
    assert!(table.contains(&id) && table.contains("delivered"), "{table}");
    // Deletions.
    assert!(cli.json(&["webhooks", "delete", &app_id, "sandbox"])["deleted"].is_string());
    cli.json(&["connections", "delete", &app_id, &realm_id]);
    cli.json(&["apps", "delete", &app_id]);
    cli.json(&["realms", "delete", &realm_id]);
    let out = cli.run(&["realms", "get", &realm_id]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn refusals_bad_arguments_and_an_unreachable_server_have_their_exit_codes() {
    let (_dir, _db, server) = started();
    let cli = Cli {
        server: server.base.clone(),
    };
    let out = cli.run(&["realms", "get", "no-such-realm"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no-such-realm") && stderr.contains("404"),
        "{stderr}"
    );
    let out = binary()
        .args(["realms", "list", "--server", &server.base])
        .env_remove("LEDGERHOOK_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--token"),
        "says what to do"
    );
    for args in [
        &["realms", "create"][..],
        &["realms", "create", "--name", "X", "--environment", "staging"],
        &["apps", "list", "--limit", "0"],
        &["webhooks", "set", "app", "sandbox"],
        &[
            "webhooks",
            "set",
            "app",
            "sandbox",
            "--url",
            "https://x.test",
            "--faults",
            "{not json",
        ],
        &["events", "emit", "realm"],
        &["notifications", "frobnicate"],
    ] {
        let out = cli.run(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The connection options may come before the subcommand too.
    let out = binary()
        .args([
            "--server",
            &server.base,
            "--token",
            OPERATOR,
            "--json",
            "realms",
            "list",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(serde_json::from_slice::<Value>(&out.stdout).unwrap().is_array());
    let nobody = format!("http://127.0.0.1:{}", free_port());
    let out = binary()
        .args(["apps", "list", "--server", &nobody, "--token", "t"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "is `ledgerhook serve` running at {nobody}? set --server"
        )),
        "{stderr}"
    );
    assert!(
        !stderr.contains(" t\n") && !String::from_utf8_lossy(&out.stdout).contains('t')
            || out.stdout.is_empty()
    );
}

#[test]
fn events_emit_from_a_file_stores_a_rerun_once_and_is_quiet_when_piped() {
    let (dir, _db, server) = started();
    let cli = Cli {
        server: server.base.clone(),
    };
    let realm = cli.json(&["realms", "create", "--name", "Bulk"]);
    let realm_id = realm["id"].as_str().unwrap().to_owned();
    let lines: Vec<String> = (0..2500)
        .map(|i| json!({"name": "Customer", "id": format!("{i}"), "operation": "Create", "data": {"DisplayName": format!("C{i}")}}).to_string())
        .collect();
    let file = dir.path().join("events.jsonl");
    std::fs::write(&file, lines.join("\n")).unwrap();
    let file = file.to_str().unwrap();
    let out = cli.run(&["events", "emit", &realm_id, "--file", file]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.stderr.is_empty(),
        "no progress bar when piped: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "accepted 2500 events in 3 batches"
    );
    // Run again: every batch's Idempotency-Key is known; nothing is stored twice.
    let again = cli.json(&["events", "emit", &realm_id, "--file", file]);
    assert_eq!(again["batches"], 3);
    let app = cli.json(&["apps", "create", "--name", "Reader"]);
    let app_id = app["id"].as_str().unwrap();
    let grant = cli.json(&["connections", "create", app_id, "--realm", &realm_id]);
    let token = grant["access_token"].as_str().unwrap();
    let hour_ago = ledgerhook_domain::Timestamp(ledgerhook_domain::Timestamp::now().millis() - 3_600_000);
    let cdc: Value = http()
        .get(format!("{}/v3/company/{realm_id}/cdc", server.base))
        .query(&[("entities", "Customer"), ("changedSince", &hour_ago.to_rfc3339())])
        .bearer_auth(token)
        .header("accept", "application/json")
        .send()
        .unwrap()
        .json()
        .unwrap();
    let customers = cdc["CDCResponse"][0]["QueryResponse"][0]["Customer"]
        .as_array()
        .unwrap();
    assert_eq!(customers.len(), 1000, "CDC answers the 1,000 oldest");
    assert!(
        customers.iter().all(|c| c["SyncToken"] == "0"),
        "a re-run changed entities"
    );
    // A JSON array works too, and a malformed file is a usage error.
    let array = dir.path().join("events.json");
    std::fs::write(&array, format!("[{}]", lines[..10].join(","))).unwrap();
    assert_eq!(
        cli.json(&["events", "emit", &realm_id, "--file", array.to_str().unwrap()])["accepted"],
        10
    );
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"name\":\"Customer\"}\nnot json\n").unwrap();
    let out = cli.run(&["events", "emit", &realm_id, "--file", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 2"));
}

#[test]
fn completions_are_printed_for_each_shell() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef ledgerhook"),
        ("fish", "complete -c ledgerhook"),
    ] {
        let out = binary().args(["completions", shell]).output().unwrap();
        assert!(out.status.success());
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(
            script.contains(marker) && script.contains("notifications"),
            "{shell}"
        );
    }
    let out = binary().args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// A receiver on loopback answering `200` to everything; answers its URL.
fn http_receiver() -> String {
    let port = free_port();
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || answer_ok(stream));
        }
    });
    format!("http://127.0.0.1:{port}/hook")
}

fn answer_ok(mut stream: std::net::TcpStream) {
    use std::io::{BufRead, BufReader, Read, Write};
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    loop {
        let mut length = 0usize;
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        if stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .is_err()
        {
            return;
        }
    }
}

/// `select count(*) from Customer` in `realm`.
fn customer_count(server: &str, realm: &str, token: &str) -> u64 {
    let answer: Value = http()
        .get(format!("{server}/v3/company/{realm}/query"))
        .query(&[("query", "select count(*) from Customer")])
        .bearer_auth(token)
        .header("accept", "application/json")
        .send()
        .unwrap()
        .json()
        .unwrap();
    answer["QueryResponse"]["totalCount"]
        .as_u64()
        .unwrap_or_else(|| panic!("{answer}"))
}

#[test]
fn a_hundred_thousand_events_show_progress_on_a_terminal_and_survive_a_kill_half_way() {
    let (dir, _db, server) = started();
    let cli = Cli {
        server: server.base.clone(),
    };
    let realm = cli.json(&["realms", "create", "--name", "Bulk"]);
    let realm_id = realm["id"].as_str().unwrap().to_owned();
    let app = cli.json(&["apps", "create", "--name", "Reader"]);
    let grant = cli.json(&[
        "connections",
        "create",
        app["id"].as_str().unwrap(),
        "--realm",
        &realm_id,
    ]);
    let token = grant["access_token"].as_str().unwrap().to_owned();
    let total = 100_000;
    let lines: Vec<String> = (0..total)
        .map(|i| json!({"name": "Customer", "id": format!("{i}"), "operation": "Create"}).to_string())
        .collect();
    let file = dir.path().join("many.jsonl");
    std::fs::write(&file, lines.join("\n")).unwrap();
    let file = file.to_str().unwrap().to_owned();
    // Through a pseudo-terminal (`script`), the progress bar is drawn; killed half-way.
    let command = format!(
        "{} events emit {realm_id} --file {file} --server {} --token {OPERATOR}",
        env!("CARGO_BIN_EXE_ledgerhook"),
        server.base
    );
    let transcript = dir.path().join("transcript");
    let mut child = std::process::Command::new("script")
        .args(["-q", "-f", "-e", "-c", &command])
        .arg(&transcript)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let stored = customer_count(&server.base, &realm_id, &token);
        if stored >= 20_000 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "only {stored} stored");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = std::process::Command::new("pkill")
        .args(["-KILL", "-f", &format!("events emit {realm_id}")])
        .status();
    let _ = child.kill();
    let _ = child.wait();
    let half = customer_count(&server.base, &realm_id, &token);
    assert!(half < total, "the kill came too late to test anything ({half})");
    let drawn = std::fs::read_to_string(&transcript).unwrap_or_default();
    assert!(
        drawn.contains(&format!("/{total} events")),
        "no progress bar on the terminal: {drawn:?}"
    );
    // Run again, piped: quiet, and every event stored exactly once.
    let out = cli.run(&["events", "emit", &realm_id, "--file", &file]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stderr.is_empty());
    assert_eq!(customer_count(&server.base, &realm_id, &token), total);
    for id in (0..total).step_by(9_973) {
        let customer: Value = http()
            .get(format!("{}/v3/company/{realm_id}/customer/{id}", server.base))
            .bearer_auth(&token)
            .header("accept", "application/json")
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(
            customer["Customer"]["SyncToken"], "0",
            "customer {id} was stored twice: {customer}"
        );
    }
}
