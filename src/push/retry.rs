//! Retrying one send: what a provider calls transient is tried again, with exponential backoff
//! and jitter, not before the provider's own `Retry-After`, up to `fcm.max_attempts` attempts.

use std::time::Duration;

use rand::RngExt;

use super::{Outcome, Provider};
use crate::config::FcmConfig;
use crate::notification::Notification;

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base: Duration,
    pub max: Duration,
}

impl RetryPolicy {
    pub fn new(cfg: &FcmConfig) -> RetryPolicy {
        RetryPolicy {
            max_attempts: cfg.max_attempts,
            base: Duration::from_millis(cfg.backoff_base_ms),
            max: Duration::from_millis(cfg.backoff_max_ms),
        }
    }

    /// Exponential backoff with jitter (50–100 % of the step); a Retry-After, when given, is
    /// the floor. Both are capped by `max` so one message cannot hold a slot for long.
    fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let step = self
            .base
            .saturating_mul(1 << attempt.saturating_sub(1).min(16))
            .min(self.max);
        let jittered = step.mul_f64(rand::rng().random_range(0.5..=1.0));
        retry_after
            .map_or(jittered, |ra| ra.max(jittered))
            .min(self.max)
    }
}

/// Sends `n` to one device token, retrying transient failures within the budget; the outcome
/// of the last attempt.
#[tracing::instrument(skip_all, fields(notification_id = %n.id, user_id = %n.user_id))]
pub async fn deliver(
    provider: &dyn Provider,
    policy: &RetryPolicy,
    n: &Notification,
    token: &str,
) -> Outcome {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let outcome = provider.send(n, token).await;
        match outcome {
            Outcome::RetryAfter { reason, .. } if attempt >= policy.max_attempts => {
                let code = reason.as_str();
                tracing::warn!(code, attempt, "push send failed after the last attempt");
                return outcome;
            }
            Outcome::RetryAfter { reason, after } => {
                let wait = policy.delay(attempt, after);
                tracing::debug!(
                    code = reason.as_str(),
                    attempt,
                    ?wait,
                    "push send will be retried"
                );
                tokio::time::sleep(wait).await;
            }
            Outcome::Invalid { reason } => {
                tracing::warn!(
                    code = reason.as_str(),
                    "the push provider refused the message"
                );
                return outcome;
            }
            Outcome::Accepted | Outcome::TokenGone { .. } | Outcome::AuthFailure => return outcome,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Instant;

    use futures::future::{BoxFuture, FutureExt};

    use super::*;
    use crate::push::RetryReason;

    /// Answers with `script` in order, then `Accepted`; counts the attempts.
    struct Scripted {
        script: Mutex<Vec<Outcome>>,
        attempts: Mutex<u32>,
    }

    impl Scripted {
        fn new(mut script: Vec<Outcome>) -> Scripted {
            script.reverse();
            Scripted {
                script: Mutex::new(script),
                attempts: Mutex::new(0),
            }
        }

        fn attempts(&self) -> u32 {
            *self.attempts.lock().unwrap()
        }
    }

    impl Provider for Scripted {
        fn send<'a>(&'a self, _n: &'a Notification, _token: &'a str) -> BoxFuture<'a, Outcome> {
            *self.attempts.lock().unwrap() += 1;
            let next = self.script.lock().unwrap().pop();
            async move { next.unwrap_or(Outcome::Accepted) }.boxed()
        }
    }

    fn policy(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            base: Duration::from_millis(1),
            max: Duration::from_secs(5),
        }
    }

    fn notification() -> Notification {
        let req: crate::notification::NotifyRequest =
            serde_json::from_str(r#"{"user_id":"u","data":{"k":"v"}}"#).unwrap();
        req.accept().unwrap()
    }

    const UNAVAILABLE: Outcome = Outcome::RetryAfter {
        reason: RetryReason::Unavailable,
        after: None,
    };

    #[tokio::test]
    async fn a_retry_after_is_tried_again_no_sooner_than_the_provider_asked() {
        let provider = Scripted::new(vec![Outcome::RetryAfter {
            reason: RetryReason::QuotaExceeded,
            after: Some(Duration::from_millis(300)),
        }]);
        let started = Instant::now();
        let outcome = deliver(&provider, &policy(5), &notification(), "tok").await;
        assert_eq!(outcome, Outcome::Accepted);
        assert_eq!(provider.attempts(), 2);
        assert!(started.elapsed() >= Duration::from_millis(300));
    }

    #[tokio::test]
    async fn retries_stop_at_max_attempts_with_the_last_answer() {
        let provider = Scripted::new(vec![UNAVAILABLE; 10]);
        let outcome = deliver(&provider, &policy(3), &notification(), "tok").await;
        assert_eq!(outcome, UNAVAILABLE);
        assert_eq!(provider.attempts(), 3);
    }

    #[tokio::test]
    async fn final_answers_are_not_retried() {
        for answer in [
            Outcome::TokenGone { at: None },
            Outcome::AuthFailure,
            Outcome::Invalid {
                reason: crate::push::InvalidReason::SenderIdMismatch,
            },
        ] {
            let provider = Scripted::new(vec![answer]);
            let outcome = deliver(&provider, &policy(5), &notification(), "tok").await;
            assert_eq!((outcome, provider.attempts()), (answer, 1));
        }
    }

    #[test]
    fn backoff_grows_is_capped_and_honours_retry_after() {
        let p = RetryPolicy {
            max_attempts: 5,
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
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
            Duration::from_secs(1)
        );
    }
}
