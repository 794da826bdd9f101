//! Request extractors that answer in the API's error shape: JSON bodies (415 / 413 / 408 / 400),
//! path parameters (400), producer keys and client tokens.

use axum::extract::path::ErrorKind;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use bytes::Bytes;
use http::request::Parts;
use http::{header, StatusCode};
use serde::de::DeserializeOwned;
use std::time::Duration;

use super::error::ApiError;
use super::AppState;
use crate::auth::{bearer, AuthError, ClientClaims, ProducerId};
use crate::backend::ledger::Owner;
use crate::json::Object;
use crate::limits::Limited;
use crate::metrics::ConnTimeout;

/// A JSON body: `Content-Type: application/json` (or `+json`), within the body limit, parsed
/// into `T`.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        if !is_json(req.headers().get(header::CONTENT_TYPE)) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as Content-Type: application/json",
            ));
        }
        // The head's deadline does not cover the body: without this a peer that trickles a body
        // holds its connection (and a slot of server.max_connections) for as long as it likes.
        let deadline = Duration::from_secs(state.config.server.body_timeout_secs);
        let bytes = match tokio::time::timeout(deadline, Bytes::from_request(req, state)).await {
            Ok(read) => read.map_err(body_error)?,
            Err(_) => {
                state.metrics.conn_timeout(ConnTimeout::Body);
                return Err(ApiError::request_timeout());
            }
        };
        parse_json(&bytes).map(JsonBody)
    }
}

/// A body: every body of the API is a JSON object.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes)
        .map(|Object(t)| t)
        .map_err(|e| {
            let code = if e.is_data() {
                "invalid_request"
            } else {
                "invalid_json"
            };
            ApiError::new(StatusCode::BAD_REQUEST, code, e.to_string())
        })
}

fn is_json(value: Option<&http::HeaderValue>) -> bool {
    let Some(mime) = value.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = mime
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn body_error(e: BytesRejection) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the request body is over the size limit",
        )
    } else {
        ApiError::bad_request(format!("could not read the request body: {e}"))
    }
}

/// A path parameter parsed into `T` (a typed id): a value that does not parse is a 400 that
/// says why, in the API's error shape.
pub struct PathParam<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<AppState> for PathParam<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(PathParam(value)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => {
                Err(ApiError::bad_request(match e.kind() {
                    ErrorKind::Message(why) => why.clone(),
                    _ => e.body_text(),
                }))
            }
            // The route has no such parameter: a bug, not a bad request.
            Err(e) => Err(ApiError::internal(e.body_text())),
        }
    }
}

/// The calling producer (`Authorization: Bearer <producer key>`), charged one token of its
/// rate limit: every producer route takes this, so none escapes the limit.
pub struct Producer(pub ProducerId);

impl FromRequestParts<AppState> for Producer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let key = bearer(parts.headers.get(header::AUTHORIZATION)).ok_or(AuthError::Missing)?;
        let producer = state.auth.verify_producer(key)?;
        if let Err(limited) = state.limits.charge_producer(producer, 1) {
            return Err(refuse_producer(state, limited).await);
        }
        Ok(Producer(producer))
    }
}

/// A producer's request over its rate limit: the 429, after the limit's refusal delay.
pub async fn refuse_producer(state: &AppState, limited: Limited) -> ApiError {
    let pause = state.limits.producer_refusal_delay(&limited);
    if !pause.is_zero() {
        tokio::time::sleep(pause).await;
    }
    limited.into()
}

/// The producer as the delivery ledger records it (see [`Owner`]).
pub fn owner(state: &AppState, producer: ProducerId) -> Owner<'_> {
    Owner {
        index: producer,
        name: state.auth.producer_name(producer),
    }
}

/// The calling client (`Authorization: Bearer <jwt>`).
pub struct Client(pub ClientClaims);

impl FromRequestParts<AppState> for Client {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts.headers.get(header::AUTHORIZATION)).ok_or(AuthError::Missing)?;
        Ok(Client(state.auth.verify_client(token)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types() {
        let v = |s: &'static str| http::HeaderValue::from_static(s);
        assert!(is_json(Some(&v("application/json"))));
        assert!(is_json(Some(&v("application/json; charset=utf-8"))));
        assert!(is_json(Some(&v("application/merge-patch+json"))));
        assert!(!is_json(Some(&v("text/plain"))));
        assert!(!is_json(None));
    }
}
