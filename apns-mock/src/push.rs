//! `POST /3/device/{device_token}`: the method, authentication, the per-connection token rule,
//! injected faults, validation, unregistered device tokens, recording. Every answer carries
//! `apns-id`, the request's or a generated one, as APNs does.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;

use crate::reason::{ApnsError, Reason};
use crate::request::{self, new_uuid};
use crate::state::{unix_ms, MockState, Recorded};
use crate::token::{self, ConnectionToken, TokenUse};

/// What the mock knows about one HTTP/2 connection.
#[derive(Debug)]
pub(crate) struct Connection {
    /// Accept order, from 1.
    pub id: u64,
    /// The provider token the connection uses.
    pub token: ConnectionToken,
}

/// The parts of a request the checks read.
struct PushRequest<'r> {
    device_token: &'r str,
    headers: &'r HeaderMap,
    body: &'r [u8],
}

/// `/3/device/{device_token}`, any method (APNs answers 405 to all but POST).
pub(crate) async fn push(
    State(state): State<Arc<MockState>>,
    Extension(connection): Extension<Arc<Connection>>,
    method: Method,
    Path(device_token): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = PushRequest {
        device_token: &device_token,
        headers: &headers,
        body: &body,
    };
    answer(&state, &connection, &method, &request).await
}

/// `/3/device` and `/3/device/`: no device token in the path.
pub(crate) async fn push_without_token(
    State(state): State<Arc<MockState>>,
    Extension(connection): Extension<Arc<Connection>>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = PushRequest {
        device_token: "",
        headers: &headers,
        body: &body,
    };
    answer(&state, &connection, &method, &request).await
}

/// Any other path: 404 `BadPath`.
pub(crate) async fn bad_path(State(state): State<Arc<MockState>>, headers: HeaderMap) -> Response {
    state.count_rejected();
    with_apns_id(
        ApnsError::from(Reason::BadPath).into_response(),
        response_apns_id(&headers),
    )
}

async fn answer(
    state: &MockState,
    connection: &Connection,
    method: &Method,
    request: &PushRequest<'_>,
) -> Response {
    if let Some(delay) = state.latency() {
        tokio::time::sleep(delay).await;
    }
    let apns_id = response_apns_id(request.headers);
    let outcome = if method == Method::POST {
        handle(state, connection, request, &apns_id)
    } else {
        Err(Reason::MethodNotAllowed.into())
    };
    let response = match outcome {
        Ok(()) => {
            let unique_id = HeaderValue::try_from(new_uuid()).ok();
            let mut response = StatusCode::OK.into_response();
            if let Some(unique_id) = unique_id {
                response.headers_mut().insert("apns-unique-id", unique_id);
            }
            response
        }
        Err(error) => {
            state.count_rejected();
            tracing::debug!(body = %error.body(), "notification rejected");
            error.into_response()
        }
    };
    with_apns_id(response, apns_id)
}

/// The request's `apns-id` when well-formed, else a new one.
fn response_apns_id(headers: &HeaderMap) -> String {
    request::apns_id(headers)
        .ok()
        .flatten()
        .unwrap_or_else(new_uuid)
}

fn with_apns_id(mut response: Response, apns_id: String) -> Response {
    if let Ok(value) = HeaderValue::try_from(apns_id) {
        response.headers_mut().insert("apns-id", value);
    }
    response
}

fn handle(
    state: &MockState,
    connection: &Connection,
    request: &PushRequest<'_>,
    apns_id: &str,
) -> Result<(), ApnsError> {
    let headers = request.headers;
    request::check_duplicates(headers)?;
    let token = token::verify(headers, &state.key, unix_secs())?;
    let token_use = connection
        .token
        .use_token(&token, state.token_update_interval_secs)?;
    state.saw_token(&token.jwt, token_use == TokenUse::Changed);
    if let Some(fault) = state.take_fault() {
        return Err(fault);
    }
    request::apns_id(headers)?;
    let notification = request::validate(
        request.device_token,
        headers,
        request.body,
        &state.bundle_ids,
    )?;
    if let Some(gone) = state.unregistered(request.device_token) {
        return Err(gone);
    }
    state.record(Recorded {
        apns_id: apns_id.to_owned(),
        device_token: request.device_token.to_owned(),
        topic: notification.topic,
        push_type: notification.push_type,
        priority: notification.priority,
        expiration: notification.expiration,
        collapse_id: notification.collapse_id,
        headers: recorded_headers(headers),
        payload: notification.payload,
        provider_token: token.jwt,
        provider_token_iat: token.iat,
        connection: connection.id,
        received_at: unix_ms(),
    });
    Ok(())
}

/// Request headers for the record, without the provider token (recorded on its own).
fn recorded_headers(headers: &HeaderMap) -> BTreeMap<String, String> {
    headers
        .iter()
        .filter(|(name, _)| *name != header::AUTHORIZATION)
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect()
}

fn unix_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
