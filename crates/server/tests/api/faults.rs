//! Fault injection on sandbox configurations (SPEC §9): refused on production and when
//! malformed; drop, duplicate and delay exactly as the seed chooses, listed on each
//! notification, counted in `/metrics`, never touching bytes or `webhook-id`s.

use crate::support::{TestServer, OPERATOR};
use ledgerhook_domain::faults::{Fault, Faults};
use ledgerhook_testkit::on_both_backends;
use ledgerhook_testkit::{receiver, Kind};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;

on_both_backends!(
    faults_are_for_sandbox_only_and_validated,
    injected_faults_follow_the_seed_and_are_listed,
);

async fn faults_are_for_sandbox_only_and_validated(kind: Kind) {
    let Some(server) = TestServer::start_loopback(kind).await else {
        return;
    };
    let app = server.app("Faulty").await;
    let app_id = app["id"].as_str().unwrap();
    let url = "http://127.0.0.1:9/hook";
    let put = |env: &'static str, faults: Value| {
        let body = json!({"url": url, "entities": "*", "faults": faults});
        let path = format!("/api/v1/apps/{app_id}/webhooks/{env}");
        let server = &server;
        async move { server.call(Method::PUT, &path, Some(OPERATOR), Some(&body)).await }
    };
    let cases = [
        (
            "production",
            json!({"drop": 0.1}),
            "faults: fault injection is for sandbox configurations only",
        ),
        (
            "sandbox",
            json!({"drop": 1.5}),
            "faults: drop must be a probability from 0 to 1",
        ),
        ("sandbox", json!({"lose": 0.1}), "faults: unknown field `lose`"),
        (
            "sandbox",
            json!({"delay": 0.5, "delay_by": "soon"}),
            "faults.delay_by:",
        ),
        ("sandbox", json!({"duplicate": "often"}), "faults:"),
    ];
    for (env, faults, message) in cases {
        let (status, body) = put(env, faults.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{env} {faults}: {body}");
        assert_eq!(body["error"]["code"], "invalid_request");
        let text = body["error"]["message"].as_str().unwrap();
        assert!(text.contains(message), "{faults}: {text}");
    }
    // Nothing was saved by the refusals.
    let (status, _) = server
        .get(&format!("/api/v1/apps/{app_id}/webhooks/sandbox"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, saved) = put(
        "sandbox",
        json!({"drop": 0.25, "delay": 1, "delay_by": "2s", "seed": 42}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{saved}");
    assert_eq!(
        saved["faults"],
        json!({"drop": 0.25, "duplicate": 0.0, "delay": 1.0, "delay_by": "2s", "seed": 42})
    );
    // Production without faults is fine; null (or leaving it out) switches it off.
    assert_eq!(put("production", Value::Null).await.0, StatusCode::OK);
    let (_, off) = put("sandbox", Value::Null).await;
    assert_eq!(off["faults"], Value::Null);
}

async fn injected_faults_follow_the_seed_and_are_listed(kind: Kind) {
    let Some(server) = TestServer::start_loopback(kind).await else {
        return;
    };
    let hook = receiver::start(None).await;
    let realm = server.realm("sandbox").await;
    let app = server.app("Faulty").await;
    let app_id = app["id"].as_str().unwrap().to_owned();
    server.connect(&app_id, &realm).await;
    let settings = json!({"drop": 0.3, "duplicate": 0.3, "delay": 0.3, "delay_by": "1s", "seed": 7});
    let body = json!({"url": hook.url("http", "/hook"), "entities": "*", "faults": settings});
    server.configure(&app_id, "sandbox", body).await;
    let count = 24;
    for i in 0..count {
        let events = json!([{"name": "Customer", "id": format!("{i}"), "operation": "Create"}]);
        assert_eq!(server.ingest(&realm, &events).await.0, StatusCode::ACCEPTED);
        let made = server
            .wait_for_notifications(&app_id, i + 1, Duration::from_secs(10))
            .await;
        assert_eq!(made.len(), i + 1, "one notification per ingestion");
    }
    let expected: Vec<Vec<Fault>> = {
        let faults = Faults {
            drop: 0.3,
            duplicate: 0.3,
            delay: 0.3,
            delay_by: Duration::from_secs(1),
            seed: 7,
        };
        (0..count as u64).map(|n| faults.decide(n)).collect()
    };
    let names = |faults: &[Fault]| faults.iter().map(|f| f.as_str()).collect::<Vec<_>>();
    for fault in Fault::ALL {
        assert!(
            expected.iter().any(|f| f.contains(&fault)),
            "seed 7 never chooses {fault:?}"
        );
    }
    let stored = server.stored_notifications(&app_id).await;
    // Duplicates are sent after the first delivery; wait for every expected request.
    let wanted: usize = expected
        .iter()
        .map(|f| {
            if f.contains(&Fault::Drop) {
                0
            } else if f.contains(&Fault::Duplicate) {
                2
            } else {
                1
            }
        })
        .sum();
    let requests = hook.wait_for(wanted, Duration::from_secs(15)).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let requests = if hook.hits() > requests.len() {
        hook.requests()
    } else {
        requests
    };
    assert_eq!(requests.len(), wanted, "requests the receiver got");
    let mut by_id: HashMap<String, Vec<&receiver::Recorded>> = HashMap::new();
    for request in &requests {
        by_id
            .entry(request.header("webhook-id").unwrap().to_owned())
            .or_default()
            .push(request);
    }
    let (_, list) = server
        .get(&format!("/api/v1/apps/{app_id}/notifications?limit=100"))
        .await;
    let listed: HashMap<String, Value> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["id"].as_str().unwrap().to_owned(), n.clone()))
        .collect();
    for (notification, faults) in stored.iter().zip(&expected) {
        let id = &notification.id;
        assert_eq!(listed[id]["faults"], json!(names(faults)), "{id} in the list");
        let (_, detail) = server
            .get(&format!("/api/v1/apps/{app_id}/notifications/{id}"))
            .await;
        assert_eq!(detail["faults"], json!(names(faults)), "{id} in the detail");
        assert_eq!(detail["status"], "delivered", "{detail}");
        let received = by_id.get(id).map(Vec::as_slice).unwrap_or_default();
        let attempts = detail["attempts"].as_array().unwrap();
        if faults.contains(&Fault::Drop) {
            assert!(received.is_empty(), "{id} was dropped but sent");
            assert!(attempts.is_empty());
            continue;
        }
        let copies = if faults.contains(&Fault::Duplicate) { 2 } else { 1 };
        assert_eq!(received.len(), copies, "{id}: {faults:?}");
        assert_eq!(attempts.len(), copies, "{detail}");
        for request in received {
            assert_eq!(request.body, notification.payload, "{id}: the bytes changed");
        }
        let created = ledgerhook_domain::Timestamp::parse(detail["created_at"].as_str().unwrap()).unwrap();
        let first = ledgerhook_domain::Timestamp::parse(attempts[0]["started_at"].as_str().unwrap()).unwrap();
        let waited = first.millis() - created.millis();
        if faults.contains(&Fault::Delay) {
            assert!(waited >= 1000, "{id} was delayed only {waited} ms");
        } else {
            assert!(waited < 1000, "{id} waited {waited} ms without a delay");
        }
    }
    let (_, metrics) = server.get("/metrics").await;
    let metrics = metrics.as_str().unwrap();
    for fault in Fault::ALL {
        let n = expected.iter().filter(|f| f.contains(&fault)).count();
        let line = format!("ledgerhook_faults_injected{{fault=\"{}\"}} {n}", fault.as_str());
        assert!(metrics.contains(&line), "{line} not in\n{metrics}");
    }
}
