//! What an APNs answer means for the message: done, retry, renew the provider token, delete the
//! device token, or give up. Apple's `reason` first, then the status.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::StatusCode;
use serde::Deserialize;

use crate::metrics::Label;
use crate::push::{InvalidReason, Outcome, RetryReason};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Accepted,
    /// The token no longer reaches the app (410 `Unregistered`/`ExpiredToken`), since `at`.
    Unregistered {
        at: Option<SystemTime>,
    },
    /// The token is not a token of this topic (`BadDeviceToken`, `DeviceTokenNotForTopic`).
    BadDeviceToken,
    Retry {
        reason: RetryReason,
        retry_after: Option<Duration>,
    },
    /// Our provider token is too old for APNs: sign a new one, once.
    ExpiredProviderToken,
    /// Our provider token or key was refused.
    Unauthenticated,
    Fatal {
        reason: InvalidReason,
    },
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    reason: String,
    /// Unix ms: since when the token is no longer valid.
    #[serde(default)]
    timestamp: Option<u64>,
}

pub fn classify(status: StatusCode, retry_after: Option<Duration>, body: &[u8]) -> Answer {
    if status.is_success() {
        return Answer::Accepted;
    }
    let (reason, timestamp) = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(b) => (b.reason, b.timestamp),
        Err(_) => (String::new(), None),
    };
    match (status.as_u16(), reason.as_str()) {
        (410, _) => Answer::Unregistered {
            at: timestamp.map(|ms| UNIX_EPOCH + Duration::from_millis(ms)),
        },
        (_, "BadDeviceToken" | "DeviceTokenNotForTopic") => Answer::BadDeviceToken,
        (403, "ExpiredProviderToken") => Answer::ExpiredProviderToken,
        (403, "InvalidProviderToken" | "MissingProviderToken" | "BadCertificate") => {
            Answer::Unauthenticated
        }
        (429, _) => Answer::Retry {
            reason: RetryReason::QuotaExceeded,
            retry_after,
        },
        (500, _) => Answer::Retry {
            reason: RetryReason::Internal,
            retry_after,
        },
        (502..=504, _) => Answer::Retry {
            reason: RetryReason::Unavailable,
            retry_after,
        },
        (400 | 413, _) => Answer::Fatal {
            reason: InvalidReason::InvalidArgument,
        },
        (403, _) => Answer::Fatal {
            reason: InvalidReason::ThirdPartyAuthError,
        },
        _ => Answer::Fatal {
            reason: InvalidReason::Other,
        },
    }
}

impl Answer {
    pub fn result(self) -> RequestResult {
        match self {
            Answer::Accepted => RequestResult::Ok,
            Answer::Unregistered { .. } => RequestResult::Unregistered,
            Answer::BadDeviceToken => RequestResult::BadDeviceToken,
            Answer::Retry { reason, .. } => RequestResult::Retry(reason),
            Answer::ExpiredProviderToken => RequestResult::ExpiredProviderToken,
            Answer::Unauthenticated => RequestResult::Unauthenticated,
            Answer::Fatal { reason } => RequestResult::Invalid(reason),
        }
    }

    /// The outcome of a send that ended with this answer (an expired provider token after its
    /// renewal: the credentials are refused).
    pub fn outcome(self) -> Outcome {
        match self {
            Answer::Accepted => Outcome::Accepted,
            Answer::Unregistered { at } => Outcome::TokenGone { at },
            Answer::BadDeviceToken => Outcome::TokenGone { at: None },
            Answer::Retry {
                reason,
                retry_after,
            } => Outcome::RetryAfter {
                reason,
                after: retry_after,
            },
            Answer::ExpiredProviderToken | Answer::Unauthenticated => Outcome::AuthFailure,
            Answer::Fatal { reason } => Outcome::Invalid { reason },
        }
    }
}

/// What one request to APNs answered: the `switchboard_apns_requests_total{result}` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestResult {
    Ok,
    Unregistered,
    BadDeviceToken,
    Retry(RetryReason),
    ExpiredProviderToken,
    Unauthenticated,
    Invalid(InvalidReason),
}

impl Label for RequestResult {
    const ALL: &'static [RequestResult] = &[
        RequestResult::Ok,
        RequestResult::Unregistered,
        RequestResult::BadDeviceToken,
        RequestResult::Retry(RetryReason::QuotaExceeded),
        RequestResult::Retry(RetryReason::Unavailable),
        RequestResult::Retry(RetryReason::Internal),
        RequestResult::Retry(RetryReason::Transport),
        RequestResult::ExpiredProviderToken,
        RequestResult::Unauthenticated,
        RequestResult::Invalid(InvalidReason::InvalidArgument),
        RequestResult::Invalid(InvalidReason::SenderIdMismatch),
        RequestResult::Invalid(InvalidReason::ThirdPartyAuthError),
        RequestResult::Invalid(InvalidReason::Other),
    ];

    fn index(self) -> usize {
        match self {
            RequestResult::Ok => 0,
            RequestResult::Unregistered => 1,
            RequestResult::BadDeviceToken => 2,
            RequestResult::Retry(reason) => 3 + reason as usize,
            RequestResult::ExpiredProviderToken => 7,
            RequestResult::Unauthenticated => 8,
            RequestResult::Invalid(reason) => 9 + reason as usize,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            RequestResult::Ok => "ok",
            RequestResult::Unregistered => "unregistered",
            RequestResult::BadDeviceToken => "bad_device_token",
            RequestResult::Retry(reason) => reason.as_str(),
            RequestResult::ExpiredProviderToken => "expired_provider_token",
            RequestResult::Unauthenticated => "unauthenticated",
            RequestResult::Invalid(reason) => reason.as_str(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Answer {
        classify(StatusCode::from_u16(status).unwrap(), None, body.as_bytes())
    }

    #[test]
    fn apples_answers_map_to_what_the_sender_does() {
        assert_eq!(answer(200, ""), Answer::Accepted);
        assert_eq!(
            answer(
                410,
                r#"{"reason":"Unregistered","timestamp":1700000000000}"#
            ),
            Answer::Unregistered {
                at: Some(UNIX_EPOCH + Duration::from_millis(1_700_000_000_000))
            }
        );
        assert_eq!(
            answer(400, r#"{"reason":"BadDeviceToken"}"#),
            Answer::BadDeviceToken
        );
        assert_eq!(
            answer(400, r#"{"reason":"DeviceTokenNotForTopic"}"#),
            Answer::BadDeviceToken
        );
        assert_eq!(
            answer(403, r#"{"reason":"ExpiredProviderToken"}"#),
            Answer::ExpiredProviderToken
        );
        assert_eq!(
            answer(403, r#"{"reason":"InvalidProviderToken"}"#),
            Answer::Unauthenticated
        );
        for (status, reason) in [
            (429, RetryReason::QuotaExceeded),
            (500, RetryReason::Internal),
            (503, RetryReason::Unavailable),
        ] {
            assert_eq!(
                answer(status, "{}"),
                Answer::Retry {
                    reason,
                    retry_after: None
                }
            );
        }
        assert_eq!(
            answer(413, r#"{"reason":"PayloadTooLarge"}"#),
            Answer::Fatal {
                reason: InvalidReason::InvalidArgument
            }
        );
    }

    #[test]
    fn every_result_is_at_its_index() {
        for (i, r) in RequestResult::ALL.iter().enumerate() {
            assert_eq!(r.index(), i, "{}", r.as_str());
        }
    }
}
