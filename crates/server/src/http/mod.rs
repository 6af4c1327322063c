//! The HTTP edge: routes, request parsing and response shapes. Only this module knows
//! about JSON request and response types.

mod error;
mod health;
mod principal;

pub use error::ApiError;
pub use principal::Principal;

use crate::AppState;
use axum::routing::get;
use axum::Router;

/// Every route of the server, ready to be served or driven by tests.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/api/v1/entities", get(health::entities))
        .fallback(error::not_found)
        .with_state(state)
}
