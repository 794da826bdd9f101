//! Provider-token signing keys: the public key the mock verifies ES256 provider tokens with
//! (read from Apple's `.p8` PKCS#8 private key or from a public-key PEM), and fresh `.p8` keys.

use aws_lc_rs::signature::{
    EcdsaKeyPair, KeyPair as _, ParsedPublicKey, ECDSA_P256_SHA256_FIXED,
    ECDSA_P256_SHA256_FIXED_SIGNING,
};

/// Why a key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The text is not PEM.
    #[error(
        "not a PEM key (expected -----BEGIN PRIVATE KEY----- or -----BEGIN PUBLIC KEY-----): {0}"
    )]
    Pem(pem::PemError),
    /// PEM of a kind the mock cannot use.
    #[error("a {0:?} PEM block; expected \"PRIVATE KEY\" (an APNs .p8), \"EC PRIVATE KEY\" or \"PUBLIC KEY\"")]
    PemTag(String),
    /// The DER inside is not a P-256 key.
    #[error("not a P-256 (ES256) key: {0}")]
    NotP256(String),
    /// A key id or team id of the wrong shape.
    #[error("{what} must be 10 characters of A-Z and 0-9 as Apple issues them, got {value:?}")]
    BadId {
        /// `key id` or `team id`.
        what: &'static str,
        /// The value given.
        value: String,
    },
}

/// The key a provider signs its tokens with, as APNs knows it: key id, team, public key.
pub struct ProviderKey {
    /// The 10-character Key ID (`kid` of the token header).
    pub key_id: String,
    /// The 10-character Team ID (`iss` of the token claims).
    pub team_id: String,
    /// The P-256 public key.
    pub(crate) public_key: ParsedPublicKey,
}

impl ProviderKey {
    /// Reads the public key from PEM text: an APNs `.p8` (PKCS#8 `PRIVATE KEY`), a SEC1
    /// `EC PRIVATE KEY`, or a `PUBLIC KEY` (SubjectPublicKeyInfo).
    pub fn from_pem(pem_text: &str, key_id: &str, team_id: &str) -> Result<Self, KeyError> {
        let block = pem::parse(pem_text.as_bytes()).map_err(KeyError::Pem)?;
        let public_der = match block.tag() {
            "PRIVATE KEY" => {
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, block.contents())
                    .map_err(|e| KeyError::NotP256(e.to_string()))?
                    .public_key()
                    .as_ref()
                    .to_vec()
            }
            "EC PRIVATE KEY" => EcdsaKeyPair::from_private_key_der(
                &ECDSA_P256_SHA256_FIXED_SIGNING,
                block.contents(),
            )
            .map_err(|e| KeyError::NotP256(e.to_string()))?
            .public_key()
            .as_ref()
            .to_vec(),
            "PUBLIC KEY" => block.contents().to_vec(),
            other => return Err(KeyError::PemTag(other.to_owned())),
        };
        let public_key = ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, public_der)
            .map_err(|e| KeyError::NotP256(e.to_string()))?;
        Ok(Self {
            key_id: apple_id("key id", key_id)?,
            team_id: apple_id("team id", team_id)?,
            public_key,
        })
    }

    /// True when `signature` (JWS ES256: `r || s`, 64 bytes) signs `message` with this key.
    pub(crate) fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        self.public_key.verify_sig(message, signature).is_ok()
    }
}

/// Key and team ids are 10 upper-case alphanumerics; checking here catches swapped flags.
fn apple_id(what: &'static str, value: &str) -> Result<String, KeyError> {
    let valid = value.len() == 10
        && value
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    if valid {
        Ok(value.to_owned())
    } else {
        Err(KeyError::BadId {
            what,
            value: value.to_owned(),
        })
    }
}

/// A fresh signing key as Apple's developer portal hands it out.
pub struct GeneratedKey {
    /// A random 10-character Key ID.
    pub key_id: String,
    /// The private key as an `AuthKey_<KEYID>.p8` file holds it (PKCS#8 PEM).
    pub p8_pem: String,
}

/// Generates a P-256 key and a random key id; writes nothing.
pub fn generate_auth_key() -> anyhow::Result<GeneratedKey> {
    let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
        .map_err(|_| anyhow::anyhow!("P-256 key generation failed"))?;
    let pkcs8 = pair
        .to_pkcs8v1()
        .map_err(|_| anyhow::anyhow!("PKCS#8 encoding of the new key failed"))?;
    let p8_pem = pem::encode_config(
        &pem::Pem::new("PRIVATE KEY", pkcs8.as_ref().to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    );
    Ok(GeneratedKey {
        key_id: random_apple_id(),
        p8_pem,
    })
}

/// 10 random characters of A-Z0-9, the shape of Apple's key and team ids.
pub fn random_apple_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut raw = [0u8; 10];
    rand::fill(&mut raw);
    raw.iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_p8_reads_back_and_its_public_pem_too() {
        let generated = generate_auth_key().unwrap();
        assert_eq!(generated.key_id.len(), 10);
        assert!(generated
            .p8_pem
            .starts_with("-----BEGIN PRIVATE KEY-----\n"));
        let from_p8 = ProviderKey::from_pem(&generated.p8_pem, &generated.key_id, "TEAM123456")
            .expect("the .p8 is usable");
        let public_pem = pem::encode(&pem::Pem::new(
            "PUBLIC KEY",
            aws_lc_rs::encoding::AsDer::as_der(&from_p8.public_key)
                .unwrap()
                .as_ref()
                .to_vec(),
        ));
        ProviderKey::from_pem(&public_pem, &generated.key_id, "TEAM123456")
            .expect("the public PEM is usable");
    }

    #[test]
    fn ids_of_the_wrong_shape_are_refused() {
        let generated = generate_auth_key().unwrap();
        let error = ProviderKey::from_pem(&generated.p8_pem, "short", "TEAM123456")
            .err()
            .unwrap();
        assert!(error.to_string().contains("key id"), "{error}");
    }
}
