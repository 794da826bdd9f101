//! Who is calling: client JWTs (HS256 only, `sub` = user id, `exp` required, `nbf` checked;
//! `iss` / `aud` when configured) and producer keys (compared in constant time).

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

/// Seconds of clock skew allowed on `exp` and `nbf`.
pub const LEEWAY_SECS: u64 = 5;

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
    #[error("token not valid yet (nbf)")]
    NotYetValid,
    #[error("invalid token")]
    Invalid,
    /// Signed correctly, but the claims do not parse (a `sub` that is not a user id, say).
    #[error("token claims are malformed (sub must be a valid user id)")]
    BadClaims,
    #[error("client tokens cannot call the producer API")]
    ClientTokenOnProducerApi,
    /// A producer key or a client token on the console: valid, but not an operator's.
    #[error("only an operator key (auth.operator_keys) opens the console")]
    NotAnOperator,
    /// `auth.operator_keys` is empty: nobody may open the console.
    #[error("the console is closed on this node (auth.operator_keys is empty)")]
    ConsoleClosed,
}

pub struct Auth {
    decoding: DecodingKey,
    encoding: EncodingKey,
    validation: Validation,
    producer_keys: Vec<Vec<u8>>,
    /// `auth.operator_keys`: what opens the console.
    operator_keys: Vec<Vec<u8>>,
    /// Per producer key, a stable name that does not reveal it (SHA-256 prefix): what scopes
    /// idempotency keys in a shared Redis.
    producer_names: Vec<String>,
    /// Put in minted tokens, as `auth.issuer` / `auth.audience` require.
    issuer: Option<String>,
    audience: Option<String>,
}

/// The claims of a minted token.
#[derive(Serialize)]
struct Minted<'a> {
    sub: &'a str,
    exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    topics: Option<Vec<String>>,
}

impl Auth {
    pub fn new(cfg: &AuthConfig) -> Auth {
        let issuer = Some(cfg.issuer.clone()).filter(|s| !s.is_empty());
        let audience = Some(cfg.audience.clone()).filter(|s| !s.is_empty());
        // `Validation::new` allows HS256 alone: `none`, RS*, ES* and HS384/512 are refused.
        let mut validation = Validation::new(Algorithm::HS256);
        let mut required = vec!["exp", "sub"];
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        // Unset: a token's `aud` is not ours to judge (the library would refuse any).
        validation.validate_aud = audience.is_some();
        if let Some(iss) = &issuer {
            validation.set_issuer(&[iss]);
            required.push("iss");
        }
        if let Some(aud) = &audience {
            validation.set_audience(&[aud]);
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
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
            operator_keys: cfg
                .operator_keys
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
            issuer,
            audience,
        }
    }

    /// The producer's stable, non-secret name.
    pub fn producer_name(&self, p: ProducerId) -> &str {
        &self.producer_names[p.0]
    }

    /// Every producer's name, in `ProducerId` order.
    pub fn producer_names(&self) -> &[String] {
        &self.producer_names
    }

    pub fn verify_client(&self, token: &str) -> Result<ClientClaims, AuthError> {
        let data = jsonwebtoken::decode::<ClientClaims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
                jsonwebtoken::errors::ErrorKind::ImmatureSignature => AuthError::NotYetValid,
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

    /// Whether `key` is an operator key; a producer key or a client token is told apart
    /// (403), so a caller learns it holds the wrong kind of credential, not that it is unknown.
    pub fn verify_operator(&self, key: &str) -> Result<(), AuthError> {
        if self.operator_keys.is_empty() {
            return Err(AuthError::ConsoleClosed);
        }
        let given = key.as_bytes();
        let mut found = false;
        // Every key is compared, so the time taken does not tell which one matched.
        for k in &self.operator_keys {
            found |= bool::from(k.as_slice().ct_eq(given));
        }
        if found {
            Ok(())
        } else if self.verify_producer(key).is_ok() || self.verify_client(key).is_ok() {
            Err(AuthError::NotAnOperator)
        } else {
            Err(AuthError::Invalid)
        }
    }

    /// Mints a client token (the `switchboard token` command and tests).
    pub fn mint(&self, user: &UserId, ttl_secs: u64, topics: Option<Vec<String>>) -> String {
        let claims = Minted {
            sub: user.as_str(),
            exp: crate::time::unix_secs() + ttl_secs,
            iss: self.issuer.as_deref(),
            aud: self.audience.as_deref(),
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
            ..AuthConfig::default()
        })
    }

    fn signed(a: &Auth, claims: serde_json::Value) -> String {
        jsonwebtoken::encode(&Header::default(), &claims, &a.encoding).unwrap()
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
            ..AuthConfig::default()
        });
        assert_eq!(
            a.verify_client(&other.mint(&u1(), 60, None)).unwrap_err(),
            AuthError::Invalid
        );
    }

    #[test]
    fn nbf_is_checked_with_the_leeway_of_exp() {
        let a = auth();
        let now = crate::time::unix_secs();
        let at = |nbf: u64| {
            signed(
                &a,
                serde_json::json!({"sub": "u1", "exp": now + 60, "nbf": nbf}),
            )
        };
        assert_eq!(
            a.verify_client(&at(now + 60)).unwrap_err(),
            AuthError::NotYetValid
        );
        assert!(a.verify_client(&at(now + LEEWAY_SECS - 1)).is_ok());
        assert!(a.verify_client(&at(now - 60)).is_ok());
    }

    #[test]
    fn issuer_and_audience_are_checked_only_when_configured() {
        let now = crate::time::unix_secs();
        let claims = |extra: serde_json::Value| {
            let mut c = serde_json::json!({"sub": "u1", "exp": now + 60});
            c.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            c
        };
        let open = auth();
        let any = signed(&open, claims(serde_json::json!({"iss": "x", "aud": "y"})));
        assert!(open.verify_client(&any).is_ok(), "unset: ignored");

        let strict = Auth::new(&AuthConfig {
            jwt_secret: "s3cret".into(),
            issuer: "https://login.example".into(),
            audience: "switchboard".into(),
            ..AuthConfig::default()
        });
        let ok = serde_json::json!({"iss": "https://login.example", "aud": "switchboard"});
        assert!(strict.verify_client(&signed(&strict, claims(ok))).is_ok());
        for bad in [
            serde_json::json!({"iss": "https://evil.example", "aud": "switchboard"}),
            serde_json::json!({"iss": "https://login.example", "aud": "other"}),
            serde_json::json!({"aud": "switchboard"}),
            serde_json::json!({"iss": "https://login.example"}),
        ] {
            let t = signed(&strict, claims(bad.clone()));
            assert_eq!(
                strict.verify_client(&t).unwrap_err(),
                AuthError::Invalid,
                "{bad}"
            );
        }
        assert!(
            strict.verify_client(&strict.mint(&u1(), 60, None)).is_ok(),
            "minted tokens carry both"
        );
    }

    #[test]
    fn a_subject_that_is_not_a_user_id_is_refused() {
        let a = auth();
        let t = signed(
            &a,
            serde_json::json!({"sub": "a b", "exp": crate::time::unix_secs() + 60}),
        );
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
    fn only_operator_keys_open_the_console() {
        let closed = auth();
        assert_eq!(
            closed.verify_operator("p1").unwrap_err(),
            AuthError::ConsoleClosed
        );
        let a = Auth::new(&AuthConfig {
            jwt_secret: "s3cret".into(),
            producer_keys: vec!["p1".into()],
            operator_keys: vec!["op".into(), String::new()],
            ..AuthConfig::default()
        });
        assert!(a.verify_operator("op").is_ok());
        assert_eq!(
            a.verify_operator("p1").unwrap_err(),
            AuthError::NotAnOperator
        );
        let client = a.mint(&u1(), 60, None);
        assert_eq!(
            a.verify_operator(&client).unwrap_err(),
            AuthError::NotAnOperator
        );
        assert_eq!(a.verify_operator("").unwrap_err(), AuthError::Invalid);
        assert_eq!(a.verify_operator("nope").unwrap_err(), AuthError::Invalid);
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
