//! Soak: users with `ack=true` streams, thousands of notifications, a third of the clients
//! dropping and reconnecting with Last-Event-ID while it runs, fcm-mock failing 20 % of sends
//! with 503 and failing all of them for 30 s from half-way, and (multi-node) one node
//! SIGKILLed half-way. At the end every notification is `acked` or `fcm_accepted`, none is
//! missing, none was sent to FCM twice, and none went through both channels except where an
//! ack raced the ack timeout.
//!
//! Size: SOAK_USERS (default 1000) and SOAK_NOTIFICATIONS (default 20000).

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::deploy::deploy_with;
use common::{token_with, Mock, Options, SseStream, TestApp};
use futures::StreamExt;
use parking_lot::Mutex;
use rand::RngExt;
use reqwest::StatusCode;
use serde_json::json;

const ACK_TIMEOUT_MS: u64 = 3000;
/// The full FCM outage that starts half-way through publishing.
const OUTAGE: Duration = Duration::from_secs(30);

/// Sends retried until they get through (the outage is far shorter than the deadline), at
/// least every second; a lease that ends soon after a killed node's sends.
const PUSH_ENV: [(&str, &str); 4] = [
    ("SWITCHBOARD__FCM__MAX_ATTEMPTS", "0"),
    ("SWITCHBOARD__FCM__BACKOFF_MAX_MS", "1000"),
    ("SWITCHBOARD__FCM__REQUEST_TIMEOUT_SECS", "2"),
    ("SWITCHBOARD__PUSH__LEASE_SECS", "5"),
];

/// fcm-mock's faults: 503 on 20 % of sends, or (`outage`) on all of them.
async fn fcm_faults(mock_url: &str, outage: bool) {
    let http = reqwest::Client::new();
    let r = http
        .delete(format!("{mock_url}/_mock/faults"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let ratio = if outage { 1.0 } else { 0.2 };
    let r = http
        .post(format!("{mock_url}/_mock/faults"))
        .json(&json!({"status": 503, "count": 1_000_000_000u32, "ratio": ratio}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
}

/// The soaks load the machine: one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn size(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Where clients and producers may go; a killed node is taken out.
struct Nodes {
    addrs: Vec<String>,
    alive: Vec<AtomicBool>,
}

impl Nodes {
    fn pick(&self) -> &str {
        let mut rng = rand::rng();
        loop {
            let i = rng.random_range(0..self.addrs.len());
            if self.alive[i].load(Ordering::Relaxed) {
                return &self.addrs[i];
            }
        }
    }
}

#[derive(Default)]
struct Seen {
    /// Notification ids each user's client received over SSE (first receipt).
    received: HashSet<String>,
    resets: usize,
    reconnects: usize,
}

/// One user's client: holds a stream, acks every new notification (in small batches, to
/// node 0, which is never killed), reconnects with Last-Event-ID when its stream ends or when
/// its scheduled drop comes.
async fn client(
    user: String,
    nodes: Arc<Nodes>,
    http: reqwest::Client,
    drop_at: Option<Instant>,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<HashMap<String, Seen>>>,
    opened: Arc<AtomicUsize>,
) {
    let token = token_with(&user, 3600, None);
    let mut last_id: Option<String> = None;
    let mut drop_at = drop_at;
    let mut first = true;
    while !stop.load(Ordering::Relaxed) {
        let addr = nodes.pick().to_string();
        let mut url = format!("http://{addr}/v1/events?device_id=d&ack=true");
        if let Some(id) = &last_id {
            url.push_str(&format!("&last_event_id={id}"));
        }
        let Ok(resp) = http.get(&url).bearer_auth(&token).send().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        if resp.status() != StatusCode::OK {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        let mut stream = SseStream::from_response(resp);
        if first {
            opened.fetch_add(1, Ordering::Relaxed);
            first = false;
        } else {
            seen.lock().entry(user.clone()).or_default().reconnects += 1;
        }
        let mut pending_acks: Vec<String> = Vec::new();
        loop {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            if drop_at.is_some_and(|t| Instant::now() >= t) {
                drop_at = None;
                break;
            }
            let ev = stream.next(Duration::from_millis(30)).await;
            match ev {
                Some(ev) if ev.event.as_deref() == Some("notification") => {
                    let id = ev.id.clone().unwrap();
                    last_id = Some(id.clone());
                    let new = seen
                        .lock()
                        .entry(user.clone())
                        .or_default()
                        .received
                        .insert(id.clone());
                    if new {
                        pending_acks.push(id);
                    }
                }
                Some(ev) if ev.event.as_deref() == Some("reset") => {
                    seen.lock().entry(user.clone()).or_default().resets += 1;
                }
                Some(_) => {}
                None if stream.ended() => break,
                None => {}
            }
            if !pending_acks.is_empty() {
                ack(
                    &http,
                    &nodes.addrs[0],
                    &token,
                    std::mem::take(&mut pending_acks),
                )
                .await;
            }
        }
        if !pending_acks.is_empty() {
            ack(&http, &nodes.addrs[0], &token, pending_acks).await;
        }
        drop(stream);
        let pause = rand::rng().random_range(50..300);
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}

async fn ack(http: &reqwest::Client, addr: &str, token: &str, ids: Vec<String>) {
    for _ in 0..20 {
        let r = http
            .post(format!("http://{addr}/v1/ack"))
            .bearer_auth(token)
            .json(&json!({ "ids": ids }))
            .send()
            .await;
        if r.is_ok_and(|r| r.status() == StatusCode::NO_CONTENT) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("acks kept failing");
}

struct Report {
    statuses: HashMap<String, usize>,
    both: usize,
    late_acks: f64,
    ack_timeouts: f64,
    fcm_duplicates: usize,
    missing: usize,
    resets: usize,
    reconnects: usize,
    routes: HashMap<String, usize>,
    elapsed: Duration,
}

async fn soak(nodes: &mut [TestApp], mock: &Mock, kill: Option<usize>) -> Report {
    let users = size("SOAK_USERS", 1000);
    let total = size("SOAK_NOTIFICATIONS", 20000);
    let started = Instant::now();
    let node_set = Arc::new(Nodes {
        addrs: nodes.iter().map(|n| n.addr.clone()).collect(),
        alive: nodes.iter().map(|_| AtomicBool::new(true)).collect(),
    });
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .unwrap();
    let names: Vec<String> = (0..users).map(|i| format!("soak-{i}")).collect();
    futures::stream::iter(names.iter().enumerate())
        .for_each_concurrent(32, |(i, u)| {
            let app = &nodes[0];
            async move {
                app.register_device(u, "d", &format!("tok-{u}-{i}")).await;
            }
        })
        .await;

    let stop = Arc::new(AtomicBool::new(false));
    let seen: Arc<Mutex<HashMap<String, Seen>>> = Arc::default();
    let opened = Arc::new(AtomicUsize::new(0));
    // Publishing takes roughly this long; drops are spread over it.
    let publish_window = Duration::from_millis((total as u64 / 2).max(3000));
    let mut clients = Vec::new();
    for (i, u) in names.iter().enumerate() {
        let drop_at = (i % 3 == 0).then(|| {
            let ms = rand::rng().random_range(0..publish_window.as_millis() as u64);
            Instant::now() + Duration::from_millis(ms)
        });
        clients.push(tokio::spawn(client(
            u.clone(),
            node_set.clone(),
            http.clone(),
            drop_at,
            stop.clone(),
            seen.clone(),
            opened.clone(),
        )));
    }
    let t = Instant::now();
    while opened.load(Ordering::Relaxed) < users {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "streams did not open"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Publish through random live nodes; a request that fails is retried elsewhere (nothing
    // is accepted twice: each retry is a new request only when the first was not accepted).
    let accepted: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let killed = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let kill_at = total / 2;
    let nodes_ref = &*nodes;
    fcm_faults(&mock.url, false).await;
    let outage = tokio::spawn({
        let (sent, url) = (sent.clone(), mock.url.clone());
        async move {
            while sent.load(Ordering::Relaxed) < total / 2 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            fcm_faults(&url, true).await;
            tokio::time::sleep(OUTAGE).await;
            fcm_faults(&url, false).await;
        }
    });
    futures::stream::iter(0..total)
        .for_each_concurrent(16, |k| {
            let (http, node_set, accepted, names, sent) = (
                http.clone(),
                node_set.clone(),
                accepted.clone(),
                &names,
                sent.clone(),
            );
            let killed = killed.clone();
            async move {
                let user = &names[rand::rng().random_range(0..names.len())];
                let body = json!({"user_id": user, "data": {"k": k.to_string()}});
                loop {
                    let addr = node_set.pick().to_string();
                    let r = http
                        .post(format!("http://{addr}/v1/notify"))
                        .bearer_auth(common::PRODUCER_KEY)
                        .json(&body)
                        .send()
                        .await;
                    if let Ok(r) = r {
                        if r.status() == StatusCode::ACCEPTED {
                            let v: serde_json::Value = r.json().await.unwrap();
                            accepted.lock().push((
                                v["id"].as_str().unwrap().to_string(),
                                v["route"].as_str().unwrap().to_string(),
                            ));
                            break;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                let sent_now = sent.fetch_add(1, Ordering::Relaxed) + 1;
                if let Some(victim) = kill {
                    if sent_now == kill_at && !killed.swap(true, Ordering::Relaxed) {
                        node_set.alive[victim].store(false, Ordering::Relaxed);
                        let pid = nodes_ref[victim].pid();
                        let _ = std::process::Command::new("kill")
                            .args(["-KILL", &pid.to_string()])
                            .status();
                    }
                }
            }
        })
        .await;

    // Settle: every notification reaches a final status within the ack timeout (plus FCM,
    // after its outage).
    let ids: Vec<(String, String)> = accepted.lock().clone();
    assert_eq!(ids.len(), total);
    outage.await.unwrap();
    let observer = &nodes[0];
    let deadline = Instant::now() + Duration::from_millis(ACK_TIMEOUT_MS) + Duration::from_secs(30);
    let mut statuses: HashMap<String, String> = HashMap::new();
    loop {
        let todo: Vec<&(String, String)> = ids
            .iter()
            .filter(|(id, _)| {
                !matches!(
                    statuses.get(id).map(String::as_str),
                    Some("acked" | "fcm_accepted" | "fcm_failed" | "expired")
                )
            })
            .collect();
        if todo.is_empty() || Instant::now() > deadline {
            break;
        }
        let found: Vec<(String, String)> = futures::stream::iter(todo)
            .map(|(id, _)| async move {
                let (_, v) = observer.status(id).await;
                (id.clone(), v["status"].as_str().unwrap_or("?").to_string())
            })
            .buffer_unordered(32)
            .collect()
            .await;
        statuses.extend(found);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = c.await;
    }

    let fcm: Vec<String> = mock
        .messages()
        .await
        .iter()
        .filter_map(|m| m["message"]["data"]["switchboard_id"].as_str())
        .map(str::to_string)
        .collect();
    let fcm_set: HashSet<&String> = fcm.iter().collect();
    let seen = std::mem::take(&mut *seen.lock());
    let sse: HashSet<&String> = seen.values().flat_map(|s| s.received.iter()).collect();
    let mut counts: HashMap<String, usize> = HashMap::new();
    for s in statuses.values() {
        *counts.entry(s.clone()).or_default() += 1;
    }
    let mut routes: HashMap<String, usize> = HashMap::new();
    for (_, r) in &ids {
        *routes.entry(r.clone()).or_default() += 1;
    }
    let mut ack_timeouts = 0.0;
    for (i, n) in nodes.iter().enumerate() {
        if Some(i) != kill {
            ack_timeouts += n.metric("switchboard_ack_timeouts_total").await;
        }
    }
    Report {
        statuses: counts,
        both: ids
            .iter()
            .filter(|(id, _)| sse.contains(id) && fcm_set.contains(id))
            .count(),
        late_acks: observer
            .metric("switchboard_acks_total{result=\"late\"}")
            .await,
        ack_timeouts,
        fcm_duplicates: fcm.len() - fcm_set.len(),
        missing: ids
            .iter()
            .filter(|(id, _)| !sse.contains(id) && !fcm_set.contains(id))
            .count(),
        resets: seen.values().map(|s| s.resets).sum(),
        reconnects: seen.values().map(|s| s.reconnects).sum(),
        routes,
        elapsed: started.elapsed(),
    }
}

fn check(report: &Report, label: &str) {
    let total = size("SOAK_NOTIFICATIONS", 20000);
    eprintln!(
        "soak [{label}] {} users, {total} notifications in {:.1} s: statuses {:?}; routes {:?}; \
         both channels {} (late acks {}); ack timeouts {}; FCM duplicates {}; missing {}; \
         reconnects {}, resets {}",
        size("SOAK_USERS", 1000),
        report.elapsed.as_secs_f64(),
        report.statuses,
        report.routes,
        report.both,
        report.late_acks,
        report.ack_timeouts,
        report.fcm_duplicates,
        report.missing,
        report.reconnects,
        report.resets,
    );
    let finals = report.statuses.get("acked").unwrap_or(&0)
        + report.statuses.get("fcm_accepted").unwrap_or(&0);
    assert_eq!(
        finals, total,
        "not every notification is acked or fcm_accepted"
    );
    assert_eq!(report.missing, 0, "notifications reached nobody");
    assert_eq!(
        report.fcm_duplicates, 0,
        "a notification was sent to FCM twice"
    );
    assert!(
        report.both as f64 <= report.late_acks,
        "{} notifications went through both channels but only {} acks were late",
        report.both,
        report.late_acks
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_single_node() {
    let _one = ONE_AT_A_TIME.lock().await;
    let opts = Options::with_fcm()
        .env(
            "SWITCHBOARD__DELIVERY__ACK_TIMEOUT_MS",
            &ACK_TIMEOUT_MS.to_string(),
        )
        .env("RUST_LOG", "info");
    let opts = PUSH_ENV.iter().fold(opts, |o, (k, v)| o.env(k, v));
    let mut app = TestApp::spawn_with(opts).await;
    let mock = app.mock.take().unwrap();
    let report = soak(std::slice::from_mut(&mut app), &mock, None).await;
    check(&report, "one node, memory broker");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_three_nodes_on_redis_with_one_killed() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut d = deploy_with(
        3,
        "redis://127.0.0.1:6379",
        &[
            (
                "SWITCHBOARD__DELIVERY__ACK_TIMEOUT_MS",
                &ACK_TIMEOUT_MS.to_string(),
            ),
            ("RUST_LOG", "info"),
            PUSH_ENV[0],
            PUSH_ENV[1],
            PUSH_ENV[2],
            PUSH_ENV[3],
        ],
    )
    .await;
    let report = soak(&mut d.nodes, &d.mock, Some(2)).await;
    check(&report, "three nodes on Redis, node 2 SIGKILLed half-way");
}
