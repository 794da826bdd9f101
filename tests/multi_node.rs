//! Several nodes on one Redis (standalone, and a three-master Redis Cluster) and one PostgreSQL:
//! cross-node delivery, broadcast, presence, a node killed with SIGKILL, Redis restarted.

mod common;

use std::time::{Duration, Instant};

use common::deploy::{deploy, PRESENCE_TTL};
use common::eventually;
use common::services::{redis_cluster_url, RedisServer};
use reqwest::StatusCode;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(5);

async fn notify_on_one_node_arrives_on_another(redis_url: &str) {
    let d = deploy(2, redis_url).await;
    let (a, b) = (&d.nodes[0], &d.nodes[1]);
    let mut stream = b.stream("alice", "device_id=phone").await;

    let (status, answer) = a
        .notify(json!({"user_id": "alice", "data": {"k": "v"}}))
        .await;

    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["route"], "sse");
    let ev = stream
        .next_event(WAIT)
        .await
        .expect("the event, delivered by the other node");
    assert_eq!(ev.id.as_deref(), answer["id"].as_str());
    assert_eq!(ev.json()["data"]["k"], "v");
    // Nobody streams for bob anywhere.
    let (_, answer) = a
        .notify(json!({"user_id": "bob", "data": {"k": "v"}}))
        .await;
    assert_eq!(answer["route"], "none");
}

async fn broadcast_reaches_streams_on_all_three_nodes(redis_url: &str) {
    let d = deploy(3, redis_url).await;
    let mut streams = Vec::new();
    for (i, node) in d.nodes.iter().enumerate() {
        streams.push(node.stream(&format!("user-{i}"), "topics=live-chat").await);
    }
    let mut outsider = d.nodes[0].stream("outsider", "topics=other").await;

    let (status, answer) = d.nodes[2]
        .producer(
            reqwest::Method::POST,
            "/v1/broadcast",
            Some(json!({"topic": "live-chat", "data": {"m": 1}})),
        )
        .await;

    assert_eq!(status, StatusCode::ACCEPTED);
    for s in &mut streams {
        let ev = s
            .next_event(WAIT)
            .await
            .expect("the broadcast on every node");
        assert_eq!(ev.event.as_deref(), Some("broadcast"));
        // No `id:` line: the broadcast id is in the data.
        assert_eq!(ev.id, None);
        assert_eq!(ev.json()["id"], answer["id"]);
    }
    assert!(outsider
        .next_event(Duration::from_millis(300))
        .await
        .is_none());
}

async fn presence_is_read_from_a_third_node(redis_url: &str) {
    let d = deploy(3, redis_url).await;
    let _on_a = d.nodes[0].stream("carol", "device_id=laptop").await;
    let on_b = d.nodes[1].stream("carol", "device_id=phone").await;

    // Presence records are written in the background, a moment after the stream opens.
    assert!(
        eventually(WAIT, || async {
            d.nodes[2].presence("carol").await["connections"]
                .as_array()
                .is_some_and(|c| c.len() == 2)
        })
        .await,
        "presence never listed both streams"
    );
    let p = d.nodes[2].presence("carol").await;

    assert_eq!(p["online"], true);
    let mut seen: Vec<(String, String)> = p["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["device_id"].as_str().unwrap().into(),
                c["node_id"].as_str().unwrap().into(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("laptop".into(), "node-0".into()),
            ("phone".into(), "node-1".into())
        ]
    );

    on_b.close();
    assert!(
        eventually(WAIT, || async {
            d.nodes[2].presence("carol").await["connections"]
                .as_array()
                .unwrap()
                .len()
                == 1
        })
        .await
    );
}

async fn a_killed_node_s_users_route_to_fcm_within_the_presence_ttl(redis_url: &str) {
    let mut d = deploy(2, redis_url).await;
    d.nodes[0]
        .register_device("dave", "phone", "tok-dave")
        .await;
    let _stream = d.nodes[1].stream("dave", "device_id=phone").await;
    let (_, answer) = d.nodes[0]
        .notify(json!({"user_id": "dave", "data": {"n": "0"}}))
        .await;
    assert_eq!(answer["route"], "sse");

    d.nodes[1].sigkill().await;
    let killed = Instant::now();

    let a = &d.nodes[0];
    let mut n = 0;
    let routed_to_fcm = loop {
        n += 1;
        let (_, answer) = a
            .notify(json!({"user_id": "dave", "data": {"n": n.to_string()}}))
            .await;
        if answer["route"] == "fcm" {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < PRESENCE_TTL,
            "still routed to the dead node after {:?}",
            killed.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    eprintln!("routed to FCM {routed_to_fcm:?} after SIGKILL");
    let messages = d.mock.wait_messages(1, WAIT).await;
    assert_eq!(messages[0]["message"]["token"], "tok-dave");
    // The readable presence forgets the dead node's stream within the TTL too.
    let forgotten = eventually(PRESENCE_TTL + Duration::from_secs(2), || async {
        a.presence("dave").await["online"] == false
    })
    .await;
    assert!(forgotten, "presence still lists the dead node's stream");
}

#[tokio::test]
async fn redis_notify_on_one_node_arrives_on_another() {
    notify_on_one_node_arrives_on_another("redis://127.0.0.1:6379").await;
}

#[tokio::test]
async fn redis_broadcast_reaches_streams_on_all_three_nodes() {
    broadcast_reaches_streams_on_all_three_nodes("redis://127.0.0.1:6379").await;
}

#[tokio::test]
async fn redis_presence_is_read_from_a_third_node() {
    presence_is_read_from_a_third_node("redis://127.0.0.1:6379").await;
}

#[tokio::test]
async fn redis_a_killed_node_s_users_route_to_fcm_within_the_presence_ttl() {
    a_killed_node_s_users_route_to_fcm_within_the_presence_ttl("redis://127.0.0.1:6379").await;
}

#[tokio::test]
async fn cluster_notify_on_one_node_arrives_on_another() {
    notify_on_one_node_arrives_on_another(&redis_cluster_url()).await;
}

#[tokio::test]
async fn cluster_broadcast_reaches_streams_on_all_three_nodes() {
    broadcast_reaches_streams_on_all_three_nodes(&redis_cluster_url()).await;
}

#[tokio::test]
async fn cluster_presence_is_read_from_a_third_node() {
    presence_is_read_from_a_third_node(&redis_cluster_url()).await;
}

#[tokio::test]
async fn cluster_a_killed_node_s_users_route_to_fcm_within_the_presence_ttl() {
    a_killed_node_s_users_route_to_fcm_within_the_presence_ttl(&redis_cluster_url()).await;
}

#[tokio::test]
async fn after_a_redis_restart_streams_opened_before_it_are_routable_again() {
    let mut redis = RedisServer::start();
    let d = deploy(2, &redis.url()).await;
    let (a, b) = (&d.nodes[0], &d.nodes[1]);
    let mut stream = b.stream("erin", "device_id=phone").await;
    let (_, answer) = a
        .notify(json!({"user_id": "erin", "data": {"n": "before"}}))
        .await;
    assert_eq!(answer["route"], "sse");
    stream
        .next_event(WAIT)
        .await
        .expect("delivered before the outage");

    redis.kill();
    let resp = a
        .http
        .post(a.url("/v1/notify"))
        .bearer_auth(common::PRODUCER_KEY)
        .json(&json!({"user_id": "erin", "data": {"n": "during"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(resp.headers().contains_key("retry-after"));
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "broker_unavailable");
    let r = a.http.get(a.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);

    redis.restart();
    let restarted = Instant::now();
    let id = loop {
        let (status, answer) = a
            .notify(json!({"user_id": "erin", "data": {"n": "after"}}))
            .await;
        if status == StatusCode::ACCEPTED && answer["route"] == "sse" {
            break answer["id"].as_str().map(str::to_string);
        }
        assert!(
            restarted.elapsed() < Duration::from_secs(10),
            "not routable again 10 s after the restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!(
        "routable again {:?} after Redis restarted",
        restarted.elapsed()
    );
    let ev = stream
        .next_event(WAIT)
        .await
        .expect("delivered after the restart");
    assert_eq!(ev.id, id);
    assert!(
        eventually(WAIT, || async {
            a.presence("erin").await["online"] == true
        })
        .await
    );
    assert!(a.metric("switchboard_broker_errors_total").await >= 1.0);
}
