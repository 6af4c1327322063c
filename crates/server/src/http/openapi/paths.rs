//! One documented operation per route of `/api/v1` (read by utoipa's derive into the
//! document). `tests/api/openapi.rs` fails when the router has a route this list lacks.

#![allow(dead_code)] // the functions only carry the annotations

use super::schemas::*;

#[utoipa::path(get, path = "/api/v1/entities", tag = "entities", responses((status = 200, body = EntityList)))]
fn entities() {}

#[utoipa::path(post, path = "/api/v1/realms", tag = "realms", request_body = NewRealm, security(("bearer" = [])),
    responses((status = 201, body = Realm), (status = 400, body = Error), (status = 401, body = Error), (status = 403, body = Error)))]
fn create_realm() {}

#[utoipa::path(get, path = "/api/v1/realms", tag = "realms", security(("bearer" = [])),
    params(("limit" = Option<u32>, Query, description = "1-1000, default 100"), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = RealmList), (status = 400, body = Error), (status = 401, body = Error)))]
fn list_realms() {}

#[utoipa::path(get, path = "/api/v1/realms/{realm}", tag = "realms", security(("bearer" = [])),
    params(("realm" = String, Path)), responses((status = 200, body = Realm), (status = 404, body = Error)))]
fn get_realm() {}

#[utoipa::path(delete, path = "/api/v1/realms/{realm}", tag = "realms", security(("bearer" = [])),
    params(("realm" = String, Path)), responses((status = 204), (status = 403, body = Error), (status = 404, body = Error)))]
fn delete_realm() {}

#[utoipa::path(post, path = "/api/v1/realms/{realm}/events", tag = "events", security(("bearer" = [])),
    params(("realm" = String, Path), ("Idempotency-Key" = Option<String>, Header, description = "a repeat within 24 h answers the first result")),
    request_body = Vec<EventIn>,
    responses((status = 202, body = Accepted), (status = 400, body = Error), (status = 409, body = Error),
              (status = 413, body = Error), (status = 429, body = Error), (status = 503, body = Error)))]
fn ingest() {}

#[utoipa::path(post, path = "/api/v1/realms/{realm}/merge", tag = "events", security(("bearer" = [])),
    params(("realm" = String, Path)), request_body = Merge,
    responses((status = 202, body = Accepted), (status = 400, body = Error), (status = 404, body = Error)))]
fn merge() {}

#[utoipa::path(post, path = "/api/v1/apps", tag = "apps", request_body = NewApp, security(("bearer" = [])),
    responses((status = 201, body = AppCreated), (status = 400, body = Error), (status = 403, body = Error)))]
fn create_app() {}

#[utoipa::path(get, path = "/api/v1/apps", tag = "apps", security(("bearer" = [])),
    params(("limit" = Option<u32>, Query), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = AppList), (status = 401, body = Error)))]
fn list_apps() {}

#[utoipa::path(get, path = "/api/v1/apps/{app}", tag = "apps", security(("bearer" = [])),
    params(("app" = String, Path)), responses((status = 200, body = App), (status = 404, body = Error)))]
fn get_app() {}

#[utoipa::path(delete, path = "/api/v1/apps/{app}", tag = "apps", security(("bearer" = [])),
    params(("app" = String, Path)), responses((status = 204), (status = 404, body = Error)))]
fn delete_app() {}

#[utoipa::path(post, path = "/api/v1/apps/{app}/secrets/{name}/rotate", tag = "apps", security(("bearer" = [])),
    params(("app" = String, Path), ("name" = String, Path, description = "signing_secret or verifier_token")),
    request_body = Rotate, responses((status = 200, body = Rotated), (status = 400, body = Error), (status = 404, body = Error)))]
fn rotate_secret() {}

#[utoipa::path(put, path = "/api/v1/apps/{app}/webhooks/{environment}", tag = "webhooks", security(("bearer" = [])),
    params(("app" = String, Path), ("environment" = String, Path, description = "sandbox or production")),
    request_body = ConfigInput, responses((status = 200, body = WebhookConfig), (status = 400, body = Error), (status = 404, body = Error)))]
fn put_webhooks() {}

#[utoipa::path(get, path = "/api/v1/apps/{app}/webhooks/{environment}", tag = "webhooks", security(("bearer" = [])),
    params(("app" = String, Path), ("environment" = String, Path)),
    responses((status = 200, body = WebhookConfig), (status = 404, body = Error)))]
fn get_webhooks() {}

#[utoipa::path(delete, path = "/api/v1/apps/{app}/webhooks/{environment}", tag = "webhooks", security(("bearer" = [])),
    params(("app" = String, Path), ("environment" = String, Path)), responses((status = 204), (status = 404, body = Error)))]
fn delete_webhooks() {}

#[utoipa::path(post, path = "/api/v1/apps/{app}/webhooks/{environment}/reactivate", tag = "webhooks", security(("bearer" = [])),
    params(("app" = String, Path), ("environment" = String, Path)),
    responses((status = 200, body = WebhookConfig), (status = 404, body = Error)))]
fn reactivate() {}

#[utoipa::path(post, path = "/api/v1/apps/{app}/webhooks/{environment}/recover", tag = "webhooks", security(("bearer" = [])),
    params(("app" = String, Path), ("environment" = String, Path)), request_body = Recover,
    responses((status = 202, body = Queued), (status = 400, body = Error), (status = 404, body = Error)))]
fn recover() {}

#[utoipa::path(post, path = "/api/v1/apps/{app}/webhooks/{environment}/test", tag = "webhooks", security(("bearer" = [])),
    params(("app" = String, Path), ("environment" = String, Path)), request_body = TestSend,
    responses((status = 200, body = Sent), (status = 404, body = Error)))]
fn test_send() {}

#[utoipa::path(get, path = "/api/v1/apps/{app}/notifications", tag = "notifications", security(("bearer" = [])),
    params(("app" = String, Path), ("environment" = Option<String>, Query), ("realm" = Option<String>, Query),
           ("status" = Option<String>, Query),
           ("since" = Option<String>, Query, description = "RFC 3339: made at or after"),
           ("until" = Option<String>, Query, description = "RFC 3339: made before"), ("limit" = Option<u32>, Query),
           ("cursor" = Option<String>, Query)),
    responses((status = 200, body = NotificationList), (status = 400, body = Error), (status = 404, body = Error)))]
fn list_notifications() {}

#[utoipa::path(get, path = "/api/v1/apps/{app}/stats", tag = "notifications", security(("bearer" = [])),
    params(("app" = String, Path), ("since" = Option<String>, Query, description = "RFC 3339, default an hour ago"),
           ("bucket" = Option<String>, Query, description = "a duration, default 5m")),
    responses((status = 200, body = Stats), (status = 400, body = Error), (status = 404, body = Error)))]
fn stats() {}

#[utoipa::path(get, path = "/api/v1/apps/{app}/notifications/{id}", tag = "notifications", security(("bearer" = [])),
    params(("app" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = NotificationDetail), (status = 404, body = Error)))]
fn get_notification() {}

#[utoipa::path(post, path = "/api/v1/apps/{app}/notifications/{id}/redeliver", tag = "notifications", security(("bearer" = [])),
    params(("app" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = Sent), (status = 404, body = Error), (status = 409, body = Error)))]
fn redeliver() {}

#[utoipa::path(post, path = "/api/v1/apps/{app}/connections", tag = "connections", security(("bearer" = [])),
    params(("app" = String, Path)), request_body = Connect,
    responses((status = 201, body = Grant), (status = 403, body = Error), (status = 404, body = Error)))]
fn create_connection() {}

#[utoipa::path(get, path = "/api/v1/apps/{app}/connections", tag = "connections", security(("bearer" = [])),
    params(("app" = String, Path), ("limit" = Option<u32>, Query), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = ConnectionList), (status = 404, body = Error)))]
fn list_connections() {}

#[utoipa::path(delete, path = "/api/v1/apps/{app}/connections/{realm}", tag = "connections", security(("bearer" = [])),
    params(("app" = String, Path), ("realm" = String, Path)), responses((status = 204), (status = 404, body = Error)))]
fn delete_connection() {}

#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "meta", responses((status = 200, description = "This document")))]
fn openapi() {}

/// Every documented operation, for the derive.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "Ledgerhook management API", description = "Realms, apps, webhook configurations, connections, change events and notifications. Errors are {\"error\":{\"code\",\"message\"}}; lists are {\"data\":[…],\"next_cursor\":…}."),
    paths(entities, create_realm, list_realms, get_realm, delete_realm, ingest, merge, create_app, list_apps, get_app,
          delete_app, rotate_secret, put_webhooks, get_webhooks, delete_webhooks, reactivate, recover, test_send,
          list_notifications, stats, get_notification, redeliver, create_connection, list_connections, delete_connection, openapi),
    modifiers(&Bearer, &CommonErrors),
    tags((name = "realms"), (name = "apps"), (name = "webhooks"), (name = "connections"), (name = "events"),
         (name = "notifications"), (name = "entities"), (name = "meta"))
)]
pub struct ApiDoc;

/// The bearer scheme: the operator token, an app's `api_key`.
struct Bearer;

impl utoipa::Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The operator token, or an app's api_key"))
                    .build(),
            ),
        );
    }
}

/// The answers any operation can give besides its own, added where it does not list them:
/// `401` and `403` (a missing, unknown or too-weak token) on every secured operation, `429`
/// (`api-rate-limit`) and `503` (the database unavailable) on every secured operation,
/// `400` wherever a query, header or body is read, `404` wherever a path names a thing,
/// and `413` (`max-body-size`) wherever a body is read. All carry the error shape.
struct CommonErrors;

impl utoipa::Modify for CommonErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::ParameterIn;
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("Error")))
                        .build(),
                )
                .build()
        };
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                let params = operation.parameters.as_deref().unwrap_or_default();
                let in_path = params.iter().any(|p| p.parameter_in == ParameterIn::Path);
                let reads_input = operation.request_body.is_some()
                    || params.iter().any(|p| p.parameter_in != ParameterIn::Path);
                let secured = operation.security.is_some();
                let wanted = [
                    (secured, "401", "No token, or one this server does not know"),
                    (secured, "403", "The token may not do this"),
                    (secured, "429", "Over api-rate-limit: try again after Retry-After"),
                    (secured, "503", "The database is unavailable"),
                    (reads_input, "400", "A malformed query, header or body"),
                    (in_path, "404", "No such thing"),
                    (
                        operation.request_body.is_some(),
                        "413",
                        "The body is larger than max-body-size",
                    ),
                ];
                for (applies, status, description) in wanted {
                    if applies && !operation.responses.responses.contains_key(status) {
                        operation
                            .responses
                            .responses
                            .insert(status.to_owned(), error(description).into());
                    }
                }
            }
        }
    }
}
