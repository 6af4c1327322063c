//! The ready-made axum endpoint: verify, append to the [`Inbox`], answer — in
//! milliseconds, whatever processing the app does later.
//!
//! Answers `200` once the notification is on disk; `401` when a configured signature
//! does not verify (or its headers are missing), `400` when the body is not a
//! notification, `413` when it is larger than the limit. A refused request appends
//! nothing. A redelivery of a notification already in the inbox (same `webhook-id`, or
//! same CloudEvents ids) is answered `200` and stored once.

use crate::inbox::{Inbox, Incoming};
use crate::{payload, verify};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// What the endpoint checks.
#[derive(Clone)]
pub struct HandlerOptions {
    /// Verifier tokens accepted for `intuit-signature` (none: not checked).
    pub verifier_tokens: Vec<String>,
    /// `whsec_…` secrets accepted for Standard Webhooks (none: not checked).
    pub signing_secrets: Vec<String>,
    /// The largest body accepted, in bytes.
    pub max_body_bytes: usize,
}

struct Handler {
    inbox: Inbox,
    verifier_tokens: Vec<String>,
    standard: Option<verify::StandardWebhooks>,
}

/// Why the endpoint could not be built.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Neither a verifier token nor a signing secret was given: nothing could be checked.
    #[error("configure at least one verifier token or signing secret")]
    NoKeys,
    /// A signing secret is not `whsec_` and base64.
    #[error(transparent)]
    Secret(#[from] verify::VerifyError),
}

/// A router with `POST {path}` receiving notifications into `inbox`. At least one
/// signature scheme must be configured; every configured one must verify.
pub fn router(path: &str, inbox: Inbox, options: HandlerOptions) -> Result<Router, HandlerError> {
    if options.verifier_tokens.is_empty() && options.signing_secrets.is_empty() {
        return Err(HandlerError::NoKeys);
    }
    let standard = if options.signing_secrets.is_empty() {
        None
    } else {
        Some(verify::StandardWebhooks::new(&options.signing_secrets)?)
    };
    let handler = Arc::new(Handler {
        inbox,
        verifier_tokens: options.verifier_tokens,
        standard,
    });
    Ok(Router::new()
        .route(path, post(receive))
        .layer(DefaultBodyLimit::max(options.max_body_bytes))
        .with_state(handler))
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

async fn receive(
    State(handler): State<Arc<Handler>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    if !handler.verifier_tokens.is_empty() {
        let tokens: Vec<&str> = handler.verifier_tokens.iter().map(String::as_str).collect();
        let Some(signature) = header(&headers, "intuit-signature") else {
            return (StatusCode::UNAUTHORIZED, "missing intuit-signature".into());
        };
        if verify::intuit(&tokens, &body, signature).is_err() {
            return (StatusCode::UNAUTHORIZED, "intuit-signature does not match".into());
        }
    }
    if let Some(standard) = &handler.standard {
        let checked = standard.verify(
            header(&headers, "webhook-id"),
            header(&headers, "webhook-timestamp"),
            header(&headers, "webhook-signature"),
            &body,
            now_millis() / 1000,
        );
        if let Err(err) = checked {
            return (StatusCode::UNAUTHORIZED, err.to_string());
        }
    }
    let content_type = header(&headers, "content-type").unwrap_or("application/json");
    let events = match payload::parse(content_type, &body) {
        Ok(events) => events,
        Err(err) => return (StatusCode::BAD_REQUEST, err.to_string()),
    };
    let webhook_id = header(&headers, "webhook-id").map(str::to_owned);
    let incoming = Incoming {
        dedupe_key: dedupe_key(webhook_id.as_deref(), &events),
        webhook_id,
        content_type: content_type.to_owned(),
        body: body.to_vec(),
        received_at: now_millis(),
    };
    match handler.inbox.append(incoming).await {
        Ok(_) => (StatusCode::OK, String::new()),
        Err(err) => (StatusCode::SERVICE_UNAVAILABLE, err.to_string()),
    }
}

/// What makes a redelivery of a notification recognisable: its `webhook-id`, or else
/// the ids of its CloudEvents (stable across retries). Legacy bodies without a
/// `webhook-id` (QuickBooks' own) have none; the worker's skip of applied changes
/// covers them.
pub fn dedupe_key(webhook_id: Option<&str>, events: &[payload::Event]) -> Option<String> {
    if let Some(id) = webhook_id {
        return Some(format!("webhook-id:{id}"));
    }
    let ids: Option<Vec<&str>> = events.iter().map(|e| e.event_id.as_deref()).collect();
    ids.filter(|ids| !ids.is_empty())
        .map(|ids| format!("cloudevents:{}", ids.join(",")))
}
