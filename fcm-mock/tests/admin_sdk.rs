//! Google's own Admin SDK (Python firebase-admin) against the mock: token grant, send,
//! send_each, dry run, an UNREGISTERED error, send_each_async. Requires python3 with
//! `pip install firebase-admin`; fails (never skips) without it.

mod common;

use std::path::Path;

use common::spawn_mock;
use reqwest::Method;
use serde_json::{json, Value};

const INSTALL_HINT: &str =
    "this test needs python3 with Google's Admin SDK: pip install firebase-admin";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firebase_admin_sdk_sends_through_the_mock() {
    let probe = tokio::process::Command::new("python3")
        .args(["-c", "import firebase_admin"])
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run python3 ({e}); {INSTALL_HINT}"));
    assert!(
        probe.status.success(),
        "{INSTALL_HINT}\n{}",
        String::from_utf8_lossy(&probe.stderr)
    );
    let mock = spawn_mock().await;
    mock.control(
        Method::POST,
        "/_mock/unregistered",
        Some(json!({"tokens": ["gone-token"]})),
    )
    .await;
    let key_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(key_file.path(), &mock.key_json).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/admin_sdk_send.py");

    let output = tokio::process::Command::new("python3")
        .arg(&script)
        .arg(mock.url())
        .arg(key_file.path())
        .output()
        .await
        .expect("run admin_sdk_send.py");

    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "admin_sdk_send.py failed\nstdout: {stdout}\nstderr: {stderr}"
    );
    let answer: Value = serde_json::from_str(stdout.trim()).expect("script prints JSON");
    let names = answer["names"].as_array().unwrap();
    assert_eq!(names.len(), 5);

    let recorded = mock.recorded().await;
    assert_eq!(
        recorded.len(),
        5,
        "dry run and unregistered sends are not recorded"
    );
    let recorded_names: Vec<&Value> = recorded.iter().map(|r| &r["name"]).collect();
    for name in names {
        assert!(recorded_names.contains(&name), "{name} not recorded");
    }
    let first = recorded
        .iter()
        .find(|r| r["message"]["token"] == "sdk-token-0")
        .unwrap();
    let message = &first["message"];
    assert_eq!(message["data"], json!({"i": "0", "kind": "admin-sdk"}));
    assert_eq!(message["notification"]["title"], "title 0");
    assert_eq!(message["android"]["collapse_key"], "ck");
    assert_eq!(message["android"]["priority"], "high");
    assert_eq!(message["android"]["ttl"], "3.500000000s");
    assert_eq!(mock.stats().await["tokens_issued"], 1);
}
