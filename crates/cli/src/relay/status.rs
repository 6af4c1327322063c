//! The relay's own routes: its status, its dead letters, and a full repair on demand.

use super::forward::Forward;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ledgerhook_receiver::worker::{Worker, WorkerStatus};
use serde_json::{json, Value};
use std::collections::HashMap;

type RelayWorker = Worker<Forward>;

/// `GET /status`, `GET /dead-letters`, `POST /dead-letters/retry`, `POST /repair`.
pub fn router(worker: RelayWorker) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/dead-letters", get(dead_letters))
        .route("/dead-letters/retry", post(retry))
        .route("/repair", post(repair))
        .with_state(worker)
}

fn failed(err: impl std::error::Error + 'static) -> Response {
    let message = ledgerhook_domain::error_chain(&err);
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({"error": {"code": "unavailable", "message": message}})),
    )
        .into_response()
}

fn time(at: Option<ledgerhook_domain::Timestamp>) -> Value {
    at.map_or(Value::Null, |t| json!(t.to_rfc3339()))
}

/// The status as JSON.
pub fn render(status: &WorkerStatus) -> Value {
    let realms: Vec<Value> = status
        .realms
        .iter()
        .map(|r| {
            json!({
                "realm_id": r.realm_id,
                "last_applied": time(r.last_applied),
                "heard_at": time(r.heard_at),
                "depth": r.depth,
                "lag_ms": r.lag_ms,
                "failing": r.failures > 0,
                "failures": r.failures,
                "last_error": r.last_error,
                "retry_at": time(r.retry_at),
                "dead_letters": r.dead_letters,
            })
        })
        .collect();
    let failing: Vec<&str> = status
        .realms
        .iter()
        .filter(|r| r.failures > 0)
        .map(|r| r.realm_id.as_str())
        .collect();
    json!({
        "inbox_depth": status.inbox_depth,
        "realms": realms,
        "failing_realms": failing,
        "dead_letters": status.realms.iter().map(|r| r.dead_letters).sum::<i64>(),
    })
}

async fn status(State(worker): State<RelayWorker>) -> Response {
    match worker.status().await {
        Ok(status) => Json(render(&status)).into_response(),
        Err(err) => failed(err),
    }
}

async fn dead_letters(State(worker): State<RelayWorker>) -> Response {
    match worker.dead_letters().await {
        Ok(letters) => {
            let data: Vec<Value> = letters
                .iter()
                .map(|d| {
                    json!({
                        "realm_id": d.event.realm_id,
                        "name": d.event.entity,
                        "id": d.event.entity_id,
                        "operation": d.event.operation.as_str(),
                        "lastUpdated": d.event.last_updated.to_rfc3339(),
                        "reason": d.reason,
                        "dead_at": ledgerhook_domain::Timestamp(d.dead_at).to_rfc3339(),
                    })
                })
                .collect();
            Json(json!({"data": data})).into_response()
        }
        Err(err) => failed(err),
    }
}

async fn retry(State(worker): State<RelayWorker>, Query(query): Query<HashMap<String, String>>) -> Response {
    match worker
        .retry_dead_letters(query.get("realm").map(String::as_str))
        .await
    {
        Ok(queued) => Json(json!({"queued": queued})).into_response(),
        Err(err) => failed(err),
    }
}

async fn repair(State(worker): State<RelayWorker>) -> Response {
    worker.request_full_repair();
    (StatusCode::ACCEPTED, Json(json!({"repair": "requested"}))).into_response()
}
