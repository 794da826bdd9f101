//! Client-token verification and credential extraction. The first input byte picks the form:
//! - even: `<Authorization value>\n<query of GET /v1/events>\n<producer key>`, through the
//!   stream route's extraction (`events::stream_query`, `events::client_token`), `bearer`,
//!   `Auth::verify_client` and `Auth::verify_producer`;
//! - odd: `<JOSE header JSON>\n<claims JSON>`, signed here with the node's secret (HS256), so
//!   that the claim checks behind the signature are reached.
//!
//! Checked: no panic; a producer key is accepted only when it equals a configured key; a token
//! is accepted only when its header says HS256 and its claims (read here independently) hold a
//! valid `sub`, an `exp` not past and an `nbf` not ahead (with the leeway), and the issuer and
//! audience a node that asks for them requires.
#![no_main]

use aws_lc_rs::hmac;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use switchboard::auth::{bearer, Auth, AuthError, ClientClaims, LEEWAY_SECS};
use switchboard::config::AuthConfig;
use switchboard::http::events;
use switchboard::ids::UserId;

const SECRET: &str = "fuzz-secret-0123456789abcdef0123456789";
const KEYS: [&str; 3] = ["pk-one", "pk-two-longer", ""];
const ISSUER: &str = "https://login.example";
const AUDIENCE: &str = "switchboard";

struct Nodes {
    open: Auth,
    strict: Auth,
}

fn nodes() -> &'static Nodes {
    static NODES: std::sync::OnceLock<Nodes> = std::sync::OnceLock::new();
    NODES.get_or_init(|| {
        let cfg = |issuer: &str, audience: &str| AuthConfig {
            jwt_secret: SECRET.into(),
            producer_keys: KEYS.iter().map(|k| k.to_string()).collect(),
            issuer: issuer.into(),
            audience: audience.into(),
            ..AuthConfig::default()
        };
        Nodes {
            open: Auth::new(&cfg("", "")),
            strict: Auth::new(&cfg(ISSUER, AUDIENCE)),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        extracted(rest);
    } else {
        signed(rest);
    }
});

fn extracted(input: &[u8]) {
    let mut parts = input.splitn(3, |&b| b == b'\n');
    let (authorization, query, key) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let mut headers = http::HeaderMap::new();
    if let Ok(v) = http::HeaderValue::from_bytes(authorization) {
        if let Some(token) = bearer(Some(&v)) {
            let raw = v.to_str().expect("bearer takes visible ASCII only");
            assert!(raw.len() > 7 && raw[..6].eq_ignore_ascii_case("bearer"));
            assert!(!token.is_empty() && token == token.trim());
        }
        headers.insert(http::header::AUTHORIZATION, v);
    }
    let uri = format!("/v1/events?{}", String::from_utf8_lossy(query));
    if let Ok(uri) = uri.parse::<http::Uri>() {
        if let Ok(q) = events::stream_query(&uri) {
            if let Ok(token) = events::client_token(&headers, &q) {
                verify(token);
                if let Ok(claims) = nodes().open.verify_client(token) {
                    let _ = events::stream_request(&claims, &q);
                }
            }
        }
    }
    if let Ok(key) = std::str::from_utf8(key) {
        for auth in [&nodes().open, &nodes().strict] {
            match auth.verify_producer(key) {
                Ok(p) => assert!(
                    !key.is_empty() && KEYS[p.0] == key,
                    "{key:?} taken as {p:?}"
                ),
                Err(AuthError::ClientTokenOnProducerApi) => {
                    assert!(auth.verify_client(key).is_ok())
                }
                Err(_) => assert!(!KEYS.iter().any(|k| !k.is_empty() && *k == key)),
            }
        }
    }
}

fn signed(input: &[u8]) {
    let (header, claims) = match input.iter().position(|&b| b == b'\n') {
        Some(i) => (&input[..i], &input[i + 1..]),
        None => (&br#"{"alg":"HS256","typ":"JWT"}"#[..], input),
    };
    let signing = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let key = hmac::Key::new(hmac::HMAC_SHA256, SECRET.as_bytes());
    let tag = hmac::sign(&key, signing.as_bytes());
    let token = format!("{signing}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()));
    verify(&token);
}

/// Verifies `token` on both nodes and checks what they accept against the token's own parts.
fn verify(token: &str) {
    let now = switchboard::time::unix_secs();
    for (strict, auth) in [(false, &nodes().open), (true, &nodes().strict)] {
        let Ok(claims) = auth.verify_client(token) else {
            continue;
        };
        // serde_json skips a claim the node does not read without checking it (its UTF-8, a
        // number's range), so the claims of an accepted token may not parse here; the node
        // signed them.
        let Some((header, payload)) = parts(token) else {
            continue;
        };
        assert_eq!(header["alg"], "HS256", "{header}");
        check(&claims, &payload, now, strict);
    }
}

fn check(claims: &ClientClaims, payload: &Value, now: u64, strict: bool) {
    let sub = payload["sub"].as_str().expect("sub is a string");
    assert_eq!(sub.parse::<UserId>().ok().as_ref(), Some(&claims.sub));
    let exp = payload["exp"].as_f64().expect("exp is a number");
    assert!(exp + LEEWAY_SECS as f64 >= now as f64, "exp {exp} is past");
    if let Some(nbf) = payload.get("nbf") {
        let nbf = nbf.as_f64().expect("nbf is a number");
        assert!(nbf <= (now + LEEWAY_SECS) as f64, "nbf {nbf} is ahead");
    }
    if strict {
        assert_eq!(payload["iss"], ISSUER);
        let aud = &payload["aud"];
        assert!(
            aud == AUDIENCE
                || aud
                    .as_array()
                    .is_some_and(|a| a.iter().any(|x| x == AUDIENCE)),
            "{aud}"
        );
    }
}

/// The header and the claims of a compact JWS, decoded here.
fn parts(token: &str) -> Option<(Value, Value)> {
    let mut it = token.split('.');
    let mut json = || -> Option<Value> {
        let bytes = URL_SAFE_NO_PAD.decode(it.next()?).ok()?;
        serde_json::from_str(&String::from_utf8_lossy(&bytes)).ok()
    };
    Some((json()?, json()?))
}
