//! Shared helpers: a mock on 127.0.0.1:0, subscriptions, and an application server that signs
//! VAPID tokens with jsonwebtoken and encrypts with the crate's RFC 8291 `encrypt`.
#![allow(dead_code)] // each test binary uses a different subset

use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::agreement::{PrivateKey, ECDH_P256};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::header::HeaderMap;
use reqwest::Method;
use serde_json::{json, Value};
use webpush_mock::{b64, Config, MockHandle, VapidKey};

pub const SUBJECT: &str = "mailto:ops@example.com";

pub struct TestMock {
    pub handle: MockHandle,
    pub http: reqwest::Client,
}

/// A mock that accepts any VAPID key.
pub async fn spawn_mock() -> TestMock {
    spawn_mock_with(Config::default()).await
}

pub async fn spawn_mock_with(config: Config) -> TestMock {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let handle = webpush_mock::spawn_with(listener, config)
        .await
        .expect("spawn");
    TestMock {
        handle,
        http: reqwest::Client::new(),
    }
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// A subscription as the browser hands it to the application: endpoint, p256dh, auth.
#[derive(Clone)]
pub struct Sub {
    pub json: Value,
    pub endpoint: String,
    pub p256dh: Vec<u8>,
    pub auth: Vec<u8>,
}

/// What one push answered.
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Answer {
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

/// An application server: a VAPID key and the claims it signs.
pub struct Sender {
    pub key: VapidKey,
}

impl Sender {
    pub fn new() -> Self {
        Self {
            key: webpush_mock::generate_vapid_key().expect("VAPID key"),
        }
    }

    /// `vapid t=<JWT>, k=<key>` over `claims`.
    pub fn authorization(&self, claims: &Value) -> String {
        let key = EncodingKey::from_ec_pem(self.key.private_pem.as_bytes()).expect("EC PEM");
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some("JWT".to_owned());
        let jwt = jsonwebtoken::encode(&header, claims, &key).expect("sign");
        format!("vapid t={jwt}, k={}", self.key.public_key)
    }

    /// Claims for `endpoint`'s origin, expiring in 12 hours, as libraries default.
    pub fn claims(endpoint: &str) -> Value {
        json!({ "aud": origin(endpoint), "exp": unix_now() + 12 * 3600, "sub": SUBJECT })
    }
}

pub fn origin(endpoint: &str) -> String {
    let after_scheme = endpoint.find("://").unwrap() + 3;
    let path = endpoint[after_scheme..].find('/').unwrap() + after_scheme;
    endpoint[..path].to_owned()
}

/// RFC 8291 encryption for `sub`, with a fresh ephemeral key and salt.
pub fn encrypt(sub: &Sub, plaintext: &[u8]) -> Vec<u8> {
    let ephemeral = PrivateKey::generate(&ECDH_P256).expect("ephemeral key");
    let salt: [u8; 16] = rand::random();
    webpush_mock::ece::encrypt(plaintext, &sub.p256dh, &sub.auth, &ephemeral, &salt)
        .expect("encrypt")
}

impl TestMock {
    pub fn url(&self) -> String {
        self.handle.url()
    }

    /// POST /_mock/subscriptions with an optional body.
    pub async fn subscribe_with(&self, body: Option<Value>) -> Sub {
        let mut request = self
            .http
            .post(format!("{}/_mock/subscriptions", self.url()));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("subscribe");
        assert_eq!(response.status().as_u16(), 201);
        let json: Value = response.json().await.expect("subscription JSON");
        Sub {
            endpoint: json["endpoint"].as_str().unwrap().to_owned(),
            p256dh: b64::decode(json["keys"]["p256dh"].as_str().unwrap()).unwrap(),
            auth: b64::decode(json["keys"]["auth"].as_str().unwrap()).unwrap(),
            json,
        }
    }

    pub async fn subscribe(&self) -> Sub {
        self.subscribe_with(None).await
    }

    /// POST to an endpoint with headers and a body.
    pub async fn post(&self, endpoint: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Answer {
        let mut request = self.http.post(endpoint).body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("push");
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

    /// Encrypts `plaintext` for `sub` and sends it as an application server does, with
    /// `TTL: 60` and `extra` headers (which may replace the defaults).
    pub async fn send(
        &self,
        sender: &Sender,
        sub: &Sub,
        plaintext: &str,
        extra: &[(&str, &str)],
    ) -> Answer {
        let authorization = sender.authorization(&Sender::claims(&sub.endpoint));
        let defaults = [
            ("ttl", "60"),
            ("content-encoding", "aes128gcm"),
            ("authorization", authorization.as_str()),
        ];
        let mut headers: Vec<(&str, &str)> = defaults
            .into_iter()
            .filter(|(name, _)| extra.iter().all(|(other, _)| other != name))
            .collect();
        headers.extend_from_slice(extra);
        self.post(&sub.endpoint, &headers, encrypt(sub, plaintext.as_bytes()))
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
