//! `fcm`: Switchboard with FCM pointed at fcm-mock (or, `--provider apns`, APNs at apns-mock;
//! `--provider webpush`, Web Push at webpush-mock). Every user registers one device and holds
//! no stream, so each notify goes the push way; the send rate is what the mock accepts
//! (webpush-mock decrypts every message first), and the router's memory is sampled to show it
//! stays flat.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::Method;
use http_body_util::BodyExt as _;
use serde_json::json;

use crate::cli::{parse_rate, FcmArgs, PushProvider};
use crate::live::Setup;
use crate::net::{Server, Sources};
use crate::procfs::ServerProcs;
use crate::publish::{self, once, Outgoing, Plan, Workload};
use crate::report::{emit, rate, round3, Watch};
use crate::stats::Answers;
use crate::target::{Kind, Target};
use crate::unicast::{Routes, UnicastLoad};

/// `PUT /v1/devices/d-<i>` once per user.
pub struct RegisterLoad {
    pub target: Target,
    /// Register APNs tokens instead of FCM ones.
    pub apns: bool,
    pub users: Vec<usize>,
    /// Web Push: the registration body of each user (same order as `users`).
    pub subscriptions: Option<Vec<String>>,
    pub next: AtomicUsize,
}

impl Workload for RegisterLoad {
    fn next(&self, host: &str) -> Option<Outgoing> {
        let k = self.next.fetch_add(1, Ordering::Relaxed);
        let user = *self.users.get(k)?;
        let request = match &self.subscriptions {
            Some(bodies) => self
                .target
                .register_device_as(host, user, bodies[k].clone()),
            None => self.target.register_device(host, user, self.apns),
        };
        Some(Outgoing { request, items: 1 })
    }

    fn answered(&self, _items: u64, _status: u16, _body: &[u8]) {}
}

/// `n` subscriptions created at webpush-mock, each as a device registration body.
async fn subscriptions(mock: &Server, n: usize) -> anyhow::Result<Vec<String>> {
    let mut sender = publish::handshake(mock, &Sources::parse("")?).await?;
    let mut bodies = Vec::with_capacity(n);
    for _ in 0..n {
        sender.ready().await?;
        let resp = sender
            .send_request(publish::request(
                Method::POST,
                &mock.host,
                "/_mock/subscriptions",
                None,
                None,
            ))
            .await?;
        if resp.status() != 201 {
            anyhow::bail!(
                "webpush-mock /_mock/subscriptions answered {}",
                resp.status()
            );
        }
        let sub = resp.into_body().collect().await?.to_bytes();
        let sub: serde_json::Value = serde_json::from_slice(&sub)?;
        bodies.push(json!({"provider": "webpush", "subscription": sub}).to_string());
    }
    Ok(bodies)
}

/// Where accepted sends are counted: the mock's stats (fcm-mock and webpush-mock both keep an
/// `accepted` counter), or (apns-mock speaks only HTTP/2) the router's own count of APNs 200
/// answers.
#[derive(Clone)]
enum Counter {
    Mock(Server),
    RouterApnsOk(Server),
}

const APNS_OK: &str = "switchboard_apns_requests_total{result=\"ok\"} ";

async fn count(counter: &Counter) -> anyhow::Result<u64> {
    match counter {
        Counter::Mock(mock) => accepted(mock).await,
        Counter::RouterApnsOk(router) => {
            let (status, body) = once(router, Method::GET, "/metrics").await?;
            if status != 200 {
                anyhow::bail!("router /metrics answered {status}");
            }
            let text = String::from_utf8_lossy(&body);
            let line = text
                .lines()
                .find_map(|l| l.strip_prefix(APNS_OK))
                .ok_or_else(|| anyhow::anyhow!("router metrics without {APNS_OK}"))?;
            Ok(line.trim().parse::<f64>()? as u64)
        }
    }
}

/// The mock's `accepted` counter (fcm-mock and webpush-mock both keep one).
pub async fn accepted(mock: &Server) -> anyhow::Result<u64> {
    let (status, body) = once(mock, Method::GET, "/_mock/stats").await?;
    if status != 200 {
        anyhow::bail!("fcm-mock /_mock/stats answered {status}");
    }
    let v: serde_json::Value = serde_json::from_slice(&body)?;
    v["accepted"]
        .as_u64()
        .ok_or_else(|| anyhow::anyhow!("the mock's stats without accepted: {v}"))
}

/// One sample per second: (seconds since the window started, mock accepted, server RSS KiB).
type Samples = Arc<Mutex<Vec<(f64, u64, u64)>>>;

fn sample_every_second(counter: Counter, procs: ServerProcs, stop: Arc<AtomicBool>) -> Samples {
    let samples: Samples = Arc::default();
    let out = samples.clone();
    tokio::spawn(async move {
        let start = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let acc = count(&counter).await.unwrap_or(0);
            let rss = procs.read().map(|u| u.rss_kib).unwrap_or(0);
            out.lock().unwrap_or_else(|e| e.into_inner()).push((
                round3(start.elapsed().as_secs_f64()),
                acc,
                rss,
            ));
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    samples
}

pub async fn fcm(args: FcmArgs) -> anyhow::Result<()> {
    if args.common.target != Kind::Switchboard {
        anyhow::bail!("the fcm workload is Switchboard's (Nchan has no FCM)");
    }
    let notify_rate = parse_rate(&args.rate)?;
    let setup = Setup::new(&args.common, args.users).await?;
    let apns = args.provider == PushProvider::Apns;
    let mock = Server::parse(&args.mock_url).await?;
    let counter = if apns {
        Counter::RouterApnsOk(setup.pub_server.clone())
    } else {
        Counter::Mock(mock.clone())
    };
    let mut watch = Watch::new(args.common.server_pid.clone());
    watch.mark("start");

    let reg_plan = Plan {
        connections: args.common.connections,
        rate: None,
        window: None,
        connect_concurrency: args.common.connect_concurrency,
    };
    let subscriptions = if args.provider == PushProvider::Webpush {
        let started = Instant::now();
        let bodies = subscriptions(&mock, setup.users.len()).await?;
        eprintln!(
            "webpush: {} subscriptions created at the mock in {:.1}s",
            bodies.len(),
            started.elapsed().as_secs_f64()
        );
        Some(bodies)
    } else {
        None
    };
    let reg = Arc::new(RegisterLoad {
        target: setup.target.clone(),
        apns,
        users: setup.users.clone(),
        subscriptions,
        next: AtomicUsize::new(0),
    });
    let reg_answers = Arc::new(Answers::default());
    let senders = publish::open_all(&setup.pub_server, &setup.sources, &reg_plan).await?;
    let reg_ran = publish::run(
        senders,
        &setup.pub_server,
        &setup.sources,
        &reg_plan,
        reg,
        reg_answers.clone(),
    )
    .await;
    let reg_secs = reg_ran
        .finished
        .duration_since(reg_ran.started)
        .as_secs_f64();
    eprintln!(
        "fcm: {} devices registered in {reg_secs:.1}s ({} errors)",
        reg_answers.ok.load(Ordering::Relaxed),
        reg_answers.errors()
    );

    if !apns {
        once(&mock, Method::DELETE, "/_mock/messages").await?;
    }
    setup.settle().await;
    let plan = Plan {
        connections: args.common.connections,
        rate: notify_rate,
        window: Some(Duration::from_secs_f64(args.duration)),
        connect_concurrency: args.common.connect_concurrency,
    };
    let senders = publish::open_all(&setup.pub_server, &setup.sources, &plan).await?;
    let load = Arc::new(UnicastLoad {
        target: setup.target.clone(),
        users: setup.users.clone(),
        batch: 1,
        next: AtomicU64::new(0),
        routes: Routes::default(),
    });
    let answers = Arc::new(Answers::default());
    let stop = Arc::new(AtomicBool::new(false));
    let samples = sample_every_second(
        counter.clone(),
        ServerProcs::new(args.common.server_pid.clone()),
        stop.clone(),
    );
    let acc0 = count(&counter).await?;
    watch.mark("window_start");
    let ran = publish::run(
        senders,
        &setup.pub_server,
        &setup.sources,
        &plan,
        load.clone(),
        answers.clone(),
    )
    .await;
    let acc1 = count(&counter).await?;
    watch.mark("window_end");
    let window = ran.last_send.duration_since(ran.started).as_secs_f64();

    // The FCM queue may still hold notifications: wait until the mock stops counting.
    let fcm_routed = load.routes.fcm.load(Ordering::Relaxed);
    let (mut last, mut last_change) = (acc1, Instant::now());
    let drain_start = Instant::now();
    while last - acc0 < fcm_routed && drain_start.elapsed().as_secs_f64() < args.fcm_drain_secs {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = count(&counter).await?;
        if now != last {
            (last, last_change) = (now, Instant::now());
        } else if last_change.elapsed() > Duration::from_secs(5) {
            break;
        }
    }
    watch.mark("drained");
    stop.store(true, Ordering::Relaxed);
    let total = last - acc0;
    let all_secs = last_change
        .max(ran.last_send.into_std())
        .duration_since(ran.started.into_std())
        .as_secs_f64();
    let samples = samples.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let rss_max = samples.iter().map(|s| s.2).max().unwrap_or(0);
    let rss = |m: &str| watch.get(m).map(|(u, _)| u.rss_kib);
    let cpu = watch.cpu_between("window_start", "window_end");
    let report = json!({
        "mode": if args.provider == PushProvider::Webpush { "webpush" } else { "fcm" },
        "provider": args.provider,
        "target": setup.target.kind,
        "users": args.users,
        "devices_registered": reg_answers.ok.load(Ordering::Relaxed),
        "register_secs": round3(reg_secs),
        "register_errors": reg_answers.errors(),
        "rate_target": notify_rate,
        "window_secs": round3(window),
        "notifications_accepted": load.routes.accepted(),
        "routes": load.routes.json(),
        "requests": answers.report(),
        "http_errors": answers.errors(),
        "fcm_accepted_in_window": acc1 - acc0,
        "fcm_sends_per_sec": rate(acc1 - acc0, window),
        "fcm_accepted_total": total,
        "fcm_sends_per_sec_incl_drain": rate(total, all_secs),
        "drain_secs": round3(drain_start.elapsed().as_secs_f64()),
        "rss_kib": {
            "start": rss("start"), "window_start": rss("window_start"),
            "window_end": rss("window_end"), "drained": rss("drained"), "max_sampled": rss_max,
        },
        "samples": samples.iter().map(|s| json!({"t": s.0, "accepted": s.1, "rss_kib": s.2})).collect::<Vec<_>>(),
        "server_cpu_secs_window": cpu.map(|c| round3(c.0)),
        "server_cpu_secs_per_min": cpu.map(|c| round3(c.1)),
        "server": watch.json(),
    });
    let summary = format!(
        "{}: {} notifies accepted ({} push) in {window:.1}s; the mock accepted {} in window = {:.0}/s, \
         {total} in all ({:.0}/s); RSS {:?} → {:?} KiB (max {rss_max}); errors {}",
        if args.provider == PushProvider::Webpush { "webpush" } else { "fcm" },
        load.routes.accepted(),
        fcm_routed,
        acc1 - acc0,
        rate(acc1 - acc0, window),
        rate(total, all_secs),
        rss("window_start"),
        rss("drained"),
        answers.errors(),
    );
    emit(report, &summary);
    Ok(())
}
