//! What waits to be pushed: how many sends and how long the oldest has waited, as
//! `switchboard_push_queue_depth` and `switchboard_push_queue_oldest_seconds` show them.

use std::collections::VecDeque;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use prometheus_client::metrics::gauge::Gauge;
use tokio::time::Instant;

use crate::metrics::Metrics;

/// How often the oldest send's age is refreshed while nothing enters or leaves.
const REFRESH: Duration = Duration::from_secs(1);

/// When each waiting send was queued, oldest first (the queue is first in, first out).
pub struct Waiting {
    since: Mutex<VecDeque<Instant>>,
    depth: Gauge,
    oldest: Gauge<f64, AtomicU64>,
}

impl Waiting {
    /// Without the refresh task: for a sender that never queues (push is off).
    pub fn new(metrics: &Metrics) -> Arc<Waiting> {
        Arc::new(Waiting {
            since: Mutex::new(VecDeque::new()),
            depth: metrics.push_queue_depth.clone(),
            oldest: metrics.push_queue_oldest_seconds.clone(),
        })
    }

    /// Starts the refresh of the age gauge, which stops when the last `Arc` goes.
    pub fn start(metrics: &Metrics) -> Arc<Waiting> {
        let waiting = Waiting::new(metrics);
        tokio::spawn(refresh(Arc::downgrade(&waiting)));
        waiting
    }

    /// A send entered the queue.
    pub fn queued(&self) {
        let mut since = self.since.lock();
        since.push_back(Instant::now());
        self.depth.inc();
        self.show(&since);
    }

    /// The oldest send left the queue (for a slot, or dropped).
    pub fn left(&self) {
        let mut since = self.since.lock();
        if since.pop_front().is_some() {
            self.depth.dec();
        }
        self.show(&since);
    }

    fn show(&self, since: &VecDeque<Instant>) {
        let age = since.front().map_or(0.0, |at| at.elapsed().as_secs_f64());
        self.oldest.set(age);
    }
}

async fn refresh(waiting: Weak<Waiting>) {
    let mut tick = tokio::time::interval(REFRESH);
    loop {
        tick.tick().await;
        let Some(w) = waiting.upgrade() else { break };
        let since = w.since.lock();
        w.show(&since);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn depth_and_age_follow_the_queue() {
        let metrics = Metrics::new();
        let w = Waiting::start(&metrics);
        w.queued();
        tokio::time::sleep(Duration::from_millis(200)).await;
        w.queued();
        assert_eq!(metrics.push_queue_depth.get(), 2);
        let oldest = metrics.push_queue_oldest_seconds.get();
        assert!((0.2..1.0).contains(&oldest), "{oldest}");
        w.left();
        assert_eq!(metrics.push_queue_depth.get(), 1);
        assert!(metrics.push_queue_oldest_seconds.get() < 0.1);
        w.left();
        w.left();
        assert_eq!(metrics.push_queue_depth.get(), 0);
        assert_eq!(metrics.push_queue_oldest_seconds.get(), 0.0);
    }
}
