//! The token bucket every limit uses, kept as one number per key: the generic cell rate
//! algorithm (GCRA) stores the instant at which the bucket will be full again (its
//! "theoretical arrival time"), so taking tokens is one compare and one add, and a key whose
//! instant has passed holds nothing worth keeping.

use std::time::Duration;

/// Nanoseconds since a limiter's epoch (its own monotonic clock).
pub type Nanos = u64;

/// A refill rate and a burst: `burst` tokens at most, one more every `interval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    interval: Nanos,
    burst: u64,
}

impl Rate {
    /// `count` tokens per `per`, holding at most `burst`; `None` when `count` is 0 (no limit).
    pub fn new(count: u32, per: Duration, burst: u32) -> Option<Rate> {
        if count == 0 {
            return None;
        }
        let interval = (per.as_nanos() / u128::from(count)).max(1);
        Some(Rate {
            interval: u64::try_from(interval).unwrap_or(u64::MAX),
            burst: u64::from(burst.max(1)),
        })
    }

    pub fn burst(&self) -> u64 {
        self.burst
    }

    /// Takes `cost` tokens from a bucket whose full-again instant is `tat`: the new instant, or
    /// how long until `cost` tokens are there. A cost over the burst never fits; callers bound it.
    pub fn take(&self, tat: Nanos, now: Nanos, cost: u64) -> Result<Nanos, Duration> {
        let capacity = self.interval.saturating_mul(self.burst);
        let after = tat
            .max(now)
            .saturating_add(self.interval.saturating_mul(cost));
        let ahead = after - now;
        if ahead <= capacity {
            Ok(after)
        } else {
            Err(Duration::from_nanos(ahead - capacity))
        }
    }
}

/// True when a bucket with this full-again instant is full at `now`: forgetting it changes
/// nothing, since a new key starts full.
pub fn is_full(tat: Nanos, now: Nanos) -> bool {
    tat <= now
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Nanos = 1_000_000_000;

    #[test]
    fn a_full_bucket_gives_its_burst_then_one_token_per_interval() {
        let rate = Rate::new(10, Duration::from_secs(1), 5).unwrap();
        let mut tat = 0;
        for _ in 0..5 {
            tat = rate.take(tat, SEC, 1).unwrap();
        }
        let wait = rate.take(tat, SEC, 1).unwrap_err();
        assert_eq!(wait, Duration::from_millis(100));
        // A tenth of a second later one token is back, and only one.
        tat = rate.take(tat, SEC + SEC / 10, 1).unwrap();
        assert!(rate.take(tat, SEC + SEC / 10, 1).is_err());
    }

    #[test]
    fn a_cost_takes_that_many_tokens_or_none() {
        let rate = Rate::new(100, Duration::from_secs(1), 10).unwrap();
        let tat = rate.take(0, SEC, 8).unwrap();
        // 2 left: 3 does not fit, and the refusal takes nothing.
        assert_eq!(
            rate.take(tat, SEC, 3).unwrap_err(),
            Duration::from_millis(10)
        );
        assert!(rate.take(tat, SEC, 2).is_ok());
    }

    #[test]
    fn an_idle_bucket_refills_to_its_burst_and_no_further() {
        let rate = Rate::new(1, Duration::from_secs(60), 3).unwrap();
        let mut tat = 0;
        for _ in 0..3 {
            tat = rate.take(tat, SEC, 1).unwrap();
        }
        assert_eq!(rate.take(tat, SEC, 1).unwrap_err(), Duration::from_secs(60));
        assert!(!is_full(tat, SEC));
        // An hour later: full, and still only 3.
        let later = SEC + 3600 * SEC;
        assert!(is_full(tat, later));
        for _ in 0..3 {
            tat = rate.take(tat, later, 1).unwrap();
        }
        assert!(rate.take(tat, later, 1).is_err());
    }

    #[test]
    fn a_zero_count_means_no_limit() {
        assert_eq!(Rate::new(0, Duration::from_secs(1), 10), None);
    }
}
