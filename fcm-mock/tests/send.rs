//! POST /v1/projects/{project}/messages:send: auth, success shape, validation like FCM.

mod common;

use common::{fcm_error_code, spawn_mock, PROJECT};
use serde_json::{json, Value};

const UNAUTHENTICATED: &str = "Request had invalid authentication credentials. Expected OAuth 2 \
access token, login cookie or other valid authentication credential.";

fn assert_unauthenticated(status: u16, body: &Value) {
    assert_eq!(status, 401, "{body}");
    assert_eq!(
        body,
        &json!({"error": {"code": 401, "message": UNAUTHENTICATED, "status": "UNAUTHENTICATED"}})
    );
}

#[tokio::test]
async fn send_without_or_with_unknown_token_is_401_without_details() {
    let mock = spawn_mock().await;
    let body = json!({"message": {"token": "device-1"}});

    let response = mock.send_raw(None, &body).await;
    let status = response.status().as_u16();
    assert_unauthenticated(status, &response.json().await.unwrap());

    let (status, answer) = mock.send("ya29.not-issued-here", &body).await;
    assert_unauthenticated(status, &answer);
}

#[tokio::test]
async fn accepted_send_answers_name_and_is_recorded() {
    let mock = spawn_mock().await;
    let token = mock.access_token().await;
    let message = json!({"token": "device-1", "data": {"k": "v"},
                         "notification": {"title": "Hi", "body": "there"}});

    let (status, body) = mock.send(&token, &json!({"message": message})).await;

    assert_eq!(status, 200, "{body}");
    let name = body["name"].as_str().unwrap();
    assert!(
        name.starts_with(&format!("projects/{PROJECT}/messages/")),
        "{name}"
    );
    let recorded = mock.recorded().await;
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0]["name"], name);
    assert_eq!(recorded[0]["message"], message);
    assert!(recorded[0]["received_at"].as_u64().unwrap() > 1_600_000_000_000);

    let cleared = mock
        .control(reqwest::Method::DELETE, "/_mock/messages", None)
        .await;
    assert_eq!(cleared.status().as_u16(), 204);
    assert!(mock.recorded().await.is_empty());
}

#[tokio::test]
async fn validate_only_answers_but_records_nothing() {
    let mock = spawn_mock().await;
    let token = mock.access_token().await;

    for flag in ["validate_only", "validateOnly"] {
        let (status, body) = mock
            .send(&token, &json!({"message": {"topic": "news"}, flag: true}))
            .await;
        assert_eq!(status, 200, "{body}");
    }
    assert!(mock.recorded().await.is_empty());
}

#[tokio::test]
async fn non_string_data_value_is_400() {
    let mock = spawn_mock().await;
    let token = mock.access_token().await;

    let (status, body) = mock
        .send(
            &token,
            &json!({"message": {"token": "d", "data": {"n": 1}}}),
        )
        .await;

    assert_eq!(status, 400);
    assert_eq!(body["error"]["status"], "INVALID_ARGUMENT");
    assert_eq!(
        body["error"]["message"],
        "Invalid value at 'message.data[0].value' (TYPE_STRING), 1"
    );
    assert!(mock.recorded().await.is_empty());
}

#[tokio::test]
async fn two_targets_or_none_is_400() {
    let mock = spawn_mock().await;
    let token = mock.access_token().await;

    let (status, body) = mock
        .send(&token, &json!({"message": {"token": "d", "topic": "t"}}))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["status"], "INVALID_ARGUMENT");

    let (status, body) = mock
        .send(&token, &json!({"message": {"data": {"a": "b"}}}))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["error"]["message"],
        "Recipient of the message is not set."
    );
    assert_eq!(fcm_error_code(&body), Some("INVALID_ARGUMENT"));
}

#[tokio::test]
async fn camel_case_and_snake_case_are_both_accepted() {
    let mock = spawn_mock().await;
    let token = mock.access_token().await;
    let snake = json!({"token": "d", "fcm_options": {"analytics_label": "l"},
        "android": {"collapse_key": "c", "priority": "high", "ttl": "3.5s",
            "restricted_package_name": "com.example", "direct_boot_ok": true,
            "data": {"x": "y"}, "fcm_options": {"analytics_label": "a"},
            "notification": {"click_action": "OPEN", "channel_id": "ch", "body_loc_args": ["1"],
                "notification_priority": "PRIORITY_HIGH", "vibrate_timings": ["0.5s"],
                "notification_count": 3, "event_time": "2024-01-02T03:04:05.000000Z",
                "light_settings": {"color": {"red": 1.0, "green": 0.5, "blue": 0, "alpha": 1},
                    "light_on_duration": "0.2s", "light_off_duration": "0.3s"}}},
        "apns": {"headers": {"apns-priority": "10"}, "payload": {"aps": {"badge": 1}}},
        "webpush": {"headers": {"TTL": "60"}, "notification": {"title": "t"},
            "fcm_options": {"link": "https://example.com"}}});
    let camel = json!({"token": "d", "fcmOptions": {"analyticsLabel": "l"},
        "android": {"collapseKey": "c", "priority": "NORMAL", "ttl": "3600s",
            "restrictedPackageName": "com.example", "directBootOk": false,
            "notification": {"clickAction": "OPEN", "channelId": "ch", "titleLocKey": "k",
                "titleLocArgs": ["a"], "defaultSound": true, "visibility": "public"}}});

    for message in [snake, camel] {
        let (status, body) = mock.send(&token, &json!({"message": message})).await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(mock.recorded().await.len(), 2);
}

#[tokio::test]
async fn unknown_field_is_400_like_google() {
    let mock = spawn_mock().await;
    let token = mock.access_token().await;

    let (status, body) = mock
        .send(&token, &json!({"message": {"token": "d", "x": 1}}))
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"]["message"],
        "Invalid JSON payload received. Unknown name \"x\" at 'message': Cannot find field."
    );

    let (status, body) = mock
        .send(
            &token,
            &json!({"message": {"token": "d", "android": {"collapse": "c"}}}),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"]["message"],
        "Invalid JSON payload received. Unknown name \"collapse\" at 'message.android': Cannot find field."
    );
}

#[tokio::test]
async fn bad_enum_ttl_and_types_are_400() {
    let mock = spawn_mock().await;
    let token = mock.access_token().await;
    let bad = [
        json!({"token": "d", "android": {"priority": "urgent"}}),
        json!({"token": "d", "android": {"ttl": "3600"}}),
        json!({"token": "d", "android": {"direct_boot_ok": "yes"}}),
        json!({"token": "d", "notification": {"title": 5}}),
        json!({"token": ""}),
        json!({"topic": "bad topic!"}),
        json!({"token": "d", "data": {"from": "x"}}),
    ];
    for message in bad {
        let (status, body) = mock.send(&token, &json!({"message": message})).await;
        assert_eq!(status, 400, "{message} -> {body}");
        assert_eq!(body["error"]["status"], "INVALID_ARGUMENT");
    }
}

#[tokio::test]
async fn payload_over_4096_bytes_is_400_and_at_4096_is_accepted() {
    let mock = spawn_mock().await;
    let token = mock.access_token().await;
    // {"k":"<n x's>"} is n + 8 bytes.
    let at_limit = json!({"token": "d", "data": {"k": "x".repeat(4096 - 8)}});
    let over =
        json!({"token": "d", "data": {"k": "x".repeat(4096 - 8)}, "notification": {"title": ""}});
    assert_eq!(fcm_mock::payload_size(&at_limit), 4096);

    let (status, body) = mock.send(&token, &json!({"message": at_limit})).await;
    assert_eq!(status, 200, "{body}");

    let (status, body) = mock.send(&token, &json!({"message": over})).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["message"], "Message is too big");
    assert_eq!(fcm_error_code(&body), Some("INVALID_ARGUMENT"));
}

#[tokio::test]
async fn send_to_another_project_is_403() {
    let mock = spawn_mock().await;
    let token = mock.access_token().await;

    let response = mock
        .http
        .post(format!(
            "{}/v1/projects/other-project/messages:send",
            mock.url()
        ))
        .bearer_auth(&token)
        .json(&json!({"message": {"token": "d"}}))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status().as_u16(), 403);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["status"], "PERMISSION_DENIED");
}

#[tokio::test]
async fn malformed_json_is_400() {
    let mock = spawn_mock().await;
    let token = mock.access_token().await;

    let response = mock
        .http
        .post(mock.send_url())
        .bearer_auth(&token)
        .body("{not json")
        .send()
        .await
        .unwrap();

    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["status"], "INVALID_ARGUMENT");
}
