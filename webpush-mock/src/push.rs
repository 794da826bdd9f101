//! `POST /push/{id}`: a push message request (RFC 8030 §5) checked as a push service does it:
//! the subscription, VAPID, injected faults, gone subscriptions, `TTL`, `Urgency`, `Topic`,
//! the size limit and `Content-Encoding: aes128gcm`; then the body is decrypted and recorded.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::b64;
use crate::error::PushError;
use crate::state::{unix_ms, MockState, Recorded};
use crate::vapid;

/// RFC 8030 §7.2: push services must accept at least 4096 bytes of payload; the mock accepts
/// exactly that, as FCM, Mozilla and Apple do.
pub const MAX_PAYLOAD_BYTES: usize = 4096;
/// RFC 8030 §5.4: a topic is at most 32 characters of the base64url alphabet.
pub const MAX_TOPIC_LEN: usize = 32;

/// RFC 8030 §5.3 `Urgency`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Urgency {
    VeryLow,
    Low,
    Normal,
    High,
}

impl Urgency {
    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "very-low" => Self::VeryLow,
            "low" => Self::Low,
            "normal" => Self::Normal,
            "high" => Self::High,
            _ => return None,
        })
    }
}

pub(crate) async fn push(
    State(state): State<Arc<MockState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(delay) = state.latency() {
        tokio::time::sleep(delay).await;
    }
    match handle(&state, &id, &headers, &body) {
        Ok(response) => response,
        Err(error) => {
            state.count_rejected();
            tracing::debug!(%error, "push rejected");
            error.into_response()
        }
    }
}

fn handle(
    state: &MockState,
    id: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, PushError> {
    let subscription = state.subscription(id).ok_or_else(|| {
        PushError::new(
            StatusCode::NOT_FOUND,
            "subscription_not_found",
            format!("no subscription {id:?}; create one with POST /_mock/subscriptions"),
        )
    })?;
    let restricted_to = subscription
        .application_server_key
        .as_deref()
        .or(state.vapid_public_key.as_deref());
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let vapid = vapid::verify(authorization, &state.audience, restricted_to, unix_secs())?;
    if let Some(fault) = state.take_fault() {
        let status =
            StatusCode::from_u16(fault.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return Err(PushError::fault(status, fault.retry_after_secs));
    }
    if let Some(status) = state.gone_status(id) {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::GONE);
        return Err(PushError::new(
            status,
            "subscription_gone",
            "the subscription has expired or was unsubscribed; stop sending to it",
        ));
    }
    let ttl = ttl(headers)?;
    let urgency = match text_header(headers, "urgency")? {
        None => Urgency::Normal,
        Some(text) => Urgency::parse(text).ok_or_else(|| {
            PushError::bad_request(
                "bad_urgency",
                format!("Urgency {text:?} is not very-low, low, normal or high"),
            )
        })?,
    };
    let topic = text_header(headers, "topic")?.map(str::to_owned);
    if let Some(topic) = &topic {
        check_topic(topic)?;
    }
    let plaintext = decrypt(&subscription, headers, body)?;
    let message_id = b64::encode(&rand::random::<[u8; 12]>());
    let location = format!("{}/message/{message_id}", state.base_url);
    state.record(Recorded {
        id: message_id,
        location: location.clone(),
        subscription: id.to_owned(),
        endpoint: subscription.endpoint(&state.base_url),
        plaintext: plaintext
            .as_ref()
            .and_then(|bytes| String::from_utf8(bytes.clone()).ok()),
        plaintext_base64url: plaintext.as_deref().map(b64::encode),
        ttl,
        urgency,
        topic,
        vapid,
        headers: recorded_headers(headers),
        received_at: unix_ms(),
    });
    let mut response = StatusCode::CREATED.into_response();
    let answer_headers = response.headers_mut();
    if let Ok(location) = HeaderValue::try_from(location) {
        answer_headers.insert(header::LOCATION, location);
    }
    answer_headers.insert("ttl", HeaderValue::from(ttl));
    Ok(response)
}

/// RFC 8030 §5.2: `TTL` is required, in delta-seconds; the mock stores nothing, so it honours
/// any value and echoes it.
fn ttl(headers: &HeaderMap) -> Result<u64, PushError> {
    let text = text_header(headers, "ttl")?.ok_or_else(|| {
        PushError::bad_request("ttl_missing", "the TTL header is required (RFC 8030 §5.2)")
    })?;
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PushError::bad_request(
            "bad_ttl",
            format!("TTL {text:?} is not a number of seconds"),
        ));
    }
    Ok(text.parse().unwrap_or(u64::MAX))
}

fn check_topic(topic: &str) -> Result<(), PushError> {
    let base64url = topic
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if topic.len() > MAX_TOPIC_LEN || !base64url {
        return Err(PushError::bad_request(
            "bad_topic",
            format!("Topic {topic:?} must be at most 32 characters of the base64url alphabet"),
        ));
    }
    Ok(())
}

/// The size limit, `Content-Encoding: aes128gcm` (RFC 8291 §4) and decryption; `None` for a
/// push without payload.
fn decrypt(
    subscription: &crate::subscription::Subscription,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Option<Vec<u8>>, PushError> {
    if body.len() > MAX_PAYLOAD_BYTES {
        return Err(PushError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!(
                "the encrypted body is {} bytes; the limit is {MAX_PAYLOAD_BYTES}",
                body.len()
            ),
        ));
    }
    if body.is_empty() {
        return Ok(None);
    }
    let encoding = text_header(headers, "content-encoding")?;
    if encoding != Some("aes128gcm") {
        return Err(PushError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "bad_content_encoding",
            format!(
                "Content-Encoding is {encoding:?}; a push with a body must be aes128gcm (RFC 8291)"
            ),
        ));
    }
    Ok(Some(subscription.decrypt(body)?))
}

/// A header as text; an empty value counts as absent.
fn text_header<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, PushError> {
    let Some(value) = headers.get(name) else {
        return Ok(None);
    };
    let text = value.to_str().map_err(|_| {
        PushError::bad_request("bad_header", format!("the {name} header is not ASCII"))
    })?;
    Ok(Some(text.trim()).filter(|t| !t.is_empty()))
}

/// Request headers for the record, without the VAPID credentials (recorded as claims).
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
