//! RFC 8291 message encryption over the `aes128gcm` content coding (RFC 8188), as an
//! application server does it, with aws-lc-rs (ECDH P-256, HKDF-SHA256, AES-128-GCM).
//!
//! Body: `salt(16) | rs(4, big endian) | idlen(1) = 65 | keyid = as_public(65) | record`, one
//! record `AES-128-GCM(plaintext | 0x02)` with its 16-byte tag. Keys:
//! `IKM = HKDF(salt = auth, ikm = ECDH(as_private, ua_public), "WebPush: info\0" | ua_public |
//! as_public, 32)`, `CEK = HKDF(salt, IKM, "Content-Encoding: aes128gcm\0", 16)`,
//! `NONCE = HKDF(salt, IKM, "Content-Encoding: nonce\0", 12)`.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM, NONCE_LEN};
use aws_lc_rs::agreement::{self, PrivateKey, UnparsedPublicKey, ECDH_P256};
use aws_lc_rs::hkdf::{self, Salt, HKDF_SHA256};

use super::subscription::Subscription;

const SALT_LEN: usize = 16;
const TAG_LEN: usize = 16;
/// The header: salt, record size, key id length, and the 65-byte key id.
const HEADER_LEN: usize = SALT_LEN + 4 + 1 + 65;
/// RFC 8030 §7.2: push services must accept at least 4096 bytes of body, and need not more.
pub const MAX_BODY_BYTES: usize = 4096;
/// The record size written; the single record always fits in it.
const RECORD_SIZE: u32 = MAX_BODY_BYTES as u32;

/// Why a message was not encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EceError {
    #[error("the encrypted message would be {0} bytes; Web Push carries at most 4096")]
    TooLarge(usize),
    #[error("the key agreement with the subscription's public key failed")]
    KeyAgreement,
}

/// Encrypts `plaintext` for `sub` with a fresh ephemeral key and salt.
pub fn encrypt(plaintext: &[u8], sub: &Subscription) -> Result<Vec<u8>, EceError> {
    let size = HEADER_LEN + plaintext.len() + 1 + TAG_LEN;
    if size > MAX_BODY_BYTES {
        return Err(EceError::TooLarge(size));
    }
    let as_private = PrivateKey::generate(&ECDH_P256).map_err(|_| EceError::KeyAgreement)?;
    let mut salt = [0u8; SALT_LEN];
    rand::fill(&mut salt);
    encrypt_with(plaintext, sub.p256dh(), sub.auth(), &as_private, &salt)
}

/// [`encrypt`] with a given key and salt (RFC 8291's example uses fixed ones).
fn encrypt_with(
    plaintext: &[u8],
    ua_public: &[u8],
    auth: &[u8],
    as_private: &PrivateKey,
    salt: &[u8; SALT_LEN],
) -> Result<Vec<u8>, EceError> {
    let as_public = as_private
        .compute_public_key()
        .map_err(|_| EceError::KeyAgreement)?;
    let as_public = as_public.as_ref();
    let ecdh = agreement::agree(
        as_private,
        UnparsedPublicKey::new(&ECDH_P256, ua_public),
        EceError::KeyAgreement,
        |secret| {
            let mut out = [0u8; 32];
            out.copy_from_slice(secret);
            Ok(out)
        },
    )?;
    let (key, nonce) = derive(&ecdh, auth, ua_public, as_public, salt);
    let mut body = Vec::with_capacity(HEADER_LEN + plaintext.len() + 1 + TAG_LEN);
    body.extend_from_slice(salt);
    body.extend_from_slice(&RECORD_SIZE.to_be_bytes());
    body.push(65);
    body.extend_from_slice(as_public);
    let mut record = body.split_off(body.len());
    record.extend_from_slice(plaintext);
    // The last (and only) record's delimiter; no padding after it.
    record.push(0x02);
    key.seal_in_place_append_tag(nonce, Aad::empty(), &mut record)
        .map_err(|_| EceError::KeyAgreement)?;
    body.extend_from_slice(&record);
    Ok(body)
}

fn derive(
    ecdh: &[u8],
    auth: &[u8],
    ua_public: &[u8],
    as_public: &[u8],
    salt: &[u8],
) -> (LessSafeKey, Nonce) {
    let mut ikm = [0u8; 32];
    expand(
        &Salt::new(HKDF_SHA256, auth).extract(ecdh),
        &[b"WebPush: info\0", ua_public, as_public],
        &mut ikm,
    );
    let prk = Salt::new(HKDF_SHA256, salt).extract(&ikm);
    let mut cek = [0u8; 16];
    expand(&prk, &[b"Content-Encoding: aes128gcm\0"], &mut cek);
    let mut nonce = [0u8; NONCE_LEN];
    expand(&prk, &[b"Content-Encoding: nonce\0"], &mut nonce);
    let key = UnboundKey::new(&AES_128_GCM, &cek).expect("a 16-byte key is valid for AES-128");
    (LessSafeKey::new(key), Nonce::assume_unique_for_key(nonce))
}

/// HKDF-Expand into `out`; the lengths here (≤ 32) are far within HKDF-SHA256's limit.
fn expand(prk: &hkdf::Prk, info: &[&[u8]], out: &mut [u8]) {
    prk.expand(info, Len(out.len()))
        .and_then(|okm| okm.fill(out))
        .expect("HKDF-SHA256 expands up to 8160 bytes");
}

struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::push::webpush::b64;

    /// RFC 8291 Appendix A.
    const PLAINTEXT: &str = "When I grow up, I want to be a watermelon";
    const UA_PUBLIC: &str =
        "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
    const AS_PRIVATE: &str = "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw";
    const AUTH_SECRET: &str = "BTBZMqHH6r4Tts7J_aSIgg";
    const SALT: &str = "DGv6ra1nlYgDCS1FRnbzlw";
    const BODY: &str = concat!(
        "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27ml",
        "mlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPT",
        "pK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN"
    );

    #[test]
    fn the_rfc_8291_keys_and_salt_give_its_example_body() {
        let as_private =
            PrivateKey::from_private_key(&ECDH_P256, &b64::decode(AS_PRIVATE).unwrap()).unwrap();
        let salt: [u8; 16] = b64::decode(SALT).unwrap().try_into().unwrap();
        let body = encrypt_with(
            PLAINTEXT.as_bytes(),
            &b64::decode(UA_PUBLIC).unwrap(),
            &b64::decode(AUTH_SECRET).unwrap(),
            &as_private,
            &salt,
        )
        .unwrap();
        assert_eq!(b64::encode(&body), BODY);
    }

    #[test]
    fn a_message_over_4096_bytes_once_encrypted_is_refused() {
        let sub = Subscription::from_token(&format!(
            r#"{{"endpoint":"https://h/x","keys":{{"p256dh":"{UA_PUBLIC}","auth":"{AUTH_SECRET}"}}}}"#
        ))
        .unwrap();
        let largest = MAX_BODY_BYTES - HEADER_LEN - 1 - TAG_LEN;
        assert_eq!(encrypt(&vec![b'a'; largest], &sub).unwrap().len(), 4096);
        assert_eq!(
            encrypt(&vec![b'a'; largest + 1], &sub),
            Err(EceError::TooLarge(4097))
        );
    }
}
