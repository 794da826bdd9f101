//! Rate limits (`limits.*`): per producer key on the producer API, and per user and per source
//! address on stream opens (against reconnect loops). Every check is O(1) on state of its own
//! key: an atomic per producer, a sharded map entry per user or address; no lock is held across
//! an await, so one noisy caller does not slow the others. The limits are per node.

mod bucket;
mod keyed;

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;

use crate::auth::ProducerId;
use crate::config::LimitsConfig;
use crate::ids::UserId;
use crate::metrics::{Metrics, OpenScope};
use bucket::Nanos;
pub use bucket::Rate;
pub use keyed::KeyedLimiter;

/// Who went over a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// A producer key (`limits.producer_rate_per_sec`).
    Producer,
    /// A user opening streams (`limits.stream_opens_per_user_per_min`).
    User,
    /// A source address opening streams (`limits.stream_opens_per_ip_per_sec`).
    Address,
}

/// A request over its limit, and when it would fit.
#[derive(Debug, thiserror::Error)]
#[error("over the {scope:?} rate limit; retry in {retry_after:?}")]
pub struct Limited {
    pub scope: Scope,
    pub retry_after: Duration,
}

impl Limited {
    /// Whole seconds for `Retry-After`, rounded up: at least 1.
    pub fn retry_after_secs(&self) -> u64 {
        let d = self.retry_after;
        (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
    }
}

/// One producer key's bucket, on a cache line of its own so that busy producers do not share one.
#[derive(Default)]
#[repr(align(64))]
struct ProducerBucket(AtomicU64);

pub struct Limits {
    epoch: Instant,
    producer_rate: Option<Rate>,
    producer_refusal_delay: Duration,
    /// Indexed by `ProducerId`.
    producers: Vec<ProducerBucket>,
    /// `switchboard_producer_rate_limited_total{producer}`, indexed by `ProducerId`.
    producer_refusals: Vec<Counter>,
    users: Option<KeyedLimiter<UserId>>,
    addresses: Option<KeyedLimiter<IpAddr>>,
    user_refusals: Counter,
    address_refusals: Counter,
}

impl Limits {
    /// `producer_names` are the producers' non-secret names, in `ProducerId` order.
    pub fn new(cfg: &LimitsConfig, producer_names: &[&str], metrics: &Metrics) -> Limits {
        let per_user = Rate::new(
            cfg.stream_opens_per_user_per_min,
            Duration::from_secs(60),
            cfg.stream_opens_per_user_burst,
        );
        let per_address = Rate::new(
            cfg.stream_opens_per_ip_per_sec,
            Duration::from_secs(1),
            cfg.stream_opens_per_ip_burst,
        );
        Limits {
            epoch: Instant::now(),
            producer_rate: Rate::new(
                cfg.producer_rate_per_sec,
                Duration::from_secs(1),
                cfg.producer_burst,
            ),
            producer_refusal_delay: Duration::from_millis(cfg.producer_refusal_delay_ms),
            producers: producer_names.iter().map(|_| Default::default()).collect(),
            producer_refusals: producer_names
                .iter()
                .map(|name| metrics.producer_rate_limited(name))
                .collect(),
            users: per_user.map(|r| {
                KeyedLimiter::new(
                    r,
                    cfg.max_tracked_keys,
                    metrics.rate_limit_keys(OpenScope::User),
                )
            }),
            addresses: per_address.map(|r| {
                KeyedLimiter::new(
                    r,
                    cfg.max_tracked_keys,
                    metrics.rate_limit_keys(OpenScope::Address),
                )
            }),
            user_refusals: metrics.stream_opens_limited(OpenScope::User),
            address_refusals: metrics.stream_opens_limited(OpenScope::Address),
        }
    }

    /// How long a producer's refused request waits for its answer: a key that retries at once
    /// instead of honouring `Retry-After` then costs the node a few answers per connection a
    /// second rather than as many as the other end can send, and other producers keep the CPU.
    /// Never longer than the `Retry-After` itself, so a client that honours it loses nothing.
    pub fn producer_refusal_delay(&self, limited: &Limited) -> Duration {
        self.producer_refusal_delay.min(limited.retry_after)
    }

    fn now(&self) -> Nanos {
        self.epoch.elapsed().as_nanos() as Nanos
    }

    /// Takes `cost` tokens (one per notification: a batch of n costs n, all or nothing) from the
    /// producer's bucket.
    pub fn charge_producer(&self, producer: ProducerId, cost: u64) -> Result<(), Limited> {
        let (Some(rate), Some(bucket)) = (self.producer_rate, self.producers.get(producer.0))
        else {
            return Ok(());
        };
        let now = self.now();
        let cost = cost.min(rate.burst());
        let mut tat = bucket.0.load(Ordering::Relaxed);
        loop {
            let next = rate.take(tat, now, cost).map_err(|retry_after| {
                self.producer_refusals[producer.0].inc();
                Limited {
                    scope: Scope::Producer,
                    retry_after,
                }
            })?;
            match bucket
                .0
                .compare_exchange_weak(tat, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Ok(()),
                Err(current) => tat = current,
            }
        }
    }

    /// A stream open from `peer`, checked before anything else is (a loop of refused opens
    /// counts too). IPv6 addresses count per /64, what one subscriber usually holds.
    pub fn stream_open_from(&self, peer: IpAddr) -> Result<(), Limited> {
        let Some(addresses) = &self.addresses else {
            return Ok(());
        };
        addresses
            .take(&address_key(peer), self.now())
            .map_err(|retry_after| {
                self.address_refusals.inc();
                Limited {
                    scope: Scope::Address,
                    retry_after,
                }
            })
    }

    /// A stream open by an authenticated `user`.
    pub fn stream_open_by(&self, user: &UserId) -> Result<(), Limited> {
        let Some(users) = &self.users else {
            return Ok(());
        };
        users.take(user, self.now()).map_err(|retry_after| {
            self.user_refusals.inc();
            Limited {
                scope: Scope::User,
                retry_after,
            }
        })
    }
}

/// The key an address counts under: itself for IPv4, its /64 for IPv6.
fn address_key(peer: IpAddr) -> IpAddr {
    match peer.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every limit off but what `set` turns on.
    fn limits(set: impl FnOnce(&mut LimitsConfig)) -> Limits {
        let mut cfg = LimitsConfig {
            producer_rate_per_sec: 0,
            producer_burst: 1000,
            producer_refusal_delay_ms: 200,
            stream_opens_per_user_per_min: 0,
            stream_opens_per_user_burst: 1,
            stream_opens_per_ip_per_sec: 0,
            stream_opens_per_ip_burst: 1,
            max_tracked_keys: 1000,
        };
        set(&mut cfg);
        Limits::new(&cfg, &["p0", "p1"], &Metrics::new())
    }

    #[test]
    fn one_producer_over_its_limit_leaves_the_other_alone() {
        let l = limits(|c| c.producer_rate_per_sec = 1);
        l.charge_producer(ProducerId(0), 1000).unwrap();
        let refused = l.charge_producer(ProducerId(0), 1).unwrap_err();
        assert_eq!(refused.scope, Scope::Producer);
        assert_eq!(refused.retry_after_secs(), 1);
        l.charge_producer(ProducerId(1), 1000).unwrap();
    }

    #[test]
    fn stream_opens_are_limited_per_user_and_per_address() {
        let l = limits(|c| {
            c.stream_opens_per_user_per_min = 1;
            c.stream_opens_per_user_burst = 2;
            c.stream_opens_per_ip_per_sec = 1;
        });
        let user = |u: &str| -> UserId { u.parse().unwrap() };
        l.stream_open_by(&user("ann")).unwrap();
        l.stream_open_by(&user("ann")).unwrap();
        let refused = l.stream_open_by(&user("ann")).unwrap_err();
        assert_eq!(refused.scope, Scope::User);
        assert!(
            (59..=60).contains(&refused.retry_after_secs()),
            "{refused:?}"
        );
        l.stream_open_by(&user("bob")).unwrap();

        let a: IpAddr = "127.0.0.2".parse().unwrap();
        l.stream_open_from(a).unwrap();
        assert_eq!(l.stream_open_from(a).unwrap_err().scope, Scope::Address);
        l.stream_open_from("127.0.0.3".parse().unwrap()).unwrap();
    }

    #[test]
    fn ipv6_addresses_count_per_64() {
        let key = |s: &str| address_key(s.parse().unwrap());
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("::ffff:10.0.0.1"), key("10.0.0.1"));
    }

    #[test]
    fn a_zero_rate_turns_a_limit_off() {
        let l = limits(|_| {});
        for _ in 0..100_000 {
            l.charge_producer(ProducerId(0), 1000).unwrap();
        }
        let ann: UserId = "ann".parse().unwrap();
        for _ in 0..10_000 {
            l.stream_open_by(&ann).unwrap();
            l.stream_open_from("127.0.0.1".parse().unwrap()).unwrap();
        }
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let secs = |d: Duration| {
            Limited {
                scope: Scope::User,
                retry_after: d,
            }
            .retry_after_secs()
        };
        assert_eq!(secs(Duration::from_millis(1)), 1);
        assert_eq!(secs(Duration::from_secs(1)), 1);
        assert_eq!(secs(Duration::from_millis(1001)), 2);
        assert_eq!(secs(Duration::from_secs(60)), 60);
    }
}
