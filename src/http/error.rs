//! The one error shape of the API: `{"error":{"code","message"}}` with the right status.
//! Messages are for the caller; internal details go to the log only.

use axum::response::{IntoResponse, Response};
use axum::Json;
use http::{header, HeaderValue, StatusCode};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::AuthError;
use crate::limits::{Limited, Scope};
use crate::notification::Invalid;
use crate::router::RouteError;
use crate::store::StoreError;
use crate::streams::OpenError;

/// `Retry-After` of `too_many_streams`.
const TOO_MANY_STREAMS_RETRY_SECS: u64 = 5;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds, for 429 / 503.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    /// The body did not arrive in time: the connection is closed after this answer (what is
    /// left of the body is not worth reading).
    pub fn request_timeout() -> ApiError {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            "the request body did not arrive in time",
        )
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn unavailable(
        code: &'static str,
        message: impl Into<String>,
        retry_after: u64,
    ) -> ApiError {
        ApiError {
            retry_after: Some(retry_after),
            ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
        }
    }

    /// The broker (or the delivery ledger beside it) did not answer: logged with what was
    /// being done, answered 503 with `Retry-After: 1`.
    pub fn broker_unavailable(doing: &str, detail: impl std::fmt::Display) -> ApiError {
        tracing::warn!(error = %detail, "broker unavailable: {doing}");
        ApiError::unavailable(
            "broker_unavailable",
            "the broker is unreachable; retry shortly",
            1,
        )
    }

    /// An internal failure: logged in full, answered generically.
    pub fn internal(detail: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %detail, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message.clone(),
            },
        }
    }
}

/// The body of every error answer, and of a refused item in a batch.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Error, example = json!({"error": {"code": "invalid_request", "message": "notifications must hold 1 to 1000 items"}}))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable: what programs match on (docs/API.md lists every code).
    #[schema(value_type = ErrorCode)]
    pub code: &'static str,
    /// For people; its wording may change.
    pub message: String,
}

/// Every error code the API answers with (the contract's list; handlers use the strings).
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum ErrorCode {
    InvalidJson,
    InvalidRequest,
    MissingToken,
    InvalidToken,
    TokenExpired,
    Forbidden,
    TopicNotAllowed,
    NotFound,
    NotConfigured,
    MethodNotAllowed,
    RequestTimeout,
    IdempotencyKeyInUse,
    TooManyDevices,
    PayloadTooLarge,
    UnsupportedMediaType,
    TooManyStreams,
    TooManyReconnects,
    RateLimited,
    Overloaded,
    BrokerUnavailable,
    ShuttingDown,
    NotReady,
    TooManyConnections,
    Internal,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body())).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::REQUEST_TIMEOUT {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> ApiError {
        let (status, code) = match e {
            AuthError::Missing => (StatusCode::UNAUTHORIZED, "missing_token"),
            AuthError::Expired => (StatusCode::UNAUTHORIZED, "token_expired"),
            AuthError::Invalid | AuthError::BadClaims | AuthError::NotYetValid => {
                (StatusCode::UNAUTHORIZED, "invalid_token")
            }
            AuthError::ClientTokenOnProducerApi
            | AuthError::NotAnOperator
            | AuthError::ConsoleClosed => (StatusCode::FORBIDDEN, "forbidden"),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<Invalid> for ApiError {
    fn from(e: Invalid) -> ApiError {
        match e {
            Invalid::BadRequest(m) => ApiError::bad_request(m),
            Invalid::TooLarge(_) => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                e.to_string(),
            ),
        }
    }
}

impl From<RouteError> for ApiError {
    fn from(e: RouteError) -> ApiError {
        match e {
            RouteError::Broker(b) => ApiError::broker_unavailable("routing a notification", b),
            RouteError::Store(s) => ApiError::internal(s),
            RouteError::Overloaded(_) => ApiError::unavailable(
                "overloaded",
                "too many push sends are waiting; retry shortly",
                1,
            ),
            RouteError::Queue(q) => ApiError::broker_unavailable("queueing a push send", q),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::TooManyDevices(_) => {
                ApiError::new(StatusCode::CONFLICT, "too_many_devices", e.to_string())
            }
            e => ApiError::internal(e),
        }
    }
}

impl From<OpenError> for ApiError {
    fn from(e: OpenError) -> ApiError {
        match e {
            // The cap frees when one of the user's streams ends; a client should not hammer it.
            OpenError::TooMany(_) => ApiError {
                retry_after: Some(TOO_MANY_STREAMS_RETRY_SECS),
                ..ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_streams",
                    e.to_string(),
                )
            },
            OpenError::ShuttingDown => {
                ApiError::unavailable("shutting_down", "this node is shutting down", 1)
            }
            OpenError::Broker(b) => ApiError::broker_unavailable("opening a stream", b),
        }
    }
}

impl From<Limited> for ApiError {
    fn from(e: Limited) -> ApiError {
        let (code, message) = match e.scope {
            Scope::Producer => (
                "rate_limited",
                "this producer key is over its rate limit (one token per notification)",
            ),
            Scope::User => (
                "too_many_reconnects",
                "this user opens streams too often; reconnect after Retry-After",
            ),
            Scope::Address => (
                "too_many_reconnects",
                "this address opens streams too often; reconnect after Retry-After",
            ),
        };
        ApiError {
            retry_after: Some(e.retry_after_secs()),
            ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, code, message)
        }
    }
}

/// The codes the document lists, for tests of the answers made outside `ApiError`.
#[cfg(test)]
pub(crate) fn documented_codes() -> Vec<String> {
    use utoipa::PartialSchema;
    let schema = serde_json::to_value(ErrorCode::schema()).unwrap();
    schema["enum"]
        .as_array()
        .expect("ErrorCode is a string enum")
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::backend::BackendError;
    use crate::push::Overloaded;

    /// What each module's errors answer is in the document's list, and every 429 and 503
    /// carries Retry-After: a new error variant that answers an undocumented code fails here.
    #[test]
    fn every_converted_error_answers_a_documented_code() {
        let documented = documented_codes();
        let limited = |scope| Limited {
            scope,
            retry_after: Duration::from_millis(1500),
        };
        let errors: Vec<ApiError> = vec![
            AuthError::Missing.into(),
            AuthError::Expired.into(),
            AuthError::NotYetValid.into(),
            AuthError::Invalid.into(),
            AuthError::BadClaims.into(),
            AuthError::ClientTokenOnProducerApi.into(),
            AuthError::NotAnOperator.into(),
            AuthError::ConsoleClosed.into(),
            Invalid::BadRequest("x".into()).into(),
            Invalid::TooLarge(5000).into(),
            RouteError::Broker(BackendError::Unavailable("down".into())).into(),
            RouteError::Overloaded(Overloaded).into(),
            StoreError::TooManyDevices(20).into(),
            OpenError::TooMany(8).into(),
            OpenError::ShuttingDown.into(),
            OpenError::Broker(BackendError::Unavailable("down".into())).into(),
            limited(Scope::Producer).into(),
            limited(Scope::User).into(),
            limited(Scope::Address).into(),
            ApiError::internal("a bug"),
        ];
        for e in errors {
            assert!(
                documented.iter().any(|c| c == e.code),
                "{} is not in ErrorCode",
                e.code
            );
            let retry = matches!(e.status.as_u16(), 429 | 503);
            assert_eq!(e.retry_after.is_some(), retry, "{}: {}", e.code, e.status);
        }
    }
}
