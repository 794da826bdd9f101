//! The fcm-mock binary: gen-key, serving with a key file, and clear errors for bad keys.

mod common;

use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_fcm-mock");

#[tokio::test]
async fn gen_key_then_serve_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("key.json");
    let gen = Command::new(BIN)
        .args(["gen-key", "--out"])
        .arg(&key_path)
        .args([
            "--mock-url",
            "http://127.0.0.1:4999/",
            "--project-id",
            "cli-project",
        ])
        .output()
        .await
        .unwrap();
    assert!(
        gen.status.success(),
        "{}",
        String::from_utf8_lossy(&gen.stderr)
    );
    let key: Value = serde_json::from_str(&std::fs::read_to_string(&key_path).unwrap()).unwrap();
    assert_eq!(key["type"], "service_account");
    assert_eq!(key["project_id"], "cli-project");
    assert_eq!(key["token_uri"], "http://127.0.0.1:4999/token");
    assert!(key["private_key"]
        .as_str()
        .unwrap()
        .starts_with("-----BEGIN PRIVATE KEY-----\n"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let mut child = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--service-account"])
        .arg(&key_path)
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let url = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some((_, rest)) = line.split_once("fcm-mock listening on ") {
                return rest.trim().to_owned();
            }
        }
        panic!("fcm-mock exited before listening");
    })
    .await
    .expect("listening line within 20 s");
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    let email = key["client_email"].as_str().unwrap();
    let assertion = common::sign(
        &common::claims(email, common::MESSAGING_SCOPE),
        key["private_key"].as_str().unwrap(),
    );
    let http = reqwest::Client::new();
    let token: Value = http
        .post(format!("{url}/token"))
        .form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", &assertion),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sent = http
        .post(format!("{url}/v1/projects/cli-project/messages:send"))
        .bearer_auth(token["access_token"].as_str().unwrap())
        .json(&json!({"message": {"token": "d"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status().as_u16(), 200);
    child.kill().await.unwrap();
}

#[tokio::test]
async fn missing_or_bad_service_account_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let not_a_key = dir.path().join("user.json");
    std::fs::write(&not_a_key, r#"{"type":"authorized_user","client_id":"x"}"#).unwrap();
    let cases: [(Vec<String>, &str); 3] = [
        (vec![], "--service-account"),
        (
            vec!["--service-account".into(), "/nonexistent/key.json".into()],
            "cannot read",
        ),
        (
            vec!["--service-account".into(), not_a_key.display().to_string()],
            "service-account key",
        ),
    ];
    for (args, expected) in cases {
        let output = Command::new(BIN)
            .args(["--listen", "127.0.0.1:0"])
            .args(&args)
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}
