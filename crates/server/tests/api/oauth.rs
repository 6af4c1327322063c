//! OAuth 2.0 as QuickBooks runs it: consent, code exchange, refresh, revoke, discovery.

use crate::support::{minutes_ago, TestServer};
use ledgerhook_testkit::on_both_backends;
use ledgerhook_testkit::Kind;
use serde_json::{json, Value};

on_both_backends!(the_consent_flow_issues_tokens_that_refresh_and_revoke);

const CALLBACK: &str = "https://app.example.com/callback";

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn token_request(
    server: &TestServer,
    app: &Value,
    secret: &str,
    form: &[(&str, &str)],
) -> (u16, Value) {
    let response = no_redirects()
        .post(format!("{}/oauth2/v1/tokens/bearer", server.base))
        .basic_auth(app["client_id"].as_str().unwrap(), Some(secret))
        .form(form)
        .send()
        .await
        .unwrap();
    (
        response.status().as_u16(),
        response.json().await.unwrap_or(Value::Null),
    )
}

async fn cdc_status(server: &TestServer, realm: &str, token: &str) -> u16 {
    server
        .cdc(
            realm,
            Some(token),
            &format!("entities=Customer&changedSince={}", minutes_ago(5)),
        )
        .await
        .0
        .as_u16()
}

async fn the_consent_flow_issues_tokens_that_refresh_and_revoke(kind: Kind) {
    let Some(server) = TestServer::start(kind).await else {
        return;
    };
    let (_, app) = server
        .post(
            "/api/v1/apps",
            &json!({"name": "Books Sync", "redirect_uris": [CALLBACK]}),
        )
        .await;
    let realm = server.realm("sandbox").await;
    let client_id = app["client_id"].as_str().unwrap();
    let secret = app["client_secret"].as_str().unwrap();

    let page = no_redirects()
        .get(format!("{}/connect/oauth2", server.base))
        .query(&[
            ("client_id", client_id),
            ("redirect_uri", CALLBACK),
            ("response_type", "code"),
            ("scope", "com.intuit.quickbooks.accounting"),
            ("state", "xyz"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains(&realm));
    let bad = no_redirects()
        .get(format!("{}/connect/oauth2", server.base))
        .query(&[
            ("client_id", client_id),
            ("redirect_uri", "https://evil.example/steal"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);

    let consent = no_redirects()
        .post(format!("{}/connect/oauth2", server.base))
        .form(&[
            ("client_id", client_id),
            ("redirect_uri", CALLBACK),
            ("state", "xyz"),
            ("realm_id", realm.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert!(consent.status().is_redirection(), "{}", consent.status());
    let location = url::Url::parse(consent.headers()["location"].to_str().unwrap()).unwrap();
    assert!(location.as_str().starts_with(CALLBACK));
    let query: std::collections::HashMap<String, String> = location.query_pairs().into_owned().collect();
    assert_eq!(query["realmId"], realm);
    assert_eq!(query["state"], "xyz");
    let code = query["code"].clone();

    let (status, answer) = token_request(
        &server,
        &app,
        "wrong",
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", CALLBACK),
        ],
    )
    .await;
    assert_eq!((status, answer["error"].as_str()), (401, Some("invalid_client")));
    let (status, tokens) = token_request(
        &server,
        &app,
        secret,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", CALLBACK),
        ],
    )
    .await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["token_type"], "bearer");
    assert_eq!(tokens["expires_in"], 3600);
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    assert_eq!(cdc_status(&server, &realm, &access).await, 200);
    let (status, again) = token_request(
        &server,
        &app,
        secret,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", CALLBACK),
        ],
    )
    .await;
    assert_eq!(
        (status, again["error"].as_str()),
        (400, Some("invalid_grant")),
        "a code worked twice"
    );

    let refresh = tokens["refresh_token"].as_str().unwrap();
    let (status, renewed) = token_request(
        &server,
        &app,
        secret,
        &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
    )
    .await;
    assert_eq!(status, 200, "{renewed}");
    let new_access = renewed["access_token"].as_str().unwrap().to_owned();
    assert_eq!(cdc_status(&server, &realm, &new_access).await, 200);
    let (status, _) = token_request(
        &server,
        &app,
        secret,
        &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
    )
    .await;
    assert_eq!(status, 400, "a used refresh token worked again");
    let (status, answer) = token_request(&server, &app, secret, &[("grant_type", "password")]).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("unsupported_grant_type"))
    );

    let revoked = no_redirects()
        .post(format!("{}/oauth2/v1/tokens/revoke", server.base))
        .basic_auth(client_id, Some(secret))
        .json(&json!({"token": renewed["refresh_token"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    assert_eq!(cdc_status(&server, &realm, &new_access).await, 401);
    let (_, connections) = server
        .get(&format!(
            "/api/v1/apps/{}/connections",
            app["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(connections["data"], json!([]));

    let discovery: Value = reqwest::get(format!("{}/.well-known/openid-configuration", server.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(discovery["token_endpoint"]
        .as_str()
        .unwrap()
        .ends_with("/oauth2/v1/tokens/bearer"));
    assert!(discovery["authorization_endpoint"]
        .as_str()
        .unwrap()
        .ends_with("/connect/oauth2"));
}
