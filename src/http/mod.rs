//! The HTTP API (docs/API.md): client streams and devices, the producer API, operations, the
//! operator console, and the OpenAPI document of them all.

mod console;
mod delivery;
mod devices;
pub mod error;
pub mod events;
pub mod events_h1;
mod extract;
mod inbox;
mod notify;
pub mod openapi;
mod ops;
mod webpush;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::Router;
use http::{header, HeaderName, Method};
use tower_http::cors::{AllowOrigin, CorsLayer};
use utoipa::OpenApi as _;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use crate::auth::Auth;
use crate::backend::Broker;
use crate::config::Config;
use crate::ids::AppId;
use crate::inbox::Inbox;
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::router::NotificationRouter;
use crate::store::Store;
use crate::streams::Hub;
use error::ApiError;

/// Largest request body (docs/API.md).
pub const BODY_LIMIT: usize = 64 * 1024;
/// Largest `/v1/notify/batch` body: 1000 notifications do not fit in 64 KiB.
pub const BATCH_BODY_LIMIT: usize = 1024 * 1024;

/// Everything a request handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub auth: Arc<Auth>,
    pub hub: Arc<Hub>,
    pub router: Arc<NotificationRouter>,
    pub broker: Arc<dyn Broker>,
    pub store: Store,
    pub inbox: Arc<Inbox>,
    pub metrics: Arc<Metrics>,
    pub limits: Arc<Limits>,
    /// Each app's VAPID public key (base64url), for the apps with Web Push (`None`: the
    /// default app).
    pub vapid_public_keys: Arc<HashMap<Option<AppId>, String>>,
}

/// Every route, each registered with its OpenAPI operation: a route cannot exist without its
/// documentation.
fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(events::open_stream))
        .routes(routes!(delivery::ack))
        .routes(routes!(inbox::page))
        .routes(routes!(inbox::item))
        .routes(routes!(devices::register, devices::remove))
        .routes(routes!(notify::notify))
        .routes(routes!(notify::notify_batch).layer(DefaultBodyLimit::max(BATCH_BODY_LIMIT)))
        .routes(routes!(notify::broadcast))
        .routes(routes!(notify::presence))
        .routes(routes!(delivery::status))
        .routes(routes!(webpush::vapid_public_key))
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::metrics))
        .routes(routes!(openapi::openapi_json))
        .routes(routes!(console::page))
        .routes(routes!(console::api::stats))
        .routes(routes!(console::api::lookup))
        .routes(routes!(console::api::presence))
        .routes(routes!(console::api::test_notify))
}

pub fn routes(state: AppState) -> Router {
    // Serialised now, so the first request for it does not pay for it.
    let _ = openapi::document();
    let app = Router::from(api())
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed here",
            )
        })
        .layer(DefaultBodyLimit::max(BODY_LIMIT));
    // Outermost, so preflights are answered whatever the route's methods.
    let app = match cors(&state.config.server.cors_origins) {
        Some(layer) => app.layer(layer),
        None => app,
    };
    app.with_state(state)
}

/// Browsers may open streams and register devices from the configured origins.
fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| o.parse().ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::PUT, Method::DELETE, Method::POST])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static("last-event-id"),
                header::IF_NONE_MATCH,
            ])
            // A browser client backs off by it on 429 and 503, so it must be able to read it.
            .expose_headers([header::RETRY_AFTER, header::ETAG])
            .max_age(Duration::from_secs(600)),
    )
}
