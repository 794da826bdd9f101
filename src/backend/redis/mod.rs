//! The multi-node engine on Redis ≥ 7 (fred): the broker on sharded pub/sub, the ledger in keys
//! that outlive any node. `redis-cluster://` URLs reach a Redis Cluster with the same code.
//!
//! One publishing connection serves both: on a single Redis, the ledger's record of a
//! notification reaches Redis before the publish that follows it on that connection, so the
//! router can send both without waiting between them (see `Ledger::ordered_with_publish`).

mod broker;
mod keys;
mod ledger;
mod presence;
mod subscriptions;
mod writer;

pub use broker::RedisBroker;
pub use ledger::RedisLedger;

use std::sync::Arc;
use std::time::Duration;

use fred::prelude::*;
use fred::types::config::{
    Config as RedisConfig, ConnectionConfig, PerformanceConfig, ReconnectPolicy,
};
use fred::types::RespVersion;

use super::{Backend, BackendError, Channel, LedgerConfig};
use crate::config::BrokerConfig;
use crate::metrics::Metrics;

/// Connects to Redis (failing fast if it cannot be reached) and starts the broker's and the
/// ledger's tasks.
pub async fn connect(
    cfg: &BrokerConfig,
    ledger: LedgerConfig,
    node_id: Arc<str>,
    metrics: Arc<Metrics>,
) -> Result<Backend, BackendError> {
    let clustered = cfg.redis_url.contains("-cluster://");
    let publisher = client(cfg)?;
    publisher.init().await.map_err(unavailable)?;
    let broker =
        RedisBroker::connect(cfg, publisher.clone(), clustered, node_id, metrics.clone()).await?;
    // On a cluster the record and the channel may live on different shards: no order between them.
    let ledger = RedisLedger::start(publisher, !clustered, &cfg.namespace, ledger, metrics);
    tracing::info!(url = %crate::redact::redact_url(&cfg.redis_url), clustered, "connected to Redis");
    Ok(Backend {
        broker: Arc::new(broker),
        ledger: Arc::new(ledger),
    })
}

/// Channel and key names under the configured namespace.
#[derive(Clone)]
struct Names {
    user_prefix: String,
    topic_prefix: String,
    presence_prefix: String,
    node_prefix: String,
    /// Where every node publishes its figures once a second, for the consoles.
    figures_channel: String,
}

impl Names {
    fn new(ns: &str) -> Names {
        Names {
            user_prefix: format!("{ns}:u:"),
            topic_prefix: format!("{ns}:t:"),
            presence_prefix: format!("{ns}:p:"),
            node_prefix: format!("{ns}:n:"),
            figures_channel: format!("{ns}:figures"),
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

fn unavailable(e: impl std::fmt::Display) -> BackendError {
    BackendError::Unavailable(e.to_string())
}

/// A fred client for `cfg` (RESP3, fail-fast, bounded command time, reconnecting), not yet
/// connected.
pub(crate) fn client(cfg: &BrokerConfig) -> Result<Client, BackendError> {
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
