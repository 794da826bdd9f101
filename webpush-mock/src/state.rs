//! The shared state of one mock: configuration, subscriptions, gone subscriptions, recorded
//! messages, injected faults, latency and counters.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::push::Urgency;
use crate::subscription::Subscription;
use crate::vapid::VapidClaims;

/// Tunables of a mock.
#[derive(Debug, Clone)]
pub struct Config {
    /// The VAPID public key (raw uncompressed P-256 point, 65 bytes) every push must carry in
    /// `k`; `None` accepts any key. A subscription created with its own
    /// `application_server_key` accepts only that key either way.
    pub vapid_public_key: Option<Vec<u8>>,
    /// Base URL of the endpoints and of their origin (`aud`), e.g. `http://push.test:4002`;
    /// `http://<listener address>` when `None`.
    pub public_url: Option<String>,
    /// How many messages `GET /_mock/messages` keeps (the oldest are dropped first).
    pub max_recorded: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            vapid_public_key: None,
            public_url: None,
            max_recorded: 100_000,
        }
    }
}

/// One accepted message, as `GET /_mock/messages` lists it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Recorded {
    /// The message id, last segment of `location`.
    pub id: String,
    /// The `Location` answered.
    pub location: String,
    pub subscription: String,
    pub endpoint: String,
    /// The decrypted payload when it is UTF-8; `null` for an empty push or binary data.
    pub plaintext: Option<String>,
    /// The decrypted payload, base64url; `null` for an empty push.
    pub plaintext_base64url: Option<String>,
    pub ttl: u64,
    pub urgency: Urgency,
    pub topic: Option<String>,
    pub vapid: VapidClaims,
    /// Every request header but `authorization`, lower-case names.
    pub headers: BTreeMap<String, String>,
    /// Unix time in milliseconds.
    pub received_at: u64,
}

/// A programmed failure of the next `count` authenticated pushes (`POST /_mock/faults`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Fault {
    pub status: u16,
    #[serde(default = "one")]
    pub count: u32,
    pub retry_after_secs: Option<u64>,
}

fn one() -> u32 {
    1
}

/// Counters of `GET /_mock/stats`.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Stats {
    /// Pushes answered 201.
    pub accepted: u64,
    /// Pushes answered with an error.
    pub rejected: u64,
    /// Subscriptions created.
    pub subscriptions: u64,
}

/// Everything the handlers share; one per mock, behind an `Arc`.
pub(crate) struct MockState {
    /// `http://host:port`, no trailing slash.
    pub base_url: String,
    /// The origin of `base_url`: the `aud` every VAPID token must name.
    pub audience: String,
    pub vapid_public_key: Option<Vec<u8>>,
    subscriptions: Mutex<HashMap<String, Arc<Subscription>>>,
    /// Subscription ids answered with 404 or 410.
    gone: Mutex<HashMap<String, u16>>,
    faults: Mutex<VecDeque<Fault>>,
    latency_ms: AtomicU64,
    messages: Mutex<VecDeque<Recorded>>,
    max_recorded: usize,
    accepted: AtomicU64,
    rejected: AtomicU64,
}

impl MockState {
    pub(crate) fn new(base_url: String, config: Config) -> Self {
        let base_url = base_url.trim_end_matches('/').to_owned();
        let audience = origin(&base_url);
        Self {
            base_url,
            audience,
            vapid_public_key: config.vapid_public_key,
            subscriptions: Mutex::default(),
            gone: Mutex::default(),
            faults: Mutex::default(),
            latency_ms: AtomicU64::new(0),
            messages: Mutex::default(),
            max_recorded: config.max_recorded,
            accepted: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
        }
    }

    pub(crate) fn add_subscription(&self, subscription: Subscription) -> Arc<Subscription> {
        let subscription = Arc::new(subscription);
        lock(&self.subscriptions).insert(subscription.id.clone(), subscription.clone());
        subscription
    }

    pub(crate) fn subscription(&self, id: &str) -> Option<Arc<Subscription>> {
        lock(&self.subscriptions).get(id).cloned()
    }

    pub(crate) fn mark_gone(&self, ids: Vec<String>, status: u16) {
        let mut gone = lock(&self.gone);
        for id in ids {
            gone.insert(id, status);
        }
    }

    pub(crate) fn clear_gone(&self) {
        lock(&self.gone).clear();
    }

    pub(crate) fn gone_status(&self, id: &str) -> Option<u16> {
        lock(&self.gone).get(id).copied()
    }

    pub(crate) fn push_fault(&self, fault: Fault) {
        if fault.count > 0 {
            lock(&self.faults).push_back(fault);
        }
    }

    pub(crate) fn clear_faults(&self) {
        lock(&self.faults).clear();
    }

    /// Consumes one unit of the first programmed fault, if any.
    pub(crate) fn take_fault(&self) -> Option<Fault> {
        let mut faults = lock(&self.faults);
        let front = faults.front_mut()?;
        front.count -= 1;
        if front.count == 0 {
            faults.pop_front()
        } else {
            Some(front.clone())
        }
    }

    pub(crate) fn set_latency(&self, ms: u64) {
        self.latency_ms.store(ms, Ordering::Relaxed);
    }

    pub(crate) fn latency(&self) -> Option<Duration> {
        match self.latency_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }

    pub(crate) fn record(&self, recorded: Recorded) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        if self.max_recorded == 0 {
            return;
        }
        let mut messages = lock(&self.messages);
        if messages.len() >= self.max_recorded {
            messages.pop_front();
        }
        messages.push_back(recorded);
    }

    pub(crate) fn count_rejected(&self) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn messages(&self) -> Vec<Recorded> {
        lock(&self.messages).iter().cloned().collect()
    }

    pub(crate) fn clear_messages(&self) {
        lock(&self.messages).clear();
    }

    pub(crate) fn stats(&self) -> Stats {
        Stats {
            accepted: self.accepted.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            subscriptions: lock(&self.subscriptions).len() as u64,
        }
    }
}

/// `scheme://authority` of a URL: everything before the first `/` after `://`.
fn origin(url: &str) -> String {
    let authority_start = url.find("://").map_or(0, |i| i + 3);
    match url[authority_start..].find('/') {
        Some(path_start) => url[..authority_start + path_start].to_owned(),
        None => url.to_owned(),
    }
}

/// Locks a mutex; a panic in another handler must not take the mock down with it.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Unix time in milliseconds.
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
