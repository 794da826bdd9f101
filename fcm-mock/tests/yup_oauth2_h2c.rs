//! The production client path, unmodified: yup-oauth2's ServiceAccountAuthenticator reads the key
//! file and fetches a token from the mock's /token; reqwest sends over HTTP/2 prior knowledge (h2c).

mod common;

use common::{spawn_mock, MESSAGING_SCOPE, PROJECT};
use serde_json::{json, Value};

#[tokio::test]
async fn yup_oauth2_token_and_reqwest_h2c_sends() {
    let mock = spawn_mock().await;
    let key_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(key_file.path(), &mock.key_json).unwrap();

    let key = yup_oauth2::read_service_account_key(key_file.path())
        .await
        .unwrap();
    let auth = yup_oauth2::ServiceAccountAuthenticator::builder(key)
        .build()
        .await
        .unwrap();
    let access = auth.token(&[MESSAGING_SCOPE]).await.unwrap();
    let bearer = access.token().unwrap().to_owned();
    assert!(!access.is_expired());

    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let url = format!("{}/v1/projects/{PROJECT}/messages:send", mock.url());
    let mut sends = tokio::task::JoinSet::new();
    for i in 0..50 {
        let request = client.post(&url).bearer_auth(&bearer).json(&json!({
            "message": {"token": format!("device-{i}"), "data": {"i": i.to_string()},
                        "android": {"priority": "high", "collapse_key": "c"}}
        }));
        sends.spawn(async move {
            let response = request.send().await.unwrap();
            let version = response.version();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap();
            (version, status, body)
        });
    }
    while let Some(result) = sends.join_next().await {
        let (version, status, body) = result.unwrap();
        assert_eq!(version, reqwest::Version::HTTP_2);
        assert_eq!(status, 200, "{body}");
        assert!(body["name"]
            .as_str()
            .unwrap()
            .starts_with("projects/demo-project/messages/"));
    }
    assert_eq!(mock.recorded().await.len(), 50);

    // The token is cached by yup-oauth2; a second call does not hit /token again.
    let again = auth.token(&[MESSAGING_SCOPE]).await.unwrap();
    assert_eq!(again.token(), Some(bearer.as_str()));
    assert_eq!(mock.stats().await["tokens_issued"], 1);

    // Errors arrive over h2 in Google's shape too.
    let response = client
        .post(&url)
        .bearer_auth("nope")
        .json(&json!({"message": {"token": "d"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status().as_u16(), 401);
}
