//! Google service-account key files: parsing one (the public key is derived from its
//! `private_key`) and generating fresh ones that point at a mock.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::KeyPair as _;
use jsonwebtoken::DecodingKey;
use serde::Deserialize;
use serde_json::json;

/// Why a service-account key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The text is not a JSON object.
    #[error("not a Google service-account key: {0}")]
    Json(serde_json::Error),
    /// `type` is present but is not `service_account` (e.g. an OAuth client secret).
    #[error("not a Google service-account key: \"type\" is {0:?}, expected \"service_account\"")]
    WrongType(String),
    /// A field the mock needs is absent or not a string.
    #[error("not a Google service-account key: no \"{0}\" string")]
    MissingField(&'static str),
    /// `private_key` is not PEM.
    #[error("private_key is not PEM (expected -----BEGIN PRIVATE KEY-----): {0}")]
    Pem(pem::PemError),
    /// `private_key` is PEM of some other kind.
    #[error("private_key is a {0:?} PEM block; expected \"PRIVATE KEY\" (PKCS#8) or \"RSA PRIVATE KEY\"")]
    PemTag(String),
    /// The DER inside the PEM is not an RSA private key.
    #[error("private_key is not a usable RSA private key: {0}")]
    Rsa(String),
}

/// The fields of a key file this mock needs; all optional so each gap gets its own message.
#[derive(Deserialize)]
struct KeyFile {
    #[serde(rename = "type")]
    key_type: Option<String>,
    project_id: Option<String>,
    private_key: Option<String>,
    client_email: Option<String>,
}

/// A parsed service account: who may ask for tokens, and the key their assertions must verify with.
pub struct ServiceAccount {
    /// Must equal the `iss` claim of every token assertion.
    pub client_email: String,
    /// When present, sends to any other project are denied as Google denies them.
    pub project_id: Option<String>,
    /// The RSA public key (PKCS#1 DER) derived from `private_key`.
    pub(crate) verifying_key: DecodingKey,
}

impl ServiceAccount {
    /// Parses a Google service-account key JSON and derives the public key from `private_key`.
    pub fn from_json(json: &str) -> Result<Self, KeyError> {
        let file: KeyFile = serde_json::from_str(json).map_err(KeyError::Json)?;
        if let Some(kind) = file.key_type.filter(|t| t != "service_account") {
            return Err(KeyError::WrongType(kind));
        }
        let client_email = file
            .client_email
            .ok_or(KeyError::MissingField("client_email"))?;
        let private_key = file
            .private_key
            .ok_or(KeyError::MissingField("private_key"))?;
        let block = pem::parse(private_key.as_bytes()).map_err(KeyError::Pem)?;
        let pair = match block.tag() {
            "PRIVATE KEY" => KeyPair::from_pkcs8(block.contents()),
            "RSA PRIVATE KEY" => KeyPair::from_der(block.contents()),
            other => return Err(KeyError::PemTag(other.to_owned())),
        }
        .map_err(|e| KeyError::Rsa(e.to_string()))?;
        Ok(Self {
            client_email,
            project_id: file.project_id.filter(|p| !p.is_empty()),
            verifying_key: DecodingKey::from_rsa_der(pair.public_key().as_ref()),
        })
    }
}

/// Returns a fresh Google-style service-account key JSON (RSA 2048, PKCS#8 PEM) whose
/// `token_uri` is `<mock_url>/token`; writes nothing.
pub fn generate_service_account(mock_url: &str, project_id: &str) -> anyhow::Result<String> {
    let pair = KeyPair::generate(KeySize::Rsa2048)
        .map_err(|_| anyhow::anyhow!("RSA key generation failed"))?;
    let pkcs8 = pair
        .as_der()
        .map_err(|_| anyhow::anyhow!("PKCS#8 encoding of the new key failed"))?;
    let private_key = pem::encode_config(
        &pem::Pem::new("PRIVATE KEY", pkcs8.as_ref().to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    );
    let client_email = format!("fcm-mock@{project_id}.iam.gserviceaccount.com");
    let key = json!({
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": random_hex(20),
        "private_key": private_key,
        "client_email": client_email,
        "client_id": random_digits(21),
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": format!("{}/token", mock_url.trim_end_matches('/')),
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": format!(
            "https://www.googleapis.com/robot/v1/metadata/x509/{}",
            client_email.replace('@', "%40")
        ),
        "universe_domain": "googleapis.com",
    });
    Ok(serde_json::to_string_pretty(&key)?)
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::fill(buf.as_mut_slice());
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

fn random_digits(len: usize) -> String {
    let mut buf = vec![0u8; len];
    rand::fill(buf.as_mut_slice());
    // The first digit is never 0, as in Google's numeric client ids.
    buf.iter()
        .enumerate()
        .map(|(i, b)| char::from(b'0' + if i == 0 { 1 + b % 9 } else { b % 10 }))
        .collect()
}
