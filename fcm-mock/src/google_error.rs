//! Google's JSON error shape for the FCM v1 API, built the way Google answers each case.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

/// The message Google sends with every 401 of the FCM v1 API.
pub(crate) const UNAUTHENTICATED_MESSAGE: &str = "Request had invalid authentication credentials. \
Expected OAuth 2 access token, login cookie or other valid authentication credential.";

const FCM_ERROR_TYPE: &str = "type.googleapis.com/google.firebase.fcm.v1.FcmError";
const BAD_REQUEST_TYPE: &str = "type.googleapis.com/google.rpc.BadRequest";
const ERROR_INFO_TYPE: &str = "type.googleapis.com/google.rpc.ErrorInfo";

/// One error answer of the send endpoint: `{"error":{"code","message","status","details"}}`.
#[derive(Debug, Clone)]
pub(crate) struct GoogleError {
    /// HTTP status, also the `code` field.
    status: StatusCode,
    /// Human readable `message`.
    message: String,
    /// `details` entries; empty means the field is left out, as Google does for a 401.
    details: Vec<Value>,
    /// Seconds for a `Retry-After` header (injected 429/503 faults).
    retry_after: Option<u64>,
}

impl GoogleError {
    /// A 401 as Google answers a missing, unknown or expired access token: no details.
    pub(crate) fn unauthenticated() -> Self {
        Self::plain(StatusCode::UNAUTHORIZED, UNAUTHENTICATED_MESSAGE)
    }

    /// An error without any `details`.
    pub(crate) fn plain(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            details: Vec::new(),
            retry_after: None,
        }
    }

    /// An error that FCM itself raises, carrying an `FcmError` detail with `error_code`.
    pub(crate) fn fcm(status: StatusCode, error_code: &str, message: impl Into<String>) -> Self {
        let mut error = Self::plain(status, message);
        error
            .details
            .push(json!({ "@type": FCM_ERROR_TYPE, "errorCode": error_code }));
        error
    }

    /// 400 INVALID_ARGUMENT with `errorCode` INVALID_ARGUMENT: a semantic check of FCM failed.
    pub(crate) fn invalid_argument(message: impl Into<String>) -> Self {
        Self::fcm(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", message)
    }

    /// 400 raised by Google's JSON front end (unknown field, wrong type): it carries a
    /// `google.rpc.BadRequest` field violation and no `FcmError`, because FCM never saw it.
    pub(crate) fn bad_json(field: Option<String>, description: String) -> Self {
        let mut violation = json!({ "description": description });
        if let Some(field) = field.filter(|f| !f.is_empty()) {
            violation["field"] = Value::String(field);
        }
        let mut error = Self::plain(StatusCode::BAD_REQUEST, description);
        error.details.push(json!({
            "@type": BAD_REQUEST_TYPE,
            "fieldViolations": [violation],
        }));
        error
    }

    /// 403 as Google answers a send to a project the credentials have no access to.
    pub(crate) fn project_denied(project: &str) -> Self {
        let mut error = Self::plain(
            StatusCode::FORBIDDEN,
            format!(
                "Permission 'cloudmessaging.messages.create' denied on resource \
                 '//cloudresourcemanager.googleapis.com/projects/{project}' (or it may not exist)."
            ),
        );
        error.details.push(json!({
            "@type": ERROR_INFO_TYPE,
            "reason": "IAM_PERMISSION_DENIED",
            "domain": "cloudresourcemanager.googleapis.com",
            "metadata": {
                "permission": "cloudmessaging.messages.create",
                "resource": format!("projects/{project}"),
            },
        }));
        error
    }

    /// 404 NOT_FOUND / UNREGISTERED: the registration token is no longer valid.
    pub(crate) fn unregistered() -> Self {
        Self::fcm(
            StatusCode::NOT_FOUND,
            "UNREGISTERED",
            "Requested entity was not found.",
        )
    }

    /// Adds a `Retry-After: seconds` header to the answer.
    pub(crate) fn with_retry_after(mut self, seconds: Option<u64>) -> Self {
        self.retry_after = seconds;
        self
    }

    /// The JSON body, exactly as sent.
    pub(crate) fn body(&self) -> Value {
        let mut error = json!({
            "code": self.status.as_u16(),
            "message": self.message,
            "status": status_name(self.status),
        });
        if !self.details.is_empty() {
            error["details"] = Value::Array(self.details.clone());
        }
        json!({ "error": error })
    }
}

impl IntoResponse for GoogleError {
    fn into_response(self) -> Response {
        let body = self.body().to_string();
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, "application/json; charset=UTF-8")],
            body,
        )
            .into_response();
        let headers = response.headers_mut();
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(
                    "Bearer realm=\"https://accounts.google.com/\", error=\"invalid_token\"",
                ),
            );
        }
        response
    }
}

/// The canonical `google.rpc.Code` name Google puts in `status` for an HTTP status.
pub(crate) fn status_name(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        500 => "INTERNAL",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "UNKNOWN",
    }
}
