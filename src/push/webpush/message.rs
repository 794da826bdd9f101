//! What a Web Push message carries and the RFC 8030 headers that go with it.

use aws_lc_rs::digest::{digest, SHA256};

use super::b64;
use crate::notification::{Notification, NotificationEvent, Priority};

/// RFC 8030 §5.4: a `Topic` is at most 32 characters of the base64url alphabet.
const MAX_TOPIC_LEN: usize = 32;
/// The `TTL` of a notification without `ttl_secs`: four weeks, as FCM keeps one.
const DEFAULT_TTL_SECS: u32 = 28 * 24 * 60 * 60;

/// The plaintext of the push: the same JSON as the `data:` of the notification's SSE event,
/// so a service worker reads what a page on the stream reads; `private`: only `id` and
/// `sent_at` (the worker fetches the rest from Switchboard). Every Web Push payload is built
/// here.
pub fn payload(n: &Notification, private: bool) -> Vec<u8> {
    let event = NotificationEvent {
        id: &n.id,
        data: n.data.as_ref().filter(|_| !private),
        notification: n.notification.as_ref().filter(|_| !private),
        sent_at: n.sent_at,
    };
    serde_json::to_vec(&event).expect("serialising a notification event cannot fail")
}

/// `TTL`: how long the push service keeps the message for an offline browser.
pub fn ttl(n: &Notification) -> u32 {
    n.ttl_secs.unwrap_or(DEFAULT_TTL_SECS)
}

/// `Urgency`: `high` wakes a device at once, `normal` may wait for it.
pub fn urgency(n: &Notification) -> &'static str {
    match n.priority {
        Priority::High => "high",
        Priority::Normal => "normal",
    }
}

/// `Topic` from `collapse_key`: the key itself when it is a valid topic, otherwise the first
/// 32 characters of its SHA-256 in base64url, so that equal keys still replace each other.
pub fn topic(collapse_key: &str) -> String {
    let valid = !collapse_key.is_empty()
        && collapse_key.len() <= MAX_TOPIC_LEN
        && collapse_key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid {
        return collapse_key.to_owned();
    }
    let mut hashed = b64::encode(digest(&SHA256, collapse_key.as_bytes()).as_ref());
    hashed.truncate(MAX_TOPIC_LEN);
    hashed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notification::NotifyRequest;

    #[test]
    fn the_payload_is_the_sse_data_of_the_notification() {
        let req: NotifyRequest = serde_json::from_str(
            r#"{"user_id":"u","data":{"k":"v"},"notification":{"title":"T"},"priority":"normal"}"#,
        )
        .unwrap();
        let n = req.accept().unwrap();
        let frame = String::from_utf8(n.frame().to_vec()).unwrap();
        let data = frame
            .lines()
            .find_map(|l| l.strip_prefix("data: "))
            .unwrap();
        assert_eq!(String::from_utf8(payload(&n, false)).unwrap(), data);
        let private: serde_json::Value = serde_json::from_slice(&payload(&n, true)).unwrap();
        assert_eq!(
            private,
            serde_json::json!({"id": n.id, "sent_at": n.sent_at}),
            "a private push carries no content"
        );
        assert_eq!(urgency(&n), "normal");
        assert_eq!(ttl(&n), DEFAULT_TTL_SECS);
    }

    #[test]
    fn a_collapse_key_that_is_not_a_topic_is_hashed_into_one() {
        assert_eq!(topic("order-42_status"), "order-42_status");
        let long = "x".repeat(33);
        for key in [long.as_str(), "order 42", "ordre-été"] {
            let t = topic(key);
            assert_eq!(t.len(), 32, "{key}");
            assert!(t
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
            assert_eq!(t, topic(key), "stable");
        }
        assert_ne!(topic("order 42"), topic("order 43"));
    }
}
