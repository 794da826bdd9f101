//! VAPID (RFC 8292): the `Authorization: vapid t=<JWT>, k=<public key>` a push service checks.
//! The JWT (ES256; `aud` = the push resource's origin, `exp`, `sub` = the operator's contact) is
//! signed once per origin and reused for half of its lifetime, so a burst of sends to one push
//! service costs one signature.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair as _};
use parking_lot::Mutex;
use serde::Serialize;

use super::b64;

/// Origins whose token is kept at most: real subscriptions name a handful of push services, and
/// a client cannot grow the cache without bound by registering endpoints on many hosts.
const MAX_CACHED_ORIGINS: usize = 1024;

/// The application server key, base64url of its uncompressed point: the browsers'
/// `applicationServerKey`, and VAPID's `k`.
pub fn public_key(key: &EcdsaKeyPair) -> String {
    b64::encode(key.public_key().as_ref())
}

/// Signs and caches the `Authorization` value per push service origin.
pub struct VapidSigner {
    key: EcdsaKeyPair,
    rng: SystemRandom,
    /// `k`, already encoded.
    public_key: String,
    subject: String,
    /// `exp` - now for a new token.
    expiry: Duration,
    /// Origin → the header value and when to sign a new one.
    cache: Mutex<HashMap<String, (Arc<str>, Instant)>>,
}

#[derive(Serialize)]
struct Claims<'a> {
    aud: &'a str,
    exp: u64,
    sub: &'a str,
}

/// `{"typ":"JWT","alg":"ES256"}`, encoded.
const HEADER: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJFUzI1NiJ9";

impl VapidSigner {
    pub fn new(key: EcdsaKeyPair, subject: String, expiry: Duration) -> VapidSigner {
        VapidSigner {
            public_key: public_key(&key),
            key,
            rng: SystemRandom::new(),
            subject,
            expiry,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// `k`: the public key push services check the token with.
    pub fn public_key(&self) -> &str {
        &self.public_key
    }

    /// The `Authorization` value for a push resource of `origin`, reused while it is fresh.
    pub fn authorization(&self, origin: &str) -> Arc<str> {
        let now = Instant::now();
        if let Some((value, renew_at)) = self.cache.lock().get(origin) {
            if now < *renew_at {
                return value.clone();
            }
        }
        let value: Arc<str> = self.sign(origin).into();
        let mut cache = self.cache.lock();
        if cache.len() >= MAX_CACHED_ORIGINS && !cache.contains_key(origin) {
            cache.retain(|_, (_, renew_at)| now < *renew_at);
            if cache.len() >= MAX_CACHED_ORIGINS {
                cache.clear();
            }
        }
        cache.insert(origin.to_owned(), (value.clone(), now + self.expiry / 2));
        value
    }

    /// Drops the cached token of `origin`: the push service refused it.
    pub fn forget(&self, origin: &str) {
        self.cache.lock().remove(origin);
    }

    fn sign(&self, origin: &str) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let claims = Claims {
            aud: origin,
            exp: (now + self.expiry).as_secs(),
            sub: &self.subject,
        };
        let claims = serde_json::to_vec(&claims).expect("serialising plain claims cannot fail");
        let signing_input = format!("{HEADER}.{}", b64::encode(&claims));
        // ES256 with the fixed encoding is JWS's r || s.
        let signature = self
            .key
            .sign(&self.rng, signing_input.as_bytes())
            .expect("ECDSA signing with a valid key does not fail");
        format!(
            "vapid t={signing_input}.{}, k={}",
            b64::encode(signature.as_ref()),
            self.public_key
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::{
        UnparsedPublicKey, ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING,
    };

    fn signer() -> VapidSigner {
        let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        VapidSigner::new(
            key,
            "mailto:ops@example.com".into(),
            Duration::from_secs(3600),
        )
    }

    #[test]
    fn the_token_is_es256_for_the_origin_and_reused_until_forgotten() {
        let signer = signer();
        let value = signer.authorization("https://push.example.net");
        let rest = value.strip_prefix("vapid t=").unwrap();
        let (jwt, k) = rest.split_once(", k=").unwrap();
        assert_eq!(k, signer.public_key());
        let (input, signature) = jwt.rsplit_once('.').unwrap();
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, b64::decode(k).unwrap())
            .verify(input.as_bytes(), &b64::decode(signature).unwrap())
            .expect("the signature verifies with k");
        let claims: serde_json::Value =
            serde_json::from_slice(&b64::decode(input.split('.').nth(1).unwrap()).unwrap())
                .unwrap();
        assert_eq!(claims["aud"], "https://push.example.net");
        assert_eq!(claims["sub"], "mailto:ops@example.com");
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let exp = claims["exp"].as_u64().unwrap();
        assert!(exp > now + 3500 && exp <= now + 3600, "{exp} vs {now}");

        assert!(Arc::ptr_eq(
            &value,
            &signer.authorization("https://push.example.net")
        ));
        assert_ne!(value, signer.authorization("https://other.example.net"));
        signer.forget("https://push.example.net");
        assert!(!Arc::ptr_eq(
            &value,
            &signer.authorization("https://push.example.net")
        ));
    }
}
