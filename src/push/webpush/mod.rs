//! Web Push for browsers: RFC 8030 delivery to a subscription's endpoint, the payload encrypted
//! for the subscription (RFC 8291 `aes128gcm`, `ece.rs`), signed for by the application
//! server's VAPID key (RFC 8292, `vapid.rs`).
//!
//! - `subscription.rs`: [`Subscription`], what a browser's `PushSubscription.toJSON()` gives,
//!   and its canonical token form (what the device registry keeps).
//! - `message.rs`: the payload ([`payload`], the one place that decides what a push carries)
//!   and the `TTL`, `Urgency` and `Topic` headers.
//! - `answer.rs`: what a push service's answer means ([`RequestResult`], the metric label).
//! - `client.rs`: [`WebPushProvider`], one push request per send.

mod answer;
mod b64;
mod client;
mod ece;
mod message;
mod subscription;
mod vapid;

pub use answer::RequestResult;
pub use client::{WebPushProvider, WebPushSetupError};
pub use ece::{encrypt, MAX_BODY_BYTES};
pub use message::{payload, topic};
pub use subscription::{BadSubscription, Subscription};
pub use vapid::{public_key, VapidSigner};
