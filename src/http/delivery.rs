//! Confirmed delivery over HTTP: `POST /v1/ack` (clients) and `GET /v1/notifications/{id}`
//! (producers).

use axum::extract::State;
use axum::Json;
use http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;

use super::error::ApiError;
use super::extract::{owner, Client, JsonBody, PathParam, Producer};
use super::openapi::{BadRequest, BodyErrors, ClientErrors, NotFound, ProducerErrors};
use super::AppState;
use crate::backend::{AckResult, RecordView};
use crate::ids::NotificationId;

/// Most ids in one ack.
const MAX_ACK_IDS: usize = 1000;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AckRequest {
    /// Ids of notifications this client received (their SSE `id:`).
    #[schema(min_items = 1, max_items = 1000)]
    ids: Vec<NotificationId>,
}

fn ledger_unavailable(state: &AppState, e: impl std::fmt::Display) -> ApiError {
    state.metrics.broker_errors.inc();
    ApiError::broker_unavailable("reading delivery records", e)
}

/// Confirms receipt. Only the notification's own user can ack it: other users' ids, and ids
/// past their retention, are ignored (and counted).
#[utoipa::path(
    post,
    path = "/v1/ack",
    tag = "client",
    operation_id = "ack",
    security(("client_jwt" = [])),
    request_body = AckRequest,
    responses(
        (status = 204, description = "Confirmed (unknown and other users' ids are ignored)."),
        BodyErrors,
        ClientErrors,
    )
)]
pub async fn ack(
    State(state): State<AppState>,
    Client(claims): Client,
    JsonBody(req): JsonBody<AckRequest>,
) -> Result<StatusCode, ApiError> {
    if req.ids.is_empty() || req.ids.len() > MAX_ACK_IDS {
        return Err(ApiError::bad_request(format!(
            "ids must hold 1 to {MAX_ACK_IDS} notification ids"
        )));
    }
    let router = &state.router;
    let results =
        futures::future::join_all(req.ids.iter().map(|id| router.ack(&claims.sub, id))).await;
    for r in results {
        let r = r.map_err(|e| ledger_unavailable(&state, e))?;
        if r == AckResult::Late {
            tracing::info!(user_id = %claims.sub, "ack after the ack timeout: the notification went through FCM too");
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

/// What became of a notification: its route, its status, and each delivery. Only for the
/// producer that created it; any other producer gets the 404 of an unknown id, so that ids
/// cannot be probed across producers.
#[utoipa::path(
    get,
    path = "/v1/notifications/{id}",
    tag = "producer",
    operation_id = "notification_status",
    security(("producer_key" = [])),
    params(("id" = NotificationId, Path, description = "The id `POST /v1/notify` answered.")),
    responses(
        (status = 200, description = "The notification's record.", body = RecordView),
        NotFound,
        BadRequest,
        ProducerErrors,
    )
)]
pub async fn status(
    State(state): State<AppState>,
    Producer(producer): Producer,
    PathParam(id): PathParam<NotificationId>,
) -> Result<Json<RecordView>, ApiError> {
    let record = state
        .router
        .ledger()
        .record(&id, owner(&state, producer))
        .await
        .map_err(|e| ledger_unavailable(&state, e))?;
    match record {
        Some(r) => {
            let mut view = r.view();
            if !view.status.is_final() {
                let progress = state
                    .router
                    .push_progress(&id)
                    .await
                    .map_err(|e| ledger_unavailable(&state, e))?;
                if let Some(p) = progress {
                    view.push_attempts = Some(p.attempts);
                    view.next_attempt_at = p.next_attempt_at;
                }
            }
            Ok(Json(view))
        }
        None => Err(ApiError::not_found(
            "no such notification (unknown, or past delivery.record_retention_secs)",
        )),
    }
}
