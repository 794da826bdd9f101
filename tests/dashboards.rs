//! The operations files in deploy/: the alerting rules pass `promtool check rules` and their
//! unit tests (`promtool test rules`), and every metric the Grafana dashboard and the rules
//! name is one a live node exports.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{eventually, Options, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};

const RULES: &str = "deploy/prometheus/alerts.yml";
const RULE_TESTS: &str = "deploy/prometheus/alerts.test.yml";
const DASHBOARD: &str = "deploy/grafana/switchboard.json";

fn repo(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(path)
        .display()
        .to_string()
}

/// Runs promtool with `args`; fails with how to install it when it is missing.
fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool").args(args).output().unwrap_or_else(|e| {
        panic!("promtool could not be run ({e}): apt-get install prometheus (Debian's package has promtool)")
    });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

#[test]
fn the_alerting_rules_pass_promtool_check_and_their_unit_tests() {
    let checked = promtool(&["check", "rules", &repo(RULES)]);
    assert!(checked.contains("SUCCESS"), "{checked}");
    let tested = promtool(&["test", "rules", &repo(RULE_TESTS)]);
    assert!(tested.contains("SUCCESS"), "{tested}");
}

/// Every `switchboard_*` name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("switchboard_") {
        let before = rest[..at].chars().next_back();
        let tail = &rest[at..];
        let len = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        // Part of a longer identifier (a job or file name) is not a metric.
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '/') {
            names.insert(tail[..len].to_string());
        }
        rest = &tail[len..];
    }
    names
}

/// The queries of the dashboard: each panel target's `expr` and each variable's query.
fn dashboard_queries(dashboard: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            out.push(target["expr"].as_str().expect("expr").to_string());
        }
    }
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let Some(q) = variable["query"]["query"].as_str() {
            out.push(q.to_string());
        }
    }
    out
}

/// The names a `/metrics` text exports: each sample's name, and a histogram's series.
fn exported(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if let Some(typed) = line.strip_prefix("# TYPE ") {
            let mut parts = typed.split_whitespace();
            if let (Some(name), Some("histogram")) = (parts.next(), parts.next()) {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            names.insert(line[..end].to_string());
        }
    }
    names
}

#[tokio::test]
async fn every_metric_the_dashboard_and_the_rules_name_is_exported_by_a_node() {
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(repo(DASHBOARD)).unwrap()).unwrap();
    let queries = dashboard_queries(&dashboard);
    assert!(queries.len() > 20, "the dashboard has its panels");
    let mut named = BTreeSet::new();
    for q in &queries {
        let names = metric_names(q);
        assert!(
            !names.is_empty(),
            "a query without a switchboard metric: {q}"
        );
        named.extend(names);
    }
    let rules = std::fs::read_to_string(repo(RULES)).unwrap();
    let in_rules = metric_names(&rules);
    assert!(in_rules.len() >= 8, "{in_rules:?}");
    named.extend(in_rules);

    // A node with some traffic: a stream write, an ack, an FCM delivery, a route of each kind.
    let app = TestApp::spawn_with(Options::with_fcm()).await;
    let mut streaming = app.stream("alice", "device_id=web&ack=true").await;
    let (status, sent) = app
        .notify(json!({"user_id": "alice", "data": {"k": "v"}}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{sent}");
    let id = sent["id"].as_str().unwrap().to_string();
    streaming
        .next(Duration::from_secs(5))
        .await
        .expect("written");
    assert_eq!(app.ack("alice", &[&id]).await, StatusCode::NO_CONTENT);
    app.register_device("bob", "phone", "token-bob").await;
    app.notify(json!({"user_id": "bob", "data": {"k": "v"}}))
        .await;
    app.notify(json!({"user_id": "carol", "data": {"k": "v"}}))
        .await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            app.metric("switchboard_fcm_deliveries_total{status=\"fcm_accepted\"}")
                .await
                >= 1.0
        })
        .await,
        "the FCM delivery went out"
    );
    let text = app.metrics_text().await;
    let exported = exported(&text);
    let missing: Vec<&String> = named.iter().filter(|n| !exported.contains(*n)).collect();
    assert!(
        missing.is_empty(),
        "named in {DASHBOARD} or {RULES} but not exported by a node: {missing:?}\n{text}"
    );
    for labelled in [
        "switchboard_notifications_total{route=\"sse\"} 1",
        "switchboard_notifications_total{route=\"fcm\"} 1",
        "switchboard_notifications_total{route=\"none\"} 1",
        "switchboard_acks_total{result=\"acked\"} 1",
        "switchboard_fcm_sends_avoided_total 1",
    ] {
        assert!(text.contains(labelled), "{labelled} in\n{text}");
    }
}

#[test]
fn metric_names_are_found_whole_and_only_as_metrics() {
    let names = metric_names(
        r#"sum(rate(switchboard_acks_total{job="switchboard"}[5m])) / switchboard_ready and deploy/switchboard_x"#,
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["switchboard_acks_total", "switchboard_ready"]
    );
}
