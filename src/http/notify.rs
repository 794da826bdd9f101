//! The producer API: notify (single and batch), broadcast, presence.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::Json;
use http::StatusCode;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::extract::{owner, JsonBody, Producer};
use super::AppState;
use crate::auth::ProducerId;
use crate::backend::{Connection, IdemBegin, Route};
use crate::ids;
use crate::notification::{check_idempotency_key, BroadcastRequest, NotifyRequest};

/// Most notifications in one batch.
const MAX_BATCH: usize = crate::config::MAX_BATCH as usize;

/// How long a request waits for another in-flight request with the same idempotency key.
const IDEMPOTENCY_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Debug, Serialize, Deserialize)]
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
    let answer = notify_one(&state, producer.0, req).await?;
    Ok((StatusCode::ACCEPTED, Json(answer)))
}

async fn notify_one(
    state: &AppState,
    producer: ProducerId,
    mut req: NotifyRequest,
) -> Result<NotifyAnswer, ApiError> {
    let Some(key) = req.idempotency_key.take() else {
        return route_accepted(state, producer, Arc::new(req.accept()?)).await;
    };
    check_idempotency_key(&key)?;
    // Checked before the key is reserved, so a bad request does not hold it.
    let n = Arc::new(req.accept()?);
    let ledger = state.router.ledger();
    let scope = format!("{}:{key}", state.auth.producer_name(producer));
    let deadline = tokio::time::Instant::now() + IDEMPOTENCY_WAIT;
    loop {
        let begin = ledger.idem_begin(&scope).await.map_err(|e| {
            state.metrics.broker_errors.inc();
            ApiError::broker_unavailable("looking up an idempotency key", e)
        })?;
        match begin {
            IdemBegin::New => break,
            IdemBegin::Answer(a) => {
                state.metrics.idempotent_hits.inc();
                return serde_json::from_str(&a).map_err(ApiError::internal);
            }
            IdemBegin::InFlight if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            IdemBegin::InFlight => {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "idempotency_key_in_use",
                    "a request with this idempotency_key is still being processed; retry shortly",
                ))
            }
        }
    }
    match route_accepted(state, producer, n).await {
        Ok(answer) => {
            let json = serde_json::to_string(&answer).map_err(ApiError::internal)?;
            ledger.idem_finish(&scope, Some(json));
            Ok(answer)
        }
        Err(e) => {
            ledger.idem_finish(&scope, None);
            Err(e)
        }
    }
}

async fn route_accepted(
    state: &AppState,
    producer: ProducerId,
    n: crate::notification::SharedNotification,
) -> Result<NotifyAnswer, ApiError> {
    let route = state
        .router
        .notify(n.clone(), owner(state, producer))
        .await?;
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

/// Each item is checked and routed on its own; the answer lists results in request order. The
/// batch costs one rate-limit token per item, all or nothing (the `Producer` took the first).
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
    let more = req.notifications.len() as u64 - 1;
    state.limits.charge_producer(producer.0, more)?;
    let routed = req.notifications.into_iter().map(|item| {
        let state = &state;
        async move {
            let req: NotifyRequest =
                serde_json::from_value(item).map_err(|e| ApiError::bad_request(e.to_string()))?;
            notify_one(state, producer.0, req).await
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
    let connections = state
        .broker
        .presence(&user_id)
        .await
        .map_err(|e| ApiError::broker_unavailable("reading presence", e))?;
    Ok(Json(PresenceAnswer {
        user_id,
        online: !connections.is_empty(),
        connections,
    }))
}
