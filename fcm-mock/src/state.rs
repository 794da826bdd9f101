//! The shared state of one mock: issued tokens, recorded messages, injected faults and counters.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::key::ServiceAccount;

/// Lifetime of an access token, as Google reports it in `expires_in`.
pub(crate) const TOKEN_LIFETIME_SECS: u64 = 3599;

/// Tunables of a mock that tests and benchmarks may want to change.
#[derive(Debug, Clone)]
pub struct Config {
    /// How many sent messages `GET /_mock/messages` keeps (the oldest are dropped first), so a
    /// long benchmark does not grow memory without bound. `GET /_mock/stats` counts them all.
    pub max_recorded: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_recorded: 100_000,
        }
    }
}

/// One accepted send, as `GET /_mock/messages` lists it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Recorded {
    /// `projects/{project}/messages/{id}`, as answered to the sender.
    pub name: String,
    /// The `message` object exactly as received.
    pub message: Value,
    /// Unix time in milliseconds.
    pub received_at: u64,
}

/// A programmed failure of the next `count` sends (`POST /_mock/faults`).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Fault {
    /// HTTP status to answer: 400, 401, 403, 404, 429, 500 or 503.
    pub status: u16,
    /// How many sends fail so; default 1.
    #[serde(default = "one")]
    pub count: u32,
    /// Adds `Retry-After: S`.
    pub retry_after_secs: Option<u64>,
    /// Each send meets this fault with this probability (default 1); `count` counts the
    /// sends that did.
    pub ratio: Option<f64>,
    /// Overrides the `FcmError.errorCode` Google would use for `status`.
    pub error_code: Option<String>,
    /// Overrides the error `message`.
    pub message: Option<String>,
}

fn one() -> u32 {
    1
}

/// Counters of `GET /_mock/stats`.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Stats {
    /// Sends answered 200 and recorded (validate_only sends are not counted).
    pub accepted: u64,
    /// Sends answered with any error (401, validation, unregistered, injected faults).
    pub rejected: u64,
    /// Access tokens issued by `POST /token`.
    pub tokens_issued: u64,
}

/// Everything the handlers share; one per mock, behind an `Arc`.
pub(crate) struct MockState {
    /// The service account whose assertions `/token` accepts.
    pub account: ServiceAccount,
    /// Issued access tokens and when each expires; read on every send.
    tokens: RwLock<HashMap<String, Instant>>,
    /// Registration tokens that answer 404 UNREGISTERED.
    unregistered: RwLock<HashSet<String>>,
    /// Programmed failures, consumed front first.
    faults: Mutex<VecDeque<Fault>>,
    /// Delay added to every send, in milliseconds.
    latency_ms: AtomicU64,
    /// Accepted messages, newest last, at most `max_recorded`.
    messages: Mutex<VecDeque<Recorded>>,
    max_recorded: usize,
    accepted: AtomicU64,
    rejected: AtomicU64,
    tokens_issued: AtomicU64,
    /// Makes message ids unique across mocks started in the same microsecond.
    id_nonce: u32,
    id_counter: AtomicU64,
}

impl MockState {
    pub(crate) fn new(account: ServiceAccount, config: &Config) -> Self {
        Self {
            account,
            tokens: RwLock::default(),
            unregistered: RwLock::default(),
            faults: Mutex::default(),
            latency_ms: AtomicU64::new(0),
            messages: Mutex::default(),
            max_recorded: config.max_recorded,
            accepted: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            tokens_issued: AtomicU64::new(0),
            id_nonce: rand::random(),
            id_counter: AtomicU64::new(0),
        }
    }

    /// Creates and remembers a new access token valid for [`TOKEN_LIFETIME_SECS`].
    pub(crate) fn issue_token(&self) -> String {
        let mut raw = [0u8; 32];
        rand::fill(&mut raw);
        let token = format!(
            "ya29.mock.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
        );
        let now = Instant::now();
        let expires = now + Duration::from_secs(TOKEN_LIFETIME_SECS);
        let mut tokens = self.tokens.write().unwrap_or_else(PoisonError::into_inner);
        // Clients fetch a token about once an hour; dropping expired ones here keeps the map small.
        tokens.retain(|_, expiry| *expiry > now);
        tokens.insert(token.clone(), expires);
        self.tokens_issued.fetch_add(1, Ordering::Relaxed);
        token
    }

    /// True when `token` was issued here, not revoked, and has not expired.
    pub(crate) fn token_is_valid(&self, token: &str) -> bool {
        let tokens = self.tokens.read().unwrap_or_else(PoisonError::into_inner);
        tokens
            .get(token)
            .is_some_and(|expiry| *expiry > Instant::now())
    }

    /// Forgets every issued token, as if each had expired.
    pub(crate) fn revoke_tokens(&self) {
        self.tokens
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    pub(crate) fn mark_unregistered(&self, tokens: impl IntoIterator<Item = String>) {
        let mut set = self
            .unregistered
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        set.extend(tokens);
    }

    pub(crate) fn clear_unregistered(&self) {
        self.unregistered
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    pub(crate) fn is_unregistered(&self, token: &str) -> bool {
        let set = self
            .unregistered
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        !set.is_empty() && set.contains(token)
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
        if let Some(ratio) = front.ratio {
            use rand::RngExt;
            if !rand::rng().random_bool(ratio.clamp(0.0, 1.0)) {
                return None;
            }
        }
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

    /// A new unique message resource id, shaped like Google's (`0:<micros>%<hex>`).
    pub(crate) fn next_message_id(&self) -> String {
        let n = self.id_counter.fetch_add(1, Ordering::Relaxed);
        format!("0:{}%{:08x}{:08x}", unix_micros(), self.id_nonce, n)
    }

    pub(crate) fn record(&self, name: String, message: Value) {
        let recorded = Recorded {
            name,
            message,
            received_at: unix_micros() / 1000,
        };
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
            tokens_issued: self.tokens_issued.load(Ordering::Relaxed),
        }
    }
}

/// Locks a mutex; a panic in another handler must not take the mock down with it.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}
