//! The push path, whatever the provider: a bounded queue of (notification, device) sends, at
//! most `max_in_flight` of them on the wire at once, each retried as `retry.rs` says and ending
//! as accepted, failed, or a pruned token.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

use super::retry::{deliver, RetryPolicy};
use super::waiting::Waiting;
use super::{Outcome, Provider};
use crate::backend::{Delivery, SharedLedger, Status};
use crate::config::FcmConfig;
use crate::metrics::Metrics;
use crate::notification::SharedNotification;
use crate::store::{Device, Store};

/// One notification for one device.
pub struct Job {
    pub notification: SharedNotification,
    pub device: Device,
    pub batch: Arc<Batch>,
}

/// The sends of one notification to all of its user's devices: when the last ends, the
/// notification's record gets its final status (`fcm_accepted` if any device accepted it).
pub struct Batch {
    remaining: AtomicUsize,
    accepted: AtomicBool,
}

impl Batch {
    pub fn new(devices: usize) -> Arc<Batch> {
        Arc::new(Batch {
            remaining: AtomicUsize::new(devices),
            accepted: AtomicBool::new(false),
        })
    }

    /// One send ended; returns the final status when it was the last.
    fn finish(&self, accepted: bool) -> Option<Status> {
        if accepted {
            self.accepted.store(true, Ordering::Release);
        }
        (self.remaining.fetch_sub(1, Ordering::AcqRel) == 1).then(|| {
            if self.accepted.load(Ordering::Acquire) {
                Status::FcmAccepted
            } else {
                Status::FcmFailed
            }
        })
    }
}

/// The queue is full: the producer should retry later.
#[derive(Debug, thiserror::Error)]
#[error("the FCM queue is full")]
pub struct Overloaded;

/// The sender's bounds and retry budget (the `fcm.*` keys).
#[derive(Debug, Clone)]
pub struct SenderConfig {
    pub queue_capacity: usize,
    pub max_in_flight: usize,
    pub retry: RetryPolicy,
}

impl SenderConfig {
    pub fn new(cfg: &FcmConfig) -> SenderConfig {
        SenderConfig {
            queue_capacity: cfg.queue_capacity,
            max_in_flight: cfg.max_in_flight,
            retry: RetryPolicy::new(cfg),
        }
    }
}

/// Where the router hands the sends of notifications that no stream takes.
pub struct Sender {
    /// `None` when no provider is configured: push is off.
    queue: Option<mpsc::Sender<Job>>,
    drain: CancellationToken,
    drained: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    metrics: Arc<Metrics>,
    waiting: Arc<Waiting>,
}

impl Sender {
    pub fn disabled(metrics: Arc<Metrics>) -> Sender {
        Sender {
            queue: None,
            drain: CancellationToken::new(),
            drained: tokio::sync::Mutex::new(None),
            waiting: Waiting::new(&metrics),
            metrics,
        }
    }

    /// Starts the dispatcher that sends through `provider`.
    pub fn start(
        provider: Arc<dyn Provider>,
        cfg: SenderConfig,
        store: Store,
        ledger: SharedLedger,
        metrics: Arc<Metrics>,
    ) -> Sender {
        let (tx, rx) = mpsc::channel(cfg.queue_capacity);
        let drain = CancellationToken::new();
        let waiting = Waiting::start(&metrics);
        let dispatcher = Dispatcher {
            waiting: waiting.clone(),
            send: Arc::new(SendContext {
                provider,
                retry: cfg.retry,
                store,
                ledger,
                metrics: metrics.clone(),
            }),
            metrics: metrics.clone(),
            slots: Arc::new(Semaphore::new(cfg.max_in_flight)),
            max_in_flight: cfg.max_in_flight as u32,
        };
        let handle = tokio::spawn(dispatcher.run(rx, drain.clone()));
        Sender {
            queue: Some(tx),
            drain,
            drained: tokio::sync::Mutex::new(Some(handle)),
            metrics,
            waiting,
        }
    }

    pub fn enabled(&self) -> bool {
        self.queue.is_some()
    }

    /// Queues all of `jobs` or none (a notify either fully goes to FCM or is refused).
    pub fn try_enqueue(&self, jobs: Vec<Job>) -> Result<(), Overloaded> {
        let Some(queue) = &self.queue else {
            return Ok(());
        };
        let permits = queue.try_reserve_many(jobs.len()).map_err(|_| Overloaded)?;
        for (permit, job) in permits.zip(jobs) {
            self.metrics.fcm_queue_depth.inc();
            self.waiting.queued();
            permit.send(job);
        }
        Ok(())
    }

    /// Queues `jobs`, waiting for room: for notifications already accepted (nothing is lost).
    pub async fn enqueue(&self, jobs: Vec<Job>) {
        let Some(queue) = &self.queue else { return };
        for job in jobs {
            self.metrics.fcm_queue_depth.inc();
            self.waiting.queued();
            if queue.send(job).await.is_err() {
                self.metrics.fcm_queue_depth.dec();
                self.waiting.left();
                tracing::error!("FCM queue closed during shutdown: a send was dropped");
            }
        }
    }

    /// Stops taking work, then waits (at most `grace`) for queued and in-flight sends.
    pub async fn drain(&self, grace: Duration) {
        self.drain.cancel();
        if let Some(handle) = self.drained.lock().await.take() {
            if tokio::time::timeout(grace, handle).await.is_err() {
                tracing::warn!("FCM sends still in flight at the end of the shutdown grace");
            }
        }
    }
}

struct Dispatcher {
    waiting: Arc<Waiting>,
    send: Arc<SendContext>,
    metrics: Arc<Metrics>,
    slots: Arc<Semaphore>,
    max_in_flight: u32,
}

/// What one send needs, shared by all of them.
struct SendContext {
    provider: Arc<dyn Provider>,
    retry: RetryPolicy,
    store: Store,
    ledger: SharedLedger,
    metrics: Arc<Metrics>,
}

impl Dispatcher {
    async fn run(self, mut rx: mpsc::Receiver<Job>, drain: CancellationToken) {
        let mut closing = false;
        loop {
            let job = tokio::select! {
                biased;
                _ = drain.cancelled(), if !closing => {
                    // No new sends; what is queued still goes out.
                    rx.close();
                    closing = true;
                    continue;
                }
                job = rx.recv() => job,
            };
            let Some(job) = job else { break };
            let Ok(slot) = self.slots.clone().acquire_owned().await else {
                break;
            };
            self.metrics.fcm_queue_depth.dec();
            self.waiting.left();
            let send = self.send.clone();
            tokio::spawn(async move {
                send.send_one(job).await;
                drop(slot);
            });
        }
        // Every slot back means every in-flight send has finished.
        let _ = self.slots.acquire_many(self.max_in_flight).await;
    }
}

impl SendContext {
    async fn send_one(&self, job: Job) {
        let token = &job.device.token;
        let outcome = deliver(&*self.provider, &self.retry, &job.notification, token).await;
        let id = &job.notification.id;
        let accepted = outcome == Outcome::Accepted;
        let delivery = Delivery::push(&job.device.device_id, outcome.error());
        self.ledger.set_delivery(id, delivery);
        if let Some(status) = job.batch.finish(accepted) {
            self.ledger.set_status(id, status);
            self.ledger.release(id);
        }
        if accepted {
            self.metrics.fcm_accepted.inc();
            return;
        }
        self.metrics.fcm_failed.inc();
        if let Outcome::TokenGone { .. } = outcome {
            match self.store.delete_token(token).await {
                Ok(n) => {
                    self.metrics.fcm_tokens_pruned.inc_by(n);
                    tracing::info!(
                        user_id = %job.device.user_id,
                        device_id = %job.device.device_id,
                        "device token gone: device removed"
                    );
                }
                Err(e) => {
                    tracing::error!(error = %e, "could not prune a device token that is gone")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::future::{BoxFuture, FutureExt};

    use super::*;
    use crate::backend::memory::MemoryLedger;
    use crate::backend::{LedgerConfig, Owner};
    use crate::notification::Notification;
    use crate::store::Platform;

    /// Answers by device token: `gone-*` tokens are gone, the rest accepted.
    struct ByToken;

    impl Provider for ByToken {
        fn send<'a>(&'a self, _n: &'a Notification, token: &'a str) -> BoxFuture<'a, Outcome> {
            let outcome = if token.starts_with("gone-") {
                Outcome::TokenGone { at: None }
            } else {
                Outcome::Accepted
            };
            async move { outcome }.boxed()
        }
    }

    #[tokio::test]
    async fn a_gone_token_is_pruned_and_the_other_device_still_counts() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let store = Store::connect(&url).await.unwrap();
        store
            .upsert_device("u", "old", "gone-1", Platform::Android)
            .await
            .unwrap();
        store
            .upsert_device("u", "new", "tok-2", Platform::Android)
            .await
            .unwrap();
        let metrics = Arc::new(Metrics::new());
        let ledger: SharedLedger = Arc::new(MemoryLedger::new(
            LedgerConfig {
                ack_timeout_ms: 60_000,
                retention_ms: 60_000,
                replay_window_ms: 60_000,
                replay_capacity: 4,
                max_records: 100,
                max_idempotency_keys: 100,
            },
            metrics.clone(),
        ));
        let owner = Owner {
            index: crate::auth::ProducerId(0),
            name: "p",
        };
        let req: crate::notification::NotifyRequest =
            serde_json::from_str(r#"{"user_id":"u","data":{"k":"v"}}"#).unwrap();
        let n = Arc::new(req.accept().unwrap());
        ledger.begin(&n, owner).await.unwrap();
        let cfg = SenderConfig {
            queue_capacity: 8,
            max_in_flight: 2,
            retry: RetryPolicy {
                max_attempts: 3,
                base: Duration::from_millis(1),
                max: Duration::from_millis(10),
            },
        };
        let sender = Sender::start(
            Arc::new(ByToken),
            cfg,
            store.clone(),
            ledger.clone(),
            metrics.clone(),
        );
        let devices = store.devices_for_user("u").await.unwrap();
        let batch = Batch::new(devices.len());
        let jobs = devices
            .into_iter()
            .map(|device| Job {
                notification: n.clone(),
                device,
                batch: batch.clone(),
            })
            .collect();

        sender.try_enqueue(jobs).unwrap();
        sender.drain(Duration::from_secs(10)).await;

        let left = store.devices_for_user("u").await.unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].device_id, "new");
        let record = ledger.record(&n.id, owner).await.unwrap().unwrap();
        assert_eq!(record.status, Status::FcmAccepted);
        let mut deliveries = record.deliveries;
        deliveries.sort_by(|a, b| a.device.cmp(&b.device));
        assert_eq!(
            deliveries,
            [
                Delivery::push("new", None),
                Delivery::push("old", Some("unregistered")),
            ]
        );
        let text = metrics.render();
        assert!(
            text.contains("switchboard_fcm_tokens_pruned_total 1"),
            "{text}"
        );
        assert!(text.contains("switchboard_fcm_deliveries_total{status=\"fcm_failed\"} 1"));
    }
}
