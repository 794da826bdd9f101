//! What producers send (`NotifyRequest`, `BroadcastRequest`), its validation, and the accepted,
//! immutable form that travels through broker, streams and FCM (`Notification`, `Broadcast`).
//! The SSE frame of each is built once and shared by every stream that writes it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ids::{self, AppId, Topic, UserId};

/// FCM's limit on a message's payload (data + notification).
pub const FCM_PAYLOAD_LIMIT: usize = 4096;
/// The data key under which the FCM payload carries the notification id, so an app that got the
/// same notification over SSE (or a replay) and over FCM can show it once.
pub const ID_DATA_KEY: &str = "switchboard_id";
/// FCM's longest time to live (28 days).
const MAX_TTL_SECS: u32 = 2_419_200;

/// A notification for one user. At least one of `data` and `notification`; together, as FCM
/// measures them, they must fit FCM's 4096 bytes.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"user_id": "alice", "data": {"order": "42"},
    "notification": {"title": "Order filled"}}))]
pub struct NotifyRequest {
    pub user_id: UserId,
    /// String to string, as in FCM. Keys FCM reserves (`from`, `notification`,
    /// `message_type`, `google.*`, `gcm.*`) and `switchboard_id` are refused.
    #[serde(default)]
    pub data: Option<BTreeMap<String, String>>,
    #[serde(default, deserialize_with = "crate::json::optional_object")]
    pub notification: Option<Content>,
    /// How long FCM keeps it for an offline device (FCM's default when absent).
    #[serde(default)]
    #[schema(maximum = 2419200)]
    pub ttl_secs: Option<u32>,
    #[serde(default)]
    pub priority: Option<Priority>,
    /// FCM's collapse key: an offline device gets only the latest with the same key. At most
    /// 256 bytes, without control characters.
    #[serde(default)]
    #[schema(max_length = 256, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$")]
    pub collapse_key: Option<String>,
    /// A repeat with the same key (same producer key, within 24 h, any node) gets the first
    /// answer and sends nothing. 1-256 bytes, without control characters.
    #[serde(default)]
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]+$"
    )]
    pub idempotency_key: Option<String>,
    /// Only the user's devices of this app (an `[[apps]]` id); absent: all of them.
    #[serde(default)]
    pub app: Option<AppId>,
    /// Private push: the push (FCM, APNs, Web Push) carries only the notification id, and the
    /// app fetches the content from Switchboard; the content never passes the push services.
    #[serde(default)]
    pub private: bool,
}

/// What a device shows (FCM's `notification`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Content {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

/// FCM's message priority (`high` when absent).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    #[default]
    High,
    Normal,
}

/// An event for every live stream that follows `topic`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"topic": "news", "data": {"headline": "hello"}}))]
pub struct BroadcastRequest {
    pub topic: Topic,
    /// Any JSON object; it reaches the streams as it is.
    #[schema(value_type = Object)]
    pub data: serde_json::Map<String, serde_json::Value>,
}

/// Why a notify body was refused before anything was sent.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Invalid {
    #[error("{0}")]
    BadRequest(String),
    #[error("the FCM payload (data + notification) is {0} bytes; FCM's limit is 4096")]
    TooLarge(usize),
}

/// An accepted notification. Shared (`Arc`) by the broker, every stream of the user and the
/// FCM sender; nothing in it changes after acceptance except the lazily built SSE frame.
#[derive(Debug, Serialize, Deserialize)]
pub struct Notification {
    pub id: String,
    pub user_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification: Option<Content>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_secs: Option<u32>,
    #[serde(default)]
    pub priority: Priority,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collapse_key: Option<String>,
    /// The app whose devices it goes to; `None`: every device of the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<AppId>,
    /// Pushes carry only the id (private push).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub private: bool,
    /// Accept time, unix ms (the `sent_at` clients see).
    pub sent_at: u64,
    /// Accept time, unix µs, for the accept → written latency histogram.
    pub accepted_us: u64,
    #[serde(skip)]
    frame: OnceLock<Bytes>,
    /// Its JSON (what the broker publishes and the Redis ledger stores), made once.
    #[serde(skip)]
    json: OnceLock<Bytes>,
    /// Copies queued on this node's streams, not yet written nor dropped.
    #[serde(skip)]
    copies: AtomicU32,
    /// Whether a stream on this node wrote it.
    #[serde(skip)]
    written: AtomicBool,
}

impl NotifyRequest {
    /// Checks the request and turns it into an accepted notification with a fresh id.
    pub fn accept(self) -> Result<Notification, Invalid> {
        if self.data.is_none() && self.notification.is_none() {
            return Err(bad("at least one of data or notification is required"));
        }
        if let Some(data) = &self.data {
            for key in data.keys() {
                if reserved_data_key(key) {
                    return Err(Invalid::BadRequest(format!(
                        "data key {key:?} is reserved (by FCM or by Switchboard)"
                    )));
                }
            }
        }
        if self.ttl_secs.is_some_and(|t| t > MAX_TTL_SECS) {
            return Err(bad(
                "ttl_secs must be at most 2419200 (28 days, FCM's maximum)",
            ));
        }
        if self
            .collapse_key
            .as_ref()
            .is_some_and(|k| k.len() > 256 || has_control(k))
        {
            return Err(bad(
                "collapse_key must be at most 256 bytes without control characters",
            ));
        }
        if let Some(key) = &self.idempotency_key {
            check_idempotency_key(key)?;
        }
        let now = crate::time::unix_micros();
        let n = Notification {
            id: ids::new_id(),
            user_id: self.user_id.into(),
            data: self.data,
            notification: self.notification,
            ttl_secs: self.ttl_secs,
            priority: self.priority.unwrap_or_default(),
            collapse_key: self.collapse_key,
            app: self.app,
            private: self.private,
            sent_at: now / 1000,
            accepted_us: now,
            frame: OnceLock::new(),
            json: OnceLock::new(),
            copies: AtomicU32::new(0),
            written: AtomicBool::new(false),
        };
        let size = n.fcm_payload_size();
        if size > FCM_PAYLOAD_LIMIT {
            return Err(Invalid::TooLarge(size));
        }
        Ok(n)
    }
}

fn bad(msg: &str) -> Invalid {
    Invalid::BadRequest(msg.to_string())
}

fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// An idempotency key is 1-256 bytes without control characters: it is part of a Redis key.
pub fn check_idempotency_key(key: &str) -> Result<(), Invalid> {
    if key.is_empty() || key.len() > 256 || has_control(key) {
        return Err(bad(
            "idempotency_key must be 1-256 bytes without control characters",
        ));
    }
    Ok(())
}

/// Keys FCM refuses in `data`, and ours.
fn reserved_data_key(key: &str) -> bool {
    key.is_empty()
        || key == ID_DATA_KEY
        || matches!(key, "from" | "notification" | "message_type")
        || key.starts_with("google.")
        || key.starts_with("gcm.")
}

impl Notification {
    /// A copy was queued on a stream.
    pub fn queued(&self) {
        self.copies.fetch_add(1, Ordering::AcqRel);
    }

    /// A copy was written to its stream.
    pub fn wrote(&self) {
        self.written.store(true, Ordering::Release);
        self.copies.fetch_sub(1, Ordering::AcqRel);
    }

    pub fn was_written(&self) -> bool {
        self.written.load(Ordering::Acquire)
    }

    /// A queued copy was dropped unwritten (its stream ended). True when it was the last copy
    /// and no stream wrote it: the notification must take the fallback path.
    pub fn dropped_unwritten(&self) -> bool {
        let before = self.copies.fetch_sub(1, Ordering::AcqRel);
        before == 1 && !self.was_written()
    }

    /// The FCM `data` map: the producer's data plus the notification id.
    pub fn fcm_data(&self) -> BTreeMap<&str, &str> {
        let mut data: BTreeMap<&str, &str> = self
            .data
            .iter()
            .flatten()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        data.insert(ID_DATA_KEY, &self.id);
        data
    }

    /// FCM's payload size, measured as fcm-mock measures it: the compact JSON of `data` plus
    /// that of `notification`.
    pub fn fcm_payload_size(&self) -> usize {
        let data = serde_json::to_vec(&self.fcm_data()).map_or(0, |v| v.len());
        let content = self
            .notification
            .as_ref()
            .and_then(|c| serde_json::to_vec(c).ok())
            .map_or(0, |v| v.len());
        data + content
    }

    /// Parses a notification from its JSON, keeping the bytes as its [`Notification::json`].
    pub fn from_json(bytes: Bytes) -> serde_json::Result<Notification> {
        let n: Notification = serde_json::from_slice(&bytes)?;
        let _ = n.json.set(bytes);
        Ok(n)
    }

    /// Its JSON, serialised on first use and shared after.
    pub fn json(&self) -> Bytes {
        self.json
            .get_or_init(|| {
                Bytes::from(
                    serde_json::to_vec(self).expect("serialising a notification cannot fail"),
                )
            })
            .clone()
    }

    /// What clients see of it: the SSE `data:`, and an item of the inbox.
    pub fn event(&self) -> NotificationEvent<'_> {
        NotificationEvent {
            id: &self.id,
            data: self.data.as_ref(),
            notification: self.notification.as_ref(),
            sent_at: self.sent_at,
        }
    }

    /// The JSON of [`Notification::event`].
    pub fn event_json(&self) -> String {
        serde_json::to_string(&self.event()).expect("serialising plain structs cannot fail")
    }

    /// The SSE frame (`id:`, `event: notification`, `data:`), built on first use.
    pub fn frame(&self) -> Bytes {
        self.frame
            .get_or_init(|| sse_frame(&self.id, "notification", &self.event()))
            .clone()
    }
}

/// An accepted broadcast.
#[derive(Debug, Serialize, Deserialize)]
pub struct Broadcast {
    pub id: String,
    pub topic: String,
    pub data: serde_json::Map<String, serde_json::Value>,
    pub sent_at: u64,
    #[serde(skip)]
    frame: OnceLock<Bytes>,
}

impl BroadcastRequest {
    pub fn accept(self) -> Broadcast {
        Broadcast {
            id: ids::new_id(),
            topic: self.topic.into(),
            data: self.data,
            sent_at: crate::time::unix_millis(),
            frame: OnceLock::new(),
        }
    }
}

impl Broadcast {
    /// The SSE frame, serialised once per broadcast per node whatever the number of subscribers.
    /// It has no `id:` line (the id is in its data): a client's last event id must stay the
    /// last notification's, the only kind a reconnect can replay; a broadcast id there would
    /// turn every reconnect after a broadcast into `event: reset`.
    pub fn frame(&self) -> Bytes {
        self.frame
            .get_or_init(|| {
                let payload = BroadcastEvent {
                    id: &self.id,
                    topic: &self.topic,
                    data: &self.data,
                    sent_at: self.sent_at,
                };
                sse_frame("", "broadcast", &payload)
            })
            .clone()
    }
}

/// The `data:` of an `event: notification`.
#[derive(Serialize, ToSchema)]
pub struct NotificationEvent<'a> {
    /// The notification id (also the event's `id:`).
    pub id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<BTreeMap<String, String>>)]
    pub data: Option<&'a BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Content>)]
    pub notification: Option<&'a Content>,
    /// Accept time, unix ms.
    pub sent_at: u64,
}

/// The `data:` of an `event: broadcast`.
#[derive(Serialize, ToSchema)]
pub struct BroadcastEvent<'a> {
    /// The broadcast id. Only here: the event has no `id:` line, so that a client's last event
    /// id stays the last notification's.
    pub id: &'a str,
    pub topic: &'a str,
    #[schema(value_type = Object)]
    pub data: &'a serde_json::Map<String, serde_json::Value>,
    /// Accept time, unix ms.
    pub sent_at: u64,
}

/// One SSE event. Compact JSON has no raw newlines, so one `data:` line carries it. The id is
/// one the node made (a UUID); one that could end its line (CR, LF) or that a client would
/// ignore (NUL), as a notification from a tampered broker might carry, gets no `id:` line.
pub fn sse_frame(id: &str, event: &str, payload: &impl Serialize) -> Bytes {
    let json = serde_json::to_vec(payload).expect("serialising plain structs cannot fail");
    let mut out = Vec::with_capacity(json.len() + id.len() + event.len() + 24);
    if !id.is_empty() && !id.contains(['\r', '\n', '\0']) {
        out.extend_from_slice(b"id: ");
        out.extend_from_slice(id.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(event.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    out.extend_from_slice(&json);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// Shared handle types.
pub type SharedNotification = Arc<Notification>;
pub type SharedBroadcast = Arc<Broadcast>;

#[cfg(test)]
mod tests {
    use super::*;

    fn req(json: &str) -> NotifyRequest {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn accepts_and_frames() {
        let n = req(r#"{"user_id":"u1","data":{"k":"v"},"notification":{"title":"t"}}"#)
            .accept()
            .unwrap();
        let frame = String::from_utf8(n.frame().to_vec()).unwrap();
        assert!(frame.starts_with(&format!("id: {}\nevent: notification\ndata: {{", n.id)));
        assert!(frame.contains(r#""data":{"k":"v"}"#));
        assert!(frame.ends_with("}\n\n"));
        assert_eq!(frame.matches('\n').count(), 4);
    }

    #[test]
    fn refuses_bad_requests() {
        assert!(req(r#"{"user_id":"u1"}"#).accept().is_err());
        assert!(serde_json::from_str::<NotifyRequest>(r#"{"user_id":"a b","data":{}}"#).is_err());
        assert!(req(r#"{"user_id":"u","data":{"google.x":"1"}}"#)
            .accept()
            .is_err());
        assert!(
            serde_json::from_str::<NotifyRequest>(r#"{"user_id":"u","data":{"k":1}}"#).is_err()
        );
        assert!(serde_json::from_str::<NotifyRequest>(r#"{"user_id":"u","bogus":1}"#).is_err());
        for field in ["idempotency_key", "collapse_key"] {
            for value in [r"a\u0000b", r"a\nb", r"a\u007fb"] {
                let body = format!(r#"{{"user_id":"u","data":{{}},"{field}":"{value}"}}"#);
                assert!(req(&body).accept().is_err(), "{body}");
            }
        }
    }

    #[test]
    fn payload_limit_counts_data_and_notification() {
        let big = "x".repeat(4000);
        let body = format!(
            r#"{{"user_id":"u","data":{{"k":"{big}"}},"notification":{{"body":"{big}"}}}}"#
        );
        assert!(matches!(req(&body).accept(), Err(Invalid::TooLarge(_))));
        let ok = format!(r#"{{"user_id":"u","data":{{"k":"{}"}}}}"#, "x".repeat(3000));
        assert!(req(&ok).accept().is_ok());
    }
}
