//! `[apns]`: Apple Push Notification service with token-based authentication.

use std::path::Path;

use serde::Deserialize;

use super::read_capped;
use crate::redact::redact_url;

/// Apple's production host; `http://` endpoints (the mock) speak HTTP/2 with prior knowledge.
pub const APNS_PRODUCTION: &str = "https://api.push.apple.com";
/// APNs refuses a provider token an hour after its `iat`.
pub const APNS_TOKEN_MAX_SECS: u64 = 3600;
/// Apple asks for a new provider token no more often than every 20 minutes.
pub const APNS_TOKEN_MIN_REFRESH_SECS: u64 = 1200;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApnsConfig {
    /// The team's signing key (`AuthKey_<KEYID>.p8`, PKCS#8 PEM); empty disables APNs.
    #[serde(default)]
    pub key_path: String,
    /// The key's 10-character Key ID (the provider token's `kid`).
    #[serde(default)]
    pub key_id: String,
    /// The 10-character Team ID (the provider token's `iss`).
    #[serde(default)]
    pub team_id: String,
    /// The app's bundle id (`apns-topic`).
    #[serde(default)]
    pub topic: String,
    #[serde(default = "production")]
    pub endpoint: String,
    /// How long one provider token is used before a new one is signed.
    #[serde(default = "refresh")]
    pub token_refresh_secs: u64,
    /// HTTP/2 connections to APNs, used in turn (each multiplexes many sends).
    #[serde(default = "one")]
    pub connections: usize,
}

fn one() -> usize {
    1
}

fn production() -> String {
    APNS_PRODUCTION.to_string()
}

fn refresh() -> u64 {
    3000
}

impl Default for ApnsConfig {
    fn default() -> ApnsConfig {
        ApnsConfig {
            key_path: String::new(),
            key_id: String::new(),
            team_id: String::new(),
            topic: String::new(),
            endpoint: production(),
            token_refresh_secs: refresh(),
            connections: one(),
        }
    }
}

impl ApnsConfig {
    pub fn enabled(&self) -> bool {
        !self.key_path.trim().is_empty()
    }

    /// `section`: where it is, for the messages (`apns`, `apps[1].apns`).
    pub(super) fn validate(&self, section: &str, errors: &mut Vec<String>) {
        if !self.enabled() {
            return;
        }
        let path = self.key_path.trim();
        match read_capped(Path::new(path)) {
            Err(e) => errors.push(format!(
                "{section}.key_path: cannot read {path:?}: {e} (the .p8 signing key from Apple, or \"\" to disable APNs)"
            )),
            Ok(pem) => {
                if jsonwebtoken::EncodingKey::from_ec_pem(&pem).is_err() {
                    errors.push(format!(
                        "{section}.key_path: {path:?} is not a P-256 key in PKCS#8 PEM (Apple's .p8)"
                    ));
                }
            }
        }
        let apple_id = |s: &str| s.len() == 10 && s.bytes().all(|b| b.is_ascii_alphanumeric());
        if !apple_id(&self.key_id) {
            errors.push(format!(
                "{section}.key_id must be the key's 10-character Key ID"
            ));
        }
        if !apple_id(&self.team_id) {
            errors.push(format!(
                "{section}.team_id must be the 10-character Team ID"
            ));
        }
        let topic_ok = !self.topic.is_empty()
            && self
                .topic
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
        if !topic_ok {
            errors.push(format!(
                "{section}.topic must be the app's bundle id (A-Z a-z 0-9 . -)"
            ));
        }
        let url = &self.endpoint;
        if !(url.starts_with("https://") || url.starts_with("http://")) || redact_url(url) != *url {
            errors.push(format!(
                "{section}.endpoint = {:?} must be an http:// or https:// base URL without credentials",
                redact_url(url)
            ));
        }
        if !(1..=64).contains(&self.connections) {
            errors.push(format!("{section}.connections must be 1 to 64"));
        }
        if self.token_refresh_secs == 0 || self.token_refresh_secs >= APNS_TOKEN_MAX_SECS {
            errors.push(format!(
                "{section}.token_refresh_secs must be 1 to {} (APNs refuses a token an hour old)",
                APNS_TOKEN_MAX_SECS - 1
            ));
        }
    }
}
