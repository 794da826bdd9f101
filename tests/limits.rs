//! Per-request and per-user bounds, and input hygiene: batch, ack and topic counts, body and
//! key sizes, devices per user, and control characters in ids and tokens, which get 400 with
//! the error shape on SQLite and PostgreSQL alike (never a 500 from the database).

mod common;

use common::services::TestDb;
use common::{Options, TestApp, PRODUCER_KEY};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Asserts the status and that the body has the error shape; returns the code.
async fn refused(resp: reqwest::Response, status: StatusCode, what: &str) -> String {
    assert_eq!(resp.status(), status, "{what}");
    let body: Value = resp.json().await.unwrap();
    assert!(body["error"]["message"].is_string(), "{what}: {body}");
    body["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn item(user: &str) -> Value {
    json!({"user_id": user, "data": {"k": "v"}})
}

#[tokio::test]
async fn a_batch_of_1001_notifications_gets_400() {
    let app = TestApp::spawn().await;
    let items: Vec<Value> = (0..1001).map(|_| item("u")).collect();
    let resp = app
        .http
        .post(app.url("/v1/notify/batch"))
        .bearer_auth(PRODUCER_KEY)
        .json(&json!({ "notifications": items }))
        .send()
        .await
        .unwrap();
    let code = refused(resp, StatusCode::BAD_REQUEST, "1001 items").await;
    assert_eq!(code, "invalid_request");
    let (status, body) = app
        .producer(
            Method::POST,
            "/v1/notify/batch",
            Some(json!({"notifications": (0..1000).map(|_| item("u")).collect::<Vec<_>>()})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "1000 are fine: {body}");
}

#[tokio::test]
async fn a_batch_body_over_1_mib_gets_413() {
    let app = TestApp::spawn().await;
    let big = "x".repeat(2000);
    let items: Vec<Value> = (0..600)
        .map(|_| json!({"user_id": "u", "data": {"k": big}}))
        .collect();
    let body = serde_json::to_vec(&json!({ "notifications": items })).unwrap();
    assert!(body.len() > 1024 * 1024);
    let resp = app
        .http
        .post(app.url("/v1/notify/batch"))
        .bearer_auth(PRODUCER_KEY)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let code = refused(resp, StatusCode::PAYLOAD_TOO_LARGE, "a 1.2 MB batch").await;
    assert_eq!(code, "payload_too_large");
}

#[tokio::test]
async fn an_ack_of_1001_ids_gets_400() {
    let app = TestApp::spawn().await;
    let ids: Vec<String> = (0..1001)
        .map(|_| uuid::Uuid::now_v7().to_string())
        .collect();
    let resp = app
        .http
        .post(app.url("/v1/ack"))
        .bearer_auth(app.token("u"))
        .json(&json!({ "ids": ids }))
        .send()
        .await
        .unwrap();
    let code = refused(resp, StatusCode::BAD_REQUEST, "1001 ack ids").await;
    assert_eq!(code, "invalid_request");
    assert_eq!(
        app.ack("u", &[ids[0].as_str()]).await,
        StatusCode::NO_CONTENT
    );
}

#[tokio::test]
async fn a_stream_with_65_topics_gets_400() {
    let app = TestApp::spawn().await;
    let topics = |n: usize| {
        (0..n)
            .map(|i| format!("t{i}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let resp = reqwest::Client::new()
        .get(app.url(&format!("/v1/events?topics={}", topics(65))))
        .bearer_auth(app.token("u"))
        .send()
        .await
        .unwrap();
    let code = refused(resp, StatusCode::BAD_REQUEST, "65 topics").await;
    assert_eq!(code, "invalid_request");
    let s = app.stream("u", &format!("topics={}", topics(64))).await;
    assert_eq!(s.status, StatusCode::OK, "64 are fine");
}

#[tokio::test]
async fn an_idempotency_key_over_256_bytes_gets_400() {
    let app = TestApp::spawn().await;
    for (key, status) in [
        ("k".repeat(257), StatusCode::BAD_REQUEST),
        ("k".repeat(256), StatusCode::ACCEPTED),
    ] {
        let (got, body) = app
            .notify(json!({"user_id": "u", "data": {"k": "v"}, "idempotency_key": key}))
            .await;
        assert_eq!(got, status, "{} bytes: {body}", key.len());
    }
    let resp = app
        .http
        .post(app.url("/v1/notify/batch"))
        .bearer_auth(PRODUCER_KEY)
        .json(&json!({"notifications": [
            {"user_id": "u", "data": {"k": "v"}, "idempotency_key": "k".repeat(257)}
        ]}))
        .send()
        .await
        .unwrap();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body["results"][0]["error"]["code"], "invalid_request",
        "{body}"
    );
}

async fn put_device(app: &TestApp, user: &str, device: &str, token: &str) -> reqwest::Response {
    app.http
        .put(app.url(&format!("/v1/devices/{device}")))
        .bearer_auth(app.token(user))
        .json(&json!({"fcm_token": token, "platform": "android"}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_21st_device_gets_409_and_re_registering_the_20th_works() {
    let app = TestApp::spawn().await;
    for i in 0..20 {
        let resp = put_device(&app, "dana", &format!("d{i}"), &format!("tok-{i}")).await;
        assert_eq!(resp.status(), StatusCode::OK, "device {i}");
    }
    let resp = put_device(&app, "dana", "d20", "tok-20").await;
    let code = refused(resp, StatusCode::CONFLICT, "the 21st device").await;
    assert_eq!(code, "too_many_devices");
    let again = put_device(&app, "dana", "d19", "tok-19b").await;
    assert_eq!(again.status(), StatusCode::OK, "re-registering the 20th");
    assert_eq!(app.metric("switchboard_devices_refused_total").await, 1.0);
    // The cap is per user.
    let other = put_device(&app, "erik", "d20", "tok-erik").await;
    assert_eq!(other.status(), StatusCode::OK);
}

/// Every field that reaches the store or Redis, with control characters: 400 with the error
/// shape. A plain registration still works afterwards (the store is fine).
async fn control_characters_get_400(app: &TestApp) {
    let token = app.token("carl");
    let client = |method: Method, path: &str, body: Option<Value>| {
        let mut req = app.http.request(method, app.url(path)).bearer_auth(&token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send()
    };
    let device = |t: &str| json!({"fcm_token": t, "platform": "android"});
    let mut cases = vec![
        (
            "NUL in fcm_token",
            client(Method::PUT, "/v1/devices/phone", Some(device("a\u{0}b"))),
        ),
        (
            "SOH in fcm_token",
            client(Method::PUT, "/v1/devices/phone", Some(device("a\u{1}b"))),
        ),
        (
            "DEL in fcm_token",
            client(Method::PUT, "/v1/devices/phone", Some(device("a\u{7f}b"))),
        ),
        (
            "LF in fcm_token",
            client(Method::PUT, "/v1/devices/phone", Some(device("a\nb"))),
        ),
        (
            "NUL in device_id",
            client(Method::PUT, "/v1/devices/a%00b", Some(device("tok"))),
        ),
        (
            "LF in device_id",
            client(Method::DELETE, "/v1/devices/a%0Ab", None),
        ),
        (
            "NUL in an ack id",
            client(Method::POST, "/v1/ack", Some(json!({"ids": ["a\u{0}"]}))),
        ),
        (
            "NUL in a stream's device_id",
            client(Method::GET, "/v1/events?device_id=a%00b", None),
        ),
        (
            "NUL in a topic",
            client(Method::GET, "/v1/events?topics=a%00b", None),
        ),
    ];
    let producer = |method: Method, path: &str, body: Option<Value>| {
        let mut req = app
            .http
            .request(method, app.url(path))
            .bearer_auth(PRODUCER_KEY);
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send()
    };
    let notify = |extra: Value| {
        let mut n = json!({"user_id": "carl", "data": {"k": "v"}});
        n.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        Some(n)
    };
    cases.extend([
        (
            "NUL in user_id",
            producer(
                Method::POST,
                "/v1/notify",
                notify(json!({"user_id": "c\u{0}"})),
            ),
        ),
        (
            "NUL in idempotency_key",
            producer(
                Method::POST,
                "/v1/notify",
                notify(json!({"idempotency_key": "k\u{0}"})),
            ),
        ),
        (
            "CR in collapse_key",
            producer(
                Method::POST,
                "/v1/notify",
                notify(json!({"collapse_key": "c\r"})),
            ),
        ),
        (
            "NUL in a topic",
            producer(
                Method::POST,
                "/v1/broadcast",
                Some(json!({"topic": "t\u{0}", "data": {}})),
            ),
        ),
        (
            "NUL in a presence user",
            producer(Method::GET, "/v1/presence/c%00", None),
        ),
        (
            "NUL in a notification id",
            producer(Method::GET, "/v1/notifications/0%00", None),
        ),
    ]);
    for (what, resp) in cases {
        refused(resp.await.unwrap(), StatusCode::BAD_REQUEST, what).await;
    }
    app.register_device("carl", "phone", "tok-carl").await;
}

#[tokio::test]
async fn control_characters_in_ids_and_tokens_get_400_on_sqlite() {
    let app = TestApp::spawn().await;
    control_characters_get_400(&app).await;
}

#[tokio::test]
async fn control_characters_in_ids_and_tokens_get_400_on_postgresql() {
    let db = TestDb::create().await;
    let app = TestApp::spawn_with(Options::default().env("SWITCHBOARD__STORE__URL", &db.url)).await;
    control_characters_get_400(&app).await;
}
