//! Apple Push Notification service over HTTP/2 with token-based authentication: the provider
//! token (`token.rs`: an ES256 JWT reused for `apns.token_refresh_secs`), the request's headers
//! and payload (`message.rs`), the meaning of each answer (`answer.rs`), and the
//! [`ApnsProvider`] that sends one notification (`client.rs`).

mod answer;
mod client;
mod message;
mod token;

pub use answer::RequestResult;
pub use client::{ApnsProvider, ApnsSetupError};
pub use message::{headers, payload, Headers};
