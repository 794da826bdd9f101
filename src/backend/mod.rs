//! Where notifications travel between nodes: the [`Broker`] (presence and cross-node
//! delivery) and the [`Ledger`] (records, ack deadlines, replay buffers, idempotency), one pair
//! per engine, chosen by [`Backend::connect`]. [`record`] is what a ledger's record says.
//!
//! Engines: [`memory`] (one node, nothing outlives the process) and [`redis`] (several nodes,
//! Redis or Redis Cluster). A new engine (NATS, say) lives in `backend/<engine>/`: it
//! implements both traits, and `Backend::connect` gets a branch for it.

pub mod broker;
pub mod ledger;
pub mod memory;
pub mod record;
pub mod redis;

pub use broker::{Broker, Channel, Connection, Inbound};
pub use ledger::{AckResult, Due, IdemBegin, Ledger, LedgerConfig, Owner, SharedLedger, Take};
pub use record::{Delivery, DeliveryChannel, RawRecord, RecordView, Route, Status};

use std::sync::Arc;

use futures::future::BoxFuture;

use crate::config::{BrokerKind, Config};
use crate::metrics::Metrics;
use crate::redact::{redact_secrets, redact_url};

/// Every failure of a backend: the engine behind it did not answer (in time).
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendError {
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    /// The engine could not be reached at start: the node does not start. Both fields are
    /// redacted (no password of the URL in either).
    #[error("{error} (broker.redis_url = {url})")]
    Connect { url: String, error: String },
}

/// What every backend operation that waits for an answer returns.
pub type BackendFuture<T> = BoxFuture<'static, Result<T, BackendError>>;

/// The broker and the ledger of one engine.
#[derive(Clone)]
pub struct Backend {
    pub broker: Arc<dyn Broker>,
    pub ledger: SharedLedger,
}

impl Backend {
    /// Connects the engine that `broker.kind` names (failing fast if it cannot be reached) and
    /// starts its background tasks.
    pub async fn connect(
        config: &Config,
        node_id: Arc<str>,
        metrics: Arc<Metrics>,
    ) -> Result<Backend, BackendError> {
        let ledger = LedgerConfig::new(&config.delivery);
        match config.broker.kind {
            BrokerKind::Memory => Ok(memory::connect(ledger, metrics)),
            BrokerKind::Redis => redis::connect(&config.broker, ledger, node_id, metrics)
                .await
                .map_err(|e| {
                    let url = &config.broker.redis_url;
                    BackendError::Connect {
                        url: redact_url(url),
                        error: redact_secrets(&e.to_string(), url),
                    }
                }),
        }
    }
}
