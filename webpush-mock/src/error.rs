//! The push endpoint's error answers: `{"error":{"code","message"}}` with the status RFC 8030,
//! RFC 8291 or RFC 8292 calls for, `Retry-After` on injected faults, and
//! `WWW-Authenticate: vapid` on a 401 (RFC 7235 requires a challenge there).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::ece::EceError;
use crate::vapid::VapidError;

/// One refused push.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub(crate) struct PushError {
    pub status: StatusCode,
    /// Stable snake_case code tests can match.
    pub code: &'static str,
    /// What the application server got wrong, in words.
    pub message: String,
    pub retry_after_secs: Option<u64>,
}

impl PushError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after_secs: None,
        }
    }

    pub(crate) fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// An injected fault: the status with its usual wording.
    pub(crate) fn fault(status: StatusCode, retry_after_secs: Option<u64>) -> Self {
        let message = status.canonical_reason().unwrap_or("injected fault");
        Self {
            retry_after_secs,
            ..Self::new(status, "injected_fault", message)
        }
    }
}

impl From<VapidError> for PushError {
    fn from(error: VapidError) -> Self {
        let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::FORBIDDEN);
        Self::new(status, error.code(), error.to_string())
    }
}

impl From<EceError> for PushError {
    fn from(error: EceError) -> Self {
        Self::bad_request(
            "decryption_failed",
            format!("the body does not decrypt as RFC 8291 aes128gcm: {error}"),
        )
    }
}

impl IntoResponse for PushError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "code": self.code, "message": self.message } });
        let mut response = (self.status, Json(body)).into_response();
        let headers = response.headers_mut();
        if let Some(seconds) = self.retry_after_secs {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("vapid"));
        }
        response
    }
}
