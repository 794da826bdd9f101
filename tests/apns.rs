//! APNs end to end: the real binary sends to apns-mock over real HTTP/2 with real ES256
//! provider tokens (the mock verifies them against the key's public half).

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::apns::ApnsMock;
use common::{Options, TestApp};
use serde_json::{json, Value};

const TOPIC: &str = "com.example.app";
const WAIT: Duration = Duration::from_secs(10);

async fn start(extra: &[(&str, &str)]) -> (TestApp, ApnsMock, tempfile::TempDir) {
    start_with_interval(extra, Duration::from_secs(1200)).await
}

async fn start_with_interval(
    extra: &[(&str, &str)],
    mock_interval: Duration,
) -> (TestApp, ApnsMock, tempfile::TempDir) {
    let keys = tempfile::tempdir().unwrap();
    let mock = ApnsMock::start(keys.path(), &[TOPIC], mock_interval).await;
    let mut opts = Options::default().envs(mock.env(TOPIC));
    for (k, v) in extra {
        opts = opts.env(k, v);
    }
    (TestApp::spawn_with(opts).await, mock, keys)
}

fn device_token(i: u8) -> String {
    format!("{i:02x}").repeat(32)
}

async fn register_ios(app: &TestApp, user: &str, device: &str, token: &str) -> Value {
    app.register(user, device, json!({"provider": "apns", "token": token}))
        .await
}

#[tokio::test]
async fn an_offline_ios_device_gets_an_apns_message_with_the_right_headers_and_payload() {
    let (app, mock, _keys) = start(&[]).await;
    let token = device_token(1);
    register_ios(&app, "ines", "iphone", &token).await;

    let (status, answer) = app
        .notify(json!({"user_id": "ines", "data": {"order": "42"},
            "notification": {"title": "Order filled", "body": "42 shares"},
            "ttl_secs": 600, "collapse_key": "orders"}))
        .await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["route"], "fcm", "the push route: {answer}");
    let id = answer["id"].as_str().unwrap().to_string();
    let record = app.wait_status(&id, "fcm_accepted", WAIT).await;
    assert_eq!(record["status"], "fcm_accepted", "{record}");

    let messages = mock.wait_messages(1, WAIT).await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    let m = &messages[0];
    assert_eq!(m["device_token"], token.as_str());
    assert_eq!(m["topic"], TOPIC);
    assert_eq!(m["apns_id"], id.as_str());
    assert_eq!(m["push_type"], "alert");
    assert_eq!(m["priority"], 10);
    assert_eq!(m["collapse_id"], "orders");
    // Accept time plus ttl_secs, in unix seconds.
    let accepted = record["created_at"].as_u64().unwrap() / 1000;
    let expiration = m["expiration"].as_u64().unwrap();
    assert!(
        (accepted + 599..=accepted + 601).contains(&expiration),
        "{m} {record}"
    );
    assert_eq!(
        m["payload"],
        json!({"aps": {"alert": {"title": "Order filled", "body": "42 shares"}, "sound": "default"},
            "order": "42", "switchboard_id": id})
    );

    // Data only: a background push, which APNs takes only at priority 5.
    let (_, answer) = app
        .notify(json!({"user_id": "ines", "data": {"sync": "1"}, "priority": "high"}))
        .await;
    let messages = mock.wait_messages(2, WAIT).await;
    let m = &messages[1];
    assert_eq!(m["apns_id"], answer["id"]);
    assert_eq!(
        (m["push_type"].as_str(), m["priority"].as_u64()),
        (Some("background"), Some(5))
    );
    assert_eq!(m["payload"]["aps"], json!({"content-available": 1}));
    assert_eq!(
        app.metric("switchboard_apns_requests_total{result=\"ok\"}")
            .await,
        2.0
    );
}

/// APNs says since when a token is gone: a registration made after that time is a new install
/// and stays; one made before is deleted.
#[tokio::test]
async fn a_410_older_than_the_registration_keeps_the_device_and_a_newer_one_deletes_it() {
    let (app, mock, _keys) = start(&[]).await;
    let token = device_token(2);
    let device = register_ios(&app, "jon", "iphone", &token).await;
    let registered = device["updated_at"].as_i64().unwrap();

    mock.control(
        "unregistered",
        json!({"tokens": [token], "timestamp_ms": registered - 60_000}),
    )
    .await;
    let (_, answer) = app
        .notify(json!({"user_id": "jon", "data": {"n": "1"}}))
        .await;
    let id = answer["id"].as_str().unwrap();
    let record = app.wait_status(id, "fcm_failed", WAIT).await;
    assert_eq!(record["status"], "fcm_failed", "{record}");
    assert_eq!(app.metric("switchboard_fcm_tokens_pruned_total").await, 0.0);
    // Still registered: the next notification goes to it again.
    let (_, answer) = app
        .notify(json!({"user_id": "jon", "data": {"n": "2"}}))
        .await;
    assert_eq!(answer["route"], "fcm", "the device is kept: {answer}");
    app.wait_status(answer["id"].as_str().unwrap(), "fcm_failed", WAIT)
        .await;

    mock.control(
        "unregistered",
        json!({"tokens": [token], "timestamp_ms": registered + 60_000}),
    )
    .await;
    let (_, answer) = app
        .notify(json!({"user_id": "jon", "data": {"n": "3"}}))
        .await;
    app.wait_status(answer["id"].as_str().unwrap(), "fcm_failed", WAIT)
        .await;
    app.wait_metric("switchboard_fcm_tokens_pruned_total", 1.0, WAIT)
        .await;
    let (_, answer) = app
        .notify(json!({"user_id": "jon", "data": {"n": "4"}}))
        .await;
    assert_eq!(answer["route"], "none", "the device is deleted: {answer}");
    assert_eq!(
        app.metric("switchboard_apns_requests_total{result=\"unregistered\"}")
            .await,
        3.0
    );
}

#[tokio::test]
async fn bad_device_token_deletes_the_device_and_503_is_retried() {
    let (app, mock, _keys) = start(&[]).await;
    register_ios(&app, "kai", "iphone", &device_token(3)).await;
    mock.control("faults", json!({"status": 503, "count": 2}))
        .await;
    let (_, answer) = app
        .notify(json!({"user_id": "kai", "data": {"n": "1"}}))
        .await;
    let record = app
        .wait_status(answer["id"].as_str().unwrap(), "fcm_accepted", WAIT)
        .await;
    assert_eq!(record["status"], "fcm_accepted", "{record}");
    assert_eq!(
        app.metric("switchboard_apns_requests_total{result=\"unavailable\"}")
            .await,
        2.0
    );

    mock.control("faults", json!({"status": 400, "reason": "BadDeviceToken"}))
        .await;
    let (_, answer) = app
        .notify(json!({"user_id": "kai", "data": {"n": "2"}}))
        .await;
    app.wait_status(answer["id"].as_str().unwrap(), "fcm_failed", WAIT)
        .await;
    app.wait_metric("switchboard_fcm_tokens_pruned_total", 1.0, WAIT)
        .await;
    let (_, answer) = app
        .notify(json!({"user_id": "kai", "data": {"n": "3"}}))
        .await;
    assert_eq!(answer["route"], "none", "{answer}");
}

/// The fault stands for a token APNs finds too old (clock skew); the mock would otherwise
/// refuse a second token on the connection within its update interval, so it is 0 here.
#[tokio::test]
async fn an_expired_provider_token_is_replaced_once_and_the_send_goes_through() {
    let (app, mock, _keys) = start_with_interval(&[], Duration::ZERO).await;
    register_ios(&app, "lea", "iphone", &device_token(4)).await;
    mock.control(
        "faults",
        json!({"status": 403, "reason": "ExpiredProviderToken"}),
    )
    .await;
    let (_, answer) = app
        .notify(json!({"user_id": "lea", "data": {"n": "1"}}))
        .await;
    let record = app
        .wait_status(answer["id"].as_str().unwrap(), "fcm_accepted", WAIT)
        .await;
    assert_eq!(record["status"], "fcm_accepted", "{record}");
    assert_eq!(
        app.metric("switchboard_apns_provider_tokens_total").await,
        2.0
    );
    assert_eq!(
        app.metric("switchboard_apns_requests_total{result=\"expired_provider_token\"}")
            .await,
        1.0
    );
}

/// One token serves every send until `apns.token_refresh_secs` has passed (shortened here from
/// 50 minutes to 20 seconds; the mock accepts a new token on a connection after 10).
#[tokio::test]
async fn the_provider_token_is_reused_across_1000_sends_and_renewed_after_its_interval() {
    const REFRESH_SECS: u64 = 20;
    let refresh = REFRESH_SECS.to_string();
    let (app, mock, _keys) = start_with_interval(
        &[("SWITCHBOARD__APNS__TOKEN_REFRESH_SECS", refresh.as_str())],
        Duration::from_secs(10),
    )
    .await;
    register_ios(&app, "max", "iphone", &device_token(5)).await;
    let started = std::time::Instant::now();
    let items: Vec<Value> = (0..1000)
        .map(|i| json!({"user_id": "max", "data": {"i": i.to_string()}}))
        .collect();
    let (status, answer) = app
        .producer(
            reqwest::Method::POST,
            "/v1/notify/batch",
            Some(json!({"notifications": items})),
        )
        .await;
    assert_eq!(status, 202, "{answer}");
    let messages = mock.wait_messages(1000, Duration::from_secs(60)).await;
    assert_eq!(messages.len(), 1000);
    assert!(
        started.elapsed() < Duration::from_secs(REFRESH_SECS),
        "the 1000 sends took {:?}, longer than the refresh interval",
        started.elapsed()
    );
    let tokens: HashSet<&str> = messages
        .iter()
        .map(|m| m["provider_token"].as_str().unwrap())
        .collect();
    assert_eq!(tokens.len(), 1, "one provider token for 1000 sends");
    assert_eq!(
        app.metric("switchboard_apns_provider_tokens_total").await,
        1.0
    );
    let first_iat = messages[0]["provider_token_iat"].as_i64().unwrap();

    tokio::time::sleep(Duration::from_secs(REFRESH_SECS + 1).saturating_sub(started.elapsed()))
        .await;
    let (_, answer) = app
        .notify(json!({"user_id": "max", "data": {"i": "last"}}))
        .await;
    app.wait_status(answer["id"].as_str().unwrap(), "fcm_accepted", WAIT)
        .await;
    let messages = mock.wait_messages(1001, WAIT).await;
    let last = &messages[1000];
    assert!(!tokens.contains(last["provider_token"].as_str().unwrap()));
    assert!(last["provider_token_iat"].as_i64().unwrap() >= first_iat + REFRESH_SECS as i64);
    assert_eq!(
        app.metric("switchboard_apns_provider_tokens_total").await,
        2.0
    );
    assert_eq!(mock.stats().await["token_changes"], 1);
}
