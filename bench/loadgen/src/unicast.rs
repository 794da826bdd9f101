//! `unicast`: one stream per user, notifications round-robin over the users (single or batch
//! requests), deliveries and their latency counted at the streams.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::cli::UnicastArgs;
use crate::live::{drain, streams_json, Setup};
use crate::publish::{self, Outgoing, Plan, Workload};
use crate::redis_info;
use crate::report::{emit, rate, round3, Watch};
use crate::stats::{now_us, Answers, Recorder};
use crate::target::{Kind, Target};

/// Where accepted notifications went, as the server answered.
#[derive(Default)]
pub struct Routes {
    pub sse: AtomicU64,
    pub fcm: AtomicU64,
    pub none: AtomicU64,
    /// Batch items answered with an error inside a 202.
    pub item_errors: AtomicU64,
}

impl Routes {
    /// Reads a Switchboard answer (`"route":"…"`, once per item) or an Nchan publisher answer
    /// (`active subscribers: N`).
    pub fn count(&self, kind: Kind, items: u64, body: &[u8]) {
        let n = |needle: &[u8]| memchr::memmem::find_iter(body, needle).count() as u64;
        match kind {
            Kind::Switchboard => {
                self.sse
                    .fetch_add(n(br#""route":"sse""#), Ordering::Relaxed);
                self.fcm
                    .fetch_add(n(br#""route":"fcm""#), Ordering::Relaxed);
                self.none
                    .fetch_add(n(br#""route":"none""#), Ordering::Relaxed);
                self.item_errors
                    .fetch_add(n(br#""error""#), Ordering::Relaxed);
            }
            Kind::Nchan => {
                let subscribers =
                    memchr::memmem::find(body, b"active subscribers: ").and_then(|at| {
                        let rest = &body[at + 20..];
                        let end = rest.iter().position(|b| !b.is_ascii_digit())?;
                        std::str::from_utf8(&rest[..end]).ok()?.parse::<u64>().ok()
                    });
                match subscribers {
                    Some(0) => self.none.fetch_add(items, Ordering::Relaxed),
                    _ => self.sse.fetch_add(items, Ordering::Relaxed),
                };
            }
        }
    }

    pub fn accepted(&self) -> u64 {
        self.sse.load(Ordering::Relaxed)
            + self.fcm.load(Ordering::Relaxed)
            + self.none.load(Ordering::Relaxed)
    }

    pub fn json(&self) -> serde_json::Value {
        json!({
            "sse": self.sse.load(Ordering::Relaxed),
            "fcm": self.fcm.load(Ordering::Relaxed),
            "none": self.none.load(Ordering::Relaxed),
            "item_errors": self.item_errors.load(Ordering::Relaxed),
        })
    }
}

/// Notifications to the users in turn, `batch` per request.
pub struct UnicastLoad {
    pub target: Target,
    pub users: Vec<usize>,
    pub batch: usize,
    pub next: AtomicU64,
    pub routes: Routes,
}

impl Workload for UnicastLoad {
    fn next(&self, host: &str) -> Option<Outgoing> {
        let n = self.users.len() as u64;
        let k = self.next.fetch_add(self.batch as u64, Ordering::Relaxed);
        let ts = now_us();
        let request = if self.batch <= 1 {
            self.target.unicast(host, self.users[(k % n) as usize], ts)
        } else {
            let users = (0..self.batch as u64).map(|j| self.users[((k + j) % n) as usize]);
            self.target.batch(host, users, ts)
        };
        Some(Outgoing {
            request,
            items: self.batch.max(1) as u64,
        })
    }

    fn answered(&self, items: u64, status: u16, body: &[u8]) {
        if (200..300).contains(&status) {
            self.routes.count(self.target.kind, items, body);
        }
    }
}

pub async fn unicast(args: UnicastArgs) -> anyhow::Result<()> {
    if args.batch > 1 && args.common.target == Kind::Nchan {
        anyhow::bail!("Nchan has no batch publish: --batch is for --target switchboard");
    }
    let setup = Setup::new(&args.common, args.streams).await?;
    let mut watch = Watch::new(args.common.server_pid.clone());
    watch.mark("start");
    let recorder = Arc::new(Recorder::new(None));
    let (set, open_secs) = setup.open_streams(recorder.clone(), None).await?;
    watch.mark("streams_open");
    setup.settle().await;
    let plan = Plan {
        connections: args.common.connections,
        rate: args.rate.map(|r| r / args.batch.max(1) as f64),
        window: Some(Duration::from_secs_f64(args.duration)),
        connect_concurrency: args.common.connect_concurrency,
    };
    let senders = publish::open_all(&setup.pub_server, &setup.sources, &plan).await?;
    let load = Arc::new(UnicastLoad {
        target: setup.target.clone(),
        users: setup.users.clone(),
        batch: args.batch.max(1),
        next: AtomicU64::new(0),
        routes: Routes::default(),
    });
    let answers = Arc::new(Answers::default());
    let redis_before = match &args.common.redis_addr {
        Some(a) => Some(redis_info::snapshot(a).await?),
        None => None,
    };
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
    watch.mark("window_end");
    let expected = load.routes.sse.load(Ordering::Relaxed);
    let drained = drain(&recorder, expected, args.common.drain_secs).await;
    watch.mark("drained");
    let redis = match (&args.common.redis_addr, redis_before) {
        (Some(a), Some(before)) => {
            let after = redis_info::snapshot(a).await?;
            redis_info::delta(&before, &after, load.routes.accepted())
        }
        _ => serde_json::Value::Null,
    };

    let window = ran.last_send.duration_since(ran.started).as_secs_f64();
    let delivered = recorder.delivered.load(Ordering::Relaxed);
    let accepted = load.routes.accepted();
    let ratio = |a: u64, b: u64| {
        if b > 0 {
            round3(a as f64 / b as f64)
        } else {
            0.0
        }
    };
    let latency = recorder.latency();
    let cpu = watch.cpu_between("window_start", "window_end");
    let report = json!({
        "mode": "unicast",
        "target": setup.target.kind,
        "streams": streams_json(&set, args.streams, open_secs),
        "batch": args.batch,
        "rate_target": args.rate,
        "connections": args.common.connections,
        "window_secs": round3(window),
        "sent": accepted,
        "sends_per_sec": rate(accepted, window),
        "routes": load.routes.json(),
        "requests": answers.report(),
        "http_errors": answers.errors() + load.routes.item_errors.load(Ordering::Relaxed),
        "delivered": delivered,
        "delivered_ratio": ratio(delivered, accepted),
        "delivered_ratio_of_sse_routed": ratio(delivered, expected),
        "deliveries_per_sec": rate(delivered, window),
        "drain_secs": drained,
        "latency_us": latency,
        "server_cpu_secs_window": cpu.map(|c| round3(c.0)),
        "server_cpu_secs_per_min": cpu.map(|c| round3(c.1)),
        "server": watch.json(),
        "redis": redis,
    });
    let summary = format!(
        "unicast {:?} batch={}: sent {accepted} in {window:.1}s, delivered {delivered} ({:.1}%), \
         {:.0} deliveries/s, latency p50 {} µs p99 {} µs max {} µs, errors {}",
        setup.target.kind,
        args.batch,
        ratio(delivered, accepted) * 100.0,
        rate(delivered, window),
        latency.p50,
        latency.p99,
        latency.max,
        answers.errors(),
    );
    emit(report, &summary);
    Ok(())
}
