//! The routing decision, and the only place that chooses SSE or FCM: publish to the user's
//! channel; if some node received it, the route is `sse`; otherwise the user's registered
//! devices get it through FCM (`fcm`), or nobody can (`none`). Notifications that reached a
//! node whose stream had just gone come back here through the fallback channel.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::broker::{Broker, BrokerError};
use crate::fcm::{FcmSender, Job, Overloaded};
use crate::metrics::{Metrics, Route};
use crate::notification::{SharedBroadcast, SharedNotification};
use crate::store::{Store, StoreError};
use crate::streams::Fallback;

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Overloaded(#[from] Overloaded),
}

pub struct NotificationRouter {
    broker: Arc<dyn Broker>,
    store: Store,
    fcm: Arc<FcmSender>,
    metrics: Arc<Metrics>,
}

impl NotificationRouter {
    pub fn new(
        broker: Arc<dyn Broker>,
        store: Store,
        fcm: Arc<FcmSender>,
        metrics: Arc<Metrics>,
    ) -> NotificationRouter {
        NotificationRouter {
            broker,
            store,
            fcm,
            metrics,
        }
    }

    /// Routes one accepted notification.
    #[tracing::instrument(skip_all, fields(notification_id = %n.id, user_id = %n.user_id))]
    pub async fn notify(&self, n: SharedNotification) -> Result<Route, RouteError> {
        let receivers = self.broker.publish_user(n.clone()).await.inspect_err(|_| {
            self.metrics.broker_errors.inc();
        })?;
        let route = if receivers > 0 {
            Route::Sse
        } else {
            self.offline(&n, true).await?
        };
        self.metrics.route(route);
        Ok(route)
    }

    /// Sends to every registered device of an offline user. `refuse_when_full` is for the
    /// producer's own request (answer 503, nothing sent); an already accepted notification
    /// waits for room instead.
    async fn offline(
        &self,
        n: &SharedNotification,
        refuse_when_full: bool,
    ) -> Result<Route, RouteError> {
        if !self.fcm.enabled() {
            return Ok(Route::None);
        }
        let devices = self.store.devices_for_user(&n.user_id).await?;
        if devices.is_empty() {
            return Ok(Route::None);
        }
        let jobs = devices
            .into_iter()
            .map(|device| Job {
                notification: n.clone(),
                device,
            })
            .collect();
        if refuse_when_full {
            self.fcm.try_enqueue(jobs).inspect_err(|_| {
                self.metrics.overloaded.inc();
            })?;
        } else {
            self.fcm.enqueue(jobs).await;
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
            tracing::debug!(notification_id = %notification.id, reason, "falling back to FCM");
            if let Err(e) = self.offline(&notification, false).await {
                tracing::error!(notification_id = %notification.id, error = %e, "fallback failed");
            }
        }
    }
}
