//! Provider tokens: missing, invalid and expired tokens; reuse of one token; the rule that a
//! connection changes its token at most once per interval (20 minutes by default).

mod common;

use std::time::Duration;

use common::{h2_client, sign, spawn_mock, spawn_mock_with, unix_now, BUNDLE_ID, DEVICE, TEAM_ID};
use serde_json::json;

#[tokio::test]
async fn a_request_without_a_token_is_missing_provider_token() {
    let mock = spawn_mock().await;
    let headers = [("apns-topic", BUNDLE_ID)];
    let answer = mock.push_on(&mock.http, DEVICE, None, &headers, "{}").await;
    assert_eq!(
        (answer.status, answer.reason()),
        (403, "MissingProviderToken")
    );
    let empty = mock
        .push_on(&mock.http, DEVICE, Some(""), &headers, "{}")
        .await;
    assert_eq!(
        (empty.status, empty.reason()),
        (403, "MissingProviderToken")
    );
}

#[tokio::test]
async fn tokens_not_signed_by_the_configured_key_are_invalid() {
    let mock = spawn_mock().await;
    let now = unix_now();
    let other = apns_mock::generate_auth_key().unwrap();
    let claims = json!({ "iss": TEAM_ID, "iat": now });
    let hs256 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"secret"),
    )
    .unwrap();
    let cases = [
        ("another key", sign(&claims, &mock.key_id, &other.p8_pem)),
        ("another kid", sign(&claims, "OTHERKEY12", &mock.p8_pem)),
        (
            "another team",
            sign(
                &json!({"iss": "OTHERTEAM1", "iat": now}),
                &mock.key_id,
                &mock.p8_pem,
            ),
        ),
        (
            "no iat",
            sign(&json!({"iss": TEAM_ID}), &mock.key_id, &mock.p8_pem),
        ),
        ("HS256", hs256),
        ("not a JWT", "abc.def".to_owned()),
    ];
    for (case, token) in cases {
        // A fresh connection each time, so the token rule does not interfere.
        let answer = mock
            .push_on(
                &h2_client(),
                DEVICE,
                Some(&token),
                &[("apns-topic", BUNDLE_ID)],
                "{}",
            )
            .await;
        assert_eq!(
            (answer.status, answer.reason()),
            (403, "InvalidProviderToken"),
            "{case}"
        );
    }
    assert_eq!(mock.stats().await["provider_tokens"], 0);
}

#[tokio::test]
async fn a_token_older_than_an_hour_is_expired() {
    let mock = spawn_mock().await;
    let old = mock.token_at(unix_now() - 3601);
    let answer = mock.alert(&old, &[]).await;
    assert_eq!(
        (answer.status, answer.reason()),
        (403, "ExpiredProviderToken")
    );
    let recent = mock.token_at(unix_now() - 3500);
    assert_eq!(mock.alert(&recent, &[]).await.status, 200);
}

#[tokio::test]
async fn one_token_is_reused_for_many_notifications() {
    let mock = spawn_mock().await;
    let token = mock.token();
    for _ in 0..5 {
        assert_eq!(mock.alert(&token, &[]).await.status, 200);
    }
    let stats = mock.stats().await;
    assert_eq!(stats["accepted"], 5);
    assert_eq!(stats["provider_tokens"], 1);
    assert_eq!(stats["token_changes"], 0);
    assert_eq!(stats["connections"], 1);
    let messages = mock.messages().await;
    assert!(messages
        .iter()
        .all(|m| m["provider_token"] == token.as_str()));
}

#[tokio::test]
async fn a_connection_may_change_its_token_only_twenty_minutes_after_the_last() {
    let mock = spawn_mock().await;
    let now = unix_now();
    let first = mock.token_at(now - 25 * 60);
    let too_soon = mock.token_at(now - 10 * 60);
    let later = mock.token_at(now);
    assert_eq!(mock.alert(&first, &[]).await.status, 200);

    let refused = mock.alert(&too_soon, &[]).await;
    assert_eq!(
        (refused.status, refused.reason()),
        (429, "TooManyProviderTokenUpdates")
    );
    assert_eq!(
        mock.alert(&first, &[]).await.status,
        200,
        "the connection keeps its token"
    );
    assert_eq!(mock.alert(&later, &[]).await.status, 200);

    let elsewhere = h2_client();
    let answer = mock
        .push_on(
            &elsewhere,
            DEVICE,
            Some(&too_soon),
            &[("apns-topic", BUNDLE_ID)],
            "{}",
        )
        .await;
    assert_eq!(answer.status, 200, "another connection has its own token");
    let stats = mock.stats().await;
    assert_eq!(stats["token_changes"], 1);
    assert_eq!(stats["provider_tokens"], 3);
    assert_eq!(stats["connections"], 2);
}

#[tokio::test]
async fn re_signing_a_token_per_request_is_too_many_updates_with_a_short_interval() {
    let mock =
        spawn_mock_with(|config| config.token_update_interval = Duration::from_secs(2)).await;
    let now = unix_now();
    assert_eq!(mock.alert(&mock.token_at(now - 3), &[]).await.status, 200);
    assert_eq!(
        mock.alert(&mock.token_at(now), &[]).await.status,
        200,
        "3 s after the last one, beyond the 2 s interval"
    );
    let resigned = mock.alert(&mock.token_at(now), &[]).await;
    assert_eq!(
        (resigned.status, resigned.reason()),
        (429, "TooManyProviderTokenUpdates"),
        "same iat, new signature: a new token"
    );
    assert_eq!(mock.stats().await["token_changes"], 1);
}
