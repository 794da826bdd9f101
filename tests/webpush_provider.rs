//! The Web Push provider against webpush-mock over real HTTP, through the library: the mock
//! decrypts each message with the subscription's private key and checks the VAPID token
//! against the key the router was given, so these tests prove the cryptography, not the
//! request's shape alone.

mod common;

use std::time::Duration;

use common::webpush::{write_vapid_key, WebPushMock};
use serde_json::{json, Value};
use switchboard::config::Config;
use switchboard::metrics::Metrics;
use switchboard::notification::{Notification, NotifyRequest};
use switchboard::push::webpush::{payload, Subscription, WebPushProvider};
use switchboard::push::{InvalidReason, Outcome, Provider, RetryReason};

const SUBJECT: &str = "mailto:ops@example.com";

fn provider(key_path: &std::path::Path, metrics: &Metrics) -> WebPushProvider {
    let toml = format!(
        "[webpush]\nvapid_private_key = {:?}\nsubject = {SUBJECT:?}\n",
        key_path.display()
    );
    let config = Config::from_layers(&toml, []).expect("the [webpush] section loads");
    WebPushProvider::new(&config.webpush, false, metrics).expect("the provider starts")
}

fn notification(body: Value) -> Notification {
    let mut body = body;
    body["user_id"] = json!("alice");
    serde_json::from_value::<NotifyRequest>(body)
        .unwrap()
        .accept()
        .unwrap()
}

async fn subscription(mock: &WebPushMock) -> (String, String) {
    let json = mock.subscribe().await;
    let token = Subscription::from_json(&json).unwrap().to_token();
    (json["endpoint"].as_str().unwrap().to_owned(), token)
}

fn sse_data(n: &Notification) -> String {
    let frame = String::from_utf8(n.frame().to_vec()).unwrap();
    frame
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_message_decrypts_at_the_push_service_to_the_notification_with_a_verified_vapid_token() {
    let dir = tempfile::tempdir().unwrap();
    let mock = WebPushMock::start(dir.path()).await;
    let metrics = Metrics::new();
    let provider = provider(&mock.key_path, &metrics);
    assert_eq!(provider.public_key(), mock.public_key);
    let (endpoint, token) = subscription(&mock).await;
    let n = notification(json!({
        "data": {"order": "42"},
        "notification": {"title": "Order filled", "body": "at 101.5"},
        "ttl_secs": 600, "priority": "normal", "collapse_key": "order-42"
    }));

    assert_eq!(provider.send(&n, &token).await, Outcome::Accepted);
    let second = notification(json!({"data": {"order": "43"}, "collapse_key": "order status 43"}));
    assert_eq!(provider.send(&second, &token).await, Outcome::Accepted);

    let messages = mock.messages().await;
    assert_eq!(messages.len(), 2, "{messages:?}");
    let first = &messages[0];
    assert_eq!(first["endpoint"], endpoint.as_str());
    assert_eq!(first["plaintext"], sse_data(&n).as_str());
    assert_eq!(
        first["plaintext"].as_str().unwrap().as_bytes(),
        payload(&n, false).as_slice()
    );
    assert_eq!(first["ttl"], 600);
    assert_eq!(first["urgency"], "normal");
    assert_eq!(first["topic"], "order-42");
    assert_eq!(first["headers"]["content-encoding"], "aes128gcm");
    assert_eq!(first["vapid"]["sub"], SUBJECT);
    assert_eq!(first["vapid"]["aud"], mock.url.as_str());
    assert_eq!(first["vapid"]["k"], mock.public_key.as_str());

    let other = &messages[1];
    assert_eq!(other["plaintext"], sse_data(&second).as_str());
    assert_eq!(other["urgency"], "high");
    assert_eq!(other["ttl"], 28 * 24 * 3600, "no ttl_secs: four weeks");
    let topic = other["topic"].as_str().unwrap();
    assert_eq!(
        topic.len(),
        32,
        "a collapse key with spaces is hashed: {topic}"
    );
    assert_eq!(
        other["vapid"]["exp"], first["vapid"]["exp"],
        "one VAPID token for both sends to the origin"
    );
    assert!(metrics
        .render()
        .contains("switchboard_webpush_results_total{result=\"ok\"} 2"));
}

#[tokio::test]
async fn a_gone_subscription_is_token_gone_whether_410_or_404() {
    let dir = tempfile::tempdir().unwrap();
    let mock = WebPushMock::start(dir.path()).await;
    let metrics = Metrics::new();
    let provider = provider(&mock.key_path, &metrics);
    let n = notification(json!({"data": {"k": "v"}}));
    for status in [410, 404] {
        let (endpoint, token) = subscription(&mock).await;
        mock.control("gone", json!({"ids": [endpoint], "status": status}))
            .await;
        assert_eq!(
            provider.send(&n, &token).await,
            Outcome::TokenGone { at: None },
            "{status}"
        );
    }
    assert!(mock.messages().await.is_empty());
    assert!(metrics
        .render()
        .contains("switchboard_webpush_results_total{result=\"gone\"} 2"));
}

#[tokio::test]
async fn a_429_is_retried_no_sooner_than_its_retry_after_and_a_503_later() {
    let dir = tempfile::tempdir().unwrap();
    let mock = WebPushMock::start(dir.path()).await;
    let provider = provider(&mock.key_path, &Metrics::new());
    let (_, token) = subscription(&mock).await;
    let n = notification(json!({"data": {"k": "v"}}));
    mock.control("faults", json!({"status": 429, "retry_after_secs": 7}))
        .await;
    assert_eq!(
        provider.send(&n, &token).await,
        Outcome::RetryAfter {
            reason: RetryReason::QuotaExceeded,
            after: Some(Duration::from_secs(7))
        }
    );
    mock.control("faults", json!({"status": 503})).await;
    assert_eq!(
        provider.send(&n, &token).await,
        Outcome::RetryAfter {
            reason: RetryReason::Unavailable,
            after: None
        }
    );
    assert_eq!(provider.send(&n, &token).await, Outcome::Accepted);
}

#[tokio::test]
async fn a_key_the_push_service_refuses_is_an_auth_failure_after_one_fresh_token() {
    let dir = tempfile::tempdir().unwrap();
    let mock = WebPushMock::start(dir.path()).await;
    let other_key = dir.path().join("other.pem");
    write_vapid_key(&other_key);
    let provider = provider(&other_key, &Metrics::new());
    let (_, token) = subscription(&mock).await;
    let n = notification(json!({"data": {"k": "v"}}));

    assert_eq!(provider.send(&n, &token).await, Outcome::AuthFailure);
    let stats = mock.stats().await;
    assert_eq!(
        stats["rejected"], 2,
        "the first token and a fresh one: {stats}"
    );
    assert_eq!(stats["accepted"], 0);
}

#[tokio::test]
async fn a_payload_over_4096_bytes_once_encrypted_is_invalid_and_never_sent() {
    let dir = tempfile::tempdir().unwrap();
    let mock = WebPushMock::start(dir.path()).await;
    let metrics = Metrics::new();
    let provider = provider(&mock.key_path, &metrics);
    let (_, token) = subscription(&mock).await;
    // Within FCM's 4096 bytes of data, but not once id, sent_at and the encryption are added.
    let n = notification(json!({"data": {"k": "x".repeat(3990)}}));

    assert_eq!(
        provider.send(&n, &token).await,
        Outcome::Invalid {
            reason: InvalidReason::InvalidArgument
        }
    );
    let stats = mock.stats().await;
    assert_eq!(
        (stats["accepted"].as_u64(), stats["rejected"].as_u64()),
        (Some(0), Some(0))
    );
    assert!(metrics
        .render()
        .contains("switchboard_webpush_results_total{result=\"payload_too_large\"} 1"));
}

#[tokio::test]
async fn each_app_signs_with_its_own_vapid_key_and_the_shared_settings() {
    let dir = tempfile::tempdir().unwrap();
    let default_key = dir.path().join("default.pem");
    let shop_key = dir.path().join("shop.pem");
    let default_public = write_vapid_key(&default_key);
    let shop_public = write_vapid_key(&shop_key);
    let toml = format!(
        "[webpush]\nvapid_private_key = {:?}\nsubject = {SUBJECT:?}\nrequest_timeout_secs = 7\n\
         [[apps]]\nid = \"shop\"\nwebpush = {{ vapid_private_key = {:?}, subject = \"https://shop.example\" }}\n",
        default_key.display(),
        shop_key.display()
    );
    let config = Config::from_layers(&toml, []).expect("two apps with Web Push load");

    let apps = config.apps();
    let shop = apps
        .iter()
        .find(|a| a.id.as_deref() == Some("shop"))
        .unwrap();
    let shop_cfg = shop.webpush.as_ref().expect("shop has Web Push");
    assert_eq!(shop_cfg.subject, "https://shop.example");
    assert_eq!(
        shop_cfg.request_timeout_secs, 7,
        "the [webpush] settings are shared"
    );
    let metrics = Metrics::new();
    let shop_provider = WebPushProvider::new(shop_cfg, false, &metrics).unwrap();
    assert_eq!(shop_provider.public_key(), shop_public);
    let default_cfg = apps[0].webpush.as_ref().unwrap();
    let default_provider = WebPushProvider::new(default_cfg, false, &metrics).unwrap();
    assert_eq!(default_provider.public_key(), default_public);

    let missing = "[[apps]]\nid = \"shop\"\nwebpush = { vapid_private_key = \"/nonexistent.pem\", subject = \"mailto:a@b.c\" }\n";
    let err = Config::from_layers(missing, []).unwrap_err().to_string();
    assert!(
        err.contains("apps[0] (shop).webpush.vapid_private_key"),
        "{err}"
    );
}
