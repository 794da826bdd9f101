//! The routing decision, and the only place that chooses SSE or push: publish to the user's
//! channel; if some node received it, the route is `sse`; otherwise the user's registered
//! devices get it through the push sender (route `fcm`), or nobody can (`none`).
//! Notifications that reached a node whose stream had just gone come back here through the
//! fallback channel.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::backend::{AckResult, BackendError, Broker, Owner, Route, SharedLedger, Status, Take};
use crate::ids::{NotificationId, UserId};
use crate::inbox::Inbox;
use crate::metrics::{Counters, Label, Metrics};
use crate::notification::{SharedBroadcast, SharedNotification};
use crate::push::queue::{Progress, QueueError};
use crate::push::{Overloaded, Sender, SubmitError};
use crate::store::{Store, StoreError};
use crate::streams::{Fallback, FallbackReason};

/// Whether a routing to push still has to write the notification's inbox copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InboxCopy {
    /// The notify's own routing: eagerly when a push will be sent, lazily when none will.
    Write,
    /// A fallback: the notify's routing to a stream wrote it.
    Written,
}

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error(transparent)]
    Broker(#[from] BackendError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Overloaded(#[from] Overloaded),
    #[error(transparent)]
    Queue(#[from] QueueError),
}

impl From<SubmitError> for RouteError {
    fn from(e: SubmitError) -> RouteError {
        match e {
            SubmitError::Overloaded(o) => RouteError::Overloaded(o),
            SubmitError::Queue(q) => RouteError::Queue(q),
        }
    }
}

pub struct NotificationRouter {
    broker: Arc<dyn Broker>,
    ledger: SharedLedger,
    store: Store,
    push: Arc<Sender>,
    /// Every notification accepted for a user is appended to the user's inbox.
    inbox: Arc<Inbox>,
    metrics: Arc<Metrics>,
    routes: Counters<Route>,
    acks: Counters<AckResult>,
}

impl NotificationRouter {
    pub fn new(
        broker: Arc<dyn Broker>,
        ledger: SharedLedger,
        store: Store,
        push: Arc<Sender>,
        inbox: Arc<Inbox>,
        metrics: Arc<Metrics>,
    ) -> NotificationRouter {
        NotificationRouter {
            broker,
            ledger,
            store,
            push,
            inbox,
            routes: metrics.routes.counters(),
            acks: metrics.acks.counters(),
            metrics,
        }
    }

    pub fn ledger(&self) -> &SharedLedger {
        &self.ledger
    }

    /// What the durable push queue holds of notification `id`'s sends.
    pub async fn push_progress(&self, id: &NotificationId) -> Result<Option<Progress>, QueueError> {
        self.push.progress(id).await
    }

    /// The user confirms receipt of notification `id` (counted by what the ledger found).
    pub async fn ack(&self, user: &UserId, id: &NotificationId) -> Result<AckResult, BackendError> {
        let result = self.ledger.ack(user, id).await?;
        self.acks.inc(result);
        if result == AckResult::Acked {
            // Acked in time: its deadline will not send it through FCM.
            self.metrics.fcm_sends_avoided.inc();
        }
        Ok(result)
    }

    /// Routes one accepted notification from `owner`: its record and token first (so that it
    /// survives any node from here on), then the publish whose receiver count is the decision.
    #[tracing::instrument(skip_all, fields(notification_id = %n.id, user_id = %n.user_id))]
    pub async fn notify(
        &self,
        n: SharedNotification,
        owner: Owner<'_>,
    ) -> Result<Route, RouteError> {
        let published = if self.ledger.ordered_with_publish() {
            // One round trip: the record and token are written before the publish on the same
            // connection, so whoever receives it finds them.
            let (begun, published) = futures::join!(
                self.ledger.begin(&n, owner),
                self.broker.publish_user(n.clone())
            );
            match (begun, published) {
                (Err(e), Ok(r)) if r > 0 => {
                    // Delivered live, but its record may be missing: answer what happened.
                    self.metrics.broker_errors.inc();
                    tracing::warn!(notification_id = %n.id, error = %e, "delivered without a delivery record");
                    Ok(r)
                }
                (Err(e), _) => Err(e),
                (Ok(()), published) => published,
            }
        } else {
            match self.ledger.begin(&n, owner).await {
                Ok(()) => self.broker.publish_user(n.clone()).await,
                Err(e) => Err(e),
            }
        };
        let receivers = published.map_err(|e| self.refused(&n, e))?;
        // Accepted from here on (a refusal below is the push queue's, after this point).
        let route = if receivers > 0 {
            // The stream carries the content: the inbox copy is written without waiting, and
            // may wait a little for others to share its transaction.
            self.inbox.keep(&n);
            Route::Sse
        } else {
            // Nobody else can hold the token yet: its deadline is ack_timeout away.
            if let Err(e) = self.ledger.take(&n.id).await {
                return Err(self.refused(&n, e));
            }
            match self.offline(&n, true, InboxCopy::Write).await {
                Ok(route) => route,
                Err(e) => {
                    self.ledger.forget(&n.id);
                    return Err(e);
                }
            }
        };
        self.ledger.routed(&n.id, route);
        self.routes.inc(route);
        Ok(route)
    }

    /// The notify is refused (503): whatever part of its record and token still reaches the
    /// ledger must never count.
    fn refused(&self, n: &SharedNotification, e: BackendError) -> RouteError {
        self.metrics.broker_errors.inc();
        self.ledger.forget(&n.id);
        e.into()
    }

    /// Sends to every registered device of a user who is not reached over a stream, for a
    /// notification whose token the caller owns: its sends are stored in the durable push
    /// queue. `refuse_when_full` is for the producer's own request (answer 503, nothing sent,
    /// when the queue is over `push.queue_max`); an already accepted notification is stored
    /// whatever the queue's depth. With no device, the notification is settled as `expired`.
    /// `copy`: whether its inbox copy is still to be written (the notify's own routing).
    async fn offline(
        &self,
        n: &SharedNotification,
        refuse_when_full: bool,
        copy: InboxCopy,
    ) -> Result<Route, RouteError> {
        let devices = if self.push.enabled() {
            match self.store.devices_for_user(&n.user_id).await {
                Ok(devices) => self.push.reachable(n, devices),
                // Accepted already: the queue reads them again later.
                Err(e) if !refuse_when_full => {
                    tracing::warn!(notification_id = %n.id, error = %e, "cannot read the user's devices: queued for a later lookup");
                    self.push.submit_lookup(n).await?;
                    return Ok(Route::Fcm);
                }
                Err(e) => return Err(e.into()),
            }
        } else {
            Vec::new()
        };
        if devices.is_empty() {
            if copy == InboxCopy::Write {
                // No push will carry its id: nobody waits for this copy.
                self.inbox.keep(n);
            }
            self.ledger.set_status(&n.id, Status::Expired);
            self.ledger.release(&n.id);
            return Ok(Route::None);
        }
        if refuse_when_full && self.push.refuses(devices.len()) {
            // Checked before the inbox copy is handed over, so that a refused notify leaves
            // nothing behind (`submit` checks again: the bound is not exact under a race).
            self.metrics.overloaded.inc();
            return Err(Overloaded.into());
        }
        let submitted = match copy {
            InboxCopy::Written => self.push.submit(n, devices, refuse_when_full).await,
            InboxCopy::Write => {
                // A push may carry only the id, which the app looks up in the inbox: it is
                // sent once the inbox holds it. When the inbox shares the push queue's
                // writer, its row is written no later than the sends are stored (it is
                // handed over first); otherwise the push waits for it.
                let stored = self.inbox.append(n);
                let stored = if self.inbox.stored_before_push() {
                    stored
                } else {
                    futures::FutureExt::boxed(futures::future::ready(stored.await))
                };
                let (submitted, stored) =
                    futures::join!(self.push.submit(n, devices, refuse_when_full), stored);
                if !stored && submitted.is_ok() {
                    tracing::warn!(notification_id = %n.id, "pushing a notification the inbox could not store");
                }
                submitted
            }
        };
        if let Err(e) = submitted {
            if matches!(e, SubmitError::Overloaded(_)) {
                self.metrics.overloaded.inc();
            }
            return Err(e.into());
        }
        Ok(Route::Fcm)
    }

    pub async fn broadcast(&self, b: SharedBroadcast) -> Result<(), RouteError> {
        self.metrics.broadcasts.inc();
        self.broker.publish_topic(b).await.inspect_err(|_| {
            self.metrics.broker_errors.inc();
        })?;
        Ok(())
    }

    /// Serves notifications whose stream went away after the routing decision.
    pub async fn run_fallback(
        self: Arc<Self>,
        mut rx: mpsc::UnboundedReceiver<Fallback>,
        stop: CancellationToken,
    ) {
        loop {
            let fallback = tokio::select! {
                f = rx.recv() => f,
                _ = stop.cancelled() => {
                    // Take what is already queued, then stop.
                    rx.close();
                    rx.recv().await
                }
            };
            let Some(Fallback {
                notification,
                reason,
            }) = fallback
            else {
                break;
            };
            self.fall_back(notification, reason).await;
        }
    }

    /// A stream could not take a notification: whoever holds its token decides; if that is
    /// nobody else, it goes to FCM now.
    async fn fall_back(&self, n: SharedNotification, reason: FallbackReason) {
        let take = match self.ledger.take(&n.id).await {
            Ok(t) => t,
            Err(e) => {
                // The token stays in Redis: if it cannot be taken, the deadline sweep of
                // some node will send it once Redis answers again.
                self.metrics.broker_errors.inc();
                tracing::warn!(notification_id = %n.id, error = %e, "fallback: cannot take the token; leaving it to the deadline sweep");
                return;
            }
        };
        if take != Take::Taken {
            return;
        }
        tracing::debug!(notification_id = %n.id, reason = reason.as_str(), "falling back to FCM");
        if let Err(e) = self.offline(&n, false, InboxCopy::Written).await {
            tracing::error!(notification_id = %n.id, error = %e, "fallback failed");
        }
    }

    /// Every `every`, claims the notifications whose deadline passed unacked (or unwritten)
    /// and sends them to FCM.
    pub async fn run_deadlines(
        self: Arc<Self>,
        every: std::time::Duration,
        stop: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            loop {
                let due = match self.ledger.claim_due().await {
                    Ok(d) => d,
                    Err(e) => {
                        tracing::warn!(error = %e, "deadline sweep failed");
                        break;
                    }
                };
                let full = due.len() >= crate::backend::ledger::CLAIM_BATCH;
                for d in due {
                    match d.record {
                        Some((status, n)) if !status.is_final() => {
                            self.metrics.ack_timeouts.inc();
                            tracing::debug!(notification_id = %n.id, status = status.as_str(), "ack timeout: sending to FCM");
                            if let Err(e) = self.offline(&n, false, InboxCopy::Written).await {
                                // Left claimed: the lease runs out and a sweep retries it.
                                tracing::error!(notification_id = %n.id, error = %e, "ack-timeout fallback failed");
                            }
                        }
                        _ => self.ledger.release(&d.id),
                    }
                }
                if !full {
                    break;
                }
            }
        }
    }
}
