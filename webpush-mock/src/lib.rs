//! webpush-mock: a real Web Push service (RFC 8030) in receiver mode: it hands out push
//! subscriptions as a browser would, then accepts push messages on their endpoints as a push
//! service does: VAPID (RFC 8292) verified, the `aes128gcm` body (RFC 8188) decrypted with the
//! subscription's keys (RFC 8291), and the PLAINTEXT recorded for tests. An unmodified
//! application server (pywebpush, web-push, a Rust provider) can send to it. HTTP/1.1 and h2c
//! on one port, plain TCP.
//!
//! # Layout
//! - [`ece`]: RFC 8291 decryption (and the encryption an application server does, for tests).
//! - [`vapid`]: the `Authorization: vapid t=…, k=…` check.
//! - [`key`]: VAPID keys: [`parse_public_key`] for configuration, [`generate_vapid_key`].
//! - `subscription`: a subscription's keys and its `PushSubscription.toJSON()` form.
//! - `push`: `POST /push/{id}`, which runs the checks in order and records.
//! - `error`: the push endpoint's error answers.
//! - `control`: the `/_mock/*` test-control endpoints (never part of a push service's API).
//! - `state`: configuration ([`Config`]), subscriptions, messages, faults, counters.
//! - `server`: the accept loop and [`MockHandle`].
//! - [`b64`]: base64url without padding.
//!
//! # Endpoints
//! - `POST /push/{id}` → 201 Created, empty body, `Location: <base>/message/<message id>` and
//!   `TTL` (echoed: the mock stores nothing, so it honours any TTL). Errors are
//!   `{"error":{"code","message"}}`, the message saying what the sender got wrong. Checks, in
//!   this order:
//!   1. unknown subscription → 404 `subscription_not_found`;
//!   2. VAPID, `Authorization: vapid t=<JWT>, k=<base64url public key>`: absent, another
//!      scheme (such as the pre-RFC `WebPush <JWT>` + `Crypto-Key`), no `t`/`k`, `k` not a
//!      65-byte uncompressed P-256 point, `t` not a JWT → 401 with `WWW-Authenticate: vapid`
//!      (codes `vapid_missing`, `vapid_scheme`, `vapid_missing_param`, `vapid_bad_key`,
//!      `vapid_malformed_jwt`); `k` not the key the subscription is restricted to → 403
//!      `vapid_key_mismatch`; `alg` not ES256 → 403 `vapid_algorithm`; signature not by `k` →
//!      403 `vapid_bad_signature`; `aud` not the endpoint's origin (`http://host:port`) → 403
//!      `vapid_bad_audience`; `exp` absent, past or more than 24 h ahead → 403
//!      `vapid_bad_expiry`; `sub` not `mailto:`/`https:` → 403 `vapid_bad_subject`. The key a
//!      subscription is restricted to is its own `application_server_key` if it was created
//!      with one, else the mock's [`Config::vapid_public_key`] (`--vapid-public-key`), else
//!      none: any key that signs its own token is accepted;
//!   3. a queued fault (`/_mock/faults`) answers instead (code `injected_fault`);
//!   4. a subscription marked gone → its 404 or 410 (`subscription_gone`);
//!   5. `TTL` absent → 400 `ttl_missing`; not digits → 400 `bad_ttl`;
//!   6. `Urgency` not very-low, low, normal, high → 400 `bad_urgency` (absent: normal);
//!   7. `Topic` over 32 characters or outside the base64url alphabet → 400 `bad_topic`;
//!   8. body over 4096 bytes → 413 `payload_too_large`;
//!   9. a non-empty body without `Content-Encoding: aes128gcm` → 415 `bad_content_encoding`
//!      (an empty body is a push without payload and needs none);
//!   10. a body that does not decrypt (header shape, keyid not 65 bytes, more than one record,
//!       wrong keys/auth/salt, bad padding) → 400 `decryption_failed`.
//! - Test control (answer 204 unless they return data; malformed input is 400
//!   `{"error":{"code":"bad_request","message"}}`):
//!   `POST /_mock/subscriptions` (body optional: `{"application_server_key":"<base64url>"}`)
//!   → 201 `{"endpoint":"<base>/push/<id>","expirationTime":null,"keys":{"p256dh","auth"}}`,
//!   exactly `PushSubscription.toJSON()`; the mock keeps the private key;
//!   `GET /_mock/messages` → `{"messages":[{"id","location","subscription","endpoint",
//!   "plaintext","plaintext_base64url","ttl","urgency","topic","vapid":{"sub","aud","exp","k"},
//!   "headers","received_at"}]}` (`plaintext` is `null` when not UTF-8 or for an empty push;
//!   `headers` has every request header but `authorization`; `received_at` is unix ms);
//!   `DELETE /_mock/messages`;
//!   `POST /_mock/faults {"status","count"=1,"retry_after_secs"?}` (400, 401, 403, 404, 410,
//!   413, 429, 500, 502 or 503; queued in order; `DELETE` clears);
//!   `POST /_mock/gone {"ids":[…],"status"=410}` (ids or whole endpoints; 404 or 410;
//!   `DELETE` clears); `POST /_mock/latency {"ms"}`;
//!   `GET /_mock/stats` → `{"accepted","rejected","subscriptions"}`.
//!
//! # Not implemented
//! TLS; the legacy `aesgcm` coding and the `WebPush`/`Crypto-Key` authorization of drafts
//! (refused, see above); delivery to a user agent (`GET` of a subscription, push message
//! acknowledgement), receipts (`Prefer: respond-async`, `Push-Receipt`), replacement of
//! undelivered messages with the same `Topic` (the mock records every message); subscription
//! sets; `Urgency` filtering; TTL capping (real services cap TTL at about four weeks).
#![forbid(unsafe_code)]

pub mod b64;
mod control;
pub mod ece;
mod error;
pub mod key;
mod push;
mod server;
mod state;
mod subscription;
pub mod vapid;

pub use key::{generate_vapid_key, parse_public_key, VapidKey};
pub use push::{Urgency, MAX_PAYLOAD_BYTES, MAX_TOPIC_LEN};
pub use server::{spawn, spawn_with, MockHandle};
pub use state::Config;
