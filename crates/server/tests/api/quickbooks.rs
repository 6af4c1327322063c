//! What QuickBooks client libraries send and rely on: queries as a POST body with every
//! operator, `orderby`, column lists and the incremental-sync form; `?operation=update`
//! and `&include=void`; `CompanyInfo` and `Preferences`; batches; the fields QuickBooks
//! fills in; inactive name-list entities; a `Fault` for every error under `/v3`.

use crate::support::{legacy_events, Company, TestServer};
use ledgerhook_testkit::{on_both_backends, Kind};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

on_both_backends!(
    queries_post_operators_ordering_columns_and_refusals,
    updates_voids_company_info_and_preferences,
    a_batch_answers_each_item_in_order,
    quickbooks_fills_in_fields_and_keeps_inactive_entities,
    every_error_under_v3_is_a_fault,
    the_throttle_and_a_short_token_lifetime,
);

async fn server(kind: Kind) -> Option<(TestServer, Company)> {
    let server = TestServer::start_loopback(kind).await?;
    let company = server.company("sandbox").await;
    Some((server, company))
}

/// A query sent as python-quickbooks sends it: `POST query` with an `application/text`
/// body.
async fn query(server: &TestServer, company: &Company, text: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!(
            "{}/v3/company/{}/query?minorversion=75",
            server.base, company.realm_id
        ))
        .bearer_auth(&company.access_token)
        .header("content-type", "application/text")
        .body(text.to_owned())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

fn ids(answer: &Value, entity: &str) -> Vec<String> {
    answer["QueryResponse"][entity]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|o| o["Id"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

async fn create(server: &TestServer, company: &Company, entity: &str, body: Value) -> Value {
    let (status, created) = server
        .v3(company, Method::POST, &entity.to_lowercase(), Some(body))
        .await;
    assert_eq!(status, 200, "{created}");
    created[entity].clone()
}

async fn queries_post_operators_ordering_columns_and_refusals(kind: Kind) {
    let Some((server, company)) = server(kind).await else {
        return;
    };
    for (name, balance, company_name) in [
        ("Amy", 10, "Birds"),
        ("Bob", 250, "Bolts"),
        ("Cy", 40, "Birds"),
        ("Di", 40, "Acme"),
    ] {
        create(
            &server,
            &company,
            "Customer",
            json!({"DisplayName": name, "Balance": balance, "CompanyName": company_name}),
        )
        .await;
    }
    let (status, all) = query(&server, &company, "SELECT * FROM Customer").await;
    assert_eq!(
        (status, ids(&all, "Customer")),
        (200, vec!["1".into(), "2".into(), "3".into(), "4".into()])
    );
    let cases = [
        ("select * from Customer where Balance = 40", vec!["3", "4"]),
        ("select * from Customer where Balance < 40", vec!["1"]),
        ("select * from Customer where Balance > 40", vec!["2"]),
        ("select * from Customer where Balance <= 40", vec!["1", "3", "4"]),
        ("select * from Customer where Balance >= 40", vec!["2", "3", "4"]),
        (
            "select * from Customer where DisplayName in ('Amy', 'Di')",
            vec!["1", "4"],
        ),
        (
            "select * from Customer where CompanyName like 'b%' and Balance > 20",
            vec!["2", "3"],
        ),
        (
            "SELECT * FROM customer WHERE displayname LIKE '%y'",
            vec!["1", "3"],
        ),
        (
            "select * from Customer orderby Balance desc, DisplayName",
            vec!["2", "3", "4", "1"],
        ),
        (
            "select * from Customer ORDER BY CompanyName, Balance DESC",
            vec!["4", "3", "1", "2"],
        ),
        (
            "select * from Customer orderby Id desc startposition 2 maxresults 2",
            vec!["3", "2"],
        ),
    ];
    for (text, expected) in cases {
        let (status, answer) = query(&server, &company, text).await;
        assert_eq!(status, 200, "{text}: {answer}");
        assert_eq!(ids(&answer, "Customer"), expected, "{text}");
    }
    let (_, page) = query(
        &server,
        &company,
        "select * from Customer startposition 2 maxresults 2",
    )
    .await;
    assert_eq!(
        (
            page["QueryResponse"]["startPosition"].clone(),
            page["QueryResponse"]["maxResults"].clone()
        ),
        (json!(2), json!(2))
    );
    let (_, count) = query(
        &server,
        &company,
        "select count(*) from Customer where CompanyName = 'Birds'",
    )
    .await;
    assert_eq!(count["QueryResponse"]["totalCount"], 2);
    let (_, columns) = query(
        &server,
        &company,
        "select Id, DisplayName from Customer where Id = '2'",
    )
    .await;
    let bob = &columns["QueryResponse"]["Customer"][0];
    assert_eq!(
        (bob["DisplayName"].clone(), bob.get("Balance")),
        (json!("Bob"), None)
    );

    // The incremental-sync query: what changed after a time (the last create's).
    let (_, di) = server.v3(&company, Method::GET, "customer/4", None).await;
    let created_at = di["Customer"]["MetaData"]["LastUpdatedTime"]
        .as_str()
        .unwrap()
        .to_owned();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (_, updated) = server
        .v3(
            &company,
            Method::POST,
            "customer",
            Some(json!({"Id": "3", "SyncToken": "0", "sparse": true, "Notes": "moved"})),
        )
        .await;
    assert_eq!(updated["Customer"]["SyncToken"], "1");
    let (_, changed) = query(
        &server,
        &company,
        &format!("select * from Customer where MetaData.LastUpdatedTime > '{created_at}'"),
    )
    .await;
    assert_eq!(ids(&changed, "Customer"), vec!["3"], "{changed}");
    // GET with the query parameter answers the same.
    let text =
        url::form_urlencoded::byte_serialize(b"select * from Customer where Id in ('2')").collect::<String>();
    let (status, got) = server
        .v3(&company, Method::GET, &format!("query?query={text}"), None)
        .await;
    assert_eq!((status, ids(&got, "Customer")), (200, vec!["2".to_owned()]));

    for (text, names) in [
        (
            "select * from Customer where Id = '1' or Id = '2'",
            "or is not supported",
        ),
        ("select * from Customer where Balance != 4", "!="),
        ("select * from Gadget", "Gadget"),
        ("update Customer set x = 1", "select"),
    ] {
        let (status, fault) = query(&server, &company, text).await;
        assert_eq!(status, 400, "{text}");
        let error = &fault["Fault"]["Error"][0];
        assert_eq!(error["code"], "4000", "{text}: {fault}");
        assert!(
            error["Detail"].as_str().unwrap().contains(names),
            "{text}: {fault}"
        );
    }
}

async fn updates_voids_company_info_and_preferences(kind: Kind) {
    let Some((server, company)) = server(kind).await else {
        return;
    };
    let customer = create(&server, &company, "Customer", json!({"DisplayName": "Amy"})).await;
    // node-quickbooks: updates are POST ?operation=update.
    let (status, updated) = server
        .v3(
            &company,
            Method::POST,
            "customer?operation=update",
            Some(json!({"Id": customer["Id"], "SyncToken": "0", "sparse": true, "Notes": "n"})),
        )
        .await;
    assert_eq!(
        (
            status,
            &updated["Customer"]["Notes"],
            &updated["Customer"]["SyncToken"]
        ),
        (200, &json!("n"), &json!("1"))
    );

    // python-quickbooks voids a Payment with ?operation=update&include=void.
    let payment = create(
        &server,
        &company,
        "Payment",
        json!({"TotalAmt": 25, "CustomerRef": {"value": "1"}}),
    )
    .await;
    let (status, voided) = server
        .v3(
            &company,
            Method::POST,
            "payment?operation=update&include=void",
            Some(json!({"Id": payment["Id"], "SyncToken": "0", "sparse": true})),
        )
        .await;
    assert_eq!(status, 200, "{voided}");
    assert_eq!(
        (
            voided["Payment"]["TotalAmt"].clone(),
            voided["Payment"]["PrivateNote"].clone()
        ),
        (json!(0.0), json!("Voided"))
    );

    // CompanyInfo, made with the realm, read and updated with SyncToken.
    let (status, info) = server
        .v3(
            &company,
            Method::GET,
            &format!("companyinfo/{}", company.realm_id),
            None,
        )
        .await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["CompanyInfo"]["CompanyName"], "Test Co");
    assert_eq!(
        (
            info["CompanyInfo"]["Id"].clone(),
            info["CompanyInfo"]["SyncToken"].clone()
        ),
        (json!("1"), json!("0"))
    );
    let (status, renamed) = server
        .v3(
            &company,
            Method::POST,
            "companyinfo",
            Some(json!({"Id": "1", "SyncToken": "0", "sparse": true, "CompanyName": "Renamed Co"})),
        )
        .await;
    assert_eq!(
        (status, &renamed["CompanyInfo"]["CompanyName"]),
        (200, &json!("Renamed Co")),
        "{renamed}"
    );
    let (status, stale) = server
        .v3(
            &company,
            Method::POST,
            "companyinfo",
            Some(json!({"Id": "1", "SyncToken": "0", "sparse": true, "CompanyName": "Lost"})),
        )
        .await;
    assert_eq!(
        (status, &stale["Fault"]["Error"][0]["code"]),
        (400, &json!("5010"))
    );

    let (status, prefs) = server.v3(&company, Method::GET, "preferences", None).await;
    assert_eq!(status, 200, "{prefs}");
    assert_eq!(
        prefs["Preferences"]["CurrencyPrefs"]["HomeCurrency"]["value"],
        "USD"
    );
    let (status, prefs) = server
        .v3(
            &company,
            Method::POST,
            "preferences",
            Some(json!({"SyncToken": "0", "sparse": true, "SalesFormsPrefs": {"CustomTxnNumbers": true}})),
        )
        .await;
    assert_eq!(status, 200, "{prefs}");
    assert_eq!(prefs["Preferences"]["SalesFormsPrefs"]["CustomTxnNumbers"], true);
    assert_eq!(prefs["Preferences"]["SyncToken"], "1");
}

async fn a_batch_answers_each_item_in_order(kind: Kind) {
    let Some((server, company)) = server(kind).await else {
        return;
    };
    server
        .configure(
            &company.app_id,
            "sandbox",
            json!({"url": "http://127.0.0.1:9/hook", "entities": {"Customer": "*"}}),
        )
        .await;
    let amy = create(&server, &company, "Customer", json!({"DisplayName": "Amy"})).await;
    let (status, answer) = server.v3(&company,
        Method::POST,
        "batch",
        Some(json!({"BatchItemRequest": [
            {"bId": "b1", "operation": "create", "Customer": {"DisplayName": "Bob"}},
            {"bId": "b2", "operation": "update", "Customer": {"Id": amy["Id"], "SyncToken": "5", "DisplayName": "Stale"}},
            {"bId": "b3", "operation": "update", "Customer": {"Id": amy["Id"], "SyncToken": "0", "sparse": true, "Notes": "vip"}},
            {"bId": "b4", "Query": "select * from Customer where DisplayName = 'Bob'"},
            {"bId": "b5", "operation": "delete", "Invoice": {"Id": "77", "SyncToken": "0"}},
            {"bId": "b6", "Query": "select * from Customer where"},
        ]})),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let items = answer["BatchItemResponse"].as_array().unwrap();
    let bids: Vec<&str> = items.iter().map(|i| i["bId"].as_str().unwrap()).collect();
    assert_eq!(bids, ["b1", "b2", "b3", "b4", "b5", "b6"]);
    assert_eq!(items[0]["Customer"]["DisplayName"], "Bob");
    assert_eq!(items[1]["Fault"]["Error"][0]["code"], "5010");
    assert_eq!(items[2]["Customer"]["Notes"], "vip");
    assert_eq!(
        items[3]["QueryResponse"]["Customer"][0]["Id"],
        items[0]["Customer"]["Id"]
    );
    assert_eq!(items[4]["Fault"]["Error"][0]["code"], "610");
    assert_eq!(items[5]["Fault"]["Error"][0]["code"], "4000");
    // The failed items changed nothing; the others made their events.
    let made = server
        .wait_for_notifications(&company.app_id, 3, Duration::from_secs(5))
        .await;
    let events: Vec<(String, String, String)> = made.iter().flat_map(legacy_events).collect();
    let bob = items[0]["Customer"]["Id"].as_str().unwrap().to_owned();
    assert_eq!(
        events,
        [
            ("Customer".to_owned(), "1".to_owned(), "Create".to_owned()),
            ("Customer".to_owned(), bob, "Create".to_owned()),
            ("Customer".to_owned(), "1".to_owned(), "Update".to_owned()),
        ]
    );

    let too_many: Vec<Value> = (0..31)
        .map(|i| json!({"bId": i.to_string(), "Query": "select * from Customer"}))
        .collect();
    let (status, fault) = server
        .v3(
            &company,
            Method::POST,
            "batch",
            Some(json!({"BatchItemRequest": too_many})),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        fault["Fault"]["Error"][0]["Detail"]
            .as_str()
            .unwrap()
            .contains("1 to 30"),
        "{fault}"
    );
}

async fn quickbooks_fills_in_fields_and_keeps_inactive_entities(kind: Kind) {
    let Some((server, company)) = server(kind).await else {
        return;
    };
    let amy = create(&server, &company, "Customer", json!({"DisplayName": "Amy"})).await;
    assert_eq!(
        (amy["Active"].clone(), amy["FullyQualifiedName"].clone()),
        (json!(true), json!("Amy"))
    );
    let invoice = create(
        &server,
        &company,
        "Invoice",
        json!({"CustomerRef": {"value": "1"}, "Line": [
            {"Amount": 100, "DetailType": "SalesItemLineDetail"},
            {"Amount": 25.5, "DetailType": "SalesItemLineDetail"},
        ]}),
    )
    .await;
    assert_eq!(
        (invoice["TotalAmt"].clone(), invoice["Balance"].clone()),
        (json!(125.5), json!(125.5))
    );
    assert_eq!(invoice["DocNumber"], "1001");
    assert_eq!(invoice["TxnDate"].as_str().map(str::len), Some(10));
    assert_eq!(invoice["EmailStatus"], "NotSet");
    let (status, sent) = server.v3(&company, Method::POST, "invoice/1/send", None).await;
    assert_eq!(
        (status, &sent["Invoice"]["EmailStatus"]),
        (200, &json!("EmailSent"))
    );

    // Inactive, not gone: readable, and found by Active = false only.
    let (status, inactive) = server
        .v3(
            &company,
            Method::POST,
            "customer",
            Some(json!({"Id": "1", "SyncToken": "0", "sparse": true, "Active": false})),
        )
        .await;
    assert_eq!((status, &inactive["Customer"]["Active"]), (200, &json!(false)));
    let (status, read) = server.v3(&company, Method::GET, "customer/1", None).await;
    assert_eq!((status, &read["Customer"]["Active"]), (200, &json!(false)));
    let (_, default) = query(&server, &company, "select * from Customer").await;
    assert!(ids(&default, "Customer").is_empty(), "{default}");
    let (_, found) = query(&server, &company, "select * from Customer where Active = false").await;
    assert_eq!(ids(&found, "Customer"), vec!["1"]);
    let (_, both) = query(
        &server,
        &company,
        "select * from Customer where Active in (true, false)",
    )
    .await;
    assert_eq!(ids(&both, "Customer"), vec!["1"]);
}

async fn every_error_under_v3_is_a_fault(kind: Kind) {
    let Some((server, company)) = server(kind).await else {
        return;
    };
    for (method, path, status, code) in [
        (Method::GET, "no/such/route/here", 404, "500"),
        (Method::DELETE, "customer/1", 405, "500"),
        (Method::GET, "customer", 405, "500"),
        (Method::GET, "gadget/1", 400, "2010"),
        (Method::GET, "customer/404", 400, "610"),
        (Method::POST, "customer?operation=merge", 400, "2010"),
        (Method::GET, "query", 400, "2020"),
    ] {
        let (got, fault) = server.v3(&company, method.clone(), path, None).await;
        assert_eq!(got, status, "{method} {path}: {fault}");
        assert_eq!(
            fault["Fault"]["Error"][0]["code"], code,
            "{method} {path}: {fault}"
        );
        assert!(fault["time"].is_string());
    }
    let (status, fault) = server
        .v3(&company, Method::POST, "customer", Some(json!({"Id": "1"})))
        .await;
    assert_eq!(
        (status, &fault["Fault"]["Error"][0]["code"]),
        (400, &json!("2020")),
        "{fault}"
    );
}

async fn the_throttle_and_a_short_token_lifetime(kind: Kind) {
    let Some(server) = TestServer::start_with(kind, |c| {
        c.v3_rate_limit = Some(ledgerhook_domain::rate::Rate::parse("3/2s").unwrap());
        c.token_lifetime = Duration::from_secs(2);
    })
    .await
    else {
        return;
    };
    let (company, other) = (server.company("sandbox").await, server.company("sandbox").await);
    let started = std::time::Instant::now();
    for _ in 0..3 {
        let (status, _) = server.v3(&company, Method::GET, "preferences", None).await;
        assert_eq!(status, 200);
    }
    let (status, fault) = server.v3(&company, Method::GET, "preferences", None).await;
    assert_eq!(
        (status, &fault["Fault"]["Error"][0]["code"]),
        (429, &json!("003001")),
        "{fault}"
    );
    assert_eq!(fault["Fault"]["type"], "ThrottlingFault");
    let (status, _) = server.v3(&other, Method::GET, "preferences", None).await;
    assert_eq!(status, 200, "another realm and app has its own window");

    // The window and the access token both end after 2 s: the token first answers 401,
    // then a refreshed one passes the throttle again.
    tokio::time::sleep(Duration::from_secs(2).saturating_sub(started.elapsed()) + Duration::from_millis(300))
        .await;
    let (status, _) = server.v3(&company, Method::GET, "preferences", None).await;
    assert_eq!(status, 401, "the access token expired after token-lifetime");
    let app = server.app("Refresher").await;
    let grant = server
        .connect(app["id"].as_str().unwrap(), &company.realm_id)
        .await;
    assert_eq!(grant["expires_in"], 2);
    let fresh = Company {
        realm_id: company.realm_id.clone(),
        app_id: app["id"].as_str().unwrap().to_owned(),
        access_token: grant["access_token"].as_str().unwrap().to_owned(),
    };
    let (status, _) = server.v3(&fresh, Method::GET, "preferences", None).await;
    assert_eq!(status, 200);
}
