//! The apns-mock binary: gen-key, serving with the key it wrote, and clear errors for bad flags.

mod common;

use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_apns-mock");

#[tokio::test]
async fn gen_key_then_serve_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("AuthKey.p8");
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
    let key_id = String::from_utf8(gen.stdout).unwrap().trim().to_owned();
    assert_eq!(key_id.len(), 10, "stdout is the key id alone: {key_id:?}");
    let p8 = std::fs::read_to_string(&key_path).unwrap();
    assert!(p8.starts_with("-----BEGIN PRIVATE KEY-----\n"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let mut child = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--key-id", &key_id, "--team-id"])
        .arg(common::TEAM_ID)
        .arg("--auth-key")
        .arg(&key_path)
        .args(["--topic", common::BUNDLE_ID])
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let url = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some((_, rest)) = line.split_once("apns-mock listening on ") {
                return rest.split_whitespace().next().unwrap().to_owned();
            }
        }
        panic!("apns-mock exited before listening");
    })
    .await
    .expect("listening line within 20 s");

    let token = common::sign(
        &json!({"iss": common::TEAM_ID, "iat": common::unix_now()}),
        &key_id,
        &p8,
    );
    let answer = common::h2_client()
        .post(format!("{url}/3/device/{}", common::DEVICE))
        .header("authorization", format!("bearer {token}"))
        .header("apns-topic", common::BUNDLE_ID)
        .body(r#"{"aps":{"alert":"hello"}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    child.kill().await.unwrap();
}

#[tokio::test]
async fn missing_or_bad_flags_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let not_a_key = dir.path().join("key.p8");
    std::fs::write(&not_a_key, "hello").unwrap();
    let key = not_a_key.display().to_string();
    let base = [
        "--listen",
        "127.0.0.1:0",
        "--key-id",
        "ABCDE12345",
        "--team-id",
        "TEAM123456",
    ];
    let cases: [(Vec<&str>, &str); 4] = [
        (vec!["--listen", "127.0.0.1:0"], "--key-id"),
        (base.to_vec(), "--auth-key"),
        (
            [
                &base[..],
                &["--auth-key", "/nonexistent.p8", "--topic", "a.b"],
            ]
            .concat(),
            "cannot read",
        ),
        (
            [&base[..], &["--auth-key", &key, "--topic", "a.b"]].concat(),
            "not a usable APNs key",
        ),
    ];
    for (args, expected) in cases {
        let output = Command::new(BIN).args(&args).output().await.unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}
