//! The /_mock test-control endpoints: unregistered tokens, faults, revocation, latency, stats.

mod common;

use std::time::{Duration, Instant};

use common::{fcm_error_code, spawn_mock};
use reqwest::Method;
use serde_json::{json, Value};

#[tokio::test]
async fn unregistered_token_is_404_unregistered() {
    let mock = spawn_mock().await;
    let token = mock.access_token().await;
    let marked = mock
        .control(
            Method::POST,
            "/_mock/unregistered",
            Some(json!({"tokens": ["gone-1"]})),
        )
        .await;
    assert_eq!(marked.status().as_u16(), 204);

    let (status, body) = mock
        .send(&token, &json!({"message": {"token": "gone-1"}}))
        .await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["status"], "NOT_FOUND");
    assert_eq!(body["error"]["message"], "Requested entity was not found.");
    assert_eq!(fcm_error_code(&body), Some("UNREGISTERED"));

    let (status, _) = mock
        .send(&token, &json!({"message": {"token": "still-here"}}))
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn faults_fail_the_next_n_sends_with_retry_after() {
    let mock = spawn_mock().await;
    let token = mock.access_token().await;
    let body = json!({"message": {"token": "d"}});
    let programmed = mock
        .control(
            Method::POST,
            "/_mock/faults",
            Some(json!({"status": 429, "count": 2, "retry_after_secs": 7})),
        )
        .await;
    assert_eq!(programmed.status().as_u16(), 204);

    for _ in 0..2 {
        let response = mock.send_raw(Some(&token), &body).await;
        assert_eq!(response.status().as_u16(), 429);
        assert_eq!(response.headers()["retry-after"], "7");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["error"]["status"], "RESOURCE_EXHAUSTED");
        assert_eq!(fcm_error_code(&answer), Some("QUOTA_EXCEEDED"));
    }
    let (status, _) = mock.send(&token, &body).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn each_fault_status_has_googles_status_and_error_code() {
    let mock = spawn_mock().await;
    let token = mock.access_token().await;
    let cases = [
        (500, "INTERNAL", Some("INTERNAL")),
        (503, "UNAVAILABLE", Some("UNAVAILABLE")),
        (400, "INVALID_ARGUMENT", Some("INVALID_ARGUMENT")),
        (403, "PERMISSION_DENIED", Some("SENDER_ID_MISMATCH")),
        (401, "UNAUTHENTICATED", None),
    ];
    for (code, status_name, error_code) in cases {
        mock.control(
            Method::POST,
            "/_mock/faults",
            Some(json!({"status": code, "count": 1})),
        )
        .await;
        let response = mock
            .send_raw(Some(&token), &json!({"message": {"token": "d"}}))
            .await;
        assert_eq!(response.status().as_u16(), code);
        assert!(response.headers().get("retry-after").is_none());
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], code);
        assert_eq!(body["error"]["status"], status_name);
        assert_eq!(fcm_error_code(&body), error_code, "{body}");
        if error_code.is_none() {
            assert!(body["error"].get("details").is_none(), "{body}");
        }
    }
}

#[tokio::test]
async fn fault_error_code_overrides_and_unknown_status_is_refused() {
    let mock = spawn_mock().await;
    let token = mock.access_token().await;
    mock.control(
        Method::POST,
        "/_mock/faults",
        Some(json!({"status": 401, "error_code": "THIRD_PARTY_AUTH_ERROR", "count": 1})),
    )
    .await;

    let (status, body) = mock.send(&token, &json!({"message": {"token": "d"}})).await;
    assert_eq!(status, 401);
    assert_eq!(fcm_error_code(&body), Some("THIRD_PARTY_AUTH_ERROR"));

    let refused = mock
        .control(Method::POST, "/_mock/faults", Some(json!({"status": 418})))
        .await;
    assert_eq!(refused.status().as_u16(), 400);
}

#[tokio::test]
async fn faults_apply_only_after_auth() {
    let mock = spawn_mock().await;
    mock.control(
        Method::POST,
        "/_mock/faults",
        Some(json!({"status": 503, "count": 1})),
    )
    .await;

    let unauthenticated = mock
        .send_raw(None, &json!({"message": {"token": "d"}}))
        .await;
    assert_eq!(unauthenticated.status().as_u16(), 401);

    let token = mock.access_token().await;
    let (status, _) = mock.send(&token, &json!({"message": {"token": "d"}})).await;
    assert_eq!(status, 503);
}

#[tokio::test]
async fn revoked_tokens_get_401_until_a_new_one_is_fetched() {
    let mock = spawn_mock().await;
    let token = mock.access_token().await;
    let body = json!({"message": {"token": "d"}});
    assert_eq!(mock.send(&token, &body).await.0, 200);

    let revoked = mock
        .control(Method::POST, "/_mock/revoke_tokens", None)
        .await;
    assert_eq!(revoked.status().as_u16(), 204);

    let (status, answer) = mock.send(&token, &body).await;
    assert_eq!(status, 401);
    assert_eq!(answer["error"]["status"], "UNAUTHENTICATED");
    let fresh = mock.access_token().await;
    assert_eq!(mock.send(&fresh, &body).await.0, 200);
}

#[tokio::test]
async fn latency_delays_each_send() {
    let mock = spawn_mock().await;
    let token = mock.access_token().await;
    let set = mock
        .control(Method::POST, "/_mock/latency", Some(json!({"ms": 150})))
        .await;
    assert_eq!(set.status().as_u16(), 204);

    let started = Instant::now();
    let (status, _) = mock.send(&token, &json!({"message": {"token": "d"}})).await;

    assert_eq!(status, 200);
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn stats_count_accepted_rejected_and_tokens() {
    let mock = spawn_mock().await;
    let token = mock.access_token().await;
    for _ in 0..3 {
        mock.send(&token, &json!({"message": {"token": "d"}})).await;
    }
    mock.send(&token, &json!({"message": {}})).await;
    mock.send_raw(None, &json!({"message": {"token": "d"}}))
        .await;

    let stats = mock.stats().await;

    assert_eq!(
        stats,
        json!({"accepted": 3, "rejected": 2, "tokens_issued": 1})
    );
}
