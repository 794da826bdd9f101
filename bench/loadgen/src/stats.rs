//! What receivers and publishers count: delivery latencies (sharded HDR histograms, so 15 000
//! stream tasks rarely meet on one lock), delivery counters, per-broadcast arrival tracking,
//! and HTTP answers by status.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use serde::Serialize;

const SHARDS: usize = 64;
/// One hour in µs: no latency we care about is longer.
const MAX_US: u64 = 3_600_000_000;

/// The wall clock in µs (CLOCK_REALTIME): publisher and receiver share this machine's clock.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, 3).expect("static histogram bounds are valid")
}

/// p50/p90/p99/max of a histogram, in µs.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            count: h.len(),
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

/// Per-broadcast arrivals: how many streams got broadcast `seq`, and when the last one did.
pub struct BroadcastTracker {
    sent_us: Vec<AtomicU64>,
    last_us: Vec<AtomicU64>,
    arrivals: Vec<AtomicU32>,
}

impl BroadcastTracker {
    pub fn new(capacity: usize) -> BroadcastTracker {
        let zeros64 = || (0..capacity).map(|_| AtomicU64::new(0)).collect::<Vec<_>>();
        BroadcastTracker {
            sent_us: zeros64(),
            last_us: zeros64(),
            arrivals: (0..capacity).map(|_| AtomicU32::new(0)).collect(),
        }
    }

    pub fn capacity(&self) -> u64 {
        self.sent_us.len() as u64
    }

    pub fn sent(&self, seq: u64, ts: u64) {
        if let Some(slot) = self.sent_us.get(seq as usize) {
            slot.store(ts, Ordering::Relaxed);
        }
    }

    fn arrived(&self, seq: u64, at: u64) {
        let i = seq as usize;
        if let (Some(last), Some(n)) = (self.last_us.get(i), self.arrivals.get(i)) {
            last.fetch_max(at, Ordering::Relaxed);
            n.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Publish → last subscriber for broadcasts `0..sent` that reached `audience` streams, and
    /// how many reached fewer.
    pub fn summary(&self, sent: u64, audience: u64) -> (Percentiles, u64, u64) {
        let mut h = histogram();
        let (mut complete, mut partial) = (0, 0);
        for i in 0..(sent.min(self.capacity()) as usize) {
            let sent_at = self.sent_us[i].load(Ordering::Relaxed);
            let n = u64::from(self.arrivals[i].load(Ordering::Relaxed));
            if sent_at == 0 || n == 0 {
                partial += 1;
                continue;
            }
            if n >= audience {
                complete += 1;
                let last = self.last_us[i].load(Ordering::Relaxed);
                h.saturating_record(last.saturating_sub(sent_at));
            } else {
                partial += 1;
            }
        }
        (Percentiles::of(&h), complete, partial)
    }
}

/// Everything the stream tasks report.
pub struct Recorder {
    latency: Vec<Mutex<Histogram<u64>>>,
    pub delivered: AtomicU64,
    /// Events without a load-generator stamp (e.g. `reset`, `shutdown`, foreign data).
    pub unstamped: AtomicU64,
    /// Events by name other than the data events (notification, broadcast, message).
    pub control_events: Mutex<BTreeMap<String, u64>>,
    pub broadcasts: Option<BroadcastTracker>,
}

impl Recorder {
    pub fn new(broadcasts: Option<BroadcastTracker>) -> Recorder {
        Recorder {
            latency: (0..SHARDS).map(|_| Mutex::new(histogram())).collect(),
            delivered: AtomicU64::new(0),
            unstamped: AtomicU64::new(0),
            control_events: Mutex::new(BTreeMap::new()),
            broadcasts,
        }
    }

    /// Records the stamps `(ts, seq)` of events that arrived at `at` on stream `stream`.
    pub fn delivered(&self, stream: usize, at: u64, stamps: &[(u64, Option<u64>)]) {
        if stamps.is_empty() {
            return;
        }
        self.delivered
            .fetch_add(stamps.len() as u64, Ordering::Relaxed);
        if let Some(b) = &self.broadcasts {
            for &(_, seq) in stamps {
                if let Some(seq) = seq {
                    b.arrived(seq, at);
                }
            }
        }
        let mut h = self.latency[stream % SHARDS]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for &(ts, _) in stamps {
            h.saturating_record(at.saturating_sub(ts));
        }
    }

    pub fn control_event(&self, name: &[u8]) {
        let mut m = self
            .control_events
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *m.entry(String::from_utf8_lossy(name).into_owned())
            .or_default() += 1;
    }

    /// The latencies recorded since the last call (or the start), and forgets them: one phase's.
    pub fn take_latency(&self) -> Percentiles {
        let mut all = histogram();
        for shard in &self.latency {
            let mut h = shard.lock().unwrap_or_else(|e| e.into_inner());
            let _ = all.add(&*h);
            h.reset();
        }
        Percentiles::of(&all)
    }

    pub fn latency(&self) -> Percentiles {
        let mut all = histogram();
        for shard in &self.latency {
            let h = shard.lock().unwrap_or_else(|e| e.into_inner());
            let _ = all.add(&*h);
        }
        Percentiles::of(&all)
    }
}

/// HTTP outcomes of a set of requests.
#[derive(Default)]
pub struct Answers {
    /// Requests answered 2xx.
    pub ok: AtomicU64,
    /// Non-2xx answers by status code.
    pub by_status: Mutex<BTreeMap<u16, u64>>,
    /// Connection failures, resets and timeouts (no HTTP answer).
    pub transport_errors: AtomicU64,
    /// Answers that carried `Retry-After`.
    pub retry_after: AtomicU64,
    /// Request → full response, in µs.
    pub latency: Mutex<Option<Histogram<u64>>>,
}

impl Answers {
    pub fn status(&self, status: u16) {
        if (200..300).contains(&status) {
            self.ok.fetch_add(1, Ordering::Relaxed);
        } else {
            let mut m = self.by_status.lock().unwrap_or_else(|e| e.into_inner());
            *m.entry(status).or_default() += 1;
        }
    }

    pub fn errors(&self) -> u64 {
        let m = self.by_status.lock().unwrap_or_else(|e| e.into_inner());
        m.values().sum::<u64>() + self.transport_errors.load(Ordering::Relaxed)
    }

    pub fn merge_latency(&self, h: &Histogram<u64>) {
        let mut mine = self.latency.lock().unwrap_or_else(|e| e.into_inner());
        match mine.as_mut() {
            Some(m) => {
                let _ = m.add(h);
            }
            None => *mine = Some(h.clone()),
        }
    }

    pub fn report(&self) -> serde_json::Value {
        let by_status = self.by_status.lock().unwrap_or_else(|e| e.into_inner());
        let latency = self.latency.lock().unwrap_or_else(|e| e.into_inner());
        serde_json::json!({
            "ok": self.ok.load(Ordering::Relaxed),
            "by_status": by_status.iter().map(|(k, v)| (k.to_string(), *v)).collect::<BTreeMap<_, _>>(),
            "transport_errors": self.transport_errors.load(Ordering::Relaxed),
            "with_retry_after": self.retry_after.load(Ordering::Relaxed),
            "latency_us": latency.as_ref().map(Percentiles::of).unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_summary_counts_complete_ones_only() {
        let t = BroadcastTracker::new(4);
        let r = Recorder::new(Some(t));
        let b = r.broadcasts.as_ref().unwrap();
        b.sent(0, 1_000);
        b.sent(1, 2_000);
        r.delivered(0, 1_500, &[(1_000, Some(0)), (2_000, Some(1))]);
        r.delivered(1, 1_900, &[(1_000, Some(0))]);
        let (p, complete, partial) = b.summary(2, 2);
        assert_eq!((complete, partial), (1, 1));
        assert_eq!(p.max, 900);
        assert_eq!(r.delivered.load(Ordering::Relaxed), 3);
        assert_eq!(r.latency().count, 3);
    }

    #[test]
    fn answers_split_by_status() {
        let a = Answers::default();
        a.status(202);
        a.status(503);
        a.status(503);
        a.transport_errors.fetch_add(1, Ordering::Relaxed);
        assert_eq!(a.ok.load(Ordering::Relaxed), 1);
        assert_eq!(a.errors(), 3);
    }
}
