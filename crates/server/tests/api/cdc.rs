//! ChangeDataCapture: every `changedSince` form, every refusal, order and limits.

use crate::support::{minutes_ago, TestServer, OPERATOR};
use chrono::{Duration, SecondsFormat, Utc};
use ledgerhook_testkit::on_both_backends;
use ledgerhook_testkit::Kind;
use serde_json::{json, Value};

on_both_backends!(
    every_changed_since_form_is_understood,
    responses_follow_request_order_with_empty_objects,
    refusals_are_validation_faults,
    only_an_access_token_for_the_realm_is_accepted,
    the_1000_oldest_objects_are_returned,
);

async fn every_changed_since_form_is_understood(kind: Kind) {
    let Some(server) = TestServer::start(kind).await else {
        return;
    };
    let company = server.company("sandbox").await;
    // One customer changed exactly at a whole minute two hours ago (so that forms
    // without seconds can hit it exactly: changedSince is inclusive).
    let at = (Utc::now() - Duration::hours(2)).with_nanosecond_zeroed();
    let events = json!([{"name": "Customer", "id": "1", "operation": "Update", "lastUpdated": at.to_rfc3339_opts(SecondsFormat::Millis, true)}]);
    assert_eq!(server.ingest(&company.realm_id, &events).await.0, 202);

    let pacific = at.with_timezone(&chrono::FixedOffset::west_opt(7 * 3600).unwrap());
    let kolkata = at.with_timezone(&chrono::FixedOffset::east_opt(5 * 3600 + 1800).unwrap());
    let includes = [
        at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        at.format("%Y-%m-%dT%H:%M:%S").to_string(),
        at.format("%Y-%m-%dT%H:%M").to_string(),
        pacific.format("%Y-%m-%dT%H:%M:%S%:z").to_string(),
        pacific.format("%Y-%m-%dT%H:%M%:z").to_string(),
        pacific.format("%Y-%m-%dT%H:%M:%S%z").to_string(),
        // `+05:30` sent without URL-encoding: the `+` arrives as a space.
        kolkata.format("%Y-%m-%dT%H:%M:%S%:z").to_string(),
        (at - Duration::days(1)).format("%Y-%m-%d").to_string(),
    ];
    for since in includes {
        let (status, body) = server
            .cdc(
                &company.realm_id,
                Some(&company.access_token),
                &format!("entities=Customer&changedSince={since}&minorversion=75"),
            )
            .await;
        assert_eq!(status, 200, "{since}: {body}");
        let found = body["CDCResponse"][0]["QueryResponse"][0]["Customer"]
            .as_array()
            .map(Vec::len);
        assert_eq!(found, Some(1), "{since} missed the change: {body}");
    }
    // One millisecond later the change is excluded.
    let after = (at + Duration::milliseconds(1))
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string();
    let (_, body) = server
        .cdc(
            &company.realm_id,
            Some(&company.access_token),
            &format!("entities=Customer&changedSince={after}"),
        )
        .await;
    assert_eq!(body["CDCResponse"][0]["QueryResponse"][0], json!({}));
}

trait ZeroNanos {
    fn with_nanosecond_zeroed(self) -> Self;
}

impl ZeroNanos for chrono::DateTime<Utc> {
    fn with_nanosecond_zeroed(self) -> Self {
        use chrono::Timelike;
        self.with_second(0).unwrap().with_nanosecond(0).unwrap()
    }
}

async fn responses_follow_request_order_with_empty_objects(kind: Kind) {
    let Some(server) = TestServer::start(kind).await else {
        return;
    };
    let company = server.company("sandbox").await;
    let events = json!([
        {"name": "Customer", "id": "1", "operation": "Create", "lastUpdated": minutes_ago(3)},
        {"name": "Invoice", "id": "9", "operation": "Create", "lastUpdated": minutes_ago(2), "data": {"TotalAmt": 10}},
    ]);
    assert_eq!(server.ingest(&company.realm_id, &events).await.0, 202);
    let since = minutes_ago(10);
    let (status, body) = server
        .cdc(
            &company.realm_id,
            Some(&company.access_token),
            &format!("entities=invoice,Bill,Customer&changedSince={since}&format=json&requestid=abc"),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let responses = body["CDCResponse"][0]["QueryResponse"].as_array().unwrap();
    assert_eq!(responses.len(), 3);
    assert_eq!(responses[0]["Invoice"][0]["TotalAmt"], 10);
    assert_eq!(responses[0]["startPosition"], 1);
    assert_eq!(responses[0]["maxResults"], 1);
    assert_eq!(responses[1], json!({}));
    assert_eq!(responses[2]["Customer"][0]["Id"], "1");
    assert!(body["time"].is_string());
}

fn assert_fault(status: reqwest::StatusCode, body: &Value, code: u16, kind: &str, needle: &str) {
    assert_eq!(status.as_u16(), code, "{body}");
    assert_eq!(body["Fault"]["type"], kind, "{body}");
    let error = &body["Fault"]["Error"][0];
    assert!(
        error["code"].is_string() && error["Message"].is_string(),
        "{body}"
    );
    assert!(
        error["Detail"].as_str().unwrap().contains(needle),
        "{body} lacks {needle}"
    );
}

async fn refusals_are_validation_faults(kind: Kind) {
    let Some(server) = TestServer::start(kind).await else {
        return;
    };
    let company = server.company("sandbox").await;
    let recent = minutes_ago(5);
    let old = minutes_ago(31 * 24 * 60);
    let cases = [
        (format!("entities=Customer&changedSince={old}"), "30 days"),
        (format!("entities=Gadget&changedSince={recent}"), "Gadget"),
        (
            format!("entities=JournalCode&changedSince={recent}"),
            "JournalCode",
        ),
        (format!("entities=TaxAgency&changedSince={recent}"), "TaxAgency"),
        (
            format!("entities=Customer,TimeActivity&changedSince={recent}"),
            "TimeActivity",
        ),
        (format!("changedSince={recent}"), "entities is required"),
        ("entities=Customer".to_owned(), "changedSince is required"),
        (
            "entities=Customer&changedSince=last-week".to_owned(),
            "changedSince",
        ),
    ];
    for (query, needle) in cases {
        let (status, body) = server
            .cdc(&company.realm_id, Some(&company.access_token), &query)
            .await;
        assert_fault(status, &body, 400, "ValidationFault", needle);
    }
}

async fn only_an_access_token_for_the_realm_is_accepted(kind: Kind) {
    let Some(server) = TestServer::start(kind).await else {
        return;
    };
    let company = server.company("sandbox").await;
    let other = server.company("sandbox").await;
    let query = format!("entities=Customer&changedSince={}", minutes_ago(5));
    let (status, body) = server.cdc(&company.realm_id, None, &query).await;
    assert_fault(status, &body, 401, "AuthenticationFault", "Bearer");
    for token in [OPERATOR, "lha_forged", ""] {
        let (status, body) = server.cdc(&company.realm_id, Some(token), &query).await;
        assert_eq!(status, 401, "{token}: {body}");
        assert_eq!(body["Fault"]["type"], "AuthenticationFault");
    }
    let (status, body) = server
        .cdc(&company.realm_id, Some(&other.access_token), &query)
        .await;
    assert_fault(status, &body, 403, "AuthorizationFault", &company.realm_id);
    // Disconnecting revokes the token.
    let path = format!("/api/v1/apps/{}/connections/{}", company.app_id, company.realm_id);
    assert_eq!(
        server
            .call(reqwest::Method::DELETE, &path, Some(OPERATOR), None)
            .await
            .0,
        204
    );
    let (status, _) = server
        .cdc(&company.realm_id, Some(&company.access_token), &query)
        .await;
    assert_eq!(status, 401);
}

async fn the_1000_oldest_objects_are_returned(kind: Kind) {
    let Some(server) = TestServer::start(kind).await else {
        return;
    };
    let company = server.company("sandbox").await;
    let base = Utc::now() - Duration::hours(3);
    let stamp = |i: i64| (base + Duration::seconds(i)).to_rfc3339_opts(SecondsFormat::Millis, true);
    let customers: Vec<Value> = (0..600).map(|i| json!({"name": "Customer", "id": format!("c{i}"), "operation": "Create", "lastUpdated": stamp(2 * i)})).collect();
    let invoices: Vec<Value> = (0..500).map(|i| json!({"name": "Invoice", "id": format!("i{i}"), "operation": "Create", "lastUpdated": stamp(2 * i + 1)})).collect();
    assert_eq!(
        server.ingest(&company.realm_id, &Value::Array(customers)).await.0,
        202
    );
    assert_eq!(
        server.ingest(&company.realm_id, &Value::Array(invoices)).await.0,
        202
    );
    let since = (base - Duration::minutes(1)).to_rfc3339_opts(SecondsFormat::Secs, true);
    let (status, body) = server
        .cdc(
            &company.realm_id,
            Some(&company.access_token),
            &format!("entities=Customer,Invoice&changedSince={since}"),
        )
        .await;
    assert_eq!(status, 200);
    let responses = &body["CDCResponse"][0]["QueryResponse"];
    let customers = responses[0]["Customer"].as_array().unwrap();
    let invoices = responses[1]["Invoice"].as_array().unwrap();
    assert_eq!(customers.len() + invoices.len(), 1000);
    // The oldest 1,000 of 1,100 interleaved changes: customers c0..c499 and invoices i0..i499.
    assert_eq!(customers.len(), 500);
    assert_eq!(invoices.len(), 500);
    assert!(customers
        .iter()
        .all(|c| c["Id"].as_str().unwrap()[1..].parse::<u32>().unwrap() < 500));
}
