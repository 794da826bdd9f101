//! Web Push end to end: the real binary with `[webpush]` pointing at a VAPID key that
//! webpush-mock (over real HTTP) requires, browsers' subscriptions registered as devices.

mod common;

use std::time::{Duration, Instant};

use common::webpush::WebPushMock;
use common::{Options, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn app_with_webpush(mock: &WebPushMock) -> TestApp {
    TestApp::spawn_with(
        Options::default()
            .env(
                "SWITCHBOARD__WEBPUSH__VAPID_PRIVATE_KEY",
                &mock.key_path.display().to_string(),
            )
            .env("SWITCHBOARD__WEBPUSH__SUBJECT", "mailto:ops@example.com"),
    )
    .await
}

async fn vapid_public_key(app: &TestApp) -> (StatusCode, Value) {
    let resp = app
        .http
        .get(app.url("/v1/webpush/vapid_public_key"))
        .send()
        .await
        .unwrap();
    (resp.status(), resp.json().await.unwrap())
}

#[tokio::test]
async fn browsers_get_the_vapid_public_key_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let mock = WebPushMock::start(dir.path()).await;
    let app = app_with_webpush(&mock).await;

    let (status, body) = vapid_public_key(&app).await;

    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["public_key"], mock.public_key.as_str());
    let other_app = app
        .http
        .get(app.url("/v1/webpush/vapid_public_key?app=shop"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        other_app.status(),
        StatusCode::NOT_FOUND,
        "shop has no Web Push"
    );
    let not_an_app = app
        .http
        .get(app.url("/v1/webpush/vapid_public_key?app=a%20b"))
        .send()
        .await
        .unwrap();
    assert_eq!(not_an_app.status(), StatusCode::BAD_REQUEST);
    let body: Value = not_an_app.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_request", "{body}");
}

#[tokio::test]
async fn without_web_push_the_vapid_public_key_is_404_not_configured() {
    let app = TestApp::spawn().await;

    let (status, body) = vapid_public_key(&app).await;

    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_configured", "{body}");
}

#[tokio::test]
async fn a_node_with_an_unreadable_vapid_key_refuses_to_start_naming_the_key() {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("serve")
        .env("SWITCHBOARD__SERVER__LISTEN", "127.0.0.1:0")
        .env(
            "SWITCHBOARD__WEBPUSH__VAPID_PRIVATE_KEY",
            "/nonexistent/vapid.pem",
        )
        .env("SWITCHBOARD__WEBPUSH__SUBJECT", "mailto:ops@example.com")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("webpush.vapid_private_key") && stderr.contains("openssl ecparam"),
        "{stderr}"
    );
}

/// `PUT /v1/devices/{device}` of `user` with a browser's subscription.
async fn register_subscription(app: &TestApp, user: &str, device: &str, subscription: &Value) {
    let resp = app
        .http
        .put(app.url(&format!("/v1/devices/{device}")))
        .bearer_auth(app.token(user))
        .json(&json!({"provider": "webpush", "subscription": subscription}))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let body = resp.text().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn delete_device(app: &TestApp, user: &str, device: &str) -> StatusCode {
    app.http
        .delete(app.url(&format!("/v1/devices/{device}")))
        .bearer_auth(app.token(user))
        .send()
        .await
        .unwrap()
        .status()
}

fn plaintext(message: &Value) -> Value {
    serde_json::from_str(message["plaintext"].as_str().expect("a UTF-8 payload")).unwrap()
}

#[tokio::test]
async fn an_offline_browser_gets_the_notification_as_its_push_service_decrypts_it() {
    let dir = tempfile::tempdir().unwrap();
    let mock = WebPushMock::start(dir.path()).await;
    let app = app_with_webpush(&mock).await;
    let subscription = mock.subscribe().await;
    register_subscription(&app, "alice", "laptop-browser", &subscription).await;

    let (status, answer) = app
        .notify(json!({
            "user_id": "alice",
            "data": {"order": "42"},
            "notification": {"title": "Order filled"},
            "ttl_secs": 600,
            "priority": "normal",
            "collapse_key": "order-42",
        }))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(
        answer["route"], "fcm",
        "an offline user's notification is pushed"
    );
    let id = answer["id"].as_str().unwrap();

    let messages = mock.wait_messages(1, Duration::from_secs(10)).await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    let message = &messages[0];
    assert_eq!(message["endpoint"], subscription["endpoint"]);
    let payload = plaintext(message);
    assert_eq!(payload["id"], id);
    assert_eq!(payload["data"], json!({"order": "42"}));
    assert_eq!(payload["notification"], json!({"title": "Order filled"}));
    assert!(payload["sent_at"].as_u64().is_some(), "{payload}");
    assert_eq!(message["ttl"], 600);
    assert_eq!(message["urgency"], "normal");
    assert_eq!(message["topic"], "order-42");
    assert_eq!(message["vapid"]["k"], mock.public_key.as_str());
    assert_eq!(message["vapid"]["sub"], "mailto:ops@example.com");

    let record = app
        .wait_status(id, "fcm_accepted", Duration::from_secs(10))
        .await;
    assert_eq!(record["status"], "fcm_accepted", "{record}");
    assert_eq!(record["deliveries"][0]["device_id"], "laptop-browser");
}

#[tokio::test]
async fn a_private_notification_reaches_the_browser_as_its_id_only() {
    let dir = tempfile::tempdir().unwrap();
    let mock = WebPushMock::start(dir.path()).await;
    let app = app_with_webpush(&mock).await;
    register_subscription(&app, "bob", "tab", &mock.subscribe().await).await;

    let (_, answer) = app
        .notify(json!({"user_id": "bob", "data": {"secret": "s3cret"}, "private": true}))
        .await;

    let messages = mock.wait_messages(1, Duration::from_secs(10)).await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    let payload = plaintext(&messages[0]);
    assert_eq!(payload["id"], answer["id"]);
    assert!(payload.get("data").is_none(), "{payload}");
    assert!(!messages[0]["plaintext"]
        .as_str()
        .unwrap()
        .contains("s3cret"));
}

#[tokio::test]
async fn subscriptions_their_push_service_says_are_gone_410_or_404_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let mock = WebPushMock::start(dir.path()).await;
    let app = app_with_webpush(&mock).await;
    for (device, status) in [("tab-410", 410), ("tab-404", 404)] {
        let subscription = mock.subscribe().await;
        register_subscription(&app, "carol", device, &subscription).await;
        mock.control(
            "gone",
            json!({"ids": [subscription["endpoint"]], "status": status}),
        )
        .await;
    }

    let (_, answer) = app
        .notify(json!({"user_id": "carol", "data": {"k": "v"}}))
        .await;
    assert_eq!(answer["route"], "fcm", "{answer}");
    let id = answer["id"].as_str().unwrap();
    let record = app
        .wait_status(id, "fcm_failed", Duration::from_secs(10))
        .await;
    assert_eq!(record["status"], "fcm_failed", "{record}");

    // Pruning follows the failed sends: the user's next notification has nowhere to go.
    let deadline = Instant::now() + Duration::from_secs(10);
    let route = loop {
        let (_, answer) = app
            .notify(json!({"user_id": "carol", "data": {"k": "again"}}))
            .await;
        if answer["route"] == "none" || Instant::now() > deadline {
            break answer["route"].clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(route, "none", "both gone subscriptions were deleted");
    for device in ["tab-410", "tab-404"] {
        assert_eq!(
            delete_device(&app, "carol", device).await,
            StatusCode::NOT_FOUND
        );
    }
    assert!(mock.messages().await.is_empty());
}
