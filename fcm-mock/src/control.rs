//! The `/_mock/*` test-control endpoints: inspect recorded sends, program faults, latency and
//! unregistered tokens, revoke access tokens, read counters. Never part of Google's API.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::state::{Fault, MockState};

/// Statuses `POST /_mock/faults` can inject.
const FAULT_STATUSES: [u16; 7] = [400, 401, 403, 404, 429, 500, 503];

/// Routes under `/_mock`.
pub(crate) fn routes() -> Router<Arc<MockState>> {
    Router::new()
        .route("/_mock/messages", get(list_messages).delete(clear_messages))
        .route(
            "/_mock/unregistered",
            post(add_unregistered).delete(clear_unregistered),
        )
        .route("/_mock/faults", post(add_fault).delete(clear_faults))
        .route("/_mock/revoke_tokens", post(revoke_tokens))
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

#[derive(Deserialize)]
struct Tokens {
    tokens: Vec<String>,
}

async fn add_unregistered(
    State(state): State<Arc<MockState>>,
    body: Result<Json<Tokens>, JsonRejection>,
) -> Result<StatusCode, ControlError> {
    let Json(Tokens { tokens }) = body?;
    state.mark_unregistered(tokens);
    Ok(StatusCode::NO_CONTENT)
}

async fn clear_unregistered(State(state): State<Arc<MockState>>) -> StatusCode {
    state.clear_unregistered();
    StatusCode::NO_CONTENT
}

async fn add_fault(
    State(state): State<Arc<MockState>>,
    body: Result<Json<Fault>, JsonRejection>,
) -> Result<StatusCode, ControlError> {
    let Json(fault) = body?;
    if !FAULT_STATUSES.contains(&fault.status) {
        return Err(ControlError(format!(
            "status {} cannot be injected; use one of {FAULT_STATUSES:?}",
            fault.status
        )));
    }
    state.push_fault(fault);
    Ok(StatusCode::NO_CONTENT)
}

async fn clear_faults(State(state): State<Arc<MockState>>) -> StatusCode {
    state.clear_faults();
    StatusCode::NO_CONTENT
}

async fn revoke_tokens(State(state): State<Arc<MockState>>) -> StatusCode {
    state.revoke_tokens();
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
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
