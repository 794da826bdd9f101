//! `noisy`: one producer key (the load generator's `--producer-key`) sends at a fixed rate under
//! its limit to users with streams; in alternate phases a second key (`--noisy-key`) sends as
//! fast as the server answers (or at `--noisy-rate`), far over its limit, to other users. The first producer's
//! delivery and request latency with the noisy one beside it are compared to the same run
//! without it, and the noisy one's answers are counted (429 with `Retry-After`).

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::cli::{parse_rate, NoisyArgs};
use crate::live::{streams_json, Setup};
use crate::phase;
use crate::procfs::ServerProcs;
use crate::publish::{self, Plan};
use crate::report::{emit, rate, round3, Watch};
use crate::stats::{Answers, Recorder};
use crate::target::Target;
use crate::unicast::{Routes, UnicastLoad};

pub async fn noisy(args: NoisyArgs) -> anyhow::Result<()> {
    let setup = Setup::new(&args.common, args.streams).await?;
    let mut watch = Watch::new(args.common.server_pid.clone());
    watch.mark("start");
    let recorder = Arc::new(Recorder::new(None));
    let (set, open_secs) = setup.open_streams(recorder.clone(), None).await?;
    watch.mark("streams_open");
    setup.settle().await;
    let noisy_target = Target::new(
        setup.target.kind,
        &args.noisy_user_prefix,
        &args.noisy_key,
        &args.common.jwt_secret,
    );
    let total = (args.rate * args.duration).round() as u64;
    let procs = ServerProcs::new(args.common.server_pid.clone());
    let mut phases = Vec::new();
    let mut summary = Vec::new();
    for round in 0..args.rounds.max(1) {
        for noisy in [false, true] {
            let name = if noisy { "noisy" } else { "normal" };
            let usage_before = procs.read();
            let t0 = std::time::Instant::now();
            let calm = phase::publish(
                &setup.target,
                &setup.pub_server,
                &setup.sources,
                &setup.users,
                total,
                Some(args.rate),
                args.common.connections,
                &recorder,
                args.common.drain_secs,
            );
            let (calm, loud) = if noisy {
                let plan = Plan {
                    connections: args.noisy_connections,
                    rate: parse_rate(&args.noisy_rate)?,
                    window: Some(Duration::from_secs_f64(args.duration)),
                    connect_concurrency: 64,
                };
                let senders = publish::open_all(&setup.pub_server, &setup.sources, &plan).await?;
                let load = Arc::new(UnicastLoad {
                    target: noisy_target.clone(),
                    users: (0..args.streams).collect(),
                    batch: 1,
                    next: AtomicU64::new(0),
                    routes: Routes::default(),
                });
                let answers = Arc::new(Answers::default());
                let loud = publish::run(
                    senders,
                    &setup.pub_server,
                    &setup.sources,
                    &plan,
                    load.clone(),
                    answers.clone(),
                );
                let (calm, ran) = tokio::join!(calm, loud);
                let window = ran.last_send.duration_since(ran.started).as_secs_f64();
                let requests = answers.report();
                let sent = requests["ok"].as_u64().unwrap_or(0) + answers.errors();
                (
                    calm?,
                    json!({
                        "window_secs": round3(window),
                        "requests_per_sec": rate(sent, window),
                        "accepted_per_sec": rate(load.routes.accepted(), window),
                        "requests": requests,
                    }),
                )
            } else {
                (calm.await?, serde_json::Value::Null)
            };
            let wall = t0.elapsed().as_secs_f64();
            let cores = match (usage_before, procs.read()) {
                (Some(b), Some(a)) => Some(round3((a.cpu_secs - b.cpu_secs) / wall.max(1e-3))),
                _ => None,
            };
            let requests = &calm.requests;
            summary.push(format!(
                "{name}: delivered {}/{}, p99 {} µs, request p99 {} µs{}",
                calm.delivered,
                calm.sse_routed,
                calm.latency.p99,
                requests["latency_us"]["p99"],
                if noisy {
                    format!(
                        "; noisy key {} req/s, {} × 429",
                        loud["requests_per_sec"], loud["requests"]["by_status"]["429"]
                    )
                } else {
                    String::new()
                }
            ));
            eprintln!("noisy {}", summary.last().map(String::as_str).unwrap_or(""));
            phases.push(json!({
                "round": round,
                "phase": name,
                "producer": calm.json(),
                "noisy_producer": loud,
                "server_cores_busy": cores,
            }));
        }
    }
    watch.mark("end");
    let report = json!({
        "mode": "noisy",
        "target": setup.target.kind,
        "streams": streams_json(&set, args.streams, open_secs),
        "rate": args.rate,
        "duration": args.duration,
        "noisy_connections": args.noisy_connections,
        "noisy_rate": args.noisy_rate,
        "phases": phases,
        "server": watch.json(),
    });
    emit(
        report,
        &format!("noisy {:?}: {}", setup.target.kind, summary.join("; ")),
    );
    Ok(())
}
