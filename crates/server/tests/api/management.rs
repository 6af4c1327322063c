//! The management API: the auth matrix, the shapes, and every bad input (each proven to
//! change nothing).

use crate::support::{TestServer, OPERATOR};
use ledgerhook_domain::{Operation, ENTITIES};
use ledgerhook_store::model::SecretName;
use ledgerhook_testkit::on_both_backends;
use ledgerhook_testkit::Kind;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Accepted by validation (a name that does not resolve), never reachable: no test
/// traffic leaves the machine.
const HOOK_URL: &str = "https://receiver.example.invalid/hooks/quickbooks";

on_both_backends!(
    auth_matrix_covers_every_route,
    realms_are_created_listed_read_and_deleted,
    apps_show_secrets_once_and_never_again,
    webhook_configuration_round_trip,
    connections_issue_tokens_and_disconnect_revokes_them,
    secret_rotation_answers_the_new_secret_once,
    lists_paginate_with_cursors,
    bad_realm_input_changes_nothing,
    bad_app_input_changes_nothing,
    bad_webhook_urls_are_refused_and_change_nothing,
    every_disallowed_entity_operation_is_refused,
    bad_webhook_fields_are_refused_and_change_nothing,
    unknown_resources_are_404,
    bad_list_parameters_are_400,
    oversized_bodies_get_413_and_change_nothing,
    signing_secrets_are_encrypted_at_rest_with_a_secret_key,
);

// ---------------------------------------------------------------------------------------
// The auth matrix.

/// Who calls, in the order every row is tried.
#[derive(Clone, Copy, Debug)]
enum Caller {
    Nobody,
    BadToken,
    OwnKey,
    OtherKey,
    AccessToken,
    Operator,
}

const CALLERS: [Caller; 6] = [
    Caller::Nobody,
    Caller::BadToken,
    Caller::OwnKey,
    Caller::OtherKey,
    Caller::AccessToken,
    Caller::Operator,
];

/// What a destructive row needs made again before each caller tries it.
#[derive(Clone, Copy)]
enum Target {
    None,
    Realm,
    App,
    Config,
    Connection,
}

struct Row {
    method: Method,
    path: &'static str,
    body: Option<fn() -> Value>,
    target: Target,
    /// Expected status per caller, in the order of [`CALLERS`].
    expect: [u16; 6],
}

fn row(
    method: Method,
    path: &'static str,
    body: Option<fn() -> Value>,
    target: Target,
    expect: [u16; 6],
) -> Row {
    Row {
        method,
        path,
        body,
        target,
        expect,
    }
}

fn config_body() -> Value {
    json!({"url": HOOK_URL, "entities": "*"})
}

#[rustfmt::skip]
/// Every route: `{app}` is the own app, `{realm}` a realm it is connected to, `{target}`
/// a freshly made resource for destructive rows.
fn matrix() -> Vec<Row> {
    use Method as M;
    use Target as T;
    vec![
        //                                                                     nobody bad  own  other access operator
        row(M::GET, "/healthz", None, T::None, [200, 200, 200, 200, 200, 200]),
        row(M::GET, "/readyz", None, T::None, [200, 200, 200, 200, 200, 200]),
        row(
            M::GET,
            "/api/v1/entities",
            None,
            T::None,
            [200, 200, 200, 200, 200, 200],
        ),
        row(M::GET, "/metrics", None, T::None, [401, 401, 403, 403, 403, 200]),
        row(
            M::POST,
            "/api/v1/realms",
            Some(|| json!({"name": "X", "environment": "sandbox"})),
            T::None,
            [401, 401, 403, 403, 403, 201],
        ),
        row(
            M::GET,
            "/api/v1/realms",
            None,
            T::None,
            [401, 401, 200, 200, 403, 200],
        ),
        row(
            M::GET,
            "/api/v1/realms/{realm}",
            None,
            T::None,
            [401, 401, 200, 404, 403, 200],
        ),
        row(
            M::DELETE,
            "/api/v1/realms/{target}",
            None,
            T::Realm,
            [401, 401, 403, 403, 403, 204],
        ),
        row(
            M::POST,
            "/api/v1/apps",
            Some(|| json!({"name": "Y"})),
            T::None,
            [401, 401, 403, 403, 403, 201],
        ),
        row(
            M::GET,
            "/api/v1/apps",
            None,
            T::None,
            [401, 401, 200, 200, 403, 200],
        ),
        row(
            M::GET,
            "/api/v1/apps/{app}",
            None,
            T::None,
            [401, 401, 200, 404, 403, 200],
        ),
        row(
            M::DELETE,
            "/api/v1/apps/{target}",
            None,
            T::App,
            [401, 401, 403, 403, 403, 204],
        ),
        row(
            M::POST,
            "/api/v1/apps/{app}/secrets/verifier_token/rotate",
            Some(|| json!({"grace": "1h"})),
            T::None,
            [401, 401, 200, 404, 403, 200],
        ),
        row(
            M::POST,
            "/api/v1/apps/{app}/secrets/signing_secret/rotate",
            Some(|| json!({})),
            T::None,
            [401, 401, 200, 404, 403, 200],
        ),
        row(
            M::PUT,
            "/api/v1/apps/{app}/webhooks/sandbox",
            Some(config_body),
            T::None,
            [401, 401, 200, 404, 403, 200],
        ),
        row(
            M::GET,
            "/api/v1/apps/{app}/webhooks/sandbox",
            None,
            T::None,
            [401, 401, 200, 404, 403, 200],
        ),
        row(
            M::POST,
            "/api/v1/apps/{app}/webhooks/sandbox/reactivate",
            None,
            T::None,
            [401, 401, 200, 404, 403, 200],
        ),
        row(
            M::DELETE,
            "/api/v1/apps/{app}/webhooks/production",
            None,
            T::Config,
            [401, 401, 204, 404, 403, 204],
        ),
        row(
            M::POST,
            "/api/v1/apps/{app}/connections",
            Some(|| json!({"realm_id": "{realm}"})),
            T::None,
            [401, 401, 403, 403, 403, 201],
        ),
        row(
            M::GET,
            "/api/v1/apps/{app}/connections",
            None,
            T::None,
            [401, 401, 200, 404, 403, 200],
        ),
        row(
            M::DELETE,
            "/api/v1/apps/{app}/connections/{target}",
            None,
            T::Connection,
            [401, 401, 204, 404, 403, 204],
        ),
        row(M::POST, "/api/v1/realms/{realm}/events", Some(|| json!([{"name": "Customer", "id": "1", "operation": "Create"}])), T::None, [401, 401, 403, 403, 403, 202]),
        row(M::POST, "/api/v1/realms/{realm}/merge", Some(|| json!({"entity": "Customer", "from_id": "1", "into_id": "2"})), T::None, [401, 401, 403, 403, 403, 202]),
        row(M::GET, "/v3/company/{realm}/cdc?entities=Customer&changedSince={recent}", None, T::None, [401, 401, 401, 401, 200, 401]),
        row(M::GET, "/api/v1/apps/{app}/notifications", None, T::None, [401, 401, 200, 404, 403, 200]),
        row(M::GET, "/api/v1/apps/{app}/notifications/ntf_none", None, T::None, [401, 401, 404, 404, 403, 404]),
        row(M::POST, "/api/v1/apps/{app}/notifications/ntf_none/redeliver", None, T::None, [401, 401, 404, 404, 403, 404]),
        row(M::POST, "/api/v1/apps/{app}/webhooks/sandbox/recover", Some(|| json!({"since": "2026-01-01T00:00:00Z"})), T::None, [401, 401, 202, 404, 403, 202]),
        row(M::POST, "/api/v1/apps/{app}/webhooks/sandbox/test", Some(|| json!({})), T::None, [401, 401, 200, 404, 403, 200]),
        row(M::GET, "/", None, T::None, [200, 200, 200, 200, 200, 200]),
        row(M::GET, "/.well-known/openid-configuration", None, T::None, [200, 200, 200, 200, 200, 200]),
        row(
            M::GET,
            "/v3/company/{realm}/customer/1",
            None,
            T::None,
            [401, 401, 401, 401, 400, 401],
        ),
        row(
            M::POST,
            "/v3/company/{realm}/customer",
            Some(|| json!({"DisplayName": "Matrix"})),
            T::None,
            [401, 401, 401, 401, 200, 401],
        ),
        row(
            M::GET,
            "/v3/company/{realm}/query?query=select%20*%20from%20Customer",
            None,
            T::None,
            [401, 401, 401, 401, 200, 401],
        ),
        row(
            M::GET,
            "/api/v1/no-such-route",
            None,
            T::None,
            [404, 404, 404, 404, 404, 404],
        ),
    ]
}

struct Fixture {
    app_id: String,
    own_key: String,
    other_key: String,
    realm_id: String,
    access_token: String,
}

async fn fixture(server: &TestServer) -> Fixture {
    let own = server.app("Own").await;
    let other = server.app("Other").await;
    let app_id = own["id"].as_str().unwrap().to_owned();
    let realm_id = server.realm("sandbox").await;
    let grant = server.connect(&app_id, &realm_id).await;
    Fixture {
        app_id,
        own_key: own["api_key"].as_str().unwrap().to_owned(),
        other_key: other["api_key"].as_str().unwrap().to_owned(),
        realm_id,
        access_token: grant["access_token"].as_str().unwrap().to_owned(),
    }
}

/// Makes the resource a destructive row acts on; answers its id for `{target}`.
async fn make_target(server: &TestServer, f: &Fixture, target: Target) -> String {
    match target {
        Target::None => String::new(),
        Target::Realm => server.realm("production").await,
        Target::App => server.app("Doomed").await["id"].as_str().unwrap().to_owned(),
        Target::Config => {
            let (status, _) = server
                .put(
                    &format!("/api/v1/apps/{}/webhooks/production", f.app_id),
                    &config_body(),
                )
                .await;
            assert_eq!(status, 200);
            String::new()
        }
        Target::Connection => {
            let realm = server.realm("sandbox").await;
            server.connect(&f.app_id, &realm).await;
            realm
        }
    }
}

async fn auth_matrix_covers_every_route(kind: Kind) {
    let Some(server) = TestServer::start(kind).await else {
        return;
    };
    let f = fixture(&server).await;
    let mut failures = Vec::new();
    for row in matrix() {
        for (caller, expected) in CALLERS.iter().zip(row.expect) {
            let target = make_target(&server, &f, row.target).await;
            let recent = crate::support::minutes_ago(5);
            let fill = |s: &str| {
                s.replace("{app}", &f.app_id)
                    .replace("{realm}", &f.realm_id)
                    .replace("{target}", &target)
                    .replace("{recent}", &recent)
            };
            let path = fill(row.path);
            let body = row
                .body
                .map(|make| serde_json::from_str::<Value>(&fill(&make().to_string())).unwrap());
            let token = match caller {
                Caller::Nobody => None,
                Caller::BadToken => Some("lhk_not-a-real-token"),
                Caller::OwnKey => Some(f.own_key.as_str()),
                Caller::OtherKey => Some(f.other_key.as_str()),
                Caller::AccessToken => Some(f.access_token.as_str()),
                Caller::Operator => Some(OPERATOR),
            };
            let (status, answer) = server.call(row.method.clone(), &path, token, body.as_ref()).await;
            if status.as_u16() != expected {
                failures.push(format!(
                    "{} {path} as {caller:?}: expected {expected}, got {status} {answer}",
                    row.method
                ));
            }
            if status.is_client_error() && path.starts_with("/v3/") {
                assert!(
                    answer["Fault"]["type"].is_string(),
                    "{path}: Fault shape {answer}"
                );
            } else if status.is_client_error() {
                assert!(
                    answer["error"]["code"].is_string() && answer["error"]["message"].is_string(),
                    "{path}: error shape {answer}"
                );
            }
        }
    }
    assert!(
        failures.is_empty(),
        "auth matrix mismatches:\n{}",
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------------------
// Shapes.

#[tokio::test]
async fn the_dashboard_is_a_page_that_reads_the_api() {
    let Some(server) = TestServer::start(Kind::Sqlite).await else {
        return;
    };
    let response = reqwest::get(format!("{}/", server.base)).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/html; charset=utf-8");
    let page = response.text().await.unwrap();
    assert!(page.contains("<title>Ledgerhook</title>"));
    assert!(page.contains("/api/v1/apps") && page.contains("/notifications"));
}

async fn realms_are_created_listed_read_and_deleted(kind: Kind) {
    let Some(server) = TestServer::start(kind).await else {
        return;
    };
    let (status, realm) = server
        .post(
            "/api/v1/realms",
            &json!({"name": "Acme Ltd", "environment": "production"}),
        )
        .await;
    assert_eq!(status, 201);
    let id = realm["id"].as_str().unwrap();
    assert!(
        id.len() >= 10 && id.bytes().all(|b| b.is_ascii_digit()),
        "realm id {id}"
    );
    assert_eq!(realm["name"], "Acme Ltd");
    assert_eq!(realm["environment"], "production");
    assert!(realm["created_at"].as_str().unwrap().ends_with('Z'));
    let (_, read) = server.get(&format!("/api/v1/realms/{id}")).await;
    assert_eq!(read, realm);
    let (_, list) = server.get("/api/v1/realms").await;
    assert_eq!(list["data"], json!([realm]));
    assert_eq!(list["next_cursor"], Value::Null);
    let (status, body) = server
        .call(
            Method::DELETE,
            &format!("/api/v1/realms/{id}"),
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!((status, body), (StatusCode::NO_CONTENT, Value::Null));
    assert_eq!(server.get(&format!("/api/v1/realms/{id}")).await.0, 404);
}

async fn apps_show_secrets_once_and_never_again(kind: Kind) {
    let Some(server) = TestServer::start(kind).await else {
        return;
    };
    let (status, created) = server
        .post(
            "/api/v1/apps",
            &json!({"name": "Books Sync", "redirect_uris": ["https://app.example.com/callback"]}),
        )
        .await;
    assert_eq!(status, 201);
    for key in [
        "id",
        "name",
        "client_id",
        "client_secret",
        "verifier_token",
        "signing_secret",
        "api_key",
    ] {
        assert!(
            created[key].as_str().is_some_and(|v| !v.is_empty()),
            "{key} missing in {created}"
        );
    }
    assert!(created["signing_secret"].as_str().unwrap().starts_with("whsec_"));
    let id = created["id"].as_str().unwrap();
    let (_, read) = server.get(&format!("/api/v1/apps/{id}")).await;
    let text = read.to_string();
    for secret in ["client_secret", "verifier_token", "signing_secret", "api_key"] {
        assert!(read.get(secret).is_none(), "{secret} shown again");
        assert!(
            !text.contains(created[secret].as_str().unwrap()),
            "{secret} value shown again"
        );
    }
    assert_eq!(read["redirect_uris"], json!(["https://app.example.com/callback"]));
    let (_, list) = server.get("/api/v1/apps").await;
    assert!(!list.to_string().contains(created["api_key"].as_str().unwrap()));
    // The key works for its own app.
    let key = created["api_key"].as_str().unwrap();
    assert_eq!(
        server
            .call(Method::GET, &format!("/api/v1/apps/{id}"), Some(key), None)
            .await
            .0,
        200
    );
}

async fn webhook_configuration_round_trip(kind: Kind) {
    let Some(server) = TestServer::start(kind).await else {
        return;
    };
    let app = server.app("Hooks").await;
    let path = format!("/api/v1/apps/{}/webhooks/production", app["id"].as_str().unwrap());
    let input = json!({
        "url": HOOK_URL,
        "entities": {"Customer": ["Update", "Create"], "Invoice": "*"},
        "format": "cloudevents",
        "batch_window": "3m",
        "ordering": "strict",
    });
    let (status, saved) = server.put(&path, &input).await;
    assert_eq!(status, 200, "{saved}");
    assert_eq!(saved["url"], HOOK_URL);
    assert_eq!(
        saved["entities"],
        json!({"Customer": ["Create", "Update"], "Invoice": "*"})
    );
    assert_eq!(saved["format"], "cloudevents");
    assert_eq!(saved["batch_window"], "3m");
    assert_eq!(saved["ordering"], "strict");
    assert_eq!(saved["state"], "active");
    assert!(saved["state_since"].is_string());
    assert_eq!(saved["last_error"], Value::Null);
    let (_, read) = server.get(&path).await;
    assert_eq!(read, saved);

    // Defaults: legacy, the environment's window, the policy's ordering.
    let sandbox = path.replace("production", "sandbox");
    let (_, defaults) = server
        .put(&sandbox, &json!({"url": HOOK_URL, "entities": "*"}))
        .await;
    assert_eq!(defaults["format"], "legacy");
    assert_eq!(defaults["batch_window"], "1s");
    assert_eq!(defaults["ordering"], "best-effort");
    assert_eq!(defaults["entities"], "*");

    // Blacklisted → reactivate → active.
    let app_id = app["id"].as_str().unwrap();
    let env = ledgerhook_domain::Environment::Production;
    let now = ledgerhook_domain::Timestamp::now();
    server
        .state
        .store
        .set_config_state(
            app_id,
            env,
            ledgerhook_domain::ConfigState::Blacklisted,
            Some("HTTP 500"),
            now,
        )
        .await
        .unwrap();
    let (_, blacklisted) = server.get(&path).await;
    assert_eq!(blacklisted["state"], "blacklisted");
    assert_eq!(blacklisted["last_error"], "HTTP 500");
    let (status, reactivated) = server.post(&format!("{path}/reactivate"), &json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(reactivated["state"], "active");

    let (status, _) = server.call(Method::DELETE, &path, Some(OPERATOR), None).await;
    assert_eq!(status, 204);
    assert_eq!(server.get(&path).await.0, 404);
}

async fn connections_issue_tokens_and_disconnect_revokes_them(kind: Kind) {
    let Some(server) = TestServer::start(kind).await else {
        return;
    };
    let app = server.app("Conn").await;
    let app_id = app["id"].as_str().unwrap();
    let realm = server.realm("sandbox").await;
    let grant = server.connect(app_id, &realm).await;
    assert_eq!(grant["realm_id"], realm.as_str());
    assert_eq!(grant["expires_in"], 3600);
    let access = grant["access_token"].as_str().unwrap().to_owned();
    assert!(grant["refresh_token"].as_str().is_some_and(|t| t != access));
    // The access token is known (403 on the management API, not 401).
    assert_eq!(
        server
            .call(Method::GET, "/api/v1/realms", Some(&access), None)
            .await
            .0,
        403
    );
    let (_, list) = server.get(&format!("/api/v1/apps/{app_id}/connections")).await;
    assert_eq!(list["data"][0]["realm_id"], realm.as_str());
    assert_eq!(list["data"][0]["environment"], "sandbox");
    // The app key sees its connected realm.
    let key = app["api_key"].as_str().unwrap();
    let (_, realms) = server.call(Method::GET, "/api/v1/realms", Some(key), None).await;
    assert_eq!(realms["data"].as_array().unwrap().len(), 1);

    let (status, _) = server
        .call(
            Method::DELETE,
            &format!("/api/v1/apps/{app_id}/connections/{realm}"),
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(
        server
            .call(Method::GET, "/api/v1/realms", Some(&access), None)
            .await
            .0,
        401,
        "token not revoked"
    );
    let (_, realms) = server.call(Method::GET, "/api/v1/realms", Some(key), None).await;
    assert_eq!(realms["data"], json!([]));
    let (status, _) = server
        .call(
            Method::DELETE,
            &format!("/api/v1/apps/{app_id}/connections/{realm}"),
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(status, 404);
}

async fn secret_rotation_answers_the_new_secret_once(kind: Kind) {
    let Some(server) = TestServer::start(kind).await else {
        return;
    };
    let app = server.app("Rot").await;
    let app_id = app["id"].as_str().unwrap();
    let before = ledgerhook_domain::Timestamp::now().millis();
    let (status, rotated) = server
        .post(
            &format!("/api/v1/apps/{app_id}/secrets/signing_secret/rotate"),
            &json!({"grace": "2h"}),
        )
        .await;
    assert_eq!(status, 200, "{rotated}");
    let new_secret = rotated["signing_secret"].as_str().unwrap();
    assert!(new_secret.starts_with("whsec_") && new_secret != app["signing_secret"]);
    let grace_until = ledgerhook_domain::Timestamp::parse(rotated["grace_until"].as_str().unwrap())
        .unwrap()
        .millis();
    assert!(
        (grace_until - before - 7_200_000).abs() < 60_000,
        "grace_until {grace_until}"
    );
    let stored = server
        .state
        .store
        .secret(app_id, SecretName::SigningSecret)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(server.state.secrets.open(&stored.current).unwrap(), new_secret);
    assert_eq!(
        server
            .state
            .secrets
            .open(stored.previous.as_deref().unwrap())
            .unwrap(),
        app["signing_secret"]
    );

    let (status, rotated) = server
        .post(
            &format!("/api/v1/apps/{app_id}/secrets/verifier_token/rotate"),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200);
    assert!(rotated["verifier_token"].as_str().is_some_and(|t| t.len() == 36));
}

async fn lists_paginate_with_cursors(kind: Kind) {
    let Some(server) = TestServer::start(kind).await else {
        return;
    };
    let mut made: Vec<String> = Vec::new();
    for _ in 0..5 {
        made.push(server.realm("sandbox").await);
    }
    made.sort();
    let mut seen = Vec::new();
    let mut path = "/api/v1/realms?limit=2".to_owned();
    for page in 0.. {
        let (status, body) = server.get(&path).await;
        assert_eq!(status, 200);
        seen.extend(
            body["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["id"].as_str().unwrap().to_owned()),
        );
        match body["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/v1/realms?limit=2&cursor={cursor}"),
            None => {
                assert_eq!(page, 2);
                break;
            }
        }
    }
    assert_eq!(seen, made);
}

// ---------------------------------------------------------------------------------------
// Bad input: a clear 4xx, and nothing changed.

async fn assert_refused(
    server: &TestServer,
    method: Method,
    path: &str,
    body: Vec<u8>,
    status: u16,
    needle: &str,
) {
    let (got, answer) = server
        .call_raw(method.clone(), path, Some(OPERATOR), body.clone())
        .await;
    assert_eq!(
        got.as_u16(),
        status,
        "{method} {path} {}: {answer}",
        String::from_utf8_lossy(&body)
    );
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.to_lowercase().contains(&needle.to_lowercase()),
        "message {message:?} lacks {needle:?}"
    );
}

async fn bad_realm_input_changes_nothing(kind: Kind) {
    let Some(server) = TestServer::start(kind).await else {
        return;
    };
    server.realm("sandbox").await;
    let (_, before) = server.get("/api/v1/realms").await;
    let cases: &[(&str, &str)] = &[
        ("{\"name\": \"A\", \"environment\": ", "malformed JSON"),
        ("[1, 2]", "invalid request body"),
        ("{\"name\": 5, \"environment\": \"sandbox\"}", "invalid type"),
        ("{\"environment\": \"sandbox\"}", "missing field `name`"),
        ("{\"name\": \"A\"}", "missing field `environment`"),
        (
            "{\"name\": \"A\", \"environment\": \"staging\"}",
            "unknown environment \"staging\"",
        ),
        (
            "{\"name\": \"  \", \"environment\": \"sandbox\"}",
            "must not be empty",
        ),
        (
            "{\"name\": \"A\", \"environment\": \"sandbox\", \"extra\": 1}",
            "unknown field `extra`",
        ),
        ("", "empty"),
    ];
    for (body, needle) in cases {
        assert_refused(
            &server,
            Method::POST,
            "/api/v1/realms",
            body.as_bytes().to_vec(),
            400,
            needle,
        )
        .await;
    }
    assert_eq!(server.get("/api/v1/realms").await.1, before);
}

async fn bad_app_input_changes_nothing(kind: Kind) {
    let Some(server) = TestServer::start(kind).await else {
        return;
    };
    let (_, before) = server.get("/api/v1/apps").await;
    let cases: &[(&str, &str)] = &[
        ("{\"name\": ", "malformed JSON"),
        ("{\"name\": [\"x\"]}", "invalid type"),
        ("{}", "missing field `name`"),
        (
            "{\"name\": \"A\", \"redirect_uris\": \"https://x\"}",
            "invalid type",
        ),
        (
            "{\"name\": \"A\", \"redirect_uris\": [\"not a url\"]}",
            "not an absolute URL",
        ),
        (
            "{\"name\": \"A\", \"redirect_uris\": [\"ftp://x/y\"]}",
            "must use https",
        ),
        ("{\"name\": \"\", \"redirect_uris\": []}", "must not be empty"),
    ];
    for (body, needle) in cases {
        assert_refused(
            &server,
            Method::POST,
            "/api/v1/apps",
            body.as_bytes().to_vec(),
            400,
            needle,
        )
        .await;
    }
    assert_eq!(server.get("/api/v1/apps").await.1, before);
}

async fn bad_webhook_urls_are_refused_and_change_nothing(kind: Kind) {
    let Some(server) = TestServer::start(kind).await else {
        return;
    };
    let app = server.app("Urls").await;
    let path = format!("/api/v1/apps/{}/webhooks/sandbox", app["id"].as_str().unwrap());
    let (status, saved) = server
        .put(&path, &json!({"url": HOOK_URL, "entities": "*"}))
        .await;
    assert_eq!(status, 200);
    let refused: &[(&str, &str)] = &[
        ("https://localhost/hook", "allow-private-networks"),
        ("https://127.0.0.1/hook", "allow-private-networks"),
        ("https://127.1/hook", "allow-private-networks"),
        ("https://2130706433/hook", "allow-private-networks"),
        ("https://0.0.0.0/hook", "allow-private-networks"),
        ("https://[::]/hook", "allow-private-networks"),
        ("https://[::1]/hook", "allow-private-networks"),
        ("https://[::ffff:127.0.0.1]/hook", "allow-private-networks"),
        ("https://[fe80::1]/hook", "allow-private-networks"),
        (
            "https://169.254.169.254/latest/meta-data",
            "allow-private-networks",
        ),
        ("https://10.0.0.1/hook", "allow-private-networks"),
        ("https://192.168.1.20/hook", "allow-private-networks"),
        ("http://93.184.216.34/hook", "allow-http"),
        ("ftp://93.184.216.34/hook", "scheme"),
        ("hooks.example.com/x", "not a valid absolute URL"),
        ("https://user:secret@93.184.216.34/hook", "password"),
    ];
    for (url, needle) in refused {
        let body = serde_json::to_vec(&json!({"url": url, "entities": "*"})).unwrap();
        assert_refused(&server, Method::PUT, &path, body, 400, needle).await;
    }
    assert_eq!(server.get(&path).await.1, saved);
    // A name that does not resolve is accepted (it fails at delivery).
    let (status, _) = server
        .put(
            &path,
            &json!({"url": "https://receiver.example.invalid/hook", "entities": "*"}),
        )
        .await;
    assert_eq!(status, 200);
}

async fn every_disallowed_entity_operation_is_refused(kind: Kind) {
    let Some(server) = TestServer::start(kind).await else {
        return;
    };
    let app = server.app("Matrix").await;
    let path = format!("/api/v1/apps/{}/webhooks/production", app["id"].as_str().unwrap());
    let mut refused = 0;
    for entity in ENTITIES.iter() {
        for op in Operation::ALL.into_iter().filter(|op| !entity.allows(*op)) {
            let body =
                serde_json::to_vec(&json!({"url": HOOK_URL, "entities": {entity.name: [op.as_str()]}}))
                    .unwrap();
            let (status, answer) = server.call_raw(Method::PUT, &path, Some(OPERATOR), body).await;
            assert_eq!(status, 400, "{} {op} accepted", entity.name);
            let message = answer["error"]["message"].as_str().unwrap();
            assert!(
                message.contains(entity.name) && message.contains(op.as_str()),
                "{message}"
            );
            refused += 1;
        }
    }
    assert_eq!(refused, 73);
    assert_eq!(
        server.get(&path).await.0,
        404,
        "a refused configuration was stored"
    );
    // Unknown entity and operation names are refused naming both.
    for (entities, needles) in [
        (json!({"Widget": ["Create"]}), ["Widget", "Create"]),
        (json!({"Customer": ["Explode"]}), ["Customer", "Explode"]),
        (json!({"customer": "*"}), ["customer", "*"]),
    ] {
        let (status, answer) = server
            .put(&path, &json!({"url": HOOK_URL, "entities": entities}))
            .await;
        assert_eq!(status, 400);
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(needles.iter().all(|n| message.contains(n)), "{message}");
    }
    assert_eq!(server.get(&path).await.0, 404);
}

async fn bad_webhook_fields_are_refused_and_change_nothing(kind: Kind) {
    let Some(server) = TestServer::start(kind).await else {
        return;
    };
    let app = server.app("Fields").await;
    let path = format!("/api/v1/apps/{}/webhooks/production", app["id"].as_str().unwrap());
    let cases: Vec<(Value, &str)> = vec![
        (json!({"url": HOOK_URL, "entities": "all"}), "entities"),
        (json!({"url": HOOK_URL, "entities": ["Customer"]}), "entities"),
        (json!({"url": HOOK_URL, "entities": {}}), "at least one entity"),
        (
            json!({"url": HOOK_URL, "entities": {"Customer": []}}),
            "no operations",
        ),
        (
            json!({"url": HOOK_URL, "entities": {"Customer": [1]}}),
            "must be strings",
        ),
        (
            json!({"url": HOOK_URL, "entities": {"Customer": true}}),
            "Customer",
        ),
        (
            json!({"url": HOOK_URL, "entities": "*", "format": "xml"}),
            "format",
        ),
        (
            json!({"url": HOOK_URL, "entities": "*", "batch_window": "5 minutes"}),
            "batch_window",
        ),
        (
            json!({"url": HOOK_URL, "entities": "*", "batch_window": "2d"}),
            "batch_window",
        ),
        (
            json!({"url": HOOK_URL, "entities": "*", "ordering": "random"}),
            "ordering",
        ),
        (
            json!({"url": HOOK_URL, "entities": "*", "colour": "red"}),
            "unknown field",
        ),
        (json!({"url": 7, "entities": "*"}), "invalid type"),
        (json!({"entities": "*"}), "missing field `url`"),
    ];
    for (body, needle) in cases {
        assert_refused(
            &server,
            Method::PUT,
            &path,
            serde_json::to_vec(&body).unwrap(),
            400,
            needle,
        )
        .await;
    }
    assert_eq!(server.get(&path).await.0, 404);
}

async fn unknown_resources_are_404(kind: Kind) {
    let Some(server) = TestServer::start(kind).await else {
        return;
    };
    let app = server.app("Known").await;
    let app_id = app["id"].as_str().unwrap();
    let (_, connections_before) = server.get(&format!("/api/v1/apps/{app_id}/connections")).await;
    for (method, path, body) in [
        (Method::GET, "/api/v1/apps/app_nope".to_owned(), None),
        (Method::DELETE, "/api/v1/apps/app_nope".to_owned(), None),
        (Method::GET, "/api/v1/realms/123".to_owned(), None),
        (Method::DELETE, "/api/v1/realms/123".to_owned(), None),
        (
            Method::PUT,
            "/api/v1/apps/app_nope/webhooks/sandbox".to_owned(),
            Some(json!({"url": HOOK_URL, "entities": "*"})),
        ),
        (
            Method::PUT,
            format!("/api/v1/apps/{app_id}/webhooks/staging"),
            Some(json!({"url": HOOK_URL, "entities": "*"})),
        ),
        (
            Method::GET,
            format!("/api/v1/apps/{app_id}/webhooks/sandbox"),
            None,
        ),
        (
            Method::POST,
            format!("/api/v1/apps/{app_id}/webhooks/sandbox/reactivate"),
            None,
        ),
        (
            Method::POST,
            format!("/api/v1/apps/{app_id}/connections"),
            Some(json!({"realm_id": "999"})),
        ),
        (
            Method::POST,
            "/api/v1/apps/app_nope/connections".to_owned(),
            Some(json!({"realm_id": "999"})),
        ),
        (
            Method::POST,
            format!("/api/v1/apps/{app_id}/secrets/client_secret/rotate"),
            Some(json!({})),
        ),
    ] {
        let (status, answer) = server
            .call(method.clone(), &path, Some(OPERATOR), body.as_ref())
            .await;
        assert_eq!(status, 404, "{method} {path}: {answer}");
        assert_eq!(answer["error"]["code"], "not_found");
    }
    assert_eq!(
        server.get(&format!("/api/v1/apps/{app_id}/connections")).await.1,
        connections_before
    );
    let (status, _) = server
        .call(Method::PATCH, "/api/v1/realms", Some(OPERATOR), None)
        .await;
    assert_eq!(status, 405);
}

async fn bad_list_parameters_are_400(kind: Kind) {
    let Some(server) = TestServer::start(kind).await else {
        return;
    };
    for query in [
        "limit=0",
        "limit=1001",
        "limit=ten",
        "limit=-1",
        "cursor=%%%",
        "cursor=!!",
    ] {
        let (status, answer) = server.get(&format!("/api/v1/realms?{query}")).await;
        assert_eq!(status, 400, "{query}: {answer}");
        assert_eq!(answer["error"]["code"], "invalid_request");
    }
    assert_eq!(server.get("/api/v1/realms?limit=1000").await.0, 200);
}

async fn oversized_bodies_get_413_and_change_nothing(kind: Kind) {
    let Some(server) = TestServer::start_with(kind, |c| c.max_body_size = 4096).await else {
        return;
    };
    let big = format!(
        "{{\"name\": \"{}\", \"environment\": \"sandbox\"}}",
        "x".repeat(5000)
    );
    let (status, answer) = server
        .call_raw(Method::POST, "/api/v1/realms", Some(OPERATOR), big.into_bytes())
        .await;
    assert_eq!(status, 413, "{answer}");
    assert_eq!(answer["error"]["code"], "payload_too_large");
    assert_eq!(server.get("/api/v1/realms").await.1["data"], json!([]));
}

async fn signing_secrets_are_encrypted_at_rest_with_a_secret_key(kind: Kind) {
    let Some(server) =
        TestServer::start_with(kind, |c| c.secret_key = Some("a long random operator key".into())).await
    else {
        return;
    };
    let app = server.app("Sealed").await;
    let app_id = app["id"].as_str().unwrap();
    for (name, field) in [
        (SecretName::SigningSecret, "signing_secret"),
        (SecretName::VerifierToken, "verifier_token"),
    ] {
        let stored = server.state.store.secret(app_id, name).await.unwrap().unwrap();
        let value = app[field].as_str().unwrap();
        assert!(
            stored.current.starts_with("enc1:"),
            "{field} stored as {}",
            stored.current
        );
        assert!(!stored.current.contains(value));
        assert_eq!(server.state.secrets.open(&stored.current).unwrap(), value);
    }
}
