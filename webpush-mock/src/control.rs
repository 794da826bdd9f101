//! The `/_mock/*` test-control endpoints: create subscriptions (the browser's part), inspect
//! recorded messages, program faults, latency and gone subscriptions, read counters.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::b64;
use crate::ece::PUBLIC_KEY_LEN;
use crate::state::{Fault, MockState};
use crate::subscription::Subscription;

/// Statuses `POST /_mock/faults` can inject.
const FAULT_STATUSES: [u16; 10] = [400, 401, 403, 404, 410, 413, 429, 500, 502, 503];

/// Routes under `/_mock`.
pub(crate) fn routes() -> Router<Arc<MockState>> {
    Router::new()
        .route("/_mock/subscriptions", post(subscribe))
        .route("/_mock/messages", get(list_messages).delete(clear_messages))
        .route("/_mock/faults", post(add_fault).delete(clear_faults))
        .route("/_mock/gone", post(add_gone).delete(clear_gone))
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

/// `POST /_mock/subscriptions` body, optional.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SubscribeOptions {
    /// base64url uncompressed P-256 key, as `pushManager.subscribe({applicationServerKey})`.
    application_server_key: Option<String>,
}

async fn subscribe(
    State(state): State<Arc<MockState>>,
    body: Bytes,
) -> Result<Response, ControlError> {
    let options: SubscribeOptions = if body.iter().all(u8::is_ascii_whitespace) {
        SubscribeOptions::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ControlError(e.to_string()))?
    };
    let key = options
        .application_server_key
        .map(|text| {
            b64::decode(&text)
                .ok()
                .filter(|key| key.len() == PUBLIC_KEY_LEN && key[0] == 0x04)
                .ok_or_else(|| {
                    ControlError(
                        "application_server_key must be a base64url uncompressed P-256 key".into(),
                    )
                })
        })
        .transpose()?;
    let subscription = Subscription::generate(key).map_err(|e| ControlError(e.to_string()))?;
    let subscription = state.add_subscription(subscription);
    Ok((
        StatusCode::CREATED,
        Json(subscription.to_json(&state.base_url)),
    )
        .into_response())
}

async fn list_messages(State(state): State<Arc<MockState>>) -> Response {
    Json(json!({ "messages": state.messages() })).into_response()
}

async fn clear_messages(State(state): State<Arc<MockState>>) -> StatusCode {
    state.clear_messages();
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

/// `POST /_mock/gone`: subscription ids (or their endpoints) and the status they answer.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Gone {
    ids: Vec<String>,
    #[serde(default = "gone")]
    status: u16,
}

fn gone() -> u16 {
    410
}

async fn add_gone(
    State(state): State<Arc<MockState>>,
    body: Result<Json<Gone>, JsonRejection>,
) -> Result<StatusCode, ControlError> {
    let Json(request) = body?;
    if request.status != 404 && request.status != 410 {
        return Err(ControlError(format!(
            "status {} is not how push services report a gone subscription; use 404 or 410",
            request.status
        )));
    }
    let ids = request
        .ids
        .into_iter()
        .map(|id| id.rsplit('/').next().unwrap_or_default().to_owned())
        .collect();
    state.mark_gone(ids, request.status);
    Ok(StatusCode::NO_CONTENT)
}

async fn clear_gone(State(state): State<Arc<MockState>>) -> StatusCode {
    state.clear_gone();
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
