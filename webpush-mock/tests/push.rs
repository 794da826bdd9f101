//! POST /push/{id}: subscriptions shaped like a browser's, a correctly encrypted message decrypted
//! and recorded with its headers, and each malformed request refused with RFC 8030's status.

mod common;

use common::{encrypt, spawn_mock, Sender, SUBJECT};
use serde_json::Value;
use webpush_mock::b64;

#[tokio::test]
async fn a_subscription_is_shaped_like_push_subscription_to_json() {
    let mock = spawn_mock().await;
    let sub = mock.subscribe().await;
    let fields: Vec<&String> = sub.json.as_object().unwrap().keys().collect();
    assert_eq!(fields, ["endpoint", "expirationTime", "keys"]);
    assert_eq!(sub.json["expirationTime"], Value::Null);
    assert!(sub.endpoint.starts_with(&format!("{}/push/", mock.url())));
    assert_eq!(sub.p256dh.len(), 65);
    assert_eq!(sub.p256dh[0], 4, "an uncompressed point");
    assert_eq!(sub.auth.len(), 16);
    let other = mock.subscribe().await;
    assert_ne!(other.endpoint, sub.endpoint);
    assert_ne!(other.p256dh, sub.p256dh);
    assert_eq!(mock.stats().await["subscriptions"], 2);
}

#[tokio::test]
async fn a_correctly_encrypted_message_is_decrypted_and_recorded() {
    let mock = spawn_mock().await;
    let sub = mock.subscribe().await;
    let sender = Sender::new();
    let answer = mock
        .send(
            &sender,
            &sub,
            r#"{"title":"Order filled"}"#,
            &[("ttl", "3600"), ("urgency", "high"), ("topic", "order-42")],
        )
        .await;
    assert_eq!(answer.status, 201, "{}", answer.body);
    assert_eq!(answer.headers["ttl"], "3600");
    let location = answer.headers["location"].to_str().unwrap().to_owned();
    assert!(
        location.starts_with(&format!("{}/message/", mock.url())),
        "{location}"
    );

    let messages = mock.messages().await;
    assert_eq!(messages.len(), 1);
    let message = &messages[0];
    assert_eq!(message["plaintext"], r#"{"title":"Order filled"}"#);
    assert_eq!(
        b64::decode(message["plaintext_base64url"].as_str().unwrap()).unwrap(),
        br#"{"title":"Order filled"}"#
    );
    assert_eq!(message["location"], location.as_str());
    assert_eq!(message["endpoint"], sub.endpoint.as_str());
    assert_eq!(message["ttl"], 3600);
    assert_eq!(message["urgency"], "high");
    assert_eq!(message["topic"], "order-42");
    assert_eq!(message["vapid"]["sub"], SUBJECT);
    assert_eq!(message["vapid"]["aud"], mock.url().as_str());
    assert_eq!(message["vapid"]["k"], sender.key.public_key.as_str());
    assert!(message["vapid"]["exp"].as_i64().unwrap() > common::unix_now());
    assert_eq!(message["headers"]["content-encoding"], "aes128gcm");
    assert!(message["headers"].get("authorization").is_none());
    assert_eq!(mock.stats().await["accepted"], 1);
}

#[tokio::test]
async fn a_push_without_payload_needs_no_content_encoding() {
    let mock = spawn_mock().await;
    let sub = mock.subscribe().await;
    let authorization = Sender::new().authorization(&Sender::claims(&sub.endpoint));
    let answer = mock
        .post(
            &sub.endpoint,
            &[("ttl", "0"), ("authorization", &authorization)],
            Vec::new(),
        )
        .await;
    assert_eq!(answer.status, 201, "{}", answer.body);
    let message = &mock.messages().await[0];
    assert_eq!(message["plaintext"], Value::Null);
    assert_eq!(message["urgency"], "normal");
}

#[tokio::test]
async fn each_malformed_header_is_a_400_saying_what_is_wrong() {
    let mock = spawn_mock().await;
    let sub = mock.subscribe().await;
    let sender = Sender::new();
    let topic_33 = "t".repeat(33);
    let cases = [
        ("ttl", "", "ttl_missing"),
        ("ttl", "-5", "bad_ttl"),
        ("ttl", "soon", "bad_ttl"),
        ("urgency", "urgent", "bad_urgency"),
        ("topic", topic_33.as_str(), "bad_topic"),
        ("topic", "no spaces", "bad_topic"),
    ];
    for (name, value, code) in cases {
        let answer = mock.send(&sender, &sub, "hi", &[(name, value)]).await;
        assert_eq!(
            (answer.status, answer.code()),
            (400, code),
            "{name}: {value:?}"
        );
        let message = answer.body["error"]["message"].as_str().unwrap();
        assert!(!message.is_empty());
    }
    assert!(mock.messages().await.is_empty());
}

#[tokio::test]
async fn a_body_must_be_aes128gcm_for_this_subscription_and_at_most_4096_bytes() {
    let mock = spawn_mock().await;
    let sub = mock.subscribe().await;
    let other = mock.subscribe().await;
    let sender = Sender::new();
    let legacy = mock
        .send(&sender, &sub, "hi", &[("content-encoding", "aesgcm")])
        .await;
    assert_eq!(
        (legacy.status, legacy.code()),
        (415, "bad_content_encoding")
    );

    let authorization = sender.authorization(&Sender::claims(&sub.endpoint));
    let headers = [
        ("ttl", "60"),
        ("content-encoding", "aes128gcm"),
        ("authorization", authorization.as_str()),
    ];
    let for_another = mock
        .post(&sub.endpoint, &headers, encrypt(&other, b"not yours"))
        .await;
    assert_eq!(
        (for_another.status, for_another.code()),
        (400, "decryption_failed")
    );
    let garbage = mock.post(&sub.endpoint, &headers, vec![7u8; 200]).await;
    assert_eq!((garbage.status, garbage.code()), (400, "decryption_failed"));
    let mut tampered = encrypt(&sub, b"hello");
    *tampered.last_mut().unwrap() ^= 1;
    let tampered = mock.post(&sub.endpoint, &headers, tampered).await;
    assert_eq!(
        (tampered.status, tampered.code()),
        (400, "decryption_failed")
    );

    // 86 bytes of header, 17 of tag and delimiter: 3993 bytes of plaintext make 4096.
    let fits = "x".repeat(4096 - 86 - 17);
    assert_eq!(mock.send(&sender, &sub, &fits, &[]).await.status, 201);
    let too_large = format!("{fits}x");
    let answer = mock.send(&sender, &sub, &too_large, &[]).await;
    assert_eq!((answer.status, answer.code()), (413, "payload_too_large"));
    assert_eq!(mock.messages().await.len(), 1);
}

#[tokio::test]
async fn an_unknown_subscription_is_404() {
    let mock = spawn_mock().await;
    let sub = mock.subscribe().await;
    let unknown = common::Sub {
        endpoint: format!("{}/push/no-such-subscription", mock.url()),
        ..sub
    };
    let answer = mock.send(&Sender::new(), &unknown, "hi", &[]).await;
    assert_eq!(
        (answer.status, answer.code()),
        (404, "subscription_not_found")
    );
}
