//! `GET /api/v1/openapi.json`: an OpenAPI 3.1 document, served without a token, that
//! describes every route of `/api/v1` the router has (read from the router's source), with
//! request and response shapes and the error shape.

use crate::support::TestServer;
use ledgerhook_testkit::Kind;
use reqwest::StatusCode;

use std::collections::BTreeSet;

/// (method, path) of every `/api/v1` route in the router's source.
fn routes_in_the_router() -> BTreeSet<(String, String)> {
    let source = include_str!("../../src/http/mod.rs");
    let mut routes = BTreeSet::new();
    for part in source.split(".route(").skip(1) {
        let Some(rest) = part.trim_start().strip_prefix('"') else {
            continue;
        };
        let (path, handlers) = rest.split_once('"').unwrap();
        if !path.starts_with("/api/v1") {
            continue;
        }
        let handlers = &handlers[..handlers.find(")\n").unwrap_or(handlers.len())];
        for method in ["get", "post", "put", "delete"] {
            let called = [
                format!(" {method}("),
                format!(".{method}("),
                format!("::{method}("),
            ];
            if called.iter().any(|c| handlers.contains(c.as_str())) {
                routes.insert((method.to_owned(), path.to_owned()));
            }
        }
    }
    routes
}

#[tokio::test]
async fn the_document_describes_every_route_of_the_api() {
    let server = TestServer::start(Kind::Sqlite).await.unwrap();
    let (status, doc) = server
        .call(reqwest::Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    assert_eq!(status, StatusCode::OK, "no token needed");
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.insert((method.clone(), path.clone()));
        }
    }
    let routes = routes_in_the_router();
    assert!(routes.len() >= 24, "the router's source was not read: {routes:?}");
    let missing: Vec<_> = routes.difference(&documented).collect();
    assert!(missing.is_empty(), "routes the document lacks: {missing:?}");
    let extra: Vec<_> = documented.difference(&routes).collect();
    assert!(extra.is_empty(), "documented routes the router lacks: {extra:?}");
    // Shapes: requests, answers and the error shape are described.
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for name in [
        "Error",
        "Realm",
        "AppCreated",
        "ConfigInput",
        "WebhookConfig",
        "Faults",
        "NotificationDetail",
        "EventIn",
    ] {
        assert!(schemas.contains_key(name), "schema {name} missing");
    }
    let put = &doc["paths"]["/api/v1/apps/{app}/webhooks/{environment}"]["put"];
    assert_eq!(
        put["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/ConfigInput"
    );
    assert_eq!(
        put["responses"]["400"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/Error"
    );
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}
