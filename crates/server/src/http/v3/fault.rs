//! QuickBooks' error shape: `{"Fault":{"Error":[{"Message","Detail","code","element"}],
//! "type":"…"},"time":"…"}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use ledgerhook_domain::Timestamp;
use serde_json::json;

/// A `/v3` error.
#[derive(Debug)]
pub struct Fault {
    status: StatusCode,
    kind: &'static str,
    code: &'static str,
    message: &'static str,
    detail: String,
}

impl Fault {
    /// `400 ValidationFault`: the request is wrong.
    pub fn validation(detail: impl Into<String>) -> Fault {
        Fault {
            status: StatusCode::BAD_REQUEST,
            kind: "ValidationFault",
            code: "2010",
            message: "Request has invalid or unsupported property",
            detail: detail.into(),
        }
    }

    /// `400 ValidationFault` code 610: the object does not exist (or is deleted).
    pub fn object_not_found(detail: impl Into<String>) -> Fault {
        Fault {
            status: StatusCode::BAD_REQUEST,
            kind: "ValidationFault",
            code: "610",
            message: "Object Not Found",
            detail: detail.into(),
        }
    }

    /// `400 ValidationFault` code 5010: the `SyncToken` is not the object's current one.
    pub fn stale(detail: impl Into<String>) -> Fault {
        Fault {
            status: StatusCode::BAD_REQUEST,
            kind: "ValidationFault",
            code: "5010",
            message: "Stale Object Error",
            detail: detail.into(),
        }
    }

    /// `400 ValidationFault` code 2020: a required parameter is missing.
    pub fn required(detail: impl Into<String>) -> Fault {
        Fault {
            status: StatusCode::BAD_REQUEST,
            kind: "ValidationFault",
            code: "2020",
            message: "Required param missing, need to supply the required value for the API",
            detail: detail.into(),
        }
    }

    /// `400 ValidationFault` code 4000: the query does not parse or uses what is not
    /// supported.
    pub fn query(detail: impl Into<String>) -> Fault {
        Fault {
            status: StatusCode::BAD_REQUEST,
            kind: "ValidationFault",
            code: "4000",
            message: "Error parsing query",
            detail: detail.into(),
        }
    }

    /// Code 500 `Unsupported Operation`: no such route or method under `/v3` (with the
    /// HTTP status given: `404` or `405`).
    pub fn unsupported(status: StatusCode, detail: impl Into<String>) -> Fault {
        Fault {
            status,
            kind: "ValidationFault",
            code: "500",
            message: "Unsupported Operation",
            detail: detail.into(),
        }
    }

    /// `429 ThrottlingFault` code 003001: over `v3-rate-limit`.
    pub fn throttled(detail: impl Into<String>) -> Fault {
        Fault {
            status: StatusCode::TOO_MANY_REQUESTS,
            kind: "ThrottlingFault",
            code: "003001",
            message: "ThrottleExceeded",
            detail: detail.into(),
        }
    }

    /// The HTTP status of this fault.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The fault as the `Fault` object of QuickBooks' error shape (also what a failed
    /// batch item carries).
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "Error": [{"Message": self.message, "Detail": self.detail, "code": self.code, "element": ""}],
            "type": self.kind,
        })
    }

    /// `401 AuthenticationFault`: missing, expired or wrong token.
    pub fn authentication(detail: impl Into<String>) -> Fault {
        Fault {
            status: StatusCode::UNAUTHORIZED,
            kind: "AuthenticationFault",
            code: "100",
            message: "General Authentication Error",
            detail: detail.into(),
        }
    }

    /// `403 AuthorizationFault`: a token for another realm.
    pub fn authorization(detail: impl Into<String>) -> Fault {
        Fault {
            status: StatusCode::FORBIDDEN,
            kind: "AuthorizationFault",
            code: "3100",
            message: "ApplicationAuthorizationFailed",
            detail: detail.into(),
        }
    }

    /// `500 SystemFault`: the cause is logged, not shown.
    pub fn system(cause: &(dyn std::error::Error + 'static)) -> Fault {
        tracing::error!(error = %crate::http::error::Chain(cause), "internal error under /v3");
        Fault {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            kind: "SystemFault",
            code: "10000",
            message: "An application error has occurred while processing your request",
            detail: "System Failure Error: see the server log".to_owned(),
        }
    }
}

impl From<crate::ingest::IngestError> for Fault {
    fn from(err: crate::ingest::IngestError) -> Self {
        Fault::system(&err)
    }
}

impl From<ledgerhook_store::StoreError> for Fault {
    fn from(err: ledgerhook_store::StoreError) -> Self {
        Fault::system(&err)
    }
}

impl IntoResponse for Fault {
    fn into_response(self) -> Response {
        let body = json!({"Fault": self.to_json(), "time": Timestamp::now().to_rfc3339()});
        (self.status, Json(body)).into_response()
    }
}
