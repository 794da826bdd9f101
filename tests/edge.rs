//! The connection edge and the rate limits, on the real binary: the node-wide connection cap,
//! head size limits, header and idle timeouts (which never cut a stream), and the 429s of the
//! producer and stream-open limits, each on both stream paths (the direct one and hyper's).

mod common;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::{eventually, Options, SseStream, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(5);
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How a stream request reaches the route.
#[derive(Debug, Clone, Copy)]
enum Path {
    /// The first request of its connection: answered on the socket by `events_h1`.
    Direct,
    /// With an `Origin`: answered by hyper and the router.
    Hyper,
}

/// A stream request refused: its status, `Retry-After` and error code.
type Refused = (StatusCode, Option<String>, String);

/// Opens `user`'s stream over `client` on `path` as `device`, up to its `retry:` preamble.
async fn open(
    app: &TestApp,
    client: &reqwest::Client,
    (user, device): (&str, &str),
    path: Path,
) -> Result<SseStream, Refused> {
    let mut req = client
        .get(app.url(&format!("/v1/events?device_id={device}")))
        .bearer_auth(app.token(user));
    if let Path::Hyper = path {
        req = req.header("origin", "https://app.example");
    }
    let resp = req.send().await.unwrap();
    if resp.status() != StatusCode::OK {
        return Err(refusal(resp).await);
    }
    let mut stream = SseStream::from_response(resp);
    let first = stream.next(WAIT).await.expect("the retry: preamble");
    assert!(first.retry.is_some(), "{first:?}");
    Ok(stream)
}

/// A client whose connections come from `addr` (any 127.0.0.0/8 address reaches the node).
fn client_from(addr: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(addr.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

/// Sends `request` on a new connection and reads the answer until the node closes it.
async fn raw(app: &TestApp, request: &[u8]) -> String {
    let mut tcp = TcpStream::connect(&app.addr).await.unwrap();
    tcp.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, tcp.read_to_end(&mut answer))
        .await
        .expect("an answer, then the close: never a hang")
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

/// How long until the node closes `tcp` (what it sends is read and dropped), at most `within`.
async fn closed_after(tcp: &mut TcpStream, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut sink = [0u8; 1024];
    tokio::time::timeout(within, async {
        while matches!(tcp.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await
    .ok()
    .map(|()| started.elapsed())
}

/// An API error's status, `Retry-After` and code.
async fn refusal(resp: reqwest::Response) -> Refused {
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let body: Value = resp.json().await.unwrap();
    let code = body["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    (status, retry_after, code)
}

#[tokio::test]
async fn past_the_connection_cap_a_new_connection_gets_503_while_open_streams_go_on() {
    let app =
        TestApp::spawn_with(Options::default().env("SWITCHBOARD__SERVER__MAX_CONNECTIONS", "3"))
            .await;
    let mut stream = app.stream("cap", "device_id=d").await;
    let idle = TcpStream::connect(&app.addr).await.unwrap();
    let last = TcpStream::connect(&app.addr).await.unwrap();
    assert!(
        eventually(WAIT, || async {
            let answer = raw(&app, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
            answer.starts_with("HTTP/1.1 503 Service Unavailable\r\n")
                && answer.contains("retry-after: 1\r\n")
                && answer.contains("\"code\":\"too_many_connections\"")
        })
        .await,
        "a connection past the cap gets 503 with Retry-After"
    );

    // A slot frees up: the notify gets through, and the stream opened before still works.
    drop(last);
    let deadline = Instant::now() + WAIT;
    let answer = loop {
        let sent = app
            .http
            .post(app.url("/v1/notify"))
            .bearer_auth(common::PRODUCER_KEY)
            .json(&json!({"user_id": "cap", "data": {}}))
            .send()
            .await;
        // Until the node sees the slot free, it answers 503 as soon as it accepts, before the
        // request is read: the client may see that as a broken exchange rather than a status.
        let status = match sent {
            Ok(resp) if resp.status() == StatusCode::ACCEPTED => {
                break resp.json::<Value>().await.unwrap();
            }
            Ok(resp) => resp.status().to_string(),
            Err(e) => e.to_string(),
        };
        assert!(Instant::now() < deadline, "no slot came free: {status}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!(answer["route"], "sse");
    let ev = stream.next_event(WAIT).await.expect("the notification");
    assert_eq!(ev.id.as_deref(), answer["id"].as_str());
    // The node sees the idle connection's close a moment later: until then a new connection
    // (the metrics read) can still be past the cap.
    drop(idle);
    let refused = |text: String| {
        text.lines()
            .find_map(|l| l.strip_prefix("switchboard_connections_refused_total "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .is_some_and(|v| v >= 1.0)
    };
    assert!(
        eventually(WAIT, || async { refused(app.metrics_text().await) }).await,
        "the refusal is counted"
    );
}

#[tokio::test]
async fn heads_too_long_or_with_too_many_headers_get_431_on_either_path() {
    let app = TestApp::spawn().await;
    let long = "a".repeat(20 * 1024);
    let many: String = (0..120).map(|i| format!("X-H{i}: v\r\n")).collect();
    for (what, head) in [
        ("a long stream head", format!("GET /v1/events HTTP/1.1\r\nX: {long}\r\n\r\n")),
        ("a stream head with many headers", format!("GET /v1/events HTTP/1.1\r\n{many}\r\n")),
        ("a long head", format!("POST /v1/notify HTTP/1.1\r\nX: {long}\r\n\r\n")),
        ("a head with many headers", format!("POST /v1/notify HTTP/1.1\r\n{many}\r\n")),
        (
            "a long second head",
            format!("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /v1/events HTTP/1.1\r\nX: {long}\r\n\r\n"),
        ),
    ] {
        let answer = raw(&app, head.as_bytes()).await;
        let last = answer.rfind("HTTP/1.1 ").map(|i| &answer[i..]).unwrap_or("");
        assert!(
            last.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            "{what}: {answer}"
        );
    }
}

#[tokio::test]
async fn a_connection_silent_after_its_first_bytes_is_closed_after_the_header_timeout() {
    let app = TestApp::spawn_with(
        Options::default().env("SWITCHBOARD__SERVER__HEADER_TIMEOUT_SECS", "1"),
    )
    .await;
    for first in [
        &b"G"[..],
        b"GET /v1/events HTTP/1.1\r\n",
        b"POST /v",
        H2_PREFACE,
    ] {
        let mut tcp = TcpStream::connect(&app.addr).await.unwrap();
        tcp.write_all(first).await.unwrap();
        let after = closed_after(&mut tcp, WAIT).await;
        let shown = String::from_utf8_lossy(first);
        let after = after.unwrap_or_else(|| panic!("{shown:?}: still open"));
        // Each connection's deadline falls in the last quarter of the timeout (750-1000 ms).
        assert!(
            after >= Duration::from_millis(700),
            "{shown:?}: closed after {after:?}"
        );
    }
    let timeouts = "switchboard_connection_timeouts_total{kind=\"header\"}";
    assert_eq!(app.metric(timeouts).await, 4.0);
}

#[tokio::test]
async fn a_body_trickled_past_the_body_timeout_gets_408_and_the_connection_is_closed() {
    let app =
        TestApp::spawn_with(Options::default().env("SWITCHBOARD__SERVER__BODY_TIMEOUT_SECS", "1"))
            .await;
    let body = br#"{"user_id":"alice","data":{"k":"v"}}"#;
    let head = format!(
        "POST /v1/notify HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        common::PRODUCER_KEY,
        body.len()
    );
    let mut tcp = TcpStream::connect(&app.addr).await.unwrap();
    tcp.write_all(head.as_bytes()).await.unwrap();
    // Half the body, then nothing: the head arrived in time, the body never does.
    tcp.write_all(&body[..body.len() / 2]).await.unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, tcp.read_to_end(&mut answer))
        .await
        .expect("answered and closed, not held open")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert!(answer.contains("\"request_timeout\""), "{answer}");
    assert!(started.elapsed() >= Duration::from_millis(900));
    let timeouts = "switchboard_connection_timeouts_total{kind=\"body\"}";
    assert_eq!(app.metric(timeouts).await, 1.0);
    // Nothing half-read was accepted.
    let routed = "switchboard_notifications_total{route=\"none\"}";
    assert_eq!(app.metric(routed).await, 0.0);
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let app = TestApp::spawn_with(
        Options::default()
            .env("SWITCHBOARD__SERVER__HEADER_TIMEOUT_SECS", "1")
            .env("SWITCHBOARD__SERVER__IDLE_TIMEOUT_SECS", "3"),
    )
    .await;
    let mut tcp = TcpStream::connect(&app.addr).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = tcp.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200 OK\r\n"));
    // Past the header timeout, within the idle one: still open, and serves a second request.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let n = tcp.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200 OK\r\n"));
    let after = closed_after(&mut tcp, Duration::from_secs(6))
        .await
        .expect("closed when idle");
    assert!(
        after >= Duration::from_millis(2900),
        "closed after {after:?}"
    );

    // HTTP/2: a connection whose only stream ended goes the same way.
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let resp = h2.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert!(
        eventually(Duration::from_secs(8), || async {
            app.metric("switchboard_connection_timeouts_total{kind=\"idle\"}")
                .await
                == 2.0
        })
        .await,
        "the idle HTTP/1 and HTTP/2 connections were closed"
    );
}

#[tokio::test]
async fn open_streams_outlive_every_timeout() {
    let app = TestApp::spawn_with(
        Options::default()
            .env("SWITCHBOARD__SERVER__HEADER_TIMEOUT_SECS", "1")
            .env("SWITCHBOARD__SERVER__IDLE_TIMEOUT_SECS", "1")
            .env("SWITCHBOARD__SERVER__H2_KEEPALIVE_INTERVAL_SECS", "1")
            .env("SWITCHBOARD__SERVER__H2_KEEPALIVE_TIMEOUT_SECS", "1")
            .env("SWITCHBOARD__SSE__HEARTBEAT_SECS", "1"),
    )
    .await;
    let plain = reqwest::Client::new();
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let mut streams = [
        open(&app, &plain, ("sue", "d1"), Path::Direct)
            .await
            .unwrap(),
        open(&app, &plain, ("sue", "d2"), Path::Hyper)
            .await
            .unwrap(),
        open(&app, &h2, ("sue", "d3"), Path::Direct).await.unwrap(),
    ];
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (_, answer) = app.notify(json!({"user_id": "sue", "data": {}})).await;
    assert_eq!(answer["route"], "sse");
    for (i, s) in streams.iter_mut().enumerate() {
        let mut pings = 0;
        let ev = loop {
            let ev = s.next(WAIT).await;
            let ev = ev.unwrap_or_else(|| panic!("stream {i} ended after {pings} pings"));
            if ev.comment.is_none() {
                break ev;
            }
            pings += 1;
        };
        assert_eq!(ev.id.as_deref(), answer["id"].as_str());
        assert!(pings >= 2, "heartbeats flowed meanwhile ({pings})");
    }
    let closed = "switchboard_sse_disconnects_total{reason=\"write_error\"}";
    assert_eq!(app.metric(closed).await, 0.0);
}

#[tokio::test]
async fn a_producer_over_its_rate_limit_gets_429_while_another_key_is_accepted() {
    let app = TestApp::spawn_with(
        Options::default()
            .env("SWITCHBOARD__AUTH__PRODUCER_KEYS", "[k1,k2]")
            .env("SWITCHBOARD__LIMITS__PRODUCER_RATE_PER_SEC", "1")
            .env("SWITCHBOARD__LIMITS__PRODUCER_BURST", "1000"),
    )
    .await;
    let post = |key: &'static str, path: &'static str, body: Value| {
        app.http
            .post(app.url(path))
            .bearer_auth(key)
            .json(&body)
            .send()
    };
    // A batch costs one token per item: 1000 take the whole burst.
    let items: Vec<Value> = (0..1000)
        .map(|i| json!({"user_id": format!("u{i}"), "data": {}}))
        .collect();
    let batch = post("k1", "/v1/notify/batch", json!({ "notifications": items }));
    assert_eq!(batch.await.unwrap().status(), StatusCode::ACCEPTED);

    let single = json!({"user_id": "u", "data": {}});
    let (status, retry_after, code) =
        refusal(post("k1", "/v1/notify", single.clone()).await.unwrap()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(code, "rate_limited");
    assert_eq!(retry_after.as_deref(), Some("1"));
    let presence = app
        .http
        .get(app.url("/v1/presence/u"))
        .bearer_auth("k1")
        .send()
        .await
        .unwrap();
    assert_eq!(
        presence.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "every producer route counts"
    );

    let other = post("k2", "/v1/notify", single).await.unwrap();
    assert_eq!(
        other.status(),
        StatusCode::ACCEPTED,
        "another key is unaffected"
    );
    // One series per producer, named by the key's non-secret name: k1's counts its refusals.
    let text = app.metrics_text().await;
    let mut refused: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with("switchboard_producer_rate_limited_total{producer=\""))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    refused.sort_by(f64::total_cmp);
    assert_eq!(refused, [0.0, 2.0], "{text}");
    assert!(
        !text.contains("k1") && !text.contains("k2"),
        "a key never shows"
    );
}

#[tokio::test]
async fn a_refused_producer_waits_for_its_429_but_never_past_its_retry_after() {
    for (delay_ms, at_least, below) in [(400, 400, 1000), (60_000, 200, 3000)] {
        let app = TestApp::spawn_with(
            Options::default()
                .env("SWITCHBOARD__LIMITS__PRODUCER_RATE_PER_SEC", "1")
                .env("SWITCHBOARD__LIMITS__PRODUCER_BURST", "1000")
                .env(
                    "SWITCHBOARD__LIMITS__PRODUCER_REFUSAL_DELAY_MS",
                    &delay_ms.to_string(),
                ),
        )
        .await;
        let items: Vec<Value> = (0..1000)
            .map(|i| json!({"user_id": format!("u{i}"), "data": {}}))
            .collect();
        let batch = app
            .http
            .post(app.url("/v1/notify/batch"))
            .bearer_auth(common::PRODUCER_KEY)
            .json(&json!({ "notifications": items }))
            .send()
            .await
            .unwrap();
        assert_eq!(batch.status(), StatusCode::ACCEPTED);
        let started = Instant::now();
        let refused = app
            .http
            .post(app.url("/v1/notify"))
            .bearer_auth(common::PRODUCER_KEY)
            .json(&json!({"user_id": "u", "data": {}}))
            .send()
            .await
            .unwrap();
        let waited = started.elapsed();
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        // The pause is the configured delay, cut to the bucket's own wait (under 1 s here).
        assert!(
            waited >= Duration::from_millis(at_least) && waited < Duration::from_millis(below),
            "delay {delay_ms} ms: answered after {waited:?}"
        );
    }
}

#[tokio::test]
async fn stream_opens_over_the_per_user_limit_get_429_too_many_reconnects_on_either_path() {
    let app = TestApp::spawn_with(
        Options::default()
            .env("SWITCHBOARD__LIMITS__STREAM_OPENS_PER_USER_PER_MIN", "1")
            .env("SWITCHBOARD__LIMITS__STREAM_OPENS_PER_USER_BURST", "2"),
    )
    .await;
    let client = reqwest::Client::new();
    let _a = open(&app, &client, ("ray", "d4"), Path::Direct)
        .await
        .unwrap();
    let _b = open(&app, &client, ("ray", "d5"), Path::Hyper)
        .await
        .unwrap();
    for path in [Path::Direct, Path::Hyper] {
        let Err((status, retry_after, code)) = open(&app, &client, ("ray", "d6"), path).await
        else {
            panic!("{path:?}: a third open within the burst")
        };
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{path:?}");
        assert_eq!(code, "too_many_reconnects", "{path:?}");
        let secs: u64 = retry_after.unwrap().parse().unwrap();
        assert!((1..=60).contains(&secs), "{path:?}: Retry-After {secs}");
    }
    let other = open(&app, &client, ("sam", "d7"), Path::Direct).await;
    assert!(other.is_ok(), "another user is unaffected");
    let series = "switchboard_stream_opens_limited_total{scope=\"user\"}";
    assert_eq!(app.metric(series).await, 2.0);
}

#[tokio::test]
async fn stream_opens_over_the_per_address_limit_get_429_while_another_address_is_served() {
    let app = TestApp::spawn_with(
        Options::default()
            .env("SWITCHBOARD__LIMITS__STREAM_OPENS_PER_IP_PER_SEC", "1")
            .env("SWITCHBOARD__LIMITS__STREAM_OPENS_PER_IP_BURST", "2"),
    )
    .await;
    let busy = client_from("127.0.0.2");
    let _a = open(&app, &busy, ("ann", "d8"), Path::Direct)
        .await
        .unwrap();
    let _b = open(&app, &busy, ("bob", "d9"), Path::Hyper).await.unwrap();
    for path in [Path::Direct, Path::Hyper] {
        let Err((status, retry_after, code)) = open(&app, &busy, ("cid", "d10"), path).await else {
            panic!("{path:?}: a third open within the burst")
        };
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{path:?}");
        assert_eq!(code, "too_many_reconnects", "{path:?}");
        assert_eq!(retry_after.as_deref(), Some("1"), "{path:?}");
    }
    // Refused before authentication: a loop with a bad token counts too.
    let bad = busy
        .get(app.url("/v1/events"))
        .bearer_auth("not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::TOO_MANY_REQUESTS);

    let calm = client_from("127.0.0.3");
    let c = open(&app, &calm, ("cid", "d11"), Path::Direct).await;
    assert!(c.is_ok(), "another address is unaffected");
    let series = "switchboard_stream_opens_limited_total{scope=\"ip\"}";
    assert_eq!(app.metric(series).await, 3.0);
    assert_eq!(
        app.metric("switchboard_rate_limit_keys{scope=\"ip\"}")
            .await,
        2.0
    );
}
