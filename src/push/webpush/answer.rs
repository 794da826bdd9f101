//! What a push service's answer (RFC 8030 §5, RFC 8292 §4) means for the message, and the
//! `switchboard_webpush_results_total{result}` label of each send.

use std::time::Duration;

use http::StatusCode;

use crate::metrics::Label;
use crate::push::{InvalidReason, Outcome, RetryReason};

/// How one send to a push service ended: the metric's `result` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestResult {
    /// 201 (or another 2xx): the push service took the message.
    Ok,
    /// 404 or 410: the subscription expired or was unsubscribed.
    Gone,
    Retry(RetryReason),
    /// 401 or 403: the push service refused our VAPID token or key.
    Unauthorized,
    /// 400: the request was malformed (headers, encryption).
    BadRequest,
    /// 413 from the push service, or the encrypted message would exceed 4096 bytes.
    PayloadTooLarge,
    /// Any other refusal.
    Other,
}

impl Label for RequestResult {
    const ALL: &'static [RequestResult] = &[
        RequestResult::Ok,
        RequestResult::Gone,
        RequestResult::Retry(RetryReason::QuotaExceeded),
        RequestResult::Retry(RetryReason::Unavailable),
        RequestResult::Retry(RetryReason::Internal),
        RequestResult::Retry(RetryReason::Transport),
        RequestResult::Unauthorized,
        RequestResult::BadRequest,
        RequestResult::PayloadTooLarge,
        RequestResult::Other,
    ];

    fn index(self) -> usize {
        match self {
            RequestResult::Ok => 0,
            RequestResult::Gone => 1,
            RequestResult::Retry(reason) => 2 + reason as usize,
            RequestResult::Unauthorized => 6,
            RequestResult::BadRequest => 7,
            RequestResult::PayloadTooLarge => 8,
            RequestResult::Other => 9,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            RequestResult::Ok => "ok",
            RequestResult::Gone => "gone",
            RequestResult::Retry(reason) => reason.as_str(),
            RequestResult::Unauthorized => "unauthorized",
            RequestResult::BadRequest => "bad_request",
            RequestResult::PayloadTooLarge => "payload_too_large",
            RequestResult::Other => "other",
        }
    }
}

impl RequestResult {
    /// The result of a push service's answer; `retry_after` is its `Retry-After`.
    pub fn of_status(status: StatusCode) -> RequestResult {
        match status.as_u16() {
            200..=299 => RequestResult::Ok,
            404 | 410 => RequestResult::Gone,
            429 => RequestResult::Retry(RetryReason::QuotaExceeded),
            // A push service that timed out reading us: the message itself is fine.
            408 => RequestResult::Retry(RetryReason::Transport),
            502..=504 => RequestResult::Retry(RetryReason::Unavailable),
            500..=599 => RequestResult::Retry(RetryReason::Internal),
            401 | 403 => RequestResult::Unauthorized,
            400 => RequestResult::BadRequest,
            413 => RequestResult::PayloadTooLarge,
            _ => RequestResult::Other,
        }
    }

    /// What the sender does about it.
    pub fn outcome(self, retry_after: Option<Duration>) -> Outcome {
        match self {
            RequestResult::Ok => Outcome::Accepted,
            RequestResult::Gone => Outcome::TokenGone { at: None },
            RequestResult::Retry(reason) => Outcome::RetryAfter {
                reason,
                after: retry_after,
            },
            RequestResult::Unauthorized => Outcome::AuthFailure,
            RequestResult::BadRequest | RequestResult::PayloadTooLarge => Outcome::Invalid {
                reason: InvalidReason::InvalidArgument,
            },
            RequestResult::Other => Outcome::Invalid {
                reason: InvalidReason::Other,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(status: u16, retry_after: Option<u64>) -> Outcome {
        RequestResult::of_status(StatusCode::from_u16(status).unwrap())
            .outcome(retry_after.map(Duration::from_secs))
    }

    #[test]
    fn every_answer_of_rfc_8030_maps_to_its_outcome() {
        assert_eq!(outcome(201, None), Outcome::Accepted);
        assert_eq!(outcome(202, None), Outcome::Accepted);
        assert_eq!(outcome(404, None), Outcome::TokenGone { at: None });
        assert_eq!(outcome(410, None), Outcome::TokenGone { at: None });
        assert_eq!(
            outcome(429, Some(7)),
            Outcome::RetryAfter {
                reason: RetryReason::QuotaExceeded,
                after: Some(Duration::from_secs(7))
            }
        );
        assert_eq!(
            outcome(503, None),
            Outcome::RetryAfter {
                reason: RetryReason::Unavailable,
                after: None
            }
        );
        assert_eq!(
            outcome(500, None),
            Outcome::RetryAfter {
                reason: RetryReason::Internal,
                after: None
            }
        );
        for status in [400, 413] {
            assert_eq!(
                outcome(status, None),
                Outcome::Invalid {
                    reason: InvalidReason::InvalidArgument
                }
            );
        }
        assert_eq!(outcome(401, None), Outcome::AuthFailure);
        assert_eq!(outcome(403, None), Outcome::AuthFailure);
        assert_eq!(
            outcome(415, None),
            Outcome::Invalid {
                reason: InvalidReason::Other
            }
        );
    }
}
