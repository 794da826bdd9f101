//! Operations: liveness, readiness (store and broker answer), Prometheus metrics.

use std::time::Duration;

use axum::extract::State;
use axum::response::IntoResponse;
use axum::Json;
use http::header;

use super::error::ApiError;
use super::openapi::OpsErrors;
use super::AppState;

const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// The body of `/healthz` and `/readyz`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct StatusAnswer {
    /// `ok` (`/healthz`) or `ready` (`/readyz`).
    status: String,
}

/// Liveness: 200 while the process serves requests.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    operation_id = "healthz",
    responses(
        (status = 200, description = "Alive.", body = StatusAnswer, example = json!({"status": "ok"})),
        OpsErrors,
    )
)]
pub async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

/// Readiness: 200 when the store and the broker answer, else 503 `not_ready`.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    operation_id = "readyz",
    responses(
        (status = 200, description = "Ready to serve.", body = StatusAnswer, example = json!({"status": "ready"})),
        OpsErrors,
    )
)]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let not_ready = |what: String| ApiError::unavailable("not_ready", what, 1);
    match tokio::time::timeout(READY_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(not_ready(format!("store: {e}"))),
        Err(_) => return Err(not_ready("store: no answer within 2 s".into())),
    }
    match tokio::time::timeout(READY_TIMEOUT, state.broker.ping()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(not_ready(format!("broker: {e}"))),
        Err(_) => return Err(not_ready("broker: no answer within 2 s".into())),
    }
    Ok(Json(
        serde_json::json!({"status": "ready", "node_id": state.hub.node_id()}),
    ))
}

/// Prometheus metrics of this node (docs/API.md lists them).
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    operation_id = "metrics",
    responses(
        (status = 200, description = "Prometheus text exposition format 0.0.4.", body = String, content_type = "text/plain"),
        OpsErrors,
    )
)]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}
