//! One FCM HTTP v1 send: a service-account OAuth token from yup-oauth2 (cached by it;
//! refreshed once on 401), one shared reqwest client over HTTP/2, and the answer mapping of
//! `answer.rs`. Retries are the sender's.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::{BoxFuture, FutureExt};
use yup_oauth2::authenticator::DefaultAuthenticator;

use super::answer::{classify, Answer, RequestResult};
use super::message::send_body_for;
use crate::config::{read_capped, FcmConfig};
use crate::metrics::{Counters, Metrics};
use crate::notification::Notification;
use crate::push::retry::read_answer;
use crate::push::{Outcome, Provider, RetryReason};

const SCOPES: [&str; 1] = ["https://www.googleapis.com/auth/firebase.messaging"];

/// No answer from FCM (network, timeout) or no OAuth token to ask with.
const TRANSPORT_ERROR: Answer = Answer::Retry {
    reason: RetryReason::Transport,
    retry_after: None,
};

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

pub struct FcmProvider {
    http: reqwest::Client,
    auth: DefaultAuthenticator,
    url: String,
    metrics: Arc<Metrics>,
    results: Counters<RequestResult>,
    /// The app's private push: every message carries only the notification id.
    private: bool,
}

impl FcmProvider {
    /// Reads the service-account key and builds the clients (no request yet).
    pub async fn new(
        cfg: &FcmConfig,
        private: bool,
        metrics: Arc<Metrics>,
    ) -> Result<FcmProvider, FcmSetupError> {
        let path = cfg.service_account.trim().to_string();
        // Capped: the key is a few KiB, and a path to a device must not fill the memory.
        let key = read_capped(std::path::Path::new(&path))
            .map_err(std::io::Error::other)
            .and_then(yup_oauth2::parse_service_account_key)
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
        Ok(FcmProvider {
            http: http.build()?,
            auth,
            url: format!("{endpoint}/v1/projects/{}/messages:send", cfg.project_id),
            results: metrics.fcm_results.counters(),
            metrics,
            private,
        })
    }

    /// Fetches a token now, so a broken key or token endpoint shows at start, not at the
    /// first offline notification.
    pub async fn check_token(&self) -> Result<(), yup_oauth2::Error> {
        self.auth.token(&SCOPES).await.map(|_| ())
    }

    /// One request, and a second one with a fresh OAuth token if FCM refused ours.
    async fn deliver(&self, n: &Notification, token: &str) -> Outcome {
        let body = bytes::Bytes::from(send_body_for(n, token, self.private || n.private));
        let mut answer = self.request(body.clone(), false).await;
        if answer == Answer::Unauthenticated {
            // A revoked or expired token: fetch a fresh one and try again, once.
            answer = self.request(body, true).await;
        }
        match answer {
            Answer::Accepted => Outcome::Accepted,
            Answer::Unregistered => Outcome::TokenGone { at: None },
            Answer::Retry {
                reason,
                retry_after,
            } => Outcome::RetryAfter {
                reason,
                after: retry_after,
            },
            Answer::Unauthenticated => Outcome::AuthFailure,
            Answer::Fatal { reason } => Outcome::Invalid { reason },
        }
    }

    /// One request; its answer is counted.
    async fn request(&self, body: bytes::Bytes, force_refresh: bool) -> Answer {
        let answer = self.attempt(body, force_refresh).await;
        self.results.inc(answer.result());
        answer
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
                return TRANSPORT_ERROR;
            }
        };
        let Some(token) = token.token() else {
            return TRANSPORT_ERROR;
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
                TRANSPORT_ERROR
            }
            Ok(resp) => {
                let (status, retry_after, body) = read_answer(resp).await;
                classify(status, retry_after, &body)
            }
        };
        self.metrics
            .fcm_latency
            .observe(started.elapsed().as_secs_f64());
        answer
    }
}

impl Provider for FcmProvider {
    fn send<'a>(&'a self, n: &'a Notification, token: &'a str) -> BoxFuture<'a, Outcome> {
        self.deliver(n, token).boxed()
    }
}
