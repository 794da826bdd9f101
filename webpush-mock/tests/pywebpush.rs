//! An independent application server against the mock: Mozilla's pywebpush (with py_vapid and
//! http_ece) encrypts and signs, the mock verifies and decrypts. Requires python3 with
//! `pip install -r webpush-mock/tests/requirements.txt`; fails (never skips) without it.

mod common;

use std::path::Path;

use common::spawn_mock_with;
use reqwest::Method;
use serde_json::{json, Value};
use webpush_mock::Config;

const INSTALL_HINT: &str = "this test needs python3 with pywebpush: \
pip install -r webpush-mock/tests/requirements.txt";

/// Runs tests/pywebpush_send.py on `jobs`; returns its per-job answers.
async fn pywebpush(jobs: Value) -> Vec<Value> {
    let probe = tokio::process::Command::new("python3")
        .args(["-c", "import pywebpush, py_vapid"])
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run python3 ({e}); {INSTALL_HINT}"));
    assert!(
        probe.status.success(),
        "{INSTALL_HINT}\n{}",
        String::from_utf8_lossy(&probe.stderr)
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pywebpush_send.py");
    let mut child = tokio::process::Command::new("python3")
        .arg(&script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run pywebpush_send.py");
    let mut stdin = child.stdin.take().unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stdin, jobs.to_string().as_bytes())
        .await
        .unwrap();
    drop(stdin);
    let output = child.wait_with_output().await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "pywebpush_send.py failed\nstdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.trim()).expect("the script prints a JSON list")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pywebpush_messages_decrypt_and_its_vapid_verifies() {
    let key = webpush_mock::generate_vapid_key().unwrap();
    let key_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(key_file.path(), &key.private_pem).unwrap();
    let config = Config {
        vapid_public_key: Some(webpush_mock::parse_public_key(&key.public_key).unwrap()),
        ..Config::default()
    };
    let mock = spawn_mock_with(config).await;
    let sub = mock.subscribe().await;
    let gone = mock.subscribe().await;
    mock.control(
        Method::POST,
        "/_mock/gone",
        Some(json!({"ids": [gone.endpoint]})),
    )
    .await;
    let long = "é".repeat(1500);
    let pem = key_file.path().display().to_string();
    let answers = pywebpush(json!([
        {"subscription": sub.json, "data": "Hello from pywebpush", "vapid_key": pem, "ttl": 120,
         "headers": {"Urgency": "high", "Topic": "greeting"}},
        {"subscription": sub.json, "data": long, "vapid_key": pem, "ttl": 60},
        {"subscription": sub.json, "data": "from a stranger", "vapid_key": null},
        {"subscription": gone.json, "data": "too late", "vapid_key": pem},
    ]))
    .await;

    let statuses: Vec<&Value> = answers.iter().map(|a| &a["status"]).collect();
    assert_eq!(statuses, [201, 201, 403, 410], "{answers:#?}");
    assert!(answers[2]["body"]
        .as_str()
        .unwrap()
        .contains("vapid_key_mismatch"));
    assert_eq!(answers[0]["public_key"], key.public_key.as_str());

    let messages = mock.messages().await;
    assert_eq!(messages.len(), 2);
    let first = &messages[0];
    assert_eq!(first["plaintext"], "Hello from pywebpush");
    assert_eq!(first["location"], answers[0]["location"]);
    assert_eq!(first["ttl"], 120);
    assert_eq!(first["urgency"], "high");
    assert_eq!(first["topic"], "greeting");
    assert_eq!(first["vapid"]["sub"], "mailto:pywebpush@example.com");
    assert_eq!(first["vapid"]["aud"], mock.url().as_str());
    assert_eq!(first["vapid"]["k"], key.public_key.as_str());
    assert_eq!(messages[1]["plaintext"], long.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mock_without_a_configured_key_accepts_a_key_pywebpush_generated() {
    let mock = spawn_mock_with(Config::default()).await;
    let sub = mock.subscribe().await;
    let answers = pywebpush(json!([
        {"subscription": sub.json, "data": "{\"kind\":\"json\"}", "vapid_key": null, "ttl": 5},
    ]))
    .await;
    assert_eq!(answers[0]["status"], 201, "{answers:#?}");
    let message = &mock.messages().await[0];
    assert_eq!(message["plaintext"], "{\"kind\":\"json\"}");
    assert_eq!(message["vapid"]["k"], answers[0]["public_key"]);
}
