//! One FCM HTTP v1 send with its retries: a service-account OAuth token from yup-oauth2 (cached
//! by it; refreshed once on 401), one shared reqwest client over HTTP/2, and the answer mapping
//! of `answer.rs`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::RngExt;
use yup_oauth2::authenticator::DefaultAuthenticator;

use super::answer::{classify, parse_retry_after, Answer};
use super::message::send_body;
use crate::config::FcmConfig;
use crate::metrics::Metrics;
use crate::notification::Notification;

const SCOPES: [&str; 1] = ["https://www.googleapis.com/auth/firebase.messaging"];

#[derive(Debug, thiserror::Error)]
pub enum FcmSetupError {
    #[error("fcm.service_account {path:?}: {source}")]
    Key {
        path: String,
        source: std::io::Error,
    },
    #[error("fcm: cannot build the OAuth client: {0}")]
    Auth(std::io::Error),
    #[error("fcm: cannot build the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

/// How one message ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Accepted,
    /// FCM called the token UNREGISTERED.
    Unregistered,
    /// Gave up: a permanent error, or the retry budget ran out. The code is the last answer's.
    Failed(&'static str),
}

struct RetryPolicy {
    max_attempts: u32,
    base: Duration,
    max: Duration,
}

impl RetryPolicy {
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

pub struct FcmClient {
    http: reqwest::Client,
    auth: DefaultAuthenticator,
    url: String,
    policy: RetryPolicy,
    metrics: Arc<Metrics>,
}

impl FcmClient {
    pub async fn new(cfg: &FcmConfig, metrics: Arc<Metrics>) -> Result<FcmClient, FcmSetupError> {
        let path = cfg.service_account.trim().to_string();
        let key = yup_oauth2::read_service_account_key(&path)
            .await
            .map_err(|source| FcmSetupError::Key { path, source })?;
        let auth = yup_oauth2::ServiceAccountAuthenticator::builder(key)
            .build()
            .await
            .map_err(FcmSetupError::Auth)?;
        let endpoint = cfg.endpoint.trim_end_matches('/');
        let mut http = reqwest::Client::builder()
            .timeout(Duration::from_secs(cfg.request_timeout_secs))
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(90))
            .http2_keep_alive_interval(Duration::from_secs(30))
            .http2_keep_alive_while_idle(true);
        if endpoint.starts_with("http://") {
            // No TLS means no ALPN to agree on HTTP/2: speak it from the first byte (h2c).
            http = http.http2_prior_knowledge();
        }
        Ok(FcmClient {
            http: http.build()?,
            auth,
            url: format!("{endpoint}/v1/projects/{}/messages:send", cfg.project_id),
            policy: RetryPolicy {
                max_attempts: cfg.max_attempts,
                base: Duration::from_millis(cfg.backoff_base_ms),
                max: Duration::from_millis(cfg.backoff_max_ms),
            },
            metrics,
        })
    }

    /// Fetches a token now, so a broken key or token endpoint shows at start, not at the
    /// first offline notification.
    pub async fn check_token(&self) -> Result<(), yup_oauth2::Error> {
        self.auth.token(&SCOPES).await.map(|_| ())
    }

    /// Sends `n` to one device token, retrying transient failures within the budget.
    #[tracing::instrument(skip_all, fields(notification_id = %n.id, user_id = %n.user_id))]
    pub async fn deliver(&self, n: &Notification, token: &str) -> Outcome {
        let body = bytes::Bytes::from(send_body(n, token));
        let mut refreshed = false;
        let mut force_refresh = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let answer = self.attempt(body.clone(), force_refresh).await;
            force_refresh = false;
            self.metrics.fcm_result(answer.label());
            match answer {
                Answer::Accepted => return Outcome::Accepted,
                Answer::Unregistered => return Outcome::Unregistered,
                Answer::Fatal { code } => {
                    tracing::warn!(code, "FCM refused the message");
                    return Outcome::Failed(code);
                }
                Answer::Unauthenticated if !refreshed => {
                    // A revoked or expired token: fetch a fresh one and try again, once.
                    refreshed = true;
                    force_refresh = true;
                    attempt -= 1;
                }
                Answer::Unauthenticated => return Outcome::Failed("unauthenticated"),
                Answer::Retry { code, .. } if attempt >= self.policy.max_attempts => {
                    tracing::warn!(code, attempt, "FCM send failed after the last attempt");
                    return Outcome::Failed(code);
                }
                Answer::Retry { code, retry_after } => {
                    let wait = self.policy.delay(attempt, retry_after);
                    tracing::debug!(code, attempt, ?wait, "FCM send will be retried");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    async fn attempt(&self, body: bytes::Bytes, force_refresh: bool) -> Answer {
        let token = if force_refresh {
            self.auth.force_refreshed_token(&SCOPES).await
        } else {
            self.auth.token(&SCOPES).await
        };
        let token = match token {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "FCM OAuth token unavailable");
                return Answer::Retry {
                    code: "transport_error",
                    retry_after: None,
                };
            }
        };
        let Some(token) = token.token() else {
            return Answer::Retry {
                code: "transport_error",
                retry_after: None,
            };
        };
        let started = Instant::now();
        let response = self
            .http
            .post(&self.url)
            .bearer_auth(token)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await;
        let answer = match response {
            Err(e) => {
                tracing::debug!(error = %e, "FCM request failed");
                Answer::Retry {
                    code: "transport_error",
                    retry_after: None,
                }
            }
            Ok(resp) => {
                let status = resp.status();
                let retry_after = resp
                    .headers()
                    .get(http::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_retry_after);
                let body = if status.is_success() {
                    bytes::Bytes::new()
                } else {
                    resp.bytes().await.unwrap_or_default()
                };
                classify(status, retry_after, &body)
            }
        };
        self.metrics
            .fcm_latency
            .observe(started.elapsed().as_secs_f64());
        answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
