//! Who is calling: client JWTs (HS256, `sub` = user id, `exp` required) and producer keys
//! (compared in constant time).

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::config::AuthConfig;
use crate::ids::UserId;

/// Claims of a client token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClientClaims {
    /// The user id the token speaks for.
    pub sub: UserId,
    /// Expiry (unix seconds); tokens without it are refused.
    pub exp: u64,
    /// Topics this client may subscribe to; absent = any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topics: Option<Vec<String>>,
}

/// A producer, identified by the index of its key in `auth.producer_keys` (idempotency keys are
/// scoped per producer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProducerId(pub usize);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("missing bearer token")]
    Missing,
    #[error("token expired")]
    Expired,
    #[error("invalid token")]
    Invalid,
    /// Signed correctly, but the claims do not parse (a `sub` that is not a user id, say).
    #[error("token claims are malformed (sub must be a valid user id)")]
    BadClaims,
    #[error("client tokens cannot call the producer API")]
    ClientTokenOnProducerApi,
}

pub struct Auth {
    decoding: DecodingKey,
    encoding: EncodingKey,
    validation: Validation,
    producer_keys: Vec<Vec<u8>>,
    /// Per producer key, a stable name that does not reveal it (SHA-256 prefix): what scopes
    /// idempotency keys in a shared Redis.
    producer_names: Vec<String>,
}

impl Auth {
    pub fn new(cfg: &AuthConfig) -> Auth {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = 5;
        Auth {
            decoding: DecodingKey::from_secret(cfg.jwt_secret.as_bytes()),
            encoding: EncodingKey::from_secret(cfg.jwt_secret.as_bytes()),
            validation,
            producer_keys: cfg
                .producer_keys
                .iter()
                .filter(|k| !k.is_empty())
                .map(|k| k.as_bytes().to_vec())
                .collect(),
            producer_names: cfg
                .producer_keys
                .iter()
                .filter(|k| !k.is_empty())
                .map(|k| {
                    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, k.as_bytes());
                    d.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect()
                })
                .collect(),
        }
    }

    /// The producer's stable, non-secret name.
    pub fn producer_name(&self, p: ProducerId) -> &str {
        &self.producer_names[p.0]
    }

    pub fn verify_client(&self, token: &str) -> Result<ClientClaims, AuthError> {
        let data = jsonwebtoken::decode::<ClientClaims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
                jsonwebtoken::errors::ErrorKind::Json(_) => AuthError::BadClaims,
                _ => AuthError::Invalid,
            })?;
        Ok(data.claims)
    }

    pub fn verify_producer(&self, key: &str) -> Result<ProducerId, AuthError> {
        let given = key.as_bytes();
        let mut found = None;
        // Look at every key so the time taken does not tell which one (or how much of it) matched.
        for (i, k) in self.producer_keys.iter().enumerate() {
            if bool::from(k.as_slice().ct_eq(given)) {
                found = Some(ProducerId(i));
            }
        }
        match found {
            Some(p) => Ok(p),
            None if self.verify_client(key).is_ok() => Err(AuthError::ClientTokenOnProducerApi),
            None => Err(AuthError::Invalid),
        }
    }

    /// Mints a client token (the `switchboard token` command and tests).
    pub fn mint(&self, user: &UserId, ttl_secs: u64, topics: Option<Vec<String>>) -> String {
        let claims = ClientClaims {
            sub: user.clone(),
            exp: crate::time::unix_secs() + ttl_secs,
            topics,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 encoding of plain claims cannot fail")
    }
}

/// The token of an `Authorization: Bearer <token>` header value.
pub fn bearer(header: Option<&http::HeaderValue>) -> Option<&str> {
    let value = header?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() {
        Some(token.trim())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u1() -> UserId {
        "u1".parse().unwrap()
    }

    fn auth() -> Auth {
        Auth::new(&AuthConfig {
            jwt_secret: "s3cret".into(),
            producer_keys: vec!["p1".into(), "p2".into()],
        })
    }

    #[test]
    fn minted_token_verifies() {
        let a = auth();
        let t = a.mint(&u1(), 60, Some(vec!["news".into()]));
        let c = a.verify_client(&t).unwrap();
        assert_eq!(c.sub, u1());
        assert_eq!(c.topics.unwrap(), vec!["news".to_string()]);
    }

    #[test]
    fn expired_and_foreign_tokens_fail() {
        let a = auth();
        let claims = ClientClaims {
            sub: u1(),
            exp: crate::time::unix_secs() - 60,
            topics: None,
        };
        let t = jsonwebtoken::encode(&Header::default(), &claims, &a.encoding).unwrap();
        assert_eq!(a.verify_client(&t).unwrap_err(), AuthError::Expired);
        let other = Auth::new(&AuthConfig {
            jwt_secret: "other".into(),
            producer_keys: vec![],
        });
        assert_eq!(
            a.verify_client(&other.mint(&u1(), 60, None)).unwrap_err(),
            AuthError::Invalid
        );
    }

    #[test]
    fn a_subject_that_is_not_a_user_id_is_refused() {
        let a = auth();
        let claims = serde_json::json!({"sub": "a b", "exp": crate::time::unix_secs() + 60});
        let t = jsonwebtoken::encode(&Header::default(), &claims, &a.encoding).unwrap();
        assert_eq!(a.verify_client(&t).unwrap_err(), AuthError::BadClaims);
    }

    #[test]
    fn producer_keys_and_client_tokens_are_told_apart() {
        let a = auth();
        assert_eq!(a.verify_producer("p2").unwrap(), ProducerId(1));
        assert_eq!(a.verify_producer("nope").unwrap_err(), AuthError::Invalid);
        let client = a.mint(&u1(), 60, None);
        assert_eq!(
            a.verify_producer(&client).unwrap_err(),
            AuthError::ClientTokenOnProducerApi
        );
    }

    #[test]
    fn bearer_parsing() {
        let v = http::HeaderValue::from_static("Bearer abc");
        assert_eq!(bearer(Some(&v)), Some("abc"));
        let v = http::HeaderValue::from_static("Basic abc");
        assert_eq!(bearer(Some(&v)), None);
        assert_eq!(bearer(None), None);
    }
}
