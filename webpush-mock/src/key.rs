//! VAPID application-server keys: parsing the public key the mock is configured with, and
//! generating a key pair for an application server under test.

use aws_lc_rs::signature::{
    EcdsaKeyPair, KeyPair as _, ParsedPublicKey, ECDSA_P256_SHA256_FIXED,
    ECDSA_P256_SHA256_FIXED_SIGNING,
};

use crate::b64;

/// A public key that is not a base64url uncompressed P-256 point.
#[derive(Debug, thiserror::Error)]
#[error("not a VAPID public key: expected base64url of a 65-byte uncompressed P-256 point (as `applicationServerKey`)")]
pub struct BadPublicKey;

/// Decodes a base64url VAPID public key (`applicationServerKey`) into its 65 raw bytes,
/// checking that it is a point on P-256.
pub fn parse_public_key(text: &str) -> Result<Vec<u8>, BadPublicKey> {
    let raw = b64::decode(text.trim()).map_err(|_| BadPublicKey)?;
    if raw.len() != crate::ece::PUBLIC_KEY_LEN || raw[0] != 0x04 {
        return Err(BadPublicKey);
    }
    ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &raw).map_err(|_| BadPublicKey)?;
    Ok(raw)
}

/// A fresh VAPID key pair, in the forms application servers load them.
pub struct VapidKey {
    /// The private key, PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    pub private_pem: String,
    /// The public key, base64url uncompressed point: `applicationServerKey`, and `k`.
    pub public_key: String,
}

/// Generates a P-256 VAPID key pair; writes nothing.
pub fn generate_vapid_key() -> anyhow::Result<VapidKey> {
    let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
        .map_err(|_| anyhow::anyhow!("P-256 key generation failed"))?;
    let pkcs8 = pair
        .to_pkcs8v1()
        .map_err(|_| anyhow::anyhow!("PKCS#8 encoding of the new key failed"))?;
    let private_pem = pem::encode_config(
        &pem::Pem::new("PRIVATE KEY", pkcs8.as_ref().to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    );
    Ok(VapidKey {
        private_pem,
        public_key: b64::encode(pair.public_key().as_ref()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_public_key_parses_and_garbage_does_not() {
        let key = generate_vapid_key().unwrap();
        assert_eq!(parse_public_key(&key.public_key).unwrap().len(), 65);
        assert!(parse_public_key("not-a-key").is_err());
        let off_curve = b64::encode(&[4u8; 65]);
        assert!(parse_public_key(&off_curve).is_err());
    }
}
