//! Switchboard: a hybrid notification router. Devices that are online hold one Server-Sent
//! Events stream; the broker's subscriptions say who is connected where; each notification goes
//! over the live stream when the user is connected and through FCM HTTP v1 otherwise.
//!
//! # Layout
//! - [`config`]: the configuration tree, file + environment layering, validation.
//! - [`app`]: builds the application from its configuration; runs and drains it.
//! - [`server`]: the accept loop and the connection edge (cap, head and idle deadlines; hyper
//!   connections, graceful shutdown).
//! - [`http`]: the HTTP API: client streams and devices, producer API, operations.
//! - [`auth`]: client JWTs and producer keys.
//! - [`limits`]: rate limits per producer key, and per user and address on stream opens.
//! - [`router`]: the routing decision (SSE or push) and the fallback path.
//! - [`streams`]: the node's live streams, their bounded queues, and the SSE response body.
//! - [`push`]: how notifications reach devices without a stream: the `Provider` trait (one
//!   attempt, a typed outcome), the sender (queue, in-flight bound, retries, token pruning),
//!   and `push/fcm/` (FCM HTTP v1). A new provider (APNs, Web Push) goes in `push/<provider>/`.
//! - [`backend`]: where notifications travel between nodes: the `Broker` (presence,
//!   cross-node delivery) and the `Ledger` (records, ack deadlines, replay buffers,
//!   idempotency), in `backend/memory/` (one node) or `backend/redis/` (several), chosen by
//!   `Backend::connect`. A new engine (NATS, say) goes in `backend/<engine>/`.
//! - [`inbox`]: each user's inbox of recent notifications (`GET /v1/inbox`), in the store's
//!   database on one node and in Redis on several, with heads in memory for cheap polls.
//! - [`store`]: the device registry over sqlx (SQLite, PostgreSQL).
//! - [`notification`]: producer requests, validation, the accepted forms and their SSE frames.
//! - [`metrics`]: every metric name in one place.
//! - [`figures`]: a node's figures for the operator console, and their sum over the cluster.
//! - [`redact`]: credentials masked in URLs and messages before they are printed or logged.
//! - [`ids`], [`json`]: identifiers that only hold valid values; JSON objects only.
#![forbid(unsafe_code)]

pub mod app;
pub mod auth;
pub mod backend;
pub mod config;
pub mod figures;
pub mod http;
pub mod ids;
pub mod inbox;
pub mod json;
pub mod limits;
pub mod metrics;
pub mod notification;
pub mod push;
pub mod redact;
pub mod router;
pub mod server;
pub mod store;
pub mod streams;
pub mod time;
