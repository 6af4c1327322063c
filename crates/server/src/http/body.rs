//! Request bodies and list parameters, parsed so that every mistake is a clear `400`
//! (or `413`) in the API's error shape rather than a framework's default text.

use super::ApiError;
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::HashMap;

/// The raw request body, limited to `max-body-size`. Handlers parse it after checking
/// who the caller is, so that authorization errors come before validation errors.
pub struct RawBody(pub Bytes);

impl FromRequest<AppState> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let limit = state.config.max_body_size;
        Bytes::from_request(req, state)
            .await
            .map(RawBody)
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "payload_too_large",
                        format!("request body is larger than max-body-size ({limit} bytes)"),
                    )
                } else {
                    ApiError::invalid(format!("cannot read request body: {rejection}"))
                }
            })
    }
}

impl RawBody {
    /// Parses the body as JSON into `T`; the error names the problem and its place.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        if self.0.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::invalid("request body is empty; expected a JSON object"));
        }
        serde_json::from_slice(&self.0).map_err(|e| {
            let kind = match e.classify() {
                serde_json::error::Category::Data => "invalid request body",
                _ => "malformed JSON",
            };
            ApiError::invalid(format!("{kind}: {e}"))
        })
    }

    /// Like [`RawBody::json`], but an empty body means `T::default()`.
    pub fn json_or_default<T: DeserializeOwned + Default>(&self) -> Result<T, ApiError> {
        if self.0.iter().all(u8::is_ascii_whitespace) {
            return Ok(T::default());
        }
        self.json()
    }
}

/// `limit` and `cursor` of a list request.
pub struct ListParams {
    /// 1–1000, default 100.
    pub limit: u32,
    /// The key after which the page starts.
    pub after: Option<String>,
}

impl ListParams {
    /// Reads `limit` and `cursor` from the query string.
    pub fn from_query(query: &HashMap<String, String>) -> Result<ListParams, ApiError> {
        let limit = match query.get("limit") {
            None => 100,
            Some(text) => match text.parse::<u32>() {
                Ok(n @ 1..=1000) => n,
                _ => {
                    return Err(ApiError::invalid(format!(
                        "limit must be a whole number from 1 to 1000, not {text:?}"
                    )))
                }
            },
        };
        let after = match query.get("cursor").filter(|c| !c.is_empty()) {
            None => None,
            Some(cursor) => Some(decode_cursor(cursor)?),
        };
        Ok(ListParams { limit, after })
    }

    /// One more than the page size: the extra row tells whether there is a next page.
    pub fn fetch_limit(&self) -> u32 {
        self.limit + 1
    }
}

fn decode_cursor(cursor: &str) -> Result<String, ApiError> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| ApiError::invalid("cursor is not one this server gave out"))
}

/// An opaque cursor for a sort key.
pub fn encode_cursor(key: &str) -> String {
    URL_SAFE_NO_PAD.encode(key.as_bytes())
}

/// `{"data":[…],"next_cursor":…}` from rows fetched with [`ListParams::fetch_limit`].
pub fn page<T, S: Serialize>(
    mut rows: Vec<T>,
    params: &ListParams,
    key: impl Fn(&T) -> String,
    render: impl Fn(&T) -> S,
) -> Value {
    let more = rows.len() > params.limit as usize;
    rows.truncate(params.limit as usize);
    let next_cursor = match (more, rows.last()) {
        (true, Some(last)) => Value::String(encode_cursor(&key(last))),
        _ => Value::Null,
    };
    let data: Vec<S> = rows.iter().map(render).collect();
    json!({"data": data, "next_cursor": next_cursor})
}
