//! `GET /v1/webpush/vapid_public_key`: the application server key a page passes to
//! `PushManager.subscribe({applicationServerKey})`. Public by nature (push services check
//! signatures with it), so it needs no token.

use axum::extract::{Query, State};
use axum::Json;
use http::{StatusCode, Uri};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::ApiError;
use super::openapi::{BadRequest, NotConfigured, OpsErrors};
use super::AppState;
use crate::ids::AppId;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VapidQuery {
    /// The app (an `[[apps]]` id) whose key to give; absent: the default app's.
    #[param(value_type = Option<String>, pattern = "^[A-Za-z0-9._-]{1,64}$")]
    app: Option<AppId>,
}

/// The VAPID public key.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"public_key": "BEl62iUYgUivxIkv69yViEuiBIa-Ib9-SkvMeAtA3LFgDzkrxZJjSgSnfckjBJuBkr3qBUYIHBQFLXYp5Nksh8U"}))]
pub struct VapidPublicKey {
    /// base64url (no padding) of the 65-byte uncompressed P-256 point.
    pub public_key: String,
}

/// The VAPID public key browsers subscribe with, the default app's or `app`'s; 404
/// `not_configured` when that app has no Web Push (a code of its own: the path exists, the
/// feature does not).
#[utoipa::path(
    get,
    path = "/v1/webpush/vapid_public_key",
    tag = "client",
    operation_id = "vapid_public_key",
    params(VapidQuery),
    responses(
        (status = 200, description = "The key, as `applicationServerKey`.", body = VapidPublicKey),
        NotConfigured,
        BadRequest,
        OpsErrors,
    )
)]
pub async fn vapid_public_key(
    State(state): State<AppState>,
    uri: Uri,
) -> Result<Json<VapidPublicKey>, ApiError> {
    // Not the Query extractor: its rejection is plain text, not the API's error shape.
    let Query(query) = Query::<VapidQuery>::try_from_uri(&uri)
        .map_err(|e| ApiError::bad_request(e.body_text()))?;
    let key = state.vapid_public_keys.get(&query.app).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_configured",
            "Web Push is not configured for this app on this server",
        )
    })?;
    Ok(Json(VapidPublicKey {
        public_key: key.clone(),
    }))
}
