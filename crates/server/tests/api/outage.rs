//! PostgreSQL going away under load (SPEC §8): the server keeps running, `/readyz` says
//! not ready, ingestion answers `503 unavailable` within a few seconds (never a `202` for
//! what was not committed), and when the database is back everything resumes by itself:
//! every acknowledged event is delivered. The outage is a TCP hop between the server and
//! the shared PostgreSQL that the test cuts, so other tests keep their database.

use crate::support::TestServer;
use ledgerhook_testkit::{receiver, Kind};
use reqwest::StatusCode;
use serde_json::json;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A TCP hop to PostgreSQL that can be cut (every connection closed, new ones refused)
/// and restored on the same port.
struct Hop {
    port: u16,
    target: String,
    running: Mutex<Option<JoinHandle<()>>>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Hop {
    async fn start(target: &str) -> Arc<Hop> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let hop = Arc::new(Hop {
            port: listener.local_addr().unwrap().port(),
            target: target.to_owned(),
            running: Mutex::new(None),
            connections: Arc::default(),
        });
        hop.serve(listener);
        hop
    }

    fn serve(&self, listener: TcpListener) {
        let (target, connections) = (self.target.clone(), self.connections.clone());
        let accepting = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = target.clone();
                let relay = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                connections.lock().unwrap().push(relay);
            }
        });
        *self.running.lock().unwrap() = Some(accepting);
    }

    fn cut(&self) {
        if let Some(accepting) = self.running.lock().unwrap().take() {
            accepting.abort();
        }
        for relay in self.connections.lock().unwrap().drain(..) {
            relay.abort();
        }
    }

    async fn restore(&self) {
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(listener) => break listener,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        self.serve(listener);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_answers_503_and_everything_resumes_after_it() {
    let Ok(base_url) = std::env::var("LEDGERHOOK_TEST_DATABASE_URL") else {
        // Skips, or fails under LEDGERHOOK_TEST_REQUIRE_POSTGRES, as every PostgreSQL test.
        assert!(TestServer::start(Kind::Postgres).await.is_none());
        return;
    };
    let after_at = base_url
        .rsplit_once('@')
        .map_or(base_url.as_str(), |(_, rest)| rest);
    let address = after_at.split('/').next().unwrap().to_owned();
    let the_hop = Hop::start(&address).await;
    let server = TestServer::start_with(Kind::Postgres, |c| {
        let url = c.database_url.as_str().replacen(
            &format!("@{address}/"),
            &format!("@127.0.0.1:{}/", the_hop.port),
            1,
        );
        c.database_url = url.parse().unwrap();
        c.allow_http = true;
        c.allow_private_networks = true;
        c.sandbox_batch_window = Duration::ZERO;
    })
    .await
    .unwrap();
    let hook = receiver::start(None).await;
    let realm = server.realm("sandbox").await;
    let app = server.app("Outage").await;
    let app_id = app["id"].as_str().unwrap().to_owned();
    server.connect(&app_id, &realm).await;
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
    let ingest = |id: String| {
        let request = client
            .post(format!("{}/api/v1/realms/{realm}/events", server.base))
            .bearer_auth(crate::support::OPERATOR)
            .json(&json!([{"name": "Customer", "id": id, "operation": "Create"}]));
        async move {
            let started = Instant::now();
            let response = request.send().await.unwrap();
            let status = response.status();
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            (status, body, started.elapsed())
        }
    };
    let mut acknowledged = HashSet::new();
    for i in 0..20 {
        let (status, body, _) = ingest(format!("before-{i}")).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        acknowledged.insert(format!("before-{i}"));
    }
    the_hop.cut();
    let cut_at = Instant::now();
    let mut refused = 0;
    while cut_at.elapsed() < Duration::from_secs(10) {
        let id = format!("during-{refused}");
        let (status, body, took) = ingest(id.clone()).await;
        if status == StatusCode::ACCEPTED {
            acknowledged.insert(id); // committed before the cut took hold
            continue;
        }
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["error"]["code"], "unavailable", "{body}");
        assert!(took < Duration::from_secs(5), "a request hung for {took:?}");
        refused += 1;
        let ready = client
            .get(format!("{}/readyz", server.base))
            .send()
            .await
            .unwrap();
        assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
        let live = client
            .get(format!("{}/healthz", server.base))
            .send()
            .await
            .unwrap();
        assert_eq!(live.status(), StatusCode::OK, "the process keeps running");
    }
    assert!(refused > 0, "no request saw the outage");
    the_hop.restore().await;
    // Back by itself: ready again, ingestion accepted, every acknowledged event delivered.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = client
            .get(format!("{}/readyz", server.base))
            .send()
            .await
            .unwrap();
        if ready.status() == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "not ready again");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for i in 0..5 {
        let (status, body, _) = ingest(format!("after-{i}")).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        acknowledged.insert(format!("after-{i}"));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
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
            "acknowledged but never delivered: {missing:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
