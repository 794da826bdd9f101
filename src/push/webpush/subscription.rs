//! A browser's push subscription: the push resource (`endpoint`) and the keys its messages are
//! encrypted for. Parsed once, from `PushSubscription.toJSON()` or from the canonical token the
//! device registry keeps, so a `Subscription` always holds a usable endpoint and keys.

use aws_lc_rs::signature::{ParsedPublicKey, ECDSA_P256_SHA256_FIXED};
use serde::{Deserialize, Serialize};
use url::Url;

use super::b64;

/// An uncompressed P-256 point: `0x04 | x | y`.
pub const P256DH_LEN: usize = 65;
/// RFC 8291 §3.2: the authentication secret is 16 bytes.
pub const AUTH_LEN: usize = 16;
/// Longest endpoint accepted; real ones are a few hundred bytes.
const MAX_ENDPOINT_LEN: usize = 2048;

/// Why a subscription was refused; the message says what the client sent wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadSubscription {
    #[error("subscription is not {{\"endpoint\",\"keys\":{{\"p256dh\",\"auth\"}}}}: {0}")]
    Shape(String),
    #[error("subscription.endpoint must be an http:// or https:// URL of at most 2048 bytes, without credentials")]
    Endpoint,
    #[error(
        "subscription.keys.p256dh must be base64url of a 65-byte uncompressed P-256 public key"
    )]
    P256dh,
    #[error("subscription.keys.auth must be base64url of 16 bytes")]
    Auth,
}

/// A push subscription whose endpoint and keys were checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    endpoint: Url,
    p256dh: [u8; P256DH_LEN],
    auth: [u8; AUTH_LEN],
}

/// The JSON form, as browsers give it (`expirationTime` and any other member are ignored).
#[derive(Serialize, Deserialize)]
struct Wire<'a> {
    #[serde(borrow)]
    endpoint: std::borrow::Cow<'a, str>,
    keys: WireKeys<'a>,
}

#[derive(Serialize, Deserialize)]
struct WireKeys<'a> {
    #[serde(borrow)]
    p256dh: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    auth: std::borrow::Cow<'a, str>,
}

impl Subscription {
    /// From a JSON value shaped as `PushSubscription.toJSON()`.
    pub fn from_json(value: &serde_json::Value) -> Result<Subscription, BadSubscription> {
        let wire: Wire<'_> =
            Wire::deserialize(value).map_err(|e| BadSubscription::Shape(e.to_string()))?;
        Self::from_wire(&wire)
    }

    /// From the canonical token ([`Subscription::to_token`]).
    pub fn from_token(token: &str) -> Result<Subscription, BadSubscription> {
        let wire: Wire<'_> =
            serde_json::from_str(token).map_err(|e| BadSubscription::Shape(e.to_string()))?;
        Self::from_wire(&wire)
    }

    fn from_wire(wire: &Wire<'_>) -> Result<Subscription, BadSubscription> {
        let endpoint = parse_endpoint(&wire.endpoint).ok_or(BadSubscription::Endpoint)?;
        let p256dh: [u8; P256DH_LEN] = b64::decode(wire.keys.p256dh.trim())
            .ok()
            .and_then(|raw| raw.try_into().ok())
            .filter(|raw: &[u8; P256DH_LEN]| raw[0] == 0x04 && is_p256_point(raw))
            .ok_or(BadSubscription::P256dh)?;
        let auth: [u8; AUTH_LEN] = b64::decode(wire.keys.auth.trim())
            .ok()
            .and_then(|raw| raw.try_into().ok())
            .ok_or(BadSubscription::Auth)?;
        Ok(Subscription {
            endpoint,
            p256dh,
            auth,
        })
    }

    /// The canonical string the device registry keeps as the device's token: compact JSON
    /// `{"endpoint","keys":{"p256dh","auth"}}`, keys in unpadded base64url, so one subscription
    /// always has one token whatever form the browser sent.
    pub fn to_token(&self) -> String {
        let p256dh = b64::encode(&self.p256dh);
        let auth = b64::encode(&self.auth);
        let wire = Wire {
            endpoint: self.endpoint.as_str().into(),
            keys: WireKeys {
                p256dh: p256dh.into(),
                auth: auth.into(),
            },
        };
        serde_json::to_string(&wire).expect("serialising strings cannot fail")
    }

    pub fn endpoint(&self) -> &Url {
        &self.endpoint
    }

    /// `scheme://host[:port]`: the VAPID `aud`.
    pub fn origin(&self) -> String {
        self.endpoint.origin().ascii_serialization()
    }

    /// The user agent's public key (`keys.p256dh`).
    pub fn p256dh(&self) -> &[u8; P256DH_LEN] {
        &self.p256dh
    }

    /// The authentication secret (`keys.auth`).
    pub fn auth(&self) -> &[u8; AUTH_LEN] {
        &self.auth
    }
}

/// An http(s) URL with a host and no credentials: push services are reached over HTTPS, and
/// `http://` is kept for local push services (tests, a mock).
fn parse_endpoint(text: &str) -> Option<Url> {
    if text.len() > MAX_ENDPOINT_LEN {
        return None;
    }
    let url = Url::parse(text).ok()?;
    let scheme_ok = matches!(url.scheme(), "https" | "http");
    let credentials = !url.username().is_empty() || url.password().is_some();
    (scheme_ok && url.host().is_some() && !credentials && url.fragment().is_none()).then_some(url)
}

/// Whether the bytes are a point on P-256 (ECDH with any other would fail at every send).
fn is_p256_point(raw: &[u8]) -> bool {
    ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, raw).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const P256DH: &str =
        "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
    const AUTH: &str = "BTBZMqHH6r4Tts7J_aSIgg";

    fn browser(endpoint: &str, p256dh: &str, auth: &str) -> serde_json::Value {
        json!({"endpoint": endpoint, "expirationTime": null, "keys": {"p256dh": p256dh, "auth": auth}})
    }

    #[test]
    fn a_browser_subscription_round_trips_through_its_token() {
        let padded_auth = format!("{AUTH}==");
        let sub = Subscription::from_json(&browser(
            "https://push.example.net/wpush/v2/abc?x=1",
            P256DH,
            &padded_auth,
        ))
        .unwrap();
        assert_eq!(sub.origin(), "https://push.example.net");
        let token = sub.to_token();
        assert_eq!(
            token,
            format!(
                r#"{{"endpoint":"https://push.example.net/wpush/v2/abc?x=1","keys":{{"p256dh":"{P256DH}","auth":"{AUTH}"}}}}"#
            )
        );
        assert_eq!(Subscription::from_token(&token).unwrap(), sub);
    }

    #[test]
    fn a_bad_endpoint_or_bad_keys_are_refused_by_name() {
        let ok = "https://push.example.net/x";
        for endpoint in ["ftp://h/x", "not a url", "https://u:p@h/x", "/relative"] {
            assert_eq!(
                Subscription::from_json(&browser(endpoint, P256DH, AUTH)),
                Err(BadSubscription::Endpoint),
                "{endpoint}"
            );
        }
        let off_curve = b64::encode(&[4u8; 65]);
        for p256dh in [AUTH, off_curve.as_str(), "!!"] {
            assert_eq!(
                Subscription::from_json(&browser(ok, p256dh, AUTH)),
                Err(BadSubscription::P256dh)
            );
        }
        assert_eq!(
            Subscription::from_json(&browser(ok, P256DH, P256DH)),
            Err(BadSubscription::Auth)
        );
        assert!(matches!(
            Subscription::from_json(&json!({"endpoint": ok})),
            Err(BadSubscription::Shape(_))
        ));
    }
}
