//! `GET /`: the dashboard. One self-contained page (no external assets) that asks for a
//! token, keeps it in the browser's session storage only, and reads the API with it:
//! apps, their webhook configurations and state, and every notification with its
//! attempts.

use axum::http::header;
use axum::response::IntoResponse;

const PAGE: &str = include_str!("dashboard.html");

/// Serves the dashboard page.
pub async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (
                header::HeaderName::from_static("content-security-policy"),
                "default-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'",
            ),
        ],
        PAGE,
    )
}
