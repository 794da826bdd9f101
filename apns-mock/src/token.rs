//! Provider authentication tokens as APNs checks them: the `authorization: bearer <JWT>` header,
//! the ES256 signature by the configured key, `kid`, `iss` and the one-hour age of `iat`; and
//! the per-connection rule that a token may change at most once every 20 minutes.

use std::sync::Mutex;

use axum::http::{header, HeaderMap};
use base64::alphabet::URL_SAFE;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use serde::Deserialize;

use crate::key::ProviderKey;
use crate::reason::Reason;

/// APNs refuses a token whose `iat` is more than one hour old.
pub const MAX_TOKEN_AGE_SECS: i64 = 3600;

/// JWS uses unpadded base64url; padding is tolerated as other JWT verifiers tolerate it.
const B64: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A provider token that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProviderToken {
    /// The JWT exactly as sent.
    pub jwt: String,
    /// Its `iat` claim (unix seconds).
    pub iat: i64,
}

#[derive(Deserialize)]
struct JwtHeader {
    alg: Option<String>,
    kid: Option<String>,
}

#[derive(Deserialize)]
struct JwtClaims {
    iss: Option<String>,
    iat: Option<serde_json::Number>,
}

/// Checks the `authorization` header of a request against `key` at unix time `now`.
pub(crate) fn verify(
    headers: &HeaderMap,
    key: &ProviderKey,
    now: i64,
) -> Result<ProviderToken, Reason> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(Reason::MissingProviderToken);
    };
    let value = value.to_str().map_err(|_| Reason::InvalidProviderToken)?;
    let jwt = match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
        None if value.eq_ignore_ascii_case("bearer") => "",
        _ => return Err(Reason::InvalidProviderToken),
    };
    if jwt.is_empty() {
        return Err(Reason::MissingProviderToken);
    }
    let iat = verify_jwt(jwt, key)?;
    if now - iat > MAX_TOKEN_AGE_SECS {
        return Err(Reason::ExpiredProviderToken);
    }
    Ok(ProviderToken {
        jwt: jwt.to_owned(),
        iat,
    })
}

/// Signature, `alg`, `kid` and `iss`; returns `iat`. Every failure is `InvalidProviderToken`,
/// as Apple answers unsigned tokens, other algorithms and unknown keys alike.
fn verify_jwt(jwt: &str, key: &ProviderKey) -> Result<i64, Reason> {
    let invalid = Reason::InvalidProviderToken;
    let mut parts = jwt.split('.');
    let (Some(header), Some(claims), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid);
    };
    let header: JwtHeader = decode_json(header).ok_or(invalid)?;
    if header.alg.as_deref() != Some("ES256") || header.kid.as_deref() != Some(&key.key_id) {
        return Err(invalid);
    }
    // The signed part is `header.claims` exactly as sent.
    let signed = &jwt[..jwt.len() - signature.len() - 1];
    let signature = B64.decode(signature).map_err(|_| invalid)?;
    if !key.verifies(signed.as_bytes(), &signature) {
        return Err(invalid);
    }
    let claims: JwtClaims = decode_json(claims).ok_or(invalid)?;
    if claims.iss.as_deref() != Some(&key.team_id) {
        return Err(invalid);
    }
    claims.iat.and_then(|iat| iat.as_i64()).ok_or(invalid)
}

fn decode_json<T: serde::de::DeserializeOwned>(segment: &str) -> Option<T> {
    serde_json::from_slice(&B64.decode(segment).ok()?).ok()
}

/// How a request's token relates to the one its connection used before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenUse {
    /// The first token of this connection.
    First,
    /// The token the connection already uses.
    Same,
    /// A new token, replacing the old one after the minimum interval.
    Changed,
}

/// The provider token one HTTP/2 connection uses. APNs ties a token to the connection it
/// arrives on: a connection may move to a new token at most once per `min_interval_secs`.
#[derive(Debug, Default)]
pub(crate) struct ConnectionToken {
    current: Mutex<Option<ProviderToken>>,
}

impl ConnectionToken {
    /// Adopts `token` on this connection, or refuses it with `TooManyProviderTokenUpdates`
    /// when its `iat` is less than `min_interval_secs` after the `iat` of the token in use
    /// (a re-signed token with the same `iat` is a change too: ES256 signatures differ).
    pub(crate) fn use_token(
        &self,
        token: &ProviderToken,
        min_interval_secs: i64,
    ) -> Result<TokenUse, Reason> {
        let mut current = self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match current.as_ref() {
            None => {
                *current = Some(token.clone());
                Ok(TokenUse::First)
            }
            Some(used) if used.jwt == token.jwt => Ok(TokenUse::Same),
            Some(used) if token.iat - used.iat >= min_interval_secs => {
                *current = Some(token.clone());
                Ok(TokenUse::Changed)
            }
            Some(_) => Err(Reason::TooManyProviderTokenUpdates),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(jwt: &str, iat: i64) -> ProviderToken {
        ProviderToken {
            jwt: jwt.to_owned(),
            iat,
        }
    }

    #[test]
    fn a_connection_changes_token_only_after_the_interval() {
        let connection = ConnectionToken::default();
        assert_eq!(
            connection.use_token(&token("a", 1000), 1200),
            Ok(TokenUse::First)
        );
        assert_eq!(
            connection.use_token(&token("a", 1000), 1200),
            Ok(TokenUse::Same)
        );
        assert_eq!(
            connection.use_token(&token("b", 1000), 1200),
            Err(Reason::TooManyProviderTokenUpdates)
        );
        assert_eq!(
            connection.use_token(&token("c", 2199), 1200),
            Err(Reason::TooManyProviderTokenUpdates)
        );
        assert_eq!(
            connection.use_token(&token("d", 2200), 1200),
            Ok(TokenUse::Changed)
        );
        assert_eq!(
            connection.use_token(&token("a", 1000), 1200),
            Err(Reason::TooManyProviderTokenUpdates),
            "going back to an older token is a change too"
        );
    }
}
