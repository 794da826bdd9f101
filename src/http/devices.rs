//! `PUT / DELETE /v1/devices/{device_id}`: a client registers the FCM token of its device.

use axum::extract::State;
use axum::Json;
use http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;

use super::error::ApiError;
use super::extract::{Client, JsonBody, PathParam};
use super::openapi::{BadRequest, BodyErrors, ClientErrors, NotFound, TooManyDevices};
use super::AppState;
use crate::ids::DeviceId;
use crate::store::{Device, Platform, StoreError};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"fcm_token": "fMEP0vJqS0:APA91bHqX", "platform": "android"}))]
pub struct RegisterRequest {
    /// The app's FCM registration token (a credential: never shown back).
    #[schema(pattern = "^[!-~]{1,4096}$")]
    fcm_token: String,
    platform: Platform,
}

/// Registers the calling user's device, or replaces its FCM token: where the user's
/// notifications go when the user has no live stream.
#[utoipa::path(
    put,
    path = "/v1/devices/{device_id}",
    tag = "client",
    operation_id = "register_device",
    security(("client_jwt" = [])),
    params(("device_id" = DeviceId, Path, description = "The app's own name for this device.")),
    request_body = RegisterRequest,
    responses(
        (status = 200, description = "Registered.", body = Device,
            links(("remove" = (operation_id = "remove_device", parameters(("device_id" = "$request.path.device_id")),
                description = "Removes the device just registered.")))),
        TooManyDevices,
        NotFound,
        BodyErrors,
        ClientErrors,
    )
)]
pub async fn register(
    State(state): State<AppState>,
    Client(claims): Client,
    PathParam(device_id): PathParam<DeviceId>,
    JsonBody(req): JsonBody<RegisterRequest>,
) -> Result<Json<Device>, ApiError> {
    // FCM registration tokens are printable ASCII (base64url and `:`); anything else (NUL
    // above all, which PostgreSQL refuses in TEXT) is a malformed request, not a store failure.
    // Not trimmed: the document's pattern refuses surrounding spaces too.
    let token = &req.fcm_token;
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
    tracing::info!(user_id = %claims.sub, %device_id, "device registered");
    Ok(Json(device))
}

/// Removes one of the calling user's devices.
#[utoipa::path(
    delete,
    path = "/v1/devices/{device_id}",
    tag = "client",
    operation_id = "remove_device",
    security(("client_jwt" = [])),
    params(("device_id" = DeviceId, Path, description = "The device, as registered.")),
    responses(
        (status = 204, description = "Removed."),
        NotFound,
        BadRequest,
        ClientErrors,
    )
)]
pub async fn remove(
    State(state): State<AppState>,
    Client(claims): Client,
    PathParam(device_id): PathParam<DeviceId>,
) -> Result<StatusCode, ApiError> {
    if state.store.delete_device(&claims.sub, &device_id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("no such device for this user"))
    }
}
