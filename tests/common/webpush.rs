//! webpush-mock, started in-process on its own port, accepting only the VAPID key it hands to
//! the router: a SEC1 `EC PRIVATE KEY` PEM, as `openssl ecparam -name prime256v1 -genkey`
//! writes it.

use std::path::{Path, PathBuf};

use aws_lc_rs::encoding::{AsDer, EcPrivateKeyRfc5915Der};
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::Engine as _;
use serde_json::Value;

use super::mock_api::MockApi;

pub struct WebPushMock {
    handle: Option<webpush_mock::MockHandle>,
    api: MockApi,
    /// The VAPID private key (SEC1 PEM) for `webpush.vapid_private_key`.
    pub key_path: PathBuf,
    /// The VAPID public key the mock requires, base64url.
    pub public_key: String,
}

impl std::ops::Deref for WebPushMock {
    type Target = MockApi;
    fn deref(&self) -> &MockApi {
        &self.api
    }
}

/// A fresh VAPID key written to `path` as SEC1 PEM; returns the public key, base64url.
pub fn write_vapid_key(path: &Path) -> String {
    let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let der: EcPrivateKeyRfc5915Der<'_> = key.private_key().as_der().unwrap();
    let pem = pem::encode(&pem::Pem::new("EC PRIVATE KEY", der.as_ref().to_vec()));
    std::fs::write(path, pem).unwrap();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.public_key().as_ref())
}

impl WebPushMock {
    pub async fn start(dir: &Path) -> WebPushMock {
        let key_path = dir.join("vapid.pem");
        let public_key = write_vapid_key(&key_path);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let config = webpush_mock::Config {
            vapid_public_key: Some(webpush_mock::parse_public_key(&public_key).unwrap()),
            ..webpush_mock::Config::default()
        };
        let handle = webpush_mock::spawn_with(listener, config).await.unwrap();
        WebPushMock {
            api: MockApi::new("webpush-mock", handle.url(), reqwest::Client::new()),
            handle: Some(handle),
            key_path,
            public_key,
        }
    }

    /// A new subscription, as a browser's `PushSubscription.toJSON()`.
    pub async fn subscribe(&self) -> Value {
        let r = self
            .http
            .post(format!("{}/_mock/subscriptions", self.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "webpush-mock /_mock/subscriptions");
        r.json().await.unwrap()
    }
}

impl Drop for WebPushMock {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(h.shutdown());
            }
        }
    }
}
