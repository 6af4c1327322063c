//! The QuickBooks-compatible API under `/v3/company/{realm}/`: OAuth access tokens only,
//! QuickBooks' JSON shapes, and a `Fault` for every error — an unknown route or method
//! included — so that client libraries raise their own exception classes.
//!
//! `entities.rs` holds the entity routes and `ops.rs` the operations behind them,
//! `rules.rs` the fields QuickBooks fills in, `company.rs` `CompanyInfo` and
//! `Preferences`, `query.rs` the query language, `batch.rs` the batch endpoint, `cdc.rs`
//! ChangeDataCapture.

mod access;
mod batch;
pub mod cdc;
mod company;
pub mod entities;
mod fault;
mod ops;
pub mod query;
mod rules;

pub use access::RealmAccess;
pub use fault::Fault;

use crate::AppState;
use axum::http::{Method, StatusCode, Uri};
use axum::routing::{get, post};
use axum::Router;

/// Every `/v3` route, to be nested at `/v3`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/company/{realm}/cdc", get(cdc::cdc))
        .route("/company/{realm}/query", get(query::get).post(query::post))
        .route("/company/{realm}/batch", post(batch::batch))
        .route(
            "/company/{realm}/{entity}",
            post(entities::write).get(entities::read_singleton),
        )
        .route("/company/{realm}/{entity}/{id}", get(entities::read))
        .route("/company/{realm}/{entity}/{id}/send", post(entities::send))
        .fallback(no_route)
        .method_not_allowed_fallback(no_method)
}

async fn no_route(uri: Uri) -> Fault {
    Fault::unsupported(
        StatusCode::NOT_FOUND,
        format!("no QuickBooks-compatible API at {}", uri.path()),
    )
}

async fn no_method(method: Method, uri: Uri) -> Fault {
    Fault::unsupported(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not supported on {}", uri.path()),
    )
}
