//! What one Web Push message costs in CPU before the network: RFC 8291 encryptions per second
//! of a notification's payload (fresh ephemeral key, ECDH, HKDF, AES-128-GCM: what every send
//! does), and VAPID signatures per second (one per push service origin per token lifetime), on
//! one thread. bench/run.sh (W6) runs it:
//!
//! ```sh
//! cargo run --release --example webpush_encrypt -- 5    # seconds per measure
//! ```
#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use aws_lc_rs::agreement::{PrivateKey, ECDH_P256};
use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::Engine as _;
use serde_json::json;
use switchboard::notification::NotifyRequest;
use switchboard::push::webpush::{encrypt, payload, Subscription, VapidSigner};

fn main() -> anyhow::Result<()> {
    let secs: f64 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(5.0);
    let window = Duration::from_secs_f64(secs);
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let ua = PrivateKey::generate(&ECDH_P256).map_err(|_| anyhow::anyhow!("P-256 keygen"))?;
    let p256dh = ua
        .compute_public_key()
        .map_err(|_| anyhow::anyhow!("P-256 public key"))?;
    let sub = Subscription::from_json(&json!({
        "endpoint": "https://push.example.net/wpush/v2/abc",
        "keys": {"p256dh": b64.encode(p256dh.as_ref()), "auth": b64.encode([7u8; 16])},
    }))?;
    // The shape W6 sends: a small data map and a title.
    let n = serde_json::from_value::<NotifyRequest>(json!({
        "user_id": "u-1", "data": {"order": "42", "status": "filled"},
        "notification": {"title": "Order filled"},
    }))?
    .accept()
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let plaintext = payload(&n, false);

    let (encryptions, spent) = repeat(window, || {
        encrypt(&plaintext, &sub).expect("a small payload encrypts");
    });
    let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
        .map_err(|_| anyhow::anyhow!("P-256 keygen"))?;
    let signer = VapidSigner::new(
        key,
        "mailto:bench@example.com".into(),
        Duration::from_secs(43200),
    );
    let origin = "https://push.example.net";
    let (signatures, signing) = repeat(window, || {
        signer.forget(origin);
        let _ = signer.authorization(origin);
    });
    let report = json!({
        "payload_bytes": plaintext.len(),
        "threads": 1,
        "encryptions": encryptions,
        "encryptions_per_sec": (encryptions as f64 / spent).round(),
        "encrypt_us": (spent / encryptions as f64 * 1e6 * 100.0).round() / 100.0,
        "vapid_signatures_per_sec": (signatures as f64 / signing).round(),
    });
    println!("{report}");
    eprintln!(
        "webpush encrypt: {:.0}/s ({} B payload, one thread); VAPID signatures {:.0}/s",
        encryptions as f64 / spent,
        plaintext.len(),
        signatures as f64 / signing
    );
    Ok(())
}

/// Runs `f` for about `window`; returns how many times and the seconds it took.
fn repeat(window: Duration, mut f: impl FnMut()) -> (u64, f64) {
    let start = Instant::now();
    let mut count = 0u64;
    while start.elapsed() < window {
        for _ in 0..100 {
            f();
        }
        count += 100;
    }
    (count, start.elapsed().as_secs_f64())
}
