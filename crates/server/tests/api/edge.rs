//! The HTTP edge under hostile clients: half-sent headers are cut off after
//! `header-read-timeout` while the server keeps answering; `max-connections` makes the
//! rest wait; `api-rate-limit` per token; a request id on every answer.

use crate::support::{TestServer, OPERATOR};
use ledgerhook_testkit::Kind;
use reqwest::StatusCode;
use serde_json::json;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How many half-open connections the slow-header test holds.
const HALF_OPEN: usize = 5_000;

fn addr(server: &TestServer) -> String {
    server.base.trim_start_matches("http://").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_headers_are_cut_off_while_the_server_keeps_answering() {
    let server = TestServer::start_with(Kind::Sqlite, |c| {
        c.header_read_timeout = Duration::from_secs(2);
    })
    .await
    .unwrap();
    let target = addr(&server);
    let mut slow = Vec::with_capacity(HALF_OPEN);
    for _ in 0..HALF_OPEN {
        let mut stream = TcpStream::connect(&target).await.unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .unwrap();
        slow.push(stream);
    }
    let opened = Instant::now();
    // Meanwhile health and ingestion answer within 100 ms.
    let realm = server.realm("sandbox").await;
    let client = reqwest::Client::new();
    for _ in 0..5 {
        let started = Instant::now();
        let health = client
            .get(format!("{}/healthz", server.base))
            .send()
            .await
            .unwrap();
        assert_eq!(health.status(), StatusCode::OK);
        let events = json!([{"name": "Customer", "id": "1", "operation": "Create"}]);
        let (status, _) = server.ingest(&realm, &events).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        let took = started.elapsed();
        assert!(
            took < Duration::from_millis(100),
            "health and ingestion took {took:?}"
        );
    }
    // Every half-open connection is closed by the server within the timeout + 2 s.
    let deadline = opened + Duration::from_secs(2 + 2);
    for (i, stream) in slow.iter_mut().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now()) + Duration::from_millis(10);
        let mut buffer = [0u8; 512];
        let read = tokio::time::timeout(left, stream.read(&mut buffer)).await;
        match read {
            Ok(Ok(_)) | Ok(Err(_)) => {} // closed (possibly after a 408), or reset
            Err(_) => panic!(
                "connection {i} still open {:?} after it was opened",
                opened.elapsed()
            ),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_max_connections_wait_for_a_free_one() {
    let server = TestServer::start_with(Kind::Sqlite, |c| {
        c.max_connections = 3;
    })
    .await
    .unwrap();
    let target = addr(&server);
    let request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut open = Vec::new();
    for _ in 0..3 {
        let mut stream = TcpStream::connect(&target).await.unwrap();
        stream.write_all(request).await.unwrap();
        let mut buffer = [0u8; 256];
        let n = stream.read(&mut buffer).await.unwrap();
        assert!(
            buffer[..n].starts_with(b"HTTP/1.1 200"),
            "kept-alive connection answered"
        );
        open.push(stream);
    }
    // A fourth is not served while three are open...
    let mut fourth = TcpStream::connect(&target).await.unwrap();
    fourth.write_all(request).await.unwrap();
    let mut buffer = [0u8; 256];
    let waited = tokio::time::timeout(Duration::from_millis(500), fourth.read(&mut buffer)).await;
    assert!(waited.is_err(), "served beyond max-connections");
    // ...and is as soon as one closes.
    drop(open.pop());
    let n = tokio::time::timeout(Duration::from_secs(5), fourth.read(&mut buffer))
        .await
        .expect("served once a connection closed")
        .unwrap();
    assert!(buffer[..n].starts_with(b"HTTP/1.1 200"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_rate_limit_counts_per_token_and_never_health() {
    let server = TestServer::start_with(Kind::Sqlite, |c| {
        c.api_rate_limit = Some(ledgerhook_domain::rate::Rate::parse("3/2s").unwrap());
    })
    .await
    .unwrap();
    let app = server.app("Limited").await; // one request of the operator's three
    let key = app["api_key"].as_str().unwrap().to_owned();
    let app_id = app["id"].as_str().unwrap().to_owned();
    let client = reqwest::Client::new();
    let get = |token: &str, path: &str| {
        client
            .get(format!("{}{path}", server.base))
            .bearer_auth(token)
            .send()
    };
    for _ in 0..2 {
        assert_eq!(
            get(OPERATOR, "/api/v1/apps").await.unwrap().status(),
            StatusCode::OK
        );
    }
    let refused = get(OPERATOR, "/api/v1/apps").await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("api-rate-limit"),
        "{body}"
    );
    // Another token has its own count; health and readiness are never counted.
    let own = format!("/api/v1/apps/{app_id}");
    assert_eq!(get(&key, &own).await.unwrap().status(), StatusCode::OK);
    for path in ["/healthz", "/readyz", "/healthz", "/readyz"] {
        assert_eq!(
            get(OPERATOR, path).await.unwrap().status(),
            StatusCode::OK,
            "{path}"
        );
    }
    // After the wait it said, the token passes again.
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    assert_eq!(
        get(OPERATOR, "/api/v1/apps").await.unwrap().status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn every_answer_carries_a_request_id() {
    let server = TestServer::start(Kind::Sqlite).await.unwrap();
    let client = reqwest::Client::new();
    let made = client
        .get(format!("{}/healthz", server.base))
        .send()
        .await
        .unwrap();
    let id = made.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(id.starts_with("req_") && id.len() == 28, "{id}");
    let given = client
        .get(format!("{}/api/v1/nowhere", server.base))
        .header("x-request-id", "trace-abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(given.status(), StatusCode::NOT_FOUND);
    assert_eq!(given.headers()["x-request-id"], "trace-abc-123");
    let odd = client
        .get(format!("{}/healthz", server.base))
        .header("x-request-id", "x".repeat(300))
        .send()
        .await
        .unwrap();
    assert_ne!(
        odd.headers()["x-request-id"],
        "x".repeat(300).as_str(),
        "an unreasonable id is replaced"
    );
}
