//! What the stream workloads share: the servers and users of a run, opening the streams,
//! waiting for deliveries in flight; and the `idle` workload (memory per open stream).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use serde_json::json;

use crate::cli::{parse_shard, Common, IdleArgs};
use crate::net::{Server, Sources};
use crate::procfs::raise_nofile;
use crate::report::{emit, round3, Watch};
use crate::stats::Recorder;
use crate::streams::StreamSet;
use crate::target::Target;

/// Streams one process may hold: the file limit here is 20 000, and publishers need some too.
const MAX_STREAMS_PER_PROCESS: usize = 18_000;

/// The servers, users and source addresses of a run.
pub struct Setup {
    pub common: Common,
    pub target: Target,
    pub stream_server: Server,
    pub pub_server: Server,
    pub sources: Arc<Sources>,
    /// This shard's user indices.
    pub users: Vec<usize>,
}

impl Setup {
    pub async fn new(common: &Common, total_users: usize) -> anyhow::Result<Setup> {
        let (k, n) = parse_shard(&common.shard)?;
        let users: Vec<usize> = (0..total_users).filter(|i| i % n == k).collect();
        let stream_server = Server::parse(&common.url).await?;
        let pub_server = match &common.pub_url {
            Some(u) => Server::parse(u).await?,
            None => stream_server.clone(),
        };
        let target = Target::new(
            common.target,
            &common.user_prefix,
            &common.producer_key,
            &common.jwt_secret,
        );
        Ok(Setup {
            common: common.clone(),
            target,
            stream_server,
            pub_server,
            sources: Arc::new(Sources::parse(&common.source_ips)?),
            users,
        })
    }

    /// Opens a stream per user of this shard (all on `topic` if given) and waits for them.
    pub async fn open_streams(
        &self,
        recorder: Arc<Recorder>,
        topic: Option<&str>,
    ) -> anyhow::Result<(Arc<StreamSet>, f64)> {
        let wanted = self.users.len();
        if wanted > MAX_STREAMS_PER_PROCESS {
            bail!("{wanted} streams in one process: over {MAX_STREAMS_PER_PROCESS}; use --shard K/N and several processes");
        }
        let limit = raise_nofile();
        if (wanted as u64) + 100 > limit {
            bail!("{wanted} streams need more open files than the limit ({limit})");
        }
        let set = StreamSet::new(
            self.stream_server.clone(),
            self.sources.clone(),
            self.common.connect_concurrency,
            recorder,
        );
        let started = std::time::Instant::now();
        for (pos, &user) in self.users.iter().enumerate() {
            let head = self.target.stream_request(set.host(), user, topic);
            set.spawn(pos, head);
        }
        let all = set
            .wait_open(
                wanted as u64,
                Duration::from_secs_f64(self.common.open_timeout_secs),
            )
            .await;
        let secs = started.elapsed().as_secs_f64();
        let open = set.established.load(Ordering::Relaxed);
        set.set_open_overflows();
        eprintln!(
            "streams: {open}/{wanted} open in {secs:.1}s{}",
            if all { "" } else { " (timed out waiting)" }
        );
        Ok((set, secs))
    }

    pub async fn settle(&self) {
        tokio::time::sleep(Duration::from_secs_f64(self.common.settle_secs)).await;
    }
}

/// Waits until `delivered` reaches `expected`, or for `max_secs`; returns the seconds waited.
pub async fn drain(recorder: &Recorder, expected: u64, max_secs: f64) -> f64 {
    let started = std::time::Instant::now();
    while recorder.delivered.load(Ordering::Relaxed) < expected
        && started.elapsed().as_secs_f64() < max_secs
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    round3(started.elapsed().as_secs_f64())
}

/// The streams' own account: how many opened, failed, closed under us.
pub fn streams_json(set: &StreamSet, requested: usize, open_secs: f64) -> serde_json::Value {
    let failed = set.failed.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let control = set
        .recorder
        .control_events
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    json!({
        "requested": requested,
        "open": set.established.load(Ordering::Relaxed),
        "failed": failed,
        "closed_during_run": set.closed.load(Ordering::Relaxed),
        "connect_retries": set.connect_retries.load(Ordering::Relaxed),
        "open_secs": round3(open_secs),
        "listen_overflows_while_opening": set.open_overflows(),
        "heartbeat_comments": set.comments.load(Ordering::Relaxed),
        "unstamped_events": set.recorder.unstamped.load(Ordering::Relaxed),
        "control_events": control,
    })
}

pub async fn idle(args: IdleArgs) -> anyhow::Result<()> {
    let setup = Setup::new(&args.common, args.streams).await?;
    let mut watch = Watch::new(args.common.server_pid.clone());
    let before = watch.mark("before");
    let recorder = Arc::new(Recorder::new(None));
    let (set, open_secs) = setup.open_streams(recorder, None).await?;
    watch.mark("open");
    tokio::time::sleep(Duration::from_secs_f64(args.hold_secs)).await;
    let after = watch.mark("after_hold");
    let open = set.established.load(Ordering::Relaxed);
    let per_stream = |a: u64, b: u64| {
        if open > 0 {
            round3((b as f64 - a as f64) / open as f64)
        } else {
            0.0
        }
    };
    let (rss_before, rss_after, pss_before, pss_after) = match (before, after) {
        (Some(b), Some(a)) => (b.rss_kib, a.rss_kib, b.pss_kib, a.pss_kib),
        _ => (0, 0, 0, 0),
    };
    let kib_per_stream = per_stream(rss_before, rss_after);
    let hold_cpu = watch.cpu_between("open", "after_hold").map(|c| round3(c.0));
    let report = json!({
        "mode": "idle",
        "target": setup.target.kind,
        "streams_open": open,
        "streams": streams_json(&set, args.streams, open_secs),
        "hold_secs": args.hold_secs,
        "rss_before_kib": rss_before,
        "rss_after_kib": rss_after,
        "kib_per_stream": kib_per_stream,
        "pss_before_kib": pss_before,
        "pss_after_kib": pss_after,
        "pss_kib_per_stream": per_stream(pss_before, pss_after),
        "server_cpu_secs_during_hold": hold_cpu,
        "server": watch.json(),
    });
    let summary = format!(
        "idle {:?}: {open} streams; server RSS {rss_before} → {rss_after} KiB = {kib_per_stream} KiB/stream",
        setup.target.kind
    );
    emit(report, &summary);
    Ok(())
}
