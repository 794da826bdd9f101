//! The push path, whatever the provider. Every send is stored in the durable queue
//! (`queue.rs`) before the notify answers; then it goes out at once when a send slot is free
//! (claimed by this node from the start), or waits in the queue for the sweep of some node.
//! A transient answer gives it back to the queue with its next due time (`retry.rs`); any
//! other answer, or its deadline, settles it: removed from the queue, recorded, and the
//! notification's status set when it was its last send.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use super::queue::{Entry, Finished, NewSends, Progress, QueueError, SharedQueue};
use super::retry::RetryPolicy;
use super::{Outcome, Providers, RetryCause};
use crate::backend::{Delivery, SharedLedger, Status};
use crate::config::Config;
use crate::metrics::{Counters, Metrics};
use crate::notification::{Notification, SharedNotification};
use crate::store::{Device, Store};
use crate::time::unix_millis;

/// How often a node looks for due sends when nothing wakes it sooner.
const SWEEP_EVERY: Duration = Duration::from_millis(200);
/// How often the queue's depth and age are read (for the metrics and `push.queue_max`).
const STATS_EVERY: Duration = Duration::from_secs(1);
/// Most sends one sweep claims.
const CLAIM_BATCH: usize = 512;

/// The queue is over `push.queue_max`: the producer should retry later.
#[derive(Debug, thiserror::Error)]
#[error("the push queue is full")]
pub struct Overloaded;

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error(transparent)]
    Overloaded(#[from] Overloaded),
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// The sender's bounds and retry budget (`fcm.*` and `push.*`).
#[derive(Debug, Clone)]
pub struct SenderConfig {
    pub queue_capacity: usize,
    pub max_in_flight: usize,
    pub retry: RetryPolicy,
    pub lease: Duration,
    /// Longest a provider may take to answer (`fcm.request_timeout_secs`).
    pub request_timeout: Duration,
    pub queue_max: u64,
}

impl SenderConfig {
    pub fn new(cfg: &Config) -> SenderConfig {
        SenderConfig {
            queue_capacity: cfg.fcm.queue_capacity,
            max_in_flight: cfg.fcm.max_in_flight,
            retry: RetryPolicy::new(cfg),
            lease: Duration::from_secs(cfg.push.lease_secs),
            request_timeout: Duration::from_secs(cfg.fcm.request_timeout_secs),
            queue_max: cfg.push.queue_max,
        }
    }
}

/// Where the router hands the sends of notifications that no stream takes.
pub struct Sender {
    /// `None` when no provider is configured: push is off.
    core: Option<Arc<Core>>,
    /// Sends this node claimed when it stored them, on their way to a slot.
    fast: Option<mpsc::Sender<Entry>>,
    drain: CancellationToken,
    tasks: tokio::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// What every send needs, shared by all of them.
struct Core {
    providers: Providers,
    queue: SharedQueue,
    retry: RetryPolicy,
    lease_ms: u64,
    /// A send claimed at its put starts only this long after it (its lease must outlast the
    /// provider's answer); later, it is left to the sweep once its lease has ended.
    start_within_ms: u64,
    queue_max: u64,
    store: Store,
    ledger: SharedLedger,
    metrics: Arc<Metrics>,
    retries: Counters<RetryCause>,
    slots: Arc<Semaphore>,
    max_in_flight: u32,
    /// The depth last read, plus what this node stored since, minus what it settled.
    depth: AtomicU64,
    /// Wakes the sweep: sends were stored without a claim.
    wake: Notify,
}

fn new_claim() -> Arc<str> {
    crate::ids::new_id().into()
}

impl Sender {
    pub fn disabled() -> Sender {
        Sender {
            core: None,
            fast: None,
            drain: CancellationToken::new(),
            tasks: Default::default(),
        }
    }

    /// Starts the dispatcher and the sweep that send through `providers`.
    pub fn start(
        providers: Providers,
        queue: SharedQueue,
        cfg: SenderConfig,
        store: Store,
        ledger: SharedLedger,
        metrics: Arc<Metrics>,
    ) -> Sender {
        let (tx, rx) = mpsc::channel(cfg.queue_capacity);
        let drain = CancellationToken::new();
        let core = Arc::new(Core {
            providers,
            queue,
            retry: cfg.retry,
            lease_ms: cfg.lease.as_millis() as u64,
            start_within_ms: cfg.lease.saturating_sub(cfg.request_timeout).as_millis() as u64,
            queue_max: cfg.queue_max,
            store,
            ledger,
            retries: metrics.push_retries.counters(),
            metrics,
            slots: Arc::new(Semaphore::new(cfg.max_in_flight)),
            max_in_flight: cfg.max_in_flight as u32,
            depth: AtomicU64::new(0),
            wake: Notify::new(),
        });
        let dispatcher = tokio::spawn(core.clone().dispatch(rx, drain.clone()));
        let sweep = tokio::spawn(core.clone().sweep(drain.clone()));
        Sender {
            core: Some(core),
            fast: Some(tx),
            drain,
            tasks: tokio::sync::Mutex::new(vec![dispatcher, sweep]),
        }
    }

    pub fn enabled(&self) -> bool {
        self.core.is_some()
    }

    /// The devices of `devices` that `n` goes to: those of its app (all, when it names none)
    /// that a configured provider of their app reaches.
    pub fn reachable(&self, n: &Notification, mut devices: Vec<Device>) -> Vec<Device> {
        match &self.core {
            Some(core) => {
                devices.retain(|d| core.reaches(n, d));
                devices
            }
            None => Vec::new(),
        }
    }

    /// Whether a producer's own request for `sends` more sends is refused: the queue would go
    /// past `push.queue_max` (all nodes' sends, as this node last counted them).
    pub fn refuses(&self, sends: usize) -> bool {
        self.core
            .as_ref()
            .is_some_and(|core| core.depth.load(Ordering::Relaxed) + sends as u64 > core.queue_max)
    }

    /// Stores the sends of `n` to `devices` in the durable queue, then starts those that
    /// find room on this node. `refuse_when_full`: the producer's own request, refused when
    /// the queue is over `push.queue_max` (nothing is stored then); an already accepted
    /// notification is always stored.
    pub async fn submit(
        &self,
        n: &SharedNotification,
        devices: Vec<Device>,
        refuse_when_full: bool,
    ) -> Result<(), SubmitError> {
        let (Some(core), Some(fast)) = (&self.core, &self.fast) else {
            return Ok(());
        };
        if refuse_when_full && self.refuses(devices.len()) {
            return Err(Overloaded.into());
        }
        // Room on this node now: store them claimed by it, and send them at once.
        let permits = fast.try_reserve_many(devices.len()).ok();
        let claim = permits.as_ref().map(|_| new_claim());
        let now = unix_millis();
        let deadline_ms = core.retry.deadline_ms(n);
        let due_ms = if claim.is_some() {
            now + core.lease_ms
        } else {
            now
        };
        let stored = core
            .queue
            .put(NewSends {
                notification: n,
                devices: &devices,
                claim: claim.as_deref(),
                due_ms,
                deadline_ms,
            })
            .await?;
        core.depth.fetch_add(stored.len() as u64, Ordering::Relaxed);
        match (permits, claim) {
            (Some(permits), Some(claim)) => {
                // Only what this put stored is held by its claim (a send queued before is
                // someone else's).
                let mut devices = devices
                    .into_iter()
                    .filter(|d| stored.contains(&d.device_id));
                for permit in permits {
                    let Some(device) = devices.next() else { break };
                    core.metrics.fcm_queue_depth.inc();
                    permit.send(Entry {
                        notification: n.clone(),
                        device,
                        attempts: 0,
                        created_ms: now,
                        deadline_ms,
                        last_error: None,
                        claim: claim.clone(),
                    });
                }
            }
            _ => core.wake.notify_one(),
        }
        Ok(())
    }

    /// Stores a send of `n` whose devices could not be read: when it is due, the devices are
    /// read again and it becomes one send per device (or the notification `expired`).
    pub async fn submit_lookup(&self, n: &SharedNotification) -> Result<(), SubmitError> {
        let Some(core) = &self.core else {
            return Ok(());
        };
        let lookup = Device {
            device_id: String::new(),
            user_id: n.user_id.clone(),
            platform: crate::store::Platform::Android,
            provider: crate::store::ProviderKind::Fcm,
            app: None,
            token: String::new(),
            updated_at: 0,
        };
        let retry_ms = core.retry.delay(1, None).as_millis() as u64;
        core.queue
            .put(NewSends {
                notification: n,
                devices: std::slice::from_ref(&lookup),
                claim: None,
                due_ms: unix_millis() + retry_ms,
                deadline_ms: core.retry.deadline_ms(n),
            })
            .await?;
        core.retries.inc(RetryCause::DeviceRead);
        Ok(())
    }

    /// What the queue holds of notification `id`'s sends.
    pub async fn progress(&self, id: &str) -> Result<Option<Progress>, QueueError> {
        match &self.core {
            Some(core) => core.queue.progress(id).await,
            None => Ok(None),
        }
    }

    /// Stops taking work, then waits (at most `grace`) for the sends under way; what is
    /// still queued stays in the queue for the next run (or another node).
    pub async fn drain(&self, grace: Duration) {
        self.drain.cancel();
        let tasks = std::mem::take(&mut *self.tasks.lock().await);
        if tokio::time::timeout(grace, futures::future::join_all(tasks))
            .await
            .is_err()
        {
            tracing::warn!("push sends still in flight at the end of the shutdown grace");
        }
    }
}

impl Core {
    fn reaches(&self, n: &Notification, device: &Device) -> bool {
        n.app
            .as_ref()
            .is_none_or(|app| device.app.as_ref() == Some(app))
            && self.providers.for_device(device).is_some()
    }

    /// Sends what this node claimed when storing it, each in a slot.
    async fn dispatch(self: Arc<Self>, mut rx: mpsc::Receiver<Entry>, drain: CancellationToken) {
        let mut closing = false;
        loop {
            let entry = tokio::select! {
                biased;
                _ = drain.cancelled(), if !closing => {
                    // Nothing new; what is already handed over still goes out.
                    rx.close();
                    closing = true;
                    continue;
                }
                entry = rx.recv() => entry,
            };
            let Some(entry) = entry else { break };
            let Ok(slot) = self.slots.clone().acquire_owned().await else {
                break;
            };
            self.metrics.fcm_queue_depth.dec();
            if unix_millis() > entry.created_ms + self.start_within_ms {
                // It waited here (behind retries, a backlog) so long that its claim may run
                // out mid-send and the sweep send it too: the sweep sends it instead.
                drop(slot);
                continue;
            }
            let core = self.clone();
            tokio::spawn(async move {
                core.send_one(entry).await;
                drop(slot);
            });
        }
        // Every slot back means every send under way has finished.
        let _ = self.slots.acquire_many(self.max_in_flight).await;
    }

    /// Claims the sends that are due (retries, sends stored without room, and those whose
    /// claimer's lease ran out) as slots free up; refreshes the queue's metrics.
    async fn sweep(self: Arc<Self>, drain: CancellationToken) {
        match self.queue.recover().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                sends = n,
                "push queue: sends left by the previous run are due again"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "push queue: cannot recover the previous run's claims")
            }
        }
        let mut last_stats: Option<Instant> = None;
        let mut busy = false;
        loop {
            if !busy {
                tokio::select! {
                    _ = drain.cancelled() => break,
                    _ = tokio::time::sleep(SWEEP_EVERY) => {}
                    _ = self.wake.notified() => {}
                }
            } else if drain.is_cancelled() {
                break;
            }
            if last_stats.is_none_or(|t| t.elapsed() >= STATS_EVERY) {
                self.refresh_stats().await;
                last_stats = Some(Instant::now());
            }
            busy = false;
            if self.slots.available_permits() == 0 {
                // Every slot is taken: claim again once a quarter of them is free (or after
                // the sleep above), not a sweep period later.
                let quarter = (self.max_in_flight / 4).max(1);
                tokio::select! {
                    _ = drain.cancelled() => break,
                    freed = self.slots.acquire_many(quarter) => drop(freed),
                    _ = tokio::time::sleep(SWEEP_EVERY) => {}
                }
            }
            let free = self.slots.available_permits().min(CLAIM_BATCH);
            if free == 0 {
                continue;
            }
            let lease_end = unix_millis() + self.lease_ms;
            let entries = match self.queue.claim(new_claim(), free, lease_end).await {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(error = %e, "push queue: claiming due sends failed");
                    continue;
                }
            };
            busy = entries.len() == free;
            for entry in entries {
                let Ok(slot) = self.slots.clone().acquire_owned().await else {
                    return;
                };
                let core = self.clone();
                tokio::spawn(async move {
                    core.send_one(entry).await;
                    drop(slot);
                });
            }
        }
    }

    async fn refresh_stats(&self) {
        match self.queue.stats().await {
            Ok(stats) => {
                self.depth.store(stats.depth, Ordering::Relaxed);
                self.metrics
                    .push_queue_depth
                    .set(i64::try_from(stats.depth).unwrap_or(i64::MAX));
                let age = stats
                    .oldest_ms
                    .map_or(0.0, |o| unix_millis().saturating_sub(o) as f64 / 1000.0);
                self.metrics.push_queue_oldest_seconds.set(age);
            }
            Err(e) => tracing::warn!(error = %e, "push queue: cannot read its depth"),
        }
    }

    /// One attempt, then the send is settled or given back to the queue.
    #[tracing::instrument(skip_all, fields(notification_id = %entry.notification.id, user_id = %entry.notification.user_id))]
    async fn send_one(&self, entry: Entry) {
        if unix_millis() >= entry.deadline_ms {
            // Waited past its deadline (a backlog, a node down): FCM would drop it anyway.
            self.metrics.push_abandoned.inc();
            let error = entry
                .last_error
                .clone()
                .unwrap_or_else(|| "deadline_passed".to_string());
            self.settle(&entry, Some(&error)).await;
            return;
        }
        if entry.device.device_id.is_empty() {
            self.look_up(entry).await;
            return;
        }
        let Some(provider) = self.providers.for_device(&entry.device) else {
            // Queued before a restart that removed its app's provider from the configuration.
            tracing::warn!(
                provider = entry.device.provider.as_str(),
                "push: no provider for this device's app any more"
            );
            self.settle(&entry, Some("no_provider")).await;
            return;
        };
        let outcome = provider
            .send(&entry.notification, &entry.device.token)
            .await;
        match outcome {
            Outcome::Accepted => self.settle(&entry, None).await,
            Outcome::RetryAfter { reason, after } => self.retry_later(&entry, reason, after).await,
            Outcome::TokenGone { at } => {
                self.settle(&entry, outcome.error()).await;
                self.prune(&entry.device, at).await;
            }
            Outcome::Invalid { reason } => {
                tracing::warn!(
                    code = reason.as_str(),
                    "the push provider refused the message"
                );
                self.settle(&entry, outcome.error()).await;
            }
            Outcome::AuthFailure => self.settle(&entry, outcome.error()).await,
        }
    }

    /// A send stored before its user's devices could be read: one send per device now, or
    /// the notification `expired` when there is none. Stored before the lookup entry is
    /// removed, so a crash between the two sends nothing twice unless those sends also ended
    /// before the lookup's lease did.
    async fn look_up(&self, entry: Entry) {
        let n = &entry.notification;
        let devices = match self.store.devices_for_user(&n.user_id).await {
            Ok(mut d) => {
                d.retain(|d| self.reaches(n, d));
                d
            }
            Err(e) => {
                tracing::warn!(error = %e, "push: the user's devices still cannot be read");
                self.retry_later(&entry, RetryCause::DeviceRead, None).await;
                return;
            }
        };
        if !devices.is_empty() {
            let put = self
                .queue
                .put(NewSends {
                    notification: n,
                    devices: &devices,
                    claim: None,
                    due_ms: unix_millis(),
                    deadline_ms: entry.deadline_ms,
                })
                .await;
            if let Err(e) = put {
                // Still claimed: looked up again when the lease ends.
                tracing::warn!(error = %e, "push queue: cannot store the sends of a lookup");
                return;
            }
            self.depth
                .fetch_add(devices.len() as u64, Ordering::Relaxed);
            self.wake.notify_one();
        }
        match self.queue.finish(&entry, false).await {
            Ok(Finished::Last { .. }) => {
                self.ledger.set_status(&n.id, Status::Expired);
                self.ledger.release(&n.id);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "push queue: cannot remove a lookup"),
        }
    }

    async fn retry_later(
        &self,
        entry: &Entry,
        cause: impl Into<RetryCause>,
        after: Option<Duration>,
    ) {
        let cause = cause.into();
        let attempts = entry.attempts + 1;
        let wait = self.retry.delay(attempts, after);
        let due = unix_millis() + wait.as_millis() as u64;
        let code = crate::metrics::Label::as_str(cause);
        if !self.retry.may_retry(attempts) || due > entry.deadline_ms {
            tracing::warn!(code, attempts, "push send given up at its deadline");
            self.metrics.push_abandoned.inc();
            self.settle(entry, Some(code)).await;
            return;
        }
        tracing::debug!(code, attempts, ?wait, "push send will be retried");
        match self.queue.retry(entry, due, code).await {
            Ok(true) => {
                self.retries.inc(cause);
                let id = &entry.notification.id;
                self.ledger.set_status(id, Status::FcmRetrying);
                if !entry.device.device_id.is_empty() {
                    self.ledger
                        .set_delivery(id, Delivery::retrying(&entry.device.device_id, code));
                }
            }
            Ok(false) => tracing::debug!("push send taken over by another claim"),
            // Still claimed: due again when the lease ends.
            Err(e) => tracing::warn!(error = %e, "push queue: cannot reschedule a send"),
        }
    }

    /// Removes the send from the queue and records its outcome (`error`: why it did not get
    /// through); the notification's status when it was its last send.
    async fn settle(&self, entry: &Entry, error: Option<&str>) {
        let accepted = error.is_none();
        let mut tries = 0;
        let finished = loop {
            match self.queue.finish(entry, accepted).await {
                Ok(f) => break Some(f),
                Err(e) if tries < 3 => {
                    tries += 1;
                    tracing::warn!(error = %e, "push queue: cannot settle a send; trying again");
                    tokio::time::sleep(Duration::from_millis(200 * tries)).await;
                }
                Err(e) => {
                    // It stays queued: sent again after its lease (the at-least-once window).
                    tracing::error!(error = %e, "push queue: cannot settle a send");
                    break None;
                }
            }
        };
        if finished == Some(Finished::Lost) {
            tracing::debug!("push send settled by another claim");
            return;
        }
        let _ = self
            .depth
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |d| {
                Some(d.saturating_sub(1))
            });
        let id = &entry.notification.id;
        // A lookup (no device yet) has no delivery of its own.
        if !entry.device.device_id.is_empty() {
            self.ledger
                .set_delivery(id, Delivery::push(&entry.device.device_id, error));
        }
        if let Some(Finished::Last { accepted }) = finished {
            let status = if accepted {
                Status::FcmAccepted
            } else {
                Status::FcmFailed
            };
            self.ledger.set_status(id, status);
            self.ledger.release(id);
        }
        if accepted {
            self.metrics.fcm_accepted.inc();
        } else {
            self.metrics.fcm_failed.inc();
        }
    }

    /// Deletes a token its provider called gone; with `at` (since when), only a registration
    /// older than that: one made since is a new install that reuses the token.
    async fn prune(&self, device: &Device, at: Option<SystemTime>) {
        let gone_at = at.map(|t| {
            let ms = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis();
            i64::try_from(ms).unwrap_or(i64::MAX)
        });
        match self
            .store
            .delete_token(device.provider, &device.token, gone_at)
            .await
        {
            Ok(n) => {
                self.metrics.fcm_tokens_pruned.inc_by(n);
                tracing::info!(
                    user_id = %device.user_id,
                    device_id = %device.device_id,
                    "device token gone: device removed"
                );
            }
            Err(e) => tracing::error!(error = %e, "could not prune a device token that is gone"),
        }
    }
}
