//! The Redis broker (fred): one sharded pub/sub channel per user and per topic. SPUBLISH's
//! answer — how many subscribers (nodes) got the message — is the routing decision, in one
//! round trip, auto-pipelined across concurrent requests. Sharded pub/sub spreads channels over
//! a Redis Cluster's shards with the same code (`redis-cluster://` URLs).
//!
//! Two connections: a publisher (SPUBLISH, presence records) and a subscriber (RESP3, whose
//! SSUBSCRIBE set `subscriptions.rs` keeps in order and restores after every reconnect).

pub mod ledger;
mod presence;
mod subscriptions;

use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use fred::prelude::*;
use fred::types::config::{
    Config as RedisConfig, ConnectionConfig, PerformanceConfig, ReconnectPolicy,
};
use fred::types::RespVersion;
use futures::future::FutureExt;
use tokio::sync::broadcast::error::RecvError;

use crate::backend::broker::{Broker, BrokerError, BrokerFuture, Channel, Connection, Inbound};
use crate::config::BrokerConfig;
use crate::metrics::Metrics;
use crate::notification::{Broadcast, Notification, SharedBroadcast, SharedNotification};
use presence::Presence;
use subscriptions::Subscriptions;

/// Channel and key names under the configured namespace.
#[derive(Clone)]
pub struct Names {
    user_prefix: String,
    topic_prefix: String,
    presence_prefix: String,
    node_prefix: String,
}

impl Names {
    fn new(ns: &str) -> Names {
        Names {
            user_prefix: format!("{ns}:u:"),
            topic_prefix: format!("{ns}:t:"),
            presence_prefix: format!("{ns}:p:"),
            node_prefix: format!("{ns}:n:"),
        }
    }

    fn channel(&self, c: &Channel) -> String {
        match c {
            Channel::User(u) => format!("{}{u}", self.user_prefix),
            Channel::Topic(t) => format!("{}{t}", self.topic_prefix),
        }
    }

    fn presence_key(&self, user: &str) -> String {
        format!("{}{user}", self.presence_prefix)
    }

    fn node_key(&self, node: &str) -> String {
        format!("{}{node}", self.node_prefix)
    }
}

pub struct RedisBroker {
    publisher: Client,
    names: Names,
    subscriptions: Subscriptions,
    presence: Presence,
    inbound: Arc<OnceLock<Weak<dyn Inbound>>>,
}

fn unavailable(e: impl std::fmt::Display) -> BrokerError {
    BrokerError::Unavailable(e.to_string())
}

/// A fred client for `cfg` (RESP3, fail-fast, bounded command time, reconnecting), not yet
/// connected.
pub fn client(cfg: &BrokerConfig) -> Result<Client, BrokerError> {
    let mut config = RedisConfig::from_url(&cfg.redis_url).map_err(unavailable)?;
    config.version = RespVersion::RESP3;
    config.fail_fast = true;
    let timeout = Duration::from_millis(cfg.command_timeout_ms);
    Builder::from_config(config)
        .with_performance_config(|p: &mut PerformanceConfig| {
            p.default_command_timeout = timeout;
            // Pub/sub messages wait here for the dispatcher; a lagging receiver would lose them.
            p.broadcast_channel_capacity = 1 << 16;
        })
        .with_connection_config(|c: &mut ConnectionConfig| {
            c.connection_timeout = Duration::from_secs(2);
            c.internal_command_timeout = Duration::from_secs(2);
            c.max_command_attempts = 2;
        })
        .set_policy(ReconnectPolicy::new_exponential(0, 100, 2_000, 2))
        .build()
        .map_err(unavailable)
}

impl RedisBroker {
    /// The publishing connection: the delivery ledger shares it, so that a notification's
    /// record reaches Redis before its publish on the same connection.
    pub fn publisher(&self) -> Client {
        self.publisher.clone()
    }

    /// Connects both clients (failing fast if Redis cannot be reached) and starts the
    /// subscription, message and presence tasks.
    pub async fn connect(
        cfg: &BrokerConfig,
        node_id: Arc<str>,
        metrics: Arc<Metrics>,
    ) -> Result<RedisBroker, BrokerError> {
        let publisher = client(cfg)?;
        let subscriber = client(cfg)?;
        publisher.init().await.map_err(unavailable)?;
        subscriber.init().await.map_err(unavailable)?;
        let names = Names::new(&cfg.namespace);
        let inbound: Arc<OnceLock<Weak<dyn Inbound>>> = Arc::new(OnceLock::new());
        tokio::spawn(dispatch(
            subscriber.message_rx(),
            names.clone(),
            inbound.clone(),
            metrics.clone(),
        ));
        let clustered = cfg.redis_url.contains("-cluster://");
        let subscriptions = Subscriptions::start(subscriber, clustered, metrics.clone());
        let presence = Presence::start(
            publisher.clone(),
            names.clone(),
            node_id,
            Duration::from_secs(cfg.presence_ttl_secs),
        )
        .await?;
        tracing::info!(url = %crate::redact::redact_url(&cfg.redis_url), clustered, "connected to Redis");
        Ok(RedisBroker {
            publisher,
            names,
            subscriptions,
            presence,
            inbound,
        })
    }
}

/// SPUBLISH; resolves to the number of subscribed nodes.
fn spublish(publisher: &Client, channel: String, payload: Bytes) -> BrokerFuture<u64> {
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

    fn publish_user(&self, n: SharedNotification) -> BrokerFuture<u64> {
        let channel = self
            .names
            .channel(&Channel::User(n.user_id.as_str().into()));
        spublish(&self.publisher, channel, n.json())
    }

    fn publish_topic(&self, b: SharedBroadcast) -> BrokerFuture<u64> {
        let channel = self.names.channel(&Channel::Topic(b.topic.as_str().into()));
        let payload = serde_json::to_vec(&*b).expect("serialising a broadcast cannot fail");
        spublish(&self.publisher, channel, Bytes::from(payload))
    }

    fn subscribe(&self, channel: Channel) -> BrokerFuture<()> {
        self.subscriptions.subscribe(self.names.channel(&channel))
    }

    fn unsubscribe(&self, channel: Channel) {
        self.subscriptions.unsubscribe(self.names.channel(&channel));
    }

    fn set_presence(&self, user: &Arc<str>, stream_id: u64, connection: Option<Connection>) {
        self.presence.set(user, stream_id, connection);
    }

    fn presence(&self, user: &str) -> BrokerFuture<Vec<Connection>> {
        self.presence.read(user)
    }

    fn ping(&self) -> BrokerFuture<()> {
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

/// Hands every message the subscriber receives to the hub.
async fn dispatch(
    mut rx: tokio::sync::broadcast::Receiver<fred::types::Message>,
    names: Names,
    inbound: Arc<OnceLock<Weak<dyn Inbound>>>,
    metrics: Arc<Metrics>,
) {
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
        let Some(hub) = inbound.get().and_then(Weak::upgrade) else {
            continue;
        };
        let channel: &str = &msg.channel;
        let Some(payload) = msg.value.into_bytes() else {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let n = Names::new("sb");
        assert_eq!(n.channel(&Channel::User("u1".into())), "sb:u:u1");
        assert_eq!(n.channel(&Channel::Topic("chat".into())), "sb:t:chat");
    }
}
