//! The FCM path: a bounded queue of (notification, device) sends, at most `max_in_flight` of
//! them on the wire at once, each ending as accepted, failed, or a pruned token.

pub use crate::push::fcm::client::{FcmClient, FcmSetupError, Outcome};

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::backend::ledger::fcm_field;
use crate::backend::{SharedLedger, Status};
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

pub struct FcmSender {
    /// `None` when no service account is configured: FCM is off.
    queue: Option<mpsc::Sender<Job>>,
    drain: CancellationToken,
    drained: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    metrics: Arc<Metrics>,
}

impl FcmSender {
    pub fn disabled(metrics: Arc<Metrics>) -> FcmSender {
        FcmSender {
            queue: None,
            drain: CancellationToken::new(),
            drained: tokio::sync::Mutex::new(None),
            metrics,
        }
    }

    /// Builds the client (reading the key, fetching a first token) and starts the dispatcher.
    pub async fn start(
        cfg: &FcmConfig,
        store: Store,
        ledger: SharedLedger,
        metrics: Arc<Metrics>,
    ) -> Result<FcmSender, FcmSetupError> {
        let client = Arc::new(FcmClient::new(cfg, metrics.clone()).await?);
        if let Err(e) = client.check_token().await {
            tracing::warn!(error = %e, "FCM: no OAuth token yet; sends will retry it");
        }
        let (tx, rx) = mpsc::channel(cfg.queue_capacity);
        let drain = CancellationToken::new();
        let dispatcher = Dispatcher {
            client,
            store,
            ledger,
            metrics: metrics.clone(),
            slots: Arc::new(Semaphore::new(cfg.max_in_flight)),
            max_in_flight: cfg.max_in_flight as u32,
        };
        let handle = tokio::spawn(dispatcher.run(rx, drain.clone()));
        Ok(FcmSender {
            queue: Some(tx),
            drain,
            drained: tokio::sync::Mutex::new(Some(handle)),
            metrics,
        })
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
            permit.send(job);
        }
        Ok(())
    }

    /// Queues `jobs`, waiting for room: for notifications already accepted (nothing is lost).
    pub async fn enqueue(&self, jobs: Vec<Job>) {
        let Some(queue) = &self.queue else { return };
        for job in jobs {
            self.metrics.fcm_queue_depth.inc();
            if queue.send(job).await.is_err() {
                self.metrics.fcm_queue_depth.dec();
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
    client: Arc<FcmClient>,
    store: Store,
    ledger: SharedLedger,
    metrics: Arc<Metrics>,
    slots: Arc<Semaphore>,
    max_in_flight: u32,
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
            let client = self.client.clone();
            let store = self.store.clone();
            let ledger = self.ledger.clone();
            let metrics = self.metrics.clone();
            tokio::spawn(async move {
                send_one(&client, &store, &ledger, &metrics, job).await;
                drop(slot);
            });
        }
        // Every slot back means every in-flight send has finished.
        let _ = self.slots.acquire_many(self.max_in_flight).await;
    }
}

async fn send_one(
    client: &FcmClient,
    store: &Store,
    ledger: &SharedLedger,
    metrics: &Metrics,
    job: Job,
) {
    let token = &job.device.fcm_token;
    let outcome = client.deliver(&job.notification, token).await;
    let id = &job.notification.id;
    let (accepted, value) = match outcome {
        Outcome::Accepted => (true, Status::FcmAccepted.as_str().to_string()),
        Outcome::Unregistered => (false, "fcm_failed:unregistered".to_string()),
        Outcome::Failed(code) => (false, format!("fcm_failed:{code}")),
    };
    ledger.set_delivery(id, fcm_field(&job.device.device_id), value);
    if let Some(status) = job.batch.finish(accepted) {
        ledger.set_status(id, status);
        ledger.release(id);
    }
    match outcome {
        Outcome::Accepted => {
            metrics.fcm_accepted.inc();
        }
        Outcome::Unregistered => {
            metrics.fcm_failed.inc();
            match store.delete_token(token).await {
                Ok(n) => {
                    metrics.fcm_tokens_pruned.inc_by(n);
                    tracing::info!(
                        user_id = %job.device.user_id,
                        device_id = %job.device.device_id,
                        "FCM token unregistered: device removed"
                    );
                }
                Err(e) => tracing::error!(error = %e, "could not prune an unregistered token"),
            }
        }
        Outcome::Failed(_) => {
            metrics.fcm_failed.inc();
        }
    }
}
