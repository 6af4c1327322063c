//! The QuickBooks-compatible entity API: writes make change events, `SyncToken` guards
//! updates, reads and queries answer QuickBooks' shapes.

use crate::support::{legacy_events, TestServer};
use ledgerhook_testkit::on_both_backends;
use ledgerhook_testkit::Kind;
use reqwest::Method;
use serde_json::json;
use std::time::Duration;

on_both_backends!(entities_are_written_read_and_queried_like_quickbooks);

async fn entities_are_written_read_and_queried_like_quickbooks(kind: Kind) {
    let Some(server) = TestServer::start_loopback(kind).await else {
        return;
    };
    let company = server.company("sandbox").await;
    server
        .configure(
            &company.app_id,
            "sandbox",
            json!({"url": "http://127.0.0.1:9/hook", "entities": "*"}),
        )
        .await;

    let (status, created) = server
        .v3(
            &company,
            Method::POST,
            "customer?minorversion=75",
            Some(json!({"DisplayName": "Amy"})),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    let amy = &created["Customer"];
    assert_eq!(
        (
            amy["Id"].as_str(),
            amy["SyncToken"].as_str(),
            amy["DisplayName"].as_str()
        ),
        (Some("1"), Some("0"), Some("Amy"))
    );
    assert!(amy["MetaData"]["CreateTime"].is_string() && created["time"].is_string());
    let (_, second) = server
        .v3(
            &company,
            Method::POST,
            "customer",
            Some(json!({"DisplayName": "Bob"})),
        )
        .await;
    assert_eq!(second["Customer"]["Id"], "2");
    let (status, read) = server.v3(&company, Method::GET, "customer/1", None).await;
    assert_eq!((status, &read["Customer"]["DisplayName"]), (200, &json!("Amy")));

    // Full update, then a stale one, then a sparse one.
    let (status, updated) = server
        .v3(
            &company,
            Method::POST,
            "customer",
            Some(json!({"Id": "1", "SyncToken": "0", "DisplayName": "Amy B"})),
        )
        .await;
    assert_eq!((status, &updated["Customer"]["SyncToken"]), (200, &json!("1")));
    let (status, stale) = server
        .v3(
            &company,
            Method::POST,
            "customer",
            Some(json!({"Id": "1", "SyncToken": "0", "DisplayName": "Lost"})),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(stale["Fault"]["Error"][0]["code"], "5010");
    let (_, sparse) = server
        .v3(
            &company,
            Method::POST,
            "customer",
            Some(json!({"Id": "1", "SyncToken": "1", "sparse": true, "Notes": "vip"})),
        )
        .await;
    assert_eq!(sparse["Customer"]["DisplayName"], "Amy B");
    assert_eq!(sparse["Customer"]["Notes"], "vip");

    // Queries.
    let q = |text: &str| {
        format!(
            "query?query={}&minorversion=75",
            url::form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>()
        )
    };
    let (_, all) = server
        .v3(&company, Method::GET, &q("select * from Customer"), None)
        .await;
    assert_eq!(all["QueryResponse"]["Customer"].as_array().unwrap().len(), 2);
    let (_, one) = server
        .v3(
            &company,
            Method::GET,
            &q("select * from Customer where Id = '2'"),
            None,
        )
        .await;
    assert_eq!(one["QueryResponse"]["Customer"][0]["DisplayName"], "Bob");
    let (_, named) = server
        .v3(
            &company,
            Method::GET,
            &q("SELECT * FROM Customer WHERE DisplayName = 'Amy B'"),
            None,
        )
        .await;
    assert_eq!(named["QueryResponse"]["Customer"][0]["Id"], "1");
    let (_, page) = server
        .v3(
            &company,
            Method::GET,
            &q("select * from Customer startposition 2 maxresults 1"),
            None,
        )
        .await;
    assert_eq!(page["QueryResponse"]["Customer"][0]["Id"], "2");
    assert_eq!(page["QueryResponse"]["startPosition"], 2);
    let (_, count) = server
        .v3(&company, Method::GET, &q("select count(*) from Customer"), None)
        .await;
    assert_eq!(count["QueryResponse"]["totalCount"], 2);
    let (_, none) = server
        .v3(&company, Method::GET, &q("select * from Invoice"), None)
        .await;
    assert_eq!(none["QueryResponse"], json!({}));

    // Invoice: create, void, send; customer 2 deleted; customer 1 made inactive.
    let (_, invoice) = server
        .v3(&company, Method::POST, "invoice", Some(json!({"TotalAmt": 10})))
        .await;
    let (status, voided) = server
        .v3(
            &company,
            Method::POST,
            "invoice?operation=void",
            Some(json!({"Id": invoice["Invoice"]["Id"], "SyncToken": "0"})),
        )
        .await;
    assert_eq!(status, 200, "{voided}");
    let (status, _) = server
        .v3(
            &company,
            Method::POST,
            "invoice/1/send?sendTo=a@example.com",
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, deleted) = server
        .v3(
            &company,
            Method::POST,
            "customer?operation=delete",
            Some(json!({"Id": "2", "SyncToken": "0"})),
        )
        .await;
    assert_eq!((status, &deleted["Customer"]["status"]), (200, &json!("Deleted")));
    // A name-list entity is never removed: deleted, it is inactive and still readable.
    let (status, inactive) = server.v3(&company, Method::GET, "customer/2", None).await;
    assert_eq!((status, &inactive["Customer"]["Active"]), (200, &json!(false)));
    let (_, active_only) = server
        .v3(&company, Method::GET, &q("select * from Customer"), None)
        .await;
    assert_eq!(
        active_only["QueryResponse"]["Customer"].as_array().unwrap().len(),
        1
    );
    let (status, gone) = server.v3(&company, Method::GET, "invoice/99", None).await;
    assert_eq!((status, &gone["Fault"]["Error"][0]["code"]), (400, &json!("610")));
    server
        .v3(
            &company,
            Method::POST,
            "customer",
            Some(json!({"Id": "1", "SyncToken": "2", "sparse": true, "Active": false})),
        )
        .await;

    let made = server
        .wait_for_notifications(&company.app_id, 9, Duration::from_secs(5))
        .await;
    let ops: Vec<(String, String, String)> = made.iter().flat_map(legacy_events).collect();
    let expected = [
        ("Customer", "1", "Create"),
        ("Customer", "2", "Create"),
        ("Customer", "1", "Update"),
        ("Customer", "1", "Update"),
        ("Invoice", "1", "Create"),
        ("Invoice", "1", "Void"),
        ("Invoice", "1", "Emailed"),
        ("Customer", "2", "Delete"),
        ("Customer", "1", "Delete"),
    ];
    let expected: Vec<(String, String, String)> = expected
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect();
    assert_eq!(ops, expected);

    // Refusals.
    let (status, fault) = server
        .v3(&company, Method::POST, "preferences", Some(json!({"x": 1})))
        .await;
    assert_eq!(
        (status, &fault["Fault"]["type"]),
        (400, &json!("ValidationFault"))
    );
    let (status, _) = server.v3(&company, Method::POST, "widget", Some(json!({}))).await;
    assert_eq!(status, 400);
    let (status, _) = server
        .v3(
            &company,
            Method::POST,
            "customer?operation=void",
            Some(json!({"Id": "1", "SyncToken": "3"})),
        )
        .await;
    assert_eq!(status, 400);
    let other = server.company("sandbox").await;
    let (status, _) = server
        .call(
            Method::GET,
            &format!("/v3/company/{}/customer/1", company.realm_id),
            Some(&other.access_token),
            None,
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = server
        .call(
            Method::GET,
            &format!("/v3/company/{}/customer/1", company.realm_id),
            None,
            None,
        )
        .await;
    assert_eq!(status, 401);
}
