//! `storm`: a reconnect storm. Every user holds a stream (Switchboard: with acks); notifications
//! are sent and acked; then the load generator asks for the server to be restarted (it creates
//! `--signal-file`; whoever runs it stops the server with SIGTERM, starts it again and writes
//! `<signal-file>.restarted` with `<new pid> <SIGTERM unix µs> <listening again unix µs>`).
//! Every client reconnects as an EventSource does (after the `retry:` it was given, with
//! `Last-Event-ID`); the time until all are back and the new server's CPU are measured; then
//! notifications are sent again, and every notification is looked for: once each, none lost.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::json;

use crate::cli::StormArgs;
use crate::client::{spawn_ackers, AckCounts, Crowd};
use crate::live::Setup;
use crate::phase::{self, PhaseOutcome};
use crate::procfs::{raise_nofile, ServerProcs};
use crate::report::{emit, round3, Watch};
use crate::stats::{histogram, now_us, Percentiles};
use crate::target::Kind;

/// The restart as its runner reported it.
struct Restart {
    pid: u32,
    term_us: u64,
    up_us: u64,
}

async fn wait_for_restart(path: &str, timeout: Duration) -> anyhow::Result<Restart> {
    let done = format!("{path}.restarted");
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(text) = std::fs::read_to_string(&done) {
            let f: Vec<&str> = text.split_whitespace().collect();
            if f.len() == 3 {
                return Ok(Restart {
                    pid: f[0].parse().context("pid in the restart file")?,
                    term_us: f[1].parse().context("SIGTERM time in the restart file")?,
                    up_us: f[2].parse().context("start time in the restart file")?,
                });
            }
        }
        if Instant::now() >= deadline {
            bail!("no {done} within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `done()` or `timeout`; true if done.
async fn until(timeout: Duration, done: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while !done() {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    true
}

/// Waits for the acks of a phase's notifications.
async fn acked(counts: &AckCounts, expected: u64, timeout: Duration) -> bool {
    until(timeout, || {
        counts.ok.load(Ordering::Relaxed) + counts.failed.load(Ordering::Relaxed) >= expected
    })
    .await
}

/// Distribution of `times` (µs) after `from` (µs), in ms.
fn after_ms(times: &[u64], from: u64) -> Percentiles {
    let mut h = histogram();
    for &t in times {
        h.saturating_record(t.saturating_sub(from).max(1));
    }
    let p = Percentiles::of(&h);
    let ms = |v: u64| v / 1000;
    Percentiles {
        count: p.count,
        p50: ms(p.p50),
        p90: ms(p.p90),
        p99: ms(p.p99),
        p999: ms(p.p999),
        max: ms(p.max),
    }
}

pub async fn storm(args: StormArgs) -> anyhow::Result<()> {
    let setup = Setup::new(&args.common, args.streams).await?;
    let limit = raise_nofile();
    if setup.users.len() as u64 + 200 > limit {
        bail!(
            "{} streams need more open files than the limit ({limit})",
            setup.users.len()
        );
    }
    let ack = setup.target.kind == Kind::Switchboard && !args.no_ack;
    let (crowd, acks_rx) = Crowd::new(
        setup.stream_server.clone(),
        setup.sources.clone(),
        setup.target.clone(),
        args.common.connect_concurrency,
        args.default_retry_ms,
        ack,
    );
    let acks = spawn_ackers(
        acks_rx,
        setup.target.clone(),
        setup.stream_server.clone(),
        setup.sources.clone(),
        args.common.connections,
    );
    let mut watch = Watch::new(args.common.server_pid.clone());
    watch.mark("start");
    let n = setup.users.len() as u64;
    let opened_at = Instant::now();
    for (pos, &user) in setup.users.iter().enumerate() {
        crowd.spawn(pos, user);
    }
    let timeout = Duration::from_secs_f64(args.common.open_timeout_secs);
    if !until(timeout, || crowd.first_opens.load(Ordering::Relaxed) >= n).await {
        bail!(
            "only {}/{n} streams opened; refusals {:?}",
            crowd.first_opens.load(Ordering::Relaxed),
            crowd.refusals()
        );
    }
    let open_secs = opened_at.elapsed().as_secs_f64();
    eprintln!("storm: {n} streams open in {open_secs:.1}s");
    watch.mark("streams_open");
    setup.settle().await;

    let total = n * args.per_user;
    let publish = |label: &'static str| {
        let (setup, crowd) = (&setup, &crowd);
        async move {
            let out = phase::publish(
                &setup.target,
                &setup.pub_server,
                &setup.sources,
                &setup.users,
                total,
                None,
                args.common.connections,
                &crowd.recorder,
                args.common.drain_secs,
            )
            .await?;
            eprintln!(
                "storm {label}: {} accepted, {} to streams, {} delivered",
                out.accepted, out.sse_routed, out.delivered
            );
            anyhow::Ok(out)
        }
    };
    let before = publish("before").await?;
    let acked_before = if ack {
        acked(&acks, before.sse_routed, Duration::from_secs(30)).await;
        acks.ok.load(Ordering::Relaxed)
    } else {
        0
    };
    // Every ack is answered: the restart may begin.
    std::fs::write(&args.signal_file, "ready\n")
        .with_context(|| format!("cannot write {}", args.signal_file))?;
    let restart = wait_for_restart(&args.signal_file, Duration::from_secs(120)).await?;
    let back = until(Duration::from_secs_f64(args.reconnect_timeout_secs), || {
        crowd.reopened.load(Ordering::Relaxed) >= n
    })
    .await;
    let all_back_us = now_us();
    let new_server = ServerProcs::new(vec![restart.pid]).read();
    let reopens = crowd.reopen_times();
    let last_back_us = reopens.last().copied().unwrap_or(all_back_us);
    eprintln!(
        "storm: {}/{n} back {:.2}s after SIGTERM",
        reopens.len(),
        last_back_us.saturating_sub(restart.term_us) as f64 / 1e6
    );
    // The new server from its start until everybody was back: CPU seconds and cores busy.
    let storm_secs = last_back_us.saturating_sub(restart.up_us) as f64 / 1e6;
    let (cpu_secs, rss_kib) =
        new_server.map_or((None, None), |u| (Some(u.cpu_secs), Some(u.rss_kib)));
    setup.settle().await;

    let acks_before_after = acks.ok.load(Ordering::Relaxed);
    let after = publish("after").await?;
    if ack {
        acked(
            &acks,
            acks_before_after + after.sse_routed,
            Duration::from_secs(30),
        )
        .await;
    }

    // Every notification routed to a stream, looked for at the streams.
    let look = |out: &PhaseOutcome| {
        let (mut lost, mut twice) = (0u64, 0u64);
        for id in &out.sse_ids {
            match crowd.times_received(id) {
                0 => lost += 1,
                1 => {}
                _ => twice += 1,
            }
        }
        (lost, twice)
    };
    let (lost_before, twice_before) = look(&before);
    let (lost_after, twice_after) = look(&after);
    let control = crowd
        .recorder
        .control_events
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let back_secs = last_back_us.saturating_sub(restart.term_us) as f64 / 1e6;
    let report = json!({
        "mode": "storm",
        "target": setup.target.kind,
        "streams": n,
        "acks": ack,
        "open_secs": round3(open_secs),
        "default_retry_ms": args.default_retry_ms,
        "retry_given_ms": crowd.retry_values(),
        "before": before.json(),
        "after": after.json(),
        "acks_ok": acks.ok.load(Ordering::Relaxed),
        "acks_failed": acks.failed.load(Ordering::Relaxed),
        "acked_before_restart": acked_before,
        "ids_checked": before.sse_ids.len() + after.sse_ids.len(),
        "lost_before": lost_before,
        "lost_after": lost_after,
        "received_twice_before": twice_before,
        "received_twice_after": twice_after,
        "all_back": back,
        "reopened": reopens.len(),
        "back_secs_after_sigterm": round3(back_secs),
        "back_secs_after_listening": round3(storm_secs),
        "first_back_secs_after_sigterm": round3(reopens.first().map_or(0.0, |&t| t.saturating_sub(restart.term_us) as f64 / 1e6)),
        "restart_secs": round3(restart.up_us.saturating_sub(restart.term_us) as f64 / 1e6),
        "first_stream_end_after_sigterm_ms": crowd.first_end_us.load(Ordering::Relaxed).saturating_sub(restart.term_us) / 1000,
        "reopen_ms_after_sigterm": after_ms(&reopens, restart.term_us),
        "refused_attempts": crowd.refusals(),
        "streams_ended": crowd.ended.load(Ordering::Relaxed),
        "control_events": control,
        "new_server_cpu_secs_until_all_back": cpu_secs.map(round3),
        "new_server_cores_busy_until_all_back": cpu_secs.map(|c| round3(c / storm_secs.max(1e-3))),
        "new_server_rss_kib_all_back": rss_kib,
        "server": watch.json(),
    });
    let summary = format!(
        "storm {:?}: {}/{n} back {back_secs:.2}s after SIGTERM ({storm_secs:.2}s after listening), \
         new server CPU {:.2}s; {} + {} notifications to streams, lost {}, twice {}; acks {} ok",
        setup.target.kind,
        reopens.len(),
        cpu_secs.unwrap_or(0.0),
        before.sse_routed,
        after.sse_routed,
        lost_before + lost_after,
        twice_before + twice_after,
        acks.ok.load(Ordering::Relaxed),
    );
    emit(report, &summary);
    Ok(())
}
