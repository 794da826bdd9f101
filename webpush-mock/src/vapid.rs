//! VAPID (RFC 8292) as a push service checks it: `Authorization: vapid t=<JWT>, k=<key>`, the
//! ES256 signature by `k`, `aud` = the push resource's origin, `exp` within 24 hours, `sub` a
//! `mailto:` or `https:` URI, and `k` equal to the application server key the subscription
//! is restricted to.

use aws_lc_rs::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};
use serde::{Deserialize, Serialize};

use crate::b64;
use crate::ece::PUBLIC_KEY_LEN;

/// RFC 8292 §2: `exp` must not be more than 24 hours after the request.
pub const MAX_EXP_SECS: i64 = 24 * 60 * 60;

/// The claims of a verified VAPID token, as `GET /_mock/messages` shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VapidClaims {
    /// The contact URI (`mailto:` or `https:`).
    pub sub: String,
    /// The push resource's origin.
    pub aud: String,
    /// Expiry, unix seconds.
    pub exp: i64,
    /// The application server's public key, base64url as sent.
    pub k: String,
}

/// Why a push request's VAPID credentials were refused; [`VapidError::status`] says 401 or 403.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VapidError {
    /// No `Authorization` header.
    #[error("no Authorization header; this push service requires VAPID (RFC 8292): Authorization: vapid t=<JWT>, k=<public key>")]
    Missing,
    /// Another scheme (`WebPush`, `Bearer`, …).
    #[error(
        "the Authorization scheme is {0:?}; only RFC 8292's \"vapid t=<JWT>, k=<key>\" is accepted"
    )]
    Scheme(String),
    /// `t` or `k` absent.
    #[error("the vapid credentials have no {0} parameter")]
    MissingParam(&'static str),
    /// `k` is not an uncompressed P-256 point.
    #[error("k is not a base64url uncompressed P-256 public key (65 bytes starting with 0x04)")]
    BadKey,
    /// `t` is not a JWT.
    #[error("t is not a JWT (base64url header.claims.signature with JSON header and claims)")]
    Malformed,
    /// `alg` other than ES256.
    #[error("the JWT alg is {0:?}; VAPID requires ES256")]
    Algorithm(String),
    /// The signature does not verify with `k`.
    #[error("the JWT signature does not verify with the public key k")]
    Signature,
    /// `aud` is not the push resource's origin.
    #[error("aud is {found:?}; it must be the push resource's origin {expected:?}")]
    Audience {
        /// The claim as sent.
        found: String,
        /// The origin of the endpoint.
        expected: String,
    },
    /// `exp` absent, past, or beyond 24 hours.
    #[error("exp must be a time within the next 24 hours (unix seconds); got {exp:?} at {now}")]
    Expiry {
        /// The claim as sent.
        exp: Option<i64>,
        /// The push service's clock.
        now: i64,
    },
    /// `sub` absent or not a contact URI.
    #[error("sub must be a mailto: or https: URI; got {0:?}")]
    Subject(Option<String>),
    /// `k` is not the key the subscription is restricted to.
    #[error("k is not the application server key this subscription is restricted to")]
    KeyMismatch,
}

impl VapidError {
    /// 401 when the request carries no readable VAPID credentials, 403 when they are invalid.
    pub fn status(&self) -> u16 {
        match self {
            Self::Missing
            | Self::Scheme(_)
            | Self::MissingParam(_)
            | Self::BadKey
            | Self::Malformed => 401,
            _ => 403,
        }
    }

    /// A stable snake_case code for the error body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Missing => "vapid_missing",
            Self::Scheme(_) => "vapid_scheme",
            Self::MissingParam(_) => "vapid_missing_param",
            Self::BadKey => "vapid_bad_key",
            Self::Malformed => "vapid_malformed_jwt",
            Self::Algorithm(_) => "vapid_algorithm",
            Self::Signature => "vapid_bad_signature",
            Self::Audience { .. } => "vapid_bad_audience",
            Self::Expiry { .. } => "vapid_bad_expiry",
            Self::Subject(_) => "vapid_bad_subject",
            Self::KeyMismatch => "vapid_key_mismatch",
        }
    }
}

#[derive(Deserialize)]
struct JwtHeader {
    alg: Option<String>,
}

#[derive(Deserialize)]
struct JwtClaims {
    aud: Option<String>,
    exp: Option<serde_json::Number>,
    sub: Option<String>,
}

/// Verifies an `Authorization` header value for a push resource of origin `audience` at unix
/// time `now`; `restricted_to` is the raw application server key the subscription accepts
/// (`None`: any key).
pub fn verify(
    authorization: Option<&str>,
    audience: &str,
    restricted_to: Option<&[u8]>,
    now: i64,
) -> Result<VapidClaims, VapidError> {
    let authorization = authorization
        .map(str::trim)
        .filter(|value| !value.is_empty())
        .ok_or(VapidError::Missing)?;
    let (scheme, params) = authorization
        .split_once(char::is_whitespace)
        .unwrap_or((authorization, ""));
    if !scheme.eq_ignore_ascii_case("vapid") {
        return Err(VapidError::Scheme(scheme.to_owned()));
    }
    let jwt = param(params, "t").ok_or(VapidError::MissingParam("t"))?;
    let k = param(params, "k").ok_or(VapidError::MissingParam("k"))?;
    let key = b64::decode(k).map_err(|_| VapidError::BadKey)?;
    if key.len() != PUBLIC_KEY_LEN || key[0] != 0x04 {
        return Err(VapidError::BadKey);
    }
    if restricted_to.is_some_and(|allowed| allowed != key.as_slice()) {
        return Err(VapidError::KeyMismatch);
    }
    let claims = verify_jwt(jwt, &key)?;
    let aud = claims.aud.unwrap_or_default();
    if aud != audience {
        return Err(VapidError::Audience {
            found: aud,
            expected: audience.to_owned(),
        });
    }
    let exp = claims.exp.and_then(|exp| exp.as_i64());
    let Some(exp) = exp.filter(|exp| *exp > now && *exp - now <= MAX_EXP_SECS) else {
        return Err(VapidError::Expiry { exp, now });
    };
    let sub = match claims.sub {
        Some(sub) if sub.starts_with("mailto:") || sub.starts_with("https:") => sub,
        other => return Err(VapidError::Subject(other)),
    };
    Ok(VapidClaims {
        sub,
        aud,
        exp,
        k: k.to_owned(),
    })
}

/// The value of `name=value` in a comma-separated auth-param list (quotes removed).
fn param<'p>(params: &'p str, name: &str) -> Option<&'p str> {
    params.split(',').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then(|| value.trim().trim_matches('"'))
            .filter(|v| !v.is_empty())
    })
}

/// Checks `alg` and the ES256 signature by `key`; returns the claims.
fn verify_jwt(jwt: &str, key: &[u8]) -> Result<JwtClaims, VapidError> {
    let mut parts = jwt.split('.');
    let (Some(header), Some(claims), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(VapidError::Malformed);
    };
    let header: JwtHeader = decode_json(header).ok_or(VapidError::Malformed)?;
    let claims: JwtClaims = decode_json(claims).ok_or(VapidError::Malformed)?;
    let alg = header.alg.unwrap_or_default();
    if alg != "ES256" {
        return Err(VapidError::Algorithm(alg));
    }
    let signed = &jwt[..jwt.len() - signature.len() - 1];
    let signature = b64::decode(signature).map_err(|_| VapidError::Malformed)?;
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, key)
        .verify(signed.as_bytes(), &signature)
        .map_err(|_| VapidError::Signature)?;
    Ok(claims)
}

fn decode_json<T: serde::de::DeserializeOwned>(segment: &str) -> Option<T> {
    serde_json::from_slice(&b64::decode(segment).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8292 §2.4's example: its JWT, signed by its key, for https://push.example.net.
    const RFC_JWT: &str = concat!(
        "eyJ0eXAiOiJKV1QiLCJhbGciOiJFUzI1NiJ9.eyJhdWQiOiJodHRwczovL3B1c2guZXhhbXBsZS5uZXQiLCJleHAiOjE0NTM1MjM3NjgsInN1YiI6Im1haWx0bzpwdXNoQGV4YW1wbGUuY29tIn0",
        ".i3CYb7t4xfxCDquptFOepC9GAu_HLGkMlMuCGSK2rpiUfnK9ojFwDXb1JrErtmysazNjjvW2L9OkSSHzvoD1oA"
    );
    const RFC_KEY: &str =
        "BA1Hxzyi1RUM1b5wjxsn7nGxAszw2u61m164i3MrAIxHF6YK5h4SDYic-dRuU_RCPCfA5aq9ojSwk5Y2EmClBPs";
    const RFC_EXP: i64 = 1_453_523_768;
    const AUD: &str = "https://push.example.net";

    fn header() -> String {
        format!("vapid t={RFC_JWT}, k={RFC_KEY}")
    }

    #[test]
    fn the_rfc_8292_example_verifies_an_hour_before_it_expires() {
        let claims = verify(Some(&header()), AUD, None, RFC_EXP - 3600).unwrap();
        assert_eq!(claims.sub, "mailto:push@example.com");
        assert_eq!(claims.aud, AUD);
        assert_eq!(claims.exp, RFC_EXP);
        let key = b64::decode(RFC_KEY).unwrap();
        assert!(verify(Some(&header()), AUD, Some(&key), RFC_EXP - 3600).is_ok());
    }

    #[test]
    fn the_rfc_example_is_refused_for_each_broken_rule() {
        let now = RFC_EXP - 3600;
        let check = |value: &str, aud: &str, now: i64| verify(Some(value), aud, None, now);
        let expired = check(&header(), AUD, RFC_EXP).unwrap_err();
        assert!(matches!(expired, VapidError::Expiry { .. }));
        let too_far = check(&header(), AUD, RFC_EXP - MAX_EXP_SECS - 1).unwrap_err();
        assert!(matches!(too_far, VapidError::Expiry { .. }));
        let other_origin = check(&header(), "https://other.example", now).unwrap_err();
        assert!(matches!(other_origin, VapidError::Audience { .. }));
        let tampered = header().replace(".i3CYb7", ".i3CYb8");
        assert_eq!(check(&tampered, AUD, now), Err(VapidError::Signature));
        let legacy = format!("WebPush {RFC_JWT}");
        assert_eq!(check(&legacy, AUD, now).unwrap_err().status(), 401);
        let other_key = [4u8; 65];
        let restricted = verify(Some(&header()), AUD, Some(&other_key), now);
        assert_eq!(restricted, Err(VapidError::KeyMismatch));
        assert_eq!(VapidError::KeyMismatch.status(), 403);
    }
}
