//! The /_mock test controls: unregistered device tokens and their 410 timestamp, faults,
//! latency, clearing recorded messages.

mod common;

use std::time::Instant;

use common::{spawn_mock, unix_now, DEVICE, LATENCY};
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn an_unregistered_token_is_410_with_the_given_timestamp() {
    let mock = spawn_mock().await;
    let token = mock.token();
    let marked = mock
        .control(
            Method::POST,
            "/_mock/unregistered",
            Some(json!({"tokens": [DEVICE.to_uppercase()], "timestamp_ms": 1_700_000_000_123u64})),
        )
        .await;
    assert_eq!(marked, 204);

    let gone = mock.alert(&token, &[]).await;
    assert_eq!(gone.status, 410);
    assert_eq!(
        gone.body,
        json!({"reason": "Unregistered", "timestamp": 1_700_000_000_123u64})
    );
    assert!(mock.messages().await.is_empty());

    assert_eq!(
        mock.control(Method::DELETE, "/_mock/unregistered", None)
            .await,
        204
    );
    assert_eq!(mock.alert(&token, &[]).await.status, 200);
}

#[tokio::test]
async fn an_expired_token_without_timestamp_is_stamped_now() {
    let mock = spawn_mock().await;
    let before = unix_now() * 1000;
    mock.control(
        Method::POST,
        "/_mock/unregistered",
        Some(json!({"tokens": [DEVICE], "reason": "ExpiredToken"})),
    )
    .await;
    let gone = mock.alert(&mock.token(), &[]).await;
    assert_eq!((gone.status, gone.reason()), (410, "ExpiredToken"));
    let timestamp = gone.body["timestamp"].as_i64().unwrap();
    assert!(timestamp >= before && timestamp <= unix_now() * 1000 + 1000);
    let refused = mock
        .control(
            Method::POST,
            "/_mock/unregistered",
            Some(json!({"tokens": [DEVICE], "reason": "BadTopic"})),
        )
        .await;
    assert_eq!(refused, 400, "only 410 reasons make a token unregistered");
}

#[tokio::test]
async fn faults_fail_the_next_requests_in_order_then_clear() {
    let mock = spawn_mock().await;
    let token = mock.token();
    for fault in [
        json!({"status": 429, "count": 2, "retry_after_secs": 7}),
        json!({"status": 503, "reason": "Shutdown"}),
        json!({"status": 500}),
        json!({"status": 410}),
    ] {
        assert_eq!(
            mock.control(Method::POST, "/_mock/faults", Some(fault))
                .await,
            204
        );
    }
    for _ in 0..2 {
        let answer = mock.alert(&token, &[]).await;
        assert_eq!((answer.status, answer.reason()), (429, "TooManyRequests"));
        assert_eq!(answer.headers["retry-after"], "7");
    }
    let shutdown = mock.alert(&token, &[]).await;
    assert_eq!((shutdown.status, shutdown.reason()), (503, "Shutdown"));
    assert!(!shutdown.headers.contains_key("retry-after"));
    let internal = mock.alert(&token, &[]).await;
    assert_eq!(
        (internal.status, internal.reason()),
        (500, "InternalServerError")
    );
    let gone = mock.alert(&token, &[]).await;
    assert_eq!((gone.status, gone.reason()), (410, "Unregistered"));
    assert!(gone.body["timestamp"].as_u64().unwrap() > 0);
    assert_eq!(mock.alert(&token, &[]).await.status, 200);

    mock.control(
        Method::POST,
        "/_mock/faults",
        Some(json!({"status": 503, "count": 5})),
    )
    .await;
    assert_eq!(
        mock.control(Method::DELETE, "/_mock/faults", None).await,
        204
    );
    assert_eq!(mock.alert(&token, &[]).await.status, 200);
    let stats = mock.stats().await;
    assert_eq!(
        (stats["accepted"].as_u64(), stats["rejected"].as_u64()),
        (Some(2), Some(5))
    );
}

#[tokio::test]
async fn faults_apply_only_to_authenticated_requests() {
    let mock = spawn_mock().await;
    mock.control(Method::POST, "/_mock/faults", Some(json!({"status": 503})))
        .await;
    let unauthenticated = mock.alert("", &[]).await;
    assert_eq!(unauthenticated.reason(), "MissingProviderToken");
    assert_eq!(mock.alert(&mock.token(), &[]).await.status, 503);
}

#[tokio::test]
async fn faults_that_apple_would_never_send_are_refused() {
    let mock = spawn_mock().await;
    for fault in [
        json!({"status": 418}),
        json!({"status": 503, "reason": "Unregistered"}),
        json!({"status": 400, "reason": "NoSuchReason"}),
        json!({"status": 500, "colour": "red"}),
    ] {
        assert_eq!(
            mock.control(Method::POST, "/_mock/faults", Some(fault.clone()))
                .await,
            400,
            "{fault}"
        );
    }
}

#[tokio::test]
async fn latency_delays_every_notification() {
    let mock = spawn_mock().await;
    let token = mock.token();
    let ms = LATENCY.as_millis() as u64;
    assert_eq!(
        mock.control(Method::POST, "/_mock/latency", Some(json!({"ms": ms})))
            .await,
        204
    );
    let started = Instant::now();
    assert_eq!(mock.alert(&token, &[]).await.status, 200);
    assert!(started.elapsed() >= LATENCY, "{:?}", started.elapsed());
    mock.control(Method::POST, "/_mock/latency", Some(json!({"ms": 0})))
        .await;
    let started = Instant::now();
    assert_eq!(mock.alert(&token, &[]).await.status, 200);
    assert!(started.elapsed() < LATENCY, "{:?}", started.elapsed());
}

#[tokio::test]
async fn recorded_messages_can_be_cleared() {
    let mock = spawn_mock().await;
    mock.alert(&mock.token(), &[]).await;
    assert_eq!(mock.messages().await.len(), 1);
    assert_eq!(
        mock.control(Method::DELETE, "/_mock/messages", None).await,
        204
    );
    assert!(mock.messages().await.is_empty());
    assert_eq!(
        mock.stats().await["accepted"],
        1,
        "stats count every acceptance"
    );
}
