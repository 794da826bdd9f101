//! The /_mock test controls: gone subscriptions, faults, latency, clearing messages.

mod common;

use std::time::{Duration, Instant};

use common::{spawn_mock, Sender};
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn gone_subscriptions_answer_their_404_or_410() {
    let mock = spawn_mock().await;
    let (expired, unsubscribed, alive) = (
        mock.subscribe().await,
        mock.subscribe().await,
        mock.subscribe().await,
    );
    let expired_id = expired.endpoint.rsplit('/').next().unwrap().to_owned();
    assert_eq!(
        mock.control(
            Method::POST,
            "/_mock/gone",
            Some(json!({"ids": [expired_id], "status": 404}))
        )
        .await,
        204
    );
    assert_eq!(
        mock.control(
            Method::POST,
            "/_mock/gone",
            Some(json!({"ids": [unsubscribed.endpoint]}))
        )
        .await,
        204,
        "a whole endpoint names its subscription; 410 by default"
    );
    let sender = Sender::new();
    let answer = mock.send(&sender, &expired, "hi", &[]).await;
    assert_eq!((answer.status, answer.code()), (404, "subscription_gone"));
    let answer = mock.send(&sender, &unsubscribed, "hi", &[]).await;
    assert_eq!((answer.status, answer.code()), (410, "subscription_gone"));
    assert_eq!(mock.send(&sender, &alive, "hi", &[]).await.status, 201);

    let refused = mock
        .control(
            Method::POST,
            "/_mock/gone",
            Some(json!({"ids": ["x"], "status": 500})),
        )
        .await;
    assert_eq!(refused, 400);
    assert_eq!(mock.control(Method::DELETE, "/_mock/gone", None).await, 204);
    assert_eq!(mock.send(&sender, &expired, "hi", &[]).await.status, 201);
}

#[tokio::test]
async fn faults_fail_the_next_authenticated_pushes_in_order() {
    let mock = spawn_mock().await;
    let sub = mock.subscribe().await;
    let sender = Sender::new();
    for fault in [
        json!({"status": 429, "count": 2, "retry_after_secs": 30}),
        json!({"status": 503}),
    ] {
        assert_eq!(
            mock.control(Method::POST, "/_mock/faults", Some(fault))
                .await,
            204
        );
    }
    let unauthenticated = mock
        .send(&sender, &sub, "hi", &[("authorization", "")])
        .await;
    assert_eq!(
        unauthenticated.status, 401,
        "faults wait for an authenticated push"
    );
    for _ in 0..2 {
        let answer = mock.send(&sender, &sub, "hi", &[]).await;
        assert_eq!((answer.status, answer.code()), (429, "injected_fault"));
        assert_eq!(answer.headers["retry-after"], "30");
    }
    let unavailable = mock.send(&sender, &sub, "hi", &[]).await;
    assert_eq!(unavailable.status, 503);
    assert!(!unavailable.headers.contains_key("retry-after"));
    assert_eq!(mock.send(&sender, &sub, "hi", &[]).await.status, 201);

    mock.control(
        Method::POST,
        "/_mock/faults",
        Some(json!({"status": 500, "count": 3})),
    )
    .await;
    assert_eq!(
        mock.control(Method::DELETE, "/_mock/faults", None).await,
        204
    );
    assert_eq!(mock.send(&sender, &sub, "hi", &[]).await.status, 201);
    for bad in [
        json!({"status": 200}),
        json!({"status": 500, "colour": "red"}),
    ] {
        assert_eq!(
            mock.control(Method::POST, "/_mock/faults", Some(bad)).await,
            400
        );
    }
    let stats = mock.stats().await;
    assert_eq!(
        (stats["accepted"].as_u64(), stats["rejected"].as_u64()),
        (Some(2), Some(4))
    );
}

#[tokio::test]
async fn latency_delays_every_push() {
    let mock = spawn_mock().await;
    let sub = mock.subscribe().await;
    let sender = Sender::new();
    let latency = Duration::from_millis(300);
    let set = mock
        .control(Method::POST, "/_mock/latency", Some(json!({"ms": 300})))
        .await;
    assert_eq!(set, 204);
    let started = Instant::now();
    assert_eq!(mock.send(&sender, &sub, "hi", &[]).await.status, 201);
    assert!(started.elapsed() >= latency, "{:?}", started.elapsed());
    mock.control(Method::POST, "/_mock/latency", Some(json!({"ms": 0})))
        .await;
    let started = Instant::now();
    assert_eq!(mock.send(&sender, &sub, "hi", &[]).await.status, 201);
    assert!(started.elapsed() < latency, "{:?}", started.elapsed());
}

#[tokio::test]
async fn recorded_messages_can_be_cleared_and_bad_subscribe_options_are_refused() {
    let mock = spawn_mock().await;
    let sub = mock.subscribe().await;
    mock.send(&Sender::new(), &sub, "hi", &[]).await;
    assert_eq!(mock.messages().await.len(), 1);
    assert_eq!(
        mock.control(Method::DELETE, "/_mock/messages", None).await,
        204
    );
    assert!(mock.messages().await.is_empty());
    let bad_key = mock
        .control(
            Method::POST,
            "/_mock/subscriptions",
            Some(json!({"application_server_key": "AAAA"})),
        )
        .await;
    assert_eq!(bad_key, 400);
}
