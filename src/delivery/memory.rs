//! The single-node ledger: records, tokens, replay buffers and idempotency keys in this
//! process's memory (they end with it, like the memory broker's streams).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use dashmap::DashMap;
use futures::future::{ready, FutureExt};
use parking_lot::Mutex;

use super::{
    after, sse_field, AckResult, Due, IdemBegin, Ledger, LedgerConfig, RawRecord, Status, Take,
    CLAIM_BATCH, IDEMPOTENCY_TTL_MS,
};
use crate::broker::BrokerFuture;
use crate::metrics::Route;
use crate::notification::SharedNotification;
use crate::time::unix_millis;

struct Record {
    user: Box<str>,
    created: u64,
    /// Kept while someone may still have to send it (dropped once the status is final).
    payload: Option<SharedNotification>,
    route: Option<Route>,
    status: Status,
    deliveries: Vec<(String, String)>,
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

    fn set_delivery(&mut self, field: String, value: String) {
        match self.deliveries.iter_mut().find(|(f, _)| *f == field) {
            Some(entry) => entry.1 = value,
            None => self.deliveries.push((field, value)),
        }
    }
}

enum Token {
    Due(u64),
    Claimed,
}

#[derive(Default)]
struct Tokens {
    by_deadline: BTreeSet<(u64, Arc<str>)>,
    state: HashMap<Arc<str>, Token>,
}

enum Expiring {
    Record(Arc<str>),
    Idem(String),
}

pub struct MemoryLedger {
    cfg: LedgerConfig,
    records: DashMap<Arc<str>, Record>,
    tokens: Mutex<Tokens>,
    /// Per user: (written at, notification), oldest first.
    replay: DashMap<Arc<str>, VecDeque<(u64, SharedNotification)>>,
    idem: DashMap<String, (u64, Option<String>)>,
    /// Records and idempotency keys in expiry order (both have one fixed lifetime).
    expiry: Mutex<VecDeque<(u64, Expiring)>>,
    last_replay_sweep: Mutex<u64>,
}

impl MemoryLedger {
    pub fn new(cfg: LedgerConfig) -> MemoryLedger {
        MemoryLedger {
            cfg,
            records: DashMap::new(),
            tokens: Mutex::new(Tokens::default()),
            replay: DashMap::new(),
            idem: DashMap::new(),
            expiry: Mutex::new(VecDeque::new()),
            last_replay_sweep: Mutex::new(0),
        }
    }

    fn take_now(&self, id: &str) -> Take {
        let mut t = self.tokens.lock();
        match t.state.get(id) {
            None => Take::Gone,
            Some(Token::Claimed) => Take::Claimed,
            Some(Token::Due(deadline)) => {
                let deadline = *deadline;
                if let Some((key, _)) = t.state.remove_entry(id) {
                    t.by_deadline.remove(&(deadline, key));
                }
                Take::Taken
            }
        }
    }

    fn raise(&self, id: &str, status: Status) -> Option<Status> {
        Some(self.records.get_mut(id)?.raise(status))
    }

    fn expire(&self, now: u64) {
        let mut q = self.expiry.lock();
        while q.front().is_some_and(|(at, _)| *at <= now) {
            match q.pop_front().map(|(_, e)| e) {
                Some(Expiring::Record(id)) => {
                    self.records.remove(&id);
                }
                Some(Expiring::Idem(scope)) => {
                    self.idem.remove_if(&scope, |_, (at, _)| *at <= now);
                }
                None => {}
            }
        }
        drop(q);
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
}

fn done<T: Send + 'static>(v: T) -> BrokerFuture<T> {
    ready(Ok(v)).boxed()
}

impl Ledger for MemoryLedger {
    fn begin(&self, n: &SharedNotification) -> BrokerFuture<()> {
        let id: Arc<str> = n.id.as_str().into();
        let now = unix_millis();
        self.records.insert(
            id.clone(),
            Record {
                user: n.user_id.as_str().into(),
                created: n.sent_at,
                payload: Some(n.clone()),
                route: None,
                status: Status::Pending,
                deliveries: Vec::new(),
            },
        );
        {
            let mut q = self.expiry.lock();
            q.push_back((now + self.cfg.retention_ms, Expiring::Record(id.clone())));
            // Over the cap, the oldest records go before their time.
            if self.records.len() > self.cfg.max_records {
                while let Some((_, e)) = q.pop_front() {
                    match e {
                        Expiring::Record(old) => {
                            self.records.remove(&old);
                            break;
                        }
                        Expiring::Idem(scope) => {
                            self.idem.remove(&scope);
                        }
                    }
                }
            }
        }
        let deadline = now + self.cfg.ack_timeout_ms;
        let mut t = self.tokens.lock();
        t.by_deadline.insert((deadline, id.clone()));
        t.state.insert(id, Token::Due(deadline));
        done(())
    }

    fn ordered_with_publish(&self) -> bool {
        true
    }

    fn forget(&self, id: &str) {
        self.take_now(id);
        self.records.remove(id);
    }

    fn routed(&self, id: &str, route: Route) {
        if let Some(mut r) = self.records.get_mut(id) {
            r.route = Some(route);
        }
    }

    fn take(&self, id: &str) -> BrokerFuture<Take> {
        done(self.take_now(id))
    }

    fn set_status(&self, id: &str, status: Status) {
        self.raise(id, status);
    }

    fn set_delivery(&self, id: &str, field: String, value: String) {
        if let Some(mut r) = self.records.get_mut(id) {
            r.set_delivery(field, value);
        }
    }

    fn written(&self, n: &SharedNotification, device: Option<&str>, ack: bool) {
        if !ack {
            self.take_now(&n.id);
        }
        if let Some(mut r) = self.records.get_mut(n.id.as_str()) {
            r.raise(Status::Delivered);
            r.set_delivery(sse_field(device), "delivered".into());
        }
        let now = unix_millis();
        let oldest = now.saturating_sub(self.cfg.replay_window_ms);
        let mut buf = self.replay.entry(n.user_id.as_str().into()).or_default();
        while buf.front().is_some_and(|(at, _)| *at < oldest)
            || buf.len() >= self.cfg.replay_capacity
        {
            buf.pop_front();
        }
        buf.push_back((now, n.clone()));
    }

    fn replay(&self, user: &str, last_id: &str) -> BrokerFuture<Option<Vec<SharedNotification>>> {
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
                    self.records
                        .get(id.as_str())
                        .is_some_and(|r| !r.status.is_final())
                })
                .map(|(_, n)| n)
                .collect()
        });
        done(missed)
    }

    fn claim_due(&self) -> BrokerFuture<Vec<Due>> {
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
                t.state.insert(id.clone(), Token::Claimed);
                claimed.push(id);
            }
        }
        // One process: a claim cannot outlive its claimer, so claims here have no lease.
        let due = claimed
            .into_iter()
            .map(|id| Due {
                id: id.to_string(),
                record: self
                    .records
                    .get(&id)
                    .and_then(|r| Some((r.status, r.payload.clone()?))),
            })
            .collect();
        done(due)
    }

    fn release(&self, id: &str) {
        let mut t = self.tokens.lock();
        if matches!(t.state.get(id), Some(Token::Claimed)) {
            t.state.remove(id);
        }
    }

    fn ack(&self, user: &str, id: &str) -> BrokerFuture<AckResult> {
        let owner = self.records.get(id).map(|r| &*r.user == user);
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

    fn record(&self, id: &str) -> BrokerFuture<Option<RawRecord>> {
        let raw = self.records.get(id).map(|r| RawRecord {
            id: id.to_string(),
            user_id: r.user.to_string(),
            created_at: r.created,
            route: r.route.map(|x| x.as_str().to_string()),
            status: r.status,
            deliveries: r.deliveries.clone(),
        });
        done(raw)
    }

    fn idem_begin(&self, scope: &str) -> BrokerFuture<IdemBegin> {
        let now = unix_millis();
        let result = match self.idem.entry(scope.to_string()) {
            dashmap::Entry::Occupied(e) if e.get().0 > now => match &e.get().1 {
                Some(answer) => IdemBegin::Answer(answer.clone()),
                None => IdemBegin::InFlight,
            },
            entry => {
                let at = now + IDEMPOTENCY_TTL_MS;
                entry.insert((at, None));
                self.expiry
                    .lock()
                    .push_back((at, Expiring::Idem(scope.to_string())));
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

    fn ledger(ack_timeout_ms: u64) -> MemoryLedger {
        MemoryLedger::new(LedgerConfig {
            ack_timeout_ms,
            retention_ms: 60_000,
            replay_window_ms: 60_000,
            replay_capacity: 3,
            max_records: 1000,
        })
    }

    fn n(user: &str) -> SharedNotification {
        let req: crate::notification::NotifyRequest =
            serde_json::from_str(&format!(r#"{{"user_id":"{user}","data":{{"k":"v"}}}}"#)).unwrap();
        Arc::new(req.accept().unwrap())
    }

    fn now<T>(f: BrokerFuture<T>) -> T {
        futures::executor::block_on(f).unwrap()
    }

    #[test]
    fn one_owner_per_token() {
        let l = ledger(0);
        let a = n("u");
        now(l.begin(&a));
        let due = now(l.claim_due());
        assert_eq!(due.len(), 1);
        assert_eq!(now(l.take(&a.id)), Take::Claimed);
        assert_eq!(now(l.ack("u", &a.id)), AckResult::Late);
        l.release(&a.id);
        assert_eq!(now(l.take(&a.id)), Take::Gone);

        let l = ledger(60_000);
        let b = n("u");
        now(l.begin(&b));
        assert_eq!(now(l.ack("other", &b.id)), AckResult::Foreign);
        assert_eq!(now(l.ack("u", &b.id)), AckResult::Acked);
        assert!(now(l.claim_due()).is_empty());
        assert_eq!(now(l.record(&b.id)).unwrap().status, Status::Acked);
    }

    #[test]
    fn replay_after_last_id_skips_final_ones() {
        let l = ledger(60_000);
        let ns: Vec<_> = (0..4).map(|_| n("u")).collect();
        for x in &ns {
            now(l.begin(x));
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
    fn idempotency_keys() {
        let l = ledger(1);
        assert_eq!(now(l.idem_begin("p:k")), IdemBegin::New);
        assert_eq!(now(l.idem_begin("p:k")), IdemBegin::InFlight);
        l.idem_finish("p:k", Some("{}".into()));
        assert_eq!(now(l.idem_begin("p:k")), IdemBegin::Answer("{}".into()));
        l.idem_finish("p:x", None);
    }
}
