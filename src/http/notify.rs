//! The producer API: notify (single and batch), broadcast, presence.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::Json;
use http::StatusCode;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::extract::{JsonBody, Producer};
use super::AppState;
use crate::broker::Connection;
use crate::ids;
use crate::metrics::Route;
use crate::notification::{BroadcastRequest, NotifyRequest};

/// Most notifications in one batch.
const MAX_BATCH: usize = 1000;

#[derive(Debug, Serialize)]
pub struct NotifyAnswer {
    id: String,
    route: Route,
}

#[tracing::instrument(skip_all, fields(producer = producer.0 .0))]
pub async fn notify(
    State(state): State<AppState>,
    producer: Producer,
    JsonBody(req): JsonBody<NotifyRequest>,
) -> Result<(StatusCode, Json<NotifyAnswer>), ApiError> {
    let answer = notify_one(&state, req).await?;
    Ok((StatusCode::ACCEPTED, Json(answer)))
}

async fn notify_one(state: &AppState, req: NotifyRequest) -> Result<NotifyAnswer, ApiError> {
    let n = Arc::new(req.accept()?);
    let route = state.router.notify(n.clone()).await?;
    Ok(NotifyAnswer {
        id: n.id.clone(),
        route,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    notifications: Vec<serde_json::Value>,
}

/// Each item is checked and routed on its own; the answer lists results in request order.
#[tracing::instrument(skip_all, fields(producer = producer.0 .0))]
pub async fn notify_batch(
    State(state): State<AppState>,
    producer: Producer,
    JsonBody(req): JsonBody<BatchRequest>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    if req.notifications.is_empty() || req.notifications.len() > MAX_BATCH {
        return Err(ApiError::bad_request(format!(
            "notifications must hold 1 to {MAX_BATCH} items"
        )));
    }
    let routed = req.notifications.into_iter().map(|item| {
        let state = &state;
        async move {
            let req: NotifyRequest =
                serde_json::from_value(item).map_err(|e| ApiError::bad_request(e.to_string()))?;
            notify_one(state, req).await
        }
    });
    let results = futures::future::join_all(routed)
        .await
        .into_iter()
        .map(|r| match r {
            Ok(answer) => serde_json::json!({"id": answer.id, "route": answer.route}),
            Err(e) => e.body(),
        })
        .collect();
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "results": serde_json::Value::Array(results) })),
    ))
}

#[tracing::instrument(skip_all, fields(producer = producer.0 .0))]
pub async fn broadcast(
    State(state): State<AppState>,
    producer: Producer,
    JsonBody(req): JsonBody<BroadcastRequest>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let b = Arc::new(req.accept()?);
    state.router.broadcast(b.clone()).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "id": b.id })),
    ))
}

#[derive(Serialize)]
pub struct PresenceAnswer {
    user_id: String,
    online: bool,
    connections: Vec<Connection>,
}

pub async fn presence(
    State(state): State<AppState>,
    _producer: Producer,
    Path(user_id): Path<String>,
) -> Result<Json<PresenceAnswer>, ApiError> {
    if !ids::valid_user_id(&user_id) {
        return Err(ApiError::bad_request(
            "user_id must be 1-128 characters of A-Z a-z 0-9 . _ : @ -",
        ));
    }
    let connections = state.broker.presence(&user_id).await.map_err(|e| {
        tracing::warn!(error = %e, "presence lookup failed");
        ApiError::unavailable(
            "broker_unavailable",
            "the broker is unreachable; retry shortly",
            1,
        )
    })?;
    Ok(Json(PresenceAnswer {
        user_id,
        online: !connections.is_empty(),
        connections,
    }))
}
