//! `GET /v1/webpush/vapid_public_key`: the application server key a page passes to
//! `PushManager.subscribe({applicationServerKey})`. Public by nature (push services check
//! signatures with it), so it needs no token.

use axum::extract::State;
use axum::Json;
use http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::ApiError;
use super::openapi::{NotConfigured, OpsErrors};
use super::AppState;

/// The VAPID public key.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"public_key": "BEl62iUYgUivxIkv69yViEuiBIa-Ib9-SkvMeAtA3LFgDzkrxZJjSgSnfckjBJuBkr3qBUYIHBQFLXYp5Nksh8U"}))]
pub struct VapidPublicKey {
    /// base64url (no padding) of the 65-byte uncompressed P-256 point.
    pub public_key: String,
}

/// The VAPID public key browsers subscribe with; 404 `not_configured` when Web Push is not
/// configured (a code of its own: the path exists, the feature does not).
#[utoipa::path(
    get,
    path = "/v1/webpush/vapid_public_key",
    tag = "client",
    operation_id = "vapid_public_key",
    responses(
        (status = 200, description = "The key, as `applicationServerKey`.", body = VapidPublicKey),
        NotConfigured,
        OpsErrors,
    )
)]
pub async fn vapid_public_key(
    State(state): State<AppState>,
) -> Result<Json<VapidPublicKey>, ApiError> {
    let key = state.vapid_public_key.as_deref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_configured",
            "Web Push is not configured on this server",
        )
    })?;
    Ok(Json(VapidPublicKey {
        public_key: key.to_owned(),
    }))
}
