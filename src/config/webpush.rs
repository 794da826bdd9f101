//! `[webpush]`: the application server's VAPID identity (RFC 8292) for Web Push, and the
//! requests' timeout. The same section serves every app that has Web Push (`[[apps]]` reuse
//! [`WebPushConfig`]).

use std::path::Path;

use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde::Deserialize;

use super::read_capped;

/// RFC 8292 §2: a VAPID token's `exp` is at most 24 hours ahead.
pub const MAX_VAPID_EXPIRY_SECS: u64 = 24 * 60 * 60;
/// Shorter tokens would be signed again nearly every send (a token is reused for half of it).
pub const MIN_VAPID_EXPIRY_SECS: u64 = 60;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebPushConfig {
    /// Path to the P-256 private key (PEM: SEC1 `EC PRIVATE KEY` as `openssl ecparam -genkey`
    /// writes it, or PKCS#8 `PRIVATE KEY`); empty: Web Push is off.
    pub vapid_private_key: String,
    /// The VAPID `sub`: a `mailto:` or `https:` URI where push services can reach the operator.
    pub subject: String,
    /// One push request, connection included.
    pub request_timeout_secs: u64,
    /// A VAPID token's lifetime (`exp` - now); a token is reused for half of it per origin.
    pub vapid_expiry_secs: u64,
}

/// Why the VAPID private key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum VapidKeyError {
    #[error("cannot read {path:?}: {reason}")]
    Read { path: String, reason: String },
    #[error("{path:?} is not PEM: {reason}")]
    NotPem { path: String, reason: String },
    #[error("{path:?} holds no EC PRIVATE KEY or PRIVATE KEY block")]
    NoKey { path: String },
    #[error("{path:?} is not a P-256 (prime256v1) private key: {reason}")]
    Rejected { path: String, reason: String },
}

impl WebPushConfig {
    pub fn enabled(&self) -> bool {
        !self.vapid_private_key.trim().is_empty()
    }

    /// Reads and parses the private key: what `validate` checks, and what the provider signs with.
    pub fn load_vapid_key(&self) -> Result<EcdsaKeyPair, VapidKeyError> {
        let path = self.vapid_private_key.trim().to_owned();
        let bytes = read_capped(Path::new(&path)).map_err(|reason| VapidKeyError::Read {
            path: path.clone(),
            reason,
        })?;
        parse_vapid_pem(&bytes).map_err(|e| match e {
            PemProblem::NotPem(reason) => VapidKeyError::NotPem { path, reason },
            PemProblem::NoKey => VapidKeyError::NoKey { path },
            PemProblem::Rejected(reason) => VapidKeyError::Rejected { path, reason },
        })
    }

    /// Appends what is wrong to `errors`, naming keys under `section` (`webpush`, or an app's).
    pub fn validate(&self, section: &str, errors: &mut Vec<String>) {
        if self.request_timeout_secs == 0 {
            errors.push(format!("{section}.request_timeout_secs must be at least 1"));
        }
        if !(MIN_VAPID_EXPIRY_SECS..=MAX_VAPID_EXPIRY_SECS).contains(&self.vapid_expiry_secs) {
            errors.push(format!(
                "{section}.vapid_expiry_secs must be {MIN_VAPID_EXPIRY_SECS} to {MAX_VAPID_EXPIRY_SECS} (RFC 8292: at most 24 hours)"
            ));
        }
        if !self.enabled() {
            return;
        }
        if !is_contact_uri(&self.subject) {
            errors.push(format!(
                "{section}.subject = {:?} must be a mailto: or https: URI where push services can reach you (e.g. \"mailto:ops@example.com\")",
                self.subject
            ));
        }
        if let Err(e) = self.load_vapid_key() {
            errors.push(format!(
                "{section}.vapid_private_key: {e} (create one with: openssl ecparam -name prime256v1 -genkey -noout -out vapid.pem; or set it to \"\" to disable Web Push)"
            ));
        }
    }
}

/// `mailto:` with an address, or an `https://` URL with a host.
fn is_contact_uri(subject: &str) -> bool {
    let rest = if let Some(rest) = subject.strip_prefix("mailto:") {
        rest
    } else if let Some(rest) = subject.strip_prefix("https://") {
        rest
    } else {
        return false;
    };
    !rest.is_empty() && !rest.starts_with('/') && !subject.chars().any(char::is_whitespace)
}

enum PemProblem {
    NotPem(String),
    NoKey,
    Rejected(String),
}

/// The first `EC PRIVATE KEY` or `PRIVATE KEY` block of a PEM file; `openssl ecparam -genkey`
/// without `-noout` writes an `EC PARAMETERS` block first, which is skipped.
fn parse_vapid_pem(bytes: &[u8]) -> Result<EcdsaKeyPair, PemProblem> {
    let blocks = pem::parse_many(bytes).map_err(|e| PemProblem::NotPem(e.to_string()))?;
    let block = blocks
        .iter()
        .find(|b| matches!(b.tag(), "EC PRIVATE KEY" | "PRIVATE KEY"))
        .ok_or(PemProblem::NoKey)?;
    EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_FIXED_SIGNING, block.contents())
        .map_err(|e| PemProblem::Rejected(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `openssl ecparam -name prime256v1 -genkey` (with its EC PARAMETERS block).
    const SEC1: &str = "-----BEGIN EC PARAMETERS-----
BggqhkjOPQMBBw==
-----END EC PARAMETERS-----
-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIJn6PtePuYbBxboEO83V6OHBpvoY6K7FLLwSu4CV/hmWoAoGCCqGSM49
AwEHoUQDQgAEn1LK29w1EOhUyuKb+/nyjSRWVSqttnE4iVRzskLjNRZEyVJYEWg/
giaDyk79cU0rxfsrTesmoNNPjJtd6kP0/Q==
-----END EC PRIVATE KEY-----
";
    /// `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384`: the wrong curve.
    const P384: &str = "-----BEGIN PRIVATE KEY-----
MIG2AgEAMBAGByqGSM49AgEGBSuBBAAiBIGeMIGbAgEBBDB8+H2JtBq5Y2HbDHhX
BN/clKztAMOMr//wscvZ0KJLzNzSJ6QnwecL8eYJhX9KHPGhZANiAAQavPJNVKS7
10fVVVAnXC3EfJRpQieNCEwMO0h+/5neUT/Sx2ZthAC/O0CoXVgwHGKarOAuQbQk
hk0RJa7mMdfSOz+8houGHLN5/y6mpUH0Io40M/V87N4nDu+WevujImg=
-----END PRIVATE KEY-----
";

    #[test]
    fn an_openssl_sec1_key_and_a_pkcs8_key_both_load() {
        assert!(parse_vapid_pem(SEC1.as_bytes()).is_ok());
        let pkcs8 = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .unwrap()
            .to_pkcs8v1()
            .unwrap();
        let pem = pem::encode(&pem::Pem::new("PRIVATE KEY", pkcs8.as_ref().to_vec()));
        assert!(parse_vapid_pem(pem.as_bytes()).is_ok());
    }

    #[test]
    fn another_curve_or_no_key_block_is_refused() {
        assert!(matches!(
            parse_vapid_pem(P384.as_bytes()),
            Err(PemProblem::Rejected(_))
        ));
        let params_only = SEC1.split("-----BEGIN EC PRIVATE KEY").next().unwrap();
        assert!(matches!(
            parse_vapid_pem(params_only.as_bytes()),
            Err(PemProblem::NoKey)
        ));
    }

    #[test]
    fn a_subject_must_be_a_mailto_or_https_contact() {
        assert!(is_contact_uri("mailto:ops@example.com"));
        assert!(is_contact_uri("https://example.com/contact"));
        for bad in [
            "",
            "ops@example.com",
            "http://example.com",
            "mailto:",
            "https://",
        ] {
            assert!(!is_contact_uri(bad), "{bad}");
        }
    }
}
