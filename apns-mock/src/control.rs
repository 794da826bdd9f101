//! The `/_mock/*` test-control endpoints: inspect recorded notifications, program faults,
//! latency and unregistered device tokens, read counters. Never part of Apple's API.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::reason::{ApnsError, Reason};
use crate::state::{unix_ms, MockState};

/// Routes under `/_mock`.
pub(crate) fn routes() -> Router<Arc<MockState>> {
    Router::new()
        .route("/_mock/messages", get(list_messages).delete(clear_messages))
        .route(
            "/_mock/unregistered",
            post(add_unregistered).delete(clear_unregistered),
        )
        .route("/_mock/faults", post(add_fault).delete(clear_faults))
        .route("/_mock/latency", post(set_latency))
        .route("/_mock/stats", get(stats))
}

/// A 400 for a malformed control request, in the project's `{"error":{code,message}}` shape.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct ControlError(String);

impl IntoResponse for ControlError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "code": "bad_request", "message": self.0 } });
        (StatusCode::BAD_REQUEST, Json(body)).into_response()
    }
}

impl From<JsonRejection> for ControlError {
    fn from(rejection: JsonRejection) -> Self {
        Self(rejection.body_text())
    }
}

async fn list_messages(State(state): State<Arc<MockState>>) -> Response {
    Json(json!({ "messages": state.messages() })).into_response()
}

async fn clear_messages(State(state): State<Arc<MockState>>) -> StatusCode {
    state.clear_messages();
    StatusCode::NO_CONTENT
}

/// `POST /_mock/unregistered`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Unregistered {
    tokens: Vec<String>,
    /// The 410's `timestamp`; the time of this call when absent.
    timestamp_ms: Option<u64>,
    /// `Unregistered` (default) or `ExpiredToken`.
    reason: Option<String>,
}

async fn add_unregistered(
    State(state): State<Arc<MockState>>,
    body: Result<Json<Unregistered>, JsonRejection>,
) -> Result<StatusCode, ControlError> {
    let Json(request) = body?;
    let reason = match request.reason.as_deref() {
        None => Reason::Unregistered,
        Some(text) => text
            .parse::<Reason>()
            .ok()
            .filter(|r| r.status() == StatusCode::GONE)
            .ok_or_else(|| {
                ControlError(format!(
                    "reason {text:?} is not a 410 reason; use Unregistered or ExpiredToken"
                ))
            })?,
    };
    let timestamp = request.timestamp_ms.unwrap_or_else(unix_ms);
    state.mark_unregistered(request.tokens, reason, timestamp);
    Ok(StatusCode::NO_CONTENT)
}

async fn clear_unregistered(State(state): State<Arc<MockState>>) -> StatusCode {
    state.clear_unregistered();
    StatusCode::NO_CONTENT
}

/// `POST /_mock/faults`: the next `count` authenticated requests fail so.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Fault {
    status: u16,
    /// An Apple reason with that status; the status' usual one when absent.
    reason: Option<String>,
    #[serde(default = "one")]
    count: u32,
    retry_after_secs: Option<u64>,
}

fn one() -> u32 {
    1
}

async fn add_fault(
    State(state): State<Arc<MockState>>,
    body: Result<Json<Fault>, JsonRejection>,
) -> Result<StatusCode, ControlError> {
    let Json(fault) = body?;
    let reason = match &fault.reason {
        None => Reason::default_for(fault.status).ok_or_else(|| {
            ControlError(format!(
                "status {} cannot be injected; use 400, 403, 404, 405, 410, 413, 429, 500 or 503",
                fault.status
            ))
        })?,
        Some(text) => text
            .parse::<Reason>()
            .map_err(|e| ControlError(e.to_string()))?,
    };
    if reason.status().as_u16() != fault.status {
        return Err(ControlError(format!(
            "APNs answers {} with status {}, not {}",
            reason.as_str(),
            reason.status().as_u16(),
            fault.status
        )));
    }
    let error = ApnsError {
        reason,
        timestamp_ms: None,
        retry_after_secs: fault.retry_after_secs,
    };
    state.push_fault(error, fault.count);
    Ok(StatusCode::NO_CONTENT)
}

async fn clear_faults(State(state): State<Arc<MockState>>) -> StatusCode {
    state.clear_faults();
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Latency {
    ms: u64,
}

async fn set_latency(
    State(state): State<Arc<MockState>>,
    body: Result<Json<Latency>, JsonRejection>,
) -> Result<StatusCode, ControlError> {
    let Json(Latency { ms }) = body?;
    state.set_latency(ms);
    Ok(StatusCode::NO_CONTENT)
}

async fn stats(State(state): State<Arc<MockState>>) -> Response {
    Json(state.stats()).into_response()
}
