//! Operations: liveness, readiness (store and broker answer), Prometheus metrics.
//!
//! `/readyz` is anonymous, so it answers only ready or not; what failed goes to the log
//! (rate-limited) and to `switchboard_ready` / `switchboard_readiness_failures_total`.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::response::IntoResponse;
use axum::Json;
use http::header;

use super::error::ApiError;
use super::openapi::OpsErrors;
use super::AppState;
use crate::metrics::Dependency;
use crate::redact::redact_secrets;

const READY_TIMEOUT: Duration = Duration::from_secs(2);
/// A failed check is logged at most this often: a probe every second must not flood the log.
const WARN_EVERY_MS: u64 = 10_000;

/// When a failed check was last logged, and how many were not logged since. Per process: one
/// server runs in it.
static LAST_WARN_MS: AtomicU64 = AtomicU64::new(0);
static UNLOGGED: AtomicU64 = AtomicU64::new(0);

/// The body of `/healthz` and `/readyz`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct StatusAnswer {
    /// `ok` (`/healthz`) or `ready` (`/readyz`).
    status: String,
}

/// Liveness: 200 while the process serves requests.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    operation_id = "healthz",
    responses(
        (status = 200, description = "Alive.", body = StatusAnswer, example = json!({"status": "ok"})),
        OpsErrors,
    )
)]
pub async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

/// Readiness: 200 when the store and the broker answer, else 503 `not_ready`.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    operation_id = "readyz",
    responses(
        (status = 200, description = "Ready to serve.", body = StatusAnswer, example = json!({"status": "ready"})),
        OpsErrors,
    )
)]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let config = &state.config;
    let (store, broker) = futures::join!(
        check(
            &state,
            Dependency::Store,
            &config.store.url,
            state.store.ping()
        ),
        check(
            &state,
            Dependency::Broker,
            &config.broker.redis_url,
            state.broker.ping()
        ),
    );
    let ready = store && broker;
    state.metrics.ready.set(i64::from(ready));
    if ready {
        Ok(Json(serde_json::json!({"status": "ready"})))
    } else {
        Err(ApiError::unavailable(
            "not_ready",
            "this node is not ready; retry shortly",
            1,
        ))
    }
}

/// Whether `ping` answered in time; a failure is counted and logged (without the secrets of
/// the component's URL, should its error quote it).
async fn check<E: std::fmt::Display>(
    state: &AppState,
    component: Dependency,
    url: &str,
    ping: impl Future<Output = Result<(), E>>,
) -> bool {
    let detail = match tokio::time::timeout(READY_TIMEOUT, ping).await {
        Ok(Ok(())) => return true,
        Ok(Err(e)) => redact_secrets(&e.to_string(), url),
        Err(_) => format!("no answer within {READY_TIMEOUT:?}"),
    };
    state.metrics.readiness_failure(component);
    let now = crate::time::unix_millis();
    let last = LAST_WARN_MS.load(Ordering::Relaxed);
    let due = now.saturating_sub(last) >= WARN_EVERY_MS
        && LAST_WARN_MS
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok();
    if due {
        let unlogged = UNLOGGED.swap(0, Ordering::Relaxed);
        tracing::warn!(
            component = component.as_str(),
            error = %detail,
            unlogged_failures = unlogged,
            "not ready"
        );
    } else {
        UNLOGGED.fetch_add(1, Ordering::Relaxed);
    }
    false
}

/// Prometheus metrics of this node (docs/API.md lists them).
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    operation_id = "metrics",
    responses(
        (status = 200, description = "Prometheus text exposition format 0.0.4.", body = String, content_type = "text/plain"),
        OpsErrors,
    )
)]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}
