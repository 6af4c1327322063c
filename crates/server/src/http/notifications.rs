//! Notifications: list, read (with payload and attempts), redeliver, recover, and the
//! test send of a configuration.

use super::apps::existing_app;
use super::body::{page, ListParams, RawBody};
use super::webhooks::existing_config;
use super::{ApiError, Principal};
use crate::AppState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use ledgerhook_delivery::aggregator::new_notification_id;
use ledgerhook_delivery::outbound::{Attempt, Outcome};
use ledgerhook_delivery::payload;
use ledgerhook_domain::{ChangeEvent, ConfigState, Operation, Timestamp};
use ledgerhook_store::notifications::{
    NewNotification, Notification, NotificationFilter, NotificationStatus,
};
use ledgerhook_store::queue::{AttemptRecord, Decision};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;

/// The list shape of a notification.
fn summary_json(n: &Notification) -> Value {
    json!({
        "id": n.id,
        "environment": n.environment.as_str(),
        "realm_id": n.realm_id,
        "status": n.status.as_str(),
        "format": n.format.as_str(),
        "test": n.test,
        "created_at": n.created_at.to_rfc3339(),
        "attempts": n.attempt_count,
        "next_attempt_at": n.next_attempt_at.map(|t| t.to_rfc3339()),
        "faults": n.faults.iter().map(|f| f.as_str()).collect::<Vec<_>>(),
    })
}

fn record_json(a: &AttemptRecord) -> Value {
    json!({
        "number": a.number,
        "started_at": a.started_at.to_rfc3339(),
        "duration_ms": a.duration_ms,
        "outcome": a.outcome,
        "status_code": a.status_code,
        "error": a.error,
        "response_body": a.response_body,
        "request_headers": headers_json(&a.request_headers),
    })
}

/// An attempt's request headers as one JSON object, in the order sent.
fn headers_json(headers: &[(String, String)]) -> Value {
    Value::Object(
        headers
            .iter()
            .map(|(name, value)| (name.clone(), Value::String(value.clone())))
            .collect(),
    )
}

fn attempt_json(number: i64, a: &Attempt) -> Value {
    json!({
        "number": number,
        "started_at": a.started_at.to_rfc3339(),
        "duration_ms": a.duration_ms,
        "outcome": a.outcome.as_str(),
        "status_code": a.status_code,
        "error": a.error,
        "response_body": a.response_body,
        "request_headers": headers_json(&a.request_headers),
    })
}

fn filter_from(
    app_id: &str,
    query: &HashMap<String, String>,
    params: &ListParams,
) -> Result<NotificationFilter, ApiError> {
    let environment = query
        .get("environment")
        .filter(|v| !v.is_empty())
        .map(|v| {
            v.parse()
                .map_err(|e| ApiError::invalid(format!("environment: {e}")))
        })
        .transpose()?;
    let status = query
        .get("status")
        .filter(|v| !v.is_empty())
        .map(|v| {
            v.parse::<NotificationStatus>()
                .map_err(|e| ApiError::invalid(format!("status: {e}")))
        })
        .transpose()?;
    let since = query
        .get("since")
        .filter(|v| !v.is_empty())
        .map(|v| Timestamp::parse(v).map_err(|e| ApiError::invalid(format!("since: {e}"))))
        .transpose()?;
    let until = query
        .get("until")
        .filter(|v| !v.is_empty())
        .map(|v| Timestamp::parse(v).map_err(|e| ApiError::invalid(format!("until: {e}"))))
        .transpose()?;
    let before_seq = params
        .after
        .as_deref()
        .map(|c| {
            c.parse::<i64>()
                .map_err(|_| ApiError::invalid("cursor is not one this server gave out"))
        })
        .transpose()?;
    Ok(NotificationFilter {
        app_id: Some(app_id.to_owned()),
        environment,
        realm_id: query.get("realm").filter(|v| !v.is_empty()).cloned(),
        status,
        since,
        until,
        before_seq,
    })
}

/// `GET /api/v1/apps/{app}/notifications`: newest first.
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Path(app_id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    principal.require_app(&app_id)?;
    existing_app(&state, &app_id).await?;
    let params = ListParams::from_query(&query)?;
    let filter = filter_from(&app_id, &query, &params)?;
    let rows = state.store.notifications(&filter, params.fetch_limit()).await?;
    Ok(Json(page(rows, &params, |n| n.seq.to_string(), summary_json)))
}

async fn own_notification(
    state: &AppState,
    principal: &Principal,
    app_id: &str,
    id: &str,
) -> Result<Notification, ApiError> {
    principal.require_app(app_id)?;
    existing_app(state, app_id).await?;
    state
        .store
        .notification(id)
        .await?
        .filter(|n| n.app_id == app_id)
        .ok_or_else(|| ApiError::not_found(format!("notification {id} not found")))
}

/// `GET /api/v1/apps/{app}/notifications/{id}`: with the exact payload and attempts.
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Path((app_id, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let notification = own_notification(&state, &principal, &app_id, &id).await?;
    let attempts = state.store.attempts(notification.seq).await?;
    let mut body = summary_json(&notification);
    let object = body.as_object_mut().expect("summary is an object");
    object.insert("event_count".into(), notification.event_count.into());
    object.insert(
        "payload".into(),
        String::from_utf8_lossy(&notification.payload).into_owned().into(),
    );
    object.insert(
        "attempts".into(),
        Value::Array(attempts.iter().map(record_json).collect()),
    );
    Ok(Json(body))
}

/// Sends `notification` to `url` at once and records the attempt: success delivers it,
/// failure leads to `on_failure`.
async fn send_now(
    state: &AppState,
    notification: &Notification,
    url: &str,
    on_failure: Decision,
) -> Result<Attempt, ApiError> {
    let attempt = state.dispatcher.send(notification, url).await?;
    let decision = if attempt.outcome == Outcome::Success {
        Decision::Delivered
    } else {
        on_failure
    };
    state.dispatcher.record(notification, &attempt, &decision).await?;
    Ok(attempt)
}

/// `POST /api/v1/apps/{app}/notifications/{id}/redeliver`: sends it again now, whatever
/// its status, without changing the configuration's state; success makes it
/// `delivered`.
pub async fn redeliver(
    State(state): State<AppState>,
    principal: Principal,
    Path((app_id, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let notification = own_notification(&state, &principal, &app_id, &id).await?;
    let config = state
        .store
        .config(&app_id, notification.environment)
        .await?
        .ok_or_else(|| {
            ApiError::conflict(format!(
                "app {app_id} has no {} webhook configuration to send to",
                notification.environment
            ))
        })?;
    let attempt = send_now(&state, &notification, &config.url, Decision::Unchanged).await?;
    let updated = state.store.notification(&id).await?.unwrap_or(notification);
    Ok(Json(json!({
        "notification_id": updated.id,
        "status": updated.status.as_str(),
        "attempt": attempt_json(updated.attempt_count, &attempt),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Recover {
    since: String,
}

/// `POST …/webhooks/{environment}/recover` `{since}`: queues again every notification
/// made since then that was not delivered.
pub async fn recover(
    State(state): State<AppState>,
    principal: Principal,
    Path((app_id, env)): Path<(String, String)>,
    body: RawBody,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let config = existing_config(&state, &principal, &app_id, &env).await?;
    let input: Recover = body.json()?;
    let since = Timestamp::parse(&input.since).map_err(|e| ApiError::invalid(format!("since: {e}")))?;
    let queued = state.store.recover(config.id, since, Timestamp::now()).await?;
    state.wake_dispatcher.notify_one();
    Ok((StatusCode::ACCEPTED, Json(json!({"queued": queued}))))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TestSend {
    realm_id: Option<String>,
}

/// `POST …/webhooks/{environment}/test` `{realm_id?}`: sends a signed sample (one
/// `Customer` `Create`) at once and answers the attempt.
pub async fn test(
    State(state): State<AppState>,
    principal: Principal,
    Path((app_id, env)): Path<(String, String)>,
    body: RawBody,
) -> Result<Json<Value>, ApiError> {
    let config = existing_config(&state, &principal, &app_id, &env).await?;
    let input: TestSend = body.json_or_default()?;
    let realm_id = input.realm_id.unwrap_or_else(|| "0".to_owned());
    let now = Timestamp::now();
    let sample = ChangeEvent {
        entity: "Customer",
        entity_id: "1".to_owned(),
        operation: Operation::Create,
        last_updated: now,
        deleted_id: None,
    };
    let (body, _) = payload::render(config.format, &app_id, &realm_id, std::slice::from_ref(&sample))
        .into_iter()
        .next()
        .expect("one event renders one body");
    let new = NewNotification {
        id: new_notification_id(),
        payload: body.into_bytes(),
        event_count: 1,
    };
    let seq = state
        .store
        .insert_test_notification(&config, &realm_id, &new, now)
        .await?;
    let notification = state
        .store
        .delivery_state(seq)
        .await?
        .expect("just stored")
        .notification;
    let attempt = send_now(&state, &notification, &config.url, Decision::Drop).await?;
    if config.state != ConfigState::Active {
        tracing::info!(app = %app_id, "test send to a {} configuration", config.state);
    }
    Ok(Json(
        json!({"notification_id": notification.id, "attempt": attempt_json(1, &attempt)}),
    ))
}
