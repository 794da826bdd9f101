//! Safe defaults and authentication at the edge: the binary refuses published credentials off
//! loopback and never prints a URL's password; client tokens of the wrong algorithm or claims,
//! and credentials on the wrong API, are refused on every path; a notification's record is
//! readable by its own producer only; `/readyz` tells an anonymous caller nothing else.

mod common;

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use common::services::RedisServer;
use common::{Options, TestApp, JWT_SECRET, PRODUCER_KEY};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::process::Command;

/// 48 bytes: long enough for any address.
const GOOD_SECRET: &str = "a-good-secret-of-forty-eight-bytes-for-the-test!";
const GOOD_KEY: &str = "a-good-producer-key";

/// Runs `switchboard serve` with `env` until it exits: its status and what it wrote to stderr.
async fn run_to_exit(env: &[(&str, &str)]) -> (ExitStatus, String) {
    let dir = tempfile::tempdir().unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("serve")
        .current_dir(dir.path())
        .env(
            "SWITCHBOARD__STORE__URL",
            format!("sqlite://{}/sb.db?mode=rwc", dir.path().display()),
        )
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("the binary should exit at once")
        .unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn refused_naming(env: &[(&str, &str)], key: &str) -> String {
    let (status, stderr) = run_to_exit(env).await;
    assert!(!status.success(), "started anyway: {stderr}");
    assert!(stderr.contains(key), "{key} not named in: {stderr}");
    stderr
}

#[tokio::test]
async fn the_development_jwt_secret_is_refused_off_loopback() {
    let stderr = refused_naming(
        &[
            ("SWITCHBOARD__SERVER__LISTEN", "0.0.0.0:0"),
            ("SWITCHBOARD__AUTH__PRODUCER_KEYS", &format!("[{GOOD_KEY}]")),
        ],
        "auth.jwt_secret",
    )
    .await;
    assert!(!stderr.contains("auth.producer_keys"), "{stderr}");
}

#[tokio::test]
async fn the_development_producer_key_is_refused_off_loopback() {
    let stderr = refused_naming(
        &[
            ("SWITCHBOARD__SERVER__LISTEN", "0.0.0.0:0"),
            ("SWITCHBOARD__AUTH__JWT_SECRET", GOOD_SECRET),
            (
                "SWITCHBOARD__AUTH__PRODUCER_KEYS",
                &format!("[{GOOD_KEY},dev-producer-key]"),
            ),
        ],
        "auth.producer_keys",
    )
    .await;
    assert!(!stderr.contains("auth.jwt_secret"), "{stderr}");
}

#[tokio::test]
async fn a_31_byte_jwt_secret_is_refused_off_loopback() {
    let secret = &GOOD_SECRET[..31];
    let stderr = refused_naming(
        &[
            ("SWITCHBOARD__SERVER__LISTEN", "0.0.0.0:0"),
            ("SWITCHBOARD__AUTH__JWT_SECRET", secret),
            ("SWITCHBOARD__AUTH__PRODUCER_KEYS", &format!("[{GOOD_KEY}]")),
        ],
        "auth.jwt_secret is 31 bytes",
    )
    .await;
    assert!(!stderr.contains(secret), "the secret was printed: {stderr}");
}

#[tokio::test]
async fn good_secrets_start_on_every_address_and_dev_ones_on_loopback() {
    let app = TestApp::spawn_with(
        Options::default()
            .env("SWITCHBOARD__SERVER__LISTEN", "0.0.0.0:0")
            .env("SWITCHBOARD__AUTH__JWT_SECRET", GOOD_SECRET)
            .env("SWITCHBOARD__AUTH__PRODUCER_KEYS", &format!("[{GOOD_KEY}]")),
    )
    .await;
    assert!(app.addr.starts_with("0.0.0.0:"), "{}", app.addr);
    let url = format!("http://{}/readyz", app.addr.replace("0.0.0.0", "127.0.0.1"));
    let r = app.http.get(url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // The quickstart: the embedded development credentials, on loopback, with a warning.
    let quickstart = TestApp::spawn_with(
        Options::default()
            .env("SWITCHBOARD__AUTH__JWT_SECRET", "dev-only-change-me")
            .env("SWITCHBOARD__AUTH__PRODUCER_KEYS", "[dev-producer-key]"),
    )
    .await;
    let r = quickstart
        .http
        .get(quickstart.url("/v1/presence/alice"))
        .bearer_auth("dev-producer-key")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(quickstart.log_contains("auth.jwt_secret holds the embedded development credential"));
}

#[tokio::test]
async fn a_failed_start_never_prints_the_redis_password() {
    let (status, stderr) = run_to_exit(&[
        ("SWITCHBOARD__BROKER__KIND", "redis"),
        (
            "SWITCHBOARD__BROKER__REDIS_URL",
            "redis://:s3cret@127.0.0.1:1",
        ),
    ])
    .await;
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("broker.redis_url = redis://:***@127.0.0.1:1"),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cret"), "{stderr}");
}

#[tokio::test]
async fn a_failed_start_never_prints_the_store_password() {
    let (status, stderr) = run_to_exit(&[(
        "SWITCHBOARD__STORE__URL",
        "postgres://app:s3cret@127.0.0.1:1/sb",
    )])
    .await;
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("store.url = postgres://app:***@127.0.0.1:1/sb"),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cret"), "{stderr}");
}

/// Unpadded base64url, for hand-made token parts.
fn b64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

fn hs(alg: jsonwebtoken::Algorithm, claims: Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(alg),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

fn now() -> u64 {
    switchboard::time::unix_secs()
}

/// A client token is refused with 401 and the error shape on the direct stream path, on the
/// stream path through hyper (an `Origin` header), and on a client route.
async fn refused_everywhere(app: &TestApp, token: &str, what: &str) {
    let direct = reqwest::Client::new()
        .get(app.url("/v1/events"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(direct.headers()["connection"], "close", "the direct path");
    let through_hyper = reqwest::Client::new()
        .get(app.url("/v1/events"))
        .bearer_auth(token)
        .header("origin", "https://app.example")
        .send()
        .await
        .unwrap();
    let device = app
        .http
        .put(app.url("/v1/devices/phone"))
        .bearer_auth(token)
        .json(&json!({"fcm_token": "tok", "platform": "android"}))
        .send()
        .await
        .unwrap();
    for (path, resp) in [
        ("events", direct),
        ("events via hyper", through_hyper),
        ("devices", device),
    ] {
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{what} on {path}");
        let body: Value = resp.json().await.unwrap();
        let code = body["error"]["code"].as_str().unwrap_or_default();
        assert!(
            ["invalid_token", "token_expired"].contains(&code),
            "{what} on {path}: {body}"
        );
    }
}

#[tokio::test]
async fn tokens_of_other_algorithms_or_with_bad_claims_get_401_on_every_path() {
    use jsonwebtoken::Algorithm;
    let app = TestApp::spawn().await;
    let good = json!({"sub": "u1", "exp": now() + 60});
    let none = format!(
        "{}.{}.",
        b64url(br#"{"alg":"none","typ":"JWT"}"#),
        b64url(good.to_string().as_bytes())
    );
    let key = fcm_mock::generate_service_account("http://127.0.0.1:1", "p").unwrap();
    let pem = serde_json::from_str::<Value>(&key).unwrap()["private_key"]
        .as_str()
        .unwrap()
        .to_string();
    let rs256 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(Algorithm::RS256),
        &good,
        &jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
    )
    .unwrap();
    let cases = [
        ("alg none", none),
        ("RS256", rs256),
        ("HS384", hs(Algorithm::HS384, good.clone())),
        ("no exp", hs(Algorithm::HS256, json!({"sub": "u1"}))),
        ("no sub", hs(Algorithm::HS256, json!({"exp": now() + 60}))),
        (
            "a bad sub",
            hs(Algorithm::HS256, json!({"sub": "a b", "exp": now() + 60})),
        ),
        (
            "nbf in a minute",
            hs(
                Algorithm::HS256,
                json!({"sub": "u1", "exp": now() + 600, "nbf": now() + 60}),
            ),
        ),
    ];
    for (what, token) in &cases {
        refused_everywhere(&app, token, what).await;
    }
    // The same claims, HS256 and signed with the secret, are fine.
    let ok = app
        .http
        .put(app.url("/v1/devices/phone"))
        .bearer_auth(hs(Algorithm::HS256, good))
        .json(&json!({"fcm_token": "tok", "platform": "android"}))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_wrong_issuer_or_audience_gets_401_when_they_are_configured() {
    use jsonwebtoken::Algorithm::HS256;
    let app = TestApp::spawn_with(
        Options::default()
            .env("SWITCHBOARD__AUTH__ISSUER", "https://login.example")
            .env("SWITCHBOARD__AUTH__AUDIENCE", "switchboard"),
    )
    .await;
    let claims = |iss: Option<&str>, aud: Option<&str>| {
        let mut c = json!({"sub": "u1", "exp": now() + 60});
        if let Some(iss) = iss {
            c["iss"] = iss.into();
        }
        if let Some(aud) = aud {
            c["aud"] = aud.into();
        }
        hs(HS256, c)
    };
    for (what, token) in [
        (
            "wrong iss",
            claims(Some("https://evil.example"), Some("switchboard")),
        ),
        (
            "wrong aud",
            claims(Some("https://login.example"), Some("other")),
        ),
        ("no iss", claims(None, Some("switchboard"))),
        ("no aud", claims(Some("https://login.example"), None)),
    ] {
        refused_everywhere(&app, &token, what).await;
    }
    let ok = claims(Some("https://login.example"), Some("switchboard"));
    let s = common::SseStream::open(&app.url("/v1/events"), &ok).await;
    assert_eq!(s.status, StatusCode::OK);
}

#[tokio::test]
async fn credentials_on_the_wrong_api_are_refused_with_the_error_shape() {
    let app = TestApp::spawn().await;
    let client_routes = [
        ("GET", "/v1/events", None),
        (
            "POST",
            "/v1/ack",
            Some(json!({"ids": [uuid::Uuid::now_v7().to_string()]})),
        ),
        (
            "PUT",
            "/v1/devices/phone",
            Some(json!({"fcm_token": "t", "platform": "web"})),
        ),
        ("DELETE", "/v1/devices/phone", None),
    ];
    let id = uuid::Uuid::now_v7().to_string();
    let producer_routes = [
        (
            "POST",
            "/v1/notify",
            Some(json!({"user_id": "u", "data": {"k": "v"}})),
        ),
        (
            "POST",
            "/v1/notify/batch",
            Some(json!({"notifications": [{"user_id": "u", "data": {"k": "v"}}]})),
        ),
        (
            "POST",
            "/v1/broadcast",
            Some(json!({"topic": "t", "data": {}})),
        ),
        ("GET", "/v1/presence/u", None),
        ("GET", &format!("/v1/notifications/{id}"), None),
    ];
    let client_token = app.token("mallory");
    for (routes, credential, status, code) in [
        (
            &client_routes[..],
            PRODUCER_KEY,
            StatusCode::UNAUTHORIZED,
            "invalid_token",
        ),
        (
            &producer_routes[..],
            client_token.as_str(),
            StatusCode::FORBIDDEN,
            "forbidden",
        ),
    ] {
        for (method, path, body) in routes {
            let mut req = reqwest::Client::new()
                .request(method.parse().unwrap(), app.url(path))
                .bearer_auth(credential);
            if let Some(b) = body {
                req = req.json(b);
            }
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status(), status, "{method} {path}");
            let v: Value = resp.json().await.unwrap();
            assert_eq!(v["error"]["code"], code, "{method} {path}: {v}");
            assert!(v["error"]["message"].is_string(), "{v}");
        }
    }
}

/// `GET /v1/notifications/{id}` with `key`.
async fn status_with(app: &TestApp, key: &str, id: &str) -> (StatusCode, Value) {
    let resp = app
        .http
        .get(app.url(&format!("/v1/notifications/{id}")))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    (resp.status(), resp.json().await.unwrap())
}

/// A notification from `PRODUCER_KEY` on `creator`, read on `reader`: by its producer, by
/// `other_key`, and (for comparison) an id nobody created.
async fn only_its_producer_reads_a_record(creator: &TestApp, reader: &TestApp, other_key: &str) {
    let (status, answer) = creator
        .notify(json!({"user_id": "olga", "data": {"k": "v"}}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let id = answer["id"].as_str().unwrap();
    let (status, record) = status_with(reader, PRODUCER_KEY, id).await;
    assert_eq!(status, StatusCode::OK, "{record}");
    assert_eq!(record["id"], id);
    let (status, foreign) = status_with(reader, other_key, id).await;
    let unknown = uuid::Uuid::now_v7().to_string();
    let (unknown_status, unknown_body) = status_with(reader, other_key, &unknown).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{foreign}");
    assert_eq!((status, foreign), (unknown_status, unknown_body));
}

#[tokio::test]
async fn another_producer_gets_404_for_a_record_in_memory() {
    let app = TestApp::spawn_with(Options::default().env(
        "SWITCHBOARD__AUTH__PRODUCER_KEYS",
        &format!("[{PRODUCER_KEY},other-key]"),
    ))
    .await;
    only_its_producer_reads_a_record(&app, &app, "other-key").await;
}

/// In Redis the record keeps the key's name, not its place in the list: two nodes list the
/// same keys in different orders.
#[tokio::test]
async fn another_producer_gets_404_for_a_record_in_redis() {
    let namespace = format!("t{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
    let node = |keys: String| {
        Options::default()
            .env("SWITCHBOARD__BROKER__KIND", "redis")
            .env("SWITCHBOARD__BROKER__REDIS_URL", "redis://127.0.0.1:6379")
            .env("SWITCHBOARD__BROKER__NAMESPACE", &namespace)
            .env("SWITCHBOARD__AUTH__PRODUCER_KEYS", &keys)
    };
    let a = TestApp::spawn_with(node(format!("[{PRODUCER_KEY},other-key]"))).await;
    let b = TestApp::spawn_with(node(format!("[other-key,{PRODUCER_KEY}]"))).await;
    only_its_producer_reads_a_record(&a, &b, "other-key").await;
}

#[tokio::test]
async fn readyz_tells_an_anonymous_caller_nothing_when_the_broker_is_down() {
    let mut redis = RedisServer::start();
    let app = TestApp::spawn_with(
        Options::default()
            .env("SWITCHBOARD__BROKER__KIND", "redis")
            .env("SWITCHBOARD__BROKER__REDIS_URL", &redis.url()),
    )
    .await;
    let readyz = || async {
        let r = app.http.get(app.url("/readyz")).send().await.unwrap();
        let retry_after = r.headers().get("retry-after").cloned();
        (r.status(), retry_after, r.json::<Value>().await.unwrap())
    };
    let (status, _, body) = readyz().await;
    assert_eq!((status, body), (StatusCode::OK, json!({"status": "ready"})));
    assert_eq!(app.metric("switchboard_ready").await, 1.0);

    redis.kill();
    for _ in 0..5 {
        let (status, retry_after, body) = readyz().await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(retry_after.is_some());
        assert_eq!(body["error"]["code"], "not_ready", "{body}");
        let text = body.to_string().to_lowercase();
        for detail in [
            "redis",
            "broker",
            "store",
            "127.0.0.1",
            "connect",
            "refused",
            "io",
        ] {
            assert!(!text.contains(detail), "{detail:?} in {body}");
        }
    }
    assert_eq!(app.metric("switchboard_ready").await, 0.0);
    assert!(
        app.metric("switchboard_readiness_failures_total{component=\"broker\"}")
            .await
            >= 5.0
    );
    assert_eq!(
        app.metric("switchboard_readiness_failures_total{component=\"store\"}")
            .await,
        0.0
    );
    assert!(
        common::eventually(Duration::from_secs(5), || async {
            app.log_contains("not ready")
        })
        .await,
        "the log says what failed"
    );
    let logged = app
        .logs
        .lock()
        .iter()
        .filter(|l| l.contains("not ready"))
        .count();
    assert_eq!(logged, 1, "five failures within seconds log once");
}
