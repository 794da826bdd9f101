//! The client's inbox: `GET /v1/inbox` (a page, with a cursor) and `GET /v1/inbox/{id}`.
//! Reading does not ack. What the inbox keeps, and why a poll that finds nothing new reads
//! nothing, is `crate::inbox`'s.

use axum::body::Body;
use axum::extract::Query;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::error::ApiError;
use super::extract::{Client, PathParam};
use super::openapi::{BadRequest, ClientErrors, NotFound};
use super::AppState;
use crate::ids::NotificationId;
use crate::inbox::{at_head, etag, InboxError};
use crate::notification::NotificationEvent;

/// Items per page unless `limit` says otherwise.
const DEFAULT_LIMIT: usize = 100;
/// Most items per page.
const MAX_LIMIT: usize = 1000;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct InboxQuery {
    /// The cursor: the `next` of the previous page (or the id of the last notification this
    /// client has, from any channel). Without it, the newest `limit` notifications.
    after: Option<NotificationId>,
    /// Most notifications in the page: 1 to 1000, 100 if absent.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u64>,
}

/// A page of the inbox. Only the document's: the handler writes the stored items' JSON as it
/// is, without parsing it again.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct InboxPage {
    /// Oldest first; each exactly the `data:` of the stream's `event: notification`.
    #[schema(value_type = Vec<NotificationEvent>)]
    items: Vec<()>,
    /// The `after` of the next poll: the last item's id, or the request's `after` when the
    /// page is empty (`null` when the inbox is empty and no `after` was given).
    #[schema(value_type = Option<String>)]
    next: Option<()>,
}

fn unavailable(state: &AppState, e: InboxError) -> ApiError {
    state.metrics.broker_errors.inc();
    ApiError::broker_unavailable("reading the inbox", e)
}

/// Whether `If-None-Match` names `tag` (or is `*`); weak tags compare as strong ones.
fn matches(headers: &HeaderMap, tag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == tag || t == "*")
}

fn not_modified(tag: &str) -> Response {
    (
        StatusCode::NOT_MODIFIED,
        [
            (
                header::ETAG,
                HeaderValue::from_str(tag).expect("a tag is ASCII"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, no-cache"),
            ),
        ],
    )
        .into_response()
}

fn json(tag: &str, body: String) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (
                header::ETAG,
                HeaderValue::from_str(tag).expect("a tag is ASCII"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, no-cache"),
            ),
        ],
        Body::from(body),
    )
        .into_response()
}

/// The user's notifications after a cursor, oldest first (without one, the newest), for
/// clients that poll or that come back after a while. The answer's `ETag`, sent back in
/// `If-None-Match`, makes an unchanged inbox answer `304 Not Modified` at little cost.
#[utoipa::path(
    get,
    path = "/v1/inbox",
    tag = "client",
    operation_id = "inbox",
    security(("client_jwt" = [])),
    params(
        InboxQuery,
        ("If-None-Match" = Option<String>, Header,
            description = "The `ETag` of the previous answer: `304` when nothing reached the inbox since that answer brought you up to date (or, for a page that did not, when the same request would get the same page)."),
    ),
    responses(
        (status = 200, description = "A page of the inbox.", body = InboxPage,
            headers(("ETag" = String, description = "Send it back in `If-None-Match`."),
                ("Cache-Control" = String, description = "`private, no-cache`"))),
        (status = 304, description = "Nothing changed since the `If-None-Match` tag; no body.",
            headers(("ETag" = String, description = "The same tag."))),
        BadRequest,
        ClientErrors,
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %claims.sub))]
pub async fn page(
    State(state): State<AppState>,
    Client(claims): Client,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Query(q) = Query::<InboxQuery>::try_from_uri(&uri)
        .map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = match q.limit {
        None => DEFAULT_LIMIT,
        Some(l) if (1..=MAX_LIMIT as u64).contains(&l) => l as usize,
        Some(_) => {
            return Err(ApiError::bad_request(format!(
                "limit must be 1 to {MAX_LIMIT}"
            )))
        }
    };
    let inbox = &state.inbox;
    let user = &claims.sub;
    let head = inbox.head(user).await.map_err(|e| unavailable(&state, e))?;
    // Without a cursor, and with a cursor at the head, the answer ends at the head.
    let ends_at_head = q.after.is_none() || at_head(&head, q.after.as_ref());
    let cursor = q.after.as_ref().filter(|_| !ends_at_head);
    let tag = etag(&head, cursor, limit);
    if matches(&headers, &tag) {
        inbox.not_modified();
        return Ok(not_modified(&tag));
    }
    let page = inbox
        .page(user, &head, q.after.as_ref(), limit)
        .await
        .map_err(|e| unavailable(&state, e))?;
    let tag = if page.next.as_deref() == head.as_deref() {
        etag(&head, None, limit)
    } else {
        tag
    };
    let size: usize = page.items.iter().map(|i| i.len() + 1).sum();
    let mut body = String::with_capacity(size + 64);
    body.push_str("{\"items\":[");
    for (i, item) in page.items.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(item);
    }
    body.push_str("],\"next\":");
    match &page.next {
        Some(next) => {
            body.push('"');
            body.push_str(next);
            body.push('"');
        }
        None => body.push_str("null"),
    }
    body.push('}');
    Ok(json(&tag, body))
}

/// One notification of the calling user, e.g. the one whose id a push carried. Another
/// user's id answers 404, as an unknown one does.
#[utoipa::path(
    get,
    path = "/v1/inbox/{id}",
    tag = "client",
    operation_id = "inbox_item",
    security(("client_jwt" = [])),
    params(
        ("id" = NotificationId, Path, description = "A notification id (SSE `id:`, FCM `data.switchboard_id`)."),
        ("If-None-Match" = Option<String>, Header, description = "The `ETag` of a previous answer."),
    ),
    responses(
        (status = 200, description = "The notification, as the stream's `data:`.", body = NotificationEvent,
            headers(("ETag" = String, description = "A notification never changes: its tag neither."))),
        (status = 304, description = "The `If-None-Match` tag is this notification's; no body.",
            headers(("ETag" = String, description = "The same tag."))),
        NotFound,
        BadRequest,
        ClientErrors,
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %claims.sub, notification_id = %id))]
pub async fn item(
    State(state): State<AppState>,
    Client(claims): Client,
    PathParam(id): PathParam<NotificationId>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let found = state
        .inbox
        .get(&claims.sub, &id)
        .await
        .map_err(|e| unavailable(&state, e))?;
    let Some(body) = found else {
        return Err(ApiError::not_found(
            "no such notification in your inbox (unknown, another user's, or past inbox.retention_secs)",
        ));
    };
    let tag = format!("\"{}\"", id.to_ascii_lowercase());
    if matches(&headers, &tag) {
        state.inbox.not_modified();
        return Ok(not_modified(&tag));
    }
    Ok(json(&tag, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_takes_lists_weak_tags_and_star() {
        let mut h = HeaderMap::new();
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("\"a\", W/\"b\""),
        );
        assert!(matches(&h, "\"b\""));
        assert!(matches(&h, "\"a\""));
        assert!(!matches(&h, "\"c\""));
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert!(matches(&h, "\"c\""));
        assert!(!matches(&HeaderMap::new(), "\"c\""));
    }
}
