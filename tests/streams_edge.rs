//! Streams at the edge: a stream ends when its token expires (`event: reauth`) and a fresh
//! token with `Last-Event-ID` loses nothing; each stream's `retry:` is jittered; CR/LF inside
//! data never splits an event; another user's `Last-Event-ID` gets `event: reset`.

mod common;

use std::time::Duration;

use common::{token_with, Options, SseStream, TestApp};
use reqwest::StatusCode;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(5);

async fn notify(app: &TestApp, user: &str, n: usize) -> String {
    let (status, answer) = app
        .notify(json!({"user_id": user, "data": {"n": n.to_string()}}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["route"], "sse", "{answer}");
    answer["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_stream_ends_with_reauth_when_its_token_expires_and_a_fresh_one_replays_the_unacked() {
    // A one-second heartbeat visits each stream every half second.
    let app = TestApp::spawn_with(
        Options::default()
            .env("SWITCHBOARD__SSE__HEARTBEAT_SECS", "1")
            .env("SWITCHBOARD__DELIVERY__ACK_TIMEOUT_MS", "60000"),
    )
    .await;
    let query = "/v1/events?ack=true&device_id=phone";
    let mut stream = SseStream::open(&app.url(query), &token_with("tess", 4, None)).await;
    assert_eq!(stream.status, StatusCode::OK);
    let mut ids = Vec::new();
    for n in 0..4 {
        ids.push(notify(&app, "tess", n).await);
    }
    for id in &ids {
        let ev = stream.next_event(WAIT).await.expect("the notification");
        assert_eq!(ev.id.as_deref(), Some(id.as_str()));
    }
    assert_eq!(
        app.ack("tess", &[ids[0].as_str(), ids[2].as_str()]).await,
        StatusCode::NO_CONTENT
    );

    let ev = stream
        .next_event(Duration::from_secs(10))
        .await
        .expect("event: reauth at the token's exp");
    assert_eq!(
        (ev.event.as_deref(), ev.data.as_str()),
        (Some("reauth"), "{}")
    );
    assert!(
        stream.next(WAIT).await.is_none() && stream.ended(),
        "then the stream closes"
    );
    let expired = "switchboard_sse_disconnects_total{reason=\"token_expired\"}";
    assert_eq!(app.wait_metric(expired, 1.0, WAIT).await, 1.0);

    let resumed = format!("{query}&last_event_id={}", ids[0]);
    let mut again = SseStream::open(&app.url(&resumed), &app.token("tess")).await;
    let mut replayed = Vec::new();
    while let Some(ev) = again.next_event(Duration::from_millis(500)).await {
        replayed.push(ev.id.unwrap_or_default());
    }
    assert_eq!(
        replayed,
        [ids[1].clone(), ids[3].clone()],
        "every unacked one, once"
    );
}

#[tokio::test]
async fn each_stream_gets_its_own_retry_within_the_jitter() {
    let app = TestApp::spawn_with(
        Options::default()
            .env("SWITCHBOARD__SSE__RETRY_MS", "10000")
            .env("SWITCHBOARD__SSE__RETRY_JITTER_MS", "500"),
    )
    .await;
    let mut retries = Vec::new();
    for i in 0..12 {
        let resp = reqwest::Client::new()
            .get(app.url("/v1/events"))
            .bearer_auth(app.token(&format!("u{i}")))
            .send()
            .await
            .unwrap();
        let first = SseStream::from_response(resp).next(WAIT).await.unwrap();
        let retry = first.retry.expect("the stream starts with retry:");
        assert!((9500..=10500).contains(&retry), "{retry}");
        retries.push(retry);
    }
    retries.sort();
    retries.dedup();
    assert!(retries.len() > 1, "every stream got {retries:?}");
}

#[tokio::test]
async fn cr_and_lf_inside_data_arrive_as_one_event_each() {
    let app = TestApp::spawn().await;
    let mut stream = app.stream("lena", "topics=news").await;
    let text = "line 1\r\nline 2\n\nline 3\r\n\r\n";
    let (status, answer) = app
        .notify(json!({"user_id": "lena", "data": {"text": text}}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let data = json!({"text": text, "nested": {"lines": ["\n", "\r"]}});
    let (status, _) = app
        .producer(
            reqwest::Method::POST,
            "/v1/broadcast",
            Some(json!({"topic": "news", "data": data})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);

    let n = stream.next_event(WAIT).await.expect("the notification");
    assert_eq!(n.event.as_deref(), Some("notification"));
    assert_eq!(n.json()["data"]["text"], text);
    let b = stream.next_event(WAIT).await.expect("the broadcast");
    assert_eq!(b.event.as_deref(), Some("broadcast"));
    assert_eq!(b.json()["data"], data);
    assert!(
        stream
            .next_event(Duration::from_millis(300))
            .await
            .is_none(),
        "nothing else: no event was split"
    );
}

#[tokio::test]
async fn another_users_last_event_id_gets_reset() {
    let app = TestApp::spawn().await;
    let mut ann = app.stream("ann", "").await;
    let id = notify(&app, "ann", 1).await;
    assert!(ann.next_event(WAIT).await.is_some());

    let mut bob = app.stream("bob", &format!("last_event_id={id}")).await;
    let ev = bob.next_event(WAIT).await.expect("event: reset");
    assert_eq!(
        (ev.event.as_deref(), ev.data.as_str()),
        (Some("reset"), "{}")
    );

    // Ann's own id is known: nothing missed, no reset.
    let mut again = app
        .stream("ann", &format!("device_id=tablet&last_event_id={id}"))
        .await;
    assert!(again.next_event(Duration::from_millis(300)).await.is_none());
}
