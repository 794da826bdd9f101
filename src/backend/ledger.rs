//! Confirmed delivery: the ledger behind the promise that every accepted notification reaches
//! its user through exactly one channel.
//!
//! Each accepted notification gets a **record** (what `GET /v1/notifications/{id}` shows) and a
//! **token** with a deadline (`delivery.ack_timeout_ms`). Whoever takes the token owns the
//! notification's outcome, and only one can:
//! - the publisher, when nobody is online (it sends to FCM);
//! - the node that writes it to a stream opened without `ack` (it is delivered);
//! - `POST /v1/ack` from the user (it is acked);
//! - the node whose stream closed before the write (it sends to FCM at once);
//! - when the deadline passes, the deadline sweep of any node, which claims it with a lease
//!   (so a node that dies while sending does not lose it) and sends it to FCM.
//!
//! A node that dies between receiving and writing loses nothing: the token outlives it (in
//! Redis, in multi-node mode) and the sweep of another node sends it to FCM.
//!
//! The ledger also keeps each user's **replay buffer** (what streams wrote, for `Last-Event-ID`)
//! and the producers' **idempotency keys**. A record is readable only by the producer that
//! created it (its [`Owner`]). [`MemoryLedger`](super::memory::MemoryLedger) serves one node;
//! [`RedisLedger`](super::redis::RedisLedger) many.

use std::sync::Arc;

use super::record::{Delivery, RawRecord, Route, Status};
use super::BackendFuture;
use crate::auth::ProducerId;
use crate::config::DeliveryConfig;
use crate::metrics::Label;
use crate::notification::SharedNotification;

/// How long an idempotency key is remembered (docs/API.md: 24 h).
pub const IDEMPOTENCY_TTL_MS: u64 = 24 * 3600 * 1000;
/// How long a deadline sweep owns a claimed notification before another node may take it
/// over (long enough for FCM's retry budget; a node that died while sending is the only
/// reason it would run out).
pub const CLAIM_LEASE_MS: u64 = 120_000;
/// Most notifications one sweep claims.
pub const CLAIM_BATCH: usize = 1000;

#[derive(Debug, Clone)]
pub struct LedgerConfig {
    pub ack_timeout_ms: u64,
    pub retention_ms: u64,
    pub replay_window_ms: u64,
    pub replay_capacity: usize,
    /// Memory ledger only: most records kept (the oldest go first beyond it).
    pub max_records: usize,
    /// Memory ledger only: most idempotency keys kept (the oldest go first beyond it).
    pub max_idempotency_keys: usize,
}

/// The producer that created a notification: the only caller that may read its record.
#[derive(Debug, Clone, Copy)]
pub struct Owner<'a> {
    /// Its key's place in this node's `auth.producer_keys`: what the memory ledger keeps (one
    /// process, one list; a small number per record).
    pub index: ProducerId,
    /// Its key's non-secret name: what the Redis ledger keeps (the same on every node that has
    /// the key, wherever the key is in the node's list).
    pub name: &'a str,
}

impl LedgerConfig {
    pub fn new(cfg: &DeliveryConfig) -> LedgerConfig {
        LedgerConfig {
            ack_timeout_ms: cfg.ack_timeout_ms,
            retention_ms: cfg.record_retention_secs * 1000,
            replay_window_ms: cfg.replay_window_secs * 1000,
            replay_capacity: cfg.replay_capacity,
            max_records: cfg.max_records_in_memory,
            max_idempotency_keys: cfg.max_idempotency_keys,
        }
    }
}

/// What trying to take a notification's token found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    /// The caller owns the outcome now.
    Taken,
    /// A deadline sweep owns it (its FCM fallback is under way or done).
    Claimed,
    /// Someone took it before (or it never existed).
    Gone,
}

/// A notification whose deadline passed, now owned by this node's sweep.
pub struct Due {
    pub id: String,
    /// `None` when the record is gone (past retention): nothing left to do.
    pub record: Option<(Status, SharedNotification)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdemBegin {
    /// First use of the key: go on, then `idem_finish`.
    New,
    /// The first request's answer (JSON).
    Answer(String),
    /// The first request with this key is still being routed.
    InFlight,
}

/// What an ack found (the `switchboard_acks_total{result}` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckResult {
    Acked,
    /// The ack came after the deadline sweep had claimed it: it went through FCM as well.
    Late,
    Unknown,
    /// Another user's notification: ignored.
    Foreign,
}

impl Label for AckResult {
    const ALL: &'static [AckResult] = &[
        AckResult::Acked,
        AckResult::Late,
        AckResult::Unknown,
        AckResult::Foreign,
    ];

    fn index(self) -> usize {
        self as usize
    }

    fn as_str(self) -> &'static str {
        match self {
            AckResult::Acked => "acked",
            AckResult::Late => "late",
            AckResult::Unknown => "unknown",
            AckResult::Foreign => "foreign",
        }
    }
}

/// Replay buffer entries after `last_id`, first occurrence of each id, in order. `None` when
/// `last_id` is not in the buffer.
pub fn after<T>(entries: Vec<(String, T)>, last_id: &str) -> Option<Vec<(String, T)>> {
    let pos = entries.iter().rposition(|(id, _)| id == last_id)?;
    let mut seen = std::collections::HashSet::new();
    seen.insert(last_id.to_string());
    Some(
        entries
            .into_iter()
            .skip(pos + 1)
            .filter(|(id, _)| seen.insert(id.clone()))
            .collect(),
    )
}

pub trait Ledger: Send + Sync {
    /// Stores the record (`pending`, created by `owner`) and arms the token; resolves once both
    /// are stored, before the notification is published.
    fn begin(&self, n: &SharedNotification, owner: Owner<'_>) -> BackendFuture<()>;
    /// Whether what `begin` writes is stored before a publish issued right after it (without
    /// waiting for `begin`) is: true for the memory ledger and for a Redis ledger sharing the
    /// broker's connection to a single Redis; false on a Redis Cluster, where the record and
    /// the channel may live on different shards.
    fn ordered_with_publish(&self) -> bool;
    /// Drops the record and token of a notification that was refused after all (503).
    fn forget(&self, id: &str);
    /// The routing decision, for the record.
    fn routed(&self, id: &str, route: Route);
    fn take(&self, id: &str) -> BackendFuture<Take>;
    /// Raises the record's status (never lowers it); no-op for an unknown id.
    fn set_status(&self, id: &str, status: Status);
    /// Records one channel's outcome for one device (replacing the one before).
    fn set_delivery(&self, id: &str, delivery: Delivery);
    /// A stream wrote `n`: the record says `delivered`, the replay buffer keeps it, and a
    /// stream without acks takes the token (the write is the end of it).
    fn written(&self, n: &SharedNotification, device: Option<&str>, ack: bool);
    /// What `user`'s streams wrote after `last_id` and that is still undelivered or unacked,
    /// oldest first; `None` when `last_id` is unknown or older than the replay window.
    fn replay(&self, user: &str, last_id: &str) -> BackendFuture<Option<Vec<SharedNotification>>>;
    /// Claims the notifications whose deadline passed (or whose claimer's lease ran out).
    fn claim_due(&self) -> BackendFuture<Vec<Due>>;
    /// The claimed notification's outcome is settled: its token is gone for good.
    fn release(&self, id: &str);
    fn ack(&self, user: &str, id: &str) -> BackendFuture<AckResult>;
    /// The record, if `caller` created it: another producer's record reads as unknown.
    fn record(&self, id: &str, caller: Owner<'_>) -> BackendFuture<Option<RawRecord>>;
    /// The record, whoever created it: for operators (the console), never for producers.
    fn operator_record(&self, id: &str) -> BackendFuture<Option<RawRecord>>;
    fn idem_begin(&self, scope: &str) -> BackendFuture<IdemBegin>;
    /// Stores the answer for the key, or with `None` frees the key (the request failed).
    fn idem_finish(&self, scope: &str, answer: Option<String>);
}

pub type SharedLedger = Arc<dyn Ledger>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_results_are_the_metrics_labels() {
        let labels: Vec<&str> = AckResult::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(labels, ["acked", "late", "unknown", "foreign"]);
    }

    #[test]
    fn after_dedupes_and_finds_the_last_occurrence() {
        let e = |ids: &[&str]| ids.iter().map(|i| (i.to_string(), ())).collect::<Vec<_>>();
        let ids = |v: Option<Vec<(String, ())>>| {
            v.map(|v| v.into_iter().map(|x| x.0).collect::<Vec<_>>())
        };
        assert_eq!(
            ids(after(e(&["a", "b", "c", "b", "d"]), "b")),
            Some(vec!["d".into()])
        );
        assert_eq!(
            ids(after(e(&["a", "b", "c", "c", "d"]), "a")),
            Some(vec!["b".into(), "c".into(), "d".into()])
        );
        assert_eq!(ids(after(e(&["a"]), "z")), None);
    }
}
