//! The operator console on the real binary: only an operator key opens it, its figures stream
//! ticks every second and counts what happens, its tools read any producer's record and a
//! user's presence and send a test notification, and on Redis every node shows every other.

mod common;

use std::time::{Duration, Instant};

use common::deploy::deploy_with;
use common::{Options, SseStream, TestApp, PRODUCER_KEY};
use reqwest::StatusCode;
use serde_json::{json, Value};

const OPERATOR_KEY: &str = "test-operator-key";
const WAIT: Duration = Duration::from_secs(5);

fn with_console() -> Options {
    Options::default().env(
        "SWITCHBOARD__AUTH__OPERATOR_KEYS",
        &format!("[{OPERATOR_KEY}]"),
    )
}

/// `method path` with `Authorization: Bearer <credential>` (none when `None`).
async fn call(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    credential: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = app.http.request(method, app.url(path));
    if let Some(c) = credential {
        req = req.bearer_auth(c);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn operator(app: &TestApp, method: reqwest::Method, path: &str) -> (StatusCode, Value) {
    call(app, method, path, Some(OPERATOR_KEY), None).await
}

async fn test_notify(app: &TestApp, user: &str) -> Value {
    let (status, body) = call(
        app,
        reqwest::Method::POST,
        "/v1/console/test-notify",
        Some(OPERATOR_KEY),
        Some(json!({"user_id": user, "title": "hello from the console"})),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    body
}

async fn figures_stream(app: &TestApp) -> SseStream {
    let resp = app
        .http
        .get(app.url("/v1/console/stats"))
        .bearer_auth(OPERATOR_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    SseStream::from_response(resp)
}

/// The next `figures` event's data.
async fn next_figures(stream: &mut SseStream) -> Value {
    loop {
        let e = stream
            .next(Duration::from_secs(3))
            .await
            .expect("a figures event within 3 s");
        if e.event.as_deref() == Some("figures") {
            return e.json();
        }
    }
}

/// Reads figures until `check` holds for one (or `WAIT` passes); returns the last one read.
async fn figures_until(stream: &mut SseStream, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let f = next_figures(stream).await;
        if check(&f) || Instant::now() > deadline {
            return f;
        }
    }
}

fn total(f: &Value, series: &str) -> f64 {
    f["total"][series].as_f64().unwrap_or(-1.0)
}

#[tokio::test]
async fn only_an_operator_key_opens_the_console_s_api() {
    let app = TestApp::spawn_with(with_console()).await;
    let client = app.token("alice");
    let paths = [
        (reqwest::Method::GET, "/v1/console/stats"),
        (
            reqwest::Method::GET,
            "/v1/console/notifications/0190a5d2-0000-7000-8000-000000000000",
        ),
        (reqwest::Method::GET, "/v1/console/presence/alice"),
    ];
    for (method, path) in paths {
        for (credential, status, code) in [
            (None, StatusCode::UNAUTHORIZED, "missing_token"),
            (Some("wrong-key"), StatusCode::UNAUTHORIZED, "invalid_token"),
            (Some(PRODUCER_KEY), StatusCode::FORBIDDEN, "forbidden"),
            (Some(client.as_str()), StatusCode::FORBIDDEN, "forbidden"),
        ] {
            let (got, body) = call(&app, method.clone(), path, credential, None).await;
            assert_eq!(got, status, "{method} {path} with {credential:?}: {body}");
            assert_eq!(body["error"]["code"], code, "{method} {path}");
        }
    }
    let (status, body) = call(
        &app,
        reqwest::Method::POST,
        "/v1/console/test-notify",
        Some(PRODUCER_KEY),
        Some(json!({"user_id": "alice"})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    let (status, _) = operator(&app, reqwest::Method::GET, "/v1/console/presence/alice").await;
    assert_eq!(status, StatusCode::OK);
    let page = app.http.get(app.url("/console")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"data-metric="switchboard_sse_connections""#));
    assert!(html.contains(r#"data-metric="fcm_sends_avoided""#));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "the page loads nothing from elsewhere"
    );
}

#[tokio::test]
async fn a_node_without_operator_keys_keeps_its_console_closed() {
    let app = TestApp::spawn().await;
    let (status, body) = operator(&app, reqwest::Method::GET, "/v1/console/stats").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "forbidden");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("auth.operator_keys"));
}

#[tokio::test]
async fn the_figures_stream_ticks_every_second_and_counts_open_streams() {
    let app = TestApp::spawn_with(with_console()).await;
    let mut figures = figures_stream(&app).await;
    let first = next_figures(&mut figures).await;
    assert_eq!(first["nodes"].as_array().unwrap().len(), 1, "{first}");
    assert_eq!(total(&first, "switchboard_sse_connections"), 0.0);

    let _a = app.stream("alice", "device_id=phone").await;
    let _b = app.stream("bob", "device_id=phone").await;
    let f = figures_until(&mut figures, |f| {
        total(f, "switchboard_sse_connections") == 2.0
    })
    .await;
    assert_eq!(total(&f, "switchboard_sse_connections"), 2.0, "{f}");
    let second = next_figures(&mut figures).await;
    let gap = second["at_ms"].as_u64().unwrap() - f["at_ms"].as_u64().unwrap();
    assert!((800..=1500).contains(&gap), "ticks {gap} ms apart");
    let node = &second["nodes"][0];
    assert_eq!(node["series"]["switchboard_sse_connections"], 2.0);
    for series in [
        "switchboard_notifications_total{route=\"sse\"}",
        "switchboard_push_queue_depth",
        "switchboard_push_queue_oldest_seconds",
        "fcm_sends_avoided",
        "fcm_sends_avoided_share",
        "switchboard_ack_timeouts_total",
    ] {
        assert!(second["total"][series].is_number(), "{series} in {second}");
    }
}

#[tokio::test]
async fn the_tools_look_up_any_record_and_presence_and_send_a_test_notification() {
    let app = TestApp::spawn_with(with_console()).await;
    let mut figures = figures_stream(&app).await;
    let mut stream = app.stream("carol", "device_id=laptop").await;

    let (status, presence) =
        operator(&app, reqwest::Method::GET, "/v1/console/presence/carol").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(presence["online"], true, "{presence}");
    assert_eq!(presence["connections"][0]["device_id"], "laptop");

    let sent = test_notify(&app, "carol").await;
    assert_eq!(sent["route"], "sse", "{sent}");
    let id = sent["id"].as_str().unwrap();
    let event = loop {
        let e = stream.next(WAIT).await.expect("the test notification");
        if e.event.as_deref() == Some("notification") {
            break e;
        }
    };
    assert_eq!(event.id.as_deref(), Some(id));
    assert_eq!(event.json()["data"]["switchboard_console_test"], "1");

    let path = format!("/v1/console/notifications/{id}");
    let deadline = Instant::now() + WAIT;
    let record = loop {
        let (status, record) = operator(&app, reqwest::Method::GET, &path).await;
        assert_eq!(status, StatusCode::OK, "{record}");
        if record["status"] == "delivered" || Instant::now() > deadline {
            break record;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(record["status"], "delivered", "{record}");
    assert_eq!(record["deliveries"][0]["channel"], "sse", "{record}");
    assert_eq!(record["deliveries"][0]["device_id"], "laptop", "{record}");
    let (status, _) = app
        .producer(
            reqwest::Method::GET,
            &format!("/v1/notifications/{id}"),
            None,
        )
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "a producer does not read the console's records"
    );

    // A producer's notification: the operator reads it too.
    let (_, produced) = app
        .notify(json!({"user_id": "dave", "data": {"k": "v"}}))
        .await;
    let path = format!(
        "/v1/console/notifications/{}",
        produced["id"].as_str().unwrap()
    );
    let (status, record) = operator(&app, reqwest::Method::GET, &path).await;
    assert_eq!(status, StatusCode::OK, "{record}");
    assert_eq!(record["route"], "none");
    let (status, _) = operator(
        &app,
        reqwest::Method::GET,
        "/v1/console/notifications/0190a5d2-0000-7000-8000-000000000000",
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    for bad in [
        json!({"user_id": "a b"}),
        json!({"user_id": "carol", "title": "a\u{7}b"}),
    ] {
        let (status, body) = call(
            &app,
            reqwest::Method::POST,
            "/v1/console/test-notify",
            Some(OPERATOR_KEY),
            Some(bad.clone()),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "invalid_request");
    }

    let f = figures_until(&mut figures, |f| total(f, "fcm_sends_avoided") >= 1.0).await;
    assert_eq!(total(&f, "fcm_sends_avoided"), 1.0, "{f}");
    assert_eq!(total(&f, "switchboard_fcm_sends_avoided_total"), 1.0);
    assert_eq!(total(&f, "fcm_sends_avoided_share"), 1.0);
    assert_eq!(
        total(&f, "switchboard_notifications_total{route=\"sse\"}"),
        1.0
    );
    assert_eq!(
        total(&f, "switchboard_notifications_total{route=\"none\"}"),
        1.0
    );
    assert!(
        total(
            &f,
            "switchboard_delivery_latency_seconds{quantile=\"0.99\"}"
        ) > 0.0,
        "{f}"
    );
    assert_eq!(
        app.metric("switchboard_fcm_sends_avoided_total").await,
        1.0,
        "the figure is the exported counter"
    );
}

#[tokio::test]
async fn an_acked_notification_counts_as_an_fcm_send_avoided_once_acked() {
    let app = TestApp::spawn_with(with_console()).await;
    let mut stream = app.stream("erin", "device_id=phone&ack=true").await;
    let id = test_notify(&app, "erin").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    loop {
        let e = stream.next(WAIT).await.expect("the test notification");
        if e.event.as_deref() == Some("notification") {
            break;
        }
    }
    assert_eq!(
        app.metric("switchboard_fcm_sends_avoided_total").await,
        0.0,
        "written, not acked yet: an ack timeout would still send it through FCM"
    );
    assert_eq!(app.ack("erin", &[&id]).await, StatusCode::NO_CONTENT);
    assert_eq!(app.metric("switchboard_fcm_sends_avoided_total").await, 1.0);
}

#[tokio::test]
async fn two_nodes_on_redis_show_each_other_in_the_figures_stream() {
    let operator_keys = format!("[{OPERATOR_KEY}]");
    let d = deploy_with(
        2,
        "redis://127.0.0.1:6379",
        &[("SWITCHBOARD__AUTH__OPERATOR_KEYS", &operator_keys)],
    )
    .await;
    let _on_second = d.nodes[1].stream("frank", "device_id=phone").await;
    let mut figures = figures_stream(&d.nodes[0]).await;
    let ids = |f: &Value| -> Vec<String> {
        f["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["node_id"].as_str().unwrap().to_string())
            .collect()
    };
    let f = figures_until(&mut figures, |f| {
        ids(f).len() == 2 && total(f, "switchboard_sse_connections") == 1.0
    })
    .await;
    assert_eq!(ids(&f), ["node-0", "node-1"], "{f}");
    assert_eq!(total(&f, "switchboard_sse_connections"), 1.0, "{f}");
    assert_eq!(f["nodes"][1]["series"]["switchboard_sse_connections"], 1.0);
    assert_eq!(total(&f, "switchboard_ready"), 2.0);

    // A test notification sent from node 0's console reaches the stream on node 1.
    let sent = test_notify(&d.nodes[0], "frank").await;
    assert_eq!(sent["route"], "sse", "{sent}");
    let f = figures_until(&mut figures, |f| total(f, "fcm_sends_avoided") >= 1.0).await;
    assert_eq!(f["nodes"][1]["series"]["fcm_sends_avoided"], 1.0, "{f}");
}
