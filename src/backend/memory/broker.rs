//! The single-node broker: publishing hands the message straight to the local hub, whose
//! registry of streams is the subscription list.

use std::sync::{Arc, OnceLock, Weak};

use futures::future::{ready, FutureExt};

use crate::backend::{BackendFuture, Broker, Channel, Connection, Inbound};
use crate::figures::{Board, Figures};
use crate::notification::{SharedBroadcast, SharedNotification};

#[derive(Default)]
pub struct MemoryBroker {
    inbound: OnceLock<Weak<dyn Inbound>>,
    /// This node's figures: the only node there is.
    board: Board,
}

impl MemoryBroker {
    pub fn new() -> MemoryBroker {
        MemoryBroker::default()
    }

    fn with_inbound<T: Default>(&self, f: impl FnOnce(&dyn Inbound) -> T) -> T {
        match self.inbound.get().and_then(Weak::upgrade) {
            Some(inbound) => f(inbound.as_ref()),
            None => T::default(),
        }
    }
}

impl Broker for MemoryBroker {
    fn attach(&self, inbound: Weak<dyn Inbound>) {
        let _ = self.inbound.set(inbound);
    }

    fn publish_user(&self, notification: SharedNotification) -> BackendFuture<u64> {
        let delivered = self.with_inbound(|i| i.user_message(notification, false));
        ready(Ok(u64::from(delivered))).boxed()
    }

    fn publish_topic(&self, broadcast: SharedBroadcast) -> BackendFuture<u64> {
        let streams = self.with_inbound(|i| i.topic_message(broadcast));
        ready(Ok(u64::from(streams > 0))).boxed()
    }

    fn subscribe(&self, _channel: Channel) -> BackendFuture<()> {
        ready(Ok(())).boxed()
    }

    fn unsubscribe(&self, _channel: Channel) {}

    fn publish_figures(&self, figures: Arc<Figures>) -> BackendFuture<()> {
        self.board.put(figures);
        ready(Ok(())).boxed()
    }

    fn figures(&self) -> Vec<Arc<Figures>> {
        self.board.fresh()
    }

    fn set_presence(&self, _user: &Arc<str>, _stream_id: u64, _c: Option<Connection>) {}

    fn presence(&self, user: &str) -> BackendFuture<Vec<Connection>> {
        let connections = self.with_inbound(|i| i.local_connections(user));
        ready(Ok(connections)).boxed()
    }

    fn ping(&self) -> BackendFuture<()> {
        ready(Ok(())).boxed()
    }

    fn shutdown(&self) -> futures::future::BoxFuture<'static, ()> {
        ready(()).boxed()
    }
}
