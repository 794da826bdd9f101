//! The shared state of one mock: configuration, recorded notifications, unregistered device
//! tokens, injected faults, latency and counters.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::Value;

use crate::key::ProviderKey;
use crate::reason::{ApnsError, Reason};
use crate::request::PushType;

/// How the mock is set up: the provider key it trusts, the apps it delivers to, its tunables.
pub struct Config {
    /// The key id, team id and public key provider tokens must be signed with.
    pub key: ProviderKey,
    /// Bundle ids `apns-topic` may name (with the push type's suffix); at least one.
    pub bundle_ids: Vec<String>,
    /// The least time between two provider tokens on one connection, measured between their
    /// `iat` claims (Apple: 20 minutes). Tests may shorten it.
    pub token_update_interval: Duration,
    /// How many accepted notifications `GET /_mock/messages` keeps (the oldest are dropped).
    pub max_recorded: usize,
}

impl Config {
    /// A configuration with Apple's 20-minute token interval and room for 100 000 messages.
    pub fn new(key: ProviderKey, bundle_ids: Vec<String>) -> Self {
        Self {
            key,
            bundle_ids,
            token_update_interval: Duration::from_secs(20 * 60),
            max_recorded: 100_000,
        }
    }
}

/// One accepted notification, as `GET /_mock/messages` lists it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Recorded {
    pub apns_id: String,
    pub device_token: String,
    pub topic: String,
    pub push_type: Option<PushType>,
    pub priority: u8,
    pub expiration: Option<u64>,
    pub collapse_id: Option<String>,
    /// Every request header but `authorization`, lower-case names.
    pub headers: BTreeMap<String, String>,
    /// The JSON payload exactly as parsed.
    pub payload: Value,
    /// The provider token (JWT) the request carried, and its `iat`.
    pub provider_token: String,
    pub provider_token_iat: i64,
    /// Which HTTP/2 connection carried it (numbered from 1 in accept order).
    pub connection: u64,
    /// Unix time in milliseconds.
    pub received_at: u64,
}

/// Counters of `GET /_mock/stats`.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Stats {
    /// Requests answered 200.
    pub accepted: u64,
    /// Requests answered with any error.
    pub rejected: u64,
    /// Distinct valid provider tokens seen, over all connections.
    pub provider_tokens: u64,
    /// Times a connection moved to a new provider token (its first token is not a change).
    pub token_changes: u64,
    /// HTTP/2 connections accepted.
    pub connections: u64,
}

/// Everything the handlers share; one per mock, behind an `Arc`.
pub(crate) struct MockState {
    pub key: ProviderKey,
    pub bundle_ids: Vec<String>,
    /// [`Config::token_update_interval`] in seconds, compared with `iat` differences.
    pub token_update_interval_secs: i64,
    /// Device tokens (lower-cased) answered 410, with the reason and `timestamp`.
    unregistered: Mutex<HashMap<String, (Reason, u64)>>,
    faults: Mutex<VecDeque<(ApnsError, u32)>>,
    latency_ms: AtomicU64,
    messages: Mutex<VecDeque<Recorded>>,
    max_recorded: usize,
    seen_tokens: Mutex<HashSet<String>>,
    accepted: AtomicU64,
    rejected: AtomicU64,
    token_changes: AtomicU64,
    connections: AtomicU64,
}

impl MockState {
    pub(crate) fn new(config: Config) -> Self {
        Self {
            key: config.key,
            bundle_ids: config.bundle_ids,
            token_update_interval_secs: i64::try_from(config.token_update_interval.as_secs())
                .unwrap_or(i64::MAX),
            unregistered: Mutex::default(),
            faults: Mutex::default(),
            latency_ms: AtomicU64::new(0),
            messages: Mutex::default(),
            max_recorded: config.max_recorded,
            seen_tokens: Mutex::default(),
            accepted: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            token_changes: AtomicU64::new(0),
            connections: AtomicU64::new(0),
        }
    }

    /// Numbers a new connection, from 1.
    pub(crate) fn next_connection(&self) -> u64 {
        self.connections.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Counts a valid provider token; `changed` when a connection moved to it.
    pub(crate) fn saw_token(&self, jwt: &str, changed: bool) {
        if changed {
            self.token_changes.fetch_add(1, Ordering::Relaxed);
        }
        let mut seen = lock(&self.seen_tokens);
        if !seen.contains(jwt) {
            seen.insert(jwt.to_owned());
        }
    }

    pub(crate) fn mark_unregistered(&self, tokens: Vec<String>, reason: Reason, timestamp: u64) {
        let mut map = lock(&self.unregistered);
        for token in tokens {
            map.insert(token.to_ascii_lowercase(), (reason, timestamp));
        }
    }

    pub(crate) fn clear_unregistered(&self) {
        lock(&self.unregistered).clear();
    }

    /// The 410 answer for a device token marked unregistered (looked up case-insensitively).
    pub(crate) fn unregistered(&self, device_token: &str) -> Option<ApnsError> {
        let map = lock(&self.unregistered);
        let (reason, timestamp) = map.get(&device_token.to_ascii_lowercase())?;
        Some(ApnsError {
            reason: *reason,
            timestamp_ms: Some(*timestamp),
            retry_after_secs: None,
        })
    }

    pub(crate) fn push_fault(&self, error: ApnsError, count: u32) {
        if count > 0 {
            lock(&self.faults).push_back((error, count));
        }
    }

    pub(crate) fn clear_faults(&self) {
        lock(&self.faults).clear();
    }

    /// Consumes one unit of the first programmed fault, if any.
    pub(crate) fn take_fault(&self) -> Option<ApnsError> {
        let mut faults = lock(&self.faults);
        let (error, count) = faults.front_mut()?;
        let mut error = *error;
        *count -= 1;
        if *count == 0 {
            faults.pop_front();
        }
        if error.reason.status().as_u16() == 410 {
            error.timestamp_ms = Some(unix_ms());
        }
        Some(error)
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
            provider_tokens: lock(&self.seen_tokens).len() as u64,
            token_changes: self.token_changes.load(Ordering::Relaxed),
            connections: self.connections.load(Ordering::Relaxed),
        }
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
