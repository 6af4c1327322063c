//! Layers every request passes: a request id (taken from `x-request-id` when it is a
//! sensible one, made otherwise), echoed in the response and carried by every log line
//! of the request; and `api-rate-limit` per token on `/api/v1`.

use super::ApiError;
use crate::AppState;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::time::Instant;
use tracing::Instrument;

/// The request id header.
pub const REQUEST_ID: &str = "x-request-id";

/// A client's id is kept when it is 1–128 visible ASCII characters.
fn acceptable(id: &str) -> bool {
    (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic())
}

/// Gives each request its id and a span carrying it.
pub async fn request_id(mut request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|id| acceptable(id))
        .map(str::to_owned)
        .unwrap_or_else(|| format!("req_{}", hex::encode(rand::random::<[u8; 12]>())));
    let value = HeaderValue::from_str(&id).expect("checked or made of hex");
    request.headers_mut().insert(REQUEST_ID, value.clone());
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %request.method(),
        path = %request.uri().path()
    );
    let mut response = next.run(request).instrument(span).await;
    response.headers_mut().insert(REQUEST_ID, value);
    response
}

/// `api-rate-limit`: requests to `/api/v1` counted per bearer token (requests without
/// one share a single count); over the rate, `429` with `Retry-After` in seconds.
pub async fn api_rate_limit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(rate) = state.config.api_rate_limit else {
        return next.run(request).await;
    };
    if !request.uri().path().starts_with("/api/v1/") {
        return next.run(request).await;
    }
    let token = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // Hashed: the throttle's map never holds a token.
    let key = hex::encode(Sha256::digest(token.as_bytes()));
    match state.api_throttle.check(&key, "", Instant::now()) {
        Ok(()) => next.run(request).await,
        Err(wait) => {
            let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
            let message = format!(
                "more than {} requests per {} with this token (api-rate-limit); retry after {seconds} s",
                rate.count,
                ledgerhook_domain::duration::format_duration(rate.period)
            );
            let mut response =
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message).into_response();
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                HeaderValue::from_str(&seconds.to_string()).expect("digits"),
            );
            response
        }
    }
}
