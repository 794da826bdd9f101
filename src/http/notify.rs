//! The producer API: notify (single and batch), broadcast, presence.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::extract::{owner, refuse_producer, JsonBody, PathParam, Producer};
use super::openapi::{BadRequest, BodyErrors, IdempotencyKeyInUse, NotFound, ProducerErrors};
use super::AppState;
use crate::auth::ProducerId;
use crate::backend::{Connection, IdemBegin, Route};
use crate::ids::UserId;
use crate::json::Object;
use crate::notification::{check_idempotency_key, BroadcastRequest, NotifyRequest};

/// Most notifications in one batch.
const MAX_BATCH: usize = crate::config::MAX_BATCH as usize;

/// How long a request waits for another in-flight request with the same idempotency key.
const IDEMPOTENCY_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Where an accepted notification went.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NotifyAnswer {
    /// The notification's id (a UUIDv7): its SSE `id:`, `data.switchboard_id` in FCM, and the
    /// key of `GET /v1/notifications/{id}`.
    id: String,
    route: Route,
}

/// Sends one notification to a user: over the user's live stream(s) when there is one on any
/// node, else through FCM to the user's registered devices.
#[utoipa::path(
    post,
    path = "/v1/notify",
    tag = "producer",
    operation_id = "notify",
    security(("producer_key" = [])),
    request_body = NotifyRequest,
    responses(
        (status = 202, description = "Accepted (or, for a repeated `idempotency_key`, the first answer again).", body = NotifyAnswer,
            links(("status" = (operation_id = "notification_status", parameters(("id" = "$response.body#/id")),
                description = "What became of this notification.")))),
        IdempotencyKeyInUse,
        BodyErrors,
        ProducerErrors,
    )
)]
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

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// Each item is a `POST /v1/notify` body, checked on its own.
    #[schema(value_type = Vec<NotifyRequest>, min_items = 1, max_items = 1000)]
    notifications: Vec<serde_json::Value>,
}

#[derive(Serialize, ToSchema)]
pub struct BatchAnswer {
    /// One per item, in request order.
    results: Vec<BatchItem>,
}

/// An item's answer: what `POST /v1/notify` would have answered, 202's body or an error's.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum BatchItem {
    Accepted(NotifyAnswer),
    Refused(ErrorBody),
}

/// Sends up to 1000 notifications. Each item is checked and routed on its own; the answer lists
/// results in request order. The batch costs one rate-limit token per item, all or nothing (the
/// `Producer` took the first).
#[utoipa::path(
    post,
    path = "/v1/notify/batch",
    tag = "producer",
    operation_id = "notify_batch",
    security(("producer_key" = [])),
    request_body = BatchRequest,
    responses(
        (status = 202, description = "Every item's result, in order.", body = BatchAnswer),
        BodyErrors,
        ProducerErrors,
    )
)]
#[tracing::instrument(skip_all, fields(producer = producer.0 .0))]
pub async fn notify_batch(
    State(state): State<AppState>,
    producer: Producer,
    JsonBody(req): JsonBody<BatchRequest>,
) -> Result<(StatusCode, Json<BatchAnswer>), ApiError> {
    if req.notifications.is_empty() || req.notifications.len() > MAX_BATCH {
        return Err(ApiError::bad_request(format!(
            "notifications must hold 1 to {MAX_BATCH} items"
        )));
    }
    let more = req.notifications.len() as u64 - 1;
    if let Err(limited) = state.limits.charge_producer(producer.0, more) {
        return Err(refuse_producer(&state, limited).await);
    }
    let routed = req.notifications.into_iter().map(|item| {
        let state = &state;
        async move {
            let Object(req) = serde_json::from_value::<Object<NotifyRequest>>(item)
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            notify_one(state, producer.0, req).await
        }
    });
    let results = futures::future::join_all(routed)
        .await
        .into_iter()
        .map(|r| match r {
            Ok(answer) => BatchItem::Accepted(answer),
            Err(e) => BatchItem::Refused(e.body()),
        })
        .collect();
    Ok((StatusCode::ACCEPTED, Json(BatchAnswer { results })))
}

#[derive(Serialize, ToSchema)]
pub struct BroadcastAnswer {
    /// The broadcast's id, as the `id` of its event's data (a broadcast event has no SSE `id:`).
    id: String,
}

/// Sends an event to every live stream that follows the topic, on every node. Live only: a
/// broadcast never goes through FCM and is not replayed.
#[utoipa::path(
    post,
    path = "/v1/broadcast",
    tag = "producer",
    operation_id = "broadcast",
    security(("producer_key" = [])),
    request_body = BroadcastRequest,
    responses(
        (status = 202, description = "Published to the topic's live streams.", body = BroadcastAnswer),
        BodyErrors,
        ProducerErrors,
    )
)]
#[tracing::instrument(skip_all, fields(producer = producer.0 .0))]
pub async fn broadcast(
    State(state): State<AppState>,
    producer: Producer,
    JsonBody(req): JsonBody<BroadcastRequest>,
) -> Result<(StatusCode, Json<BroadcastAnswer>), ApiError> {
    let b = Arc::new(req.accept());
    state.router.broadcast(b.clone()).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(BroadcastAnswer { id: b.id.clone() }),
    ))
}

#[derive(Serialize, ToSchema)]
pub struct PresenceAnswer {
    user_id: UserId,
    /// Whether the user holds at least one stream on some node.
    online: bool,
    connections: Vec<Connection>,
}

/// The user's live streams, on every node.
#[utoipa::path(
    get,
    path = "/v1/presence/{user_id}",
    tag = "producer",
    operation_id = "presence",
    security(("producer_key" = [])),
    params(("user_id" = UserId, Path, description = "The user.")),
    responses(
        (status = 200, description = "The user's streams (none when offline).", body = PresenceAnswer),
        BadRequest,
        NotFound,
        ProducerErrors,
    )
)]
pub async fn presence(
    State(state): State<AppState>,
    _producer: Producer,
    PathParam(user_id): PathParam<UserId>,
) -> Result<Json<PresenceAnswer>, ApiError> {
    read_presence(&state, user_id).await.map(Json)
}

/// The user's live streams on every node (producers' and operators' presence).
pub(super) async fn read_presence(
    state: &AppState,
    user_id: UserId,
) -> Result<PresenceAnswer, ApiError> {
    let connections = state
        .broker
        .presence(&user_id)
        .await
        .map_err(|e| ApiError::broker_unavailable("reading presence", e))?;
    Ok(PresenceAnswer {
        user_id,
        online: !connections.is_empty(),
        connections,
    })
}
