//! The Redis broker: one sharded pub/sub channel per user and per topic. SPUBLISH's answer —
//! how many subscribers (nodes) got the message — is the routing decision, in one round trip,
//! auto-pipelined across concurrent requests. Sharded pub/sub spreads channels over a Redis
//! Cluster's shards with the same code.
//!
//! Two connections: the publisher (SPUBLISH, presence records; shared with the ledger) and a
//! subscriber (RESP3, whose SSUBSCRIBE set `subscriptions.rs` keeps in order and restores after
//! every reconnect).

use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use fred::prelude::*;
use futures::future::FutureExt;
use tokio::sync::broadcast::error::RecvError;

use super::presence::Presence;
use super::subscriptions::Subscriptions;
use super::{client, unavailable, Names};
use crate::backend::{BackendError, BackendFuture, Broker, Channel, Connection, Inbound};
use crate::config::BrokerConfig;
use crate::figures::{Board, Figures};
use crate::metrics::Metrics;
use crate::notification::{Broadcast, Notification, SharedBroadcast, SharedNotification};

pub struct RedisBroker {
    publisher: Client,
    names: Names,
    subscriptions: Subscriptions,
    presence: Presence,
    inbound: Arc<OnceLock<Weak<dyn Inbound>>>,
    /// Every node's latest figures, as the figures channel brought them.
    board: Arc<Board>,
}

impl RedisBroker {
    /// Connects the subscriber (failing fast if Redis cannot be reached) and starts the
    /// subscription, message and presence tasks. `publisher` is connected already.
    pub(super) async fn connect(
        cfg: &BrokerConfig,
        publisher: Client,
        clustered: bool,
        node_id: Arc<str>,
        metrics: Arc<Metrics>,
    ) -> Result<RedisBroker, BackendError> {
        let subscriber = client(cfg)?;
        subscriber.init().await.map_err(unavailable)?;
        let names = Names::new(&cfg.namespace);
        let inbound: Arc<OnceLock<Weak<dyn Inbound>>> = Arc::new(OnceLock::new());
        let board = Arc::new(Board::default());
        tokio::spawn(dispatch(
            subscriber.message_rx(),
            names.clone(),
            Receivers {
                inbound: inbound.clone(),
                board: board.clone(),
            },
            metrics.clone(),
        ));
        let subscriptions = Subscriptions::start(subscriber, clustered, metrics.clone());
        // Kept in the subscription set, so it is restored after every reconnect like the rest.
        subscriptions
            .subscribe(names.figures_channel.clone())
            .await?;
        let presence = Presence::start(
            publisher.clone(),
            names.clone(),
            node_id,
            Duration::from_secs(cfg.presence_ttl_secs),
        )
        .await?;
        Ok(RedisBroker {
            publisher,
            names,
            subscriptions,
            presence,
            inbound,
            board,
        })
    }
}

/// SPUBLISH; resolves to the number of subscribed nodes.
fn spublish(publisher: &Client, channel: String, payload: Bytes) -> BackendFuture<u64> {
    let publisher = publisher.clone();
    async move {
        let receivers: i64 = publisher
            .spublish(channel, payload)
            .await
            .map_err(unavailable)?;
        Ok(receivers.max(0) as u64)
    }
    .boxed()
}

impl Broker for RedisBroker {
    fn attach(&self, inbound: Weak<dyn Inbound>) {
        let _ = self.inbound.set(inbound);
    }

    fn publish_user(&self, n: SharedNotification) -> BackendFuture<u64> {
        let channel = self
            .names
            .channel(&Channel::User(n.user_id.as_str().into()));
        spublish(&self.publisher, channel, n.json())
    }

    fn publish_topic(&self, b: SharedBroadcast) -> BackendFuture<u64> {
        let channel = self.names.channel(&Channel::Topic(b.topic.as_str().into()));
        let payload = serde_json::to_vec(&*b).expect("serialising a broadcast cannot fail");
        spublish(&self.publisher, channel, Bytes::from(payload))
    }

    fn subscribe(&self, channel: Channel) -> BackendFuture<()> {
        self.subscriptions.subscribe(self.names.channel(&channel))
    }

    fn unsubscribe(&self, channel: Channel) {
        self.subscriptions.unsubscribe(self.names.channel(&channel));
    }

    fn set_presence(&self, user: &Arc<str>, stream_id: u64, connection: Option<Connection>) {
        self.presence.set(user, stream_id, connection);
    }

    fn presence(&self, user: &str) -> BackendFuture<Vec<Connection>> {
        self.presence.read(user)
    }

    fn publish_figures(&self, figures: Arc<Figures>) -> BackendFuture<()> {
        // Its own are shown even while Redis is away.
        self.board.put(figures.clone());
        let payload = serde_json::to_vec(&*figures).expect("serialising figures cannot fail");
        let published = spublish(
            &self.publisher,
            self.names.figures_channel.clone(),
            Bytes::from(payload),
        );
        async move { published.await.map(|_| ()) }.boxed()
    }

    fn figures(&self) -> Vec<Arc<Figures>> {
        self.board.fresh()
    }

    fn ping(&self) -> BackendFuture<()> {
        let publisher = self.publisher.clone();
        async move {
            let _: String = publisher.ping(None).await.map_err(unavailable)?;
            Ok(())
        }
        .boxed()
    }

    fn shutdown(&self) -> futures::future::BoxFuture<'static, ()> {
        let presence = self.presence.clone();
        let subscriptions = self.subscriptions.clone();
        async move {
            presence.shutdown().await;
            subscriptions.shutdown().await;
        }
        .boxed()
    }
}

/// Where the subscriber's messages go: notifications and broadcasts to the hub, nodes'
/// figures to the board.
struct Receivers {
    inbound: Arc<OnceLock<Weak<dyn Inbound>>>,
    board: Arc<Board>,
}

/// Hands every message the subscriber receives to the hub (or, figures, to the board).
async fn dispatch(
    mut rx: tokio::sync::broadcast::Receiver<fred::types::Message>,
    names: Names,
    receivers: Receivers,
    metrics: Arc<Metrics>,
) {
    let Receivers { inbound, board } = receivers;
    loop {
        let msg = match rx.recv().await {
            Ok(m) => m,
            Err(RecvError::Lagged(n)) => {
                metrics.broker_messages_lost.inc_by(n);
                tracing::error!(
                    lost = n,
                    "broker messages were dropped: the dispatcher fell behind"
                );
                continue;
            }
            Err(RecvError::Closed) => break,
        };
        let channel: &str = &msg.channel;
        let Some(payload) = msg.value.into_bytes() else {
            continue;
        };
        if channel == names.figures_channel {
            match serde_json::from_slice::<Figures>(&payload) {
                Ok(f) => board.put(Arc::new(f)),
                Err(e) => tracing::warn!(error = %e, "undecodable figures on the broker"),
            }
            continue;
        }
        let Some(hub) = inbound.get().and_then(Weak::upgrade) else {
            continue;
        };
        if channel.starts_with(&names.user_prefix) {
            // The received bytes stay with it: the ledger stores them without serialising again.
            match Notification::from_json(payload) {
                Ok(n) => {
                    hub.user_message(Arc::new(n), true);
                }
                Err(e) => {
                    tracing::warn!(error = %e, channel, "undecodable notification on the broker")
                }
            }
        } else if channel.starts_with(&names.topic_prefix) {
            match serde_json::from_slice::<Broadcast>(&payload) {
                Ok(b) => {
                    hub.topic_message(Arc::new(b));
                }
                Err(e) => {
                    tracing::warn!(error = %e, channel, "undecodable broadcast on the broker")
                }
            }
        }
    }
}
