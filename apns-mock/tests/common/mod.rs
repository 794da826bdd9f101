//! Shared helpers: a mock on 127.0.0.1:0 with a fresh key, provider tokens signed the way a
//! provider signs them (jsonwebtoken, ES256), HTTP/2 prior-knowledge clients.
#![allow(dead_code)] // each test binary uses a different subset

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use apns_mock::{Config, MockHandle, ProviderKey};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::header::HeaderMap;
use reqwest::Method;
use serde_json::{json, Value};

pub const TEAM_ID: &str = "TEAM123456";
pub const BUNDLE_ID: &str = "com.example.app";
pub const DEVICE: &str = "6e1326f5b5d2cbbc9b3d5ae0a1c4ab8e0f7c3d9a2b1e4f5a6b7c8d9e0f1a2b3c";

/// A running mock plus what a provider needs to talk to it.
pub struct TestMock {
    pub handle: MockHandle,
    pub key_id: String,
    /// The `.p8` the mock trusts.
    pub p8_pem: String,
    /// One HTTP/2 connection's worth of client.
    pub http: reqwest::Client,
}

/// A reqwest client speaking HTTP/2 with prior knowledge; each client is its own connection.
pub fn h2_client() -> reqwest::Client {
    reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .expect("HTTP/2 client")
}

pub async fn spawn_mock() -> TestMock {
    spawn_mock_with(|_| {}).await
}

/// A mock whose [`Config`] `tune` may change before it starts.
pub async fn spawn_mock_with(tune: impl FnOnce(&mut Config)) -> TestMock {
    let generated = apns_mock::generate_auth_key().expect("generate key");
    let key = ProviderKey::from_pem(&generated.p8_pem, &generated.key_id, TEAM_ID).expect("key");
    let mut config = Config::new(key, vec![BUNDLE_ID.to_owned()]);
    tune(&mut config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let handle = apns_mock::spawn(listener, config).await.expect("spawn");
    TestMock {
        handle,
        key_id: generated.key_id,
        p8_pem: generated.p8_pem,
        http: h2_client(),
    }
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// Signs `claims` with ES256 and `header_kid` using a PKCS#8 PEM key.
pub fn sign(claims: &Value, kid: &str, p8_pem: &str) -> String {
    let key = EncodingKey::from_ec_pem(p8_pem.as_bytes()).expect("EC PEM");
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &key).expect("sign")
}

/// What one push answered.
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    /// `{"reason":…}` for errors, `Null` for an empty body.
    pub body: Value,
}

impl Answer {
    pub fn reason(&self) -> &str {
        self.body["reason"].as_str().unwrap_or("")
    }
}

impl TestMock {
    pub fn url(&self) -> String {
        self.handle.url()
    }

    /// A provider token with this `iat`, signed by the mock's key.
    pub fn token_at(&self, iat: i64) -> String {
        sign(
            &json!({ "iss": TEAM_ID, "iat": iat }),
            &self.key_id,
            &self.p8_pem,
        )
    }

    /// A fresh provider token.
    pub fn token(&self) -> String {
        self.token_at(unix_now())
    }

    /// POST /3/device/{device} on `client` with an optional bearer token, extra headers and body.
    pub async fn push_on(
        &self,
        client: &reqwest::Client,
        device: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: impl Into<reqwest::Body>,
    ) -> Answer {
        let mut request = client
            .post(format!("{}/3/device/{device}", self.url()))
            .body(body);
        if let Some(token) = token {
            request = request.header("authorization", format!("bearer {token}"));
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        answer(request.send().await.expect("push")).await
    }

    /// An alert to `DEVICE` for `BUNDLE_ID` on the default connection; `extra` headers add to
    /// or replace `apns-topic: BUNDLE_ID` and `apns-push-type: alert`.
    pub async fn alert(&self, token: &str, extra: &[(&str, &str)]) -> Answer {
        let mut headers: Vec<(&str, &str)> =
            [("apns-topic", BUNDLE_ID), ("apns-push-type", "alert")]
                .into_iter()
                .filter(|(name, _)| extra.iter().all(|(other, _)| other != name))
                .collect();
        headers.extend_from_slice(extra);
        self.push_on(
            &self.http,
            DEVICE,
            Some(token),
            &headers,
            r#"{"aps":{"alert":"hi"}}"#,
        )
        .await
    }

    pub async fn control(&self, method: Method, path: &str, body: Option<Value>) -> u16 {
        let mut request = self.http.request(method, format!("{}{path}", self.url()));
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.expect("control").status().as_u16()
    }

    pub async fn messages(&self) -> Vec<Value> {
        let body: Value = self
            .http
            .get(format!("{}/_mock/messages", self.url()))
            .send()
            .await
            .expect("GET /_mock/messages")
            .json()
            .await
            .expect("messages JSON");
        body["messages"].as_array().expect("messages array").clone()
    }

    pub async fn stats(&self) -> Value {
        self.http
            .get(format!("{}/_mock/stats", self.url()))
            .send()
            .await
            .expect("GET /_mock/stats")
            .json()
            .await
            .expect("stats JSON")
    }
}

pub async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.expect("body");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).expect("error body is JSON")
    };
    Answer {
        status,
        headers,
        body,
    }
}

/// Long enough for a test to tell a delayed answer from a prompt one.
pub const LATENCY: Duration = Duration::from_millis(300);
