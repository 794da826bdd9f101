//! `flood`: anonymous connections that send nothing, one byte (`G`), or only the HTTP/2 client
//! preface — a third each — held open (reopened at once when the server closes one) while real
//! streams get notifications at a fixed rate. Phases alternate without and with the flood, so
//! the delivery latency with it is compared to the same run without it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use crate::cli::FloodArgs;
use crate::live::{streams_json, Setup};
use crate::net::{connect, Server, Sources};
use crate::phase;
use crate::procfs::ServerProcs;
use crate::report::{emit, round3, Watch};
use crate::stats::Recorder;

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What a flood connection sends before it goes quiet.
#[derive(Clone, Copy)]
enum Opening {
    Nothing,
    OneByte,
    H2Preface,
}

impl Opening {
    fn of(i: usize) -> Opening {
        match i % 3 {
            0 => Opening::Nothing,
            1 => Opening::OneByte,
            _ => Opening::H2Preface,
        }
    }

    fn bytes(self) -> &'static [u8] {
        match self {
            Opening::Nothing => b"",
            Opening::OneByte => b"G",
            Opening::H2Preface => H2_PREFACE,
        }
    }
}

/// The flood's own account.
#[derive(Default)]
struct FloodCounts {
    held: AtomicI64,
    opened: AtomicU64,
    connect_errors: AtomicU64,
    /// Closed by the server, by what it had said first (`503`, `h2 frames`, `nothing`).
    closed_by_server: Mutex<BTreeMap<&'static str, u64>>,
}

impl FloodCounts {
    fn closed(&self, how: &'static str) {
        *self
            .closed_by_server
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(how)
            .or_default() += 1;
    }
}

/// One flood connection, reopened after `reconnect` each time the server closes it, until `stop`.
async fn flood_one(
    i: usize,
    server: Server,
    sources: Arc<Sources>,
    counts: Arc<FloodCounts>,
    reconnect: Duration,
    first_at: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let opening = Opening::of(i);
    tokio::time::sleep(first_at).await;
    while !*stop.borrow() {
        let mut tcp = match connect(server.addr, sources.next()).await {
            Ok(t) => t,
            Err(_) => {
                counts.connect_errors.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(reconnect.max(Duration::from_millis(100))).await;
                continue;
            }
        };
        counts.opened.fetch_add(1, Ordering::Relaxed);
        counts.held.fetch_add(1, Ordering::Relaxed);
        let _ = tcp.write_all(opening.bytes()).await;
        let mut first: Option<&'static str> = None;
        let mut buf = [0u8; 512];
        let ended_by_server = loop {
            tokio::select! {
                r = tcp.read(&mut buf) => match r {
                    Ok(0) | Err(_) => break true,
                    Ok(n) => {
                        first.get_or_insert(if buf[..n].starts_with(b"HTTP/1.1 503") {
                            "answered 503"
                        } else if buf[..n].starts_with(b"HTTP/") {
                            "answered other HTTP/1.1"
                        } else {
                            "sent HTTP/2 frames"
                        });
                    }
                },
                _ = stop.changed() => break false,
            }
        };
        counts.held.fetch_sub(1, Ordering::Relaxed);
        if !ended_by_server {
            return;
        }
        counts.closed(first.unwrap_or("closed without a word"));
        tokio::time::sleep(reconnect).await;
    }
}

/// Samples of the flood and the server while a phase runs.
#[derive(Default)]
struct Samples {
    held_min: i64,
    held_sum: i64,
    n: i64,
    rss_max_kib: u64,
}

async fn sample(
    counts: Option<Arc<FloodCounts>>,
    procs: ServerProcs,
    mut done: watch::Receiver<bool>,
) -> Samples {
    let mut s = Samples {
        held_min: i64::MAX,
        ..Samples::default()
    };
    loop {
        if let Some(c) = &counts {
            let held = c.held.load(Ordering::Relaxed);
            s.held_min = s.held_min.min(held);
            s.held_sum += held;
        }
        s.n += 1;
        if let Some(u) = procs.read() {
            s.rss_max_kib = s.rss_max_kib.max(u.rss_kib);
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = done.changed() => break,
        }
    }
    if counts.is_none() {
        s.held_min = 0;
    }
    s
}

pub async fn flood(args: FloodArgs) -> anyhow::Result<()> {
    let setup = Setup::new(&args.common, args.streams).await?;
    let flood_sources = Arc::new(Sources::parse(&args.flood_source_ips)?);
    let mut watch = Watch::new(args.common.server_pid.clone());
    watch.mark("start");
    let recorder = Arc::new(Recorder::new(None));
    let (set, open_secs) = setup.open_streams(recorder.clone(), None).await?;
    watch.mark("streams_open");
    setup.settle().await;
    let procs = ServerProcs::new(args.common.server_pid.clone());
    let mut phases = Vec::new();
    let mut summary = Vec::new();
    for round in 0..args.rounds.max(1) {
        for flooded in [false, true] {
            let name = if flooded { "flood" } else { "quiet" };
            let (stop_tx, stop_rx) = watch::channel(false);
            let counts = Arc::new(FloodCounts::default());
            let mut flood_tasks = Vec::new();
            let mut held_at_start = 0;
            if flooded {
                for i in 0..args.flood {
                    flood_tasks.push(tokio::spawn(flood_one(
                        i,
                        setup.stream_server.clone(),
                        flood_sources.clone(),
                        counts.clone(),
                        Duration::from_millis(args.flood_reconnect_ms),
                        // The first connects spread evenly over the ramp.
                        Duration::from_secs_f64(
                            args.flood_ramp_secs * i as f64 / args.flood as f64,
                        ),
                        stop_rx.clone(),
                    )));
                }
                // Until the flood is in place (or as much of it as the server takes).
                let since = Instant::now();
                while counts.opened.load(Ordering::Relaxed) < args.flood as u64
                    && since.elapsed() < Duration::from_secs_f64(30.0 + args.flood_ramp_secs)
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                held_at_start = counts.held.load(Ordering::Relaxed);
                eprintln!("flood: {held_at_start} connections held");
            }
            let (done_tx, done_rx) = watch::channel(false);
            let sampler = tokio::spawn(sample(
                flooded.then(|| counts.clone()),
                procs.clone(),
                done_rx,
            ));
            let before = procs.read();
            let t0 = Instant::now();
            let out = phase::publish(
                &setup.target,
                &setup.pub_server,
                &setup.sources,
                &setup.users,
                args.notifications,
                Some(args.rate),
                args.common.connections,
                &recorder,
                args.common.drain_secs,
            )
            .await?;
            let wall = t0.elapsed().as_secs_f64();
            let after = procs.read();
            let _ = done_tx.send(true);
            let samples = sampler.await.unwrap_or_default();
            let _ = stop_tx.send(true);
            for t in flood_tasks {
                let _ = t.await;
            }
            let cpu = match (before, after) {
                (Some(b), Some(a)) => Some(round3((a.cpu_secs - b.cpu_secs) / wall.max(1e-3))),
                _ => None,
            };
            let closed = counts
                .closed_by_server
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            summary.push(format!(
                "{name}: {}/{} delivered, p99 {} µs",
                out.delivered, out.sse_routed, out.latency.p99
            ));
            phases.push(json!({
                "round": round,
                "phase": name,
                "outcome": out.json(),
                "server_cores_busy": cpu,
                "server_rss_kib_end": after.map(|u| u.rss_kib),
                "server_rss_kib_max": samples.rss_max_kib,
                "flood": if flooded { json!({
                    "connections": args.flood,
                    "held_at_start": held_at_start,
                    "held_min": samples.held_min,
                    "held_mean": if samples.n > 0 { samples.held_sum / samples.n } else { 0 },
                    "opened": counts.opened.load(Ordering::Relaxed),
                    "connect_errors": counts.connect_errors.load(Ordering::Relaxed),
                    "closed_by_server": closed,
                }) } else { serde_json::Value::Null },
            }));
            eprintln!("flood {}", summary.last().map(String::as_str).unwrap_or(""));
        }
    }
    watch.mark("end");
    let report = json!({
        "mode": "flood",
        "target": setup.target.kind,
        "streams": streams_json(&set, args.streams, open_secs),
        "notifications_per_phase": args.notifications,
        "rate": args.rate,
        "flood_reconnect_ms": args.flood_reconnect_ms,
        "flood_ramp_secs": args.flood_ramp_secs,
        "phases": phases,
        "server": watch.json(),
    });
    emit(
        report,
        &format!("flood {:?}: {}", setup.target.kind, summary.join("; ")),
    );
    Ok(())
}
