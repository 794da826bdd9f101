//! VAPID over HTTP: absent or unreadable credentials are 401, invalid ones 403, and the key a
//! push must carry is the subscription's own, else the mock's configured one, else any.

mod common;

use common::{spawn_mock, spawn_mock_with, unix_now, Sender};
use serde_json::{json, Value};
use webpush_mock::Config;

#[tokio::test]
async fn missing_or_unreadable_credentials_are_401_with_a_challenge() {
    let mock = spawn_mock().await;
    let sub = mock.subscribe().await;
    let sender = Sender::new();
    let cases = [
        ("", "vapid_missing"),
        ("Bearer abc", "vapid_scheme"),
        ("WebPush abc.def.ghi", "vapid_scheme"),
        ("vapid t=abc.def.ghi", "vapid_missing_param"),
        ("vapid t=abc.def.ghi, k=AAAA", "vapid_bad_key"),
    ];
    for (authorization, code) in cases {
        let answer = mock
            .send(&sender, &sub, "hi", &[("authorization", authorization)])
            .await;
        assert_eq!(
            (answer.status, answer.code()),
            (401, code),
            "{authorization:?}"
        );
        assert_eq!(answer.headers["www-authenticate"], "vapid");
    }
    let not_a_jwt = format!("vapid t=not-a-jwt, k={}", sender.key.public_key);
    let answer = mock
        .send(&sender, &sub, "hi", &[("authorization", &not_a_jwt)])
        .await;
    assert_eq!((answer.status, answer.code()), (401, "vapid_malformed_jwt"));
}

#[tokio::test]
async fn a_bad_signature_or_bad_claims_are_403() {
    let mock = spawn_mock().await;
    let sub = mock.subscribe().await;
    let sender = Sender::new();
    let impostor = Sender::new();
    let origin = mock.url();
    let now = unix_now();
    // Signed by the impostor's key but presenting the sender's public key.
    let forged = impostor
        .authorization(&Sender::claims(&sub.endpoint))
        .replace(&impostor.key.public_key, &sender.key.public_key);
    let claims = |aud: &str, exp: i64, sub: Option<&str>| {
        let mut claims = json!({ "aud": aud, "exp": exp });
        if let Some(sub) = sub {
            claims["sub"] = Value::from(sub);
        }
        sender.authorization(&claims)
    };
    let cases = [
        (forged, "vapid_bad_signature"),
        (
            claims("http://elsewhere:1", now + 60, Some("mailto:a@b.c")),
            "vapid_bad_audience",
        ),
        (
            claims(&format!("{origin}/"), now + 60, Some("mailto:a@b.c")),
            "vapid_bad_audience",
        ),
        (
            claims(&origin, now - 1, Some("mailto:a@b.c")),
            "vapid_bad_expiry",
        ),
        (
            claims(&origin, now + 25 * 3600, Some("mailto:a@b.c")),
            "vapid_bad_expiry",
        ),
        (
            claims(&origin, now + 60, Some("http://example.com")),
            "vapid_bad_subject",
        ),
        (claims(&origin, now + 60, None), "vapid_bad_subject"),
    ];
    for (authorization, code) in cases {
        let answer = mock
            .send(&sender, &sub, "hi", &[("authorization", &authorization)])
            .await;
        assert_eq!(
            (answer.status, answer.code()),
            (403, code),
            "{authorization}"
        );
    }
    let hs256 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &Sender::claims(&sub.endpoint),
        &jsonwebtoken::EncodingKey::from_secret(b"secret"),
    )
    .unwrap();
    let hs256 = format!("vapid t={hs256}, k={}", sender.key.public_key);
    let answer = mock
        .send(&sender, &sub, "hi", &[("authorization", &hs256)])
        .await;
    assert_eq!((answer.status, answer.code()), (403, "vapid_algorithm"));
    assert_eq!(mock.stats().await["rejected"], 8);
}

#[tokio::test]
async fn a_mock_configured_with_a_key_refuses_any_other_k() {
    let sender = Sender::new();
    let config = Config {
        vapid_public_key: Some(webpush_mock::parse_public_key(&sender.key.public_key).unwrap()),
        ..Config::default()
    };
    let mock = spawn_mock_with(config).await;
    let sub = mock.subscribe().await;
    assert_eq!(mock.send(&sender, &sub, "hi", &[]).await.status, 201);
    let stranger = mock.send(&Sender::new(), &sub, "hi", &[]).await;
    assert_eq!(
        (stranger.status, stranger.code()),
        (403, "vapid_key_mismatch")
    );
}

#[tokio::test]
async fn a_subscription_created_with_an_application_server_key_accepts_only_it() {
    let mock = spawn_mock().await;
    let owner = Sender::new();
    let restricted = mock
        .subscribe_with(Some(
            json!({"application_server_key": owner.key.public_key}),
        ))
        .await;
    let open = mock.subscribe().await;
    let stranger = Sender::new();
    let refused = mock.send(&stranger, &restricted, "hi", &[]).await;
    assert_eq!(
        (refused.status, refused.code()),
        (403, "vapid_key_mismatch")
    );
    assert_eq!(mock.send(&owner, &restricted, "hi", &[]).await.status, 201);
    assert_eq!(mock.send(&stranger, &open, "hi", &[]).await.status, 201);
}

#[tokio::test]
async fn a_public_url_sets_the_endpoints_and_the_audience() {
    let config = Config {
        public_url: Some("http://push.test:8443/".to_owned()),
        ..Config::default()
    };
    let mock = spawn_mock_with(config).await;
    let sub = mock.subscribe().await;
    let id = sub.endpoint.rsplit('/').next().unwrap().to_owned();
    assert_eq!(sub.endpoint, format!("http://push.test:8443/push/{id}"));
    // Reach it through the real address, signed for the public origin.
    let reachable = common::Sub {
        endpoint: format!("{}/push/{id}", mock.url()),
        ..sub
    };
    let sender = Sender::new();
    let claims = json!({"aud": "http://push.test:8443", "exp": unix_now() + 60, "sub": "https://example.com/contact"});
    let authorization = sender.authorization(&claims);
    let answer = mock
        .send(
            &sender,
            &reachable,
            "hi",
            &[("authorization", &authorization)],
        )
        .await;
    assert_eq!(answer.status, 201, "{}", answer.body);
}
