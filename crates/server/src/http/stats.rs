//! `GET /api/v1/apps/{app}/stats?since=&bucket=`: an app's delivery attempts over time,
//! successes and failures per bucket — the dashboard's chart, for any client.

use super::apps::existing_app;
use super::{ApiError, Principal};
use crate::AppState;
use axum::extract::{Path, Query, State};
use axum::Json;
use ledgerhook_domain::duration::{format_duration, parse_duration};
use ledgerhook_domain::Timestamp;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;

/// The most buckets one answer holds.
const MAX_BUCKETS: i64 = 1000;

/// `GET /api/v1/apps/{app}/stats`: `since` (RFC 3339, default an hour ago), `bucket` (a
/// duration, default `5m`); every bucket from `since` to now, empty ones included.
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Path(app_id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    principal.require_app(&app_id)?;
    existing_app(&state, &app_id).await?;
    let now = Timestamp::now();
    let since = match query.get("since") {
        Some(text) => Timestamp::parse(text).map_err(|e| ApiError::invalid(format!("since: {e}")))?,
        None => Timestamp(now.millis() - 3_600_000),
    };
    let bucket = match query.get("bucket") {
        Some(text) => parse_duration(text).map_err(|e| ApiError::invalid(format!("bucket: {e}")))?,
        None => Duration::from_secs(300),
    };
    if let Some(unknown) = query.keys().find(|k| !matches!(k.as_str(), "since" | "bucket")) {
        return Err(ApiError::invalid(format!(
            "unknown parameter {unknown:?}; expected since and bucket"
        )));
    }
    let bucket_ms = bucket.as_millis() as i64;
    if bucket_ms < 1000 {
        return Err(ApiError::invalid("bucket must be at least 1s"));
    }
    if since.millis() > now.millis() {
        return Err(ApiError::invalid("since is in the future"));
    }
    let count = (now.millis() - since.millis()) / bucket_ms + 1;
    if count > MAX_BUCKETS {
        return Err(ApiError::invalid(format!(
            "{count} buckets of {} since {since}; at most {MAX_BUCKETS}: choose a later since or a larger bucket",
            format_duration(bucket)
        )));
    }
    let counted: HashMap<i64, (i64, i64)> = state
        .store
        .attempt_buckets(&app_id, since, bucket_ms)
        .await?
        .into_iter()
        .map(|(index, ok, failed)| (index, (ok, failed)))
        .collect();
    let buckets: Vec<Value> = (0..count)
        .map(|index| {
            let (delivered, failed) = counted.get(&index).copied().unwrap_or_default();
            json!({
                "start": Timestamp(since.millis() + index * bucket_ms).to_rfc3339(),
                "delivered": delivered,
                "failed": failed,
            })
        })
        .collect();
    Ok(Json(json!({
        "since": since.to_rfc3339(),
        "bucket": format_duration(bucket),
        "buckets": buckets,
    })))
}
