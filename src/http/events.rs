//! `GET /v1/events`: a client's Server-Sent Events stream.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Query, State};
use axum::response::Response;
use axum::Extension;
use http::{header, HeaderMap, StatusCode, Uri, Version};
use serde::Deserialize;
use utoipa::IntoParams;

use super::error::ApiError;
use super::openapi::{
    BadRequest, ClientErrors, StreamEvent, TooManyStreams, TopicNotAllowed, STREAM_DESCRIPTION,
};
use super::AppState;
use crate::auth::{bearer, AuthError, ClientClaims};
use crate::ids::{DeviceId, Topic};
use crate::streams::{ConnWatch, Item, OpenRequest, SseBody, Stream};

/// Most topics one stream may follow.
const MAX_TOPICS: usize = 64;
const RESET: &[u8] = b"event: reset\ndata: {}\n\n";

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// This device: a newer stream of the same user and device replaces the older one.
    /// Empty is the same as absent.
    #[param(value_type = Option<String>, pattern = "^[A-Za-z0-9._:-]{0,128}$")]
    device_id: Option<String>,
    /// Topics to follow, comma-separated (at most 64); with a `topics` claim in the token, each
    /// must be one of those. Spaces around a topic are ignored.
    #[param(pattern = r"^[A-Za-z0-9._:, \t\n\f\r-]*$")]
    topics: Option<String>,
    /// `true`: this client confirms what it receives with `POST /v1/ack`; what it does not
    /// confirm within `delivery.ack_timeout_ms` goes through FCM.
    #[param(pattern = "^(true|false|1|0)$")]
    ack: Option<String>,
    /// As the `Last-Event-ID` header, for clients that cannot set it.
    last_event_id: Option<String>,
    /// Described by the `access_token` security scheme.
    #[param(ignore)]
    access_token: Option<String>,
}

/// The response headers of a stream (besides the framing), on every path that answers one.
pub(crate) const STREAM_HEADERS: [(&str, &str); 3] = [
    ("content-type", "text/event-stream"),
    ("cache-control", "no-cache"),
    ("x-accel-buffering", "no"),
];

/// The route, for HTTP/2 and for HTTP/1 connections whose stream is not their first request
/// or that need what only the router does (CORS); the first request of an HTTP/1 connection
/// is answered by `events_h1`, with the same [`open`].
#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "client",
    operation_id = "events",
    summary = "A client's Server-Sent Events stream.",
    description = STREAM_DESCRIPTION,
    security(("client_jwt" = []), ("access_token" = [])),
    params(
        EventsQuery,
        ("Last-Event-ID" = Option<String>, Header,
            description = "The last id this client received: the stream first replays what it missed."),
    ),
    responses(
        (status = 200, description = "The stream; it does not end by itself.", body = StreamEvent,
            content_type = "text/event-stream",
            headers(("Cache-Control" = String, description = "`no-cache`"),
                ("X-Accel-Buffering" = String, description = "`no`: proxies pass each event on at once"))),
        BadRequest,
        TopicNotAllowed,
        TooManyStreams,
        ClientErrors,
    )
)]
pub async fn open_stream(
    State(state): State<AppState>,
    conn: Option<Extension<Arc<ConnWatch>>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    version: Version,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    let stream = open(&state, &headers, &uri, peer.ip()).await?;
    // On HTTP/1 the connection's outcome tells a clean close from a broken one.
    let conn = match version {
        Version::HTTP_10 | Version::HTTP_11 => conn.map(|Extension(c)| c),
        _ => None,
    };
    let body = SseBody::new(stream, state.hub.clone(), conn);
    let mut response = Response::builder().status(StatusCode::OK);
    for (name, value) in STREAM_HEADERS {
        response = response.header(name, value);
    }
    response.body(Body::new(body)).map_err(ApiError::internal)
}

/// Checks the stream-open rate limits of `peer` (first, so that a loop of refused requests
/// counts too) and of the user, authenticates the request, checks its parameters, fetches what
/// a reconnecting client missed and registers the stream with the hub.
#[tracing::instrument(skip_all, fields(user_id))]
pub(crate) async fn open(
    state: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
    peer: IpAddr,
) -> Result<Arc<Stream>, ApiError> {
    state.limits.stream_open_from(peer)?;
    let q = stream_query(uri)?;
    let claims = state.auth.verify_client(client_token(headers, &q)?)?;
    tracing::Span::current().record("user_id", claims.sub.as_str());
    state.limits.stream_open_by(&claims.sub)?;
    let mut request = stream_request(&claims, &q)?;
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or(q.last_event_id)
        .filter(|id| !id.is_empty());
    if let Some(last) = last_event_id {
        // Fetched before the stream registers: what is published from here on either reaches
        // the new stream live or (nobody online) goes to FCM, never both.
        request.preload = replay(state, &request.user, &last).await?;
    }
    Ok(state.hub.open(request).await?)
}

/// What a reconnecting client missed, or `event: reset` when its last id is unknown or older
/// than the replay window.
async fn replay(state: &AppState, user: &str, last: &str) -> Result<Vec<Item>, ApiError> {
    let missed = state
        .router
        .ledger()
        .replay(user, last)
        .await
        .map_err(|e| {
            state.metrics.broker_errors.inc();
            ApiError::broker_unavailable("reading the replay buffer", e)
        })?;
    state.metrics.replay(missed.is_none());
    Ok(match missed {
        Some(missed) => {
            state.metrics.replayed.inc_by(missed.len() as u64);
            missed.into_iter().map(Item::Notification).collect()
        }
        None => vec![Item::Frame(bytes::Bytes::from_static(RESET))],
    })
}

/// A stream request's query parameters.
pub fn stream_query(uri: &Uri) -> Result<EventsQuery, ApiError> {
    let Query(q) = Query::<EventsQuery>::try_from_uri(uri)
        .map_err(|e| ApiError::bad_request(e.body_text()))?;
    Ok(q)
}

/// A stream request's client token: `Authorization: Bearer`, else `access_token` (for
/// EventSource, which cannot set headers).
pub fn client_token<'a>(headers: &'a HeaderMap, q: &'a EventsQuery) -> Result<&'a str, AuthError> {
    bearer(headers.get(header::AUTHORIZATION))
        .or(q.access_token.as_deref())
        .ok_or(AuthError::Missing)
}

/// What the stream of an authenticated request follows, from its query.
pub fn stream_request(claims: &ClientClaims, q: &EventsQuery) -> Result<OpenRequest, ApiError> {
    // `device_id=` (empty) is the same as no `device_id`.
    let device_id = match q.device_id.as_deref() {
        None | Some("") => None,
        Some(d) => Some(DeviceId::try_from(d).map_err(|e| ApiError::bad_request(e.to_string()))?),
    };
    let mut topics: Vec<Arc<str>> = Vec::new();
    for topic in q
        .topics
        .as_deref()
        .unwrap_or("")
        .split(',')
        // ASCII whitespace only, as the documented pattern says.
        .map(|t| t.trim_matches(|c: char| c.is_ascii_whitespace()))
        .filter(|t| !t.is_empty())
    {
        let topic = Topic::try_from(topic).map_err(|e| ApiError::bad_request(e.to_string()))?;
        let topic = topic.as_str();
        if let Some(allowed) = &claims.topics {
            if !allowed.iter().any(|a| a == topic) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "topic_not_allowed",
                    format!("this token may not subscribe to {topic:?}"),
                ));
            }
        }
        if !topics.iter().any(|t| &**t == topic) {
            topics.push(topic.into());
        }
    }
    if topics.len() > MAX_TOPICS {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_TOPICS} topics per stream"
        )));
    }
    let ack = match q.ack.as_deref() {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") => true,
        Some(_) => return Err(ApiError::bad_request("ack must be true or false")),
    };
    Ok(OpenRequest {
        user: claims.sub.as_str().into(),
        device_id: device_id.map(String::from),
        topics,
        ack,
        expires_at: claims.exp,
        preload: Vec::new(),
    })
}
