//! POST /token: the JWT-bearer grant with real RS256 assertions.

mod common;

use aws_lc_rs::encoding::AsDer;
use common::{claims, sign, spawn_mock, unix_now, MESSAGING_SCOPE};
use serde_json::json;

#[tokio::test]
async fn valid_assertion_gets_a_bearer_token() {
    let mock = spawn_mock().await;
    let assertion = sign(
        &claims(&mock.client_email, MESSAGING_SCOPE),
        &mock.private_key_pem,
    );

    let (status, body) = mock.token_request(&assertion).await;

    assert_eq!(status, 200, "{body}");
    assert!(body["access_token"].as_str().is_some_and(|t| t.len() > 20));
    assert_eq!(body["expires_in"], 3599);
    assert_eq!(body["token_type"], "Bearer");
}

#[tokio::test]
async fn cloud_platform_scope_among_others_is_accepted() {
    let mock = spawn_mock().await;
    let scope = "https://www.googleapis.com/auth/userinfo.email https://www.googleapis.com/auth/cloud-platform";
    let assertion = sign(&claims(&mock.client_email, scope), &mock.private_key_pem);

    let (status, body) = mock.token_request(&assertion).await;

    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn padded_base64_assertion_as_yup_oauth2_signs_is_accepted() {
    let mock = spawn_mock().await;
    let unpadded = sign(
        &claims(&mock.client_email, MESSAGING_SCOPE),
        &mock.private_key_pem,
    );
    let padded: Vec<String> = unpadded
        .split('.')
        .map(|part| format!("{part}{}", "=".repeat((4 - part.len() % 4) % 4)))
        .collect();
    // Re-sign over the padded header.payload, as yup-oauth2 does.
    let signing_input = format!("{}.{}", padded[0], padded[1]);
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(mock.private_key_pem.as_bytes()).unwrap();
    let signature = jsonwebtoken::crypto::sign(
        signing_input.as_bytes(),
        &key,
        jsonwebtoken::Algorithm::RS256,
    )
    .unwrap();
    let assertion = format!("{signing_input}.{signature}==");

    let (status, body) = mock.token_request(&assertion).await;

    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn assertion_signed_by_another_key_is_invalid_grant() {
    let mock = spawn_mock().await;
    let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let other = pem::encode(&pem::Pem::new(
        "PRIVATE KEY",
        pair.as_der().unwrap().as_ref().to_vec(),
    ));
    let assertion = sign(&claims(&mock.client_email, MESSAGING_SCOPE), &other);

    let (status, body) = mock.token_request(&assertion).await;

    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_grant");
    assert_eq!(body["error_description"], "Invalid JWT Signature.");
}

#[tokio::test]
async fn wrong_issuer_is_invalid_grant() {
    let mock = spawn_mock().await;
    let assertion = sign(
        &claims("someone@else.iam.gserviceaccount.com", MESSAGING_SCOPE),
        &mock.private_key_pem,
    );

    let (status, body) = mock.token_request(&assertion).await;

    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_grant");
}

#[tokio::test]
async fn expired_assertion_is_invalid_grant() {
    let mock = spawn_mock().await;
    let now = unix_now();
    let mut expired = claims(&mock.client_email, MESSAGING_SCOPE);
    expired["iat"] = json!(now - 4000);
    expired["exp"] = json!(now - 400);

    let (status, body) = mock
        .token_request(&sign(&expired, &mock.private_key_pem))
        .await;

    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_grant");
}

#[tokio::test]
async fn too_long_lived_assertion_is_invalid_grant() {
    let mock = spawn_mock().await;
    let mut long = claims(&mock.client_email, MESSAGING_SCOPE);
    long["exp"] = json!(unix_now() + 7200);

    let (status, body) = mock
        .token_request(&sign(&long, &mock.private_key_pem))
        .await;

    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
}

#[tokio::test]
async fn missing_or_foreign_scope_is_invalid_grant() {
    let mock = spawn_mock().await;
    let mut no_scope = claims(&mock.client_email, MESSAGING_SCOPE);
    no_scope.as_object_mut().unwrap().remove("scope");
    let foreign = claims(
        &mock.client_email,
        "https://www.googleapis.com/auth/devstorage.read_only",
    );

    for claims in [no_scope, foreign] {
        let (status, body) = mock
            .token_request(&sign(&claims, &mock.private_key_pem))
            .await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"], "invalid_grant");
    }
}

#[tokio::test]
async fn garbage_assertion_is_invalid_grant() {
    let mock = spawn_mock().await;

    let (status, body) = mock.token_request("not.a.jwt").await;

    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
}

#[tokio::test]
async fn other_grant_type_is_unsupported_grant_type() {
    let mock = spawn_mock().await;

    let response = mock
        .http
        .post(format!("{}/token", mock.url()))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();

    assert_eq!(response.status().as_u16(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], "unsupported_grant_type");
}

#[tokio::test]
async fn tokens_issued_are_counted() {
    let mock = spawn_mock().await;
    mock.access_token().await;
    mock.access_token().await;

    assert_eq!(mock.stats().await["tokens_issued"], 2);
}

#[tokio::test]
async fn pkcs1_private_key_in_the_key_file_is_accepted() {
    let generated: serde_json::Value =
        serde_json::from_str(&fcm_mock::generate_service_account("http://unused", "p").unwrap())
            .unwrap();
    let pkcs8 = pem::parse(generated["private_key"].as_str().unwrap()).unwrap();
    let pkcs1 = pem::encode(&pem::Pem::new(
        "RSA PRIVATE KEY",
        pkcs1_inside_pkcs8(pkcs8.contents()).to_vec(),
    ));
    let key = json!({"type": "service_account", "project_id": "p", "private_key": pkcs1,
                     "client_email": "legacy@p.iam.gserviceaccount.com",
                     "token_uri": "http://unused/token"});
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mock = fcm_mock::spawn(listener, &key.to_string()).await.unwrap();
    let assertion = sign(
        &claims("legacy@p.iam.gserviceaccount.com", MESSAGING_SCOPE),
        &pkcs1,
    );

    let response = reqwest::Client::new()
        .post(format!("{}/token", mock.url()))
        .form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", &assertion),
        ])
        .send()
        .await
        .unwrap();

    assert_eq!(response.status().as_u16(), 200);
    mock.shutdown().await;
}

/// The RSAPrivateKey (PKCS#1) DER inside a PKCS#8 PrivateKeyInfo: the content of its OCTET STRING.
fn pkcs1_inside_pkcs8(der: &[u8]) -> &[u8] {
    /// (tag, content, rest) of the DER element at the start of `der`.
    fn element(der: &[u8]) -> (u8, &[u8], &[u8]) {
        let (len, header) = match der[1] {
            n if n < 0x80 => (usize::from(n), 2),
            0x81 => (usize::from(der[2]), 3),
            0x82 => (usize::from(der[2]) << 8 | usize::from(der[3]), 4),
            other => panic!("unexpected DER length byte {other:#x}"),
        };
        (der[0], &der[header..header + len], &der[header + len..])
    }
    let (_, mut fields, _) = element(der); // PrivateKeyInfo SEQUENCE
    loop {
        let (tag, content, rest) = element(fields);
        if tag == 0x04 {
            return content;
        }
        fields = rest;
    }
}

#[tokio::test]
async fn shutdown_stops_the_server() {
    let mock = spawn_mock().await;
    let url = mock.url();
    mock.handle.shutdown().await;

    let result = reqwest::Client::new()
        .get(format!("{url}/_mock/stats"))
        .send()
        .await;

    assert!(result.is_err(), "server still answers after shutdown");
}
