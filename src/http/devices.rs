//! `PUT / DELETE /v1/devices/{device_id}`: a client registers how a push provider reaches its
//! device (an FCM or APNs token, a Web Push subscription).

use axum::extract::State;
use axum::Json;
use http::StatusCode;

use super::error::ApiError;
use super::extract::{Client, JsonBody, PathParam};
use super::openapi::{BadRequest, BodyErrors, ClientErrors, NotFound, TooManyDevices};
use super::AppState;
use crate::ids::DeviceId;
use crate::push::DeviceRegistration;
use crate::store::{Device, StoreError};

/// Registers the calling user's device, or replaces its push token: where the user's
/// notifications go when the user has no live stream.
#[utoipa::path(
    put,
    path = "/v1/devices/{device_id}",
    tag = "client",
    operation_id = "register_device",
    security(("client_jwt" = [])),
    params(("device_id" = DeviceId, Path, description = "The app's own name for this device.")),
    request_body = DeviceRegistration,
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
    JsonBody(req): JsonBody<DeviceRegistration>,
) -> Result<Json<Device>, ApiError> {
    let reg = req
        .parse()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let device = state
        .store
        .upsert_device(&claims.sub, &device_id, &reg)
        .await
        .inspect_err(|e| {
            if matches!(e, StoreError::TooManyDevices(_)) {
                state.metrics.devices_refused.inc();
            }
        })?;
    tracing::info!(user_id = %claims.sub, %device_id, provider = reg.provider.as_str(), "device registered");
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
