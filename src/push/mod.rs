//! How notifications reach devices that hold no stream. A [`Provider`] sends one message to one
//! device token, once, and says how that went ([`Outcome`]); the [`Sender`] keeps every send in
//! the durable [`queue`] until it is settled, bounds those in flight, retries what the provider
//! says to retry, and records each outcome (the delivery record, the pruning of dead tokens).
//!
//! Providers: [`fcm`] (Firebase Cloud Messaging HTTP v1). A new one (APNs, Web Push) lives in
//! `push/<provider>/`: it implements `Provider`, and [`start`] builds it from its config.

pub mod fcm;
pub mod queue;
mod registration;
mod retry;
mod sender;

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
use crate::store::Store;
use fcm::{FcmProvider, FcmSetupError};

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
    Queue(#[from] queue::QueueError),
}

/// The sender for the configured provider, or a disabled one (nothing configured): then an
/// offline user's notification has no route.
pub async fn start(
    config: &Config,
    store: Store,
    ledger: SharedLedger,
    metrics: Arc<Metrics>,
) -> Result<Sender, SetupError> {
    if !config.fcm_enabled() {
        tracing::warn!(
            "FCM is disabled (fcm.service_account is empty): notifications for offline users answer route \"none\""
        );
        // The FCM series are listed (at 0) whether or not FCM is configured.
        let _ = metrics.fcm_results.counters::<fcm::RequestResult>();
        let _ = metrics.push_retries.counters::<RetryCause>();
        return Ok(Sender::disabled());
    }
    let provider = FcmProvider::new(&config.fcm, metrics.clone()).await?;
    if let Err(e) = provider.check_token().await {
        tracing::warn!(error = %e, "FCM: no OAuth token yet; sends will retry it");
    }
    let queue = queue::open(config, store.clone()).await?;
    Ok(Sender::start(
        Arc::new(provider),
        queue,
        SenderConfig::new(config),
        store,
        ledger,
        metrics,
    ))
}
