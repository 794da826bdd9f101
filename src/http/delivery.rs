//! Confirmed delivery over HTTP: `POST /v1/ack` (clients) and `GET /v1/notifications/{id}`
//! (producers).

use axum::extract::{Path, State};
use axum::Json;
use http::StatusCode;
use serde::Deserialize;

use super::error::ApiError;
use super::extract::{owner, Client, JsonBody, Producer};
use super::AppState;
use crate::backend::{AckResult, RecordView};
use crate::ids;

/// Most ids in one ack.
const MAX_ACK_IDS: usize = 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AckRequest {
    ids: Vec<String>,
}

fn ledger_unavailable(state: &AppState, e: impl std::fmt::Display) -> ApiError {
    state.metrics.broker_errors.inc();
    ApiError::broker_unavailable("reading delivery records", e)
}

/// Confirms receipt. Only the notification's own user can ack it: other users' ids, and ids
/// past their retention, are ignored (and counted).
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
    if let Some(bad) = req.ids.iter().find(|id| !ids::valid_notification_id(id)) {
        return Err(ApiError::bad_request(format!(
            "{bad:?} is not a notification id"
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

/// A notification's record, for the producer that created it; any other producer gets the
/// 404 of an unknown id, so that ids cannot be probed across producers.
pub async fn status(
    State(state): State<AppState>,
    Producer(producer): Producer,
    Path(id): Path<String>,
) -> Result<Json<RecordView>, ApiError> {
    if !ids::valid_notification_id(&id) {
        return Err(ApiError::bad_request(format!(
            "{id:?} is not a notification id"
        )));
    }
    let record = state
        .router
        .ledger()
        .record(&id, owner(&state, producer))
        .await
        .map_err(|e| ledger_unavailable(&state, e))?;
    match record {
        Some(r) => Ok(Json(r.view())),
        None => Err(ApiError::not_found(
            "no such notification (unknown, or past delivery.record_retention_secs)",
        )),
    }
}
