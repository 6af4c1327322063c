//! Ingestion: validation, latest-state rules, idempotency and group commit.

use crate::support::{minutes_ago, TestServer, OPERATOR};
use ledgerhook_testkit::on_both_backends;
use ledgerhook_testkit::Kind;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

on_both_backends!(
    accepted_events_become_cdc_state,
    out_of_order_changes_keep_the_newest_body,
    out_of_order_changes_in_one_request_keep_the_newest_body,
    delete_and_merge_make_tombstones,
    every_bad_event_refuses_the_whole_request,
    more_than_1000_events_are_refused,
    idempotency_key_replays_and_conflicts,
    concurrent_requests_are_all_committed,
    merges_are_made_through_the_management_api,
);

async fn accepted_events_become_cdc_state(kind: Kind) {
    let Some(server) = TestServer::start(kind).await else {
        return;
    };
    let company = server.company("sandbox").await;
    let t = minutes_ago(5);
    let (status, body) = server
        .ingest(
            &company.realm_id,
            &json!([{"name": "Customer", "id": "58", "operation": "Create", "lastUpdated": t,
                     "data": {"DisplayName": "Amy's Bird Sanctuary", "Balance": 239.0}}]),
        )
        .await;
    assert_eq!((status, body), (StatusCode::ACCEPTED, json!({"accepted": 1})));
    let objects = server.cdc_objects(&company, "Customer", &minutes_ago(10)).await;
    assert_eq!(objects.len(), 1);
    let customer = &objects[0];
    assert_eq!(customer["DisplayName"], "Amy's Bird Sanctuary");
    assert_eq!(customer["Id"], "58");
    assert_eq!(customer["SyncToken"], "0");
    assert_eq!(customer["domain"], "QBO");
    assert_eq!(customer["sparse"], false);
    assert_eq!(customer["MetaData"]["LastUpdatedTime"], t.as_str());
    assert_eq!(customer["MetaData"]["CreateTime"], t.as_str());

    // Without lastUpdated the server's time is used.
    let (status, _) = server
        .ingest(
            &company.realm_id,
            &json!([{"name": "Invoice", "id": "1", "operation": "Create"}]),
        )
        .await;
    assert_eq!(status, 202);
    let invoices = server.cdc_objects(&company, "Invoice", &minutes_ago(1)).await;
    assert_eq!(invoices.len(), 1);
}

fn update(id: &str, minutes: i64, version: &str) -> Value {
    json!({"name": "Customer", "id": id, "operation": "Update", "lastUpdated": minutes_ago(minutes),
           "data": {"DisplayName": version}})
}

async fn out_of_order_changes_keep_the_newest_body(kind: Kind) {
    let Some(server) = TestServer::start(kind).await else {
        return;
    };
    let company = server.company("production").await;
    for event in [
        update("7", 30, "v1"),
        update("7", 10, "v3"),
        update("7", 20, "v2 (older, arrives last)"),
    ] {
        assert_eq!(server.ingest(&company.realm_id, &json!([event])).await.0, 202);
    }
    let objects = server.cdc_objects(&company, "Customer", &minutes_ago(60)).await;
    assert_eq!(objects.len(), 1);
    assert_eq!(objects[0]["DisplayName"], "v3");
    // Two changes were applied (v1, then v3); the stale one was not.
    assert_eq!(objects[0]["SyncToken"], "1");
}

async fn out_of_order_changes_in_one_request_keep_the_newest_body(kind: Kind) {
    let Some(server) = TestServer::start(kind).await else {
        return;
    };
    let company = server.company("production").await;
    let batch = json!([
        update("8", 30, "v1"),
        update("9", 5, "other"),
        update("8", 10, "v3"),
        update("8", 20, "v2")
    ]);
    assert_eq!(server.ingest(&company.realm_id, &batch).await.0, 202);
    let objects = server.cdc_objects(&company, "Customer", &minutes_ago(60)).await;
    let eight = objects.iter().find(|o| o["Id"] == "8").unwrap();
    assert_eq!(eight["DisplayName"], "v3");
    assert_eq!(eight["SyncToken"], "1");
}

async fn delete_and_merge_make_tombstones(kind: Kind) {
    let Some(server) = TestServer::start(kind).await else {
        return;
    };
    let company = server.company("sandbox").await;
    let events = json!([
        {"name": "Customer", "id": "1", "operation": "Create", "lastUpdated": minutes_ago(9), "data": {"DisplayName": "A"}},
        {"name": "Customer", "id": "2", "operation": "Create", "lastUpdated": minutes_ago(9), "data": {"DisplayName": "B"}},
        {"name": "Customer", "id": "3", "operation": "Create", "lastUpdated": minutes_ago(9), "data": {"DisplayName": "C"}},
        {"name": "Customer", "id": "1", "operation": "Merge", "deletedId": "2", "lastUpdated": minutes_ago(5),
         "data": {"DisplayName": "A (merged)"}},
        {"name": "Customer", "id": "3", "operation": "Delete", "lastUpdated": minutes_ago(4)},
        // An older update of the deleted customer arrives late: it stays deleted.
        {"name": "Customer", "id": "3", "operation": "Update", "lastUpdated": minutes_ago(8), "data": {"DisplayName": "C2"}},
    ]);
    assert_eq!(server.ingest(&company.realm_id, &events).await.0, 202);
    let objects = server.cdc_objects(&company, "Customer", &minutes_ago(60)).await;
    let by_id = |id: &str| objects.iter().find(|o| o["Id"] == id).cloned().unwrap();
    assert_eq!(by_id("1")["DisplayName"], "A (merged)");
    assert_eq!(by_id("1")["SyncToken"], "1");
    let tombstone = by_id("2");
    assert_eq!(tombstone["status"], "Deleted");
    assert_eq!(tombstone["domain"], "QBO");
    assert!(tombstone.get("DisplayName").is_none());
    assert_eq!(by_id("3")["status"], "Deleted");
}

async fn every_bad_event_refuses_the_whole_request(kind: Kind) {
    let Some(server) = TestServer::start(kind).await else {
        return;
    };
    let company = server.company("sandbox").await;
    let good = json!({"name": "Customer", "id": "1", "operation": "Create"});
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"name": "Widget", "id": "1", "operation": "Create"}),
            "Widget",
        ),
        (
            json!({"name": "Preferences", "id": "1", "operation": "Delete"}),
            "does not allow operation \"Delete\"",
        ),
        (
            json!({"name": "Customer", "id": "1", "operation": "Explode"}),
            "Explode",
        ),
        (
            json!({"name": "Customer", "id": "1", "operation": "Merge"}),
            "needs deletedId",
        ),
        (
            json!({"name": "Customer", "id": "1", "operation": "Update", "deletedId": "2"}),
            "only allowed with operation Merge",
        ),
        (
            json!({"name": "Customer", "id": "1", "operation": "Merge", "deletedId": "1"}),
            "differ from id",
        ),
        (
            json!({"name": "Customer", "id": "", "operation": "Create"}),
            "id must be",
        ),
        (
            json!({"name": "Customer", "id": 5, "operation": "Create"}),
            "invalid type",
        ),
        (
            json!({"name": "Customer", "operation": "Create"}),
            "missing field `id`",
        ),
        (
            json!({"name": "Customer", "id": "1", "operation": "Create", "lastUpdated": "yesterday"}),
            "lastUpdated",
        ),
        (
            json!({"name": "Customer", "id": "1", "operation": "Create", "data": [1]}),
            "data must be a JSON object",
        ),
        (
            json!({"name": "Customer", "id": "1", "operation": "Create", "colour": "red"}),
            "unknown field",
        ),
    ];
    for (bad, needle) in cases {
        let (status, body) = server.ingest(&company.realm_id, &json!([good, bad])).await;
        assert_eq!(status, 400, "{bad} accepted");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("events[1]") && message.contains(needle),
            "{message} lacks {needle}"
        );
    }
    for (body, needle) in [
        (json!({"name": "Customer"}), "JSON array"),
        (json!([]), "no events"),
    ] {
        let (status, answer) = server.ingest(&company.realm_id, &body).await;
        assert_eq!(status, 400);
        assert!(answer["error"]["message"].as_str().unwrap().contains(needle));
    }
    let (status, _) = server
        .call_raw(
            Method::POST,
            &format!("/api/v1/realms/{}/events", company.realm_id),
            Some(OPERATOR),
            b"[{".to_vec(),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = server.ingest("404404404", &json!([good])).await;
    assert_eq!(status, 404);
    // Nothing of any refused request was stored.
    assert!(server
        .cdc_objects(&company, "Customer", &minutes_ago(60))
        .await
        .is_empty());
}

async fn more_than_1000_events_are_refused(kind: Kind) {
    let Some(server) = TestServer::start(kind).await else {
        return;
    };
    let company = server.company("sandbox").await;
    let events: Vec<Value> = (0..1001)
        .map(|i| json!({"name": "Customer", "id": i.to_string(), "operation": "Create"}))
        .collect();
    let (status, body) = server
        .ingest(&company.realm_id, &Value::Array(events.clone()))
        .await;
    assert_eq!(status, 400);
    assert!(body["error"]["message"].as_str().unwrap().contains("1001 events"));
    assert!(server
        .cdc_objects(&company, "Customer", &minutes_ago(60))
        .await
        .is_empty());
    let (status, body) = server
        .ingest(&company.realm_id, &Value::Array(events[..1000].to_vec()))
        .await;
    assert_eq!((status, body), (StatusCode::ACCEPTED, json!({"accepted": 1000})));
}

async fn idempotency_key_replays_and_conflicts(kind: Kind) {
    let Some(server) = TestServer::start(kind).await else {
        return;
    };
    let company = server.company("sandbox").await;
    let path = format!("/api/v1/realms/{}/events", company.realm_id);
    let body = serde_json::to_vec(&json!([update("42", 5, "once")])).unwrap();
    let send = |bytes: Vec<u8>, key: &'static str| {
        let client = reqwest::Client::new();
        let url = format!("{}{path}", server.base);
        async move {
            let response = client
                .post(url)
                .bearer_auth(OPERATOR)
                .header("Idempotency-Key", key)
                .body(bytes)
                .send()
                .await
                .unwrap();
            (response.status(), response.json::<Value>().await.unwrap())
        }
    };
    assert_eq!(
        send(body.clone(), "k-1").await,
        (StatusCode::ACCEPTED, json!({"accepted": 1}))
    );
    assert_eq!(
        send(body.clone(), "k-1").await,
        (StatusCode::ACCEPTED, json!({"accepted": 1}))
    );
    let other = serde_json::to_vec(&json!([update("42", 4, "different")])).unwrap();
    let (status, answer) = send(other, "k-1").await;
    assert_eq!(status, 409);
    assert_eq!(answer["error"]["code"], "conflict");
    let objects = server.cdc_objects(&company, "Customer", &minutes_ago(60)).await;
    assert_eq!(objects.len(), 1);
    assert_eq!(objects[0]["DisplayName"], "once");
    assert_eq!(objects[0]["SyncToken"], "0", "the replay was applied again");
    // Another key is another request.
    assert_eq!(send(body, "k-2").await.0, 202);
    assert_eq!(
        server.cdc_objects(&company, "Customer", &minutes_ago(60)).await[0]["SyncToken"],
        "1"
    );
}

async fn concurrent_requests_are_all_committed(kind: Kind) {
    let Some(server) = TestServer::start(kind).await else {
        return;
    };
    let company = server.company("sandbox").await;
    let mut tasks = Vec::new();
    for request in 0..64 {
        let base = server.base.clone();
        let realm = company.realm_id.clone();
        tasks.push(tokio::spawn(async move {
            let events: Vec<Value> = (0..5)
                .map(|i| json!({"name": "Customer", "id": format!("{request}-{i}"), "operation": "Create", "lastUpdated": minutes_ago(5)}))
                .collect();
            let response = reqwest::Client::new()
                .post(format!("{base}/api/v1/realms/{realm}/events"))
                .bearer_auth(OPERATOR)
                .json(&events)
                .send()
                .await
                .unwrap();
            response.status()
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), 202);
    }
    assert_eq!(
        server
            .cdc_objects(&company, "Customer", &minutes_ago(60))
            .await
            .len(),
        320
    );
}

async fn merges_are_made_through_the_management_api(kind: Kind) {
    let Some(server) = TestServer::start(kind).await else {
        return;
    };
    let company = server.company("sandbox").await;
    let creates = json!([
        {"name": "Customer", "id": "12", "operation": "Create", "lastUpdated": minutes_ago(10), "data": {"DisplayName": "Keep"}},
        {"name": "Customer", "id": "57", "operation": "Create", "lastUpdated": minutes_ago(10), "data": {"DisplayName": "Lose"}},
    ]);
    assert_eq!(server.ingest(&company.realm_id, &creates).await.0, 202);
    let path = format!("/api/v1/realms/{}/merge", company.realm_id);
    let (status, body) = server
        .post(
            &path,
            &json!({"entity": "Customer", "from_id": "57", "into_id": "12"}),
        )
        .await;
    assert_eq!((status, body), (StatusCode::ACCEPTED, json!({"accepted": 1})));
    let objects = server.cdc_objects(&company, "Customer", &minutes_ago(60)).await;
    let loser = objects.iter().find(|o| o["Id"] == "57").unwrap();
    assert_eq!(loser["status"], "Deleted");
    let survivor = objects.iter().find(|o| o["Id"] == "12").unwrap();
    assert_eq!(survivor["DisplayName"], "Keep");
    assert_eq!(survivor["SyncToken"], "1");

    for (body, status, needle) in [
        (
            json!({"entity": "Invoice", "from_id": "1", "into_id": "2"}),
            400,
            "Merge",
        ),
        (
            json!({"entity": "Customer", "from_id": "12", "into_id": "12"}),
            400,
            "differ",
        ),
        (json!({"entity": "Customer", "from_id": "1"}), 400, "into_id"),
    ] {
        let (got, answer) = server.post(&path, &body).await;
        assert_eq!(got.as_u16(), status, "{body}: {answer}");
        assert!(
            answer["error"]["message"].as_str().unwrap().contains(needle),
            "{answer}"
        );
    }
    let (status, _) = server
        .post(
            "/api/v1/realms/404404/merge",
            &json!({"entity": "Customer", "from_id": "1", "into_id": "2"}),
        )
        .await;
    assert_eq!(status, 404);
}
