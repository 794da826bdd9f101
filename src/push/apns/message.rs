//! One APNs request for one notification: its `apns-*` headers and its JSON payload.
//!
//! A notification with `notification` content is an `alert` push (priority 10, or 5 when the
//! producer asked for `normal`); a data-only one is a `background` push (`content-available`),
//! which APNs accepts only at priority 5. The producer's `data` keys sit beside `aps` with the
//! notification id under `switchboard_id` (as FCM carries them to an iOS app); a private push
//! carries nothing but that id, as a background push, and the app fetches the content.

use serde_json::{json, Map, Value};

use crate::notification::{Notification, Priority, ID_DATA_KEY};

/// APNs refuses a longer `apns-collapse-id`.
const MAX_COLLAPSE_ID_BYTES: usize = 64;

/// The headers of one push (`apns-topic` comes from the configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Headers<'a> {
    /// `alert` or `background`.
    pub push_type: &'static str,
    /// 10 (now) or 5 (when the device's power allows).
    pub priority: &'static str,
    /// Unix seconds after which APNs stops trying, from `ttl_secs`.
    pub expiration: Option<String>,
    pub collapse_id: Option<&'a str>,
    /// The notification id (a lowercase UUID, as APNs wants it).
    pub id: &'a str,
}

pub fn headers(n: &Notification, private: bool) -> Headers<'_> {
    let alert = !private && n.notification.is_some();
    let (push_type, priority) = match (alert, n.priority) {
        (true, Priority::High) => ("alert", "10"),
        (true, Priority::Normal) => ("alert", "5"),
        (false, _) => ("background", "5"),
    };
    Headers {
        push_type,
        priority,
        expiration: n
            .ttl_secs
            .map(|ttl| (n.sent_at / 1000 + u64::from(ttl)).to_string()),
        // A longer key cannot be sent as it is; collapsing is an optimisation, not a must.
        collapse_id: n
            .collapse_key
            .as_deref()
            .filter(|k| k.len() <= MAX_COLLAPSE_ID_BYTES),
        id: &n.id,
    }
}

pub fn payload(n: &Notification, private: bool) -> Vec<u8> {
    let mut body = Map::new();
    let aps = match (&n.notification, private) {
        (Some(content), false) => {
            let mut alert = Map::new();
            if let Some(title) = &content.title {
                alert.insert("title".into(), json!(title));
            }
            if let Some(text) = &content.body {
                alert.insert("body".into(), json!(text));
            }
            json!({"alert": alert, "sound": "default"})
        }
        _ => json!({"content-available": 1}),
    };
    if !private {
        for (k, v) in n.data.iter().flatten() {
            if k != "aps" {
                body.insert(k.clone(), json!(v));
            }
        }
    }
    body.insert("aps".into(), aps);
    body.insert(ID_DATA_KEY.into(), json!(n.id));
    serde_json::to_vec(&Value::Object(body)).expect("serialising JSON values cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notification::NotifyRequest;

    fn accept(json: &str) -> Notification {
        serde_json::from_str::<NotifyRequest>(json)
            .unwrap()
            .accept()
            .unwrap()
    }

    #[test]
    fn an_alert_carries_its_content_data_and_id_with_its_headers() {
        let n = accept(
            r#"{"user_id":"u","data":{"k":"v"},"notification":{"title":"T","body":"B"},
                "ttl_secs":60,"collapse_key":"c"}"#,
        );
        let h = headers(&n, false);
        assert_eq!((h.push_type, h.priority), ("alert", "10"));
        assert_eq!(h.expiration, Some((n.sent_at / 1000 + 60).to_string()));
        assert_eq!((h.collapse_id, h.id), (Some("c"), n.id.as_str()));
        let v: Value = serde_json::from_slice(&payload(&n, false)).unwrap();
        assert_eq!(
            v,
            json!({"aps": {"alert": {"title": "T", "body": "B"}, "sound": "default"},
                "k": "v", "switchboard_id": n.id})
        );
    }

    #[test]
    fn data_only_is_a_background_push_at_priority_5() {
        let n = accept(r#"{"user_id":"u","data":{"k":"v"},"collapse_key":"x"}"#);
        let h = headers(&n, false);
        assert_eq!(
            (h.push_type, h.priority, h.expiration),
            ("background", "5", None)
        );
        let v: Value = serde_json::from_slice(&payload(&n, false)).unwrap();
        assert_eq!(v["aps"], json!({"content-available": 1}));
    }

    #[test]
    fn a_private_push_carries_only_the_id() {
        let n = accept(r#"{"user_id":"u","data":{"k":"v"},"notification":{"title":"T"}}"#);
        assert_eq!(headers(&n, true).push_type, "background");
        let v: Value = serde_json::from_slice(&payload(&n, true)).unwrap();
        assert_eq!(
            v,
            json!({"aps": {"content-available": 1}, "switchboard_id": n.id})
        );
    }
}
