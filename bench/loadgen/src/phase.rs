//! A publish phase of a fixed number of notifications (the `storm`, `flood` and `noisy`
//! workloads): round-robin over users, at a rate or as fast as answers come, keeping the ids
//! the server answered with so that every one can be looked for at the streams.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use crate::net::{Server, Sources};
use crate::publish::{self, Outgoing, Plan, Workload};
use crate::report::{rate, round3};
use crate::stats::{now_us, Answers, Percentiles, Recorder};
use crate::target::Target;
use crate::unicast::Routes;

/// `total` notifications to `users` in turn.
pub struct Counted {
    pub target: Target,
    pub users: Vec<usize>,
    pub total: u64,
    next: AtomicU64,
    pub routes: Routes,
    /// Ids of the notifications answered with `"route":"sse"` (Switchboard).
    pub sse_ids: Mutex<Vec<String>>,
}

impl Counted {
    pub fn new(target: Target, users: Vec<usize>, total: u64) -> Counted {
        Counted {
            target,
            users,
            total,
            next: AtomicU64::new(0),
            routes: Routes::default(),
            sse_ids: Mutex::new(Vec::new()),
        }
    }
}

impl Workload for Counted {
    fn next(&self, host: &str) -> Option<Outgoing> {
        let k = self.next.fetch_add(1, Ordering::Relaxed);
        if k >= self.total {
            return None;
        }
        let user = self.users[(k % self.users.len() as u64) as usize];
        Some(Outgoing {
            request: self.target.unicast(host, user, now_us()),
            items: 1,
        })
    }

    fn answered(&self, items: u64, status: u16, body: &[u8]) {
        if !(200..300).contains(&status) {
            return;
        }
        self.routes.count(self.target.kind, items, body);
        if memchr::memmem::find(body, br#""route":"sse""#).is_some() {
            if let Some(id) = json_string(body, b"\"id\":\"") {
                self.sse_ids
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(id);
            }
        }
    }
}

/// The string value after `key` (`"id":"`) in a flat JSON answer.
fn json_string(body: &[u8], key: &[u8]) -> Option<String> {
    let at = memchr::memmem::find(body, key)? + key.len();
    let end = memchr::memchr(b'"', &body[at..])?;
    Some(String::from_utf8_lossy(&body[at..at + end]).into_owned())
}

/// What one phase sent and what arrived.
pub struct PhaseOutcome {
    pub accepted: u64,
    pub sse_routed: u64,
    pub delivered: u64,
    pub window_secs: f64,
    pub latency: Percentiles,
    pub requests: serde_json::Value,
    pub sse_ids: Vec<String>,
}

impl PhaseOutcome {
    pub fn json(&self) -> serde_json::Value {
        json!({
            "accepted": self.accepted,
            "sse_routed": self.sse_routed,
            "delivered": self.delivered,
            "delivered_ratio": if self.sse_routed > 0 { round3(self.delivered as f64 / self.sse_routed as f64) } else { 0.0 },
            "window_secs": round3(self.window_secs),
            "sends_per_sec": rate(self.accepted, self.window_secs),
            "latency_us": self.latency,
            "requests": self.requests,
        })
    }
}

/// Sends `total` notifications over `users` and waits (at most `drain_secs` after the last
/// answer) until as many deliveries as notifications routed to streams reached `recorder`.
#[allow(clippy::too_many_arguments)]
pub async fn publish(
    target: &Target,
    server: &Server,
    sources: &Arc<Sources>,
    users: &[usize],
    total: u64,
    rate: Option<f64>,
    connections: usize,
    recorder: &Recorder,
    drain_secs: f64,
) -> anyhow::Result<PhaseOutcome> {
    let plan = Plan {
        connections,
        rate,
        window: None,
        connect_concurrency: 64,
    };
    let senders = publish::open_all(server, sources, &plan).await?;
    let load = Arc::new(Counted::new(target.clone(), users.to_vec(), total));
    let answers = Arc::new(Answers::default());
    recorder.take_latency();
    let before = recorder.delivered.load(Ordering::Relaxed);
    let ran = publish::run(
        senders,
        server,
        sources,
        &plan,
        load.clone(),
        answers.clone(),
    )
    .await;
    let sse_routed = load.routes.sse.load(Ordering::Relaxed);
    let started = std::time::Instant::now();
    while recorder.delivered.load(Ordering::Relaxed) - before < sse_routed
        && started.elapsed().as_secs_f64() < drain_secs
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let delivered = recorder.delivered.load(Ordering::Relaxed) - before;
    let sse_ids = std::mem::take(&mut *load.sse_ids.lock().unwrap_or_else(|e| e.into_inner()));
    Ok(PhaseOutcome {
        accepted: load.routes.accepted(),
        sse_routed,
        delivered,
        window_secs: ran.last_send.duration_since(ran.started).as_secs_f64(),
        latency: recorder.take_latency(),
        requests: answers.report(),
        sse_ids,
    })
}
