//! Liveness, readiness, metrics and the entity matrix: the routes that need no data.

use super::{ApiError, Principal};
use crate::AppState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use ledgerhook_domain::{Operation, ENTITIES};
use serde_json::{json, Value};

/// `GET /healthz`: the process is up.
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /readyz`: the database answers.
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, Json(json!({"status": "ready"}))),
        Err(err) => {
            tracing::warn!(error = %err, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "unavailable", "error": "database unreachable"})),
            )
        }
    }
}

/// `GET /metrics`: Prometheus text exposition (operator only).
pub async fn metrics(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<impl IntoResponse, ApiError> {
    principal.require_operator()?;
    let mut body = format!(
        "# HELP ledgerhook_build_info Build information.\n# TYPE ledgerhook_build_info gauge\nledgerhook_build_info{{version=\"{}\"}} 1\n",
        env!("CARGO_PKG_VERSION")
    );
    body.push_str(&state.metrics.render());
    body.push_str("# HELP ledgerhook_background_errors_total Failed steps of each background worker.\n# TYPE ledgerhook_background_errors_total counter\n");
    for (name, status) in state.background.all() {
        body.push_str(&format!(
            "ledgerhook_background_errors_total{{worker=\"{name}\"}} {}\n",
            status.snapshot().errors
        ));
    }
    body.push_str("# HELP ledgerhook_notifications Notifications in the database, by status.\n# TYPE ledgerhook_notifications gauge\n");
    for (status, count) in state.store.notification_counts().await? {
        body.push_str(&format!(
            "ledgerhook_notifications{{status=\"{status}\"}} {count}\n"
        ));
    }
    let now = ledgerhook_domain::Timestamp::now();
    let (depth, oldest) = state.store.queue_stats(now).await?;
    let age = oldest.map_or(0.0, |at| (now.millis() - at.millis()).max(0) as f64 / 1000.0);
    body.push_str(&format!(
        "# HELP ledgerhook_queue_depth Notifications waiting to be sent (pending or retrying).\n# TYPE ledgerhook_queue_depth gauge\nledgerhook_queue_depth {depth}\n\
         # HELP ledgerhook_queue_oldest_due_age_seconds How long the oldest due notification has been due (0 when none is).\n# TYPE ledgerhook_queue_oldest_due_age_seconds gauge\nledgerhook_queue_oldest_due_age_seconds {age}\n"
    ));
    body.push_str("# HELP ledgerhook_faults_injected Retained notifications with each injected fault (sandbox fault injection).\n# TYPE ledgerhook_faults_injected gauge\n");
    for (fault, count) in state.store.fault_counts().await? {
        body.push_str(&format!(
            "ledgerhook_faults_injected{{fault=\"{}\"}} {count}\n",
            fault.as_str()
        ));
    }
    body.push_str("# HELP ledgerhook_webhook_configurations Webhook configurations, by state.\n# TYPE ledgerhook_webhook_configurations gauge\n");
    for (state_name, count) in state.store.config_counts().await? {
        body.push_str(&format!(
            "ledgerhook_webhook_configurations{{state=\"{state_name}\"}} {count}\n"
        ));
    }
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        body,
    ))
}

/// `GET /api/v1/entities`: the entity × operation matrix.
pub async fn entities() -> Json<Value> {
    let data: Vec<Value> = ENTITIES
        .iter()
        .map(|e| {
            let operations: Vec<&str> = e.operations().map(Operation::as_str).collect();
            json!({"name": e.name, "operations": operations, "cdc": e.cdc})
        })
        .collect();
    Json(json!({"data": data}))
}
