//! Switchboard: a hybrid notification router. Devices that are online hold one Server-Sent
//! Events stream; the broker's subscriptions say who is connected where; each notification goes
//! over the live stream when the user is connected and through FCM HTTP v1 otherwise.
//!
//! # Layout
//! - [`config`]: the configuration tree, file + environment layering, validation.
//! - [`app`]: builds the application from its configuration; runs and drains it.
//! - [`server`]: the accept loop (hyper connections, graceful shutdown).
//! - [`http`]: the HTTP API: client streams and devices, producer API, operations.
//! - [`auth`]: client JWTs and producer keys.
//! - [`streams`]: the node's live streams, their bounded queues, and the SSE response body.
//! - [`broker`]: presence and cross-node delivery (`Broker` trait; memory implementation).
//! - [`delivery`]: confirmed delivery: records, ack deadlines, replay buffers, idempotency.
//! - [`router`]: the routing decision (SSE or FCM) and the fallback path.
//! - [`fcm`]: the FCM HTTP v1 sender (OAuth, HTTP/2, retries, answer mapping).
//! - [`store`]: the device registry over sqlx (SQLite, PostgreSQL).
//! - [`notification`]: producer requests, validation, the accepted forms and their SSE frames.
//! - [`metrics`]: every metric name in one place.
//! - [`ids`], [`json`]: identifiers that only hold valid values; JSON objects only.
#![forbid(unsafe_code)]

pub mod app;
pub mod auth;
pub mod broker;
pub mod config;
pub mod delivery;
pub mod fcm;
pub mod http;
pub mod ids;
pub mod json;
pub mod metrics;
pub mod notification;
pub mod router;
pub mod server;
pub mod store;
pub mod streams;
pub mod time;
