//! Push subscriptions as a browser holds them: the user agent's P-256 key pair (the mock keeps
//! the private key to decrypt), the 16-byte auth secret, and the optional application server
//! key the subscription is restricted to; serialized as `PushSubscription.toJSON()`.

use aws_lc_rs::agreement::{PrivateKey, ECDH_P256};
use serde_json::{json, Value};

use crate::b64;
use crate::ece::{self, EceError};

/// One subscription; its id is the last segment of its endpoint.
pub(crate) struct Subscription {
    pub id: String,
    private_key: PrivateKey,
    /// The public key, uncompressed (65 bytes): `keys.p256dh`.
    p256dh: Vec<u8>,
    /// `keys.auth`.
    auth: [u8; 16],
    /// The `applicationServerKey` given at subscription (raw 65 bytes), if any.
    pub application_server_key: Option<Vec<u8>>,
}

impl Subscription {
    /// A new subscription with fresh keys, as `pushManager.subscribe()` creates one.
    pub(crate) fn generate(application_server_key: Option<Vec<u8>>) -> anyhow::Result<Self> {
        let private_key = PrivateKey::generate(&ECDH_P256)
            .map_err(|_| anyhow::anyhow!("P-256 key generation failed"))?;
        let p256dh = private_key
            .compute_public_key()
            .map_err(|_| anyhow::anyhow!("P-256 public key computation failed"))?
            .as_ref()
            .to_vec();
        let mut auth = [0u8; 16];
        rand::fill(&mut auth);
        let mut id = [0u8; 18];
        rand::fill(&mut id);
        Ok(Self {
            id: b64::encode(&id),
            private_key,
            p256dh,
            auth,
            application_server_key,
        })
    }

    /// The push resource URL under `base_url`.
    pub(crate) fn endpoint(&self, base_url: &str) -> String {
        format!("{base_url}/push/{}", self.id)
    }

    /// `PushSubscription.toJSON()`: `{"endpoint","expirationTime":null,"keys":{"p256dh","auth"}}`.
    pub(crate) fn to_json(&self, base_url: &str) -> Value {
        json!({
            "endpoint": self.endpoint(base_url),
            "expirationTime": null,
            "keys": {
                "p256dh": b64::encode(&self.p256dh),
                "auth": b64::encode(&self.auth),
            },
        })
    }

    /// Decrypts a message body sent to this subscription (RFC 8291).
    pub(crate) fn decrypt(&self, body: &[u8]) -> Result<Vec<u8>, EceError> {
        ece::decrypt(body, &self.private_key, &self.p256dh, &self.auth)
    }
}
