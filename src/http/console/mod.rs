//! The operator console: a page every node serves (`GET /console`, one HTML file embedded in
//! the binary: no CDN, fonts or scripts from elsewhere) and its API under `/v1/console/`,
//! opened by an operator key (`auth.operator_keys`) alone.
//!
//! The page keeps the key in `sessionStorage` (or takes it from `#key=`, a fragment no server
//! or proxy log sees) and sends it as `Authorization: Bearer`, the figures stream too: it reads
//! that stream with `fetch()`, because `EventSource` cannot send headers and a key in the URL
//! would reach access logs.

pub mod api;

use axum::extract::FromRequestParts;
use axum::response::IntoResponse;
use http::header;
use http::request::Parts;

use super::error::ApiError;
use super::openapi::OpsErrors;
use super::AppState;
use crate::auth::{bearer, AuthError};

/// The page: HTML, CSS, JavaScript and the chart (SVG drawn by the script) in one file.
const PAGE: &str = include_str!("console.html");

/// A caller with an operator key (`Authorization: Bearer <operator key>`).
pub struct Operator;

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let key = bearer(parts.headers.get(header::AUTHORIZATION)).ok_or(AuthError::Missing)?;
        state.auth.verify_operator(key)?;
        Ok(Operator)
    }
}

/// The operator console's page. It holds no data: it asks for an operator key, then reads
/// `/v1/console/...` with it.
#[utoipa::path(
    get,
    path = "/console",
    tag = "console",
    operation_id = "console_page",
    responses(
        (status = 200, description = "The console's page (HTML, self-contained).", body = String, content_type = "text/html"),
        OpsErrors,
    )
)]
pub async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            // Nothing from elsewhere, no framing: the page talks only to the node that served it.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
            ),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        PAGE,
    )
}
