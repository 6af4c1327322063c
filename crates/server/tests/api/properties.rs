//! Property tests at the HTTP edge: arbitrary `changedSince` forms, `/v3` queries,
//! ingestion bodies and configuration durations are either accepted or refused with a
//! `4xx` and a message — never a `5xx`, never a panic.

use crate::support::{TestServer, OPERATOR};
use ledgerhook_testkit::Kind;
use proptest::prelude::*;
use reqwest::Method;
use serde_json::{json, Value};

/// A served company and its app, and the runtime that serves them.
struct Fixture {
    runtime: tokio::runtime::Runtime,
    server: TestServer,
    realm: String,
    app_id: String,
    token: String,
}

fn fixture() -> Fixture {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (server, realm, app_id, token) = runtime.block_on(async {
        let server = TestServer::start_loopback(Kind::Sqlite).await.unwrap();
        let realm = server.realm("sandbox").await;
        let app = server.app("Properties").await;
        let app_id = app["id"].as_str().unwrap().to_owned();
        let grant = server.connect(&app_id, &realm).await;
        let token = grant["access_token"].as_str().unwrap().to_owned();
        (server, realm, app_id, token)
    });
    Fixture {
        runtime,
        server,
        realm,
        app_id,
        token,
    }
}

/// Accepted, or a 4xx whose body says what is wrong.
fn assert_answered(status: reqwest::StatusCode, body: &Value, what: &str) -> Result<(), TestCaseError> {
    prop_assert!(!status.is_server_error(), "{what}: {status} {body}");
    if status.is_client_error() {
        let message = body["error"]["message"]
            .as_str()
            .or_else(|| body["Fault"]["Error"][0]["Message"].as_str())
            .or_else(|| body["fault"]["error"][0]["message"].as_str());
        prop_assert!(
            message.is_some_and(|m| !m.is_empty()),
            "{what}: {status} without a message: {body}"
        );
    }
    Ok(())
}

fn text_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,40}",
        "20[0-9]{2}-[0-9]{2}-[0-9]{2}(T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\\.[0-9]{1,4})?)?)?(Z|[+ -][0-9]{2}:?[0-9]{2})?",
        "(select|SELECT) [*a-zA-Z(),]{0,12} (from|FROM) [A-Za-z]{0,12}( where [A-Za-z.]{1,10} (=|<|>|in|like) '[^']{0,6}'?)?( orderby [A-Za-z]{1,8})?( maxresults [0-9]{0,5})?",
        "[0-9]{0,4}(\\.[0-9])?(ms|s|m|h|d|x)?",
    ]
}

#[test]
fn outside_input_is_accepted_or_refused_with_a_message() {
    let f = fixture();
    let config = ProptestConfig {
        cases: 96,
        ..ProptestConfig::default()
    };
    proptest!(config, |(text in text_like(), body in "[ -~]{0,80}")| {
        let (server, realm) = (&f.server, &f.realm);
        f.runtime.block_on(async {
            let cdc = format!("/v3/company/{realm}/cdc?entities=Customer&changedSince={}", urlencode(&text));
            let (status, answer) = server.call(Method::GET, &cdc, Some(&f.token), None).await;
            assert_answered(status, &answer, &format!("changedSince {text:?}"))?;
            let query = format!("/v3/company/{realm}/query?query={}", urlencode(&text));
            let (status, answer) = server.call(Method::GET, &query, Some(&f.token), None).await;
            assert_answered(status, &answer, &format!("query {text:?}"))?;
            let events = format!("/api/v1/realms/{realm}/events");
            let (status, answer) = server.call_raw(Method::POST, &events, Some(OPERATOR), body.clone().into_bytes()).await;
            assert_answered(status, &answer, &format!("ingestion body {body:?}"))?;
            let webhooks = format!("/api/v1/apps/{}/webhooks/sandbox", f.app_id);
            let config = json!({"url": "http://127.0.0.1:9/hook", "entities": "*", "batch_window": text,
                                "faults": {"delay": 0.5, "delay_by": text}});
            let (status, answer) = server.call(Method::PUT, &webhooks, Some(OPERATOR), Some(&config)).await;
            assert_answered(status, &answer, &format!("batch_window {text:?}"))?;
            Ok::<(), TestCaseError>(())
        })?;
    });
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}
