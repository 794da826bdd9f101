//! Identifiers clients and producers send us, as types that only hold valid values (parsed once
//! where they enter: JSON bodies, paths, queries, token claims), and the ids we assign.

use std::fmt;
use std::ops::Deref;

use serde::{Deserialize, Serialize, Serializer};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;

/// A value that is not a valid identifier of its kind; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidId(String);

/// Defines a string newtype that deserializes only from a valid value, with its schema.
macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, pattern = $pattern:literal, example = $example:literal,
     valid = $valid:expr, invalid = $invalid:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
        #[serde(try_from = "String")]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidId;

            fn try_from(s: String) -> Result<$name, InvalidId> {
                let valid: fn(&str) -> bool = $valid;
                if valid(&s) {
                    Ok($name(s))
                } else {
                    let invalid: fn(&str) -> String = $invalid;
                    Err(InvalidId(invalid(&s)))
                }
            }
        }

        impl TryFrom<&str> for $name {
            type Error = InvalidId;

            fn try_from(s: &str) -> Result<$name, InvalidId> {
                $name::try_from(s.to_string())
            }
        }

        impl std::str::FromStr for $name {
            type Err = InvalidId;

            fn from_str(s: &str) -> Result<$name, InvalidId> {
                $name::try_from(s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl Deref for $name {
            type Target = str;

            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some($pattern))
                    .examples([$example])
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}

id_type!(
    /// A user: 1–128 characters of `[A-Za-z0-9._:@-]` (it names broker channels and store rows).
    UserId,
    pattern = "^[A-Za-z0-9._:@-]{1,128}$",
    example = "alice",
    valid = |s| valid(s, |b| b.is_ascii_alphanumeric() || b"._:@-".contains(&b)),
    invalid = |_| "user_id must be 1-128 characters of A-Z a-z 0-9 . _ : @ -".into()
);

id_type!(
    /// A device of a user, named by its app: 1–128 characters of `[A-Za-z0-9._:-]`.
    DeviceId,
    pattern = "^[A-Za-z0-9._:-]{1,128}$",
    example = "phone",
    valid = valid_name,
    invalid = |_| "device_id must be 1-128 characters of A-Z a-z 0-9 . _ : -".into()
);

id_type!(
    /// An app served by this instance (an `[[apps]]` entry's `id`): 1–64 characters of
    /// `[A-Za-z0-9._-]`. Devices registered without one belong to the default app.
    AppId,
    pattern = "^[A-Za-z0-9._-]{1,64}$",
    example = "ios-shop",
    valid = |s| s.len() <= 64 && valid(s, |b| b.is_ascii_alphanumeric() || b"._-".contains(&b)),
    invalid = |_| "app must be 1-64 characters of A-Z a-z 0-9 . _ -".into()
);

id_type!(
    /// A broadcast topic: 1–128 characters of `[A-Za-z0-9._:-]`.
    Topic,
    pattern = "^[A-Za-z0-9._:-]{1,128}$",
    example = "news",
    valid = valid_name,
    invalid = |s| format!("topic {s:?} must be 1-128 characters of A-Z a-z 0-9 . _ : -")
);

id_type!(
    /// A notification id we assigned (a UUID); nothing else can name a notification.
    NotificationId,
    pattern = "^[0-9a-fA-F-]{36}$",
    example = "01a2281e-af88-7611-8000-3c5e1f2a9b40",
    valid = |s| s.len() == 36 && s.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'),
    invalid = |s| format!("{s:?} is not a notification id")
);

fn valid_name(s: &str) -> bool {
    valid(s, |b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
}

fn valid(s: &str, allowed: impl Fn(u8) -> bool) -> bool {
    !s.is_empty() && s.len() <= 128 && s.bytes().all(allowed)
}

/// A new notification or broadcast id: a UUIDv7, so ids sort by creation time.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_valid_values_parse() {
        assert!(UserId::try_from("user-1@example.com").is_ok());
        assert!(UserId::try_from("").is_err());
        assert!(UserId::try_from("a b").is_err());
        assert!(UserId::try_from("x".repeat(129)).is_err());
        assert!(UserId::try_from("x".repeat(128)).is_ok());
        assert!(DeviceId::try_from("pixel-7:a.b_c").is_ok());
        assert!(DeviceId::try_from("a/b").is_err());
        assert!(DeviceId::try_from("a@b").is_err());
        assert!(Topic::try_from("live-chat").is_ok());
        assert!(Topic::try_from("a,b").is_err());
    }

    #[test]
    fn refusals_name_the_field() {
        let e = serde_json::from_str::<UserId>(r#""a b""#).unwrap_err();
        assert!(e.to_string().starts_with("user_id must be"), "{e}");
        let e = DeviceId::try_from("").unwrap_err();
        assert!(e.to_string().starts_with("device_id must be"), "{e}");
        let e = Topic::try_from("a b").unwrap_err();
        assert!(e.to_string().starts_with("topic \"a b\" must be"), "{e}");
        let e = NotificationId::try_from("x").unwrap_err();
        assert_eq!(e.to_string(), r#""x" is not a notification id"#);
    }

    #[test]
    fn ids_serialize_as_their_string() {
        let id: UserId = serde_json::from_str(r#""alice""#).unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), r#""alice""#);
        assert_eq!(&*id, "alice");
    }

    #[test]
    fn new_ids_are_unique_ordered_notification_ids() {
        let a = new_id();
        let b = new_id();
        assert_ne!(a, b);
        assert!(a < b);
        assert!(NotificationId::try_from(a).is_ok());
    }
}
