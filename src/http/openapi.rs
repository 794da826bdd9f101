//! The OpenAPI 3.1 document of the API: what the routes' annotations say, plus the parts they
//! share (security schemes, the error answers, tags). Built once, served as bytes at
//! `GET /openapi.json`.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use axum::response::IntoResponse;
use bytes::Bytes;
use http::header;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{OneOfBuilder, Schema};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ContentBuilder, ObjectBuilder, OpenApi, Ref, RefOr, Type};
use utoipa::{IntoResponses, Modify, PartialSchema};

use super::error::ErrorBody;
use crate::ids::{DeviceId, NotificationId, Topic, UserId};
use crate::notification::{BroadcastEvent, NotificationEvent};

/// The parts of the document no single route owns.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Switchboard",
        description = "Hybrid notification router: devices that are online hold one Server-Sent \
            Events stream (`GET /v1/events`); producers post notifications (`POST /v1/notify`), \
            which go over the user's live stream when there is one and through FCM otherwise. \
            The repository's docs/API.md explains each endpoint, the stream and every error code.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    tags(
        (name = "client", description = "Apps and browsers, with a client JWT."),
        (name = "producer", description = "Backend services, with a producer key."),
        (name = "operations", description = "Health, readiness, metrics and this document; no authentication."),
        (name = "console", description = "The operator console: its page, and its API with an operator key."),
    ),
    // The ids are named here: parameters refer to them, and routes! collects only bodies' schemas.
    components(schemas(ErrorBody, UserId, DeviceId, Topic, NotificationId)),
    modifiers(&Shared),
)]
pub struct ApiDoc;

/// Security schemes and the shared error answers.
struct Shared;

impl Modify for Shared {
    fn modify(&self, doc: &mut OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            PRODUCER_KEY,
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "`Authorization: Bearer <producer key>`, one of `auth.producer_keys`.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            CLIENT_JWT,
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "`Authorization: Bearer <jwt>`: HS256 signed with `auth.jwt_secret`; `sub` is \
                         the user id, `exp` is required, an optional `topics` list limits the topics \
                         the client may follow.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            OPERATOR_KEY,
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "`Authorization: Bearer <operator key>`, one of `auth.operator_keys`: opens \
                         the console's API (`/v1/console/...`). Producer keys and client tokens \
                         do not.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            ACCESS_TOKEN,
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                "access_token",
                "The client JWT in the query, for browsers' EventSource (it cannot set headers). \
                 Only `GET /v1/events` takes it.",
            ))),
        );
        for (name, _, description, retry_after) in ERROR_ANSWERS {
            components.responses.insert(
                name.to_string(),
                RefOr::T(error_answer(description, *retry_after)),
            );
        }
    }
}

/// Security scheme names (the routes' `security(...)` spell them out: the macro takes literals).
const PRODUCER_KEY: &str = "producer_key";
const CLIENT_JWT: &str = "client_jwt";
const ACCESS_TOKEN: &str = "access_token";
const OPERATOR_KEY: &str = "operator_key";

/// The shared error answers: component name, status, description (with the codes), and whether
/// the answer carries `Retry-After`.
const ERROR_ANSWERS: &[(&str, &str, &str, bool)] = &[
    ("BadRequest", "400", "`invalid_json`: the body is not JSON. `invalid_request`: a field, parameter or path segment has the wrong type or shape (control characters included); the message names it.", false),
    ("Unauthorized", "401", "`missing_token`, `invalid_token` (bad signature or algorithm, malformed claims, `nbf` in the future, wrong `iss` / `aud`, unknown producer key) or `token_expired`.", false),
    ("Forbidden", "403", "`forbidden`: a client token on the producer API; on the console's API, a producer key or client token (only an operator key opens it), or any key when the node's `auth.operator_keys` is empty (the console is closed).", false),
    ("TopicNotAllowed", "403", "`topic_not_allowed`: a requested topic is not in the token's `topics` claim.", false),
    ("NotFound", "404", "`not_found`.", false),
    ("NotConfigured", "404", "`not_configured`: the feature is not configured on this server (Web Push: `webpush.vapid_private_key` is empty).", false),
    ("MethodNotAllowed", "405", "`method_not_allowed`: the path exists, with other methods.", false),
    ("RequestTimeout", "408", "`request_timeout`: the body did not arrive whole within `server.body_timeout_secs` of the request head; the connection is closed.", false),
    ("IdempotencyKeyInUse", "409", "`idempotency_key_in_use`: another request with this `idempotency_key` is still being processed; retry shortly.", false),
    ("TooManyDevices", "409", "`too_many_devices`: the user has `devices.max_per_user` devices; delete one first (replacing a registered device's token is always allowed).", false),
    ("PayloadTooLarge", "413", "`payload_too_large`: the body is over its limit (64 KiB; 1 MiB for a batch), or the FCM payload (`data` + `notification`) is over FCM's 4096 bytes.", false),
    ("UnsupportedMediaType", "415", "`unsupported_media_type`: send the body as `Content-Type: application/json`.", false),
    ("TooManyStreams", "429", "`too_many_streams`: the user holds `sse.max_connections_per_user` streams on this node; `too_many_reconnects`: this user or this address opens streams faster than `limits.stream_opens_per_user_per_min` / `limits.stream_opens_per_ip_per_sec` allow.", true),
    ("RateLimited", "429", "`rate_limited`: this producer key is over `limits.producer_rate_per_sec` (one token per notification: a batch costs one per item).", true),
    ("Unavailable", "503", "`overloaded` (too many FCM sends waiting), `broker_unavailable`, `shutting_down`, `not_ready` (`/readyz`), or `too_many_connections` (the node is at `server.max_connections`; answered before the request is read, on any path).", true),
];

fn error_answer(description: &str, retry_after: bool) -> Response {
    let mut answer = ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("Error")))
            .build(),
    );
    if retry_after {
        answer = answer.header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .minimum(Some(0)),
                ))
                .description(Some("Seconds to wait before retrying."))
                .build(),
        );
    }
    answer.build()
}

/// Declares groups of the shared error answers, for a route's `responses(...)`.
macro_rules! error_answers {
    ($($(#[$doc:meta])* $group:ident: $($component:literal),+;)+) => {$(
        $(#[$doc])*
        pub struct $group;

        impl IntoResponses for $group {
            fn responses() -> BTreeMap<String, RefOr<Response>> {
                refs(&[$($component),+])
            }
        }
    )+};
}

error_answers! {
    /// What every producer route can answer besides its own.
    ProducerErrors: "Unauthorized", "Forbidden", "MethodNotAllowed", "RateLimited", "Unavailable";
    /// What every operator (console) route can answer besides its own.
    OperatorErrors: "Unauthorized", "Forbidden", "MethodNotAllowed", "Unavailable";
    /// What every client route can answer besides its own.
    ClientErrors: "Unauthorized", "MethodNotAllowed", "Unavailable";
    /// What a route with a JSON body can answer about it.
    BodyErrors: "BadRequest", "RequestTimeout", "PayloadTooLarge", "UnsupportedMediaType";
    /// What an operations route can answer.
    OpsErrors: "MethodNotAllowed", "Unavailable";
    BadRequest: "BadRequest";
    NotFound: "NotFound";
    NotConfigured: "NotConfigured";
    TopicNotAllowed: "TopicNotAllowed";
    IdempotencyKeyInUse: "IdempotencyKeyInUse";
    TooManyDevices: "TooManyDevices";
    TooManyStreams: "TooManyStreams";
}

fn refs(components: &[&str]) -> BTreeMap<String, RefOr<Response>> {
    components
        .iter()
        .map(|name| {
            let (_, status, _, _) = ERROR_ANSWERS
                .iter()
                .find(|(n, ..)| n == name)
                .expect("a declared error answer");
            (
                status.to_string(),
                RefOr::Ref(Ref::from_response_name(*name)),
            )
        })
        .collect()
}

/// The document as served: serialised once, on first use.
pub fn document() -> &'static Bytes {
    static DOCUMENT: OnceLock<Bytes> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let doc = super::api().into_openapi();
        Bytes::from(doc.to_json().expect("the OpenAPI document serialises"))
    })
}

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    operation_id = "openapi",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document of this API.", content_type = "application/json", body = Object),
        OpsErrors,
    )
)]
pub async fn openapi_json() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        document().clone(),
    )
}

/// What `GET /v1/events` sends, for the document (docs/API.md says it at length).
pub const STREAM_DESCRIPTION: &str = "\
The stream opens with `retry: <ms>` (how long EventSource waits before reconnecting: \
`sse.retry_ms`, spread by up to `sse.retry_jitter_ms` either way), then \
carries events, each with a JSON `data:` line:\n\n\
- `notification` (`id:` the notification id): `{\"id\",\"data\",\"notification\",\"sent_at\"}`.\n\
- `broadcast` (no `id:` line: the broadcast id is in the data, so a client's last event id stays \
the last notification's): `{\"id\",\"topic\",\"data\",\"sent_at\"}`.\n\
- `reset`: the `Last-Event-ID` is unknown or older than `delivery.replay_window_secs`; refetch \
your state.\n\
- `shutdown`: the node is stopping; reconnect (to another node) with `Last-Event-ID`.\n\
- `reauth` (`data: {}`): the stream's token reached its `exp`; the stream wrote what it held \
and ends. Fetch a fresh token and reconnect with `Last-Event-ID`.\n\n\
`: ping` comments every `sse.heartbeat_secs` keep proxies from closing a quiet stream. A \
reconnect with `Last-Event-ID` (header or `last_event_id`) first replays, in order, what the \
user's streams were sent after that id and that is not acked or settled through FCM yet.";

/// One event of `GET /v1/events`, as an SSE parser hands it over (`event`, `data`, `id`).
pub struct StreamEvent;

impl PartialSchema for StreamEvent {
    fn schema() -> RefOr<Schema> {
        let event = |name: &str, data: RefOr<Schema>, with_id: bool| {
            let mut e = ObjectBuilder::new()
                .property(
                    "event",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .enum_values(Some([name])),
                )
                .required("event")
                .property(
                    "data",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .content_media_type("application/json")
                        .content_schema(Some(data)),
                )
                .required("data");
            if with_id {
                e = e
                    .property("id", ObjectBuilder::new().schema_type(Type::String))
                    .required("id");
            }
            Schema::Object(e.build())
        };
        let object = || {
            RefOr::T(Schema::Object(
                ObjectBuilder::new().schema_type(Type::Object).build(),
            ))
        };
        let one_of = OneOfBuilder::new()
            .item(event(
                "notification",
                RefOr::Ref(Ref::from_schema_name("NotificationEvent")),
                true,
            ))
            .item(event(
                "broadcast",
                RefOr::Ref(Ref::from_schema_name("BroadcastEvent")),
                false,
            ))
            .item(event("reset", object(), false))
            .item(event("shutdown", object(), false))
            .item(event("reauth", object(), false));
        RefOr::T(Schema::OneOf(one_of.build()))
    }
}

impl utoipa::ToSchema for StreamEvent {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push(("NotificationEvent".into(), NotificationEvent::schema()));
        schemas.push(("BroadcastEvent".into(), BroadcastEvent::schema()));
    }
}
