//! apns-mock: a real HTTP/2 server that speaks Apple's APNs provider API with token-based
//! authentication as the real service behaves, so an unmodified APNs provider (an HTTP/2 client
//! signing ES256 provider tokens) can run against it. Plain TCP with HTTP/2 prior knowledge
//! (h2c): point the provider at `http://127.0.0.1:PORT` instead of
//! `https://api.push.apple.com`; an HTTP/1.1 request fails at the connection preface, as a
//! non-HTTP/2 client fails against APNs.
//!
//! # Layout
//! - [`key`]: the provider's signing key as the mock knows it ([`ProviderKey`]: key id, team id,
//!   public key from a `.p8` or a public PEM) and fresh `.p8` keys ([`generate_auth_key`]).
//! - `token`: the `authorization: bearer <JWT>` check and the per-connection token rule.
//! - `request`: the checks on the device token, the `apns-*` headers and the payload.
//! - [`reason`]: Apple's `reason` strings with their statuses, and the JSON error body.
//! - `push`: `POST /3/device/{device_token}`, which runs the checks in order and records.
//! - `control`: the `/_mock/*` test-control endpoints (never part of Apple's API).
//! - `state`: configuration ([`Config`]), recorded notifications, faults, counters.
//! - `server`: the HTTP/2-only accept loop and [`MockHandle`].
//!
//! # Endpoints (all HTTP/2; `curl --http2-prior-knowledge` for the controls)
//! - `POST /3/device/{device_token}` → 200, empty body, `apns-id` (the request's or a new
//!   lowercase UUID) and `apns-unique-id` (as the development environment sends it); or an
//!   error `{"reason":"…"}` (`{"reason":"Unregistered","timestamp":<ms>}` for a 410), with
//!   `apns-id` too. Checks, in this order:
//!   1. method POST, else 405 `MethodNotAllowed`; any other path: 404 `BadPath`;
//!   2. a repeated `authorization`/`apns-*` header: 400 `DuplicateHeaders`;
//!   3. `authorization: bearer <JWT>`: absent or empty → 403 `MissingProviderToken`; not an
//!      ES256 JWT signed by the configured key with `kid` = key id and `iss` = team id and an
//!      integer `iat` → 403 `InvalidProviderToken`; `iat` more than one hour old → 403
//!      `ExpiredProviderToken`;
//!   4. the token rule (below): 429 `TooManyProviderTokenUpdates`;
//!   5. a queued fault (`/_mock/faults`) answers instead;
//!   6. `apns-id` not a canonical 8-4-4-4-12 hex UUID → 400 `BadMessageId`;
//!   7. device token: empty → 400 `MissingDeviceToken`; not 64–200 hex digits of even length →
//!      400 `BadDeviceToken`;
//!   8. `apns-push-type` not one of alert, background, location, voip, complication,
//!      fileprovider, mdm, liveactivity, pushtotalk, widgets, controls → 400 `InvalidPushType`
//!      (absent is accepted, as Apple only requires it on watchOS);
//!   9. `apns-topic`: absent → 400 `MissingTopic`; characters other than `A-Za-z0-9.-` → 400
//!      `BadTopic`; not a configured bundle id plus the push type's suffix (`.voip`,
//!      `.complication`, `.pushkit.fileprovider`, `.location-query`,
//!      `.push-type.liveactivity`, `.voip-ptt`, `.push-type.widgets`, `.push-type.controls`;
//!      none for alert/background; any known suffix when the push type is absent; any topic
//!      for mdm) → 400 `TopicDisallowed`;
//!   10. `apns-priority` not 1, 5 or 10, or a `background` push not at 5 (absent means 10) →
//!       400 `BadPriority`;
//!   11. `apns-expiration` not unix seconds → 400 `BadExpirationDate`;
//!   12. `apns-collapse-id` over 64 bytes → 400 `BadCollapseId`;
//!   13. payload empty → 400 `PayloadEmpty`; over 4096 bytes (5120 for voip) → 413
//!       `PayloadTooLarge`; not a JSON dictionary → 400 `PayloadEmpty` (Apple documents no
//!       reason for it; do not branch on it). `aps` is not required: Wallet and MDM pushes send
//!       `{}`;
//!   14. device token marked unregistered → 410 with that reason and `timestamp`.
//! - Test control (answer 204 unless they return data; malformed input is 400
//!   `{"error":{"code":"bad_request","message"}}`):
//!   `GET /_mock/messages` → `{"messages":[{"apns_id","device_token","topic","push_type",
//!   "priority","expiration","collapse_id","headers","payload","provider_token",
//!   "provider_token_iat","connection","received_at"}]}` (`headers`: every request header but
//!   `authorization`; `connection`: 1, 2, … in accept order; `received_at`: unix ms);
//!   `DELETE /_mock/messages`;
//!   `POST /_mock/unregistered {"tokens":[…],"timestamp_ms"?,"reason"?}` (default: now,
//!   `Unregistered`; `ExpiredToken` also allowed; `DELETE` clears);
//!   `POST /_mock/faults {"status","reason"?,"count"=1,"retry_after_secs"?}`: the next `count`
//!   authenticated requests get that status and reason (default per status: 400
//!   `BadDeviceToken`, 403 `Forbidden`, 404 `BadPath`, 405 `MethodNotAllowed`, 410
//!   `Unregistered` with the current timestamp, 413 `PayloadTooLarge`, 429 `TooManyRequests`,
//!   500 `InternalServerError`, 503 `ServiceUnavailable`; `reason` must be one of Apple's with
//!   that status, e.g. `Shutdown`), plus `Retry-After` if given; queued in order, `DELETE`
//!   clears; `POST /_mock/latency {"ms"}` delays every notification;
//!   `GET /_mock/stats` → `{"accepted","rejected","provider_tokens","token_changes",
//!   "connections"}`.
//!
//! # Provider tokens and connections
//! Apple: a token is valid for one hour after its `iat`; refresh it no more than once every
//! 20 minutes; a connection uses one token, and moving a connection to new tokens too often
//! answers 429 `TooManyProviderTokenUpdates` (the condition client libraries hit when they sign
//! one token per topic or per request on a shared connection). The mock keeps the token of each
//! HTTP/2 connection and accepts a different one only when its `iat` is at least the interval
//! ([`Config::token_update_interval`], 20 minutes by default) after the `iat` of the token in
//! use; a re-signed token with the same `iat` is a different token (ES256 signatures are
//! randomized). Apple does not document whether it measures the interval by `iat` or by its own
//! clock; `iat` makes tests deterministic. Separate connections may use separate tokens.
//!
//! # Not implemented
//! TLS and certificate-based authentication (`BadCertificate*`); the one-stream limit APNs sets
//! before the first valid token and other SETTINGS; GOAWAY with a reason; `IdleTimeout`;
//! several keys (`UnrelatedKeyIdInToken`, `BadEnvironmentKeyIdInToken`);
//! `DeviceTokenNotForTopic` (the mock does not know which app a device token belongs to; inject
//! it as a fault); the broadcast and channel-management APIs; the sandbox/production split.
#![forbid(unsafe_code)]

mod control;
pub mod key;
mod push;
pub mod reason;
mod request;
mod server;
mod state;
mod token;

pub use key::{generate_auth_key, random_apple_id, GeneratedKey, ProviderKey};
pub use reason::Reason;
pub use request::{PushType, MAX_COLLAPSE_ID_BYTES, MAX_PAYLOAD_BYTES, MAX_VOIP_PAYLOAD_BYTES};
pub use server::{spawn, MockHandle};
pub use state::Config;
pub use token::MAX_TOKEN_AGE_SECS;
