//! A database failure in the middle of a request: the caller sees a 500 that hides the
//! cause, and the service error keeps the cause as its `source()` chain.
//!
//! Each test breaks one table under a running server (renames it, from a connection of
//! its own) and drives the operation through the server's own service types.

use crate::support::*;
use ledgerhook_delivery::outbound::{Attempt, Outcome};
use ledgerhook_domain::Timestamp;
use ledgerhook_server::ingest::IngestError;
use ledgerhook_server::oauth::{self, OAuthError};
use ledgerhook_store::ingest::{IngestRequest, NewEvent};
use ledgerhook_store::queue::Decision;
use ledgerhook_store::StoreError;
use ledgerhook_testkit::on_both_backends;
use ledgerhook_testkit::Kind;
use serde_json::json;
use std::error::Error;
use std::time::Duration;

/// Every message of `err`'s chain, outermost first.
fn chain(err: &(dyn Error + 'static)) -> Vec<String> {
    let mut out = vec![err.to_string()];
    let mut source = err.source();
    while let Some(cause) = source {
        out.push(cause.to_string());
        source = cause.source();
    }
    out
}

/// The chain ends in the database's own complaint about the missing table.
fn ends_in_the_missing_table(chain: &[String], table: &str) {
    let last = chain.last().unwrap().to_lowercase();
    assert!(
        last.contains(table) && (last.contains("no such table") || last.contains("does not exist")),
        "the cause is lost: {chain:?}"
    );
}

async fn oauth_failure(kind: Kind) {
    let Some(server) = TestServer::start(kind).await else {
        return;
    };
    let company = server.company("sandbox").await;
    let app = server.app("Token user").await;
    let app_id = app["id"].as_str().unwrap();
    let grant = server.connect(app_id, &company.realm_id).await;
    let refresh = grant["refresh_token"].as_str().unwrap();
    server.break_table("oauth_tokens").await;

    let err = oauth::refresh(&server.state, app_id, refresh)
        .await
        .err()
        .unwrap();
    assert!(
        matches!(err, OAuthError::Store(StoreError::Database(_))),
        "{err:?}"
    );
    let chain = chain(&err);
    assert_eq!(chain[0], "the token store failed");
    ends_in_the_missing_table(&chain, "oauth_tokens");

    // Over HTTP: a 500 in OAuth's shape, not a 400 invalid_grant, and no cause shown.
    let basic = format!(
        "{}:{}",
        app["client_id"].as_str().unwrap(),
        app["client_secret"].as_str().unwrap()
    );
    let response = reqwest::Client::new()
        .post(format!("{}/oauth2/v1/tokens/bearer", server.base))
        .header(
            "authorization",
            format!("Basic {}", base64_encode(basic.as_bytes())),
        )
        .form(&[("grant_type", "refresh_token"), ("refresh_token", refresh)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 500);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], "server_error", "{body}");
    assert!(!body.to_string().contains("oauth_tokens"), "{body}");
}

async fn ingestion_failure(kind: Kind) {
    let Some(server) = TestServer::start(kind).await else {
        return;
    };
    let realm_id = server.realm("sandbox").await;
    server.break_table("change_events").await;

    let request = IngestRequest {
        realm_id: realm_id.clone(),
        events: vec![NewEvent {
            entity: "Customer",
            entity_id: "1".into(),
            operation: ledgerhook_domain::Operation::Create,
            last_updated: Timestamp::now(),
            deleted_id: None,
            data: None,
            tombstone: false,
        }],
        idempotency: None,
        precondition: None,
    };
    let err = server.state.ingestor.ingest(request).await.err().unwrap();
    assert!(
        matches!(&err, IngestError::Store(inner) if matches!(**inner, StoreError::Database(_))),
        "{err:?}"
    );
    let chain = chain(&err);
    assert_eq!(chain[0], "storing the events failed");
    ends_in_the_missing_table(&chain, "change_events");

    let (status, body) = server
        .ingest(
            &realm_id,
            &json!([{"name": "Customer", "id": "2", "operation": "Create", "lastUpdated": minutes_ago(0)}]),
        )
        .await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["error"]["code"], "internal");
    assert!(!body.to_string().contains("change_events"), "{body}");
}

async fn recording_failure(kind: Kind) {
    let Some(server) = TestServer::start_loopback(kind).await else {
        return;
    };
    let company = server.company("sandbox").await;
    // Nothing listens on port 9 of loopback: the background attempt fails and retries.
    server
        .configure(
            &company.app_id,
            "sandbox",
            json!({"url": "https://127.0.0.1:9/hook", "entities": "*"}),
        )
        .await;
    let (status, _) = server
        .ingest(
            &company.realm_id,
            &json!([{"name": "Customer", "id": "1", "operation": "Create", "lastUpdated": minutes_ago(0)}]),
        )
        .await;
    assert_eq!(status, 202);
    let notification = server
        .wait_for_notifications(&company.app_id, 1, Duration::from_secs(10))
        .await
        .pop()
        .expect("a notification");
    server.break_table("attempts").await;

    let attempt = Attempt {
        started_at: Timestamp::now(),
        duration_ms: 3,
        outcome: Outcome::Success,
        status_code: Some(200),
        error: None,
        response_body: None,
        request_headers: Vec::new(),
    };
    let err = server
        .state
        .dispatcher
        .record(&notification, &attempt, &Decision::Delivered)
        .await
        .err()
        .unwrap();
    assert!(matches!(&err, StoreError::Recording(_)), "{err:?}");
    let chain = chain(&err);
    assert_eq!(chain[0], "recording attempts failed");
    ends_in_the_missing_table(&chain, "attempts");
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

on_both_backends!(oauth_failure, ingestion_failure, recording_failure);
