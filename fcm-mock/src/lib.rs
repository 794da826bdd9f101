//! fcm-mock: a real HTTP server that speaks Google's OAuth2 token endpoint and the FCM HTTP v1
//! `messages:send` endpoint as the real ones behave, so that unmodified production clients
//! (yup-oauth2 + reqwest over HTTP/2, Google's Admin SDKs) can run against it.
//!
//! # Layout
//! - [`key`]: Google service-account key files: parse one (deriving the RSA public key from its
//!   `private_key`) and generate fresh ones ([`generate_service_account`]).
//! - `token`: `POST /token`, the OAuth2 JWT-bearer grant; verifies RS256 assertions, issues
//!   opaque access tokens.
//! - `send`: `POST /v1/projects/{project}/messages:send`: bearer check, injected faults,
//!   validation, recording.
//! - [`message`]: FCM v1 `Message` validation as Google does it, and [`payload_size`].
//! - `schema`: the field tables of the FCM v1 JSON types that validation walks.
//! - `google_error`: Google's JSON error shape (`{"error":{code,message,status,details}}`).
//! - `control`: the `/_mock/*` test-control endpoints (never part of the real API).
//! - `state`: the shared mock state: issued tokens, recorded messages, faults, stats.
//! - `server`: the accept loop (HTTP/1.1 and h2c prior knowledge on one port) and [`MockHandle`].
//!
//! # Endpoints
//! - `POST /token` (form: `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=JWT`)
//!   → `{"access_token","expires_in":3599,"token_type":"Bearer"}`, or 400 `invalid_grant` /
//!   `unsupported_grant_type`.
//! - `POST /v1/projects/{project}/messages:send` → `{"name":"projects/{project}/messages/ID"}`, or
//!   Google's `{"error":{"code","message","status","details"}}`.
//! - Test control, all answering 204 unless they return data:
//!   `GET /_mock/messages` → `{"messages":[{"name","message","received_at"}]}` (unix ms);
//!   `DELETE /_mock/messages`; `POST /_mock/unregistered {"tokens":[..]}` (`DELETE` clears);
//!   `POST /_mock/faults {"status","count"=1,"retry_after_secs"?,"error_code"?,"message"?}`
//!   (queued in order; `DELETE` clears); `POST /_mock/revoke_tokens`; `POST /_mock/latency {"ms"}`;
//!   `GET /_mock/stats` → `{"accepted","rejected","tokens_issued"}`.
#![forbid(unsafe_code)]

mod control;
mod google_error;
pub mod key;
pub mod message;
mod schema;
mod send;
mod server;
mod state;
mod token;

pub use key::generate_service_account;
pub use message::{payload_size, MAX_PAYLOAD_BYTES};
pub use server::{spawn, spawn_with, MockHandle};
pub use state::Config;
