//! The FCM HTTP v1 request body for one notification to one device token.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::notification::{Content, Notification, Priority, ID_DATA_KEY};

#[derive(Serialize)]
struct SendRequest<'a> {
    message: Message<'a>,
}

#[derive(Serialize)]
struct Message<'a> {
    token: &'a str,
    data: BTreeMap<&'a str, &'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    notification: Option<&'a Content>,
    android: Android<'a>,
}

#[derive(Serialize)]
struct Android<'a> {
    priority: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    ttl: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    collapse_key: Option<&'a str>,
}

/// `{"message":{"token", "data" (with the notification id), "notification", "android"}}`;
/// a private notification's carries only the id.
pub fn send_body(n: &Notification, token: &str) -> Vec<u8> {
    send_body_for(n, token, n.private)
}

/// `private`: the notification's own flag or its app's `private`.
pub(super) fn send_body_for(n: &Notification, token: &str, private: bool) -> Vec<u8> {
    let (data, notification) = if private {
        (BTreeMap::from([(ID_DATA_KEY, n.id.as_str())]), None)
    } else {
        (n.fcm_data(), n.notification.as_ref())
    };
    let request = SendRequest {
        message: Message {
            token,
            data,
            notification,
            android: Android {
                priority: match n.priority {
                    Priority::High => "high",
                    Priority::Normal => "normal",
                },
                ttl: n.ttl_secs.map(|t| format!("{t}s")),
                collapse_key: n.collapse_key.as_deref(),
            },
        },
    };
    serde_json::to_vec(&request).expect("serialising plain structs cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notification::NotifyRequest;

    #[test]
    fn shape_matches_fcm_v1() {
        let req: NotifyRequest = serde_json::from_str(
            r#"{"user_id":"u","data":{"k":"v"},"notification":{"title":"T","body":"B"},
                "ttl_secs":60,"priority":"normal","collapse_key":"c"}"#,
        )
        .unwrap();
        let n = req.accept().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&send_body(&n, "tok")).unwrap();
        let m = &v["message"];
        assert_eq!(m["token"], "tok");
        assert_eq!(m["data"]["k"], "v");
        assert_eq!(m["data"]["switchboard_id"], n.id.as_str());
        assert_eq!(m["notification"]["title"], "T");
        assert_eq!(m["android"]["priority"], "normal");
        assert_eq!(m["android"]["ttl"], "60s");
        assert_eq!(m["android"]["collapse_key"], "c");
    }

    #[test]
    fn a_private_message_carries_only_the_id() {
        let req: NotifyRequest = serde_json::from_str(
            r#"{"user_id":"u","data":{"k":"v"},"notification":{"title":"T"},"private":true}"#,
        )
        .unwrap();
        let n = req.accept().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&send_body(&n, "tok")).unwrap();
        let m = &v["message"];
        assert_eq!(m["data"], serde_json::json!({"switchboard_id": n.id}));
        assert!(m.get("notification").is_none(), "{m}");
    }
}
