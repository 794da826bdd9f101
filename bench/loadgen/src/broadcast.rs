//! `broadcast`: every stream on one topic; each broadcast's deliveries are counted, and the time
//! from its publish to its last subscriber.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::cli::BroadcastArgs;
use crate::live::{drain, streams_json, Setup};
use crate::publish::{self, Outgoing, Plan, Workload};
use crate::report::{emit, rate, round3, Watch};
use crate::stats::{now_us, Answers, BroadcastTracker, Recorder};
use crate::target::Target;

/// Broadcasts tracked one by one; later ones still count as deliveries.
const TRACKED: usize = 1 << 20;

struct BroadcastLoad {
    target: Target,
    topic: String,
    seq: AtomicU64,
    recorder: Arc<Recorder>,
}

impl Workload for BroadcastLoad {
    fn next(&self, host: &str) -> Option<Outgoing> {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let ts = now_us();
        if let Some(t) = &self.recorder.broadcasts {
            t.sent(seq, ts);
        }
        Some(Outgoing {
            request: self.target.broadcast(host, &self.topic, seq, ts),
            items: 1,
        })
    }

    fn answered(&self, _items: u64, _status: u16, _body: &[u8]) {}
}

pub async fn broadcast(args: BroadcastArgs) -> anyhow::Result<()> {
    let setup = Setup::new(&args.common, args.streams).await?;
    let mut watch = Watch::new(args.common.server_pid.clone());
    watch.mark("start");
    let recorder = Arc::new(Recorder::new(Some(BroadcastTracker::new(TRACKED))));
    let (set, open_secs) = setup
        .open_streams(recorder.clone(), Some(&args.topic))
        .await?;
    watch.mark("streams_open");
    setup.settle().await;
    let plan = Plan {
        connections: args.common.connections,
        rate: args.rate,
        window: Some(Duration::from_secs_f64(args.duration)),
        connect_concurrency: args.common.connect_concurrency,
    };
    let senders = publish::open_all(&setup.pub_server, &setup.sources, &plan).await?;
    let load = Arc::new(BroadcastLoad {
        target: setup.target.clone(),
        topic: args.topic.clone(),
        seq: AtomicU64::new(0),
        recorder: recorder.clone(),
    });
    let answers = Arc::new(Answers::default());
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
    let audience = set.established.load(Ordering::Relaxed);
    let sent = answers.ok.load(Ordering::Relaxed);
    let expected = sent * audience;
    let drained = drain(&recorder, expected, args.common.drain_secs).await;
    watch.mark("drained");

    let window = ran.last_send.duration_since(ran.started).as_secs_f64();
    let deliveries = recorder.delivered.load(Ordering::Relaxed);
    let latency = recorder.latency();
    let issued = load.seq.load(Ordering::Relaxed);
    let (to_last, complete, partial) = recorder
        .broadcasts
        .as_ref()
        .map(|t| t.summary(issued, audience))
        .unwrap_or_default();
    let cpu = watch.cpu_between("window_start", "window_end");
    let ratio = if expected > 0 {
        round3(deliveries as f64 / expected as f64)
    } else {
        0.0
    };
    let report = json!({
        "mode": "broadcast",
        "target": setup.target.kind,
        "streams": streams_json(&set, args.streams, open_secs),
        "rate_target": args.rate,
        "connections": args.common.connections,
        "window_secs": round3(window),
        "broadcasts_sent": sent,
        "broadcasts_per_sec": rate(sent, window),
        "requests": answers.report(),
        "http_errors": answers.errors(),
        "deliveries": deliveries,
        "deliveries_expected": expected,
        "delivered_ratio": ratio,
        "deliveries_per_sec": rate(deliveries, window),
        "drain_secs": drained,
        "latency_us": latency,
        "publish_to_last_us": to_last,
        "broadcasts_complete": complete,
        "broadcasts_incomplete": partial,
        "server_cpu_secs_window": cpu.map(|c| round3(c.0)),
        "server_cpu_secs_per_min": cpu.map(|c| round3(c.1)),
        "server": watch.json(),
    });
    let summary = format!(
        "broadcast {:?}: {sent} broadcasts to {audience} streams in {window:.1}s, {deliveries} deliveries \
         ({:.1}%), {:.0}/s, latency p99 {} µs; publish→last p50 {} µs p99 {} µs ({complete} complete)",
        setup.target.kind,
        ratio * 100.0,
        rate(deliveries, window),
        latency.p99,
        to_last.p50,
        to_last.p99,
    );
    emit(report, &summary);
    Ok(())
}
