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
//! and the producers' **idempotency keys**. [`memory::MemoryLedger`] serves one node;
//! [`redis::RedisLedger`] many.

pub mod memory;
pub mod redis;

use std::sync::Arc;

use serde::Serialize;

use crate::broker::BrokerFuture;
use crate::metrics::Route;
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
}

/// A notification's lifecycle (docs/API.md). `pending` and `delivered` can still change; the
/// others are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pending,
    Delivered,
    Acked,
    FcmAccepted,
    FcmFailed,
    Expired,
}

impl Status {
    pub const ALL: [Status; 6] = [
        Status::Pending,
        Status::Delivered,
        Status::Acked,
        Status::FcmAccepted,
        Status::FcmFailed,
        Status::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Delivered => "delivered",
            Status::Acked => "acked",
            Status::FcmAccepted => "fcm_accepted",
            Status::FcmFailed => "fcm_failed",
            Status::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// Statuses only move up: a final status is never replaced.
    pub fn rank(self) -> u8 {
        match self {
            Status::Pending => 0,
            Status::Delivered => 1,
            _ => 2,
        }
    }

    pub fn is_final(self) -> bool {
        self.rank() == 2
    }

    /// Went (or is going) out through FCM.
    pub fn is_fcm(self) -> bool {
        matches!(self, Status::FcmAccepted | Status::FcmFailed)
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckResult {
    Acked,
    /// The ack came after the deadline sweep had claimed it: it went through FCM as well.
    Late,
    Unknown,
    /// Another user's notification: ignored.
    Foreign,
}

impl AckResult {
    pub fn as_str(self) -> &'static str {
        match self {
            AckResult::Acked => "acked",
            AckResult::Late => "late",
            AckResult::Unknown => "unknown",
            AckResult::Foreign => "foreign",
        }
    }
}

/// A record as both ledgers store it.
#[derive(Debug, Clone)]
pub struct RawRecord {
    pub id: String,
    pub user_id: String,
    pub created_at: u64,
    pub route: Option<String>,
    pub status: Status,
    /// `(channel:device, status[:error])`, e.g. `("sse:phone", "delivered")`,
    /// `("fcm:tablet", "fcm_failed:unregistered")`.
    pub deliveries: Vec<(String, String)>,
}

/// `GET /v1/notifications/{id}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RecordView {
    pub id: String,
    pub user_id: String,
    pub route: Option<String>,
    pub status: Status,
    pub created_at: u64,
    pub deliveries: Vec<DeliveryView>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeliveryView {
    pub device_id: Option<String>,
    pub channel: &'static str,
    pub status: String,
    pub error: Option<String>,
}

impl RawRecord {
    pub fn view(self) -> RecordView {
        let mut deliveries: Vec<DeliveryView> = self
            .deliveries
            .into_iter()
            .filter_map(|(key, value)| {
                let (channel, device) = key.split_once(':')?;
                let channel = match channel {
                    "sse" => "sse",
                    "fcm" => "fcm",
                    _ => return None,
                };
                let (status, error) = match value.split_once(':') {
                    Some((s, e)) => (s.to_string(), Some(e.to_string())),
                    None => (value, None),
                };
                // An ack confirms what the user's streams wrote.
                let status = if channel == "sse" && self.status == Status::Acked {
                    "acked".to_string()
                } else {
                    status
                };
                Some(DeliveryView {
                    device_id: (!device.is_empty()).then(|| device.to_string()),
                    channel,
                    status,
                    error,
                })
            })
            .collect();
        deliveries.sort_by(|a, b| (a.channel, &a.device_id).cmp(&(b.channel, &b.device_id)));
        RecordView {
            id: self.id,
            user_id: self.user_id,
            route: self.route,
            status: self.status,
            created_at: self.created_at,
            deliveries,
        }
    }
}

/// The delivery field a stream's write records.
pub fn sse_field(device: Option<&str>) -> String {
    format!("sse:{}", device.unwrap_or(""))
}

/// The delivery field of one FCM send.
pub fn fcm_field(device: &str) -> String {
    format!("fcm:{device}")
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
    /// Stores the record (`pending`) and arms the token; resolves once both are stored, before
    /// the notification is published.
    fn begin(&self, n: &SharedNotification) -> BrokerFuture<()>;
    /// Whether what `begin` writes is stored before a publish issued right after it (without
    /// waiting for `begin`) is: true for the memory ledger and for a Redis ledger sharing the
    /// broker's connection to a single Redis; false on a Redis Cluster, where the record and
    /// the channel may live on different shards.
    fn ordered_with_publish(&self) -> bool;
    /// Drops the record and token of a notification that was refused after all (503).
    fn forget(&self, id: &str);
    /// The routing decision, for the record.
    fn routed(&self, id: &str, route: Route);
    fn take(&self, id: &str) -> BrokerFuture<Take>;
    /// Raises the record's status (never lowers it); no-op for an unknown id.
    fn set_status(&self, id: &str, status: Status);
    /// Records one channel's outcome (see [`RawRecord::deliveries`]).
    fn set_delivery(&self, id: &str, field: String, value: String);
    /// A stream wrote `n`: the record says `delivered`, the replay buffer keeps it, and a
    /// stream without acks takes the token (the write is the end of it).
    fn written(&self, n: &SharedNotification, device: Option<&str>, ack: bool);
    /// What `user`'s streams wrote after `last_id` and that is still undelivered or unacked,
    /// oldest first; `None` when `last_id` is unknown or older than the replay window.
    fn replay(&self, user: &str, last_id: &str) -> BrokerFuture<Option<Vec<SharedNotification>>>;
    /// Claims the notifications whose deadline passed (or whose claimer's lease ran out).
    fn claim_due(&self) -> BrokerFuture<Vec<Due>>;
    /// The claimed notification's outcome is settled: its token is gone for good.
    fn release(&self, id: &str);
    fn ack(&self, user: &str, id: &str) -> BrokerFuture<AckResult>;
    fn record(&self, id: &str) -> BrokerFuture<Option<RawRecord>>;
    fn idem_begin(&self, scope: &str) -> BrokerFuture<IdemBegin>;
    /// Stores the answer for the key, or with `None` frees the key (the request failed).
    fn idem_finish(&self, scope: &str, answer: Option<String>);
}

pub type SharedLedger = Arc<dyn Ledger>;

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn statuses_only_move_up() {
        assert!(Status::Delivered.rank() > Status::Pending.rank());
        assert!(Status::Acked.is_final() && Status::Expired.is_final());
        assert_eq!(Status::parse("fcm_accepted"), Some(Status::FcmAccepted));
        let view = RawRecord {
            id: "n".into(),
            user_id: "u".into(),
            created_at: 1,
            route: Some("sse".into()),
            status: Status::Acked,
            deliveries: vec![
                ("sse:phone".into(), "delivered".into()),
                ("fcm:tab".into(), "fcm_failed:unregistered".into()),
            ],
        }
        .view();
        assert_eq!(view.deliveries[0].channel, "fcm");
        assert_eq!(view.deliveries[0].error.as_deref(), Some("unregistered"));
        assert_eq!(view.deliveries[1].status, "acked");
    }
}
