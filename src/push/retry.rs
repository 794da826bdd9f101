//! When a send that got a transient answer is tried again: exponential backoff with jitter,
//! never before the provider's own `Retry-After`, and not past the send's deadline (its
//! notification's `ttl_secs` or `push.max_retry_secs`, whichever ends first).

use std::time::{Duration, SystemTime};

use rand::RngExt;

use crate::config::Config;
use crate::notification::Notification;

/// A provider's HTTP answer as its classifier reads it: the status, its `Retry-After`, and the
/// body (read to its end whatever the status: an HTTP/2 response dropped before its end is
/// reset, and when the rest of it arrives on the reset stream, h2 counts a reset of its own;
/// past 1 024 of those on one connection it closes the connection, failing every send in
/// flight on it, some of which the provider had already taken and which a retry sends again).
pub async fn read_answer(
    resp: reqwest::Response,
) -> (http::StatusCode, Option<Duration>, bytes::Bytes) {
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    let body = resp.bytes().await.unwrap_or_default();
    (status, retry_after, body)
}

/// `Retry-After` as delta-seconds or an HTTP date, as every provider's answers carry it.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(SystemTime::now()).unwrap_or_default())
}

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Most attempts per send; 0: only the deadline limits them.
    pub max_attempts: u32,
    pub base: Duration,
    pub max: Duration,
    /// The longest a send is retried (`push.max_retry_secs`).
    pub max_retry: Duration,
}

impl RetryPolicy {
    pub fn new(cfg: &Config) -> RetryPolicy {
        RetryPolicy {
            max_attempts: cfg.fcm.max_attempts,
            base: Duration::from_millis(cfg.fcm.backoff_base_ms),
            max: Duration::from_millis(cfg.fcm.backoff_max_ms),
            max_retry: Duration::from_secs(cfg.push.max_retry_secs),
        }
    }

    /// Exponential backoff with jitter (50–100 % of the step, capped by `max`); a Retry-After,
    /// when given, is the floor. Waiting holds no send slot, so a long Retry-After is honoured
    /// in full.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let step = self
            .base
            .saturating_mul(1 << attempt.saturating_sub(1).min(16))
            .min(self.max);
        let jittered = step.mul_f64(rand::rng().random_range(0.5..=1.0));
        retry_after.map_or(jittered, |ra| ra.max(jittered))
    }

    /// Unix ms past which a send of `n` is given up.
    pub fn deadline_ms(&self, n: &Notification) -> u64 {
        let budget = match n.ttl_secs {
            Some(ttl) => self.max_retry.min(Duration::from_secs(u64::from(ttl))),
            None => self.max_retry,
        };
        n.sent_at.saturating_add(budget.as_millis() as u64)
    }

    /// Whether a send that made `attempts` attempts may make another.
    pub fn may_retry(&self, attempts: u32) -> bool {
        self.max_attempts == 0 || attempts < self.max_attempts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
            max_retry: Duration::from_secs(600),
        }
    }

    #[test]
    fn backoff_grows_is_capped_and_honours_retry_after_in_full() {
        let p = policy();
        let d1 = p.delay(1, None);
        assert!(d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100));
        let d3 = p.delay(3, None);
        assert!(d3 >= Duration::from_millis(200) && d3 <= Duration::from_millis(400));
        assert!(p.delay(10, None) <= Duration::from_secs(1));
        assert_eq!(
            p.delay(1, Some(Duration::from_millis(700))),
            Duration::from_millis(700)
        );
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(60))),
            Duration::from_secs(60)
        );
    }

    #[test]
    fn the_deadline_is_the_shorter_of_ttl_and_max_retry() {
        let p = policy();
        let req: crate::notification::NotifyRequest =
            serde_json::from_str(r#"{"user_id":"u","data":{"k":"v"},"ttl_secs":30}"#).unwrap();
        let n = req.accept().unwrap();
        assert_eq!(p.deadline_ms(&n), n.sent_at + 30_000);
        let req: crate::notification::NotifyRequest =
            serde_json::from_str(r#"{"user_id":"u","data":{"k":"v"}}"#).unwrap();
        let n = req.accept().unwrap();
        assert_eq!(p.deadline_ms(&n), n.sent_at + 600_000);
    }

    #[test]
    fn zero_max_attempts_leaves_only_the_deadline() {
        let mut p = policy();
        assert!(p.may_retry(4) && !p.may_retry(5));
        p.max_attempts = 0;
        assert!(p.may_retry(1000));
    }
}
