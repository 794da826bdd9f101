//! Confirmed delivery on one node (memory broker) and on several (Redis): acks and the ack
//! timeout's FCM fallback, Last-Event-ID replay and reset, idempotency keys, notification
//! status records and their retention, slow consumers, and a node killed mid-delivery.

mod common;

use std::time::Duration;

use common::deploy::deploy_with;
use common::services::RedisServer;
use common::{eventually, Options, SseStream, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(5);
const ACK_TIMEOUT_MS: &str = "800";
const ACK_TIMEOUT: Duration = Duration::from_millis(800);

fn fast_acks() -> Options {
    Options::with_fcm().env("SWITCHBOARD__DELIVERY__ACK_TIMEOUT_MS", ACK_TIMEOUT_MS)
}

async fn notify_id(app: &TestApp, user: &str, k: &str) -> (String, String) {
    let (status, answer) = app.notify(json!({"user_id": user, "data": {"k": k}})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    (
        answer["id"].as_str().unwrap().to_string(),
        answer["route"].as_str().unwrap().to_string(),
    )
}

/// Ids of the messages fcm-mock received (from the documented `switchboard_id` data key).
async fn fcm_ids(mock: &common::Mock) -> Vec<String> {
    mock.messages()
        .await
        .iter()
        .filter_map(|m| m["message"]["data"]["switchboard_id"].as_str())
        .map(str::to_string)
        .collect()
}

async fn next_notification(s: &mut SseStream) -> Value {
    let ev = s
        .next_event(WAIT)
        .await
        .expect("a notification on the stream");
    assert_eq!(ev.event.as_deref(), Some("notification"), "{ev:?}");
    ev.json()
}

#[tokio::test]
async fn an_acked_notification_is_not_sent_to_fcm() {
    let app = TestApp::spawn_with(fast_acks()).await;
    app.register_device("ann", "phone", "tok-ann").await;
    let mut s = app.stream("ann", "device_id=phone&ack=true").await;

    let (id, route) = notify_id(&app, "ann", "1").await;
    assert_eq!(route, "sse");
    assert_eq!(next_notification(&mut s).await["id"], id.as_str());
    let v = app.wait_status(&id, "delivered", WAIT).await;
    assert_eq!(v["deliveries"][0]["channel"], "sse");
    assert_eq!(v["deliveries"][0]["device_id"], "phone");
    assert_eq!(app.ack("ann", &[&id]).await, StatusCode::NO_CONTENT);

    tokio::time::sleep(ACK_TIMEOUT * 2).await;
    let (status, v) = app.status(&id).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["status"], "acked", "{v}");
    assert_eq!(v["route"], "sse");
    assert_eq!(v["user_id"], "ann");
    assert!(app.mock().messages().await.is_empty());
    assert_eq!(
        app.metric("switchboard_acks_total{result=\"acked\"}").await,
        1.0
    );
}

#[tokio::test]
async fn an_unacked_delivery_falls_back_to_fcm_after_the_ack_timeout() {
    let app = TestApp::spawn_with(fast_acks()).await;
    app.register_device("bea", "phone", "tok-bea").await;
    let mut s = app.stream("bea", "device_id=phone&ack=true").await;

    let (id, _) = notify_id(&app, "bea", "1").await;
    assert_eq!(next_notification(&mut s).await["id"], id.as_str());
    // Written, never acked (as if the socket were already dead).
    let v = app.wait_status(&id, "fcm_accepted", WAIT).await;
    assert_eq!(v["status"], "fcm_accepted", "{v}");
    let channels: Vec<&str> = v["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["channel"].as_str().unwrap())
        .collect();
    assert_eq!(channels, ["fcm", "sse"], "{v}");
    assert_eq!(fcm_ids(app.mock()).await, std::slice::from_ref(&id));
    assert_eq!(app.metric("switchboard_ack_timeouts_total").await, 1.0);

    // An ack that comes after the fallback is counted as late; nothing changes.
    assert_eq!(app.ack("bea", &[&id]).await, StatusCode::NO_CONTENT);
    assert_eq!(
        app.metric("switchboard_acks_total{result=\"late\"}").await,
        1.0
    );
    assert_eq!(app.status(&id).await.1["status"], "fcm_accepted");
}

#[tokio::test]
async fn streams_without_acks_are_done_once_written() {
    let app = TestApp::spawn_with(fast_acks()).await;
    app.register_device("cai", "phone", "tok-cai").await;
    let mut s = app.stream("cai", "device_id=phone").await;
    let (id, _) = notify_id(&app, "cai", "1").await;
    next_notification(&mut s).await;
    tokio::time::sleep(ACK_TIMEOUT * 2).await;
    assert_eq!(app.status(&id).await.1["status"], "delivered");
    assert!(app.mock().messages().await.is_empty());
}

#[tokio::test]
async fn only_the_notifications_own_user_can_ack_it() {
    let app = TestApp::spawn_with(fast_acks()).await;
    app.register_device("dan", "phone", "tok-dan").await;
    let mut s = app.stream("dan", "ack=true").await;
    let (id, _) = notify_id(&app, "dan", "1").await;
    next_notification(&mut s).await;
    assert_eq!(app.ack("eve", &[&id]).await, StatusCode::NO_CONTENT);
    assert_eq!(
        app.metric("switchboard_acks_total{result=\"foreign\"}")
            .await,
        1.0
    );
    assert_eq!(
        app.wait_status(&id, "fcm_accepted", WAIT).await["status"],
        "fcm_accepted"
    );
    // Bad input.
    let r = app
        .http
        .post(app.url("/v1/ack"))
        .bearer_auth(app.token("dan"))
        .json(&json!({"ids": ["not-an-id"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = app
        .http
        .post(app.url("/v1/ack"))
        .json(&json!({"ids": [id]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

/// The user holds two streams; the second reads only the first of three notifications and
/// goes away, then reconnects with Last-Event-ID: the two it missed are replayed, in order.
async fn replay_what_a_stream_missed(first: &TestApp, second: &TestApp, ack: bool) {
    let q = |d: &str| format!("device_id={d}&ack={ack}");
    let mut keep = first.stream("fay", &q("tablet")).await;
    let mut lossy = second.stream("fay", &q("phone")).await;
    let mut ids = Vec::new();
    for k in 0..3 {
        ids.push(notify_id(first, "fay", &k.to_string()).await.0);
    }
    for id in &ids {
        assert_eq!(next_notification(&mut keep).await["id"], id.as_str());
    }
    assert_eq!(next_notification(&mut lossy).await["id"], ids[0].as_str());
    lossy.close();
    // The tablet acks the last one: acked notifications are not replayed.
    if ack {
        assert_eq!(first.ack("fay", &[&ids[2]]).await, StatusCode::NO_CONTENT);
        first.wait_status(&ids[2], "acked", WAIT).await;
    }

    let url = second.url(&format!("/v1/events?{}", q("phone")));
    let resp = reqwest::Client::new()
        .get(&url)
        .bearer_auth(second.token("fay"))
        .header("Last-Event-ID", &ids[0])
        .send()
        .await
        .unwrap();
    let mut again = SseStream::from_response(resp);
    assert_eq!(again.status, StatusCode::OK);
    assert!(again.next(WAIT).await.unwrap().retry.is_some());
    let expected = if ack { &ids[1..2] } else { &ids[1..3] };
    for id in expected {
        assert_eq!(next_notification(&mut again).await["id"], id.as_str());
    }
    if ack {
        // Replayed notifications are acked like live ones.
        assert_eq!(second.ack("fay", &[&ids[1]]).await, StatusCode::NO_CONTENT);
        assert_eq!(
            second.wait_status(&ids[1], "acked", WAIT).await["status"],
            "acked"
        );
    }
    // Nothing else, and live delivery goes on after the replay.
    let (live, _) = notify_id(first, "fay", "live").await;
    assert_eq!(next_notification(&mut again).await["id"], live.as_str());
    assert_eq!(
        second
            .metric("switchboard_replays_total{result=\"replayed\"}")
            .await,
        1.0
    );
}

#[tokio::test]
async fn last_event_id_replays_what_the_stream_missed() {
    let app = TestApp::spawn_with(fast_acks()).await;
    replay_what_a_stream_missed(&app, &app, false).await;
}

#[tokio::test]
async fn replay_skips_acked_notifications_and_replayed_ones_can_be_acked() {
    let app = TestApp::spawn_with(fast_acks()).await;
    app.register_device("fay", "phone", "tok-fay").await;
    replay_what_a_stream_missed(&app, &app, true).await;
}

#[tokio::test]
async fn an_unknown_last_event_id_gets_event_reset() {
    let app = TestApp::spawn().await;
    let mut s = app
        .stream("gus", "last_event_id=0190a3c4-0000-7000-8000-000000000000")
        .await;
    let ev = s.next_event(WAIT).await.unwrap();
    assert_eq!(ev.event.as_deref(), Some("reset"));
    assert_eq!(ev.data, "{}");
    assert_eq!(
        app.metric("switchboard_replays_total{result=\"reset\"}")
            .await,
        1.0
    );
    // The stream then works as usual.
    let (id, route) = notify_id(&app, "gus", "1").await;
    assert_eq!(route, "sse");
    assert_eq!(next_notification(&mut s).await["id"], id.as_str());
}

#[tokio::test]
async fn a_repeated_idempotency_key_returns_the_first_answer_and_sends_nothing() {
    let app = TestApp::spawn_with(Options::with_fcm()).await;
    app.register_device("hal", "phone", "tok-hal").await;
    let body = json!({"user_id": "hal", "data": {"k": "v"}, "idempotency_key": "order-42"});
    let (s1, a1) = app.notify(body.clone()).await;
    let (s2, a2) = app.notify(body.clone()).await;
    assert_eq!((s1, s2), (StatusCode::ACCEPTED, StatusCode::ACCEPTED));
    assert_eq!(a1, a2);
    assert_eq!(a1["route"], "fcm");
    // The batch endpoint honours it too.
    let (_, batch) = app
        .producer(
            reqwest::Method::POST,
            "/v1/notify/batch",
            Some(json!({"notifications": [body]})),
        )
        .await;
    assert_eq!(batch["results"][0], a1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.mock().messages().await.len(), 1);
    assert_eq!(app.metric("switchboard_idempotent_hits_total").await, 2.0);

    // Another key is another notification; a bad key is refused.
    let (_, a3) = app
        .notify(json!({"user_id": "hal", "data": {"k": "v"}, "idempotency_key": "order-43"}))
        .await;
    assert_ne!(a3["id"], a1["id"]);
    let (s, _) = app
        .notify(json!({"user_id": "hal", "data": {"k": "v"}, "idempotency_key": ""}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn status_records_follow_the_lifecycle_and_expire() {
    let app = TestApp::spawn_with(
        Options::with_fcm()
            .env("SWITCHBOARD__DELIVERY__RECORD_RETENTION_SECS", "2")
            .env("SWITCHBOARD__DELIVERY__REPLAY_WINDOW_SECS", "1")
            .env("SWITCHBOARD__DELIVERY__ACK_TIMEOUT_MS", "500"),
    )
    .await;
    app.register_device("ida", "phone", "tok-ida").await;
    app.register_device("ida", "tablet", "tok-ida-2").await;
    app.mock()
        .control("unregistered", json!({"tokens": ["tok-ida-2"]}))
        .await;
    let (id, route) = notify_id(&app, "ida", "1").await;
    assert_eq!(route, "fcm");
    let v = app.wait_status(&id, "fcm_accepted", WAIT).await;
    assert_eq!(v["status"], "fcm_accepted", "{v}");
    assert_eq!(
        v["deliveries"],
        json!([
            {"device_id": "phone", "channel": "fcm", "status": "fcm_accepted", "error": null},
            {"device_id": "tablet", "channel": "fcm", "status": "fcm_failed", "error": "unregistered"},
        ])
    );
    let (nobody, route) = notify_id(&app, "nobody", "1").await;
    assert_eq!(route, "none");
    assert_eq!(app.status(&nobody).await.1["status"], "expired");

    assert!(
        eventually(Duration::from_secs(6), || async {
            app.status(&id).await.0 == StatusCode::NOT_FOUND
        })
        .await,
        "the record outlived its retention"
    );
    let (s, v) = app.status("not-an-id").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, v) = app.status(&id).await;
    assert_eq!(v["error"]["code"], "not_found", "{s} {v}");
}

/// A client that opens a stream and never reads: its socket buffers fill, then its queue, and
/// the stream is closed as a slow consumer; what it had not been written goes to FCM.
#[tokio::test]
async fn a_slow_consumer_is_closed_and_its_backlog_falls_back_to_fcm() {
    use tokio::io::AsyncWriteExt;
    let app = TestApp::spawn_with(
        Options::with_fcm()
            .env("SWITCHBOARD__SSE__QUEUE_CAPACITY", "16")
            .env("SWITCHBOARD__DELIVERY__REPLAY_CAPACITY", "8"),
    )
    .await;
    app.register_device("jo", "phone", "tok-jo").await;
    // A tiny receive window, so that the router's side fills up soon.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut tcp = socket.connect(app.addr.parse().unwrap()).await.unwrap();
    let req = format!(
        "GET /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\r\n",
        app.token("jo")
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    assert!(
        eventually(WAIT, || async {
            app.presence("jo").await["online"] == true
        })
        .await,
        "the stream did not register"
    );
    let big = "x".repeat(3000);
    let mut ids = Vec::new();
    for _ in 0..6000 {
        let (status, answer) = app
            .notify(json!({"user_id": "jo", "data": {"k": big}}))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED);
        ids.push(answer["id"].as_str().unwrap().to_string());
        if app
            .metric("switchboard_sse_disconnects_total{reason=\"slow_consumer\"}")
            .await
            >= 1.0
        {
            break;
        }
    }
    assert_eq!(
        app.metric("switchboard_sse_disconnects_total{reason=\"slow_consumer\"}")
            .await,
        1.0,
        "no slow consumer after {} notifications; metrics:\n{}",
        ids.len(),
        app.metrics_text()
            .await
            .lines()
            .filter(|l| l.contains("sse_")
                || l.contains("notifications_total")
                || l.contains("fallback"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Every notification either went into the socket or to FCM: none is pending.
    let fcm = app.mock().wait_messages(1, WAIT).await.len();
    assert!(fcm >= 1);
    for id in &ids {
        let (_, v) = app.status(id).await;
        let s = v["status"].as_str().unwrap().to_string();
        let done = ["delivered", "fcm_accepted"].contains(&s.as_str());
        if !done {
            let v = app.wait_status(id, "fcm_accepted", WAIT).await;
            assert_eq!(v["status"], "fcm_accepted", "{v}");
        }
    }
    drop(tcp);
}

// ---- several nodes on Redis ----

async fn redis_deployment(n: usize) -> common::deploy::Deployment {
    deployment_on(n, "redis://127.0.0.1:6379").await
}

async fn deployment_on(n: usize, redis_url: &str) -> common::deploy::Deployment {
    deploy_with(
        n,
        redis_url,
        &[("SWITCHBOARD__DELIVERY__ACK_TIMEOUT_MS", ACK_TIMEOUT_MS)],
    )
    .await
}

#[tokio::test]
async fn multi_node_an_ack_on_any_node_settles_it_and_a_timeout_sends_fcm_once() {
    ack_on_any_node_and_one_fcm_send(&redis_deployment(3).await).await;
}

/// The same on a three-master Redis Cluster: records, tokens and replay buffers spread over
/// shards (the token sets share one hash tag), the record written before the publish.
#[tokio::test]
async fn cluster_acks_timeouts_replay_and_idempotency() {
    let d = deployment_on(3, &common::services::redis_cluster_url()).await;
    ack_on_any_node_and_one_fcm_send(&d).await;
    replay_what_a_stream_missed(&d.nodes[0], &d.nodes[1], false).await;
    let body = json!({"user_id": "lou", "data": {"k": "v"}, "idempotency_key": "k-1"});
    let (_, first) = d.nodes[0].notify(body.clone()).await;
    let (_, second) = d.nodes[2].notify(body).await;
    assert_eq!(first, second);
}

async fn ack_on_any_node_and_one_fcm_send(d: &common::deploy::Deployment) {
    let (a, b, c) = (&d.nodes[0], &d.nodes[1], &d.nodes[2]);
    a.register_device("kim", "phone", "tok-kim").await;
    let mut s = b.stream("kim", "device_id=phone&ack=true").await;

    let (acked, _) = notify_id(a, "kim", "1").await;
    assert_eq!(next_notification(&mut s).await["id"], acked.as_str());
    assert_eq!(c.ack("kim", &[&acked]).await, StatusCode::NO_CONTENT);
    assert_eq!(
        a.wait_status(&acked, "acked", WAIT).await["status"],
        "acked"
    );

    let (unacked, _) = notify_id(c, "kim", "2").await;
    assert_eq!(next_notification(&mut s).await["id"], unacked.as_str());
    let v = a.wait_status(&unacked, "fcm_accepted", WAIT).await;
    assert_eq!(v["status"], "fcm_accepted", "{v}");
    // Three nodes sweep deadlines; exactly one sent it.
    tokio::time::sleep(ACK_TIMEOUT * 2).await;
    assert_eq!(fcm_ids(&d.mock).await, [unacked]);
}

#[tokio::test]
async fn multi_node_replay_on_another_node_and_idempotency_across_nodes() {
    let d = redis_deployment(2).await;
    let (a, b) = (&d.nodes[0], &d.nodes[1]);
    replay_what_a_stream_missed(a, b, false).await;

    let body = json!({"user_id": "lou", "data": {"k": "v"}, "idempotency_key": "k-1"});
    let (_, first) = a.notify(body.clone()).await;
    let (_, second) = b.notify(body).await;
    assert_eq!(first, second);
}

/// The node holding the stream dies after writing but before the client acks: another node's
/// deadline sweep sends the notification to FCM, once.
#[tokio::test]
async fn multi_node_a_node_killed_mid_delivery_loses_nothing() {
    let mut d = redis_deployment(2).await;
    d.nodes[0].register_device("max", "phone", "tok-max").await;
    let mut s = d.nodes[1].stream("max", "device_id=phone&ack=true").await;
    let (id, route) = notify_id(&d.nodes[0], "max", "1").await;
    assert_eq!(route, "sse");
    assert_eq!(next_notification(&mut s).await["id"], id.as_str());
    d.nodes[1].sigkill().await;
    let v = d.nodes[0].wait_status(&id, "fcm_accepted", WAIT).await;
    assert_eq!(v["status"], "fcm_accepted", "{v}");
    tokio::time::sleep(ACK_TIMEOUT).await;
    assert_eq!(fcm_ids(&d.mock).await, [id]);
}

/// A private Redis that goes away: notify answers 503 and nothing it refused is sent later.
#[tokio::test]
async fn multi_node_a_refused_notify_is_never_sent() {
    let mut redis = RedisServer::start();
    let d = deploy_with(
        1,
        &redis.url(),
        &[("SWITCHBOARD__DELIVERY__ACK_TIMEOUT_MS", "300")],
    )
    .await;
    let app = &d.nodes[0];
    app.register_device("ned", "phone", "tok-ned").await;
    redis.kill();
    let (status, v) = app
        .notify(json!({"user_id": "ned", "data": {"k": "v"}}))
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(v["error"]["code"], "broker_unavailable");
    redis.restart();
    assert!(
        eventually(Duration::from_secs(10), || async {
            app.notify(json!({"user_id": "ned", "data": {"k": "after"}}))
                .await
                .0
                == StatusCode::ACCEPTED
        })
        .await
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let sent: Vec<String> = d
        .mock
        .messages()
        .await
        .iter()
        .map(|m| m["message"]["data"]["k"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(sent.iter().all(|k| k == "after"), "{sent:?}");
}
