//! POST /3/device/{token}: a valid notification is accepted and recorded; every malformed part of
//! a request gets Apple's status and reason.

mod common;

use common::{spawn_mock, BUNDLE_ID, DEVICE};
use serde_json::json;

/// Request headers as (name, value) pairs.
type Headers<'a> = &'a [(&'a str, &'a str)];

const ID: &str = "2b0c6a1e-6f0e-4f4c-9c56-0e1b7a9d3c21";

#[tokio::test]
async fn an_authenticated_alert_is_accepted_echoed_and_recorded() {
    let mock = spawn_mock().await;
    let token = mock.token();
    let answer = mock
        .alert(
            &token,
            &[
                ("apns-id", ID),
                ("apns-priority", "10"),
                ("apns-expiration", "0"),
                ("apns-collapse-id", "order-42"),
            ],
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body, serde_json::Value::Null, "a 200 has no body");
    assert_eq!(answer.headers["apns-id"], ID);
    assert_eq!(answer.headers["apns-unique-id"].len(), 36);

    let messages = mock.messages().await;
    assert_eq!(messages.len(), 1);
    let message = &messages[0];
    assert_eq!(message["apns_id"], ID);
    assert_eq!(message["device_token"], DEVICE);
    assert_eq!(message["topic"], BUNDLE_ID);
    assert_eq!(message["push_type"], "alert");
    assert_eq!(message["priority"], 10);
    assert_eq!(message["expiration"], 0);
    assert_eq!(message["collapse_id"], "order-42");
    assert_eq!(message["payload"], json!({"aps": {"alert": "hi"}}));
    assert_eq!(message["headers"]["apns-topic"], BUNDLE_ID);
    assert!(message["headers"].get("authorization").is_none());
    assert_eq!(message["provider_token"], token.as_str());
    assert!(message["provider_token_iat"].as_i64().unwrap() > 0);
    assert_eq!(message["connection"], 1);
    assert_eq!(mock.stats().await["accepted"], 1);
}

#[tokio::test]
async fn without_apns_id_the_mock_generates_one() {
    let mock = spawn_mock().await;
    let answer = mock.alert(&mock.token(), &[]).await;
    assert_eq!(answer.status, 200);
    let id = answer.headers["apns-id"].to_str().unwrap().to_owned();
    assert_eq!(id.len(), 36);
    assert_eq!(id, id.to_ascii_lowercase());
    assert_eq!(mock.messages().await[0]["apns_id"], id.as_str());
}

#[tokio::test]
async fn each_malformed_header_gets_apples_reason() {
    let mock = spawn_mock().await;
    let token = mock.token();
    let long_collapse = "c".repeat(65);
    let voip_topic = format!("{BUNDLE_ID}.voip");
    let cases = [
        ("apns-id", "not-a-uuid", "BadMessageId"),
        ("apns-push-type", "shout", "InvalidPushType"),
        ("apns-topic", "com.example.other", "TopicDisallowed"),
        ("apns-topic", "com example", "BadTopic"),
        ("apns-topic", &voip_topic, "TopicDisallowed"),
        ("apns-priority", "7", "BadPriority"),
        ("apns-expiration", "tomorrow", "BadExpirationDate"),
        ("apns-collapse-id", &long_collapse, "BadCollapseId"),
    ];
    for (name, value, reason) in cases {
        let answer = mock.alert(&token, &[(name, value)]).await;
        assert_eq!(
            (answer.status, answer.reason()),
            (400, reason),
            "{name}: {value}"
        );
        assert!(answer.headers.contains_key("apns-id"), "{name}");
    }
    assert!(mock.messages().await.is_empty());
}

#[tokio::test]
async fn topic_push_type_and_priority_must_agree() {
    let mock = spawn_mock().await;
    let token = mock.token();
    let push = |headers: Vec<(&'static str, String)>| {
        let (mock, token) = (&mock, &token);
        async move {
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
            mock.push_on(&mock.http, DEVICE, Some(token), &headers, r#"{"aps":{}}"#)
                .await
        }
    };
    let background = |priority: Option<&str>| {
        let mut headers = vec![
            ("apns-topic", BUNDLE_ID.to_owned()),
            ("apns-push-type", "background".to_owned()),
        ];
        if let Some(priority) = priority {
            headers.push(("apns-priority", priority.to_owned()));
        }
        headers
    };
    assert_eq!(push(background(Some("5"))).await.status, 200);
    let refused = push(background(Some("10"))).await;
    assert_eq!((refused.status, refused.reason()), (400, "BadPriority"));
    let refused = push(background(None)).await;
    assert_eq!((refused.status, refused.reason()), (400, "BadPriority"));

    let missing = push(vec![("apns-push-type", "alert".to_owned())]).await;
    assert_eq!((missing.status, missing.reason()), (400, "MissingTopic"));
    let voip = push(vec![
        ("apns-topic", format!("{BUNDLE_ID}.voip")),
        ("apns-push-type", "voip".to_owned()),
    ])
    .await;
    assert_eq!(voip.status, 200);
    let live = push(vec![
        ("apns-topic", format!("{BUNDLE_ID}.push-type.liveactivity")),
        ("apns-push-type", "liveactivity".to_owned()),
    ])
    .await;
    assert_eq!(live.status, 200);
}

#[tokio::test]
async fn device_tokens_must_be_hex_of_apples_length() {
    let mock = spawn_mock().await;
    let token = mock.token();
    let headers = [("apns-topic", BUNDLE_ID)];
    let body = r#"{"aps":{"alert":"x"}}"#;
    for device in ["abc123", &"z".repeat(64), &"a".repeat(63), &"a".repeat(202)] {
        let answer = mock
            .push_on(&mock.http, device, Some(&token), &headers, body)
            .await;
        assert_eq!(
            (answer.status, answer.reason()),
            (400, "BadDeviceToken"),
            "{device}"
        );
    }
    let longer = "AB".repeat(50);
    let answer = mock
        .push_on(&mock.http, &longer, Some(&token), &headers, body)
        .await;
    assert_eq!(
        answer.status, 200,
        "a longer token, in upper case, is valid"
    );
    let missing = mock
        .push_on(&mock.http, "", Some(&token), &headers, body)
        .await;
    assert_eq!(
        (missing.status, missing.reason()),
        (400, "MissingDeviceToken")
    );
}

#[tokio::test]
async fn payloads_must_be_json_dictionaries_within_the_size_limit() {
    let mock = spawn_mock().await;
    let token = mock.token();
    let alert = [("apns-topic", BUNDLE_ID), ("apns-push-type", "alert")];
    let voip_topic = format!("{BUNDLE_ID}.voip");
    let voip = [
        ("apns-topic", voip_topic.as_str()),
        ("apns-push-type", "voip"),
    ];
    let sized = |len: usize| format!(r#"{{"aps":{{}},"pad":"{}"}}"#, "x".repeat(len - 19));
    let cases: Vec<(Headers, String, u16, &str)> = vec![
        (&alert, String::new(), 400, "PayloadEmpty"),
        (&alert, "not json".to_owned(), 400, "PayloadEmpty"),
        (&alert, "[1,2]".to_owned(), 400, "PayloadEmpty"),
        (&alert, sized(4097), 413, "PayloadTooLarge"),
        (&voip, sized(5121), 413, "PayloadTooLarge"),
    ];
    for (headers, body, status, reason) in cases {
        let len = body.len();
        let answer = mock
            .push_on(&mock.http, DEVICE, Some(&token), headers, body)
            .await;
        assert_eq!(
            (answer.status, answer.reason()),
            (status, reason),
            "{len} bytes"
        );
    }
    for (headers, body) in [
        (&alert, sized(4096)),
        (&voip, sized(5120)),
        (&alert, "{}".to_owned()),
    ] {
        let answer = mock
            .push_on(&mock.http, DEVICE, Some(&token), headers, body)
            .await;
        assert_eq!(answer.status, 200, "{}", answer.body);
    }
}

#[tokio::test]
async fn repeated_headers_wrong_methods_and_paths_are_refused() {
    let mock = spawn_mock().await;
    let token = mock.token();
    let duplicated = mock
        .push_on(
            &mock.http,
            DEVICE,
            Some(&token),
            &[("apns-topic", BUNDLE_ID), ("apns-topic", BUNDLE_ID)],
            "{}",
        )
        .await;
    assert_eq!(
        (duplicated.status, duplicated.reason()),
        (400, "DuplicateHeaders")
    );

    let get = mock
        .http
        .get(format!("{}/3/device/{DEVICE}", mock.url()))
        .send()
        .await
        .unwrap();
    let get = common::answer(get).await;
    assert_eq!((get.status, get.reason()), (405, "MethodNotAllowed"));
    let elsewhere = mock
        .http
        .post(format!("{}/2/device/{DEVICE}", mock.url()))
        .send()
        .await
        .unwrap();
    let elsewhere = common::answer(elsewhere).await;
    assert_eq!((elsewhere.status, elsewhere.reason()), (404, "BadPath"));
    assert_eq!(mock.stats().await["rejected"], 3);
}

#[tokio::test]
async fn an_http1_client_cannot_talk_to_the_mock() {
    let mock = spawn_mock().await;
    let http1 = reqwest::Client::builder().http1_only().build().unwrap();
    let result = http1
        .post(format!("{}/3/device/{DEVICE}", mock.url()))
        .body("{}")
        .send()
        .await;
    assert!(result.is_err(), "APNs speaks HTTP/2 only: {result:?}");
}
