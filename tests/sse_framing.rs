//! Property tests of the SSE framing: whatever a producer puts in a notification or a broadcast
//! (any Unicode, CR, LF, CRLF, U+2028, NUL, `data:` or `id:` text), and whatever id or topic a
//! notification carries, its frame parses, under the WHATWG event-stream rules
//! (`common/sse_spec.rs`, independent of the node's code), to exactly one event of its type
//! whose data decodes back to the input; a stream of frames is as many events, in order.

#[path = "common/sse_spec.rs"]
mod sse_spec;

use std::collections::BTreeMap;

use bytes::Bytes;
use proptest::prelude::*;
use serde_json::{json, Map, Value};
use switchboard::notification::{
    Broadcast, BroadcastRequest, Notification, NotifyRequest, FCM_PAYLOAD_LIMIT,
};

/// Text that tries to break out of a line: line ends, separators, NUL, field names.
fn text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        3 => any::<char>().prop_map(String::from),
        1 => prop::sample::select(vec![
            "\r", "\n", "\r\n", "\n\n", "\u{2028}", "\u{2029}", "\u{85}", "\0", ":", " ",
            "data: x", "id: 1", "event: evil", "retry: 1", "\u{feff}", "\\", "\"",
        ])
        .prop_map(String::from),
    ];
    prop::collection::vec(piece, 0..12).prop_map(|p| p.concat())
}

fn user_id() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._:@-]{1,128}"
}

fn topic() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._:-]{1,128}"
}

/// A notify body: arbitrary data, content and collapse key (the node refuses what FCM would).
fn notify_body() -> impl Strategy<Value = Value> {
    (
        user_id(),
        prop::option::of(prop::collection::btree_map(text(), text(), 0..6)),
        prop::option::of((
            prop::option::of(text()),
            prop::option::of(text()),
            prop::option::of(text()),
        )),
        prop::option::of(text()),
    )
        .prop_filter("at least data or notification", |(_, d, c, _)| {
            d.is_some() || c.is_some()
        })
        .prop_map(|(user, data, content, collapse)| {
            let mut body = json!({ "user_id": user });
            if let Some(data) = data {
                body["data"] = json!(data);
            }
            if let Some((title, text, image)) = content {
                let mut c = Map::new();
                for (k, v) in [("title", title), ("body", text), ("image", image)] {
                    if let Some(v) = v {
                        c.insert(k.into(), v.into());
                    }
                }
                body["notification"] = Value::Object(c);
            }
            if let Some(k) = collapse {
                body["collapse_key"] = k.into();
            }
            body
        })
}

/// Any JSON value a producer may put in a broadcast, floats included.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON numbers are finite", |f| f.is_finite())
            .prop_map(Value::from),
        text().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(text(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn broadcast_data() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map(text(), json_value(), 0..6).prop_map(|m| m.into_iter().collect())
}

/// The one event of `frame`, checked to be alone and of `event_type`, with exactly the field
/// lines `id` (when `id` is given), `event` and `data`; its data as JSON.
fn one_event(frame: &Bytes, event_type: &str, id: Option<&str>) -> Value {
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
    assert_eq!(event.event_type, event_type, "{text:?}");
    let names: Vec<&str> = parsed.fields.iter().map(|(n, _)| n.as_str()).collect();
    match id {
        Some(id) => {
            assert_eq!(names, ["id", "event", "data"], "{text:?}");
            assert_eq!(event.last_event_id, id, "{text:?}");
        }
        None => {
            assert_eq!(names, ["event", "data"], "{text:?}");
            assert_eq!(event.last_event_id, "", "{text:?}");
        }
    }
    serde_json::from_str(&event.data).expect("the data is JSON")
}

fn accepted(body: &Value) -> Option<Notification> {
    let req: NotifyRequest = serde_json::from_value(body.clone()).ok()?;
    req.accept().ok()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn a_notification_frame_is_one_event_whose_data_is_the_input(body in notify_body()) {
        let Some(n) = accepted(&body) else {
            // Refused (a reserved key, a collapse key with control characters, over FCM's
            // limit): nothing is framed.
            return Ok(());
        };
        prop_assert!(n.fcm_payload_size() <= FCM_PAYLOAD_LIMIT);
        let data = one_event(&n.frame(), "notification", Some(&n.id));
        let mut expected = json!({"id": n.id, "sent_at": n.sent_at});
        for key in ["data", "notification"] {
            if let Some(v) = body.get(key) {
                expected[key] = v.clone();
            }
        }
        prop_assert_eq!(data, expected);
    }

    /// A notification as the broker carries it (any id, user, data, time): its frame is still
    /// one event; an id that cannot be one (CR, LF, NUL) gets no `id:` line.
    #[test]
    fn a_relayed_notification_with_any_id_is_one_event(
        id in text(),
        user in text(),
        data in prop::collection::btree_map(text(), text(), 0..6),
        collapse in prop::option::of(text()),
        sent_at in any::<u64>(),
    ) {
        let wire = json!({
            "id": id, "user_id": user, "data": data, "collapse_key": collapse,
            "sent_at": sent_at, "accepted_us": 0,
        });
        let n = Notification::from_json(Bytes::from(wire.to_string())).unwrap();
        let framed_id = (!id.is_empty() && !id.contains(['\r', '\n', '\0'])).then_some(&*id);
        let got = one_event(&n.frame(), "notification", framed_id);
        prop_assert_eq!(got, json!({"id": id, "data": data, "sent_at": sent_at}));
    }

    #[test]
    fn a_broadcast_frame_is_one_event_without_an_id_line(topic in topic(), data in broadcast_data()) {
        let req: BroadcastRequest =
            serde_json::from_value(json!({"topic": topic, "data": data})).unwrap();
        let b = req.accept();
        let got = one_event(&b.frame(), "broadcast", None);
        prop_assert_eq!(got, json!({"id": b.id, "topic": topic, "data": data, "sent_at": b.sent_at}));
    }

    /// As the broker carries it: any topic and id text.
    #[test]
    fn a_relayed_broadcast_with_any_topic_is_one_event(
        id in text(),
        topic in text(),
        data in broadcast_data(),
        sent_at in any::<u64>(),
    ) {
        let wire = json!({"id": id, "topic": topic, "data": data, "sent_at": sent_at});
        let b: Broadcast = serde_json::from_value(wire.clone()).unwrap();
        prop_assert_eq!(one_event(&b.frame(), "broadcast", None), wire);
    }

    /// A stream is frames one after another: as many events as frames, in order.
    #[test]
    fn frames_in_a_row_are_as_many_events_in_order(
        items in prop::collection::vec(
            prop_oneof![
                notify_body().prop_map(Ok),
                (topic(), broadcast_data()).prop_map(Err),
            ],
            1..8,
        )
    ) {
        let mut stream = String::from("retry: 3000\n\n");
        let mut expected = Vec::new();
        for item in items {
            let frame = match item {
                Ok(body) => match accepted(&body) {
                    Some(n) => {
                        expected.push(("notification", n.id.clone()));
                        n.frame()
                    }
                    None => continue,
                },
                Err((topic, data)) => {
                    let req: BroadcastRequest =
                        serde_json::from_value(json!({"topic": topic, "data": data})).unwrap();
                    let b = req.accept();
                    expected.push(("broadcast", b.id.clone()));
                    b.frame()
                }
            };
            stream.push_str(std::str::from_utf8(&frame).unwrap());
            stream.push_str(": ping\n\n");
        }
        let parsed = sse_spec::parse(&stream);
        prop_assert!(!parsed.unterminated);
        let got: Vec<(&str, String)> = parsed
            .events
            .iter()
            .map(|e| {
                let id = serde_json::from_str::<Value>(&e.data).unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_string();
                (e.event_type.as_str(), id)
            })
            .collect();
        prop_assert_eq!(got, expected);
    }
}

/// Numbers in a broadcast's data reach the frame with their value: `serde_json` parses with
/// correct rounding (`float_roundtrip`), so a number the producer sent is the number clients get.
#[test]
fn floats_in_broadcast_data_keep_their_value() {
    for number in [
        "1.2345678901234567e-300",
        "2.2250738585072014e-308",
        "0.30000000000000004",
        "9007199254740993.0",
        "1.7976931348623157e308",
        "5e-324",
        "0.1000000000000000055511151231257827021181583404541015625",
        "123456789012345678901234567890",
    ] {
        let body = format!(r#"{{"topic":"t","data":{{"x":{number}}}}}"#);
        let req: BroadcastRequest = serde_json::from_str(&body).unwrap();
        let exact: f64 = number.parse().unwrap();
        assert_eq!(req.data["x"].as_f64(), Some(exact), "{number} parsed");
        let b = req.accept();
        let got = one_event(&b.frame(), "broadcast", None);
        assert_eq!(
            got["data"]["x"].as_f64(),
            Some(exact),
            "{number} in the frame"
        );
    }
}

/// The strings the issue names, once each, outside proptest's sampling.
#[test]
fn cr_lf_crlf_line_separators_and_nul_in_every_field_stay_inside_one_event() {
    let nasty = "a\rb\nc\r\nd\u{2028}e\u{2029}f\u{85}g\0h\n\ndata: x\nid: 1\nevent: evil\n\n";
    let mut data = BTreeMap::new();
    data.insert(nasty.to_string(), nasty.to_string());
    let body = json!({
        "user_id": "u1",
        "data": data,
        "notification": {"title": nasty, "body": nasty, "image": nasty},
    });
    let n = accepted(&body).expect("accepted");
    let got = one_event(&n.frame(), "notification", Some(&n.id));
    assert_eq!(got["data"], body["data"]);
    assert_eq!(got["notification"], body["notification"]);
}
