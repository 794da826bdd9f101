//! Shared helpers: a mock on 127.0.0.1:0 with a fresh key, signed assertions, typed requests.
#![allow(dead_code)] // each test binary uses a different subset

use std::time::{SystemTime, UNIX_EPOCH};

use fcm_mock::MockHandle;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

pub const PROJECT: &str = "demo-project";
pub const MESSAGING_SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";

/// A running mock plus what a client needs to talk to it.
pub struct TestMock {
    pub handle: MockHandle,
    /// The service-account key JSON the mock trusts.
    pub key_json: String,
    pub client_email: String,
    pub private_key_pem: String,
    pub http: reqwest::Client,
}

pub async fn spawn_mock() -> TestMock {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let url = format!("http://{}", listener.local_addr().expect("local addr"));
    let key_json = fcm_mock::generate_service_account(&url, PROJECT).expect("generate key");
    let key: Value = serde_json::from_str(&key_json).expect("key is JSON");
    let handle = fcm_mock::spawn(listener, &key_json)
        .await
        .expect("spawn mock");
    assert_eq!(handle.url(), url);
    TestMock {
        handle,
        client_email: key["client_email"]
            .as_str()
            .expect("client_email")
            .to_owned(),
        private_key_pem: key["private_key"].as_str().expect("private_key").to_owned(),
        key_json,
        http: reqwest::Client::new(),
    }
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// Claims as yup-oauth2 and google-auth send them.
pub fn claims(iss: &str, scope: &str) -> Value {
    let now = unix_now();
    json!({ "iss": iss, "aud": "https://oauth2.googleapis.com/token", "scope": scope,
            "iat": now, "exp": now + 3595 })
}

/// Signs `claims` with RS256 and the given PKCS#8 PEM key.
pub fn sign(claims: &Value, private_key_pem: &str) -> String {
    let key = EncodingKey::from_rsa_pem(private_key_pem.as_bytes()).expect("RSA PEM");
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), claims, &key).expect("sign")
}

impl TestMock {
    pub fn url(&self) -> String {
        self.handle.url()
    }

    pub fn send_url(&self) -> String {
        format!("{}/v1/projects/{PROJECT}/messages:send", self.url())
    }

    /// POST /token with a JWT-bearer grant; returns (status, body).
    pub async fn token_request(&self, assertion: &str) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}/token", self.url()))
            .form(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("assertion", assertion),
            ])
            .send()
            .await
            .expect("POST /token");
        let status = response.status().as_u16();
        (status, response.json().await.expect("token answer is JSON"))
    }

    /// A valid access token obtained the way a client obtains one.
    pub async fn access_token(&self) -> String {
        let assertion = sign(
            &claims(&self.client_email, MESSAGING_SCOPE),
            &self.private_key_pem,
        );
        let (status, body) = self.token_request(&assertion).await;
        assert_eq!(status, 200, "{body}");
        body["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned()
    }

    /// POST messages:send with `body`; returns the raw response.
    pub async fn send_raw(&self, token: Option<&str>, body: &Value) -> reqwest::Response {
        let mut request = self.http.post(self.send_url()).json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.expect("POST messages:send")
    }

    /// POST messages:send; returns (status, body).
    pub async fn send(&self, token: &str, body: &Value) -> (u16, Value) {
        let response = self.send_raw(Some(token), body).await;
        let status = response.status().as_u16();
        (status, response.json().await.expect("send answer is JSON"))
    }

    pub async fn control(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> reqwest::Response {
        let mut request = self.http.request(method, format!("{}{path}", self.url()));
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.expect("control request")
    }

    pub async fn recorded(&self) -> Vec<Value> {
        let response = self
            .control(reqwest::Method::GET, "/_mock/messages", None)
            .await;
        let body: Value = response.json().await.expect("messages JSON");
        body["messages"].as_array().expect("messages array").clone()
    }

    pub async fn stats(&self) -> Value {
        let response = self
            .control(reqwest::Method::GET, "/_mock/stats", None)
            .await;
        response.json().await.expect("stats JSON")
    }
}

/// The FcmError errorCode of a Google error body, if any.
pub fn fcm_error_code(body: &Value) -> Option<&str> {
    body["error"]["details"]
        .as_array()?
        .iter()
        .find(|d| d["@type"] == "type.googleapis.com/google.firebase.fcm.v1.FcmError")?["errorCode"]
        .as_str()
}
