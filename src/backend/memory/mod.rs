//! The single-node engine: the broker hands messages straight to the local hub, and the ledger
//! lives in this process's memory (it ends with it, like the streams).

mod broker;
mod ledger;

pub use broker::MemoryBroker;
pub use ledger::MemoryLedger;

use std::sync::Arc;

use super::{Backend, LedgerConfig};
use crate::metrics::Metrics;

pub fn connect(ledger: LedgerConfig, metrics: Arc<Metrics>) -> Backend {
    Backend {
        broker: Arc::new(MemoryBroker::new()),
        ledger: Arc::new(MemoryLedger::new(ledger, metrics)),
    }
}
