//! Web Push message encryption (RFC 8291) over the `aes128gcm` content coding (RFC 8188):
//! [`decrypt`] as a user agent does it, and [`encrypt`] as an application server does it (the
//! mock's own tests send with it; the mock never encrypts).
//!
//! Body: `salt(16) | rs(4, big endian) | idlen(1) | keyid(idlen) | ciphertext`, where `keyid` is
//! the application server's ephemeral P-256 public key (65 bytes, uncompressed) and the
//! ciphertext is ONE record: `AES-128-GCM(plaintext | 0x02 | 0x00*)` with its 16-byte tag.
//! Keys: `ecdh = ECDH(ua_private, as_public)`;
//! `IKM = HKDF(salt = auth_secret, ikm = ecdh, info = "WebPush: info\0" | ua_public | as_public, 32)`;
//! `CEK = HKDF(salt, IKM, "Content-Encoding: aes128gcm\0", 16)`;
//! `NONCE = HKDF(salt, IKM, "Content-Encoding: nonce\0", 12)` (record 0: the nonce as is).

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM, NONCE_LEN};
use aws_lc_rs::agreement::{self, PrivateKey, UnparsedPublicKey, ECDH_P256};
use aws_lc_rs::hkdf::{self, Salt, HKDF_SHA256};

/// Length of the salt at the start of the header.
const SALT_LEN: usize = 16;
/// Length of an uncompressed P-256 point, the `keyid` RFC 8291 requires.
pub const PUBLIC_KEY_LEN: usize = 65;
/// Length of the AES-GCM tag.
const TAG_LEN: usize = 16;
/// RFC 8188 requires `rs` > 17: a record holds the 16-byte tag, the delimiter and data.
const MIN_RECORD_SIZE: u32 = 18;
/// The record size [`encrypt`] writes, as browsers' libraries do.
pub const RECORD_SIZE: u32 = 4096;

/// Why a body does not decrypt; each says what the application server got wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EceError {
    /// Shorter than a header plus one record.
    #[error("the body is shorter than the aes128gcm header plus a record")]
    TooShort,
    /// `idlen` is not 65.
    #[error("the header's keyid is {0} bytes; RFC 8291 requires the sender's 65-byte uncompressed P-256 public key")]
    KeyIdLength(usize),
    /// `keyid` is not a P-256 point.
    #[error("the header's keyid is not a P-256 public key")]
    SenderKey,
    /// `rs` below the minimum.
    #[error("record size {0} is below the minimum of 18")]
    RecordSize(u32),
    /// More than one record.
    #[error("the ciphertext ({0} bytes) spans more than one record of rs bytes; RFC 8291 requires a single record")]
    MultipleRecords(usize),
    /// The tag does not verify: wrong keys, wrong salt, or corrupted data.
    #[error("authentication of the ciphertext failed (wrong keys, auth secret or salt, or corrupted data)")]
    Authentication,
    /// The plaintext does not end with the last-record delimiter 0x02 and zero padding.
    #[error("the decrypted record does not end with the padding delimiter 0x02 followed by zeros")]
    Padding,
}

/// Decrypts a Web Push message body for the subscription whose private key, public key
/// (`p256dh`) and auth secret are given.
pub fn decrypt(
    body: &[u8],
    ua_private: &PrivateKey,
    ua_public: &[u8],
    auth_secret: &[u8],
) -> Result<Vec<u8>, EceError> {
    let header_len = SALT_LEN + 4 + 1;
    if body.len() < header_len {
        return Err(EceError::TooShort);
    }
    let (salt, rest) = body.split_at(SALT_LEN);
    let record_size = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
    let id_len = usize::from(rest[4]);
    let rest = &rest[5..];
    if rest.len() < id_len {
        return Err(EceError::TooShort);
    }
    let (as_public, ciphertext) = rest.split_at(id_len);
    if id_len != PUBLIC_KEY_LEN {
        return Err(EceError::KeyIdLength(id_len));
    }
    if record_size < MIN_RECORD_SIZE {
        return Err(EceError::RecordSize(record_size));
    }
    if ciphertext.len() > record_size as usize {
        return Err(EceError::MultipleRecords(ciphertext.len()));
    }
    if ciphertext.len() <= TAG_LEN {
        return Err(EceError::TooShort);
    }
    let ecdh = agreement::agree(
        ua_private,
        UnparsedPublicKey::new(&ECDH_P256, as_public),
        EceError::SenderKey,
        |secret| Ok(secret.to_vec()),
    )?;
    let (key, nonce) = derive(&ecdh, auth_secret, ua_public, as_public, salt);
    let mut record = ciphertext.to_vec();
    let plaintext = key
        .open_in_place(nonce, Aad::empty(), &mut record)
        .map_err(|_| EceError::Authentication)?;
    let end = plaintext
        .iter()
        .rposition(|b| *b != 0)
        .ok_or(EceError::Padding)?;
    if plaintext[end] != 0x02 {
        return Err(EceError::Padding);
    }
    Ok(plaintext[..end].to_vec())
}

/// Encrypts `plaintext` for a subscription (`ua_public` = `p256dh`, `auth_secret` = `auth`) as
/// an application server does, with its ephemeral key `as_private` and `salt`, in one record
/// of [`RECORD_SIZE`] without padding.
pub fn encrypt(
    plaintext: &[u8],
    ua_public: &[u8],
    auth_secret: &[u8],
    as_private: &PrivateKey,
    salt: &[u8; SALT_LEN],
) -> Result<Vec<u8>, EceError> {
    let as_public = as_private
        .compute_public_key()
        .map_err(|_| EceError::SenderKey)?;
    let as_public = as_public.as_ref();
    let ecdh = agreement::agree(
        as_private,
        UnparsedPublicKey::new(&ECDH_P256, ua_public),
        EceError::SenderKey,
        |secret| Ok(secret.to_vec()),
    )?;
    let (key, nonce) = derive(&ecdh, auth_secret, ua_public, as_public, salt);
    let mut record = plaintext.to_vec();
    record.push(0x02);
    key.seal_in_place_append_tag(nonce, Aad::empty(), &mut record)
        .map_err(|_| EceError::Authentication)?;
    let mut body = Vec::with_capacity(SALT_LEN + 5 + as_public.len() + record.len());
    body.extend_from_slice(salt);
    body.extend_from_slice(&RECORD_SIZE.to_be_bytes());
    body.push(u8::try_from(as_public.len()).map_err(|_| EceError::SenderKey)?);
    body.extend_from_slice(as_public);
    body.extend_from_slice(&record);
    Ok(body)
}

/// RFC 8291 §3.4 and RFC 8188 §2.2: the content-encryption key and the nonce of record 0.
fn derive(
    ecdh: &[u8],
    auth_secret: &[u8],
    ua_public: &[u8],
    as_public: &[u8],
    salt: &[u8],
) -> (LessSafeKey, Nonce) {
    let mut ikm = [0u8; 32];
    expand(
        &Salt::new(HKDF_SHA256, auth_secret).extract(ecdh),
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

/// HKDF-Expand into `out`; the lengths used here (≤ 32) are always within HKDF's limit.
fn expand(prk: &hkdf::Prk, info: &[&[u8]], out: &mut [u8]) {
    prk.expand(info, Len(out.len()))
        .and_then(|okm| okm.fill(out))
        .expect("HKDF-SHA256 can expand up to 8160 bytes");
}

/// An output length for aws-lc-rs' HKDF.
struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::b64;

    /// RFC 8291 Appendix A.
    const PLAINTEXT: &str = "When I grow up, I want to be a watermelon";
    const UA_PUBLIC: &str =
        "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
    const UA_PRIVATE: &str = "q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94";
    const AS_PRIVATE: &str = "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw";
    const AUTH_SECRET: &str = "BTBZMqHH6r4Tts7J_aSIgg";
    const SALT: &str = "DGv6ra1nlYgDCS1FRnbzlw";
    const BODY: &str = concat!(
        "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27ml",
        "mlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPT",
        "pK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN"
    );

    fn key(raw: &str) -> PrivateKey {
        PrivateKey::from_private_key(&ECDH_P256, &b64::decode(raw).unwrap()).unwrap()
    }

    #[test]
    fn the_rfc_8291_example_decrypts_to_its_plaintext() {
        let plaintext = decrypt(
            &b64::decode(BODY).unwrap(),
            &key(UA_PRIVATE),
            &b64::decode(UA_PUBLIC).unwrap(),
            &b64::decode(AUTH_SECRET).unwrap(),
        )
        .unwrap();
        assert_eq!(String::from_utf8(plaintext).unwrap(), PLAINTEXT);
    }

    #[test]
    fn encrypting_with_the_rfc_8291_keys_and_salt_gives_its_body() {
        let salt: [u8; 16] = b64::decode(SALT).unwrap().try_into().unwrap();
        let body = encrypt(
            PLAINTEXT.as_bytes(),
            &b64::decode(UA_PUBLIC).unwrap(),
            &b64::decode(AUTH_SECRET).unwrap(),
            &key(AS_PRIVATE),
            &salt,
        )
        .unwrap();
        assert_eq!(b64::encode(&body), BODY);
    }

    #[test]
    fn a_wrong_auth_secret_or_a_cut_body_does_not_decrypt() {
        let body = b64::decode(BODY).unwrap();
        let ua_public = b64::decode(UA_PUBLIC).unwrap();
        let wrong_auth = [0u8; 16];
        assert_eq!(
            decrypt(&body, &key(UA_PRIVATE), &ua_public, &wrong_auth),
            Err(EceError::Authentication)
        );
        let auth = b64::decode(AUTH_SECRET).unwrap();
        assert_eq!(
            decrypt(&body[..40], &key(UA_PRIVATE), &ua_public, &auth),
            Err(EceError::TooShort)
        );
        let mut small_records = body.clone();
        small_records[16..20].copy_from_slice(&18u32.to_be_bytes());
        assert_eq!(
            decrypt(&small_records, &key(UA_PRIVATE), &ua_public, &auth),
            Err(EceError::MultipleRecords(body.len() - 86))
        );
    }
}
