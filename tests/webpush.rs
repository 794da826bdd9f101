//! Web Push end to end: the real binary with `[webpush]` pointing at a VAPID key that
//! webpush-mock (over real HTTP) requires, browsers' subscriptions registered as devices.

mod common;

use common::webpush::WebPushMock;
use common::{Options, TestApp};
use reqwest::StatusCode;
use serde_json::Value;

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
