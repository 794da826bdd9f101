//! `PUT / DELETE /v1/devices/{device_id}`: a client registers the FCM token of its device.

use axum::extract::{Path, State};
use axum::Json;
use http::StatusCode;
use serde::Deserialize;

use super::error::ApiError;
use super::extract::{Client, JsonBody};
use super::AppState;
use crate::ids;
use crate::store::{Device, Platform, StoreError};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    fcm_token: String,
    platform: Platform,
}

fn check_device_id(device_id: &str) -> Result<(), ApiError> {
    if ids::valid_device_id(device_id) {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "device_id must be 1-128 characters of A-Z a-z 0-9 . _ : -",
        ))
    }
}

pub async fn register(
    State(state): State<AppState>,
    Client(claims): Client,
    Path(device_id): Path<String>,
    JsonBody(req): JsonBody<RegisterRequest>,
) -> Result<Json<Device>, ApiError> {
    check_device_id(&device_id)?;
    let token = req.fcm_token.trim();
    // FCM registration tokens are printable ASCII; anything else (NUL above all, which
    // PostgreSQL refuses in TEXT) is a malformed request, not a store failure.
    if token.is_empty() || token.len() > 4096 || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::bad_request(
            "fcm_token must be 1-4096 printable ASCII characters (no spaces or control characters)",
        ));
    }
    let device = state
        .store
        .upsert_device(&claims.sub, &device_id, token, req.platform)
        .await
        .inspect_err(|e| {
            if matches!(e, StoreError::TooManyDevices(_)) {
                state.metrics.devices_refused.inc();
            }
        })?;
    tracing::info!(user_id = %claims.sub, device_id, "device registered");
    Ok(Json(device))
}

pub async fn remove(
    State(state): State<AppState>,
    Client(claims): Client,
    Path(device_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    check_device_id(&device_id)?;
    if state.store.delete_device(&claims.sub, &device_id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("no such device for this user"))
    }
}
