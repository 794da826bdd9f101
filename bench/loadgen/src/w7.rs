//! `w7`: what polling costs against push. Each user gets one notification a minute, at a
//! random moment of it (a fresh random order of the users every minute). `--how poll`: every
//! user polls its inbox every interval with `If-None-Match`; `--how push`: every user holds a
//! stream; `--how mixed`: `--online` of the users hold a stream and every user has one device,
//! and fcm-mock counts the sends that push-everything would make once per notification;
//! `--how quiet`: no client, the producer's side alone.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;

use crate::cli::{W7Args, W7How};
use crate::fcm::{accepted, RegisterLoad};
use crate::live::{drain, Setup};
use crate::net::Server;
use crate::pollers::{self, PollCounts, Poller};
use crate::publish::{self, once, Outgoing, Plan, Workload};
use crate::report::{emit, rate, round3, Watch};
use crate::stats::{now_us, Answers, Recorder};
use crate::target::Target;
use crate::unicast::Routes;

/// Each user once per round, in a random order per round.
struct MinuteLoad {
    target: Target,
    rounds: Vec<Vec<usize>>,
    next: AtomicU64,
    routes: Routes,
}

impl MinuteLoad {
    fn new(target: Target, users: &[usize], rounds: usize) -> MinuteLoad {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let rounds = (0..rounds)
            .map(|_| {
                let mut order = users.to_vec();
                for i in (1..order.len()).rev() {
                    // xorshift64*: enough randomness for an order.
                    seed ^= seed >> 12;
                    seed ^= seed << 25;
                    seed ^= seed >> 27;
                    let r = seed.wrapping_mul(0x2545_f491_4f6c_dd1d);
                    order.swap(i, (r % (i as u64 + 1)) as usize);
                }
                order
            })
            .collect();
        MinuteLoad {
            target,
            rounds,
            next: AtomicU64::new(0),
            routes: Routes::default(),
        }
    }
}

impl Workload for MinuteLoad {
    fn next(&self, host: &str) -> Option<Outgoing> {
        let k = self.next.fetch_add(1, Ordering::Relaxed) as usize;
        let n = self.rounds.first()?.len();
        let user = *self.rounds.get(k / n)?.get(k % n)?;
        Some(Outgoing {
            request: self.target.unicast(host, user, now_us()),
            items: 1,
        })
    }

    fn answered(&self, items: u64, status: u16, body: &[u8]) {
        if (200..300).contains(&status) {
            self.routes.count(self.target.kind, items, body);
        }
    }
}

fn per_min(v: u64, secs: f64) -> f64 {
    round3(rate(v, secs) * 60.0)
}

pub async fn w7(args: W7Args) -> anyhow::Result<()> {
    let setup = Setup::new(&args.common, args.users).await?;
    let users = setup.users.len();
    let mut watch = Watch::new(args.common.server_pid.clone());
    watch.mark("start");
    let recorder = Arc::new(Recorder::new(None));
    let counts = Arc::new(PollCounts::default());
    let interval = Duration::from_secs_f64(args.interval_secs);
    let window = Duration::from_secs_f64(args.duration);
    let mock = match &args.mock_url {
        Some(u) => Some(Server::parse(u).await?),
        None => None,
    };

    let mut pollers_list = Vec::new();
    let mut streams = None;
    match args.how {
        W7How::Poll => {
            let limit = crate::procfs::raise_nofile();
            if users as u64 + 100 > limit {
                anyhow::bail!("{users} pollers need more open files than the limit ({limit})");
            }
            // Each client's first poll (no cursor yet) before the window, as an app that was
            // already running.
            let first = Arc::new(PollCounts::default());
            let mut opening = Vec::new();
            let gate = Arc::new(tokio::sync::Semaphore::new(
                args.common.connect_concurrency.max(1),
            ));
            for (pos, &user) in setup.users.iter().enumerate() {
                let mut p =
                    Poller::new(pos, user, &setup.target, &setup.pub_server, &setup.sources);
                let (gate, first, rec) =
                    (gate.clone(), first.clone(), Arc::new(Recorder::new(None)));
                opening.push(tokio::spawn(async move {
                    let _slot = gate.acquire().await;
                    p.poll(&first, &rec).await;
                    p
                }));
            }
            for o in opening {
                pollers_list.push(o.await?);
            }
            eprintln!(
                "w7 poll: {users} clients polled once ({} errors)",
                first.errors.load(Ordering::Relaxed)
            );
        }
        W7How::Push => {
            streams = Some(setup.open_streams(recorder.clone(), None).await?.0);
        }
        W7How::Quiet => {}
        W7How::Mixed => {
            let Some(mock) = &mock else {
                anyhow::bail!("--how mixed needs --mock-url");
            };
            let plan = Plan {
                connections: args.common.connections,
                rate: None,
                window: None,
                connect_concurrency: args.common.connect_concurrency,
            };
            let reg = Arc::new(RegisterLoad {
                target: setup.target.clone(),
                apns: false,
                users: setup.users.clone(),
                subscriptions: None,
                next: AtomicUsize::new(0),
            });
            let answers = Arc::new(Answers::default());
            let senders = publish::open_all(&setup.pub_server, &setup.sources, &plan).await?;
            publish::run(
                senders,
                &setup.pub_server,
                &setup.sources,
                &plan,
                reg,
                answers.clone(),
            )
            .await;
            eprintln!(
                "w7 mixed: {} devices registered ({} errors)",
                answers.ok.load(Ordering::Relaxed),
                answers.errors()
            );
            let online = (users as f64 * args.online).round() as usize;
            let online_setup = Setup {
                common: setup.common.clone(),
                target: setup.target.clone(),
                stream_server: setup.stream_server.clone(),
                pub_server: setup.pub_server.clone(),
                sources: setup.sources.clone(),
                users: setup.users[..online].to_vec(),
            };
            streams = Some(online_setup.open_streams(recorder.clone(), None).await?.0);
            once(mock, http::Method::DELETE, "/_mock/messages").await?;
        }
    }
    setup.settle().await;

    let rounds = (args.duration / 60.0).ceil() as usize + 1;
    let load = Arc::new(MinuteLoad::new(setup.target.clone(), &setup.users, rounds));
    let plan = Plan {
        connections: args.common.connections,
        rate: Some(users as f64 / 60.0),
        window: Some(window),
        connect_concurrency: args.common.connect_concurrency,
    };
    let senders = publish::open_all(&setup.pub_server, &setup.sources, &plan).await?;
    let answers = Arc::new(Answers::default());
    let fcm_before = match &mock {
        Some(m) => accepted(m).await?,
        None => 0,
    };
    let stream_bytes_before = streams
        .as_ref()
        .map_or(0, |s| s.bytes_in.load(Ordering::Relaxed));
    watch.mark("window_start");
    let start = Instant::now();
    let end = start + window;
    let mut tasks = Vec::new();
    for p in pollers_list {
        let first = start + interval.mul_f64(p.index as f64 / users.max(1) as f64);
        // One interval past the last publish, so that every notification is polled.
        tasks.push(tokio::spawn(pollers::run(
            p,
            first,
            interval,
            end + interval,
            counts.clone(),
            recorder.clone(),
        )));
    }
    let ran = publish::run(
        senders,
        &setup.pub_server,
        &setup.sources,
        &plan,
        load.clone(),
        answers.clone(),
    )
    .await;
    // The CPU window ends with the publishing, for both ways: the pollers' extra interval
    // (so that each of them sees the last notifications) has polls but no notifications, and
    // counting it would spread the producer's cost over more wall time than push gets.
    watch.mark("window_end");
    for t in tasks {
        let _ = t.await;
    }
    let secs = start.elapsed().as_secs_f64();
    let stream_bytes = streams
        .as_ref()
        .map_or(0, |s| s.bytes_in.load(Ordering::Relaxed))
        - stream_bytes_before;
    let sent = load.routes.accepted();
    let sse = load.routes.sse.load(Ordering::Relaxed);
    if args.how != W7How::Poll {
        drain(&recorder, sse, args.common.drain_secs).await;
    }
    let fcm_sends = match &mock {
        Some(m) => {
            // The offline users' sends may still be on their way.
            let expected = fcm_before + (sent - sse);
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            let mut a = accepted(m).await?;
            while a < expected && std::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(100)).await;
                a = accepted(m).await?;
            }
            Some(a - fcm_before)
        }
        None => None,
    };
    let cpu = watch.cpu_between("window_start", "window_end");
    let latency = recorder.latency();
    let bytes = counts.bytes_in.load(Ordering::Relaxed)
        + counts.bytes_out.load(Ordering::Relaxed)
        + stream_bytes;
    let window_secs = ran
        .last_send
        .duration_since(ran.started)
        .as_secs_f64()
        .max(secs.min(args.duration));
    let report = json!({
        "mode": "w7",
        "how": args.how,
        "target": setup.target.kind,
        "users": users,
        "interval_secs": args.interval_secs,
        "window_secs": round3(window_secs),
        "sent": sent,
        "routes": load.routes.json(),
        "notifications_per_min": per_min(sent, window_secs),
        "requests": answers.report(),
        "delivered": recorder.delivered.load(Ordering::Relaxed),
        "latency_us": latency,
        "polls": counts.polls.load(Ordering::Relaxed),
        "polls_per_min": per_min(counts.polls.load(Ordering::Relaxed), window_secs),
        "poll_pages": counts.pages.load(Ordering::Relaxed),
        "poll_not_modified": counts.not_modified.load(Ordering::Relaxed),
        "poll_errors": counts.errors.load(Ordering::Relaxed),
        "client_bytes": bytes,
        "client_bytes_per_min": per_min(bytes, window_secs),
        "online_users": streams.as_ref().map(|s| s.established.load(Ordering::Relaxed)),
        "fcm_sends": fcm_sends,
        "fcm_sends_per_min": fcm_sends.map(|f| per_min(f, window_secs)),
        "push_everything_fcm_sends_per_min": per_min(sent, window_secs),
        "server_cpu_secs_window": cpu.map(|c| round3(c.0)),
        "server_cpu_secs_per_min": cpu.map(|c| round3(c.1)),
        "server": watch.json(),
    });
    let summary = format!(
        "w7 {:?}: {users} users, {sent} notifications in {window_secs:.1}s, delivered {}, latency p50 {} µs p99 {} µs; \
         polls {} (304: {}, errors {}); client bytes/min {:.0}; FCM sends {:?}; server CPU {:?} s/min",
        args.how,
        recorder.delivered.load(Ordering::Relaxed),
        latency.p50,
        latency.p99,
        counts.polls.load(Ordering::Relaxed),
        counts.not_modified.load(Ordering::Relaxed),
        counts.errors.load(Ordering::Relaxed),
        per_min(bytes, window_secs),
        fcm_sends,
        cpu.map(|c| round3(c.1)),
    );
    emit(report, &summary);
    Ok(())
}
