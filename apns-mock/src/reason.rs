//! Apple's error answers: every `reason` string of the APNs provider API with the HTTP status
//! APNs sends it with, and the JSON body (`{"reason":"…"}`, plus `"timestamp"` on a 410).

use std::str::FromStr;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Declares [`Reason`] from `Name => status` pairs, so a name and its status never drift apart.
macro_rules! reasons {
    ($($name:ident => $status:literal,)+) => {
        /// One `reason` of Apple's "Handling notification responses from APNs" table.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Reason {
            $($name,)+
        }

        impl Reason {
            /// Every reason, in Apple's table order.
            pub const ALL: &'static [Reason] = &[$(Reason::$name,)+];

            /// The string APNs puts in `reason`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Reason::$name => stringify!($name),)+
                }
            }

            /// The HTTP status APNs answers this reason with.
            pub fn status(self) -> StatusCode {
                let code: u16 = match self {
                    $(Reason::$name => $status,)+
                };
                StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }
        }
    };
}

reasons! {
    BadCollapseId => 400,
    BadDeviceToken => 400,
    BadExpirationDate => 400,
    BadMessageId => 400,
    BadPriority => 400,
    BadTopic => 400,
    DeviceTokenNotForTopic => 400,
    DuplicateHeaders => 400,
    IdleTimeout => 400,
    InvalidPushType => 400,
    MissingDeviceToken => 400,
    MissingTopic => 400,
    PayloadEmpty => 400,
    TopicDisallowed => 400,
    BadCertificate => 403,
    BadCertificateEnvironment => 403,
    ExpiredProviderToken => 403,
    Forbidden => 403,
    InvalidProviderToken => 403,
    MissingProviderToken => 403,
    UnrelatedKeyIdInToken => 403,
    BadEnvironmentKeyIdInToken => 403,
    BadPath => 404,
    MethodNotAllowed => 405,
    ExpiredToken => 410,
    Unregistered => 410,
    PayloadTooLarge => 413,
    TooManyProviderTokenUpdates => 429,
    TooManyRequests => 429,
    InternalServerError => 500,
    ServiceUnavailable => 503,
    Shutdown => 503,
}

/// A `reason` string that is not in Apple's table.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not an APNs reason")]
pub struct UnknownReason(pub String);

impl FromStr for Reason {
    type Err = UnknownReason;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .iter()
            .copied()
            .find(|reason| reason.as_str() == text)
            .ok_or_else(|| UnknownReason(text.to_owned()))
    }
}

impl Reason {
    /// The reason Apple uses most for a status, for faults injected with a status only.
    pub fn default_for(status: u16) -> Option<Self> {
        Some(match status {
            400 => Self::BadDeviceToken,
            403 => Self::Forbidden,
            404 => Self::BadPath,
            405 => Self::MethodNotAllowed,
            410 => Self::Unregistered,
            413 => Self::PayloadTooLarge,
            429 => Self::TooManyRequests,
            500 => Self::InternalServerError,
            503 => Self::ServiceUnavailable,
            _ => return None,
        })
    }
}

/// One error answer: the status comes from the reason; a 410 carries `timestamp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ApnsError {
    pub reason: Reason,
    /// Milliseconds since the epoch at which the token stopped being valid (410 only).
    pub timestamp_ms: Option<u64>,
    /// Adds `Retry-After: S` (injected faults only; Apple documents no such header).
    pub retry_after_secs: Option<u64>,
}

impl From<Reason> for ApnsError {
    fn from(reason: Reason) -> Self {
        Self {
            reason,
            timestamp_ms: None,
            retry_after_secs: None,
        }
    }
}

impl ApnsError {
    /// The JSON body exactly as sent.
    pub(crate) fn body(&self) -> String {
        match self.timestamp_ms {
            Some(timestamp) if self.reason.status() == StatusCode::GONE => {
                json!({ "reason": self.reason.as_str(), "timestamp": timestamp }).to_string()
            }
            _ => json!({ "reason": self.reason.as_str() }).to_string(),
        }
    }
}

impl IntoResponse for ApnsError {
    fn into_response(self) -> Response {
        let mut response = (
            self.reason.status(),
            [(header::CONTENT_TYPE, "application/json")],
            self.body(),
        )
            .into_response();
        if let Some(seconds) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_parses_back_from_its_name() {
        for reason in Reason::ALL {
            assert_eq!(reason.as_str().parse::<Reason>().unwrap(), *reason);
        }
        assert!("NoSuchReason".parse::<Reason>().is_err());
    }

    #[test]
    fn only_a_410_carries_a_timestamp() {
        let gone = ApnsError {
            reason: Reason::Unregistered,
            timestamp_ms: Some(1_700_000_000_000),
            retry_after_secs: None,
        };
        assert_eq!(
            gone.body(),
            r#"{"reason":"Unregistered","timestamp":1700000000000}"#
        );
        let bad = ApnsError {
            reason: Reason::BadTopic,
            ..gone
        };
        assert_eq!(bad.body(), r#"{"reason":"BadTopic"}"#);
    }
}
