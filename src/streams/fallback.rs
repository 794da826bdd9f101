//! What leaves a stream unwritten: the notifications the router must send by push instead,
//! and why.

use crate::metrics::Label;
use crate::notification::SharedNotification;

/// A notification that reached this node for a stream but will not be written to one.
pub struct Fallback {
    pub notification: SharedNotification,
    pub reason: FallbackReason,
}

/// Why a notification bound for a stream goes to push instead
/// (`switchboard_fallbacks_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FallbackReason {
    /// Published to this node, whose stream of the user had just gone.
    StreamGone,
    /// Queued on a stream that ended before writing it.
    StreamClosed,
    /// The broker could not carry it. No path gives this reason; its series is part of the
    /// metrics contract.
    BrokerUnavailable,
}

impl Label for FallbackReason {
    const ALL: &'static [FallbackReason] = &[
        FallbackReason::StreamGone,
        FallbackReason::StreamClosed,
        FallbackReason::BrokerUnavailable,
    ];

    fn index(self) -> usize {
        self as usize
    }

    fn as_str(self) -> &'static str {
        match self {
            FallbackReason::StreamGone => "stream_gone",
            FallbackReason::StreamClosed => "stream_closed",
            FallbackReason::BrokerUnavailable => "broker_unavailable",
        }
    }
}
