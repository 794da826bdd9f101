//! How notifications reach devices that hold no stream. A [`Provider`] sends one message to one
//! device token, once, and says how that went ([`Outcome`]); the [`Sender`] keeps every send in
//! the durable [`queue`] until it is settled, bounds those in flight, retries what the provider
//! says to retry, and records each outcome (the delivery record, the pruning of dead tokens).
//!
//! Providers: [`fcm`] (Firebase Cloud Messaging HTTP v1), [`apns`] (Apple, HTTP/2 with provider
//! tokens), [`webpush`] (browsers: RFC 8030, 8291, 8292). A new one lives in
//! `push/<provider>/`: it implements `Provider`, and [`start`] adds it to the [`Providers`] of
//! each app that configures it (one line).

pub mod apns;
pub mod fcm;
mod providers;
pub mod queue;
mod registration;
mod retry;
mod sender;
pub mod webpush;

pub use providers::Providers;
pub use registration::{
    DeviceRegistration, InvalidRegistration, SubscriptionJson, SubscriptionKeys,
};
pub use sender::{Overloaded, Sender, SenderConfig, SubmitError};

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;

use crate::backend::SharedLedger;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::notification::Notification;
use crate::store::ProviderKind;
use crate::store::Store;
use apns::{ApnsProvider, ApnsSetupError};
use fcm::{FcmProvider, FcmSetupError};
use webpush::WebPushProvider;

/// Sends one message to one device token.
pub trait Provider: Send + Sync + 'static {
    /// One attempt: no retries, except that a provider whose credentials were refused fetches
    /// fresh ones and tries again, once, within it.
    fn send<'a>(&'a self, n: &'a Notification, token: &'a str) -> BoxFuture<'a, Outcome>;
}

/// How one attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Accepted,
    /// Transient: try again after backoff, and not before `after` when the provider said so.
    RetryAfter {
        reason: RetryReason,
        after: Option<Duration>,
    },
    /// The token no longer reaches a device (FCM's UNREGISTERED): delete it. `at`: since when,
    /// when the provider says.
    TokenGone {
        at: Option<SystemTime>,
    },
    /// Permanent for this message: sending it again cannot help.
    Invalid {
        reason: InvalidReason,
    },
    /// The provider refused our credentials, even fresh ones.
    AuthFailure,
}

impl Outcome {
    /// The delivery record's error for a message that did not get through (`None` when it did).
    pub fn error(self) -> Option<&'static str> {
        match self {
            Outcome::Accepted => None,
            Outcome::RetryAfter { reason, .. } => Some(reason.as_str()),
            Outcome::TokenGone { .. } => Some("unregistered"),
            Outcome::Invalid { reason } => Some(reason.as_str()),
            Outcome::AuthFailure => Some("unauthenticated"),
        }
    }
}

/// Why an attempt may succeed later. The names are the metrics' and the records' labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryReason {
    /// Too many requests (429, FCM's QUOTA_EXCEEDED).
    QuotaExceeded,
    /// The provider is overloaded or down (502–504, FCM's UNAVAILABLE).
    Unavailable,
    /// The provider failed (500, FCM's INTERNAL).
    Internal,
    /// No answer: a network error, a timeout, or no OAuth token to send with.
    Transport,
}

/// Why a send went back to the queue (`switchboard_push_retries_total{reason}`): the
/// provider's transient answer, or the user's devices could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryCause {
    Provider(RetryReason),
    DeviceRead,
}

impl crate::metrics::Label for RetryCause {
    const ALL: &'static [RetryCause] = &[
        RetryCause::Provider(RetryReason::QuotaExceeded),
        RetryCause::Provider(RetryReason::Unavailable),
        RetryCause::Provider(RetryReason::Internal),
        RetryCause::Provider(RetryReason::Transport),
        RetryCause::DeviceRead,
    ];

    fn index(self) -> usize {
        match self {
            RetryCause::Provider(reason) => reason as usize,
            RetryCause::DeviceRead => 4,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            RetryCause::Provider(reason) => reason.as_str(),
            RetryCause::DeviceRead => "device_read",
        }
    }
}

impl From<RetryReason> for RetryCause {
    fn from(r: RetryReason) -> RetryCause {
        RetryCause::Provider(r)
    }
}

impl RetryReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RetryReason::QuotaExceeded => "quota_exceeded",
            RetryReason::Unavailable => "unavailable",
            RetryReason::Internal => "internal",
            RetryReason::Transport => "transport_error",
        }
    }
}

/// Why a message can never get through as it is. The names are the metrics' and the records'
/// labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidReason {
    /// The message is malformed, or the token is not a token (400).
    InvalidArgument,
    /// The token belongs to another sender (project).
    SenderIdMismatch,
    /// The platform behind the provider (APNs, Web Push) refused its credentials.
    ThirdPartyAuthError,
    /// Any other refusal.
    Other,
}

impl InvalidReason {
    pub fn as_str(self) -> &'static str {
        match self {
            InvalidReason::InvalidArgument => "invalid_argument",
            InvalidReason::SenderIdMismatch => "sender_id_mismatch",
            InvalidReason::ThirdPartyAuthError => "third_party_auth_error",
            InvalidReason::Other => "other",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Fcm(#[from] FcmSetupError),
    #[error(transparent)]
    WebPush(#[from] webpush::WebPushSetupError),
    #[error(transparent)]
    Apns(#[from] ApnsSetupError),
    #[error(transparent)]
    Queue(#[from] queue::QueueError),
}

/// The sender for the configured providers of every app, or a disabled one (none configured):
/// then an offline user's notification has no route.
pub async fn start(
    config: &Config,
    store: Store,
    ledger: SharedLedger,
    metrics: Arc<Metrics>,
) -> Result<Sender, SetupError> {
    // The series are listed (at 0) whether or not their provider is configured.
    let _ = metrics.fcm_results.counters::<fcm::RequestResult>();
    let _ = metrics.apns_results.counters::<apns::RequestResult>();
    let _ = metrics.webpush_results.counters::<webpush::RequestResult>();
    let _ = metrics.push_retries.counters::<RetryCause>();
    let mut providers = Providers::default();
    for app in config.apps() {
        if let Some(cfg) = &app.fcm {
            let provider = FcmProvider::new(cfg, app.private, metrics.clone()).await?;
            if let Err(e) = provider.check_token().await {
                tracing::warn!(app = ?app.id, error = %e, "FCM: no OAuth token yet; sends will retry it");
            }
            providers.add(app.id.clone(), ProviderKind::Fcm, Arc::new(provider));
        }
        if let Some(cfg) = &app.apns {
            let timeout = Duration::from_secs(config.fcm.request_timeout_secs);
            let provider = ApnsProvider::new(cfg, app.private, timeout, metrics.clone())?;
            providers.add(app.id.clone(), ProviderKind::Apns, Arc::new(provider));
        }
        if let Some(cfg) = &app.webpush {
            let provider = WebPushProvider::new(cfg, app.private, &metrics)?;
            providers.add(app.id.clone(), ProviderKind::Webpush, Arc::new(provider));
        }
    }
    if providers.is_empty() {
        tracing::warn!(
            "no push provider is configured (FCM is disabled: fcm.service_account is empty; APNs: apns.key_path is empty; Web Push: webpush.vapid_private_key is empty): notifications for offline users answer route \"none\""
        );
        return Ok(Sender::disabled());
    }
    tracing::info!(providers = ?providers.names(), "push providers");
    let queue = queue::open(config, store.clone()).await?;
    Ok(Sender::start(
        providers,
        queue,
        SenderConfig::new(config),
        store,
        ledger,
        metrics,
    ))
}
