//! What a client registers for its device, in any of the accepted forms, parsed into the one
//! [`Registration`] the store keeps: which provider reaches the device, with which token, for
//! which app. The forms:
//! - `{"provider":"fcm","token":…}` and today's `{"fcm_token":…,"platform":…}`;
//! - `{"provider":"apns","token":"<hex>"}` (platform `ios`);
//! - `{"provider":"webpush","subscription":{"endpoint":…,"keys":{"p256dh":…,"auth":…}}}`
//!   (platform `web`): the token kept is the subscription's canonical JSON.
//!
//! Each may name an `app`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ids::AppId;
use crate::store::{Platform, ProviderKind, Registration};

/// The body of `PUT /v1/devices/{device_id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(
    json!({"provider": "apns", "token": "5f2d…64 hex digits…", "app": "shop"}),
    json!({"fcm_token": "fMEP0vJqS0:APA91bHqX", "platform": "android"})
))]
pub struct DeviceRegistration {
    /// The push service that reaches the device; absent for the `fcm_token` form.
    provider: Option<ProviderKind>,
    /// The FCM registration token (`fcm`) or the APNs device token in hex (`apns`). A
    /// credential: never shown back.
    #[schema(pattern = "^[!-~]{1,4096}$")]
    token: Option<String>,
    /// The browser's `PushSubscription` (`webpush`), as `toJSON()` gives it.
    subscription: Option<SubscriptionJson>,
    /// The FCM registration token, in the form without `provider`.
    #[schema(pattern = "^[!-~]{1,4096}$")]
    fcm_token: Option<String>,
    /// Required with `fcm_token`; with `provider` it defaults to the provider's platform
    /// (`fcm`: android, `apns`: ios, `webpush`: web).
    platform: Option<Platform>,
    /// The app the device belongs to (an `[[apps]]` id); absent: the default app.
    app: Option<AppId>,
}

/// A Web Push subscription as the browser gives it.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct SubscriptionJson {
    /// The push service's URL for this subscription (https).
    pub endpoint: String,
    pub keys: SubscriptionKeys,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct SubscriptionKeys {
    /// The browser's P-256 public key, uncompressed, base64url.
    pub p256dh: String,
    /// The 16-byte authentication secret, base64url.
    pub auth: String,
}

/// A registration that is not one of the accepted forms; the message says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidRegistration(&'static str);

fn invalid<T>(msg: &'static str) -> Result<T, InvalidRegistration> {
    Err(InvalidRegistration(msg))
}

impl DeviceRegistration {
    pub fn parse(self) -> Result<Registration, InvalidRegistration> {
        let (provider, token, platform) = match (self.provider, self.fcm_token) {
            (None, Some(legacy)) => {
                let Some(platform) = self.platform else {
                    return invalid("platform is required with fcm_token");
                };
                if self.token.is_some() || self.subscription.is_some() {
                    return invalid("fcm_token goes alone: use provider and token instead");
                }
                (ProviderKind::Fcm, fcm_token(legacy)?, platform)
            }
            (None, None) => return invalid("provider (fcm, apns or webpush) is required"),
            (Some(_), Some(_)) => return invalid("fcm_token goes without provider"),
            (Some(kind), None) => {
                let token = match (kind, self.token, self.subscription) {
                    (ProviderKind::Webpush, None, Some(s)) => webpush_token(s)?,
                    (ProviderKind::Webpush, _, _) => {
                        return invalid("provider webpush takes a subscription (and no token)")
                    }
                    (_, Some(_), Some(_)) | (_, None, _) => {
                        return invalid("provider fcm or apns takes a token (and no subscription)")
                    }
                    (ProviderKind::Fcm, Some(t), None) => fcm_token(t)?,
                    (ProviderKind::Apns, Some(t), None) => apns_token(t)?,
                };
                let platform = self.platform.unwrap_or(match kind {
                    ProviderKind::Fcm => Platform::Android,
                    ProviderKind::Apns => Platform::Ios,
                    ProviderKind::Webpush => Platform::Web,
                });
                (kind, token, platform)
            }
        };
        Ok(Registration {
            provider,
            token,
            platform,
            app: self.app,
        })
    }
}

/// FCM registration tokens are printable ASCII (base64url and `:`); anything else (NUL above
/// all, which PostgreSQL refuses in TEXT) is a malformed request, not a store failure. Not
/// trimmed: the document's pattern refuses surrounding spaces too.
fn fcm_token(t: String) -> Result<String, InvalidRegistration> {
    if t.is_empty() || t.len() > 4096 || !t.bytes().all(|b| b.is_ascii_graphic()) {
        return invalid(
            "the FCM token must be 1-4096 printable ASCII characters (no spaces or control characters)",
        );
    }
    Ok(t)
}

/// APNs device tokens are hex (32 bytes today; Apple says not to rely on the length). Kept in
/// lowercase so one device is one row whatever case the app sends.
fn apns_token(t: String) -> Result<String, InvalidRegistration> {
    let ok = (64..=200).contains(&t.len())
        && t.len().is_multiple_of(2)
        && t.bytes().all(|b| b.is_ascii_hexdigit());
    if !ok {
        return invalid("the APNs device token must be 64-200 hex digits (an even number)");
    }
    Ok(t.to_ascii_lowercase())
}

/// The subscription's canonical JSON: endpoint and keys only, in that order.
fn webpush_token(s: SubscriptionJson) -> Result<String, InvalidRegistration> {
    let endpoint_ok = (s.endpoint.starts_with("https://") || s.endpoint.starts_with("http://"))
        && s.endpoint.len() <= 2048
        && s.endpoint.bytes().all(|b| b.is_ascii_graphic());
    if !endpoint_ok {
        return invalid("subscription.endpoint must be an https URL of at most 2048 characters");
    }
    // An uncompressed P-256 point is 65 bytes (87 base64url characters), the secret 16 (22).
    if !base64url_of(&s.keys.p256dh, 65) {
        return invalid("subscription.keys.p256dh must be a P-256 public key in base64url");
    }
    if !base64url_of(&s.keys.auth, 16) {
        return invalid("subscription.keys.auth must be 16 bytes in base64url");
    }
    Ok(serde_json::to_string(&s).expect("serialising plain strings cannot fail"))
}

/// Whether `s` is the unpadded (or padded) base64url form of `bytes` bytes.
fn base64url_of(s: &str, bytes: usize) -> bool {
    let unpadded = s.trim_end_matches('=');
    unpadded.len() == (bytes * 4).div_ceil(3)
        && unpadded
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: serde_json::Value) -> Result<Registration, String> {
        serde_json::from_value::<DeviceRegistration>(v)
            .map_err(|e| e.to_string())?
            .parse()
            .map_err(|e| e.to_string())
    }

    const P256DH: &str =
        "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM";
    const AUTH: &str = "tBHItJI5svbpez7KI4CCXg";

    #[test]
    fn every_form_parses_into_its_provider_and_platform() {
        let r = parse(json!({"fcm_token": "t:1", "platform": "web"})).unwrap();
        assert_eq!(
            (r.provider, r.platform, r.token.as_str()),
            (ProviderKind::Fcm, Platform::Web, "t:1")
        );
        let r = parse(json!({"provider": "fcm", "token": "t:2", "app": "shop"})).unwrap();
        assert_eq!(
            (r.provider, r.platform),
            (ProviderKind::Fcm, Platform::Android)
        );
        assert_eq!(r.app.as_deref(), Some("shop"));
        let r = parse(json!({"provider": "apns", "token": "AB".repeat(32)})).unwrap();
        assert_eq!(
            (r.provider, r.platform),
            (ProviderKind::Apns, Platform::Ios)
        );
        assert_eq!(r.token, "ab".repeat(32));
        let sub = json!({"endpoint": "https://push.example/x", "expirationTime": null,
            "keys": {"auth": AUTH, "p256dh": P256DH}});
        let r = parse(json!({"provider": "webpush", "subscription": sub})).unwrap();
        assert_eq!(
            (r.provider, r.platform),
            (ProviderKind::Webpush, Platform::Web)
        );
        assert_eq!(
            r.token,
            format!(
                r#"{{"endpoint":"https://push.example/x","keys":{{"p256dh":"{P256DH}","auth":"{AUTH}"}}}}"#
            )
        );
    }

    #[test]
    fn malformed_registrations_are_refused_with_what_to_fix() {
        let sub = json!({"endpoint": "https://p/x", "keys": {"auth": AUTH, "p256dh": P256DH}});
        for (body, says) in [
            (json!({"fcm_token": "t"}), "platform is required"),
            (json!({"token": "t"}), "provider"),
            (json!({"provider": "apns", "token": "xyz"}), "hex"),
            (json!({"provider": "apns", "token": "a".repeat(63)}), "hex"),
            (json!({"provider": "apns"}), "takes a token"),
            (json!({"provider": "fcm", "token": "a b"}), "printable"),
            (json!({"provider": "webpush", "token": "t"}), "subscription"),
            (
                json!({"provider": "apns", "token": "ab".repeat(32), "subscription": sub}),
                "no subscription",
            ),
            (
                json!({"provider": "webpush", "subscription": {"endpoint": "ftp://x", "keys": {"auth": AUTH, "p256dh": P256DH}}}),
                "endpoint",
            ),
            (
                json!({"provider": "webpush", "subscription": {"endpoint": "https://x", "keys": {"auth": "short", "p256dh": P256DH}}}),
                "auth",
            ),
            (
                json!({"provider": "webpush", "subscription": {"endpoint": "https://x", "keys": {"auth": AUTH, "p256dh": "a+b"}}}),
                "p256dh",
            ),
            (
                json!({"provider": "fcm", "fcm_token": "t"}),
                "without provider",
            ),
            (
                json!({"provider": "apns", "token": "ab".repeat(32), "app": "a b"}),
                "app must be",
            ),
        ] {
            let e = parse(body.clone()).unwrap_err();
            assert!(e.contains(says), "{body}: {e}");
        }
    }
}
