//! The durable push queue against the real binary and fcm-mock over HTTP: FCM outages longer
//! than any in-memory retry budget, restarts and SIGKILL in the middle of them, a node dying
//! while it holds sends, 429 storms with Retry-After, deadlines, and the queue's bound.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::deploy::deploy_with;
use common::{eventually, Mock, Options, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// Retries every second at most during an outage; a lease short enough for a test.
const PUSH_ENV: &[(&str, &str)] = &[
    ("SWITCHBOARD__FCM__MAX_ATTEMPTS", "0"),
    ("SWITCHBOARD__FCM__BACKOFF_BASE_MS", "100"),
    ("SWITCHBOARD__FCM__BACKOFF_MAX_MS", "1000"),
    ("SWITCHBOARD__FCM__REQUEST_TIMEOUT_SECS", "2"),
    ("SWITCHBOARD__PUSH__LEASE_SECS", "4"),
];

const USERS: usize = 20;

/// One node on its own SQLite database in `dir`, sending to `mock`.
async fn one_node(dir: &std::path::Path, mock: &Mock, extra: &[(&str, &str)]) -> TestApp {
    let opts = Options {
        shared_fcm: Some((mock.url.clone(), mock.key_path.clone())),
        ..Options::default()
    }
    .env(
        "SWITCHBOARD__STORE__URL",
        &format!("sqlite://{}/switchboard.db?mode=rwc", dir.display()),
    );
    let opts = PUSH_ENV
        .iter()
        .chain(extra)
        .fold(opts, |o, (k, v)| o.env(k, v));
    TestApp::spawn_with(opts).await
}

/// fcm-mock answers 503 to every send until [`outage_ends`].
async fn outage_starts(mock: &Mock) {
    mock.control("faults", json!({"status": 503, "count": 1_000_000_000u32}))
        .await;
}

async fn outage_ends(mock: &Mock) {
    let r = reqwest::Client::new()
        .delete(format!("{}/_mock/faults", mock.url))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
}

async fn register_users(app: &TestApp) {
    for i in 0..USERS {
        app.register_device(&format!("user-{i}"), "phone", &format!("tok-{i}"))
            .await;
    }
}

/// `n` notifications to the offline users, round robin; their ids.
async fn notify_offline(app: &TestApp, n: usize, extra: Value) -> Vec<String> {
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let mut body =
            json!({"user_id": format!("user-{}", i % USERS), "data": {"n": i.to_string()}});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        let (status, answer) = app.notify(body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
        assert_eq!(answer["route"], "fcm", "{answer}");
        ids.push(answer["id"].as_str().unwrap().to_string());
    }
    ids
}

/// How many times fcm-mock accepted each notification id.
async fn sends_by_id(mock: &Mock) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for m in mock.messages().await {
        let id = m["message"]["data"]["switchboard_id"]
            .as_str()
            .unwrap()
            .to_string();
        *counts.entry(id).or_insert(0) += 1;
    }
    counts
}

/// Waits until every id reached fcm-mock, then checks that each did exactly once (also a
/// moment later: no late duplicate); the time it took.
async fn assert_each_sent_once(mock: &Mock, ids: &[String], within: Duration) -> Duration {
    let started = Instant::now();
    mock.wait_messages(ids.len(), within).await;
    let drained = started.elapsed();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let counts = sends_by_id(mock).await;
    let missing = ids.iter().filter(|id| !counts.contains_key(*id)).count();
    let twice = counts.values().filter(|c| **c > 1).count();
    assert_eq!(
        (missing, twice, counts.len()),
        (0, 0, ids.len()),
        "(missing, sent more than once, distinct sent)"
    );
    drained
}

#[tokio::test]
async fn a_sixty_second_fcm_outage_loses_nothing_and_sends_each_notification_once() {
    let dir = tempfile::tempdir().unwrap();
    let mock = Mock::start(dir.path()).await;
    let app = one_node(dir.path(), &mock, &[]).await;
    register_users(&app).await;
    let outage = Instant::now();
    outage_starts(&mock).await;

    let ids = notify_offline(&app, 200, json!({})).await;

    // Waiting: fcm_retrying, with its attempts and next attempt's time.
    let first = &ids[0];
    assert!(
        eventually(Duration::from_secs(5), || async {
            let (_, v) = app.status(first).await;
            v["status"] == "fcm_retrying"
                && v["push_attempts"].as_u64().is_some_and(|a| a >= 1)
                && v["next_attempt_at"].as_u64().is_some()
        })
        .await,
        "{}",
        app.status(first).await.1
    );
    assert_eq!(
        app.wait_metric(
            "switchboard_push_queue_depth",
            200.0,
            Duration::from_secs(5)
        )
        .await,
        200.0
    );
    let left = Duration::from_secs(60).saturating_sub(outage.elapsed());
    tokio::time::sleep(left).await;
    assert!(app.metric("switchboard_push_queue_oldest_seconds").await >= 50.0);
    assert!(
        app.metric("switchboard_push_retries_total{reason=\"unavailable\"}")
            .await
            >= 200.0
    );
    assert!(mock.messages().await.is_empty());
    outage_ends(&mock).await;

    let drained = assert_each_sent_once(&mock, &ids, Duration::from_secs(30)).await;
    eprintln!("outage 60 s: 200 accepted during it, delivered after it in {drained:?}");
    for id in &ids {
        let v = app
            .wait_status(id, "fcm_accepted", Duration::from_secs(5))
            .await;
        assert_eq!(v["status"], "fcm_accepted", "{v}");
        assert!(v.get("next_attempt_at").is_none(), "{v}");
    }
    assert_eq!(
        app.wait_metric("switchboard_push_queue_depth", 0.0, Duration::from_secs(3))
            .await,
        0.0
    );
    assert_eq!(app.metric("switchboard_push_abandoned_total").await, 0.0);
}

/// An outage of `outage` with the node stopped by `signal` and started again in its middle.
async fn restart_mid_outage(signal: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mock = Mock::start(dir.path()).await;
    let mut app = one_node(dir.path(), &mock, &[]).await;
    register_users(&app).await;
    outage_starts(&mock).await;
    let ids = notify_offline(&app, 200, json!({})).await;
    assert!(
        app.wait_metric(
            "switchboard_push_retries_total{reason=\"unavailable\"}",
            200.0,
            Duration::from_secs(10)
        )
        .await
            >= 200.0
    );

    match signal {
        "TERM" => {
            app.sigterm();
            assert!(app.wait_exit(Duration::from_secs(10)).await.success());
        }
        _ => app.sigkill().await,
    }
    drop(app);
    let app = one_node(dir.path(), &mock, &[]).await;
    assert_eq!(
        app.wait_metric(
            "switchboard_push_queue_depth",
            200.0,
            Duration::from_secs(5)
        )
        .await,
        200.0,
        "the queue outlived the process"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(mock.messages().await.is_empty());
    outage_ends(&mock).await;

    assert_each_sent_once(&mock, &ids, Duration::from_secs(30)).await;
    assert_eq!(
        app.wait_metric("switchboard_push_queue_depth", 0.0, Duration::from_secs(3))
            .await,
        0.0
    );
}

#[tokio::test]
async fn a_node_stopped_and_started_again_mid_outage_sends_each_notification_once() {
    restart_mid_outage("TERM").await;
}

#[tokio::test]
async fn a_node_killed_and_started_again_mid_outage_sends_each_notification_once() {
    restart_mid_outage("KILL").await;
}

#[tokio::test]
async fn sends_held_by_a_killed_node_are_sent_once_by_another_after_the_lease() {
    let d = deploy_with(3, "redis://127.0.0.1:6379", PUSH_ENV).await;
    let mut nodes = d.nodes;
    register_users(&nodes[0]).await;
    outage_starts(&d.mock).await;
    let ids = notify_offline(&nodes[1], 100, json!({})).await;
    assert!(
        nodes[1]
            .wait_metric(
                "switchboard_push_retries_total{reason=\"unavailable\"}",
                1.0,
                Duration::from_secs(10)
            )
            .await
            >= 1.0
    );
    // Each answer now takes 1.5 s: node 2's sweep holds sends (claimed, under way) when it dies.
    d.mock.control("latency", json!({"ms": 1500})).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    nodes[1].sigkill().await;
    let killed = Instant::now();
    d.mock.control("latency", json!({"ms": 0})).await;
    // Whatever the dead node had on the wire is answered 503 before the outage ends.
    tokio::time::sleep(Duration::from_secs(2)).await;
    outage_ends(&d.mock).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        d.mock.messages().await.len() < ids.len(),
        "the dead node's sends wait for their lease"
    );

    assert_each_sent_once(&d.mock, &ids, Duration::from_secs(30)).await;
    eprintln!("all sent {:?} after the kill", killed.elapsed());
    let survivors = [&nodes[0], &nodes[2]];
    let mut sent = 0.0;
    for n in survivors {
        sent += n
            .metric("switchboard_fcm_deliveries_total{status=\"fcm_accepted\"}")
            .await;
    }
    assert_eq!(sent, ids.len() as f64, "the survivors sent them all");
    for id in &ids {
        let v = nodes[0]
            .wait_status(id, "fcm_accepted", Duration::from_secs(5))
            .await;
        assert_eq!(v["status"], "fcm_accepted", "{v}");
    }
    nodes.clear();
}

#[tokio::test]
async fn a_429_storm_is_not_retried_before_its_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let mock = Mock::start(dir.path()).await;
    let app = one_node(dir.path(), &mock, &[]).await;
    register_users(&app).await;
    // Two 429s for each of ten sends.
    mock.control(
        "faults",
        json!({"status": 429, "count": 20, "retry_after_secs": 5}),
    )
    .await;
    let started = Instant::now();
    let ids = notify_offline(&app, 10, json!({})).await;

    tokio::time::sleep(Duration::from_millis(4500).saturating_sub(started.elapsed())).await;
    assert_eq!(
        mock.stats().await["rejected"],
        10,
        "retried before Retry-After"
    );
    tokio::time::sleep(Duration::from_millis(9500).saturating_sub(started.elapsed())).await;
    let stats = mock.stats().await;
    assert_eq!(
        (stats["rejected"].as_u64(), stats["accepted"].as_u64()),
        (Some(20), Some(0)),
        "a second Retry-After was not honoured"
    );

    assert_each_sent_once(&mock, &ids, Duration::from_secs(10)).await;
    assert!(started.elapsed() >= Duration::from_secs(10));
    assert_eq!(
        app.metric("switchboard_push_retries_total{reason=\"quota_exceeded\"}")
            .await,
        20.0
    );
}

#[tokio::test]
async fn a_notification_whose_ttl_passes_during_an_outage_fails_with_the_last_error_and_is_never_sent(
) {
    let dir = tempfile::tempdir().unwrap();
    let mock = Mock::start(dir.path()).await;
    let app = one_node(dir.path(), &mock, &[]).await;
    register_users(&app).await;
    outage_starts(&mock).await;

    let short = notify_offline(&app, 1, json!({"ttl_secs": 3})).await;
    let long = notify_offline(&app, 1, json!({"ttl_secs": 600})).await;

    let v = app
        .wait_status(&short[0], "fcm_failed", Duration::from_secs(8))
        .await;
    assert_eq!(v["status"], "fcm_failed", "{v}");
    assert_eq!(v["deliveries"][0]["error"], "unavailable", "{v}");
    assert_eq!(app.metric("switchboard_push_abandoned_total").await, 1.0);
    outage_ends(&mock).await;

    assert_each_sent_once(&mock, &long, Duration::from_secs(10)).await;
    assert!(!sends_by_id(&mock).await.contains_key(&short[0]));
}

#[tokio::test]
async fn a_notify_over_the_queue_bound_answers_503_and_sends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mock = Mock::start(dir.path()).await;
    let app = one_node(dir.path(), &mock, &[("SWITCHBOARD__PUSH__QUEUE_MAX", "5")]).await;
    register_users(&app).await;
    outage_starts(&mock).await;
    let ids = notify_offline(&app, 5, json!({})).await;

    let resp = app
        .http
        .post(app.url("/v1/notify"))
        .bearer_auth(common::PRODUCER_KEY)
        .json(&json!({"user_id": "user-7", "data": {"n": "over"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(resp.headers().contains_key("retry-after"));
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "overloaded");
    // Refused before its inbox copy was handed over: the user's inbox holds none of it.
    tokio::time::sleep(switchboard::store::LAZY_WRITE_DELAY * 3).await;
    let inbox = app.client_json("user-7", "/v1/inbox").await;
    let kept = inbox["items"].as_array().expect("an inbox page");
    assert!(
        kept.iter().all(|n| n["data"]["n"] != "over"),
        "the refused notification is in the inbox: {inbox}"
    );
    outage_ends(&mock).await;

    assert_each_sent_once(&mock, &ids, Duration::from_secs(10)).await;
}

#[tokio::test]
async fn a_device_read_that_fails_after_acceptance_is_retried_from_the_queue() {
    use sqlx::Connection;
    // One node on PostgreSQL: its push queue is there too, beside the devices.
    let db = common::services::TestDb::create().await;
    let dir = tempfile::tempdir().unwrap();
    let mock = Mock::start(dir.path()).await;
    let opts = Options {
        shared_fcm: Some((mock.url.clone(), mock.key_path.clone())),
        ..Options::default()
    }
    .env("SWITCHBOARD__STORE__URL", &db.url)
    .env("SWITCHBOARD__DELIVERY__ACK_TIMEOUT_MS", "1000");
    let app = TestApp::spawn_with(PUSH_ENV.iter().fold(opts, |o, (k, v)| o.env(k, v))).await;
    app.register_device("dora", "phone", "tok-dora").await;
    let _stream = app.stream("dora", "device_id=phone&ack=true").await;
    let mut pg = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::query("ALTER TABLE devices RENAME TO devices_away")
        .execute(&mut pg)
        .await
        .unwrap();

    // Written to the stream, never acked: the ack timeout sends it to FCM, whose device read
    // fails.
    let (status, answer) = app
        .notify(json!({"user_id": "dora", "data": {"k": "v"}}))
        .await;
    assert_eq!(
        (status, answer["route"].as_str()),
        (StatusCode::ACCEPTED, Some("sse"))
    );
    let id = answer["id"].as_str().unwrap();
    assert!(
        app.wait_metric(
            "switchboard_push_retries_total{reason=\"device_read\"}",
            2.0,
            Duration::from_secs(10)
        )
        .await
            >= 2.0
    );
    assert!(mock.messages().await.is_empty());
    sqlx::query("ALTER TABLE devices_away RENAME TO devices")
        .execute(&mut pg)
        .await
        .unwrap();

    assert_each_sent_once(&mock, &[id.to_string()], Duration::from_secs(10)).await;
    let v = app
        .wait_status(id, "fcm_accepted", Duration::from_secs(5))
        .await;
    assert_eq!(v["status"], "fcm_accepted", "{v}");
    drop(pg);
}
