//! What an FCM answer means for the message: done, retry, refresh the OAuth token, prune the
//! device token, or give up. Codes follow FCM v1's `FcmError.errorCode`, then the HTTP status.

use std::time::Duration;

use http::StatusCode;
use serde::Deserialize;

use crate::metrics::Label;
use crate::push::{InvalidReason, RetryReason};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Accepted,
    /// The token is no longer valid: delete it.
    Unregistered,
    /// Transient: try again after backoff (or the server's Retry-After).
    Retry {
        reason: RetryReason,
        retry_after: Option<Duration>,
    },
    /// Our OAuth token was refused: fetch a new one, once.
    Unauthenticated,
    /// Permanent for this message.
    Fatal {
        reason: InvalidReason,
    },
}

impl Answer {
    /// The `switchboard_fcm_requests_total{result}` label.
    pub fn result(&self) -> RequestResult {
        match self {
            Answer::Accepted => RequestResult::Ok,
            Answer::Unregistered => RequestResult::Unregistered,
            Answer::Retry { reason, .. } => RequestResult::Retry(*reason),
            Answer::Unauthenticated => RequestResult::Unauthenticated,
            Answer::Fatal { reason } => RequestResult::Invalid(*reason),
        }
    }
}

/// What one request to FCM answered: the `switchboard_fcm_requests_total{result}` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestResult {
    Ok,
    Unregistered,
    Retry(RetryReason),
    Unauthenticated,
    Invalid(InvalidReason),
}

impl Label for RequestResult {
    const ALL: &'static [RequestResult] = &[
        RequestResult::Ok,
        RequestResult::Unregistered,
        RequestResult::Retry(RetryReason::QuotaExceeded),
        RequestResult::Retry(RetryReason::Unavailable),
        RequestResult::Retry(RetryReason::Internal),
        RequestResult::Retry(RetryReason::Transport),
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
            RequestResult::Retry(reason) => 2 + reason as usize,
            RequestResult::Unauthenticated => 6,
            RequestResult::Invalid(reason) => 7 + reason as usize,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            RequestResult::Ok => "ok",
            RequestResult::Unregistered => "unregistered",
            RequestResult::Retry(reason) => reason.as_str(),
            RequestResult::Unauthenticated => "unauthenticated",
            RequestResult::Invalid(reason) => reason.as_str(),
        }
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorStatus,
}

#[derive(Deserialize)]
struct ErrorStatus {
    #[serde(default)]
    details: Vec<ErrorDetail>,
}

#[derive(Deserialize)]
struct ErrorDetail {
    #[serde(rename = "@type", default)]
    kind: String,
    #[serde(rename = "errorCode", default)]
    error_code: Option<String>,
}

fn fcm_error_code(body: &[u8]) -> Option<String> {
    let parsed: ErrorBody = serde_json::from_slice(body).ok()?;
    parsed
        .error
        .details
        .into_iter()
        .find(|d| d.kind.ends_with("google.firebase.fcm.v1.FcmError"))
        .and_then(|d| d.error_code)
}

pub fn classify(status: StatusCode, retry_after: Option<Duration>, body: &[u8]) -> Answer {
    if status.is_success() {
        return Answer::Accepted;
    }
    let retry = |reason| Answer::Retry {
        reason,
        retry_after,
    };
    let fatal = |reason| Answer::Fatal { reason };
    match fcm_error_code(body).as_deref() {
        Some("UNREGISTERED") => return Answer::Unregistered,
        Some("INVALID_ARGUMENT") => return fatal(InvalidReason::InvalidArgument),
        Some("SENDER_ID_MISMATCH") => return fatal(InvalidReason::SenderIdMismatch),
        Some("THIRD_PARTY_AUTH_ERROR") => return fatal(InvalidReason::ThirdPartyAuthError),
        Some("QUOTA_EXCEEDED") => return retry(RetryReason::QuotaExceeded),
        Some("UNAVAILABLE") => return retry(RetryReason::Unavailable),
        Some("INTERNAL") => return retry(RetryReason::Internal),
        _ => {}
    }
    match status.as_u16() {
        401 => Answer::Unauthenticated,
        429 => retry(RetryReason::QuotaExceeded),
        500 => retry(RetryReason::Internal),
        502..=504 => retry(RetryReason::Unavailable),
        400 => fatal(InvalidReason::InvalidArgument),
        _ => fatal(InvalidReason::Other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::push::retry::parse_retry_after;

    fn google(code: u16, status: &str, error_code: &str) -> Vec<u8> {
        format!(
            r#"{{"error":{{"code":{code},"message":"m","status":"{status}","details":[{{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"{error_code}"}}]}}}}"#
        )
        .into_bytes()
    }

    #[test]
    fn maps_every_documented_answer() {
        let s = StatusCode::from_u16;
        assert_eq!(classify(s(200).unwrap(), None, b"{}"), Answer::Accepted);
        assert_eq!(
            classify(
                s(404).unwrap(),
                None,
                &google(404, "NOT_FOUND", "UNREGISTERED")
            ),
            Answer::Unregistered
        );
        let ra = Some(Duration::from_secs(2));
        assert_eq!(
            classify(
                s(429).unwrap(),
                ra,
                &google(429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED")
            ),
            Answer::Retry {
                reason: RetryReason::QuotaExceeded,
                retry_after: ra
            }
        );
        let label = |a: Answer| a.result().as_str();
        assert_eq!(label(classify(s(503).unwrap(), None, b"")), "unavailable");
        assert_eq!(label(classify(s(500).unwrap(), None, b"")), "internal");
        assert_eq!(
            classify(
                s(400).unwrap(),
                None,
                &google(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT")
            ),
            Answer::Fatal {
                reason: InvalidReason::InvalidArgument
            }
        );
        assert_eq!(
            label(classify(
                s(403).unwrap(),
                None,
                &google(403, "PERMISSION_DENIED", "SENDER_ID_MISMATCH")
            )),
            "sender_id_mismatch"
        );
        assert_eq!(
            label(classify(
                s(401).unwrap(),
                None,
                &google(401, "UNAUTHENTICATED", "THIRD_PARTY_AUTH_ERROR")
            )),
            "third_party_auth_error"
        );
        assert_eq!(
            classify(
                s(401).unwrap(),
                None,
                br#"{"error":{"code":401,"status":"UNAUTHENTICATED"}}"#
            ),
            Answer::Unauthenticated
        );
    }

    #[test]
    fn request_results_are_the_metrics_labels() {
        let labels: Vec<&str> = RequestResult::ALL.iter().map(|r| r.as_str()).collect();
        assert!(RequestResult::ALL
            .iter()
            .enumerate()
            .all(|(i, r)| r.index() == i));
        assert_eq!(
            labels,
            [
                "ok",
                "unregistered",
                "quota_exceeded",
                "unavailable",
                "internal",
                "transport_error",
                "unauthenticated",
                "invalid_argument",
                "sender_id_mismatch",
                "third_party_auth_error",
                "other",
            ]
        );
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT").is_some());
        assert_eq!(parse_retry_after("soon"), None);
    }
}
