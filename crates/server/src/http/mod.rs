//! The HTTP edge: routes, request parsing and response shapes. Only this module knows
//! about JSON request and response types.

mod apps;
mod body;
mod connections;
mod dashboard;
mod edge_layers;
mod error;
mod events;
mod health;
mod notifications;
mod oauth;
mod openapi;
mod openid;
pub(crate) mod principal;
mod realms;
mod stats;
pub mod v3;
mod webhooks;

pub use error::ApiError;
pub use principal::Principal;

use crate::AppState;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};
use axum::Router;

/// Every route of the server, ready to be served or driven by tests.
pub fn router(state: AppState) -> Router {
    let body_limit = usize::try_from(state.config.max_body_size).unwrap_or(usize::MAX);
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/api/v1/entities", get(health::entities))
        .route("/api/v1/openapi.json", get(openapi::serve))
        .route("/api/v1/realms", post(realms::create).get(realms::list))
        .route("/api/v1/realms/{realm}", get(realms::get).delete(realms::delete))
        .route("/api/v1/realms/{realm}/events", post(events::ingest))
        .route("/api/v1/realms/{realm}/merge", post(events::merge))
        .route("/", get(dashboard::page))
        .route(
            "/connect/oauth2",
            get(oauth::authorize_page).post(oauth::authorize),
        )
        .route("/oauth2/v1/tokens/bearer", post(oauth::token))
        .route("/oauth2/v1/tokens/revoke", post(oauth::revoke))
        .route("/.well-known/openid-configuration", get(oauth::discovery))
        .route("/v1/openid_connect/userinfo", get(openid::userinfo))
        .route("/op/v1/jwks", get(openid::jwks))
        .route("/.well-known/openid_sandbox_configuration", get(oauth::discovery))
        .route(
            "/.well-known/openid_sandbox_configuration/",
            get(oauth::discovery),
        )
        .route("/.well-known/openid_configuration", get(oauth::discovery))
        .route("/.well-known/openid_configuration/", get(oauth::discovery))
        .nest("/v3", v3::router())
        .route("/api/v1/apps", post(apps::create).get(apps::list))
        .route("/api/v1/apps/{app}", get(apps::get).delete(apps::delete))
        .route(
            "/api/v1/apps/{app}/secrets/{name}/rotate",
            post(apps::rotate_secret),
        )
        .route(
            "/api/v1/apps/{app}/webhooks/{environment}",
            put(webhooks::put).get(webhooks::get).delete(webhooks::delete),
        )
        .route(
            "/api/v1/apps/{app}/webhooks/{environment}/reactivate",
            post(webhooks::reactivate),
        )
        .route(
            "/api/v1/apps/{app}/webhooks/{environment}/recover",
            post(notifications::recover),
        )
        .route(
            "/api/v1/apps/{app}/webhooks/{environment}/test",
            post(notifications::test),
        )
        .route("/api/v1/apps/{app}/notifications", get(notifications::list))
        .route("/api/v1/apps/{app}/stats", get(stats::get))
        .route("/api/v1/apps/{app}/notifications/{id}", get(notifications::get))
        .route(
            "/api/v1/apps/{app}/notifications/{id}/redeliver",
            post(notifications::redeliver),
        )
        .route(
            "/api/v1/apps/{app}/connections",
            post(connections::create).get(connections::list),
        )
        .route(
            "/api/v1/apps/{app}/connections/{realm}",
            axum::routing::delete(connections::delete),
        )
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            crate::edge::BODY_READ_TIMEOUT,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            edge_layers::api_rate_limit,
        ))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .layer(axum::middleware::from_fn(edge_layers::request_id))
        .with_state(state)
}
