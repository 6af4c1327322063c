//! The CLI as a client of a running server: one HTTP call, and the three ways it can go
//! wrong, each with its exit code (SPEC §9): the server refused (1, its message), the
//! arguments were bad (2), the server could not be reached (3, with what to do).

#![allow(clippy::disallowed_types, clippy::disallowed_methods)] // a client of the server by design (clippy.toml)

use reqwest::Method;
use serde_json::Value;
use std::process::ExitCode;
use std::time::Duration;

/// Why a client command failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error.
    #[error("{message} ({status})")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The server's message.
        message: String,
    },
    /// The arguments do not make a request.
    #[error("{0}")]
    Usage(String),
    /// The server could not be reached.
    #[error("cannot reach {server}: {cause}\nis `ledgerhook serve` running at {server}? set --server or LEDGERHOOK_SERVER")]
    Unreachable {
        /// The server's base URL.
        server: String,
        /// What the HTTP client said.
        cause: String,
    },
}

impl ClientError {
    /// The exit code of SPEC §9.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            ClientError::Refused { .. } => ExitCode::from(1),
            ClientError::Usage(_) => ExitCode::from(2),
            ClientError::Unreachable { .. } => ExitCode::from(3),
        }
    }
}

/// A client of one server with one token.
pub struct Api {
    server: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Api {
    /// A client of `server` (a base URL) with `token`.
    pub fn new(server: &str, token: Option<String>) -> Result<Api, ClientError> {
        if !(server.starts_with("http://") || server.starts_with("https://")) {
            return Err(ClientError::Usage(format!(
                "--server: expected an http:// or https:// URL, got \"{server}\""
            )));
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| ClientError::Usage(format!("cannot build the HTTP client: {e}")))?;
        Ok(Api {
            server: server.trim_end_matches('/').to_owned(),
            token,
            http,
        })
    }

    /// `method path` with an optional JSON body and extra headers; answers the JSON
    /// body (`Null` when empty) of a success.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, String)],
    ) -> Result<Value, ClientError> {
        self.call_with_query(method, path, &[], body, headers).await
    }

    /// [`Api::call`] with query parameters.
    pub async fn call_with_query(
        &self,
        method: Method,
        path: &str,
        query: &[(String, String)],
        body: Option<&Value>,
        headers: &[(&str, String)],
    ) -> Result<Value, ClientError> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.server))
            .query(query);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| ClientError::Unreachable {
            server: self.server.clone(),
            cause: ledgerhook_domain::error_chain(&e),
        })?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| ClientError::Unreachable {
            server: self.server.clone(),
            cause: ledgerhook_domain::error_chain(&e),
        })?;
        let value: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        if status.is_success() {
            return Ok(value);
        }
        let mut message = value["error"]["message"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| value.to_string());
        if status == reqwest::StatusCode::UNAUTHORIZED && self.token.is_none() {
            message.push_str("; give the operator token or an app key with --token or LEDGERHOOK_TOKEN");
        }
        Err(ClientError::Refused {
            status: status.as_u16(),
            message,
        })
    }

    /// Every item of a list, following `next_cursor` (`all`), or one page of `limit`.
    pub async fn list(
        &self,
        path: &str,
        query: &[(String, String)],
        limit: u32,
        all: bool,
    ) -> Result<Vec<Value>, ClientError> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut params: Vec<(String, String)> = query.to_vec();
            params.push(("limit".into(), limit.to_string()));
            if let Some(cursor) = &cursor {
                params.push(("cursor".into(), cursor.clone()));
            }
            let page = self
                .call_with_query(Method::GET, path, &params, None, &[])
                .await?;
            items.extend(page["data"].as_array().cloned().unwrap_or_default());
            match page["next_cursor"].as_str() {
                Some(next) if all => cursor = Some(next.to_owned()),
                _ => return Ok(items),
            }
        }
    }
}
