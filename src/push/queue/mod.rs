//! The durable push queue: every (notification, device) send is stored here before the notify
//! answers, and removed only once the provider's answer settles it, so that no send lives only
//! in a node's memory.
//!
//! - **Claims with a lease.** A sender owns a send by claiming it: the entry's due time moves
//!   to the lease's end and it carries the claim's token. A node that dies mid-send loses
//!   nothing: at the lease's end the entry is due again and any node (the restarted one, on one
//!   node) claims it. Ending a send (removing it, or giving it back with its next due time)
//!   checks the token atomically, so two nodes never both record one send.
//! - **Batches.** The sends of one notification share a batch that counts those left and
//!   those accepted: when the last ends, the notification gets its final status
//!   (`fcm_accepted` if any device accepted it).
//! - **The at-least-once window.** A send is removed after the provider accepted it. A node
//!   that dies between the two (or whose lease runs out while the provider takes longer than
//!   the lease to answer) leaves it to be sent again: `push.lease_secs` is therefore well above
//!   `fcm.request_timeout_secs`.
//!
//! Engines: [`sql`] (one node: the store's database, SQLite or PostgreSQL) and [`redis`]
//! (several nodes). [`open`] chooses, with the broker: the queue lives where the ledger does.

mod redis;
mod sql;

use std::sync::Arc;

use futures::future::BoxFuture;

use crate::config::{BrokerKind, Config};
use crate::notification::SharedNotification;
use crate::store::{Device, Store};

pub use crate::store::Finished;

/// The queue's engine did not answer.
#[derive(Debug, Clone, thiserror::Error)]
#[error("push queue unavailable: {0}")]
pub struct QueueError(pub String);

pub type QueueFuture<T> = BoxFuture<'static, Result<T, QueueError>>;

/// One send, as a claim returns it.
pub struct Entry {
    pub notification: SharedNotification,
    pub device: Device,
    /// Attempts made so far.
    pub attempts: u32,
    /// Unix ms.
    pub created_ms: u64,
    /// Unix ms: past it the send is given up.
    pub deadline_ms: u64,
    /// The provider's last answer, for the record when it is given up.
    pub last_error: Option<String>,
    /// The claim that holds it (checked when it ends).
    pub claim: Arc<str>,
}

/// What `GET /v1/notifications/{id}` shows of a notification's sends still queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Attempts so far, over all of its devices.
    pub attempts: u32,
    /// Unix ms of the next attempt; `None` while every send is under way.
    pub next_attempt_at: Option<u64>,
}

/// Depth and age.
#[derive(Debug, Clone, Copy, Default)]
pub struct QueueStats {
    pub depth: u64,
    /// Unix ms of the oldest entry's creation.
    pub oldest_ms: Option<u64>,
}

/// A notification's sends to store.
pub struct NewSends<'a> {
    pub notification: &'a SharedNotification,
    pub devices: &'a [Device],
    /// Held by this claim until `due_ms` (the caller sends them now); otherwise due at `due_ms`.
    pub claim: Option<&'a str>,
    pub due_ms: u64,
    pub deadline_ms: u64,
}

pub trait PushQueue: Send + Sync {
    /// Stores a notification's sends; a send already queued is kept as it is (a notification
    /// handed over twice, by two deadline sweeps, is queued once). Returns the device ids of
    /// the sends stored now: only those may be sent under `sends.claim`.
    fn put(&self, sends: NewSends<'_>) -> QueueFuture<Vec<String>>;
    /// Claims up to `limit` sends due now, each held by `claim` until `lease_end_ms`.
    fn claim(&self, claim: Arc<str>, limit: usize, lease_end_ms: u64) -> QueueFuture<Vec<Entry>>;
    /// Ends a send held by `entry.claim`.
    fn finish(&self, entry: &Entry, accepted: bool) -> QueueFuture<Finished>;
    /// Gives a send held by `entry.claim` back, due at `due_ms`, with one more attempt and
    /// `error`; false if another claim holds it now.
    fn retry(&self, entry: &Entry, due_ms: u64, error: &str) -> QueueFuture<bool>;
    fn stats(&self) -> QueueFuture<QueueStats>;
    /// `None` when none of its sends is queued.
    fn progress(&self, id: &str) -> QueueFuture<Option<Progress>>;
    /// At start: drops the claims that only a previous run of this node can hold (one node);
    /// a shared queue leaves them to their leases.
    fn recover(&self) -> QueueFuture<u64>;
}

pub type SharedQueue = Arc<dyn PushQueue>;

/// The queue beside the configured ledger: Redis with the Redis broker, else the store's
/// database.
pub async fn open(config: &Config, store: Store) -> Result<SharedQueue, QueueError> {
    match config.broker.kind {
        BrokerKind::Memory => Ok(Arc::new(sql::SqlQueue::new(store))),
        BrokerKind::Redis => Ok(Arc::new(redis::RedisQueue::connect(&config.broker).await?)),
    }
}

/// Sums what the queue holds of one notification's sends: (attempts, due ms, claimed) each.
fn progress_of(rows: impl IntoIterator<Item = (u32, u64, bool)>) -> Option<Progress> {
    let mut found = false;
    let mut attempts = 0u32;
    let mut next: Option<u64> = None;
    for (a, due, claimed) in rows {
        found = true;
        attempts = attempts.saturating_add(a);
        if !claimed {
            next = Some(next.map_or(due, |n| n.min(due)));
        }
    }
    found.then_some(Progress {
        attempts,
        next_attempt_at: next,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_sums_attempts_and_takes_the_earliest_waiting_send() {
        assert_eq!(progress_of([]), None);
        assert_eq!(
            progress_of([(2, 500, false), (1, 300, false), (3, 100, true)]),
            Some(Progress {
                attempts: 6,
                next_attempt_at: Some(300)
            })
        );
        assert_eq!(
            progress_of([(0, 100, true)]),
            Some(Progress {
                attempts: 0,
                next_attempt_at: None
            })
        );
    }
}
