//! `/api/v1/apps/{app}/webhooks/{environment}`: one webhook configuration per app and
//! environment.

use super::apps::existing_app;
use super::body::RawBody;
use super::{ApiError, Principal};
use crate::endpoint::{self, EndpointPolicy};
use crate::{AppState, RetryPolicy};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use ledgerhook_domain::duration::{format_duration, parse_duration};
use ledgerhook_domain::faults::{Faults, DEFAULT_DELAY_BY};
use ledgerhook_domain::subscription::{OperationsWanted, SelectionError};
use ledgerhook_domain::{ConfigState, EntitySelection, Environment, Ordering, PayloadFormat, Timestamp};
use ledgerhook_store::model::{ConfigInput, WebhookConfig};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::time::Duration;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutConfig {
    url: String,
    entities: Value,
    format: Option<String>,
    batch_window: Option<String>,
    ordering: Option<String>,
    #[serde(default)]
    faults: Option<Value>,
}

/// `faults` as the API takes it (SPEC §9): probabilities per notification.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultsInput {
    #[serde(default)]
    drop: f64,
    #[serde(default)]
    duplicate: f64,
    #[serde(default)]
    delay: f64,
    delay_by: Option<String>,
    seed: Option<u64>,
}

/// Reads `faults` (sandbox configurations only); `null` or absent switches it off.
fn parse_faults(value: Option<Value>, env: Environment) -> Result<Option<Faults>, ApiError> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    if env != Environment::Sandbox {
        return Err(ApiError::invalid(
            "faults: fault injection is for sandbox configurations only",
        ));
    }
    let input: FaultsInput =
        serde_json::from_value(value).map_err(|e| ApiError::invalid(format!("faults: {e}")))?;
    let delay_by = match input.delay_by.as_deref() {
        None => DEFAULT_DELAY_BY,
        Some(text) => parse_duration(text).map_err(|e| ApiError::invalid(format!("faults.delay_by: {e}")))?,
    };
    if delay_by > Duration::from_secs(86_400) {
        return Err(ApiError::invalid("faults.delay_by must be at most 24h"));
    }
    let faults = Faults {
        drop: input.drop,
        duplicate: input.duplicate,
        delay: input.delay,
        delay_by,
        seed: input.seed.unwrap_or_else(rand::random),
    };
    faults.validate().map_err(|e| ApiError::invalid(e.to_string()))?;
    Ok(Some(faults))
}

/// The API form of fault settings.
fn faults_json(faults: Option<&Faults>) -> Value {
    faults.map_or(Value::Null, |f| {
        json!({
            "drop": f.drop,
            "duplicate": f.duplicate,
            "delay": f.delay,
            "delay_by": format_duration(f.delay_by),
            "seed": f.seed,
        })
    })
}

/// The environment of a path, or `404`.
pub fn environment(text: &str) -> Result<Environment, ApiError> {
    text.parse().map_err(|_| {
        ApiError::not_found(format!(
            "unknown environment {text:?}: expected sandbox or production"
        ))
    })
}

/// Reads `"*"` or `{"Customer":["Create"],"Invoice":"*"}`.
fn parse_entities(value: &Value) -> Result<EntitySelection, ApiError> {
    let invalid = |message: String| ApiError::invalid(format!("entities: {message}"));
    let items = match value {
        Value::String(s) if s == "*" => return Ok(EntitySelection::All),
        Value::Object(map) => map
            .iter()
            .map(|(name, ops)| {
                let wanted = match ops {
                    Value::String(s) if s == "*" => OperationsWanted::All,
                    Value::Array(items) => OperationsWanted::Only(
                        items
                            .iter()
                            .map(|op| {
                                op.as_str().map(str::to_owned).ok_or_else(|| {
                                    invalid(format!("operations of \"{name}\" must be strings"))
                                })
                            })
                            .collect::<Result<_, _>>()?,
                    ),
                    _ => {
                        return Err(invalid(format!(
                            "\"{name}\" must map to \"*\" or a list of operations"
                        )))
                    }
                };
                Ok((name.clone(), wanted))
            })
            .collect::<Result<Vec<_>, _>>()?,
        _ => {
            return Err(invalid(
                "must be \"*\" or an object such as {\"Customer\":[\"Create\"],\"Invoice\":\"*\"}".to_owned(),
            ))
        }
    };
    EntitySelection::build(items).map_err(|e: SelectionError| invalid(e.to_string()))
}

/// The API form of a selection.
fn entities_json(selection: &EntitySelection) -> Value {
    match selection {
        EntitySelection::All => Value::String("*".into()),
        EntitySelection::Some(map) => {
            let mut out = Map::new();
            for (name, ops) in map {
                let value = match ops {
                    None => Value::String("*".into()),
                    Some(ops) => Value::Array(ops.iter().map(|o| Value::String(o.as_str().into())).collect()),
                };
                out.insert((*name).to_owned(), value);
            }
            Value::Object(out)
        }
    }
}

/// The batch window a configuration uses: its own, or the environment's setting.
pub fn effective_window(state: &AppState, config: &WebhookConfig) -> Duration {
    match config.batch_window_ms {
        Some(ms) => Duration::from_millis(ms as u64),
        None => match config.environment {
            Environment::Sandbox => state.config.sandbox_batch_window,
            Environment::Production => state.config.batch_window,
        },
    }
}

/// The ordering a configuration uses: its own, or the retry policy's default.
pub fn effective_ordering(state: &AppState, config: &WebhookConfig) -> Ordering {
    config.ordering.unwrap_or(match state.config.retry_policy {
        RetryPolicy::Classic => Ordering::BestEffort,
        RetryPolicy::Current => Ordering::Strict,
    })
}

/// The API shape of a configuration.
pub fn config_json(state: &AppState, config: &WebhookConfig) -> Value {
    json!({
        "app_id": config.app_id,
        "environment": config.environment.as_str(),
        "url": config.url,
        "entities": entities_json(&config.entities),
        "format": config.format.as_str(),
        "batch_window": format_duration(effective_window(state, config)),
        "ordering": effective_ordering(state, config).as_str(),
        "state": config.state.as_str(),
        "state_since": config.state_since.to_rfc3339(),
        "last_error": config.last_error,
        "faults": faults_json(config.faults.as_ref()),
        "created_at": config.created_at.to_rfc3339(),
        "updated_at": config.updated_at.to_rfc3339(),
    })
}

async fn validate(state: &AppState, input: PutConfig, env: Environment) -> Result<ConfigInput, ApiError> {
    let faults = parse_faults(input.faults.clone(), env)?;
    let policy = EndpointPolicy {
        allow_http: state.config.allow_http,
        allow_private_networks: state.config.allow_private_networks,
    };
    let url = endpoint::validate(&input.url, policy, state.lookup.as_ref())
        .await
        .map_err(ApiError::invalid)?;
    let entities = parse_entities(&input.entities)?;
    let format = match input.format.as_deref() {
        None => PayloadFormat::Legacy,
        Some(text) => text.parse().map_err(ApiError::invalid)?,
    };
    let batch_window_ms = match input.batch_window.as_deref() {
        None => None,
        Some(text) => {
            let window = parse_duration(text).map_err(|e| ApiError::invalid(format!("batch_window: {e}")))?;
            if window > Duration::from_secs(86_400) {
                return Err(ApiError::invalid("batch_window must be at most 24h"));
            }
            Some(window.as_millis() as i64)
        }
    };
    let ordering = input
        .ordering
        .as_deref()
        .map(|text| text.parse::<Ordering>().map_err(ApiError::invalid))
        .transpose()?;
    Ok(ConfigInput {
        url: url.to_string(),
        entities,
        format,
        batch_window_ms,
        ordering,
        faults,
    })
}

/// `PUT …/webhooks/{environment}`: validates and saves; the configuration becomes
/// `active`.
pub async fn put(
    State(state): State<AppState>,
    principal: Principal,
    Path((app_id, env)): Path<(String, String)>,
    body: RawBody,
) -> Result<Json<Value>, ApiError> {
    principal.require_app(&app_id)?;
    let env = environment(&env)?;
    existing_app(&state, &app_id).await?;
    let input = validate(&state, body.json()?, env).await?;
    let stored = state
        .store
        .put_config(&app_id, env, &input, Timestamp::now())
        .await?;
    // Saving releases held notifications.
    state.wake_dispatcher.notify_one();
    Ok(Json(config_json(&state, &stored)))
}

/// The configuration of (app, environment) the principal may see, or `404`.
pub async fn existing_config(
    state: &AppState,
    principal: &Principal,
    app_id: &str,
    env: &str,
) -> Result<WebhookConfig, ApiError> {
    principal.require_app(app_id)?;
    let env = environment(env)?;
    existing_app(state, app_id).await?;
    state
        .store
        .config(app_id, env)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("app {app_id} has no {env} webhook configuration")))
}

/// `GET …/webhooks/{environment}`.
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Path((app_id, env)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let config = existing_config(&state, &principal, &app_id, &env).await?;
    Ok(Json(config_json(&state, &config)))
}

/// `DELETE …/webhooks/{environment}`.
pub async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    Path((app_id, env)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let config = existing_config(&state, &principal, &app_id, &env).await?;
    state.store.delete_config(&app_id, config.environment).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST …/webhooks/{environment}/reactivate`: back to `active`; held notifications
/// are released in order.
pub async fn reactivate(
    State(state): State<AppState>,
    principal: Principal,
    Path((app_id, env)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let config = existing_config(&state, &principal, &app_id, &env).await?;
    let updated = state
        .store
        .set_config_state(
            &app_id,
            config.environment,
            ConfigState::Active,
            None,
            Timestamp::now(),
        )
        .await?
        .ok_or_else(|| ApiError::not_found("webhook configuration was deleted"))?;
    state.wake_dispatcher.notify_one();
    Ok(Json(config_json(&state, &updated)))
}
