//! The HTTP error boundary: fixed client messages for 4xx, a generic body for 5xx with the detail
//! logged (as axum's error-handling example).

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use netclaw_core::wire::{ErrorBody, ErrorCode};

use crate::principal::Denied;

/// An API error.
#[derive(Debug)]
pub enum ApiError {
    /// 400 with a fixed message.
    BadRequest(&'static str),
    /// 401.
    Unauthorized(&'static str),
    /// 403.
    Forbidden(&'static str),
    /// 404.
    NotFound(&'static str),
    /// 409.
    Conflict(&'static str),
    /// 408: the request (body) did not arrive in time.
    RequestTimeout(&'static str),
    /// 429 with Retry-After seconds.
    TooMany {
        /// Message.
        message: &'static str,
        /// Seconds.
        retry_after: u64,
    },
    /// A fixed message with a stable [`ErrorCode`] clients act on.
    Coded(StatusCode, &'static str, ErrorCode),
    /// 500; the detail is logged, never sent.
    Internal(String),
    /// 507-ish storage failure; detail logged.
    Storage(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message, retry, code) = match self {
            Self::BadRequest(m) => (StatusCode::BAD_REQUEST, m, None, None),
            Self::Unauthorized(m) => (StatusCode::UNAUTHORIZED, m, None, None),
            Self::Forbidden(m) => (StatusCode::FORBIDDEN, m, None, None),
            Self::NotFound(m) => (StatusCode::NOT_FOUND, m, None, None),
            Self::Conflict(m) => (StatusCode::CONFLICT, m, None, None),
            Self::RequestTimeout(m) => (StatusCode::REQUEST_TIMEOUT, m, None, None),
            Self::TooMany {
                message,
                retry_after,
            } => (
                StatusCode::TOO_MANY_REQUESTS,
                message,
                Some(retry_after),
                None,
            ),
            Self::Coded(status, m, code) => (status, m, None, Some(code)),
            Self::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error",
                    None,
                    None,
                )
            }
            Self::Storage(detail) => {
                tracing::error!(%detail, "state could not be saved");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the daemon could not save its state; nothing was changed",
                    None,
                    None,
                )
            }
        };
        let body = ErrorBody {
            error: message.to_owned(),
            code,
        };
        let mut resp = (status, Json(body)).into_response();
        if let Some(secs) = retry {
            if let Ok(v) = HeaderValue::from_str(&secs.max(1).to_string()) {
                resp.headers_mut().insert("retry-after", v);
            }
        }
        resp
    }
}

impl From<Denied> for ApiError {
    fn from(d: Denied) -> Self {
        match d {
            Denied::Unauthenticated => Self::Unauthorized("authentication required"),
            Denied::NoHostAuthority => Self::Forbidden(
                "host authority required: run this on the daemon host (netclaw through the operator agent)",
            ),
        }
    }
}
