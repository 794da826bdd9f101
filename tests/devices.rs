//! `PUT /v1/devices/{device_id}` in every provider's form, over the real binary.

mod common;

use common::TestApp;
use reqwest::StatusCode;
use serde_json::{json, Value};

const P256DH: &str =
    "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM";
const AUTH: &str = "tBHItJI5svbpez7KI4CCXg";

async fn put(app: &TestApp, user: &str, device: &str, body: &Value) -> (StatusCode, Value) {
    let resp = app
        .http
        .put(app.url(&format!("/v1/devices/{device}")))
        .bearer_auth(app.token(user))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn every_providers_registration_is_stored_with_its_provider_and_app_and_no_token_shown() {
    let app = TestApp::spawn().await;
    let sub = json!({"endpoint": "https://push.example/s/1", "expirationTime": null,
        "keys": {"p256dh": P256DH, "auth": AUTH}});
    for (device, body, provider, platform, app_id) in [
        (
            "a",
            json!({"fcm_token": "tok:a", "platform": "web"}),
            "fcm",
            "web",
            None,
        ),
        (
            "b",
            json!({"provider": "fcm", "token": "tok:b", "app": "shop"}),
            "fcm",
            "android",
            Some("shop"),
        ),
        (
            "c",
            json!({"provider": "apns", "token": "AB".repeat(32)}),
            "apns",
            "ios",
            None,
        ),
        (
            "d",
            json!({"provider": "webpush", "subscription": sub, "app": "web-1"}),
            "webpush",
            "web",
            Some("web-1"),
        ),
    ] {
        let (status, d) = put(&app, "rosa", device, &body).await;
        assert_eq!(status, StatusCode::OK, "{body}: {d}");
        assert_eq!(d["provider"], provider, "{d}");
        assert_eq!(d["platform"], platform, "{d}");
        assert_eq!(d.get("app").and_then(Value::as_str), app_id, "{d}");
        for hidden in ["token", "fcm_token", "subscription"] {
            assert!(d.get(hidden).is_none(), "{hidden} is not echoed: {d}");
        }
    }
}

#[tokio::test]
async fn malformed_registrations_get_400_with_the_error_shape() {
    let app = TestApp::spawn().await;
    for body in [
        json!({"provider": "apns", "token": "not hex"}),
        json!({"provider": "apns"}),
        json!({"provider": "webpush", "subscription": {"endpoint": "https://x", "keys": {"p256dh": "x", "auth": AUTH}}}),
        json!({"provider": "webpush", "token": "t"}),
        json!({"provider": "pigeon", "token": "t"}),
        json!({"provider": "fcm", "token": "t", "app": "no spaces"}),
        json!({"token": "t"}),
    ] {
        let (status, err) = put(&app, "rosa", "x", &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {err}");
        assert!(err["error"]["code"].is_string(), "{body}: {err}");
        assert!(err["error"]["message"].is_string(), "{body}: {err}");
    }
}
