//! The single-node ledger: records, tokens, replay buffers and idempotency keys in this
//! process's memory (they end with it, like the memory broker's streams).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use dashmap::DashMap;
use futures::future::{ready, FutureExt};
use parking_lot::Mutex;

use crate::backend::ledger::{
    after, AckResult, Due, IdemBegin, Ledger, LedgerConfig, Owner, Take, CLAIM_BATCH,
    IDEMPOTENCY_TTL_MS,
};
use crate::backend::record::{self, DeliveryChannel, RawRecord, Route, Status};
use crate::backend::BackendFuture;
use crate::metrics::Metrics;
use crate::notification::SharedNotification;
use crate::time::unix_millis;

/// A notification id (a UUIDv7) as a number: 16 bytes instead of a 36-byte string, hashed
/// with foldhash instead of SipHash. A node keeps up to `max_records_in_memory` of them.
type Key = u128;
type Hasher = foldhash::fast::RandomState;

/// `None` for a string that is not a UUID as we write them (lowercase, hyphenated): no
/// notification has it, as in the Redis ledger, whose keys are the strings.
fn key(id: &str) -> Option<Key> {
    if id.len() != 36 || id.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    uuid::Uuid::try_parse(id).ok().map(|u| u.as_u128())
}

fn id_of(key: Key) -> String {
    uuid::Uuid::from_u128(key).to_string()
}

/// A UUIDv7 starts with its Unix time in milliseconds.
fn created_ms(key: Key) -> u64 {
    (key >> 80) as u64
}

/// Kept small: a node retains up to `max_records_in_memory` settled records.
struct Record {
    user: Box<str>,
    created: u64,
    /// Kept while someone may still have to send it (dropped once the status is final).
    payload: Option<SharedNotification>,
    route: Option<Route>,
    status: Status,
    /// The creating producer, as [`owner_index`] (fits in the struct's padding).
    owner: u32,
    deliveries: Box<[Delivery]>,
}

/// A producer's index as a record keeps it (4 billion keys would be needed to collide).
fn owner_index(owner: Owner<'_>) -> u32 {
    u32::try_from(owner.index.0).unwrap_or(u32::MAX)
}

/// One channel's outcome in its stored form ([`record::Delivery::field`] and `value`, as in
/// Redis), which keeps it at 32 bytes.
struct Delivery {
    field: Box<str>,
    outcome: Outcome,
}

impl Delivery {
    fn is_sse(&self, device: &str) -> bool {
        self.field.strip_prefix("sse:") == Some(device)
    }
}

/// A delivery's status, without an allocation when it is a plain status.
enum Outcome {
    Status(Status),
    /// `status:error`, or anything else a caller recorded.
    Other(Box<str>),
}

impl Outcome {
    fn new(value: String) -> Outcome {
        match Status::parse(&value) {
            Some(status) => Outcome::Status(status),
            None => Outcome::Other(value.into_boxed_str()),
        }
    }

    fn as_str(&self) -> &str {
        match self {
            Outcome::Status(s) => s.as_str(),
            Outcome::Other(v) => v,
        }
    }
}

impl Record {
    /// Raises the status (never lowers it); returns the one before.
    fn raise(&mut self, status: Status) -> Status {
        let before = self.status;
        if status.rank() > before.rank() {
            self.status = status;
            if status.is_final() {
                self.payload = None;
            }
        }
        before
    }

    fn set_delivery(&mut self, field: &str, outcome: impl FnOnce() -> Outcome) {
        match self.deliveries.iter_mut().find(|d| &*d.field == field) {
            Some(d) => d.outcome = outcome(),
            None => {
                let mut all = std::mem::take(&mut self.deliveries).into_vec();
                all.push(Delivery {
                    field: field.into(),
                    outcome: outcome(),
                });
                self.deliveries = all.into_boxed_slice();
            }
        }
    }
}

enum Token {
    Due(u64),
    Claimed,
}

#[derive(Default)]
struct Tokens {
    by_deadline: BTreeSet<(u64, Key)>,
    state: HashMap<Key, Token, Hasher>,
}

pub struct MemoryLedger {
    cfg: LedgerConfig,
    records: DashMap<Key, Record, Hasher>,
    /// Record keys in creation order (a record lives `retention_ms` from its id's time).
    record_order: Mutex<VecDeque<Key>>,
    tokens: Mutex<Tokens>,
    /// Per user: (written at, notification), oldest first.
    replay: DashMap<Arc<str>, VecDeque<(u64, SharedNotification)>, Hasher>,
    idem: DashMap<String, (u64, Option<String>), Hasher>,
    /// Idempotency keys in expiry order, which is also creation order: past
    /// `max_idempotency_keys` the front goes first.
    idem_order: Mutex<VecDeque<(u64, String)>>,
    last_replay_sweep: Mutex<u64>,
    metrics: Arc<Metrics>,
}

impl MemoryLedger {
    pub fn new(cfg: LedgerConfig, metrics: Arc<Metrics>) -> MemoryLedger {
        MemoryLedger {
            cfg,
            records: DashMap::with_hasher(Hasher::default()),
            record_order: Mutex::new(VecDeque::new()),
            tokens: Mutex::new(Tokens::default()),
            replay: DashMap::with_hasher(Hasher::default()),
            idem: DashMap::with_hasher(Hasher::default()),
            idem_order: Mutex::new(VecDeque::new()),
            last_replay_sweep: Mutex::new(0),
            metrics,
        }
    }

    /// Queues a new idempotency key for expiry; over the cap, the oldest keys go at once. The
    /// queue also holds keys freed or renewed since (until they reach the front), so its length
    /// bounds the map's.
    fn remember_idem(&self, at: u64, scope: &str) {
        let mut q = self.idem_order.lock();
        q.push_back((at, scope.to_string()));
        while q.len() > self.cfg.max_idempotency_keys {
            let Some((old_at, old)) = q.pop_front() else {
                break;
            };
            if self
                .idem
                .remove_if(&old, |_, (a, _)| *a == old_at)
                .is_some()
            {
                self.metrics.idempotency_evictions.inc();
            }
        }
    }

    fn take_now(&self, id: Key) -> Take {
        let mut t = self.tokens.lock();
        match t.state.get(&id) {
            None => Take::Gone,
            Some(Token::Claimed) => Take::Claimed,
            Some(Token::Due(deadline)) => {
                let deadline = *deadline;
                t.state.remove(&id);
                t.by_deadline.remove(&(deadline, id));
                Take::Taken
            }
        }
    }

    fn raise(&self, id: Key, status: Status) -> Option<Status> {
        Some(self.records.get_mut(&id)?.raise(status))
    }

    fn expire(&self, now: u64) {
        let retention = self.cfg.retention_ms;
        {
            let mut q = self.record_order.lock();
            while q.front().is_some_and(|k| created_ms(*k) + retention <= now) {
                if let Some(k) = q.pop_front() {
                    self.records.remove(&k);
                }
            }
        }
        {
            let mut q = self.idem_order.lock();
            while q.front().is_some_and(|(at, _)| *at <= now) {
                if let Some((_, scope)) = q.pop_front() {
                    self.idem.remove_if(&scope, |_, (at, _)| *at <= now);
                }
            }
        }
        let mut last = self.last_replay_sweep.lock();
        if now.saturating_sub(*last) >= 10_000 {
            *last = now;
            drop(last);
            let oldest = now.saturating_sub(self.cfg.replay_window_ms);
            self.replay.retain(|_, buf| {
                while buf.front().is_some_and(|(at, _)| *at < oldest) {
                    buf.pop_front();
                }
                !buf.is_empty()
            });
        }
    }

    /// The record of `id`; with `owner`, only if that producer created it.
    fn read(&self, id: &str, owner: Option<u32>) -> Option<RawRecord> {
        key(id)
            .and_then(|k| self.records.get(&k))
            .filter(|r| owner.is_none_or(|o| r.owner == o))
            .map(|r| RawRecord {
                id: id.to_string(),
                user_id: r.user.to_string(),
                created_at: r.created,
                route: r.route,
                status: r.status,
                deliveries: r
                    .deliveries
                    .iter()
                    .filter_map(|d| record::Delivery::parse(&d.field, d.outcome.as_str()))
                    .collect(),
            })
    }
}

fn done<T: Send + 'static>(v: T) -> BackendFuture<T> {
    ready(Ok(v)).boxed()
}

impl Ledger for MemoryLedger {
    fn begin(&self, n: &SharedNotification, owner: Owner<'_>) -> BackendFuture<()> {
        let Some(id) = key(&n.id) else {
            // Ids are made by `ids::new_id`: this would be a bug, not an input.
            tracing::error!(id = %n.id, "a notification id that is not a UUID");
            return done(());
        };
        self.records.insert(
            id,
            Record {
                user: n.user_id.as_str().into(),
                created: n.sent_at,
                payload: Some(n.clone()),
                route: None,
                status: Status::Pending,
                owner: owner_index(owner),
                deliveries: Box::new([]),
            },
        );
        {
            let mut q = self.record_order.lock();
            q.push_back(id);
            // Over the cap, the oldest records go before their time. The queue holds every
            // kept record's key (and a forgotten one's until it reaches the front): its length
            // bounds the map's without counting the map's shards on every notification.
            if q.len() > self.cfg.max_records {
                if let Some(old) = q.pop_front() {
                    self.records.remove(&old);
                }
            }
        }
        let deadline = unix_millis() + self.cfg.ack_timeout_ms;
        let mut t = self.tokens.lock();
        t.by_deadline.insert((deadline, id));
        t.state.insert(id, Token::Due(deadline));
        done(())
    }

    fn ordered_with_publish(&self) -> bool {
        true
    }

    fn forget(&self, id: &str) {
        if let Some(id) = key(id) {
            self.take_now(id);
            self.records.remove(&id);
        }
    }

    fn routed(&self, id: &str, route: Route) {
        if let Some(mut r) = key(id).and_then(|id| self.records.get_mut(&id)) {
            r.route = Some(route);
        }
    }

    fn take(&self, id: &str) -> BackendFuture<Take> {
        done(key(id).map_or(Take::Gone, |id| self.take_now(id)))
    }

    fn set_status(&self, id: &str, status: Status) {
        if let Some(id) = key(id) {
            self.raise(id, status);
        }
    }

    fn set_delivery(&self, id: &str, delivery: record::Delivery) {
        if let Some(mut r) = key(id).and_then(|id| self.records.get_mut(&id)) {
            r.set_delivery(&delivery.field(), || Outcome::new(delivery.value()));
        }
    }

    fn written(&self, n: &SharedNotification, device: Option<&str>, ack: bool) {
        if let Some(id) = key(&n.id) {
            if !ack {
                self.take_now(id);
            }
            if let Some(mut r) = self.records.get_mut(&id) {
                r.raise(Status::Delivered);
                let device = device.unwrap_or("");
                let delivered = || Outcome::Status(Status::Delivered);
                // Found without building the field: this runs on every write.
                match r.deliveries.iter_mut().find(|d| d.is_sse(device)) {
                    Some(d) => d.outcome = delivered(),
                    None => r.set_delivery(&record::field(DeliveryChannel::Sse, device), delivered),
                }
            }
        }
        let now = unix_millis();
        let oldest = now.saturating_sub(self.cfg.replay_window_ms);
        let user = n.user_id.as_str();
        let mut buf = match self.replay.get_mut(user) {
            Some(buf) => buf,
            None => self.replay.entry(user.into()).or_default(),
        };
        while buf.front().is_some_and(|(at, _)| *at < oldest)
            || buf.len() >= self.cfg.replay_capacity
        {
            buf.pop_front();
        }
        buf.push_back((now, n.clone()));
    }

    fn replay(&self, user: &str, last_id: &str) -> BackendFuture<Option<Vec<SharedNotification>>> {
        let oldest = unix_millis().saturating_sub(self.cfg.replay_window_ms);
        let entries: Vec<(String, SharedNotification)> = self
            .replay
            .get(user)
            .map(|buf| {
                buf.iter()
                    .filter(|(at, _)| *at >= oldest)
                    .map(|(_, n)| (n.id.clone(), n.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let missed = after(entries, last_id).map(|missed| {
            missed
                .into_iter()
                .filter(|(id, _)| {
                    key(id)
                        .and_then(|id| self.records.get(&id))
                        .is_some_and(|r| !r.status.is_final())
                })
                .map(|(_, n)| n)
                .collect()
        });
        done(missed)
    }

    fn claim_due(&self) -> BackendFuture<Vec<Due>> {
        let now = unix_millis();
        self.expire(now);
        let mut claimed = Vec::new();
        {
            let mut t = self.tokens.lock();
            while claimed.len() < CLAIM_BATCH {
                let Some(first) = t.by_deadline.first() else {
                    break;
                };
                if first.0 > now {
                    break;
                }
                let (_, id) = t.by_deadline.pop_first().expect("checked above");
                t.state.insert(id, Token::Claimed);
                claimed.push(id);
            }
        }
        // One process: a claim cannot outlive its claimer, so claims here have no lease.
        let due = claimed
            .into_iter()
            .map(|id| Due {
                id: id_of(id),
                record: self
                    .records
                    .get(&id)
                    .and_then(|r| Some((r.status, r.payload.clone()?))),
            })
            .collect();
        done(due)
    }

    fn release(&self, id: &str) {
        let Some(id) = key(id) else { return };
        let mut t = self.tokens.lock();
        if matches!(t.state.get(&id), Some(Token::Claimed)) {
            t.state.remove(&id);
        }
    }

    fn ack(&self, user: &str, id: &str) -> BackendFuture<AckResult> {
        let Some(id) = key(id) else {
            return done(AckResult::Unknown);
        };
        let owner = self.records.get(&id).map(|r| &*r.user == user);
        let result = match owner {
            None => AckResult::Unknown,
            Some(false) => AckResult::Foreign,
            Some(true) => match self.take_now(id) {
                Take::Claimed => AckResult::Late,
                Take::Taken | Take::Gone => match self.raise(id, Status::Acked) {
                    Some(before) if before.is_fcm() => AckResult::Late,
                    _ => AckResult::Acked,
                },
            },
        };
        done(result)
    }

    fn record(&self, id: &str, caller: Owner<'_>) -> BackendFuture<Option<RawRecord>> {
        done(self.read(id, Some(owner_index(caller))))
    }

    fn operator_record(&self, id: &str) -> BackendFuture<Option<RawRecord>> {
        done(self.read(id, None))
    }

    fn idem_begin(&self, scope: &str) -> BackendFuture<IdemBegin> {
        let now = unix_millis();
        let result = match self.idem.entry(scope.to_string()) {
            dashmap::Entry::Occupied(e) if e.get().0 > now => match &e.get().1 {
                Some(answer) => IdemBegin::Answer(answer.clone()),
                None => IdemBegin::InFlight,
            },
            entry => {
                let at = now + IDEMPOTENCY_TTL_MS;
                // Inserted (and the map's shard unlocked) before the order queue is locked:
                // `expire` takes the queue's lock, then the map's.
                entry.insert((at, None));
                self.remember_idem(at, scope);
                IdemBegin::New
            }
        };
        done(result)
    }

    fn idem_finish(&self, scope: &str, answer: Option<String>) {
        match answer {
            Some(a) => {
                if let Some(mut e) = self.idem.get_mut(scope) {
                    e.1 = Some(a);
                }
            }
            None => {
                self.idem.remove(scope);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(ack_timeout_ms: u64) -> LedgerConfig {
        LedgerConfig {
            ack_timeout_ms,
            retention_ms: 60_000,
            replay_window_ms: 60_000,
            replay_capacity: 3,
            max_records: 1000,
            max_idempotency_keys: 1000,
        }
    }

    fn ledger(ack_timeout_ms: u64) -> MemoryLedger {
        MemoryLedger::new(config(ack_timeout_ms), Arc::new(Metrics::new()))
    }

    const OWNER: Owner<'static> = Owner {
        index: crate::auth::ProducerId(0),
        name: "p0",
    };

    fn n(user: &str) -> SharedNotification {
        let req: crate::notification::NotifyRequest =
            serde_json::from_str(&format!(r#"{{"user_id":"{user}","data":{{"k":"v"}}}}"#)).unwrap();
        Arc::new(req.accept().unwrap())
    }

    fn now<T>(f: BackendFuture<T>) -> T {
        futures::executor::block_on(f).unwrap()
    }

    #[test]
    fn one_owner_per_token() {
        let l = ledger(0);
        let a = n("u");
        now(l.begin(&a, OWNER));
        let due = now(l.claim_due());
        assert_eq!(due.len(), 1);
        assert_eq!(now(l.take(&a.id)), Take::Claimed);
        assert_eq!(now(l.ack("u", &a.id)), AckResult::Late);
        l.release(&a.id);
        assert_eq!(now(l.take(&a.id)), Take::Gone);

        let l = ledger(60_000);
        let b = n("u");
        now(l.begin(&b, OWNER));
        assert_eq!(now(l.ack("other", &b.id)), AckResult::Foreign);
        assert_eq!(now(l.ack("u", &b.id)), AckResult::Acked);
        assert!(now(l.claim_due()).is_empty());
        assert_eq!(now(l.record(&b.id, OWNER)).unwrap().status, Status::Acked);
    }

    #[test]
    fn replay_after_last_id_skips_final_ones() {
        let l = ledger(60_000);
        let ns: Vec<_> = (0..4).map(|_| n("u")).collect();
        for x in &ns {
            now(l.begin(x, OWNER));
            l.written(x, None, true);
        }
        // Capacity 3: the first one fell out.
        assert!(now(l.replay("u", &ns[0].id)).is_none());
        now(l.ack("u", &ns[2].id));
        let missed = now(l.replay("u", &ns[1].id)).unwrap();
        assert_eq!(missed.len(), 1);
        assert_eq!(missed[0].id, ns[3].id);
    }

    #[test]
    fn records_keep_deliveries_and_respect_the_cap() {
        let l = MemoryLedger::new(
            LedgerConfig {
                max_records: 2,
                ..config(60_000)
            },
            Arc::new(Metrics::new()),
        );
        let ns: Vec<_> = (0..3).map(|_| n("u")).collect();
        for x in &ns {
            now(l.begin(x, OWNER));
        }
        assert!(
            now(l.record(&ns[0].id, OWNER)).is_none(),
            "the oldest went at the cap"
        );
        let id = &ns[2].id;
        let unregistered = record::Delivery::push("tab", Some("unregistered"));
        l.set_delivery(id, unregistered.clone());
        l.written(&ns[2], Some("phone"), false);
        l.written(&ns[2], Some("phone"), false);
        let r = now(l.record(id, OWNER)).unwrap();
        assert_eq!(&r.id, id);
        assert_eq!(r.status, Status::Delivered);
        assert_eq!(
            r.deliveries,
            [unregistered, record::Delivery::sse(Some("phone"))]
        );
        assert_eq!(now(l.take(id)), Take::Gone, "a write without acks took it");
    }

    #[test]
    fn ids_that_are_not_uuids_are_unknown() {
        let l = ledger(0);
        assert_eq!(now(l.take("nope")), Take::Gone);
        assert_eq!(now(l.ack("u", "nope")), AckResult::Unknown);
        assert!(now(l.record("nope", OWNER)).is_none());
        let a = n("u");
        now(l.begin(&a, OWNER));
        assert!(now(l.record(&a.id.to_uppercase(), OWNER)).is_none());
        assert!(now(l.record(&a.id.replace('-', ""), OWNER)).is_none());
        let due = now(l.claim_due());
        assert_eq!(due[0].id, a.id, "the id reads back as it was given");
    }

    #[test]
    fn idempotency_keys() {
        let l = ledger(1);
        assert_eq!(now(l.idem_begin("p:k")), IdemBegin::New);
        assert_eq!(now(l.idem_begin("p:k")), IdemBegin::InFlight);
        l.idem_finish("p:k", Some("{}".into()));
        assert_eq!(now(l.idem_begin("p:k")), IdemBegin::Answer("{}".into()));
        l.idem_finish("p:x", None);
    }

    #[test]
    fn idempotency_keys_past_the_cap_evict_the_oldest() {
        let metrics = Arc::new(Metrics::new());
        let l = MemoryLedger::new(
            LedgerConfig {
                max_idempotency_keys: 2,
                ..config(60_000)
            },
            metrics.clone(),
        );
        for k in ["p:1", "p:2", "p:3"] {
            assert_eq!(now(l.idem_begin(k)), IdemBegin::New);
            l.idem_finish(k, Some(format!("{k}!")));
        }
        assert_eq!(l.idem.len(), 2);
        assert_eq!(now(l.idem_begin("p:3")), IdemBegin::Answer("p:3!".into()));
        assert_eq!(now(l.idem_begin("p:2")), IdemBegin::Answer("p:2!".into()));
        assert_eq!(now(l.idem_begin("p:1")), IdemBegin::New, "the oldest went");
        assert_eq!(now(l.idem_begin("p:1")), IdemBegin::InFlight);
        assert_eq!(l.idem.len(), 2, "and p:1 again pushed out p:2");
        assert!(metrics
            .render()
            .contains("switchboard_idempotency_keys_evicted_total 2"));
    }

    #[test]
    fn a_record_is_readable_by_its_producer_and_operators_only() {
        let l = ledger(60_000);
        let a = n("u");
        now(l.begin(&a, OWNER));
        assert!(now(l.record(&a.id, OWNER)).is_some());
        let other = Owner {
            index: crate::auth::ProducerId(1),
            name: "p1",
        };
        assert!(now(l.record(&a.id, other)).is_none());
        let seen = now(l.operator_record(&a.id)).expect("an operator reads every record");
        assert_eq!(seen.user_id, "u");
    }

    #[test]
    fn the_owner_costs_a_record_no_memory() {
        #[allow(dead_code)]
        struct WithoutOwner {
            user: Box<str>,
            created: u64,
            payload: Option<SharedNotification>,
            route: Option<Route>,
            status: Status,
            deliveries: Box<[Delivery]>,
        }
        assert_eq!(
            std::mem::size_of::<Record>(),
            std::mem::size_of::<WithoutOwner>()
        );
    }
}
