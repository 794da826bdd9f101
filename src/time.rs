//! Wall-clock helpers. Times that cross nodes (accept time, `sent_at`) are unix time, not
//! `Instant`, so another node can measure latency from them.

use std::time::{SystemTime, UNIX_EPOCH};

pub fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

pub fn unix_millis() -> u64 {
    unix_micros() / 1000
}

pub fn unix_secs() -> u64 {
    unix_micros() / 1_000_000
}
