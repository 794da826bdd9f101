//! Validation of a `messages:send` body as Google does it, in two layers: the JSON front end
//! (unknown fields, wrong types, oneof conflicts: 400 with a `google.rpc.BadRequest` detail) and
//! FCM itself (recipient, payload size, reserved keys: 400 with `FcmError` INVALID_ARGUMENT).
//! Also the payload size rule ([`payload_size`]) that the router enforces before sending.

use std::fmt;

use serde_json::{Map, Value};

use crate::google_error::GoogleError;
use crate::schema::{type_label, Field, Kind, SEND_REQUEST};

/// Largest accepted [`payload_size`], in bytes.
pub const MAX_PAYLOAD_BYTES: usize = 4096;

/// The payload size of an FCM v1 `message` object, the quantity limited to
/// [`MAX_PAYLOAD_BYTES`] (4096): the byte length of the compact JSON serialization
/// (`serde_json::to_vec`) of `message.data` plus that of `message.notification`, each counted
/// only when present and not `null`. Nothing else (android, apns, webpush, target) counts.
/// A `message` over the limit is answered 400 INVALID_ARGUMENT "Message is too big".
pub fn payload_size(message: &Value) -> usize {
    let mut counter = ByteCounter(0);
    for key in ["data", "notification"] {
        if let Some(part) = message.get(key).filter(|v| !v.is_null()) {
            // Serializing a Value into a sink that never fails cannot fail.
            let _ = serde_json::to_writer(&mut counter, part);
        }
    }
    counter.0
}

/// An `io::Write` that only counts, so sizing a payload allocates nothing.
struct ByteCounter(usize);

impl std::io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What the send handler needs from a valid request.
pub(crate) struct Checked<'a> {
    /// `validate_only` / `validateOnly`: validate, answer, but do not deliver (record).
    pub validate_only: bool,
    /// The registration token (`token` or `fid`), if the message targets one device.
    pub device: Option<&'a str>,
}

/// Validates a parsed `messages:send` body.
pub(crate) fn validate_send(body: &Value) -> Result<Checked<'_>, GoogleError> {
    let Some(root) = body.as_object() else {
        return Err(GoogleError::bad_json(
            None,
            "Invalid JSON payload received. Unknown name \"\": Root element must be a message."
                .to_owned(),
        ));
    };
    check_object(root, SEND_REQUEST, &Path::ROOT)?;
    let validate_only = [root.get("validate_only"), root.get("validateOnly")]
        .into_iter()
        .flatten()
        .any(|v| v.as_bool() == Some(true));
    let Some(message) = root.get("message").and_then(Value::as_object) else {
        return Err(no_recipient());
    };
    let device = check_target(message)?;
    let size = payload_size(body.get("message").unwrap_or(&Value::Null));
    if size > MAX_PAYLOAD_BYTES {
        return Err(GoogleError::invalid_argument("Message is too big"));
    }
    check_data_keys(message.get("data"))?;
    let android = message.get("android");
    check_data_keys(android.and_then(|a| a.get("data")))?;
    let ttl = android.and_then(|a| a.get("ttl")).and_then(Value::as_str);
    if ttl.is_some_and(|t| t.starts_with('-')) {
        return Err(GoogleError::invalid_argument("TTL cannot be negative."));
    }
    Ok(Checked {
        validate_only,
        device,
    })
}

/// Exactly one target (the JSON layer already refused two); returns the device token if any.
fn check_target(message: &Map<String, Value>) -> Result<Option<&str>, GoogleError> {
    let set = |name: &str| message.get(name).and_then(Value::as_str);
    if let Some(token) = set("token").or_else(|| set("fid")) {
        if token.trim().is_empty() {
            return Err(GoogleError::invalid_argument(
                "The registration token is not a valid FCM registration token",
            ));
        }
        return Ok(Some(token));
    }
    if let Some(topic) = set("topic") {
        let name = topic.strip_prefix("/topics/").unwrap_or(topic);
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.~%".contains(&b));
        if !valid {
            return Err(GoogleError::invalid_argument(format!(
                "Invalid topic name: \"{topic}\". Topic names must match [a-zA-Z0-9-_.~%]+."
            )));
        }
        return Ok(None);
    }
    match set("condition") {
        Some(condition) if condition.trim().is_empty() => Err(GoogleError::invalid_argument(
            "Invalid condition expression provided.",
        )),
        Some(_) => Ok(None),
        None => Err(no_recipient()),
    }
}

fn no_recipient() -> GoogleError {
    GoogleError::invalid_argument("Recipient of the message is not set.")
}

/// FCM reserves `from`, `message_type`, and keys starting with `google.` or `gcm`.
fn check_data_keys(data: Option<&Value>) -> Result<(), GoogleError> {
    let Some(data) = data.and_then(Value::as_object) else {
        return Ok(());
    };
    let reserved = data.keys().find(|k| {
        let lower = k.to_ascii_lowercase();
        lower == "from"
            || lower == "message_type"
            || lower.starts_with("google.")
            || lower.starts_with("gcm")
    });
    match reserved {
        Some(key) => Err(GoogleError::invalid_argument(format!(
            "Invalid data payload key: \"{key}\" is a reserved word."
        ))),
        None => Ok(()),
    }
}

/// Walks one JSON object against its field table.
fn check_object(
    object: &Map<String, Value>,
    fields: &'static [Field],
    path: &Path<'_>,
) -> Result<(), GoogleError> {
    let mut seen = 0u64;
    let mut oneof_set: Option<&'static str> = None;
    for (key, value) in object {
        let Some(index) = fields.iter().position(|f| f.name == key || f.json == key) else {
            let at = if path.is_root() {
                String::new()
            } else {
                format!(" at '{path}'")
            };
            return Err(GoogleError::bad_json(
                Some(path.to_string()),
                format!(
                    "Invalid JSON payload received. Unknown name \"{key}\"{at}: Cannot find field."
                ),
            ));
        };
        let field = &fields[index];
        let child = path.field(field.name);
        if seen & (1 << index) != 0 {
            return Err(GoogleError::bad_json(
                Some(child.to_string()),
                format!("Invalid JSON payload received. Field '{child}' is set more than once."),
            ));
        }
        seen |= 1 << index;
        if value.is_null() {
            continue;
        }
        if let Some(group) = field.oneof {
            if oneof_set.is_some() {
                return Err(GoogleError::bad_json(
                    Some(path.to_string()),
                    format!(
                        "Invalid JSON payload received. Oneof field '{group}' is already set. \
                         Cannot set '{}'",
                        field.json
                    ),
                ));
            }
            oneof_set = Some(field.name);
        }
        check_value(value, &field.kind, &child)?;
    }
    Ok(())
}

fn check_value(value: &Value, kind: &'static Kind, path: &Path<'_>) -> Result<(), GoogleError> {
    let valid = match kind {
        Kind::String => value.is_string(),
        Kind::Bool => value.is_boolean(),
        Kind::Int => match value {
            Value::Number(n) => n.as_i64().is_some_and(|i| i32::try_from(i).is_ok()),
            Value::String(s) => s.parse::<i32>().is_ok(),
            _ => false,
        },
        Kind::Float => value.is_number(),
        Kind::Duration => value.as_str().is_some_and(is_duration),
        Kind::Timestamp => value.as_str().is_some_and(is_timestamp),
        Kind::Enum(_, names) => match value {
            Value::String(s) => names.iter().any(|n| n.eq_ignore_ascii_case(s)),
            Value::Number(n) => n.as_u64().is_some_and(|i| i < names.len() as u64),
            _ => false,
        },
        Kind::Struct => value.is_object(),
        Kind::StringMap => match value.as_object() {
            Some(map) => {
                for (index, entry) in map.values().enumerate() {
                    if !entry.is_string() {
                        return Err(invalid_value(&path.map_value(index), kind, entry));
                    }
                }
                true
            }
            None => false,
        },
        Kind::List(inner) => match value.as_array() {
            Some(items) => {
                for (index, item) in items.iter().enumerate() {
                    check_value(item, inner, &path.index(index))?;
                }
                true
            }
            None => false,
        },
        Kind::Message(_, fields) => match value.as_object() {
            Some(object) => return check_object(object, fields, path),
            None => false,
        },
    };
    if valid {
        Ok(())
    } else {
        Err(invalid_value(path, kind, value))
    }
}

fn invalid_value(path: &Path<'_>, kind: &Kind, value: &Value) -> GoogleError {
    GoogleError::bad_json(
        Some(path.to_string()),
        format!("Invalid value at '{path}' ({}), {value}", type_label(kind)),
    )
}

/// `google.protobuf.Duration` JSON: `-?digits(.1-9 digits)?s`.
fn is_duration(text: &str) -> bool {
    let Some(number) = text.strip_suffix('s') else {
        return false;
    };
    let number = number.strip_prefix('-').unwrap_or(number);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, "1"));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits(whole) && whole.len() <= 12 && digits(fraction) && fraction.len() <= 9
}

/// RFC 3339 as protobuf accepts it: `YYYY-MM-DDTHH:MM:SS[.f]` then `Z` or `±HH:MM`.
fn is_timestamp(text: &str) -> bool {
    let bytes = text.as_bytes();
    let shape = b"0000-00-00T00:00:00";
    if bytes.len() < shape.len() + 1 {
        return false;
    }
    let head_ok = shape.iter().zip(bytes).all(|(want, got)| match want {
        b'0' => got.is_ascii_digit(),
        b'T' => got.eq_ignore_ascii_case(&b'T'),
        other => other == got,
    });
    let rest = &text[shape.len()..];
    let rest = match rest.strip_prefix('.') {
        Some(fraction) => fraction.trim_start_matches(|c: char| c.is_ascii_digit()),
        None => rest,
    };
    let zone_ok = rest.eq_ignore_ascii_case("z")
        || (rest.len() == 6
            && (rest.starts_with('+') || rest.starts_with('-'))
            && rest.as_bytes()[3] == b':');
    head_ok && zone_ok
}

/// A position in the request, printed as Google prints it: `message.data[0].value`.
struct Path<'a> {
    parent: Option<&'a Path<'a>>,
    segment: Segment,
}

#[derive(Clone, Copy)]
enum Segment {
    Root,
    Field(&'static str),
    Index(usize),
    MapValue(usize),
}

impl<'a> Path<'a> {
    const ROOT: Path<'static> = Path {
        parent: None,
        segment: Segment::Root,
    };

    fn is_root(&self) -> bool {
        matches!(self.segment, Segment::Root)
    }

    fn child(&'a self, segment: Segment) -> Path<'a> {
        Path {
            parent: Some(self),
            segment,
        }
    }

    fn field(&'a self, name: &'static str) -> Path<'a> {
        self.child(Segment::Field(name))
    }

    fn index(&'a self, index: usize) -> Path<'a> {
        self.child(Segment::Index(index))
    }

    fn map_value(&'a self, index: usize) -> Path<'a> {
        self.child(Segment::MapValue(index))
    }
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(parent) = self.parent {
            parent.fmt(f)?;
        }
        let after_root = self.parent.is_none_or(Path::is_root);
        match self.segment {
            Segment::Root => Ok(()),
            Segment::Field(name) if after_root => f.write_str(name),
            Segment::Field(name) => write!(f, ".{name}"),
            Segment::Index(i) => write!(f, "[{i}]"),
            Segment::MapValue(i) => write!(f, "[{i}].value"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn payload_size_counts_data_and_notification_only() {
        let message = json!({"token": "t", "data": {"a": "b"}, "notification": {"title": "x"},
                             "android": {"data": {"big": "x".repeat(9000)}}});
        assert_eq!(
            payload_size(&message),
            r#"{"a":"b"}"#.len() + r#"{"title":"x"}"#.len()
        );
        assert_eq!(payload_size(&json!({"token": "t"})), 0);
    }

    #[test]
    fn durations_and_timestamps() {
        assert!(is_duration("3600s") && is_duration("3.5s") && is_duration("0.000000001s"));
        assert!(!is_duration("3600") && !is_duration("s") && !is_duration("1.s"));
        assert!(is_timestamp("2024-01-02T03:04:05.123456Z"));
        assert!(is_timestamp("2024-01-02T03:04:05+01:00"));
        assert!(!is_timestamp("2024-01-02 03:04:05"));
    }
}
