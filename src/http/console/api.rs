//! The console's API: the figures stream (one event a second), and the operator's tools —
//! any producer's notification record, a user's presence, a test notification.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, Sse};
use axum::response::IntoResponse;
use axum::Json;
use futures::Stream;
use http::{header, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::Schema;
use utoipa::openapi::{ObjectBuilder, Ref, RefOr, Type};
use utoipa::{PartialSchema, ToSchema};

use super::Operator;
use crate::auth::ProducerId;
use crate::backend::{Owner, RecordView, Route};
use crate::figures::{ClusterFigures, Figures};
use crate::http::error::ApiError;
use crate::http::extract::{JsonBody, PathParam};
use crate::http::notify::{read_presence, PresenceAnswer};
use crate::http::openapi::{BadRequest, BodyErrors, NotFound, OperatorErrors};
use crate::http::AppState;
use crate::ids::{NotificationId, UserId};
use crate::notification::NotifyRequest;

/// How often the figures stream sends.
const TICK: Duration = Duration::from_secs(1);

/// Longest test notification title (characters).
const MAX_TITLE: usize = 200;

/// Who created a test notification, as its record keeps it: no producer has this index or
/// name, so only an operator reads it.
const CONSOLE: Owner<'static> = Owner {
    index: ProducerId(usize::MAX),
    name: "console",
};

/// Every node's figures and their totals, once a second (`event: figures`), until the client
/// goes or the node shuts down. Cluster-wide on the Redis broker: each node publishes its own
/// every second; a node silent for 5 s is left out.
#[utoipa::path(
    get,
    path = "/v1/console/stats",
    tag = "console",
    operation_id = "console_stats",
    security(("operator_key" = [])),
    responses(
        (status = 200, description = "The figures stream; the first event comes at once, then one a second. It does not end by itself.",
            body = FiguresEvent, content_type = "text/event-stream",
            headers(("Cache-Control" = String, description = "`no-cache`"),
                ("X-Accel-Buffering" = String, description = "`no`: proxies pass each event on at once"))),
        OperatorErrors,
    )
)]
pub async fn stats(State(state): State<AppState>, _operator: Operator) -> impl IntoResponse {
    (
        [
            (header::CACHE_CONTROL, "no-cache"),
            (header::HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        Sse::new(ticks(state)),
    )
}

fn ticks(state: AppState) -> impl Stream<Item = Result<Event, Infallible>> {
    let tick = tokio::time::interval(TICK);
    futures::stream::unfold((state, tick), |(state, mut tick)| async move {
        tick.tick().await;
        if state.hub.is_closing() {
            return None;
        }
        let event = Event::default()
            .event("figures")
            .json_data(cluster_now(&state))
            .unwrap_or_else(|_| Event::default().comment("figures unavailable"));
        Some((Ok(event), (state, tick)))
    })
}

/// The board's figures with this node's own captured now (not up to a second old).
fn cluster_now(state: &AppState) -> ClusterFigures {
    let own = Arc::new(Figures::capture(state.hub.node_id(), &state.metrics));
    let mut nodes: Vec<Arc<Figures>> = state
        .broker
        .figures()
        .into_iter()
        .filter(|f| f.node_id != own.node_id)
        .collect();
    nodes.push(own);
    nodes.sort_by(|a, b| a.node_id.cmp(&b.node_id));
    ClusterFigures::sum(nodes)
}

/// One event of the figures stream, as an SSE parser hands it over (`event`, `data`).
pub struct FiguresEvent;

impl PartialSchema for FiguresEvent {
    fn schema() -> RefOr<Schema> {
        RefOr::T(Schema::Object(
            ObjectBuilder::new()
                .property(
                    "event",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .enum_values(Some(["figures"])),
                )
                .required("event")
                .property(
                    "data",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .content_media_type("application/json")
                        .content_schema(Some(Ref::from_schema_name("ClusterFigures"))),
                )
                .required("data")
                .build(),
        ))
    }
}

impl ToSchema for FiguresEvent {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push(("ClusterFigures".into(), ClusterFigures::schema()));
        schemas.push(("Figures".into(), Figures::schema()));
    }
}

/// Any producer's notification: its route, status and each delivery (an operator reads every
/// record; a producer only its own, at `GET /v1/notifications/{id}`).
#[utoipa::path(
    get,
    path = "/v1/console/notifications/{id}",
    tag = "console",
    operation_id = "console_notification",
    security(("operator_key" = [])),
    params(("id" = NotificationId, Path, description = "A notification id.")),
    responses(
        (status = 200, description = "The notification's record.", body = RecordView),
        NotFound,
        BadRequest,
        OperatorErrors,
    )
)]
pub async fn lookup(
    State(state): State<AppState>,
    _operator: Operator,
    PathParam(id): PathParam<NotificationId>,
) -> Result<Json<RecordView>, ApiError> {
    let record = state
        .router
        .ledger()
        .operator_record(&id)
        .await
        .map_err(|e| {
            state.metrics.broker_errors.inc();
            ApiError::broker_unavailable("reading delivery records", e)
        })?;
    match record {
        Some(r) => Ok(Json(r.view())),
        None => Err(ApiError::not_found(
            "no such notification (unknown, or past delivery.record_retention_secs)",
        )),
    }
}

/// A user's live streams, on every node.
#[utoipa::path(
    get,
    path = "/v1/console/presence/{user_id}",
    tag = "console",
    operation_id = "console_presence",
    security(("operator_key" = [])),
    params(("user_id" = UserId, Path, description = "The user.")),
    responses(
        (status = 200, description = "The user's streams (none when offline).", body = PresenceAnswer),
        BadRequest,
        NotFound,
        OperatorErrors,
    )
)]
pub async fn presence(
    State(state): State<AppState>,
    _operator: Operator,
    PathParam(user_id): PathParam<UserId>,
) -> Result<Json<PresenceAnswer>, ApiError> {
    read_presence(&state, user_id).await.map(Json)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TestNotifyRequest {
    user_id: UserId,
    /// What the device shows; "Switchboard console test" when absent.
    #[serde(default)]
    #[schema(max_length = 200, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$")]
    title: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TestNotifyAnswer {
    /// The notification's id: look it up at `/v1/console/notifications/{id}`.
    id: String,
    user_id: UserId,
    route: Route,
}

/// Sends a test notification to a user, routed as any other (stream, else FCM). Its data
/// carries `switchboard_console_test: "1"` so that apps can tell it apart.
#[utoipa::path(
    post,
    path = "/v1/console/test-notify",
    tag = "console",
    operation_id = "console_test_notify",
    security(("operator_key" = [])),
    request_body = TestNotifyRequest,
    responses(
        (status = 202, description = "Accepted, with its route.", body = TestNotifyAnswer),
        BodyErrors,
        OperatorErrors,
    )
)]
pub async fn test_notify(
    State(state): State<AppState>,
    _operator: Operator,
    JsonBody(req): JsonBody<TestNotifyRequest>,
) -> Result<(StatusCode, Json<TestNotifyAnswer>), ApiError> {
    let title = req
        .title
        .unwrap_or_else(|| "Switchboard console test".to_string());
    if title.chars().count() > MAX_TITLE || title.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "title must be at most {MAX_TITLE} characters, without control characters"
        )));
    }
    let notify: NotifyRequest = serde_json::from_value(serde_json::json!({
        "user_id": req.user_id,
        "data": BTreeMap::from([("switchboard_console_test", "1")]),
        "notification": {"title": title},
    }))
    .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let n = Arc::new(notify.accept()?);
    let route = state.router.notify(n.clone(), CONSOLE).await?;
    tracing::info!(notification_id = %n.id, user_id = %req.user_id, ?route, "console test notification");
    Ok((
        StatusCode::ACCEPTED,
        Json(TestNotifyAnswer {
            id: n.id.clone(),
            user_id: req.user_id,
            route,
        }),
    ))
}
