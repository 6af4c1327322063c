//! PostgreSQL going away under load (SPEC §8): the test makes a PostgreSQL cluster of its
//! own (`pg_createcluster` on a free port, so that other tests keep their database), runs
//! two server nodes on it under concurrent ingestion, stops the cluster with
//! `pg_ctlcluster` for 10 s and starts it again. While it is down both nodes keep
//! running, `/readyz` says not ready, and ingestion answers `503 unavailable` within a
//! few seconds (never a `202` for what was not committed); when it is back both resume by
//! themselves and every acknowledged event is delivered. Without the `postgresql-common`
//! tools (or as a user who may not use them) the test says it skips, and fails instead
//! under `LEDGERHOOK_TEST_REQUIRE_POSTGRES=1`.

use crate::support::TestServer;
use ledgerhook_testkit::{receiver, Kind};
use reqwest::StatusCode;
use serde_json::json;
use std::collections::HashSet;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A PostgreSQL cluster of the test's own, dropped with it.
struct Cluster {
    version: String,
    name: String,
    port: u16,
}

impl Cluster {
    /// Creates and starts a cluster (trust authentication on loopback), or says why not.
    fn create() -> Result<Cluster, String> {
        let version = std::fs::read_dir("/etc/postgresql")
            .map_err(|e| format!("no /etc/postgresql: {e}"))?
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .max()
            .ok_or("no PostgreSQL version under /etc/postgresql")?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let cluster = Cluster {
            version,
            name: format!("ledgerhook_outage_{port}"),
            port,
        };
        cluster.run(
            "pg_createcluster",
            &["--port", &port.to_string(), "--", "-A", "trust"],
        )?;
        cluster.ctl("start")?;
        Ok(cluster)
    }

    fn run(&self, program: &str, extra: &[&str]) -> Result<(), String> {
        let output = Command::new(program)
            .args([self.version.as_str(), self.name.as_str()])
            .args(extra)
            .output()
            .map_err(|e| format!("{program}: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "{program} {extra:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        Ok(())
    }

    /// `pg_ctlcluster VERSION NAME action`.
    fn ctl(&self, action: &str) -> Result<(), String> {
        let output = Command::new("pg_ctlcluster")
            .args([
                "--skip-systemctl-redirect",
                self.version.as_str(),
                self.name.as_str(),
                action,
            ])
            .args(if action == "stop" {
                &["-m", "fast"][..]
            } else {
                &[][..]
            })
            .output()
            .map_err(|e| format!("pg_ctlcluster: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "pg_ctlcluster {action}: {}",
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        Ok(())
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.run("pg_dropcluster", &["--stop"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_answers_503_and_everything_resumes_after_it() {
    let cluster = match Cluster::create() {
        Ok(cluster) => cluster,
        Err(why) => {
            assert!(
                std::env::var("LEDGERHOOK_TEST_REQUIRE_POSTGRES").as_deref() != Ok("1"),
                "LEDGERHOOK_TEST_REQUIRE_POSTGRES=1 but no cluster of the test's own: {why}"
            );
            eprintln!("skipping: no PostgreSQL cluster of the test's own: {why}");
            return;
        }
    };
    let on_cluster = |c: &mut ledgerhook_server::Config| {
        c.database_url = cluster.url().parse().unwrap();
        c.allow_http = true;
        c.allow_private_networks = true;
        c.sandbox_batch_window = Duration::ZERO;
    };
    let Some(server) = TestServer::start_with(Kind::Postgres, on_cluster).await else {
        return; // no PostgreSQL configured: skipped (or failed) as every PostgreSQL test
    };
    let other = TestServer::start_with(Kind::Postgres, on_cluster).await.unwrap();
    let nodes = [server.base.clone(), other.base.clone()];
    let hook = receiver::start(None).await;
    // Ten realms, so that delivery after the outage runs in parallel streams.
    let mut realms = Vec::new();
    for _ in 0..10 {
        realms.push(server.realm("sandbox").await);
    }
    let realm = realms[0].clone();
    let app = server.app("Outage").await;
    let app_id = app["id"].as_str().unwrap().to_owned();
    for realm in &realms {
        server.connect(&app_id, realm).await;
    }
    server
        .configure(
            &app_id,
            "sandbox",
            json!({"url": hook.url("http", "/hook"), "entities": "*"}),
        )
        .await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let acknowledged = Arc::new(Mutex::new(HashSet::new()));
    for i in 0..20 {
        let id = format!("before-{i}");
        let (status, body, _) = ingest(&client, &nodes[i % 2], &realm, &id).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        acknowledged.lock().unwrap().insert(id);
    }
    // Four clients ingest through both nodes for the whole outage.
    let down = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(Mutex::new(0usize));
    let mut clients = Vec::new();
    for client_number in 0..4 {
        let (client, node, realms) = (client.clone(), nodes[client_number % 2].clone(), realms.clone());
        let (acknowledged, down, stop, refused) =
            (acknowledged.clone(), down.clone(), stop.clone(), refused.clone());
        clients.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) && n < 100_000 {
                let id = format!("load-{client_number}-{n}");
                n += 1;
                let (status, body, took) = ingest(&client, &node, &realms[n % realms.len()], &id).await;
                if status == StatusCode::ACCEPTED {
                    acknowledged.lock().unwrap().insert(id);
                    continue;
                }
                assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
                assert_eq!(body["error"]["code"], "unavailable", "{body}");
                assert!(took < Duration::from_secs(5), "a request hung for {took:?}");
                assert!(
                    down.load(Ordering::SeqCst),
                    "refused while the database was up: {body}"
                );
                *refused.lock().unwrap() += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    down.store(true, Ordering::SeqCst);
    cluster.ctl("stop").unwrap();
    let stopped_at = Instant::now();
    while stopped_at.elapsed() < Duration::from_secs(10) {
        for node in &nodes {
            let ready = client.get(format!("{node}/readyz")).send().await.unwrap();
            assert_eq!(
                ready.status(),
                StatusCode::SERVICE_UNAVAILABLE,
                "{node} ready while the database is down"
            );
            let live = client.get(format!("{node}/healthz")).send().await.unwrap();
            assert_eq!(live.status(), StatusCode::OK, "the process keeps running");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    cluster.ctl("start").unwrap();
    // Back by itself: both nodes ready again.
    let deadline = Instant::now() + Duration::from_secs(30);
    for node in &nodes {
        loop {
            let ready = client.get(format!("{node}/readyz")).send().await.unwrap();
            if ready.status() == StatusCode::OK {
                break;
            }
            assert!(Instant::now() < deadline, "{node} not ready again");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // A connection a pool held through the outage may fail once more: a moment's grace.
    tokio::time::sleep(Duration::from_secs(1)).await;
    down.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.await.unwrap();
    }
    assert!(*refused.lock().unwrap() > 0, "no request saw the outage");
    for (i, node) in nodes.iter().enumerate() {
        let id = format!("after-{i}");
        let (status, body, _) = ingest(&client, node, &realm, &id).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        acknowledged.lock().unwrap().insert(id);
    }
    // Every acknowledged event is delivered, before, during and after the outage.
    let acknowledged = acknowledged.lock().unwrap().clone();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut delivered = HashSet::new();
        for request in hook.requests() {
            let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
            for entity in body["eventNotifications"][0]["dataChangeEvent"]["entities"]
                .as_array()
                .unwrap()
            {
                delivered.insert(entity["id"].as_str().unwrap().to_owned());
            }
        }
        let missing: Vec<&String> = acknowledged
            .iter()
            .filter(|id| !delivered.contains(*id))
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} acknowledged never delivered ({} requests received): {:?}",
            missing.len(),
            acknowledged.len(),
            hook.requests().len(),
            &missing[..missing.len().min(10)]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(other);
    drop(server);
}

/// One single-event ingestion request to `node`; answers its status, body and duration.
async fn ingest(
    client: &reqwest::Client,
    node: &str,
    realm: &str,
    id: &str,
) -> (StatusCode, serde_json::Value, Duration) {
    let started = Instant::now();
    let response = client
        .post(format!("{node}/api/v1/realms/{realm}/events"))
        .bearer_auth(crate::support::OPERATOR)
        .json(&json!([{"name": "Customer", "id": id, "operation": "Create"}]))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    (status, body, started.elapsed())
}
