//! A producer's JSON body, as `POST /v1/notify` (first byte even) or `POST /v1/broadcast`
//! (odd) parses it, accepted, then framed for SSE, sent through the broker (its JSON and back),
//! and (a notification) made into an FCM HTTP v1 message.
//!
//! Checked with an independent event-stream parser (tests/common/sse_spec.rs): a frame is
//! exactly one event of its type, with no other field lines and nothing after it, its id that of
//! the notification (a broadcast has no `id:` line), and its data the JSON of what was accepted,
//! equal to the input's values; the broker's copy frames the same bytes; the FCM body is JSON
//! with the producer's data, the notification id and the accepted options.
#![no_main]

#[path = "../../tests/common/sse_spec.rs"]
mod sse_spec;

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};
use switchboard::json::Object;
use switchboard::notification::{
    Broadcast, BroadcastRequest, Notification, NotifyRequest, Priority, FCM_PAYLOAD_LIMIT,
    ID_DATA_KEY,
};
use switchboard::push::fcm::send_body;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    if kind % 2 == 0 {
        notify(body);
    } else {
        broadcast(body);
    }
});

fn notify(body: &[u8]) {
    let Ok(Object(req)) = serde_json::from_slice::<Object<NotifyRequest>>(body) else {
        return;
    };
    let given = req.clone();
    let Ok(n) = req.accept() else {
        return;
    };
    assert!(n.fcm_payload_size() <= FCM_PAYLOAD_LIMIT);
    let frame = n.frame();
    let data = one_event(&frame, "notification", Some(&n.id));
    let mut expected = json!({"id": n.id, "sent_at": n.sent_at});
    if let Some(d) = &given.data {
        expected["data"] = json!(d);
    }
    if let Some(c) = &given.notification {
        expected["notification"] = json!(c);
    }
    assert_eq!(data, expected);

    let relayed = Notification::from_json(n.json()).expect("the broker's JSON parses");
    assert_eq!(
        relayed.frame(),
        frame,
        "the broker's copy frames the same bytes"
    );

    let token = "fcm-token:fuzz_1";
    let fcm: Value = serde_json::from_slice(&send_body(&n, token)).expect("FCM body is JSON");
    let message = &fcm["message"];
    assert_eq!(message["token"], token);
    let mut fcm_data: BTreeMap<String, String> = given.data.clone().unwrap_or_default();
    fcm_data.insert(ID_DATA_KEY.to_string(), n.id.clone());
    assert_eq!(message["data"], json!(fcm_data));
    assert_eq!(
        message.get("notification"),
        given.notification.as_ref().map(|c| json!(c)).as_ref()
    );
    let android = &message["android"];
    let priority = match given.priority.unwrap_or_default() {
        Priority::High => "high",
        Priority::Normal => "normal",
    };
    assert_eq!(android["priority"], priority);
    assert_eq!(
        android.get("ttl"),
        given.ttl_secs.map(|t| json!(format!("{t}s"))).as_ref()
    );
    assert_eq!(
        android.get("collapse_key"),
        given.collapse_key.as_ref().map(|k| json!(k)).as_ref()
    );
}

fn broadcast(body: &[u8]) {
    let Ok(Object(req)) = serde_json::from_slice::<Object<BroadcastRequest>>(body) else {
        return;
    };
    let given = req.clone();
    let b = req.accept();
    let frame = b.frame();
    let data = one_event(&frame, "broadcast", None);
    let expected = json!({
        "id": b.id, "topic": given.topic.as_str(), "data": given.data, "sent_at": b.sent_at,
    });
    assert_eq!(
        data, expected,
        "the frame carries the producer's data unchanged"
    );

    let wire = serde_json::to_vec(&b).expect("a broadcast serialises");
    let relayed: Broadcast = serde_json::from_slice(&wire).expect("the broker's JSON parses");
    assert_eq!(
        relayed.frame(),
        frame,
        "the broker's copy frames the same bytes"
    );
}

/// The frame's one event: its type, its id (`None`: no `id:` line), and its data as JSON.
fn one_event(frame: &[u8], event_type: &str, id: Option<&str>) -> Value {
    let text = std::str::from_utf8(frame).expect("a frame is UTF-8");
    let parsed = sse_spec::parse(text);
    assert!(!parsed.unterminated, "{text:?}");
    assert_eq!(parsed.events.len(), 1, "{text:?}");
    assert_eq!(parsed.empty_dispatches, 0, "{text:?}");
    assert!(
        parsed.comments.is_empty() && parsed.retry.is_none(),
        "{text:?}"
    );
    let event = &parsed.events[0];
    assert_eq!(event.event_type, event_type);
    let mut names: Vec<&str> = parsed.fields.iter().map(|(n, _)| n.as_str()).collect();
    match id {
        Some(id) => {
            assert_eq!(event.last_event_id, id);
            assert_eq!(names.remove(0), "id", "{text:?}");
        }
        None => assert_eq!(event.last_event_id, ""),
    }
    assert_eq!(names, ["event", "data"], "{text:?}");
    serde_json::from_str(&event.data).expect("the data is JSON")
}
