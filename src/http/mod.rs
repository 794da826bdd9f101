//! The HTTP API (API.md §2–4): client streams and devices, the producer API, operations.

mod delivery;
mod devices;
pub mod error;
mod events;
pub mod events_h1;
mod extract;
mod notify;
mod ops;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};
use axum::Router;
use http::{header, HeaderName, Method};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::auth::Auth;
use crate::backend::Broker;
use crate::config::Config;
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::router::NotificationRouter;
use crate::store::Store;
use crate::streams::Hub;
use error::ApiError;

/// Largest request body (API.md §5).
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
    pub metrics: Arc<Metrics>,
    pub limits: Arc<Limits>,
}

pub fn routes(state: AppState) -> Router {
    let client = Router::new()
        .route("/v1/events", get(events::open_stream))
        .route("/v1/ack", post(delivery::ack))
        .route(
            "/v1/devices/{device_id}",
            put(devices::register).delete(devices::remove),
        );
    let producer = Router::new()
        .route("/v1/notify", post(notify::notify))
        .route(
            "/v1/notify/batch",
            post(notify::notify_batch).layer(DefaultBodyLimit::max(BATCH_BODY_LIMIT)),
        )
        .route("/v1/broadcast", post(notify::broadcast))
        .route("/v1/presence/{user_id}", get(notify::presence))
        .route("/v1/notifications/{id}", get(delivery::status));
    let ops = Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics));
    let app = Router::new()
        .merge(client)
        .merge(producer)
        .merge(ops)
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
            ])
            // A browser client backs off by it on 429 and 503, so it must be able to read it.
            .expose_headers([header::RETRY_AFTER])
            .max_age(Duration::from_secs(600)),
    )
}
