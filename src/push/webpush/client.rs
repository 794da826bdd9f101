//! One Web Push send: the payload encrypted for the subscription, the VAPID token of the
//! endpoint's origin, one request on a shared reqwest client (HTTP/2 where the push service
//! offers it), and the answer mapped by `answer.rs`. Retries are the sender's.

use std::time::Duration;

use futures::future::{BoxFuture, FutureExt};
use http::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};

use super::answer::RequestResult;
use super::ece::{self, EceError};
use super::message::{payload, topic, ttl, urgency};
use super::subscription::Subscription;
use super::vapid::VapidSigner;
use crate::config::{VapidKeyError, WebPushConfig};
use crate::metrics::{Counters, Metrics};
use crate::notification::Notification;
use crate::push::retry::parse_retry_after;
use crate::push::{InvalidReason, Outcome, Provider, RetryReason};

#[derive(Debug, thiserror::Error)]
pub enum WebPushSetupError {
    #[error("webpush.vapid_private_key: {0}")]
    Key(#[from] VapidKeyError),
    #[error("webpush: cannot build the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

pub struct WebPushProvider {
    http: reqwest::Client,
    vapid: VapidSigner,
    /// The app's private push: every message carries only the notification id.
    private: bool,
    results: Counters<RequestResult>,
}

/// What one request got: its result, and the push service's `Retry-After`.
struct Answer {
    result: RequestResult,
    retry_after: Option<Duration>,
}

impl WebPushProvider {
    /// Reads the VAPID key and builds the client (no request yet).
    pub fn new(
        cfg: &WebPushConfig,
        private: bool,
        metrics: &Metrics,
    ) -> Result<WebPushProvider, WebPushSetupError> {
        let key = cfg.load_vapid_key()?;
        let vapid = VapidSigner::new(
            key,
            cfg.subject.clone(),
            Duration::from_secs(cfg.vapid_expiry_secs),
        );
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(cfg.request_timeout_secs))
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(90))
            // An endpoint is a client's input: never follow it elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(WebPushProvider {
            http,
            vapid,
            private,
            results: metrics.webpush_results.counters(),
        })
    }

    /// The application server key browsers subscribe with (`applicationServerKey`).
    pub fn public_key(&self) -> &str {
        self.vapid.public_key()
    }

    async fn deliver(&self, n: &Notification, token: &str) -> Outcome {
        let sub = match Subscription::from_token(token) {
            Ok(sub) => sub,
            Err(e) => {
                // The registry only keeps parsed subscriptions; this one cannot be sent to.
                tracing::warn!(error = %e, "webpush: the device's token is not a subscription");
                self.results.inc(RequestResult::BadRequest);
                return Outcome::Invalid {
                    reason: InvalidReason::InvalidArgument,
                };
            }
        };
        let body = match ece::encrypt(&payload(n, self.private || n.private), &sub) {
            Ok(body) => bytes::Bytes::from(body),
            Err(e @ EceError::TooLarge(_)) => {
                tracing::debug!(notification_id = %n.id, error = %e, "webpush: payload too large");
                self.results.inc(RequestResult::PayloadTooLarge);
                return RequestResult::PayloadTooLarge.outcome(None);
            }
            Err(e) => {
                tracing::warn!(error = %e, "webpush: encryption failed");
                self.results.inc(RequestResult::BadRequest);
                return RequestResult::BadRequest.outcome(None);
            }
        };
        let origin = sub.origin();
        let mut answer = self.request(n, &sub, &origin, body.clone()).await;
        if answer.result == RequestResult::Unauthorized {
            // A push service that refused a cached token (its clock, a key it changed): sign
            // a new one, once.
            self.vapid.forget(&origin);
            answer = self.request(n, &sub, &origin, body).await;
        }
        answer.result.outcome(answer.retry_after)
    }

    /// One request; its result is counted.
    async fn request(
        &self,
        n: &Notification,
        sub: &Subscription,
        origin: &str,
        body: bytes::Bytes,
    ) -> Answer {
        let mut request = self
            .http
            .post(sub.endpoint().clone())
            .header(AUTHORIZATION, &*self.vapid.authorization(origin))
            .header(CONTENT_ENCODING, "aes128gcm")
            .header(CONTENT_TYPE, "application/octet-stream")
            .header("TTL", ttl(n))
            .header("Urgency", urgency(n));
        if let Some(key) = &n.collapse_key {
            request = request.header("Topic", topic(key));
        }
        let answer = match request.body(body).send().await {
            Err(e) => {
                tracing::debug!(error = %e, "webpush request failed");
                Answer {
                    result: RequestResult::Retry(RetryReason::Transport),
                    retry_after: None,
                }
            }
            Ok(resp) => Answer {
                result: RequestResult::of_status(resp.status()),
                retry_after: resp
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_retry_after),
            },
        };
        self.results.inc(answer.result);
        answer
    }
}

impl Provider for WebPushProvider {
    fn send<'a>(&'a self, n: &'a Notification, token: &'a str) -> BoxFuture<'a, Outcome> {
        self.deliver(n, token).boxed()
    }
}
