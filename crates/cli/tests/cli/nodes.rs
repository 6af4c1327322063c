//! Delivery survives crashes: three `serve` processes on one PostgreSQL database with one
//! killed mid-run, and one SQLite process killed and restarted. Every acknowledged event
//! is delivered; no two attempts of one (configuration, realm) overlap at the receiver;
//! duplicates carry the same `webhook-id`.

use crate::support::{http, ServerProcess};
use ledgerhook_testkit::receiver::{self, Receiver, Recorded};
use ledgerhook_testkit::TestDatabase;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

const OPERATOR: &str = "nodes-test-operator-token";
const REALMS: usize = 12;

fn node_args(ca: &Path) -> Vec<String> {
    [
        "--allow-private-networks",
        "--sandbox-batch-window",
        "0",
        "--delivery-timeout",
        "1s",
        "--ca-file",
        ca.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn start_node(dir: &Path, url: &str, ca: &Path) -> ServerProcess {
    let args = node_args(ca);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let envs = [
        ("LEDGERHOOK_ADMIN_TOKEN", OPERATOR),
        ("LEDGERHOOK_LOG", "info,ledgerhook_delivery::dispatcher=debug"),
    ];
    ServerProcess::start(dir, url, &args, &envs)
}

fn post(base: &str, path: &str, body: Value) -> (u16, Value) {
    match http()
        .post(format!("{base}{path}"))
        .bearer_auth(OPERATOR)
        .json(&body)
        .send()
    {
        Ok(r) => (r.status().as_u16(), r.json().unwrap_or(Value::Null)),
        Err(_) => (0, Value::Null),
    }
}

/// One app subscribed to `hook`, connected to `REALMS` sandbox realms.
fn setup(base: &str, hook: &Receiver) -> Vec<String> {
    let (_, app) = post(base, "/api/v1/apps", json!({"name": "Nodes"}));
    let app_id = app["id"].as_str().unwrap().to_owned();
    let url = hook.url("https", "/hook");
    let response = http()
        .put(format!("{base}/api/v1/apps/{app_id}/webhooks/sandbox"))
        .bearer_auth(OPERATOR)
        .json(&json!({"url": url, "entities": "*"}))
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    (0..REALMS)
        .map(|_| {
            let (_, realm) = post(
                base,
                "/api/v1/realms",
                json!({"name": "R", "environment": "sandbox"}),
            );
            let realm_id = realm["id"].as_str().unwrap().to_owned();
            let (status, _) = post(
                base,
                &format!("/api/v1/apps/{app_id}/connections"),
                json!({"realm_id": realm_id}),
            );
            assert_eq!(status, 201);
            realm_id
        })
        .collect()
}

/// Sends one event per request, round-robin over realms and `bases`; answers the ids of
/// the acknowledged events.
fn ingest(bases: &[String], realms: &[String], from: usize, count: usize) -> Vec<String> {
    let mut acknowledged = Vec::new();
    for n in from..from + count {
        let id = format!("e{n}");
        let realm = &realms[n % realms.len()];
        let base = &bases[n % bases.len()];
        let events = json!([{"name": "Customer", "id": id, "operation": "Update"}]);
        if post(base, &format!("/api/v1/realms/{realm}/events"), events).0 == 202 {
            acknowledged.push(id);
        }
    }
    acknowledged
}

fn delivered(seen: &[Recorded]) -> HashMap<String, Vec<(String, &Recorded)>> {
    let mut by_event: HashMap<String, Vec<(String, &Recorded)>> = HashMap::new();
    for request in seen.iter().filter(|r| r.status == 200) {
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        for entity in body["eventNotifications"][0]["dataChangeEvent"]["entities"]
            .as_array()
            .unwrap()
        {
            let id = entity["id"].as_str().unwrap().to_owned();
            by_event
                .entry(id)
                .or_default()
                .push((request.header("webhook-id").unwrap().to_owned(), request));
        }
    }
    by_event
}

fn wait_until_delivered(hook: &Receiver, ids: &[String], timeout: Duration) -> Vec<Recorded> {
    let deadline = Instant::now() + timeout;
    loop {
        let seen = hook.requests();
        let got = delivered(&seen);
        let missing: Vec<&String> = ids.iter().filter(|id| !got.contains_key(*id)).collect();
        if missing.is_empty() {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "{} acknowledged events never delivered, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(5)]
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn realm_of(r: &Recorded) -> String {
    let body: Value = serde_json::from_slice(&r.body).unwrap();
    body["eventNotifications"][0]["realmId"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// No two requests of one realm overlapped; duplicates of an event share a webhook-id.
fn check_streams(seen: &[Recorded]) {
    for (i, a) in seen.iter().enumerate() {
        for b in &seen[i + 1..] {
            if a.started < b.finished && b.started < a.finished {
                assert_ne!(realm_of(a), realm_of(b), "two attempts of one realm overlapped");
            }
        }
    }
    for (id, copies) in delivered(seen) {
        let ids: HashSet<&String> = copies.iter().map(|(w, _)| w).collect();
        assert_eq!(
            ids.len(),
            1,
            "event {id} was delivered under different webhook-ids"
        );
    }
}

fn attempts_logged(server: &ServerProcess) -> usize {
    server
        .stderr()
        .lines()
        .filter(|l| l.contains("ledgerhook_delivery::dispatcher") && l.contains("attempt"))
        .count()
}

#[test]
fn three_postgres_nodes_share_the_work_and_survive_a_kill() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let Some(db) = runtime.block_on(TestDatabase::postgres()) else {
        return;
    };
    let pki = receiver::pki();
    let hook = runtime.block_on(receiver::start(Some(pki.signed.clone())));
    hook.set(200, Duration::from_millis(20));
    let dir = tempfile::tempdir().unwrap();
    let ca = pki.write_ca(dir.path());
    let nodes: Vec<ServerProcess> = (0..3).map(|_| start_node(dir.path(), &db.url, &ca)).collect();
    let bases: Vec<String> = nodes.iter().map(|n| n.base.clone()).collect();
    let realms = setup(&bases[0], &hook);

    let mut acknowledged = ingest(&bases, &realms, 0, 150);
    let mut nodes = nodes;
    let killed = nodes.remove(1);
    let killed_attempts = attempts_logged(&killed);
    killed.kill();
    let survivors = vec![bases[0].clone(), bases[2].clone()];
    acknowledged.extend(ingest(&survivors, &realms, 150, 90));
    let seen = wait_until_delivered(&hook, &acknowledged, Duration::from_secs(40));
    check_streams(&seen);
    let per_node = [
        attempts_logged(&nodes[0]),
        killed_attempts,
        attempts_logged(&nodes[1]),
    ];
    assert!(per_node.iter().all(|n| *n > 0), "attempts per node: {per_node:?}");
    eprintln!(
        "postgres: {} events acknowledged, {} requests received, attempts per node {per_node:?}",
        acknowledged.len(),
        seen.len()
    );
}

#[test]
fn a_sqlite_node_killed_and_restarted_delivers_everything() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let db = TestDatabase::sqlite();
    let pki = receiver::pki();
    let hook = runtime.block_on(receiver::start(Some(pki.signed.clone())));
    hook.set(200, Duration::from_millis(20));
    let dir = tempfile::tempdir().unwrap();
    let ca = pki.write_ca(dir.path());
    let node = start_node(dir.path(), &db.url, &ca);
    let realms = setup(&node.base, &hook);
    let bases = vec![node.base.clone()];
    let acknowledged = ingest(&bases, &realms, 0, 120);
    node.kill();
    let delivered_before = hook.hits();
    let node = start_node(dir.path(), &db.url, &ca);
    let seen = wait_until_delivered(&hook, &acknowledged, Duration::from_secs(30));
    check_streams(&seen);
    eprintln!(
        "sqlite: {} acknowledged, {delivered_before} delivered before the kill, {} after restart",
        acknowledged.len(),
        seen.len()
    );
    assert!(node.terminate().success());
}
