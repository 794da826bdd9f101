//! `poll`: the old way — N clients each GETting a path every few seconds on keep-alive
//! connections, spread evenly over the interval — to weigh against pushing the same changes.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use serde_json::json;

use crate::cli::PollArgs;
use crate::live::Setup;
use crate::procfs::raise_nofile;
use crate::publish::{self, request, Outgoing, Plan, Workload};
use crate::report::{emit, rate, round3, Watch};
use crate::stats::{Answers, Percentiles};

struct PollLoad {
    path: String,
}

impl Workload for PollLoad {
    fn next(&self, host: &str) -> Option<Outgoing> {
        Some(Outgoing {
            request: request(Method::GET, host, &self.path, None, None),
            items: 1,
        })
    }

    fn answered(&self, _items: u64, _status: u16, _body: &[u8]) {}
}

pub async fn poll(args: PollArgs) -> anyhow::Result<()> {
    let limit = raise_nofile();
    if args.clients as u64 + 100 > limit {
        anyhow::bail!(
            "{} clients need more open files than the limit ({limit}); use --shard",
            args.clients
        );
    }
    let setup = Setup::new(&args.common, args.clients).await?;
    let clients = setup.users.len();
    let mut watch = Watch::new(args.common.server_pid.clone());
    watch.mark("start");
    let plan = Plan {
        connections: clients,
        rate: Some(clients as f64 / args.interval_secs),
        window: Some(Duration::from_secs_f64(args.duration)),
        connect_concurrency: args.common.connect_concurrency,
    };
    let opened = std::time::Instant::now();
    let senders = publish::open_all(&setup.pub_server, &setup.sources, &plan).await?;
    eprintln!(
        "poll: {clients} connections open in {:.1}s",
        opened.elapsed().as_secs_f64()
    );
    setup.settle().await;
    let answers = Arc::new(Answers::default());
    let load = Arc::new(PollLoad {
        path: args.url_path.clone(),
    });
    watch.mark("window_start");
    let ran = publish::run(
        senders,
        &setup.pub_server,
        &setup.sources,
        &plan,
        load,
        answers.clone(),
    )
    .await;
    watch.mark("window_end");
    let window = ran.last_send.duration_since(ran.started).as_secs_f64();
    let ok = answers.ok.load(Ordering::Relaxed);
    let cpu = watch.cpu_between("window_start", "window_end");
    let latency = answers
        .latency
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .map(Percentiles::of)
        .unwrap_or_default();
    let report = json!({
        "mode": "poll",
        "target": setup.target.kind,
        "clients": clients,
        "interval_secs": args.interval_secs,
        "url_path": args.url_path,
        "window_secs": round3(window),
        "requests_ok": ok,
        "requests_per_sec": rate(ok, window),
        "errors": answers.errors(),
        "requests": answers.report(),
        "latency_us": latency,
        "server_cpu_secs_window": cpu.map(|c| round3(c.0)),
        "server_cpu_secs_per_min": cpu.map(|c| round3(c.1)),
        "server": watch.json(),
    });
    let summary = format!(
        "poll: {clients} clients every {}s: {ok} requests in {window:.1}s = {:.0}/s, errors {}, \
         p99 {} µs; server CPU {:?} s/min",
        args.interval_secs,
        rate(ok, window),
        answers.errors(),
        latency.p99,
        cpu.map(|c| round3(c.1)),
    );
    emit(report, &summary);
    Ok(())
}
