//! `POST /v1/projects/{project}/messages:send`: bearer check, injected faults, validation,
//! unregistered tokens, recording. Kept lean: one token lookup, no JWT work, no info logs.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::google_error::{GoogleError, UNAUTHENTICATED_MESSAGE};
use crate::message::validate_send;
use crate::state::{Fault, MockState};

pub(crate) async fn send(
    State(state): State<Arc<MockState>>,
    Path(project): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(delay) = state.latency() {
        tokio::time::sleep(delay).await;
    }
    match handle(&state, &project, &headers, &body) {
        Ok(response) => response,
        Err(error) => {
            state.count_rejected();
            tracing::debug!(error = %error.body(), "send rejected");
            error.into_response()
        }
    }
}

fn handle(
    state: &MockState,
    project: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, GoogleError> {
    let authorized = bearer_token(headers).is_some_and(|token| state.token_is_valid(token));
    if !authorized {
        return Err(GoogleError::unauthenticated());
    }
    if let Some(fault) = state.take_fault() {
        return Err(fault_error(&fault));
    }
    if state
        .account
        .project_id
        .as_deref()
        .is_some_and(|own| own != project)
    {
        return Err(GoogleError::project_denied(project));
    }
    let mut request: Value = serde_json::from_slice(body)
        .map_err(|e| GoogleError::bad_json(None, format!("Invalid JSON payload received. {e}")))?;
    let checked = validate_send(&request)?;
    if checked
        .device
        .is_some_and(|token| state.is_unregistered(token))
    {
        return Err(GoogleError::unregistered());
    }
    let validate_only = checked.validate_only;
    let name = format!("projects/{project}/messages/{}", state.next_message_id());
    let answer = json!({ "name": name }).to_string();
    if !validate_only {
        let message = request.get_mut("message").map(Value::take);
        state.record(name, message.unwrap_or(Value::Null));
    }
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json; charset=UTF-8")],
        answer,
    )
        .into_response())
}

/// The token of an `Authorization: Bearer <token>` header (scheme matched without case).
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The answer Google gives for each injectable status; `error_code`/`message` override it.
fn fault_error(fault: &Fault) -> GoogleError {
    let (status, default_code, default_message) = match fault.status {
        400 => (
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "Request contains an invalid argument.",
        ),
        401 => (StatusCode::UNAUTHORIZED, "", UNAUTHENTICATED_MESSAGE),
        403 => (
            StatusCode::FORBIDDEN,
            "SENDER_ID_MISMATCH",
            "SenderId mismatch",
        ),
        404 => (
            StatusCode::NOT_FOUND,
            "UNREGISTERED",
            "Requested entity was not found.",
        ),
        429 => (
            StatusCode::TOO_MANY_REQUESTS,
            "QUOTA_EXCEEDED",
            "Quota exceeded for quota metric 'Send requests' and limit 'Send requests per minute' \
             of service 'fcm.googleapis.com'.",
        ),
        503 => (
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            "The service is currently unavailable.",
        ),
        _ => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            "Internal error encountered.",
        ),
    };
    let code = fault.error_code.as_deref().unwrap_or(default_code);
    let message = match (&fault.message, code) {
        (Some(message), _) => message.clone(),
        (None, "THIRD_PARTY_AUTH_ERROR") => "Auth error from APNS or Web Push Service".to_owned(),
        (None, _) => default_message.to_owned(),
    };
    let error = if code.is_empty() {
        GoogleError::plain(status, message)
    } else {
        GoogleError::fcm(status, code, message)
    };
    error.with_retry_after(fault.retry_after_secs)
}
