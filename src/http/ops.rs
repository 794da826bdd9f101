//! Operations: liveness, readiness (store and broker answer), Prometheus metrics.

use std::time::Duration;

use axum::extract::State;
use axum::response::IntoResponse;
use axum::Json;
use http::header;

use super::error::ApiError;
use super::AppState;

const READY_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

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

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}
