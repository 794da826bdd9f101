//! One APNs send: `POST /3/device/<token>` over one shared HTTP/2 client, with the current
//! provider token; an `ExpiredProviderToken` answer is tried again once with a new token.
//! Retries are the sender's.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::{BoxFuture, FutureExt};
use jsonwebtoken::EncodingKey;

use super::answer::{classify, Answer, RequestResult};
use super::message::{headers, payload};
use super::token::ProviderTokens;
use crate::config::{read_capped, ApnsConfig, APNS_TOKEN_MIN_REFRESH_SECS};
use crate::metrics::{Counters, Metrics};
use crate::notification::Notification;
use crate::push::retry::read_answer;
use crate::push::{Outcome, Provider, RetryReason};

/// No answer from APNs (network, timeout).
const TRANSPORT_ERROR: Answer = Answer::Retry {
    reason: RetryReason::Transport,
    retry_after: None,
};

#[derive(Debug, thiserror::Error)]
pub enum ApnsSetupError {
    #[error("apns.key_path {path:?}: {reason}")]
    Key { path: String, reason: String },
    #[error("apns: cannot build the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

pub struct ApnsProvider {
    /// One client per `apns.connections`: a reqwest client keeps one HTTP/2 connection to a
    /// host, and sends take the clients in turn.
    clients: Vec<reqwest::Client>,
    next: AtomicUsize,
    /// `<endpoint>/3/device/`
    base: String,
    topic: String,
    tokens: ProviderTokens,
    /// The app's private push: every message carries only the notification id.
    private: bool,
    metrics: Arc<Metrics>,
    results: Counters<RequestResult>,
}

impl ApnsProvider {
    /// Reads the signing key and builds the client (no request yet).
    pub fn new(
        cfg: &ApnsConfig,
        private: bool,
        request_timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Result<ApnsProvider, ApnsSetupError> {
        let path = cfg.key_path.trim().to_string();
        let key = read_capped(std::path::Path::new(&path))
            .and_then(|pem| EncodingKey::from_ec_pem(&pem).map_err(|e| e.to_string()))
            .map_err(|reason| ApnsSetupError::Key { path, reason })?;
        if cfg.token_refresh_secs < APNS_TOKEN_MIN_REFRESH_SECS {
            tracing::warn!(
                secs = cfg.token_refresh_secs,
                "apns.token_refresh_secs is under 20 minutes: APNs may answer TooManyProviderTokenUpdates"
            );
        }
        // APNs speaks only HTTP/2: over TLS it is agreed by ALPN, and an http:// endpoint (the
        // mock) gets it from the first byte.
        let clients = (0..cfg.connections.max(1))
            .map(|_| {
                reqwest::Client::builder()
                    .http2_prior_knowledge()
                    .timeout(request_timeout)
                    .connect_timeout(Duration::from_secs(5))
                    .pool_idle_timeout(Duration::from_secs(600))
                    .http2_keep_alive_interval(Duration::from_secs(60))
                    .http2_keep_alive_while_idle(true)
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ApnsProvider {
            clients,
            next: AtomicUsize::new(0),
            base: format!("{}/3/device/", cfg.endpoint.trim_end_matches('/')),
            topic: cfg.topic.clone(),
            tokens: ProviderTokens::new(
                key,
                &cfg.key_id,
                &cfg.team_id,
                Duration::from_secs(cfg.token_refresh_secs),
                metrics.apns_tokens_signed.clone(),
            ),
            private,
            results: metrics.apns_results.counters(),
            metrics,
        })
    }

    async fn deliver(&self, n: &Notification, device_token: &str) -> Outcome {
        let private = self.private || n.private;
        let body = bytes::Bytes::from(payload(n, private));
        let jwt = match self.tokens.current() {
            Ok(jwt) => jwt,
            Err(e) => {
                tracing::error!(error = %e, "APNs: cannot sign a provider token");
                return Outcome::AuthFailure;
            }
        };
        let mut answer = self
            .request(n, private, device_token, &jwt, body.clone())
            .await;
        if answer == Answer::ExpiredProviderToken {
            // Clock skew or a token kept too long: a new one, once.
            match self.tokens.renew(&jwt) {
                Ok(jwt) => answer = self.request(n, private, device_token, &jwt, body).await,
                Err(e) => tracing::error!(error = %e, "APNs: cannot sign a provider token"),
            }
        }
        if matches!(
            answer,
            Answer::Unauthenticated | Answer::ExpiredProviderToken
        ) {
            tracing::error!(
                "APNs refused the provider token: check apns.key_path, key_id, team_id"
            );
        }
        answer.outcome()
    }

    /// One request; its answer is counted.
    async fn request(
        &self,
        n: &Notification,
        private: bool,
        device_token: &str,
        jwt: &str,
        body: bytes::Bytes,
    ) -> Answer {
        let h = headers(n, private);
        let turn = self.next.fetch_add(1, Ordering::Relaxed) % self.clients.len();
        let mut req = self.clients[turn]
            .post(format!("{}{device_token}", self.base))
            .header(http::header::AUTHORIZATION, format!("bearer {jwt}"))
            .header("apns-topic", &self.topic)
            .header("apns-push-type", h.push_type)
            .header("apns-priority", h.priority)
            .header("apns-id", h.id)
            .header(http::header::CONTENT_TYPE, "application/json");
        if let Some(expiration) = &h.expiration {
            req = req.header("apns-expiration", expiration);
        }
        if let Some(collapse) = h.collapse_id {
            req = req.header("apns-collapse-id", collapse);
        }
        let started = Instant::now();
        let answer = match req.body(body).send().await {
            Err(e) => {
                tracing::debug!(error = %e, "APNs request failed");
                TRANSPORT_ERROR
            }
            Ok(resp) => {
                let (status, retry_after, body) = read_answer(resp).await;
                classify(status, retry_after, &body)
            }
        };
        self.metrics
            .apns_latency
            .observe(started.elapsed().as_secs_f64());
        self.results.inc(answer.result());
        answer
    }
}

impl Provider for ApnsProvider {
    fn send<'a>(&'a self, n: &'a Notification, token: &'a str) -> BoxFuture<'a, Outcome> {
        self.deliver(n, token).boxed()
    }
}
