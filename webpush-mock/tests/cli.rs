//! The webpush-mock binary: gen-key, serving restricted to that key, and clear flag errors.

mod common;

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_webpush-mock");

#[tokio::test]
async fn gen_key_then_serve_restricted_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("vapid.pem");
    let gen = Command::new(BIN)
        .args(["gen-key", "--out"])
        .arg(&key_path)
        .output()
        .await
        .unwrap();
    assert!(
        gen.status.success(),
        "{}",
        String::from_utf8_lossy(&gen.stderr)
    );
    let public_key = String::from_utf8(gen.stdout).unwrap().trim().to_owned();
    webpush_mock::parse_public_key(&public_key).expect("stdout is the public key alone");
    let private_pem = std::fs::read_to_string(&key_path).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let mut child = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--vapid-public-key", &public_key])
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let url = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some((_, rest)) = line.split_once("webpush-mock listening on ") {
                return rest.trim().to_owned();
            }
        }
        panic!("webpush-mock exited before listening");
    })
    .await
    .expect("listening line within 20 s");

    let http = reqwest::Client::new();
    let subscription: Value = http
        .post(format!("{url}/_mock/subscriptions"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sub = common::Sub {
        endpoint: subscription["endpoint"].as_str().unwrap().to_owned(),
        p256dh: webpush_mock::b64::decode(subscription["keys"]["p256dh"].as_str().unwrap())
            .unwrap(),
        auth: webpush_mock::b64::decode(subscription["keys"]["auth"].as_str().unwrap()).unwrap(),
        json: subscription,
    };
    let owner = common::Sender {
        key: webpush_mock::VapidKey {
            private_pem,
            public_key,
        },
    };
    let answer = http
        .post(&sub.endpoint)
        .header("ttl", "60")
        .header("content-encoding", "aes128gcm")
        .header(
            "authorization",
            owner.authorization(&common::Sender::claims(&sub.endpoint)),
        )
        .body(common::encrypt(&sub, b"from the CLI"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 201);
    let stranger = common::Sender::new();
    let refused = http
        .post(&sub.endpoint)
        .header("ttl", "60")
        .header(
            "authorization",
            stranger.authorization(&common::Sender::claims(&sub.endpoint)),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 403);
    child.kill().await.unwrap();
}

#[tokio::test]
async fn bad_flags_are_clear_errors() {
    let cases: [(&[&str], &str); 2] = [
        (&["--vapid-public-key", "not-a-key"], "--vapid-public-key"),
        (&["--public-url", "push.test"], "--public-url"),
    ];
    for (args, expected) in cases {
        let output = Command::new(BIN)
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}
