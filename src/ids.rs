//! Shapes of the identifiers clients and producers send us, and the ids we assign.

/// User ids: 1–128 bytes of `[A-Za-z0-9._:@-]` (they name broker channels and store rows).
pub fn valid_user_id(s: &str) -> bool {
    valid(s, |b| b.is_ascii_alphanumeric() || b"._:@-".contains(&b))
}

/// Device ids: 1–128 bytes of `[A-Za-z0-9._:-]` (docs/API.md).
pub fn valid_device_id(s: &str) -> bool {
    valid(s, |b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
}

/// Topic names: 1–128 bytes of `[A-Za-z0-9._:-]`.
pub fn valid_topic(s: &str) -> bool {
    valid_device_id(s)
}

fn valid(s: &str, allowed: impl Fn(u8) -> bool) -> bool {
    !s.is_empty() && s.len() <= 128 && s.bytes().all(allowed)
}

/// Ids we assigned (UUIDs); anything else cannot name a notification.
pub fn valid_notification_id(s: &str) -> bool {
    s.len() == 36 && s.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

/// A new notification or broadcast id: a UUIDv7, so ids sort by creation time.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        assert!(valid_user_id("user-1@example.com"));
        assert!(!valid_user_id(""));
        assert!(!valid_user_id("a b"));
        assert!(!valid_user_id(&"x".repeat(129)));
        assert!(valid_device_id("pixel-7:a.b_c"));
        assert!(!valid_device_id("a/b"));
        assert!(valid_topic("live-chat"));
        assert!(!valid_topic("a,b"));
    }

    #[test]
    fn ids_are_unique_and_ordered() {
        let a = new_id();
        let b = new_id();
        assert_ne!(a, b);
        assert!(a < b);
        assert!(valid_notification_id(&a));
        assert!(!valid_notification_id("x"));
    }
}
