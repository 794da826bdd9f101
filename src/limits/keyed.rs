//! Token buckets per key (a user, a source address) in a bounded map: buckets that are full
//! again are dropped by a sweep, and past `max_keys` an arbitrary bucket makes room, so the
//! map never outgrows its cap whoever fills it.

use std::borrow::Borrow;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use prometheus_client::metrics::gauge::Gauge;

use super::bucket::{is_full, Nanos, Rate};

/// How often full buckets are swept out while the map is under its cap.
const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// How often they may be swept out at the cap (a sweep walks the whole map).
const SWEEP_AT_CAP: Duration = Duration::from_secs(1);

pub struct KeyedLimiter<K: Hash + Eq> {
    rate: Rate,
    buckets: DashMap<K, Nanos>,
    max_keys: usize,
    /// When the last sweep ran.
    swept_at: AtomicU64,
    /// How many keys the map holds, for operators.
    keys: Gauge,
}

impl<K: Hash + Eq + Clone> KeyedLimiter<K> {
    pub fn new(rate: Rate, max_keys: usize, keys: Gauge) -> KeyedLimiter<K> {
        KeyedLimiter {
            rate,
            buckets: DashMap::new(),
            max_keys: max_keys.max(1),
            swept_at: AtomicU64::new(0),
            keys,
        }
    }

    /// Takes one token from `key`'s bucket, or says how long until there is one. The shard
    /// lock is held only for the arithmetic.
    pub fn take<Q>(&self, key: &Q, now: Nanos) -> Result<(), Duration>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        if let Some(mut tat) = self.buckets.get_mut(key) {
            *tat = self.rate.take(*tat, now, 1)?;
            return Ok(());
        }
        self.make_room(now);
        match self.buckets.entry(key.to_owned()) {
            Entry::Occupied(mut e) => {
                let tat = self.rate.take(*e.get(), now, 1)?;
                e.insert(tat);
            }
            Entry::Vacant(e) => {
                e.insert(self.rate.take(0, now, 1)?);
            }
        }
        self.keys.set(self.buckets.len() as i64);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// Before a new key goes in: sweeps out full buckets when one is due, then, if the map is
    /// still at its cap, forgets one bucket (which then starts full again: the mildest error).
    fn make_room(&self, now: Nanos) {
        let at_cap = self.buckets.len() >= self.max_keys;
        let every = if at_cap { SWEEP_AT_CAP } else { SWEEP_EVERY };
        let last = self.swept_at.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= every.as_nanos() as u64
            && self
                .swept_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.buckets.retain(|_, tat| !is_full(*tat, now));
        }
        while self.buckets.len() >= self.max_keys {
            let victim = self.buckets.iter().next().map(|e| e.key().clone());
            match victim {
                Some(k) => drop(self.buckets.remove(&k)),
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Nanos = 1_000_000_000;

    fn limiter(max_keys: usize) -> KeyedLimiter<String> {
        let rate = Rate::new(1, Duration::from_secs(1), 2).unwrap();
        KeyedLimiter::new(rate, max_keys, Gauge::default())
    }

    #[test]
    fn each_key_has_its_own_bucket() {
        let l = limiter(100);
        assert!(l.take("a", SEC).is_ok());
        assert!(l.take("a", SEC).is_ok());
        assert_eq!(l.take("a", SEC).unwrap_err(), Duration::from_secs(1));
        assert!(l.take("b", SEC).is_ok(), "another key is unaffected");
        assert_eq!(l.len(), 2);
    }

    #[test]
    fn the_map_never_holds_more_than_its_cap() {
        let l = limiter(10);
        for i in 0..1000 {
            assert!(l.take(format!("k{i}").as_str(), SEC).is_ok());
            assert!(l.len() <= 10, "{} keys after {i}", l.len());
        }
        assert_eq!(l.keys.get(), 10);
    }

    #[test]
    fn full_buckets_are_swept_out_and_busy_ones_kept() {
        let l = limiter(1000);
        for i in 0..100 {
            l.take(format!("idle{i}").as_str(), SEC).unwrap();
        }
        for _ in 0..2 {
            l.take("busy", SEC).unwrap();
        }
        // A minute on, the idle keys' buckets are full again; "busy" takes two more first.
        let later = SEC + 60 * SEC;
        l.take("busy", later - SEC / 2).unwrap();
        l.take("busy", later - SEC / 2).unwrap();
        l.take("new", later).unwrap();
        assert_eq!(l.len(), 2, "only the busy key and the new one are left");
        assert!(
            l.take("busy", later).is_err(),
            "the busy key kept its state"
        );
    }
}
