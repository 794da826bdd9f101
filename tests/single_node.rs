//! Single node, embedded defaults (memory broker, SQLite): SSE delivery, FCM routing against
//! fcm-mock, broadcast, presence, auth, bad input, disconnect reasons, shutdown.

mod common;

use std::time::Duration;

use common::{eventually, token_with, Options, SseStream, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn online_user_gets_the_event_over_sse_with_the_id_from_the_answer() {
    let app = TestApp::spawn().await;
    let mut stream = app.stream("alice", "device_id=phone").await;
    assert_eq!(stream.headers["content-type"], "text/event-stream");
    assert_eq!(stream.headers["cache-control"], "no-cache");
    assert_eq!(stream.headers["x-accel-buffering"], "no");

    let (status, answer) = app
        .notify(json!({"user_id": "alice", "data": {"order": "42"}, "notification": {"title": "Filled"}}))
        .await;

    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["route"], "sse");
    let ev = stream.next_event(WAIT).await.expect("an event");
    assert_eq!(ev.event.as_deref(), Some("notification"));
    assert_eq!(ev.id.as_deref(), answer["id"].as_str());
    let data = ev.json();
    assert_eq!(data["id"], answer["id"]);
    assert_eq!(data["data"]["order"], "42");
    assert_eq!(data["notification"]["title"], "Filled");
    assert!(data["sent_at"].as_u64().unwrap() > 1_700_000_000_000);
    assert!(
        app.metric("switchboard_notifications_total{route=\"sse\"}")
            .await
            >= 1.0
    );
    assert!(
        app.metric("switchboard_delivery_latency_seconds_count")
            .await
            >= 1.0
    );
}

#[tokio::test]
async fn offline_user_with_a_device_gets_an_fcm_message_carrying_the_data() {
    let app = TestApp::spawn_with(Options::with_fcm()).await;
    app.register_device("bob", "pixel", "tok-bob-1").await;

    let (status, answer) = app
        .notify(json!({"user_id": "bob", "data": {"k": "v"}, "notification": {"title": "T", "body": "B"},
                       "ttl_secs": 60, "priority": "normal", "collapse_key": "c1"}))
        .await;

    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(answer["route"], "fcm");
    let messages = app.mock().wait_messages(1, WAIT).await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    let m = &messages[0]["message"];
    assert_eq!(m["token"], "tok-bob-1");
    assert_eq!(m["data"]["k"], "v");
    assert_eq!(m["data"]["switchboard_id"], answer["id"]);
    assert_eq!(m["notification"]["body"], "B");
    assert_eq!(m["android"]["priority"], "normal");
    assert_eq!(m["android"]["ttl"], "60s");
    assert_eq!(m["android"]["collapse_key"], "c1");
    assert_eq!(
        app.wait_metric("switchboard_fcm_requests_total{result=\"ok\"}", 1.0, WAIT)
            .await,
        1.0
    );
}

#[tokio::test]
async fn offline_user_without_a_device_routes_none() {
    let app = TestApp::spawn_with(Options::with_fcm()).await;
    let (status, answer) = app
        .notify(json!({"user_id": "carol", "data": {"k": "v"}}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(answer["route"], "none");
    assert_eq!(
        app.metric("switchboard_notifications_total{route=\"none\"}")
            .await,
        1.0
    );
}

#[tokio::test]
async fn without_a_service_account_offline_users_route_none_and_the_log_says_so() {
    let app = TestApp::spawn().await;
    app.register_device("dave", "pixel", "tok-dave").await;
    let (_, answer) = app
        .notify(json!({"user_id": "dave", "data": {"k": "v"}}))
        .await;
    assert_eq!(answer["route"], "none");
    assert!(app.log_contains("FCM is disabled"));
}

#[tokio::test]
async fn unregistered_token_is_pruned_from_the_store() {
    let app = TestApp::spawn_with(Options::with_fcm()).await;
    app.register_device("erin", "old-phone", "tok-dead").await;
    app.register_device("erin", "new-phone", "tok-live").await;
    app.mock()
        .control("unregistered", json!({"tokens": ["tok-dead"]}))
        .await;

    let (_, first) = app
        .notify(json!({"user_id": "erin", "data": {"n": "1"}}))
        .await;
    assert_eq!(first["route"], "fcm");
    assert_eq!(
        app.wait_metric("switchboard_fcm_tokens_pruned_total", 1.0, WAIT)
            .await,
        1.0
    );
    app.mock()
        .control("unregistered", json!({"tokens": []}))
        .await;
    app.mock().wait_messages(1, WAIT).await;

    // The second notification only targets the remaining device.
    app.notify(json!({"user_id": "erin", "data": {"n": "2"}}))
        .await;
    let messages = app.mock().wait_messages(2, WAIT).await;
    let tokens: Vec<_> = messages
        .iter()
        .map(|m| m["message"]["token"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(tokens, ["tok-live", "tok-live"]);
    assert_eq!(
        app.metric("switchboard_fcm_requests_total{result=\"unregistered\"}")
            .await,
        1.0
    );
}

#[tokio::test]
async fn a_429_with_retry_after_is_retried_to_success() {
    let app = TestApp::spawn_with(Options::with_fcm()).await;
    app.register_device("frank", "pixel", "tok-frank").await;
    app.mock()
        .control(
            "faults",
            json!({"status": 429, "count": 1, "retry_after_secs": 1}),
        )
        .await;

    let started = std::time::Instant::now();
    app.notify(json!({"user_id": "frank", "data": {"k": "v"}}))
        .await;
    let messages = app.mock().wait_messages(1, Duration::from_secs(10)).await;

    assert_eq!(messages.len(), 1);
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "Retry-After was not honoured"
    );
    assert_eq!(
        app.metric("switchboard_fcm_requests_total{result=\"quota_exceeded\"}")
            .await,
        1.0
    );
    assert_eq!(
        app.wait_metric(
            "switchboard_fcm_deliveries_total{status=\"fcm_accepted\"}",
            1.0,
            WAIT
        )
        .await,
        1.0
    );
}

#[tokio::test]
async fn a_503_storm_longer_than_the_retry_budget_ends_as_fcm_failed() {
    let app = TestApp::spawn_with(Options::with_fcm()).await;
    app.register_device("gina", "pixel", "tok-gina").await;
    app.mock()
        .control("faults", json!({"status": 503, "count": 100}))
        .await;

    app.notify(json!({"user_id": "gina", "data": {"k": "v"}}))
        .await;

    let failed = app
        .wait_metric(
            "switchboard_fcm_deliveries_total{status=\"fcm_failed\"}",
            1.0,
            WAIT,
        )
        .await;
    assert_eq!(failed, 1.0, "the send did not end within the retry budget");
    assert_eq!(
        app.metric("switchboard_fcm_requests_total{result=\"unavailable\"}")
            .await,
        3.0
    );
    assert!(app.mock().messages().await.is_empty());
}

#[tokio::test]
async fn a_revoked_oauth_token_is_refreshed_once() {
    let app = TestApp::spawn_with(Options::with_fcm()).await;
    app.register_device("hank", "pixel", "tok-hank").await;
    app.notify(json!({"user_id": "hank", "data": {"n": "1"}}))
        .await;
    app.mock().wait_messages(1, WAIT).await;
    app.mock().control("revoke_tokens", json!({})).await;

    app.notify(json!({"user_id": "hank", "data": {"n": "2"}}))
        .await;

    assert_eq!(app.mock().wait_messages(2, WAIT).await.len(), 2);
    assert_eq!(
        app.metric("switchboard_fcm_requests_total{result=\"unauthenticated\"}")
            .await,
        1.0
    );
    assert!(app.mock().stats().await["tokens_issued"].as_u64().unwrap() >= 2);
}

#[tokio::test]
async fn permanent_fcm_errors_are_not_retried() {
    let app = TestApp::spawn_with(Options::with_fcm()).await;
    app.register_device("ivy", "pixel", "tok-ivy").await;
    app.mock()
        .control("faults", json!({"status": 403, "count": 1}))
        .await;
    app.notify(json!({"user_id": "ivy", "data": {"k": "v"}}))
        .await;
    assert_eq!(
        app.wait_metric(
            "switchboard_fcm_deliveries_total{status=\"fcm_failed\"}",
            1.0,
            WAIT
        )
        .await,
        1.0
    );
    assert_eq!(
        app.metric("switchboard_fcm_requests_total{result=\"sender_id_mismatch\"}")
            .await,
        1.0
    );
    assert!(app.mock().messages().await.is_empty());
}

#[tokio::test]
async fn bad_and_expired_client_tokens_get_401() {
    let app = TestApp::spawn().await;
    let url = app.url("/v1/events");
    let expired = {
        // Signed correctly, expired a minute ago (beyond the 5 s leeway).
        let claims = json!({"sub": "u1", "exp": switchboard::time::unix_secs() - 60});
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(common::JWT_SECRET.as_bytes()),
        )
        .unwrap()
    };
    for (token, code) in [
        ("not-a-jwt", "invalid_token"),
        (expired.as_str(), "token_expired"),
    ] {
        let s = SseStream::open(&url, token).await;
        assert_eq!(s.status, StatusCode::UNAUTHORIZED, "{token}");
        let resp = app.http.get(&url).bearer_auth(token).send().await.unwrap();
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], code);
    }
    let resp = app.http.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    // Browsers' EventSource passes the token in the query.
    let resp = app
        .http
        .get(format!("{url}?access_token={}", app.token("u1")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_client_token_cannot_call_the_producer_api() {
    let app = TestApp::spawn().await;
    let resp = app
        .http
        .post(app.url("/v1/notify"))
        .bearer_auth(app.token("mallory"))
        .json(&json!({"user_id": "alice", "data": {"k": "v"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let resp = app
        .http
        .post(app.url("/v1/notify"))
        .bearer_auth("wrong-key")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_token");
}

#[tokio::test]
async fn oversize_payloads_get_413_and_nothing_reaches_fcm() {
    let app = TestApp::spawn_with(Options::with_fcm()).await;
    app.register_device("judy", "pixel", "tok-judy").await;

    let big = "x".repeat(4100);
    let (status, body) = app
        .notify(json!({"user_id": "judy", "data": {"k": big}}))
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["error"]["code"], "payload_too_large");

    let huge = "y".repeat(70 * 1024);
    let (status, body) = app
        .notify(json!({"user_id": "judy", "data": {"k": huge}}))
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");

    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(app.mock().messages().await.is_empty());
    assert_eq!(app.mock().stats().await["accepted"], 0);
}

#[tokio::test]
async fn malformed_input_gets_400_and_wrong_content_type_415() {
    let app = TestApp::spawn().await;
    let post = |body: &'static str, ctype: &'static str| {
        app.http
            .post(app.url("/v1/notify"))
            .bearer_auth(common::PRODUCER_KEY)
            .header("content-type", ctype)
            .body(body)
            .send()
    };
    for (body, code) in [
        ("{not json", "invalid_json"),
        (r#"{"user_id": 5, "data": {}}"#, "invalid_request"),
        (r#"{"user_id": "u", "data": {"k": 1}}"#, "invalid_request"),
        (r#"{"user_id": "u"}"#, "invalid_request"),
        (
            r#"{"user_id": "a b", "data": {"k": "v"}}"#,
            "invalid_request",
        ),
        (
            r#"{"user_id": "u", "data": {"k": "v"}, "priority": "urgent"}"#,
            "invalid_request",
        ),
        // Objects only: serde would take a struct's fields as an array, in order.
        (r#"["u", {"k": "v"}]"#, "invalid_request"),
        (
            r#"{"user_id": "u", "notification": ["t"]}"#,
            "invalid_request",
        ),
    ] {
        let resp = post(body, "application/json").await.unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{body}");
        let v: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["code"], code, "{body}: {v}");
        assert!(v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }
    let resp = post(r#"{"user_id":"u","data":{"k":"v"}}"#, "text/plain")
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (status, _) = app.producer(Method::GET, "/v1/nowhere", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn batch_answers_in_order_with_per_item_errors() {
    let app = TestApp::spawn().await;
    let mut stream = app.stream("kate", "").await;
    let (status, body) = app
        .producer(
            Method::POST,
            "/v1/notify/batch",
            Some(json!({"notifications": [
                {"user_id": "kate", "data": {"n": "1"}},
                {"user_id": "kate"},
                {"user_id": "nobody", "data": {"n": "3"}},
                ["kate", {"n": "4"}],
            ]})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let results = body["results"].as_array().unwrap();
    assert_eq!(results[0]["route"], "sse");
    assert_eq!(results[1]["error"]["code"], "invalid_request");
    assert_eq!(results[2]["route"], "none");
    assert_eq!(results[3]["error"]["code"], "invalid_request");
    let ev = stream.next_event(WAIT).await.unwrap();
    assert_eq!(ev.id.as_deref(), results[0]["id"].as_str());
}

#[tokio::test]
async fn broadcast_reaches_topic_subscribers_only() {
    let app = TestApp::spawn().await;
    let mut chat1 = app.stream("u1", "topics=live-chat,news").await;
    let mut chat2 = app.stream("u2", "topics=live-chat").await;
    let mut other = app.stream("u3", "topics=sports").await;

    let (status, answer) = app
        .producer(
            Method::POST,
            "/v1/broadcast",
            Some(json!({"topic": "live-chat", "data": {"msg": "hi"}})),
        )
        .await;

    assert_eq!(status, StatusCode::ACCEPTED);
    for s in [&mut chat1, &mut chat2] {
        let ev = s.next_event(WAIT).await.expect("broadcast");
        assert_eq!(ev.event.as_deref(), Some("broadcast"));
        // No `id:` line: the client's last event id stays its last notification's.
        assert_eq!(ev.id, None);
        assert_eq!(ev.json()["id"], answer["id"]);
        assert_eq!(ev.json()["topic"], "live-chat");
        assert_eq!(ev.json()["data"]["msg"], "hi");
    }
    assert!(other.next_event(Duration::from_millis(300)).await.is_none());
}

#[tokio::test]
async fn topics_outside_the_token_claim_are_refused() {
    let app = TestApp::spawn().await;
    let token = token_with("u1", 60, Some(vec!["news".into()]));
    let ok = SseStream::open(&app.url("/v1/events?topics=news"), &token).await;
    assert_eq!(ok.status, StatusCode::OK);
    let refused = SseStream::open(&app.url("/v1/events?topics=news,admin"), &token).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn presence_shows_the_stream_and_forgets_it_on_disconnect() {
    let app = TestApp::spawn().await;
    let stream = app.stream("leo", "device_id=tablet").await;

    let p = app.presence("leo").await;
    assert_eq!(p["online"], true);
    assert_eq!(p["connections"][0]["device_id"], "tablet");
    assert!(p["connections"][0]["node_id"]
        .as_str()
        .unwrap()
        .starts_with("node-"));
    assert!(p["connections"][0]["connected_at"].as_u64().is_some());

    stream.close();

    assert!(
        eventually(WAIT, || async {
            app.presence("leo").await["online"] == false
        })
        .await
    );
    let (_, answer) = app
        .notify(json!({"user_id": "leo", "data": {"k": "v"}}))
        .await;
    assert_eq!(answer["route"], "none");
}

#[tokio::test]
async fn the_per_user_stream_limit_answers_429() {
    let app = TestApp::spawn_with(
        Options::default().env("SWITCHBOARD__SSE__MAX_CONNECTIONS_PER_USER", "2"),
    )
    .await;
    let _a = app.stream("mia", "device_id=a").await;
    let _b = app.stream("mia", "device_id=b").await;
    let third = SseStream::open(&app.url("/v1/events?device_id=c"), &app.token("mia")).await;
    assert_eq!(third.status, StatusCode::TOO_MANY_REQUESTS);
    let resp = app
        .http
        .get(app.url("/v1/events?device_id=c"))
        .bearer_auth(app.token("mia"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(resp.headers()["retry-after"], "5");
    // The same device reconnecting replaces its stream instead.
    let again = app.stream("mia", "device_id=a").await;
    assert_eq!(again.status, StatusCode::OK);
}

#[tokio::test]
async fn disconnect_reasons_are_counted() {
    let app = TestApp::spawn().await;
    let mut first = app.stream("nina", "device_id=phone").await;
    let _second = app.stream("nina", "device_id=phone").await;
    assert!(
        first.next_event(WAIT).await.is_none() && first.ended(),
        "the replaced stream ends"
    );
    assert_eq!(
        app.wait_metric(
            "switchboard_sse_disconnects_total{reason=\"replaced\"}",
            1.0,
            WAIT
        )
        .await,
        1.0
    );

    let leaving = app.stream("omar", "").await;
    leaving.close();
    let closed = app
        .wait_metric(
            "switchboard_sse_disconnects_total{reason=\"client_closed\"}",
            1.0,
            WAIT,
        )
        .await;
    assert_eq!(closed, 1.0);
    assert_eq!(
        app.metric("switchboard_sse_disconnects_total{reason=\"write_error\"}")
            .await,
        0.0
    );
    assert_eq!(app.metric("switchboard_sse_connections").await, 1.0);
}

#[tokio::test]
async fn sigterm_sends_shutdown_to_every_stream_and_exits() {
    let mut app = TestApp::spawn().await;
    let mut a = app.stream("pat", "").await;
    let mut b = app.stream("quinn", "topics=t").await;

    app.sigterm();

    for s in [&mut a, &mut b] {
        let ev = s.next_event(WAIT).await.expect("a shutdown event");
        assert_eq!(ev.event.as_deref(), Some("shutdown"));
        assert!(s.next_event(WAIT).await.is_none() && s.ended());
    }
    let status = app.wait_exit(Duration::from_secs(6)).await;
    assert!(status.success(), "{status:?}");
    // The log reader may still be a line behind the exited process.
    assert!(eventually(WAIT, || async { app.log_contains("shutdown complete") }).await);
}

#[tokio::test]
async fn operations_endpoints_answer() {
    let app = TestApp::spawn().await;
    let r = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let text = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "switchboard_sse_connections",
        "switchboard_sse_disconnects_total",
        "switchboard_notifications_total",
        "switchboard_delivery_latency_seconds",
        "switchboard_fcm_requests_total",
        "switchboard_fcm_latency_seconds",
    ] {
        assert!(text.contains(name), "{name} missing");
    }
}

#[tokio::test]
async fn cors_allows_configured_origins_only() {
    let app = TestApp::spawn_with(
        Options::default().env("SWITCHBOARD__SERVER__CORS_ORIGINS", "[https://app.example]"),
    )
    .await;
    let preflight = |origin: &'static str| {
        app.http
            .request(Method::OPTIONS, app.url("/v1/events"))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header(
                "access-control-request-headers",
                "authorization,last-event-id",
            )
            .send()
    };
    let ok = preflight("https://app.example").await.unwrap();
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let other = preflight("https://evil.example").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
    let answer = app
        .http
        .get(app.url("/v1/events"))
        .header("origin", "https://app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
    let exposed = answer.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(exposed.contains("retry-after"), "{exposed}");
}

#[tokio::test]
async fn devices_register_replace_and_delete() {
    let app = TestApp::spawn().await;
    let d = app.register_device("rita", "phone-1", "tok-1").await;
    assert_eq!(d["device_id"], "phone-1");
    assert_eq!(d["user_id"], "rita");
    assert_eq!(d["platform"], "android");
    assert!(d["updated_at"].as_i64().is_some());
    assert!(d.get("fcm_token").is_none(), "the token is not echoed");

    let del = |user: &str| {
        app.http
            .delete(app.url("/v1/devices/phone-1"))
            .bearer_auth(app.token(user))
            .send()
    };
    assert_eq!(
        del("someone-else").await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(del("rita").await.unwrap().status(), StatusCode::NO_CONTENT);
    for bad in [
        json!({"fcm_token": "t", "platform": "symbian"}),
        json!({"fcm_token": " t", "platform": "web"}),
        json!({"fcm_token": "t\u{85}", "platform": "web"}),
    ] {
        let resp = app
            .http
            .put(app.url("/v1/devices/phone-1"))
            .bearer_auth(app.token("rita"))
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
}

/// A stream is the first request of its connection in most clients, answered on the socket
/// itself; a stream opened on a connection already used for another request, or with an
/// `Origin` (CORS), goes through hyper and the router. Both behave the same.
#[tokio::test]
async fn streams_behave_the_same_on_either_http1_path() {
    let app = TestApp::spawn_with(
        Options::default().env("SWITCHBOARD__SERVER__CORS_ORIGINS", "[https://app.example]"),
    )
    .await;
    let direct = app.stream("ugo", "device_id=a").await;
    assert_eq!(direct.headers["connection"], "close", "answered directly");

    // One connection (a pool of one): the stream is its second request.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()
        .unwrap();
    let health = client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    health.bytes().await.unwrap();
    let resp = client
        .get(app.url("/v1/events?device_id=b"))
        .bearer_auth(app.token("ugo"))
        .send()
        .await
        .unwrap();
    let reused = SseStream::from_response(resp);
    assert!(
        reused.headers.get("connection").is_none(),
        "answered by hyper"
    );

    let resp = reqwest::Client::new()
        .get(app.url("/v1/events?device_id=c"))
        .bearer_auth(app.token("ugo"))
        .header("origin", "https://app.example")
        .send()
        .await
        .unwrap();
    let cors = SseStream::from_response(resp);
    assert_eq!(
        cors.headers["access-control-allow-origin"],
        "https://app.example"
    );

    let mut streams = [direct, reused, cors];
    for s in &mut streams[1..] {
        assert_eq!(s.status, StatusCode::OK);
        assert_eq!(s.headers["content-type"], "text/event-stream");
        let first = s.next(WAIT).await.expect("the retry: preamble");
        assert!(first.retry.is_some(), "{first:?}");
    }
    let (_, answer) = app
        .notify(json!({"user_id": "ugo", "data": {"k": "v"}}))
        .await;
    assert_eq!(answer["route"], "sse");
    for s in &mut streams {
        let ev = s.next_event(WAIT).await.expect("the notification");
        assert_eq!(ev.id.as_deref(), answer["id"].as_str());
    }
    for s in streams {
        s.close();
    }
    assert_eq!(
        app.wait_metric(
            "switchboard_sse_disconnects_total{reason=\"client_closed\"}",
            3.0,
            WAIT
        )
        .await,
        3.0
    );
    assert_eq!(app.metric("switchboard_sse_connections").await, 0.0);
}

/// The direct path reads a head that arrives in pieces, answers errors as the router does,
/// and unregisters a stream whose client closes.
#[tokio::test]
async fn a_stream_request_in_pieces_over_raw_tcp() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::spawn().await;

    let mut tcp = tokio::net::TcpStream::connect(&app.addr).await.unwrap();
    tcp.write_all(b"GET /v1/events?device_id=raw HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let auth = format!("Authorization: Bearer {}\r\n\r\n", app.token("vic"));
    tcp.write_all(auth.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&got).contains("retry: ") {
        let n = tokio::time::timeout(WAIT, tcp.read(&mut buf))
            .await
            .expect("the response head and the retry frame")
            .unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("transfer-encoding: chunked\r\n"), "{text}");
    assert_eq!(app.presence("vic").await["online"], true);
    drop(tcp);
    assert!(
        eventually(WAIT, || async {
            app.presence("vic").await["online"] == false
        })
        .await
    );

    let mut tcp = tokio::net::TcpStream::connect(&app.addr).await.unwrap();
    tcp.write_all(b"GET /v1/events HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(WAIT, tcp.read_to_string(&mut answer))
        .await
        .expect("an answer, then the connection closes")
        .unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 401 Unauthorized\r\n"),
        "{answer}"
    );
    assert!(
        answer.contains("content-type: application/json\r\n"),
        "{answer}"
    );
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    let error: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(error["error"]["code"], "missing_token", "{answer}");
}

/// The FCM path reads a user's devices from a cache (SQLite): every change to the devices
/// table reaches the next notification.
#[tokio::test]
async fn device_changes_reach_the_next_notification() {
    let app = TestApp::spawn_with(Options::with_fcm()).await;
    let route = |user: &'static str| {
        let app = &app;
        async move {
            let (status, answer) = app.notify(json!({"user_id": user, "data": {}})).await;
            assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
            answer["route"].as_str().unwrap().to_string()
        }
    };
    // Nobody's devices yet: cached as none.
    assert_eq!(route("gus").await, "none");
    app.register_device("gus", "phone", "tok-1").await;
    assert_eq!(route("gus").await, "fcm");
    app.register_device("gus", "phone", "tok-2").await;
    assert_eq!(route("gus").await, "fcm");
    // Registering gus's token for another user retires gus's device.
    app.register_device("hal", "tab", "tok-2").await;
    assert_eq!(route("gus").await, "none");
    assert_eq!(route("hal").await, "fcm");
    let gone = app
        .http
        .delete(app.url("/v1/devices/tab"))
        .bearer_auth(app.token("hal"))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), StatusCode::NO_CONTENT);
    assert_eq!(route("hal").await, "none");

    let messages = app.mock().wait_messages(3, WAIT).await;
    let tokens: Vec<_> = messages
        .iter()
        .map(|m| m["message"]["token"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(tokens, ["tok-1", "tok-2", "tok-2"]);
}

/// HTTP/2 with prior knowledge (h2c) is served by hyper: a stream and the producer API over
/// one HTTP/2 connection.
#[tokio::test]
async fn streams_and_notify_over_http2_prior_knowledge() {
    let app = TestApp::spawn().await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let resp = h2
        .get(app.url("/v1/events?device_id=h2"))
        .bearer_auth(app.token("ivy"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    let mut stream = SseStream::from_response(resp);
    assert_eq!(stream.status, StatusCode::OK);
    let first = stream.next(WAIT).await.expect("the retry: preamble");
    assert!(first.retry.is_some(), "{first:?}");

    let notify = h2
        .post(app.url("/v1/notify"))
        .bearer_auth(common::PRODUCER_KEY)
        .json(&json!({"user_id": "ivy", "data": {"k": "v"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(notify.version(), reqwest::Version::HTTP_2);
    assert_eq!(notify.status(), StatusCode::ACCEPTED);
    let answer: serde_json::Value = notify.json().await.unwrap();
    assert_eq!(answer["route"], "sse");
    let ev = stream.next_event(WAIT).await.expect("the notification");
    assert_eq!(ev.id.as_deref(), answer["id"].as_str());
}
