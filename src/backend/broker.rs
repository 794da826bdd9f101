//! The broker: presence registry and cross-node delivery. A node subscribes to a user's channel
//! while it holds at least one of that user's streams, so "is the user online?" and "deliver it"
//! are one publish whose receiver count is the routing decision.
//!
//! Implementations: [`MemoryBroker`](super::memory::MemoryBroker) (one node) and
//! [`RedisBroker`](super::redis::RedisBroker) (several).

use std::sync::{Arc, Weak};

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::BackendFuture;
use crate::figures::Figures;
use crate::notification::{SharedBroadcast, SharedNotification};

/// A broker channel: one per user (unicast) and one per topic (broadcast).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Channel {
    User(Arc<str>),
    Topic(Arc<str>),
}

/// One live stream as presence reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Connection {
    pub device_id: Option<String>,
    pub node_id: String,
    /// Unix ms.
    pub connected_at: u64,
}

/// Where a broker hands the messages that reach this node (the local stream hub).
pub trait Inbound: Send + Sync {
    /// A notification for `user`. Returns whether a local stream took it. With `remote`, the
    /// publisher has already answered `route: sse`, so a user who just left must be served
    /// through the fallback path here.
    fn user_message(&self, notification: SharedNotification, remote: bool) -> bool;
    /// A broadcast; returns how many local streams it was queued to.
    fn topic_message(&self, broadcast: SharedBroadcast) -> usize;
    /// This node's streams of `user`.
    fn local_connections(&self, user: &str) -> Vec<Connection>;
}

pub trait Broker: Send + Sync {
    /// Connects the broker to the hub that receives its messages (done once, at build).
    fn attach(&self, inbound: Weak<dyn Inbound>);
    /// Publishes to the user's channel; resolves to the number of nodes that received it.
    fn publish_user(&self, notification: SharedNotification) -> BackendFuture<u64>;
    /// Publishes to a topic's channel; resolves to the number of nodes that received it.
    fn publish_topic(&self, broadcast: SharedBroadcast) -> BackendFuture<u64>;
    /// Starts receiving a channel. Called in order with `unsubscribe` for the same channel (the
    /// hub calls both under its per-user lock), and the order is kept on the wire.
    fn subscribe(&self, channel: Channel) -> BackendFuture<()>;
    fn unsubscribe(&self, channel: Channel);
    /// Records (or with `None`, removes) the readable presence entry of one stream.
    fn set_presence(&self, user: &Arc<str>, stream_id: u64, connection: Option<Connection>);
    /// Every live stream of `user`, on every node.
    fn presence(&self, user: &str) -> BackendFuture<Vec<Connection>>;
    /// Publishes this node's figures to every node's console (the memory broker: to this
    /// node's own).
    fn publish_figures(&self, figures: Arc<Figures>) -> BackendFuture<()>;
    /// The latest figures of every node that published lately, this one included.
    fn figures(&self) -> Vec<Arc<Figures>>;
    /// Answers when the broker is reachable (`/readyz`).
    fn ping(&self) -> BackendFuture<()>;
    /// Writes what is pending and withdraws this node (after its streams have closed).
    fn shutdown(&self) -> BoxFuture<'static, ()>;
}
